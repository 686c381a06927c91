"""CUDA backend: the CPU backend's plan, run as one launch per group on two device arenas.

The GPU twin of `gpubt.backends.numba_cpu`, value for value. The graph is planned by the CPU
backend's own `_Plan`: every node gets a row of one of two arenas (float64, and int8 conditions),
a row is handed on once its last reader's depth is done, and the nodes of one primitive at one
depth form a group (every node its own row: the CPU's fused element-wise clusters have no
device twin yet). On the device the arenas are two CuPy matrices and each group is ONE launch
of a kernel of `gpubt.backends.cuda_kernels` (a thread per member and day for windows, per
member and tile of days for element-wise primitives, per member for the rest), reading input
rows and writing output rows; the few element-wise primitives without such a kernel (pow, log,
exp, sqrt, min2, max2, neg, abs, sign, fill_null, not, n-ary Kleene logic) are one CuPy
expression per group over its gathered rows. The condition lists of a tree (`lines` nodes) are
one launch too, a thread per node and tile of days, running the CPU's own per-node loop
(`gpubt.backends.lines`) on the tile.

Rules, the CPU backend's own (so its values are equal):

* constants and element-wise ops of constants are computed on the host while planning; a
  constant read by an array is a row of its value, as on the CPU;
* every kernel runs the CPU's loop for its primitive, compiled for the GPU from the same Python
  source (`gpubt.backends.twins`), without FMA contraction or link-time optimisation, so
  `e + a * (x − e)` rounds twice as on the CPU;
* the CuPy expressions follow the CPU rules (a non-finite arithmetic result is missing, pow of
  a missing value is missing, Kleene and/or/not).

Bit-equal to the CPU backend wherever the arithmetic is IEEE's (+ − × ÷ sqrt, comparisons,
min/max, every window and recursion); pow, log and exp use CUDA's libm, which may differ from the
CPU's by an ulp or two (on an H100: 1,303 of 1,343 primitive nodes bit-equal, the other 40 within
1e-12, all reading pow, log or exp).

Data crosses the bus once each way per `evaluate`: up go the rows known while planning (prices,
branch series, date ranges, constants read as series) as one matrix per arena, and every row,
parameter and condition-list array of the plan as one int64 and one float64 buffer; back come
the outputs, gathered into one matrix per arena. When the two arenas would not fit
`twins.memory_budget` (env `GPUBT_GPU_MEMORY`, else half of the device's free memory), the
outputs are split in halves, each planned and run alone, so a huge graph never runs out of
memory. A CUDA error raises; nothing partial is returned.

With `NUMBA_ENABLE_CUDASIM=1` (set before Numba's CUDA target is imported) the array module is
NumPy and the kernels run in Numba's CUDA simulator: the logic is tested on any CPU. Otherwise
CuPy and a CUDA device are required at import, and the import error says why (so `usable("cupy")`
reports it and `auto` falls back to a CPU backend).
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

SIMULATED = os.environ.get("NUMBA_ENABLE_CUDASIM") == "1"

if SIMULATED:
    xp: Any = np
else:
    import cupy as xp

    try:
        _DEVICES = xp.cuda.runtime.getDeviceCount()
    except Exception as exc:  # no driver, or a broken one
        raise RuntimeError(f"no usable CUDA device: {type(exc).__name__}: {exc}") from exc
    if _DEVICES < 1:
        raise RuntimeError("no CUDA device (cupy.cuda.runtime.getDeviceCount() is 0)")

from numba import cuda  # noqa: E402 - after the simulator switch is known

if not SIMULATED and not cuda.is_available():
    raise RuntimeError("numba.cuda is not available (no CUDA driver or libNVVM for Numba)")

from gpubt.backends.cuda_kernels import TILE, WINDOWS, compiled  # noqa: E402
from gpubt.backends.lines import Packed, split  # noqa: E402
from gpubt.backends.numba_cpu import _ADD, _CMP, _DIV, _MUL, _SUB, _Ctx, _Plan, _scalar  # noqa: E402
from gpubt.backends.twins import exact_arithmetic, memory_budget  # noqa: E402
from gpubt.collector import paused  # noqa: E402
from gpubt.data.market import Market  # noqa: E402
from gpubt.ir.nodes import PRIMITIVES, Node  # noqa: E402

SIMULATED_FREE = 2 << 30  # free "device" memory in simulator mode (host memory)
THREADS = 128  # threads per block (a thread per group member)

_NAN = math.nan
_I8 = np.int8
Array = Any  # an xp.ndarray


def _device(a: Any) -> Any:
    """A kernel argument: CuPy arrays as Numba device arrays without a stream sync (both use the
    default stream, so launches stay ordered)."""
    if SIMULATED or not isinstance(a, xp.ndarray):
        return a
    return cuda.as_cuda_array(a, sync=False)


def _launch(name: str, threads: int, *args: Any) -> None:
    """Kernel `name` over `threads` threads; `args` are kernel arguments already (`_device`),
    and the caller compiles inside `exact_arithmetic`."""
    if threads < 1:
        return
    kernel = getattr(compiled(), name)
    block = min(threads, THREADS)
    kernel[(threads + block - 1) // block, block](*args)


def _free_bytes() -> int:
    """What the device (and CuPy's pool) has free."""
    if SIMULATED:
        return SIMULATED_FREE
    free, _ = xp.cuda.runtime.memGetInfo()
    return int(free + xp.get_default_memory_pool().free_bytes())


# -------------------------------------------------------------------------------------- groups
# A group's runner: (pack, launch, kernel). `pack(params)` gives the members' parameters as
# int64 and float64 arrays (one entry per member), uploaded with the plan; `launch(m, f, c, ins,
# ints, floats, out)` computes the group's m members from the arenas f (float) and c
# (conditions), the device arrays of their input rows per input (`ins`), of their parameters
# and of their output rows: as kernel arguments where `kernel`, else as CuPy arrays.

Pack = Callable[[list[tuple]], tuple[list[np.ndarray], list[np.ndarray]]]
Launch = Callable[..., None]
Runner = tuple[Pack, Launch, bool]


def _none(params: list[tuple]) -> tuple[list[np.ndarray], list[np.ndarray]]:
    return [], []


def _ints(*fields: int) -> Pack:
    return lambda params: ([np.array([int(p[i]) for p in params], np.int64) for i in fields], [])


def _kernel(pack: Pack, launch: Launch) -> Runner:
    return pack, launch, True


def _tiles(arena: Any) -> int:
    """How many tiles of `cuda_kernels.TILE` days an arena's rows are cut into."""
    return -(-arena.shape[1] // TILE)


def _window(op: str) -> Runner:
    """A window of one integer parameter (`cuda_kernels.WINDOWS`): a thread per member and day."""
    kind = WINDOWS[op]
    return _kernel(_ints(0), lambda m, f, c, ins, i, x, out: _launch("_k_window", m * f.shape[1], f, ins[0], i[0],
                                                                     kind, out))


def _sums(mean: bool) -> Runner:
    def pack(params: list[tuple]) -> tuple[list[np.ndarray], list[np.ndarray]]:
        n = np.array([int(p[0]) for p in params], np.int64)
        return [n], [n.astype(np.float64) if mean else np.ones(n.size)]

    return _kernel(pack, lambda m, f, c, ins, i, x, out: _launch("_k_unit_sums", m * f.shape[1], f, ins[0], i[0],
                                                                 x[0], out))


def _dot(centered: bool) -> Runner:
    def pack(params: list[tuple]) -> tuple[list[np.ndarray], list[np.ndarray]]:
        weights = [np.asarray([float(w) for w in p[0]], np.float64) for p in params]
        start = np.zeros(len(weights) + 1, np.int64)
        np.cumsum([w.size for w in weights], out=start[1:])
        return [start], [np.concatenate(weights)]

    return _kernel(pack, lambda m, f, c, ins, i, x, out: _launch("_k_rolling_dot", m * f.shape[1], f, ins[0], i[0],
                                                                 x[0], centered, out))


def _ewm_pack(params: list[tuple]) -> tuple[list[np.ndarray], list[np.ndarray]]:
    return [np.array([int(p[1]) for p in params], np.int64)], [np.array([float(p[0]) for p in params])]


def _gamma_pack(params: list[tuple]) -> tuple[list[np.ndarray], list[np.ndarray]]:
    return [], [np.array([float(p[0]) for p in params])]


# element-wise primitives without a kernel: a CuPy expression over the group's gathered input
# rows (each (members, days)), the CPU rules


def _finite(r: Array) -> Array:
    """r (a fresh result) with ±inf made missing, in place."""
    xp.copyto(r, _NAN, where=xp.isinf(r))
    return r


def _pow(x: Array, y: Array) -> Array:
    r = xp.power(x, y)
    xp.copyto(r, _NAN, where=xp.isnan(x) | xp.isnan(y))  # IEEE pow(1, NaN) = 1: missing here
    return _finite(r)


def _sign(x: Array) -> Array:
    return xp.copysign(xp.sign(x), x)  # the sign of a zero kept, as on the CPU


def _kleene(decisive: int) -> Callable[..., Array]:
    """AND (decisive FALSE = 0) or OR (decisive TRUE = 1): the decisive value if either side has it,
    else the smaller of the two (NULL = −1 is below both)."""
    d = _I8(decisive)

    def run(*a: Array) -> Array:
        acc = a[0].copy()
        for y in a[1:]:
            acc = xp.where((acc == d) | (y == d), d, xp.minimum(acc, y)).astype(_I8, copy=False)
        return acc

    return run


def _not(x: Array) -> Array:
    return xp.where(x == 1, _I8(0), xp.where(x == 0, _I8(1), _I8(-1))).astype(_I8, copy=False)


def _null_if_any_missing(cond: Array, *values: Array) -> Array:
    out = cond.copy()
    for v in values:
        xp.copyto(out, _I8(-1), where=xp.isnan(v))
    return out


# op -> (the expression, which inputs are conditions)
_EXPRESSIONS: dict[str, tuple[Callable[..., Array], Callable[[int], bool]]] = {
    "pow": (_pow, lambda i: False),
    "min2": (lambda x, y: xp.minimum(x, y), lambda i: False),
    "max2": (lambda x, y: xp.maximum(x, y), lambda i: False),
    "neg": (lambda x: xp.negative(x), lambda i: False),
    "abs": (lambda x: xp.abs(x), lambda i: False),
    "log": (lambda x: _finite(xp.log(x)), lambda i: False),
    "exp": (lambda x: _finite(xp.exp(x)), lambda i: False),
    "sqrt": (lambda x: _finite(xp.sqrt(x)), lambda i: False),
    "sign": (_sign, lambda i: False),
    "fill_null": (lambda x, y: xp.where(xp.isnan(x), y, x), lambda i: False),
    "not": (_not, lambda i: True),
    "and": (_kleene(0), lambda i: True),
    "or": (_kleene(1), lambda i: True),
    "null_if_any_missing": (_null_if_any_missing, lambda i: i == 0),
}


def _expression(op: str) -> Runner:
    fn, is_condition = _EXPRESSIONS[op]
    c_out = PRIMITIVES[op][0] == "b"

    def launch(m: int, f: Array, c: Array, ins: list[Array], i: list[Array], x: list[Array], out: Array) -> None:
        result = fn(*[(c if is_condition(slot) else f)[rows] for slot, rows in enumerate(ins)])
        (c if c_out else f)[out] = result

    return _none, launch, False


_GROUPS: dict[tuple[str, int], Runner] = {  # (primitive, inputs) -> group runner
    **{(op, 1): _window(op) for op in WINDOWS},
    ("shift", 1): _kernel(_ints(0), lambda m, f, c, ins, i, x, out: _launch("_k_shift", m, f, ins[0], i[0], out)),
    ("rolling_mean", 1): _sums(True),
    ("rolling_sum", 1): _sums(False),
    ("wilder_mean", 1): _kernel(_ints(0), lambda m, f, c, ins, i, x, out: _launch("_k_wilder", m, f, ins[0], i[0],
                                                                                  False, out)),
    ("wilder_sum", 1): _kernel(_ints(0), lambda m, f, c, ins, i, x, out: _launch("_k_wilder", m, f, ins[0], i[0],
                                                                                 True, out)),
    ("rolling_dot", 1): _dot(False),
    ("rolling_dot_centered", 1): _dot(True),
    ("ewm", 1): _kernel(_ewm_pack, lambda m, f, c, ins, i, x, out: _launch("_k_ewm", m, f, ins[0], x[0], i[0], out)),
    ("ewm_var", 2): _kernel(_ints(0), lambda m, f, c, ins, i, x, out: _launch("_k_ewm_var", m, f, ins[0], ins[1],
                                                                              i[0], out)),
    ("laguerre_rsi", 1): _kernel(_gamma_pack, lambda m, f, c, ins, i, x, out: _launch("_k_laguerre_rsi", m, f,
                                                                                      ins[0], x[0], out)),
    ("cum_sum", 1): _kernel(_none, lambda m, f, c, ins, i, x, out: _launch("_k_cum_sum", m, f, ins[0], out)),
    ("forward_fill", 1): _kernel(_none, lambda m, f, c, ins, i, x, out: _launch("_k_forward_fill", m, f, ins[0], out)),
    ("rolling_all", 1): _kernel(_ints(0), lambda m, f, c, ins, i, x, out: _launch("_k_rolling_all", m, c, ins[0],
                                                                                  i[0], out)),
    ("valid_from", 2): _kernel(_ints(0), lambda m, f, c, ins, i, x, out: _launch("_k_valid_from", m, f, ins[0],
                                                                                 ins[1], i[0], out)),
    ("where", 3): _kernel(_none, lambda m, f, c, ins, i, x, out: _launch("_k_where", m * _tiles(f), f, c, ins[0],
                                                                         ins[1], ins[2], out)),
}
for _op, _code in (("add", _ADD), ("sub", _SUB), ("mul", _MUL), ("div", _DIV), ("ratio", _DIV)):
    _GROUPS[(_op, 2)] = _kernel(_none, lambda m, f, c, ins, i, x, out, op=_code: _launch(
        "_k_arith", m * _tiles(f), f, op, ins[0], ins[1], out))
for _op, _code in _CMP.items():
    _GROUPS[(_op, 2)] = _kernel(_none, lambda m, f, c, ins, i, x, out, op=_code: _launch(
        "_k_compare", m * _tiles(f), f, c, op, ins[0], ins[1], out))
for _op, _either in (("and", False), ("or", True)):
    _GROUPS[(_op, 2)] = _kernel(_none, lambda m, f, c, ins, i, x, out, e=_either: _launch(
        "_k_logic", m * _tiles(c), c, e, ins[0], ins[1], out))
    for _width in (1, 3):
        _GROUPS[(_op, _width)] = _expression(_op)
for _op in ("pow", "min2", "max2", "fill_null"):
    _GROUPS[(_op, 2)] = _expression(_op)
for _op in ("neg", "abs", "log", "exp", "sqrt", "sign", "not"):
    _GROUPS[(_op, 1)] = _expression(_op)
for _width in (1, 2, 3):
    _GROUPS[("null_if_any_missing", _width)] = _expression("null_if_any_missing")
del _op, _code, _either, _width


# ------------------------------------------------------------------------------------ the run


class _Uploads:
    """Host int64 and float64 arrays gathered while a run is prepared, uploaded as one buffer
    each; `ints(k)` / `floats(k)` are then the device views of the k-th array put (CuPy arrays),
    `int_args(k)` / `float_args(k)` the same views as kernel arguments (made once per buffer:
    wrapping a CuPy array for a kernel costs more than the launch)."""

    def __init__(self) -> None:
        self._parts: tuple[list[np.ndarray], list[np.ndarray]] = ([], [])
        self._views: tuple[list[Array], list[Array]] = ([], [])
        self._args: tuple[list[Any], list[Any]] = ([], [])

    def put(self, a: np.ndarray, floats: bool = False) -> int:
        parts = self._parts[floats]
        parts.append(a)
        return len(parts) - 1

    def upload(self) -> None:
        for parts, views, args, dtype in zip(self._parts, self._views, self._args, (np.int64, np.float64)):
            if not parts:
                continue
            whole = xp.asarray(np.concatenate(parts).astype(dtype, copy=False))
            arg = _device(whole)
            at = 0
            for part in parts:
                views.append(whole[at : at + part.size])
                args.append(arg[at : at + part.size])
                at += part.size

    def ints(self, k: int) -> Array:
        return self._views[0][k]

    def floats(self, k: int) -> Array:
        return self._views[1][k]

    def int_args(self, k: int) -> Any:
        return self._args[0][k]

    def float_args(self, k: int) -> Any:
        return self._args[1][k]


def _synchronize() -> None:
    if not SIMULATED:
        xp.cuda.Device().synchronize()


def _host(a: Array) -> np.ndarray:
    return a if isinstance(a, np.ndarray) else a.get()


class CupyBackend:
    """`Backend` on a CUDA device: the CPU backend's plan, one launch per group."""

    name = "cupy"

    def __init__(self) -> None:
        self.launches = 0  # kernel launches and CuPy expressions of the last evaluate
        self.nodes = 0  # nodes planned by the last evaluate (summed over its parts)
        # seconds spent moving data, summed over evaluates (benchmarks reset it): the device is
        # synchronised before the copy back, so "download" is the copy alone
        self.transfer = {"upload": 0.0, "download": 0.0}
        # host seconds, summed likewise: planning and packing the arrays, issuing the launches,
        # and waiting for the device to finish them
        self.host = {"plan": 0.0, "launch": 0.0, "wait": 0.0}

    def evaluate(
        self,
        outputs: Sequence[Node],
        market: Market,
        branches: Mapping[object, np.ndarray],
        first: Mapping[Node, int] | None = None,
    ) -> dict[Node, np.ndarray]:
        outputs = list(dict.fromkeys(outputs))
        if not outputs:
            return {}
        self.launches = self.nodes = 0
        ctx = _Ctx(market, branches)
        with paused(), np.errstate(all="ignore"):
            values = self._evaluate(outputs, ctx, first or {}, memory_budget(_free_bytes))
        return {node: values[node] for node in outputs}

    def _evaluate(self, outputs: list[Node], ctx: _Ctx, first: Mapping[Node, int], budget: int) -> dict[Node, np.ndarray]:
        """`outputs` planned and run whole, or in halves when their arenas would not fit `budget`."""
        started = time.perf_counter()
        fused, rest = split(outputs)
        plan = _Plan(rest, ctx, _GROUPS, fused=None)
        self.host["plan"] += time.perf_counter() - started
        # the arenas, and the condition lists' output and scratch (about 3 rows a node while
        # their lookbacks are short next to a tile)
        need = (8 * plan.size[0] + plan.size[1] + 4 * len(fused)) * ctx.n
        if need > budget and len(outputs) > 1:
            half = len(outputs) // 2
            return {**self._evaluate(outputs[:half], ctx, first, budget),
                    **self._evaluate(outputs[half:], ctx, first, budget)}
        return self._run(plan, fused, ctx, first, outputs)

    def _run(self, plan: _Plan, fused: list[Node], ctx: _Ctx, first: Mapping[Node, int],
             outputs: list[Node]) -> dict[Node, np.ndarray]:
        """The plan run on the device; the values of `outputs` (the plan's outputs are these and
        the condition lists' inputs)."""
        started = time.perf_counter()
        days = ctx.n
        order, row, condition = plan.order, plan.row, plan.condition
        up = _Uploads()
        # the rows known while planning, one host matrix per arena
        ready: list[tuple[list[int], list[Any]]] = [([], []), ([], [])]
        for k, value in plan.ready.items():
            rows, values = ready[condition[k]]
            rows.append(row[k])
            values.append(value if isinstance(value, np.ndarray) else _scalar(value))
        ready_rows = [up.put(np.array(rows, np.int64)) if rows else -1 for rows, _ in ready]
        # each group's rows and parameters; a node without a group runner is a CuPy expression alone
        steps: list[tuple[Any, ...]] = []
        for runner, ins, params, out in plan.steps:
            if runner is None:
                steps.append((None, ins, params))  # position, its inputs' positions
                continue
            pack, launch, kernel = runner
            ints, floats = pack(params)
            steps.append((launch, kernel, out.size, [up.put(a) for a in ins], up.put(out),
                          [up.put(a) for a in ints], [up.put(a, True) for a in floats]))
        # the float rows computed (made finite before the condition lists read them), and the
        # outputs asked for (copied back)
        float_rows = [row[k] for k in plan.wanted if not condition[k]]
        finite = up.put(np.array(float_rows, np.int64))
        asked = set(outputs)
        float_out = [k for k in plan.wanted if not condition[k] and order[k] in asked]
        flag_out = [k for k in plan.wanted if condition[k] and order[k] in asked]
        float_rows_out = up.put(np.array([row[k] for k in float_out], np.int64))
        flag_rows_out = up.put(np.array([row[k] for k in flag_out], np.int64))
        lines = self._pack_lines(fused, plan, first, up) if fused else None
        self.host["plan"] += time.perf_counter() - started

        started = time.perf_counter()
        arenas = (xp.empty((plan.size[0], days)), xp.empty((plan.size[1], days), dtype=_I8))
        up.upload()
        for a, ((_, values), at) in enumerate(zip(ready, ready_rows)):
            if values:
                host = np.empty((len(values), days), dtype=arenas[a].dtype)
                for i, value in enumerate(values):
                    host[i] = value  # a constant repeated per day
                arenas[a][up.ints(at)] = xp.asarray(host)
        self.transfer["upload"] += time.perf_counter() - started

        f, c = arenas
        started = time.perf_counter()
        f_arg, c_arg = _device(f), _device(c)
        launches = 0
        with contextlib.nullcontext() if SIMULATED else exact_arithmetic():
            for step in steps:
                if step[0] is None:
                    _, k, inputs = step
                    fn = _EXPRESSIONS[order[k].op][0]
                    arenas[condition[k]][row[k] : row[k] + 1] = fn(*[arenas[condition[j]][row[j] : row[j] + 1]
                                                                      for j in inputs])
                else:  # a kernel's arguments, or CuPy arrays for expressions
                    launch, kernel, m, ins, out, ints, floats = step
                    int_of, float_of = (up.int_args, up.float_args) if kernel else (up.ints, up.floats)
                    launch(m, f_arg if kernel else f, c_arg if kernel else c, [int_of(i) for i in ins],
                           [int_of(i) for i in ints], [float_of(i) for i in floats], int_of(out))
                launches += 1
            if float_rows:  # the boundary: ±inf (a window's overflow) → NaN, before the lines read them
                _launch("_k_finite", len(float_rows) * _tiles(f_arg), f_arg, up.int_args(finite))
                launches += 1
            lines_out = None
            if lines is not None:
                lines_out = self._lines(f_arg, c_arg, lines, up, days)
                launches += 1
        self.launches += launches
        self.nodes += len(order)
        self.host["launch"] += time.perf_counter() - started

        started = time.perf_counter()
        _synchronize()  # a kernel's error surfaces here, before anything is returned
        self.host["wait"] += time.perf_counter() - started
        started = time.perf_counter()
        host_f = _host(f[up.ints(float_rows_out)]) if float_out else None
        host_b = _host(c[up.ints(flag_rows_out)]) if flag_out else None
        host_lines = _host(lines_out) if lines_out is not None else None
        self.transfer["download"] += time.perf_counter() - started
        values: dict[Node, np.ndarray] = {}
        for i, k in enumerate(float_out):
            values[order[k]] = host_f[i]
        for i, k in enumerate(flag_out):
            values[order[k]] = host_b[i]
        for i, node in enumerate(fused):
            values[node] = host_lines[i]
        return values

    @staticmethod
    def _pack_lines(fused: list[Node], plan: _Plan, first: Mapping[Node, int], up: _Uploads) -> tuple[int, ...]:
        """The condition lists' arrays (`gpubt.backends.lines.Packed`), put for upload."""
        packed = Packed(fused)
        at = {plan.order[k]: k for k in plan.wanted}
        rows = [plan.row[at[node]] for node in packed.float_inputs]
        flag_rows = [plan.row[at[node]] for node in packed.flag_inputs]
        firsts = [first.get(node, 0) for node in fused]
        ints = [up.put(np.array(a, np.int64)) for a in (
            rows, flag_rows, packed.node_terms, packed.term_lines, packed.code, packed.left, packed.right)]
        threshold = up.put(np.asarray(packed.threshold, np.float64), True)
        tail = [up.put(np.array(a, np.int64)) for a in (packed.for_days, firsts, packed.lookback)]
        longest = int(packed.lookback.max()) if len(packed.lookback) else 0
        return len(fused), longest, *ints, threshold, *tail

    @staticmethod
    def _lines(f: Any, c: Any, lines: tuple[int, ...], up: _Uploads, days: int) -> Array:
        """The condition lists' truth (an int8 matrix on the device); f and c are kernel arguments."""
        n, longest, rows, flag_rows, node_terms, term_lines, code, left, right, threshold, for_days, firsts, lookback = lines
        out = xp.empty((n, days), dtype=_I8)
        threads = n * -(-days // TILE)  # a thread per node and tile of days
        scratch = xp.empty((3 * threads, min(TILE + longest, days)), dtype=_I8)
        i = up.int_args
        _launch("_k_lines", threads, f, i(rows), c, i(flag_rows), i(node_terms), i(term_lines), i(code), i(left),
                i(right), up.float_args(threshold), i(for_days), i(firsts), i(lookback), _device(out), _device(scratch))
        return out


__all__ = ["CupyBackend"]
