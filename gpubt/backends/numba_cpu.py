"""CPU Numba backend: the graph computed depth by depth, a kernel call per primitive and depth.

Each node becomes a row over the market's days: float64 with NaN for missing ('f'), int8
TRUE=1 / FALSE=0 / NULL=-1 for conditions ('b'), the boundary encoding itself, so nothing is
converted on the way out. Windows and recursions run in the backend-neutral kernels of
`gpubt.backends.kernels` (shared with the Polars backend); add/sub/mul/div, comparisons, Kleene
logic, `where` and `valid_from` in the small kernels below (a per-node form, and a row form
for a group of nodes); the remaining element-wise
primitives (pow, log, exp, sqrt, min2, max2, neg, abs, sign, fill_null) in NumPy. Every kernel
is `@numba.njit(cache=True)`, so a fresh process loads it from Numba's on-disk cache instead of
compiling it.

Values follow the Polars backend (`gpubt.backends.polars_cpu`) rule for rule, and are equal to
its values to the bit on every primitive and catalogue metric tested:

* a constant is a Python float (non-finite → NaN) broadcast by element-wise operations; an
  element-wise node of constants only is a constant too; a window or recursion of a constant
  sees it repeated once per day;
* add, sub, mul, div, ratio, pow, log, exp and sqrt make a non-finite result missing (so a
  division by zero is missing); pow of a missing value is missing even where IEEE says 1;
  division is a true division also by a constant (never a multiplication by the reciprocal);
* windows are missing unless the n values ending on the day are all present; sums are summed
  afresh per window, oldest first (Polars' weighted rolling sum and the reference's own order:
  a running sum drifts), means divide that sum by n, std is two-pass;
* `ewm` is the SMA-seeded recursion e += alpha (x − e) of the reference (`kernels.ewm`);
* comparisons with a missing side are NULL; and/or/not are Kleene's.

Speed: the graph is planned once (`_Plan`): a Python walk computes constants and element-wise
ops of constants as floats and writes the graph down as arrays; a Numba function (`_place`)
gives every other node a row of one of two arenas (floats, and int8 conditions) and a depth (1 +
its deepest array input's). The nodes of one primitive at one depth read nothing of each other,
so each such group is one call of a row kernel (`_BATCHED`) whose members run in Numba's
threads, without the GIL: 1,000 indicators are a few dozen calls, not 6,000 Python steps. An
element-wise node whose only reader is element-wise too has no row: such nodes and their readers
form trees (clusters), each computed day tile by day tile in a cache-sized scratch, and only its
root (the first node read otherwise) is written to the arena (`_run_fused`;
`NumbaBackend(fuse=False)` plans a row per node). The primitives without a row kernel run node
by node (`_OPS`). Only the days something reads are computed: an output the backtest reads from
day f on (`first`) needs its windows' inputs from f − n on, and so on down the graph (`_needs`);
windows, element-wise kernels and clusters start there, while recursions (EMA, Wilder,
cumulative sums), whose every value depends on the whole past, and `valid_from` anchors run over
every day. An output's days before anything reads them are missing. The condition lists of a
tree (`lines` nodes) are one parallel pass over their input rows (`gpubt.backends.lines`). The
cyclic garbage collector is paused during a call (planning makes a few small containers per node
while the graph's own objects are alive, and nothing it makes forms a cycle).

Memory: a node's row is handed to a node of a later depth once the depth of its last reader has
been computed, so the arenas hold the outputs and about two depths' arrays, not one array per
node. An element-wise node that is the only reader of an input writes its output over that
input's row (`_IN_PLACE`): `valid_from`, which wraps every indicator, then only blanks the
first days instead of copying the series. An arena over 32 MB is memory kept from an earlier
call once nothing views it any more (`_Buffers`). `live_peak` reports the most rows held at once
during the last `evaluate` (outputs included), `freed` how many were handed on, `inner` how many
nodes were computed in clusters without a row, `nodes` how many nodes the graph has and `calls`
how many kernel calls computed them.
"""
from __future__ import annotations

import math
import os
import threading
import weakref
from itertools import accumulate
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numba
import numpy as np

from gpubt import libm
from gpubt.backends import kernels
from gpubt.backends.base import NULL
from gpubt.backends.lines import Packed, evaluate_lines, split
from gpubt.collector import paused
from gpubt.data.market import Market
from gpubt.ir.nodes import PRIMITIVES, Node, topological
from gpubt.parallel import parallel_kernel

_JIT = {"cache": True, "nogil": True, "error_model": "numpy"}
_NAN = float("nan")

Value = Any  # np.ndarray, or a float for a constant (element-wise ops of constants stay scalars)

# comparison codes of the kernels below
_GT, _LT, _GE, _LE = 0, 1, 2, 3
_CMP = {"gt": _GT, "lt": _LT, "ge": _GE, "le": _LE}


# ------------------------------------------------------------------------------ element kernels


# Each kernel writes into `out` (a node's row, or a fresh array for a lone node), so the per-node
# forms and the row kernels below run the same loops. A constant side is a row of its value: the
# same operation on each day as with the scalar, so the same bits. The CUDA backend compiles
# these loops too (`gpubt.backends.cuda_kernels`): hence `math.isnan`/`math.isinf`, no slice
# assignment and no `min` of int8s, which its target refuses.


@numba.njit(**_JIT)
def _compare_into(a: np.ndarray, b: np.ndarray, op: int, out: np.ndarray) -> None:
    """a <op> b per day; NULL where either side is missing."""
    # one loop per comparator, without branches: a comparison with NaN is False, so
    # (a <op> b) − missing is 1/0 where both sides exist and −1 (NULL) elsewhere; the loops vectorise
    if op == 0:
        for t in range(out.size):
            out[t] = np.int8(a[t] > b[t]) - np.int8(math.isnan(a[t]) | math.isnan(b[t]))
    elif op == 1:
        for t in range(out.size):
            out[t] = np.int8(a[t] < b[t]) - np.int8(math.isnan(a[t]) | math.isnan(b[t]))
    elif op == 2:
        for t in range(out.size):
            out[t] = np.int8(a[t] >= b[t]) - np.int8(math.isnan(a[t]) | math.isnan(b[t]))
    else:
        for t in range(out.size):
            out[t] = np.int8(a[t] <= b[t]) - np.int8(math.isnan(a[t]) | math.isnan(b[t]))


@numba.njit(**_JIT)
def _where_into(cond: np.ndarray, a: np.ndarray, b: np.ndarray, out: np.ndarray) -> None:
    for t in range(out.size):
        out[t] = a[t] if cond[t] == 1 else b[t]


# Kleene logic on TRUE=1 / FALSE=0 / NULL=-1: AND is FALSE if either side is FALSE, else the
# smaller (NULL < TRUE); OR is TRUE if either side is TRUE, else the smaller (NULL < FALSE).


@numba.njit(**_JIT)
def _logic_into(a: np.ndarray, b: np.ndarray, either: bool, out: np.ndarray) -> None:
    """a AND b (OR when `either`); out may be a."""
    if either:
        for t in range(out.size):
            x = a[t]
            y = b[t]
            out[t] = 1 if (x == 1) | (y == 1) else (x if x < y else y)
    else:
        for t in range(out.size):
            x = a[t]
            y = b[t]
            out[t] = 0 if (x == 0) | (y == 0) else (x if x < y else y)


# element-wise arithmetic with the finiteness rule fused in (a non-finite result is missing): one
# loop whose store is a select, which vectorises (a second pass with a conditional store made
# a 6,783-day product 2.8x slower)
_ADD, _SUB, _MUL, _DIV = 0, 1, 2, 3


@numba.njit(**_JIT)
def _arith_into(a: np.ndarray, b: np.ndarray, op: int, out: np.ndarray) -> None:
    if op == 0:
        for t in range(out.size):
            v = a[t] + b[t]
            out[t] = math.nan if math.isinf(v) else v
    elif op == 1:
        for t in range(out.size):
            v = a[t] - b[t]
            out[t] = math.nan if math.isinf(v) else v
    elif op == 2:
        for t in range(out.size):
            v = a[t] * b[t]
            out[t] = math.nan if math.isinf(v) else v
    else:
        for t in range(out.size):
            v = a[t] / b[t]
            out[t] = math.nan if math.isinf(v) else v


@numba.njit(**_JIT)
def _not(a: np.ndarray) -> np.ndarray:
    out = np.empty(a.size, dtype=np.int8)
    for t in range(a.size):
        x = a[t]
        out[t] = 0 if x == 1 else (1 if x == 0 else -1)
    return out


@numba.njit(**_JIT)
def _null_where_missing(cond: np.ndarray, x: np.ndarray) -> None:
    """cond = NULL on the days x is missing (in place)."""
    for t in range(cond.size):
        if math.isnan(x[t]):
            cond[t] = -1


@numba.njit(**_JIT)
def _finite_inplace(x: np.ndarray) -> np.ndarray:
    """x with every non-finite value (±inf, NaN) made NaN, in place."""
    for t in range(x.size):
        v = x[t]
        if math.isinf(v):
            x[t] = math.nan
    return x


@numba.njit(**_JIT)
def _valid_from_into(x: np.ndarray, anchor: np.ndarray, offset: int, out: np.ndarray) -> None:
    """x from `offset` days after anchor's first present value on, missing before (and
    everywhere when anchor has no present value)."""
    for t in range(_missing_before(anchor, offset, out), out.size):
        out[t] = x[t]


@numba.njit(**_JIT)
def _missing_before(anchor: np.ndarray, offset: int, out: np.ndarray) -> int:
    """Makes `out` missing before `offset` days after anchor's first present value (everywhere
    when anchor has none); returns that day: `valid_from` done in place over x's own row."""
    start = out.size
    for t in range(anchor.size):
        if not math.isnan(anchor[t]):
            start = t + offset
            start = 0 if start < 0 else (out.size if start > out.size else start)
            break
    for t in range(start):
        out[t] = math.nan
    return start


# ------------------------------------------------------------------------------------- helpers


def _is_array(v: Value) -> bool:
    return isinstance(v, np.ndarray)


def _scalar(v: float) -> float:
    v = float(v)
    return v if math.isfinite(v) else _NAN


def _full(v: Value, n: int) -> np.ndarray:
    """A value as one float per day (a constant repeated)."""
    if isinstance(v, np.ndarray):
        return v
    return np.full(n, _scalar(v))


def _finite(v: Value) -> Value:
    """Missing where not finite: arrays in place (they are fresh results), floats returned."""
    if isinstance(v, np.ndarray):
        return _finite_inplace(v)
    return _scalar(v)


# --------------------------------------------------------------------------------- primitives


class _Ctx:
    """What a primitive may read besides its inputs."""

    __slots__ = ("market", "branches", "n")

    def __init__(self, market: Market, branches: Mapping[object, np.ndarray]) -> None:
        self.market = market
        self.branches = branches
        self.n = market.n_days


def _price(a: list[Value], p: tuple, ctx: _Ctx) -> np.ndarray:
    """A fresh copy of a market column (`_price_row`)."""
    return _price_row(p, ctx).copy()


def _price_row(p: tuple, ctx: _Ctx) -> np.ndarray:
    """A market column as a row of the field's tickers × days matrix, made once per market with
    non-finite values missing (a strided column and its check took 32 µs a leaf); read-only."""
    market = ctx.market
    ticker, field = p
    rows = market.derived(("numba", field), lambda: _finite_rows(getattr(market, field)))
    return rows[market.column(ticker)]


def _finite_rows(matrix: np.ndarray) -> np.ndarray:
    """A days × tickers matrix as tickers × days rows, non-finite values missing."""
    rows = np.array(matrix.T, dtype=np.float64, order="C")
    _finite_inplace(rows.reshape(-1))
    rows.flags.writeable = False  # shared by every backtest on the market
    return rows


def _branch(a: list[Value], p: tuple, ctx: _Ctx) -> np.ndarray:
    key = p[0]
    branches = ctx.branches
    return _leaf(branches[key] if key in branches else branches[p], ("branch", p), ctx.n)


def _leaf(values: Any, what: tuple, n: int) -> np.ndarray:
    values = np.array(values, dtype=np.float64)  # a fresh contiguous copy
    if values.shape != (n,):
        raise ValueError(f"{what[0]}{what[1]!r}: {values.shape} values for {n} days")
    return _finite_inplace(values)


def _date_between(p: tuple, ctx: _Ctx) -> np.ndarray:
    fm, fd, tm, td = (int(v) for v in p)
    dates = np.asarray(ctx.market.dates).astype("datetime64[D]")
    months = dates.astype("datetime64[M]")
    md = (months.astype(np.int64) % 12 + 1) * 100 + (dates - months.astype("datetime64[D]")).astype(np.int64) + 1
    lo, hi = fm * 100 + fd, tm * 100 + td
    inside = (md >= lo) & (md <= hi) if lo <= hi else (md >= lo) | (md <= hi)
    return inside.astype(np.int8)


def _arith(op: int, fn: Callable[[float, float], float]) -> Callable[..., Value]:
    def run(a: list[Value], p: tuple, ctx: _Ctx) -> Value:
        x, y = a
        if not isinstance(x, np.ndarray) and not isinstance(y, np.ndarray):
            return _finite(fn(np.float64(x), np.float64(y)))  # constants: IEEE, no exception
        out = np.empty(ctx.n)
        _arith_into(_full(x, ctx.n), _full(y, ctx.n), op, out)
        return out

    return run


def _pow(a: list[Value], p: tuple, ctx: _Ctx) -> Value:
    x, y = a
    r = libm.power(x, y)
    if isinstance(r, np.ndarray):
        # IEEE pow(1, NaN) = pow(NaN, 0) = 1; a missing input must give a missing output
        if _is_array(x):
            r[np.isnan(x)] = _NAN
        elif x != x:
            r[:] = _NAN
        if _is_array(y):
            r[np.isnan(y)] = _NAN
        elif y != y:
            r[:] = _NAN
        return _finite_inplace(r)
    return _NAN if x != x or y != y else _scalar(r)


def _unary_finite(fn: Callable[[Value], Value]) -> Callable[..., Value]:
    def run(a: list[Value], p: tuple, ctx: _Ctx) -> Value:
        return _finite(fn(a[0]))

    return run


def _plain(fn: Callable[..., Value]) -> Callable[..., Value]:
    """An element-wise op whose result needs no finiteness check (neg, abs, min2, max2, sign)."""

    def run(a: list[Value], p: tuple, ctx: _Ctx) -> Value:
        r = fn(*a)
        return r if isinstance(r, np.ndarray) else float(r)

    return run


def _sign(x: Value) -> Value:
    # Polars keeps the sign of a zero (sign(-0.0) = -0.0); NumPy answers +0.0
    return np.copysign(np.sign(x), x)


def _where(a: list[Value], p: tuple, ctx: _Ctx) -> np.ndarray:
    cond, x, y = a
    out = np.empty(ctx.n)
    _where_into(cond, _full(x, ctx.n), _full(y, ctx.n), out)
    return out


def _fill_null(a: list[Value], p: tuple, ctx: _Ctx) -> Value:
    x, y = a
    if not _is_array(x):
        if x == x:
            return float(x)
        return y.copy() if _is_array(y) else float(y)
    return np.where(np.isnan(x), y, x)


def _valid_from(a: list[Value], p: tuple, ctx: _Ctx) -> np.ndarray:
    x, anchor = a
    out = np.empty(ctx.n)
    _valid_from_into(_full(x, ctx.n), _full(anchor, ctx.n), int(p[0]), out)
    return out


def _window(fn: Callable[..., np.ndarray], cast: Callable[[Any], Any] = int) -> Callable[..., np.ndarray]:
    """A kernel over the input repeated per day when it is a constant, with one parameter."""

    def run(a: list[Value], p: tuple, ctx: _Ctx) -> np.ndarray:
        return fn(_full(a[0], ctx.n), cast(p[0]))

    return run


def _weighted(fn: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> Callable[..., np.ndarray]:
    """A window kernel whose parameter is a weight per position."""

    def run(a: list[Value], p: tuple, ctx: _Ctx) -> np.ndarray:
        return fn(_full(a[0], ctx.n), np.asarray([float(w) for w in p[0]], dtype=np.float64))

    return run


def _cum_sum(a: list[Value], p: tuple, ctx: _Ctx) -> np.ndarray:
    return kernels.cum_sum(_full(a[0], ctx.n))


def _forward_fill(a: list[Value], p: tuple, ctx: _Ctx) -> np.ndarray:
    return kernels.forward_fill(_full(a[0], ctx.n))


def _ewm(a: list[Value], p: tuple, ctx: _Ctx) -> np.ndarray:
    return kernels.ewm(_full(a[0], ctx.n), float(p[0]), int(p[1]))


def _ewm_var(a: list[Value], p: tuple, ctx: _Ctx) -> np.ndarray:
    return kernels.ewm_var(_full(a[0], ctx.n), _full(a[1], ctx.n), int(p[0]))


def _comparison(op: int) -> Callable[..., np.ndarray]:
    def run(a: list[Value], p: tuple, ctx: _Ctx) -> np.ndarray:
        out = np.empty(ctx.n, dtype=np.int8)
        _compare_into(_full(a[0], ctx.n), _full(a[1], ctx.n), op, out)
        return out

    return run


def _and(a: list[Value], p: tuple, ctx: _Ctx) -> np.ndarray:
    return _logic(a, False, ctx) if a else np.ones(ctx.n, dtype=np.int8)


def _or(a: list[Value], p: tuple, ctx: _Ctx) -> np.ndarray:
    return _logic(a, True, ctx) if a else np.zeros(ctx.n, dtype=np.int8)


def _logic(a: list[Value], either: bool, ctx: _Ctx) -> np.ndarray:
    acc = a[0].copy()
    for other in a[1:]:
        _logic_into(acc, other, either, acc)
    return acc


def _null_if_any_missing(a: list[Value], p: tuple, ctx: _Ctx) -> np.ndarray:
    cond, *values = a
    out = cond.copy()
    for v in values:
        if not _is_array(v):
            if v != v:
                out[:] = -1
        elif v.dtype == np.int8:
            out[v == -1] = -1
        else:
            _null_where_missing(out, v)
    return out


def _const(a: list[Value], p: tuple, ctx: _Ctx) -> float:
    return _scalar(p[0])


_OPS: dict[str, Callable[[list[Value], tuple, _Ctx], Value]] = {
    # leaves
    "price": _price,
    "branch": _branch,
    "const": _const,
    "date_between": lambda a, p, ctx: _date_between(p, ctx),
    # element-wise
    "add": _arith(_ADD, np.add),
    "sub": _arith(_SUB, np.subtract),
    "mul": _arith(_MUL, np.multiply),
    "div": _arith(_DIV, np.true_divide),
    "ratio": _arith(_DIV, np.true_divide),
    "pow": _pow,
    "min2": _plain(np.minimum),
    "max2": _plain(np.maximum),
    "neg": _plain(np.negative),
    "abs": _plain(np.abs),
    "log": _unary_finite(libm.log),  # the C library's, as the reference's and Polars'
    "exp": _unary_finite(libm.exp),
    "sqrt": _unary_finite(np.sqrt),
    "sign": _plain(_sign),
    "where": _where,
    "fill_null": _fill_null,
    "valid_from": _valid_from,
    # windows and recursions (those of one integer parameter: `kernels.WINDOWS`)
    **{op: _window(kernel) for op, kernel in kernels.WINDOWS.items()},
    "rolling_dot": _weighted(kernels.rolling_dot),
    "rolling_dot_centered": _weighted(kernels.rolling_dot_centered),
    "cum_sum": _cum_sum,
    "forward_fill": _forward_fill,
    "ewm": _ewm,
    "ewm_var": _ewm_var,
    "laguerre_rsi": _window(kernels.laguerre_rsi, float),
    # conditions
    "gt": _comparison(_GT),
    "lt": _comparison(_LT),
    "ge": _comparison(_GE),
    "le": _comparison(_LE),
    "and": _and,
    "or": _or,
    "not": lambda a, p, ctx: _not(a[0]),
    "null_if_any_missing": _null_if_any_missing,
    "rolling_all": lambda a, p, ctx: kernels.rolling_all(a[0], int(p[0])),
}


# ------------------------------------------------------------------------------ row kernels
# One call computes a whole group: the nodes of one primitive at one depth of the graph (no node
# of a group reads another). Inputs and outputs are rows of the backend's two arenas (floats, and
# int8 conditions), named by row numbers; the members run in Numba's threads. Each member gives
# the bits of the per-node kernel above (same operations, same order), which tests check. The
# windows' and `ewm`'s row kernels are in `kernels`, shared with the Polars backend.

@parallel_kernel(**_JIT)
def _arith_rows(f: np.ndarray, op: int, a: np.ndarray, b: np.ndarray, lo: np.ndarray, out: np.ndarray) -> None:
    for i in numba.prange(out.size):
        s = lo[i]
        _arith_into(f[a[i], s:], f[b[i], s:], op, f[out[i], s:])


@parallel_kernel(**_JIT)
def _compare_rows(f: np.ndarray, c: np.ndarray, op: int, a: np.ndarray, b: np.ndarray, lo: np.ndarray,
                  out: np.ndarray) -> None:
    for i in numba.prange(out.size):
        s = lo[i]
        _compare_into(f[a[i], s:], f[b[i], s:], op, c[out[i], s:])


@parallel_kernel(**_JIT)
def _logic_rows(c: np.ndarray, either: bool, a: np.ndarray, b: np.ndarray, lo: np.ndarray, out: np.ndarray) -> None:
    for i in numba.prange(out.size):
        s = lo[i]
        _logic_into(c[a[i], s:], c[b[i], s:], either, c[out[i], s:])


@parallel_kernel(**_JIT)
def _where_rows(f: np.ndarray, c: np.ndarray, cond: np.ndarray, a: np.ndarray, b: np.ndarray, lo: np.ndarray,
                out: np.ndarray) -> None:
    for i in numba.prange(out.size):
        s = lo[i]
        _where_into(c[cond[i], s:], f[a[i], s:], f[b[i], s:], f[out[i], s:])


@parallel_kernel(**_JIT)
def _valid_from_rows(f: np.ndarray, x: np.ndarray, anchor: np.ndarray, offset: np.ndarray, lo: np.ndarray,
                     out: np.ndarray) -> None:
    """From day lo[i] on (the whole anchor still read for its first value: counted from lo[i],
    that day is offset − lo[i] days after it)."""
    for i in numba.prange(out.size):
        s = lo[i]
        if x[i] == out[i]:  # x's row, handed to its only reader (`_Plan`)
            _missing_before(f[anchor[i]], offset[i] - s, f[out[i], s:])
        else:
            _valid_from_into(f[x[i], s:], f[anchor[i]], offset[i] - s, f[out[i], s:])


@parallel_kernel(**_JIT)
def _missing_heads(arena: np.ndarray, rows: np.ndarray, upto: np.ndarray, blank: float) -> None:
    """arena[rows[i], :upto[i]] = blank (NaN, or NULL in the condition arena)."""
    for i in numba.prange(rows.size):
        line = arena[rows[i]]
        for t in range(min(upto[i], line.size)):
            line[t] = blank


@parallel_kernel(**_JIT)
def _finite_rows_inplace(f: np.ndarray, rows: np.ndarray) -> None:
    for i in numba.prange(rows.size):
        _finite_inplace(f[rows[i]])


# Fused element-wise trees. An element-wise node whose only reader is element-wise too is
# computed inside its reader's loop instead of in a row of its own: a tree of such nodes (a
# cluster, `_place`) runs day tile by day tile, its inner nodes' values in a scratch of a few
# tiles that stays in cache, and only its root written to the arena. 1,000 catalogue indicators
# are ~3,800 element-wise nodes of which ~2,900 are inner: rows that were each written to memory
# and read back once. Each node still runs its own per-node kernel above on the tile (same
# operations on each day, so the same bits). A member's operands and output are arena rows
# (≥ 0) or scratch slots (−1 − slot).

_TILE = 512  # days a tile: a cluster's scratch (a few rows of it) stays in the core's own cache

_FUSED_ARITH, _FUSED_COMPARE, _FUSED_LOGIC, _FUSED_WHERE = 1, 2, 3, 4
_FUSED: dict[str, tuple[int, int, int]] = {  # primitive -> (family, its kernel's code, inputs)
    **{op: (_FUSED_ARITH, code, 2) for op, code in
       (("add", _ADD), ("sub", _SUB), ("mul", _MUL), ("div", _DIV), ("ratio", _DIV))},
    **{op: (_FUSED_COMPARE, code, 2) for op, code in _CMP.items()},
    "and": (_FUSED_LOGIC, 0, 2),
    "or": (_FUSED_LOGIC, 1, 2),
    "where": (_FUSED_WHERE, 0, 3),
}


@numba.njit(**_JIT)
def _float_tile(f: np.ndarray, scratch: np.ndarray, at: int, lo: int, hi: int) -> np.ndarray:
    return f[at, lo:hi] if at >= 0 else scratch[-1 - at, : hi - lo]


@numba.njit(**_JIT)
def _flag_tile(c: np.ndarray, scratch: np.ndarray, at: int, lo: int, hi: int) -> np.ndarray:
    return c[at, lo:hi] if at >= 0 else scratch[-1 - at, : hi - lo]


@numba.njit(**_JIT)
def _fused_cluster(
    f: np.ndarray, c: np.ndarray, floats: np.ndarray, flags: np.ndarray, family: np.ndarray, sub: np.ndarray,
    a: np.ndarray, b: np.ndarray, x: np.ndarray, out: np.ndarray, first: int, end: int, since: int,
) -> None:
    """Members first … end − 1 (a cluster, its root last) over every tile of days from `since`."""
    days = f.shape[1]
    for lo in range(since, days, _TILE):
        hi = min(days, lo + _TILE)
        for g in range(first, end):
            kind = family[g]
            if kind == _FUSED_ARITH:
                _arith_into(_float_tile(f, floats, a[g], lo, hi), _float_tile(f, floats, b[g], lo, hi), sub[g],
                            _float_tile(f, floats, out[g], lo, hi))
            elif kind == _FUSED_COMPARE:
                _compare_into(_float_tile(f, floats, a[g], lo, hi), _float_tile(f, floats, b[g], lo, hi), sub[g],
                              _flag_tile(c, flags, out[g], lo, hi))
            elif kind == _FUSED_LOGIC:
                _logic_into(_flag_tile(c, flags, a[g], lo, hi), _flag_tile(c, flags, b[g], lo, hi), sub[g] == 1,
                            _flag_tile(c, flags, out[g], lo, hi))
            else:
                _where_into(_flag_tile(c, flags, a[g], lo, hi), _float_tile(f, floats, b[g], lo, hi),
                            _float_tile(f, floats, x[g], lo, hi), _float_tile(f, floats, out[g], lo, hi))


@parallel_kernel(**_JIT)
def _fused_rows(
    f: np.ndarray, c: np.ndarray, family: np.ndarray, sub: np.ndarray, a: np.ndarray, b: np.ndarray, x: np.ndarray,
    out: np.ndarray, starts: np.ndarray, slots: int, lo: np.ndarray,
) -> None:
    """The clusters of a group, cluster i being members starts[i] … starts[i + 1] − 1, computed
    from day lo[i] on."""
    for i in numba.prange(starts.size - 1):
        floats = np.empty((slots, _TILE))
        flags = np.empty((slots, _TILE), np.int8)
        _fused_cluster(f, c, floats, flags, family, sub, a, b, x, out, starts[i], starts[i + 1], lo[i])


def _rows(values: list[int]) -> np.ndarray:
    return np.array(values, dtype=np.int64)


# A graph with fewer nodes runs every group serially: its groups are small, and a process that
# only meets small graphs (a web app's requests) never compiles the parallel builds, which take
# ~1-3 s each on a first run with an empty cache.
_THREADED_NODES = 200


# each batched primitive's group runner: (float arena, condition arena, input rows per input,
# the members' parameters, output rows, the day each member is computed from (`_Plan`), whether
# the graph is big enough for threads)
Runner = Callable[[np.ndarray, np.ndarray, list[np.ndarray], Any, np.ndarray, np.ndarray, bool], None]


def _run_window(op: str) -> Runner:
    def run(f: np.ndarray, c: np.ndarray, ins: list[np.ndarray], params: list[tuple], out: np.ndarray,
            lo: np.ndarray, threaded: bool) -> None:
        kernels.window_rows(op).pick(out.size, threaded)(f, ins[0], _rows([int(p[0]) for p in params]), lo, out)

    return run


def _run_ewm(f: np.ndarray, c: np.ndarray, ins: list[np.ndarray], params: list[tuple], out: np.ndarray,
             lo: np.ndarray, threaded: bool) -> None:
    alpha = np.array([float(p[0]) for p in params], dtype=np.float64)
    kernels.ewm_rows.pick(out.size, threaded)(f, ins[0], alpha, _rows([int(p[1]) for p in params]), out)


def _run_arith(op: int) -> Runner:
    def run(f: np.ndarray, c: np.ndarray, ins: list[np.ndarray], params: list[tuple], out: np.ndarray,
            lo: np.ndarray, threaded: bool) -> None:
        _arith_rows.pick(out.size, threaded)(f, op, ins[0], ins[1], lo, out)

    return run


def _run_compare(op: int) -> Runner:
    def run(f: np.ndarray, c: np.ndarray, ins: list[np.ndarray], params: list[tuple], out: np.ndarray,
            lo: np.ndarray, threaded: bool) -> None:
        _compare_rows.pick(out.size, threaded)(f, c, op, ins[0], ins[1], lo, out)

    return run


def _run_logic(either: bool) -> Runner:
    def run(f: np.ndarray, c: np.ndarray, ins: list[np.ndarray], params: list[tuple], out: np.ndarray,
            lo: np.ndarray, threaded: bool) -> None:
        _logic_rows.pick(out.size, threaded)(c, either, ins[0], ins[1], lo, out)

    return run


def _run_where(f: np.ndarray, c: np.ndarray, ins: list[np.ndarray], params: list[tuple], out: np.ndarray,
               lo: np.ndarray, threaded: bool) -> None:
    _where_rows.pick(out.size, threaded)(f, c, ins[0], ins[1], ins[2], lo, out)


def _run_valid_from(f: np.ndarray, c: np.ndarray, ins: list[np.ndarray], params: list[tuple], out: np.ndarray,
                    lo: np.ndarray, threaded: bool) -> None:
    _valid_from_rows.pick(out.size, threaded)(f, ins[0], ins[1], _rows([int(p[0]) for p in params]), lo, out)


def _run_fused(f: np.ndarray, c: np.ndarray, ins: list[np.ndarray], params: tuple[np.ndarray, int],
               out: np.ndarray, lo: np.ndarray, threaded: bool) -> None:
    """A group of fused clusters: `ins` is (family, kernel code, operands a, b, x) per member,
    `params` (where each cluster starts, plus the end; scratch slots per cluster), `lo` per
    cluster."""
    starts, slots = params
    _fused_rows.pick(starts.size - 1, threaded)(f, c, *ins, out, starts, slots, lo)


_BATCHED: dict[tuple[str, int], Runner] = {  # (primitive, inputs) -> group runner
    **{(op, 1): _run_window(op) for op in kernels.WINDOWS},
    ("ewm", 1): _run_ewm,
    **{(op, 2): _run_arith(code) for op, code in
       (("add", _ADD), ("sub", _SUB), ("mul", _MUL), ("div", _DIV), ("ratio", _DIV))},
    **{(op, 2): _run_compare(code) for op, code in _CMP.items()},
    ("and", 2): _run_logic(False),
    ("or", 2): _run_logic(True),
    ("where", 3): _run_where,
    ("valid_from", 2): _run_valid_from,
}


# The primitives by number, for the plan's arrays: the condition arena's flag and the inputs an
# element-wise row kernel may write its output over (its loops read day t of every input before
# they write day t).
_CODES: tuple[str, ...] = tuple(PRIMITIVES)
_CODE = {op: c for c, op in enumerate(_CODES)}
_KNOWN = {op: c for op, c in _CODE.items() if op in _OPS}  # the primitives this backend computes
_IS_CONDITION = np.array([PRIMITIVES[op][0] == "b" for op in _CODES], dtype=np.bool_)
_IN_PLACE_SLOTS = {
    **{op: (0, 1) for op in ("add", "sub", "mul", "div", "ratio", "and", "or")},
    "where": (1, 2),
    "valid_from": (0,),
}
_IN_PLACE = np.array([[i in _IN_PLACE_SLOTS.get(op, ()) for i in range(3)] for op in _CODES], dtype=np.bool_)
# per primitive: the inputs with which its node is fused (0: never), its family and kernel code
_FUSES = np.array([_FUSED[op][2] if op in _FUSED else 0 for op in _CODES], dtype=np.int64)
_FUSED_FAMILY = np.array([_FUSED[op][0] if op in _FUSED else 0 for op in _CODES], dtype=np.int64)
_FUSED_CODE = np.array([_FUSED[op][1] if op in _FUSED else 0 for op in _CODES], dtype=np.int64)
_NO_FUSION = np.zeros(len(_CODES), dtype=np.int64)
# Per primitive, the days of its inputs that its value from day d on reads (`_needs`): the same
# days (element-wise), from d − n (a window or shift of n, its first parameter), every day (a
# recursion, whose every value depends on its whole past; the default), or for `valid_from` the
# same days of its series and every day of its anchor (whose first value it finds).
_SAME, _WINDOW, _ALL, _VALID_FROM = range(4)
_ELEMENT_WISE = {"price", "const", "branch", "date_between", "add", "sub", "mul", "div", "ratio", "pow", "min2",
                 "max2", "neg", "abs", "log", "exp", "sqrt", "sign", "where", "fill_null", "gt", "lt", "ge", "le",
                 "and", "or", "not", "null_if_any_missing"}
_WINDOWED = (kernels.WINDOWS.keys() - {"wilder_mean", "wilder_sum"}) | {"rolling_all"}
_READS = np.array([_SAME if op in _ELEMENT_WISE else _WINDOW if op in _WINDOWED else
                   _VALID_FROM if op == "valid_from" else _ALL for op in _CODES], dtype=np.int64)
# Per primitive, whether its float values may hold ±inf, which the boundary makes missing: 0
# never (a leaf or constant made finite on the way in, arithmetic that makes a non-finite result
# missing, a day count, a condition), 1 where a float input may (a selection or sign change of
# its inputs' values), 2 always (a window's or recursion's sum may overflow).
_NEVER_INFINITE = {"price", "const", "branch", "add", "sub", "mul", "div", "ratio", "pow", "log", "exp", "sqrt",
                   "sign", "rolling_argmax_age", "rolling_argmin_age"}
_PASSES_INFINITE = {"where", "valid_from", "shift", "min2", "max2", "neg", "abs", "fill_null", "forward_fill",
                    "rolling_min", "rolling_max"}
_INFINITE = np.array([0 if op in _NEVER_INFINITE or PRIMITIVES[op][0] == "b" else 1 if op in _PASSES_INFINITE else 2
                      for op in _CODES], dtype=np.int64)


@numba.njit(**_JIT)
def _by_key(items: np.ndarray, key: np.ndarray, keys: int) -> np.ndarray:
    """`items` stably sorted by key[item] (0 ≤ key < keys): a counting sort, which compiles in a
    fraction of the time `np.argsort` takes on a first run."""
    first = np.zeros(keys + 1, np.int64)
    for item in items:
        first[key[item] + 1] += 1
    for k in range(keys):
        first[k + 1] += first[k]
    out = np.empty_like(items)
    for item in items:
        out[first[key[item]]] = item
        first[key[item]] += 1
    return out


@numba.njit(**_JIT)
def _place(
    start: np.ndarray, flat: np.ndarray, code: np.ndarray, computed: np.ndarray, scalar: np.ndarray,
    kept: np.ndarray, condition: np.ndarray, in_place: np.ndarray, fuses: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, int, int, int, int]:
    """Rows and groups for a graph given as arrays in topological order (node k reads
    flat[start[k]:start[k+1]]; `computed`: its value is known while planning, a constant when
    `scalar`): (row of each node (−1: none); the nodes computed by kernels, sorted by group (depth,
    primitive and number of inputs), then cluster; where a new group starts among them; their
    input and output rows (3 × nodes, nodes; −1 − slot for a scratch slot of a cluster); each
    one's cluster (its root, or itself); scratch slots per root; float rows, condition rows, most
    rows live at once, rows handed on).

    A node of a primitive with `fuses[code]` inputs whose only reader is one too is inner: it is
    computed in its reader's tile loop, without a row. A cluster (an inner node's reader, and so
    on up to the first that is not inner: its root) is one member of a group of its own kind
    at its root's depth, where its inner nodes' inputs are read. A node that is the only reader
    of an input (`in_place`, same arena, not kept) takes that input's row; a root, any outside
    input of its cluster (it writes a tile of days after every read of it)."""
    n = code.size
    depth = np.zeros(n, np.int64)
    reads = np.zeros(n, np.int64)
    reader = np.full(n, -1, np.int64)  # the last (for an inner node: the only) reader
    has_row = kept.copy()
    for k in range(n):
        if computed[k]:
            has_row[k] |= not scalar[k]
            continue
        d = 0
        for p in range(start[k], start[k + 1]):
            j = flat[p]
            if not scalar[j] and depth[j] >= d:
                d = depth[j] + 1
        depth[k] = d
        has_row[k] = True
        for p in range(start[k], start[k + 1]):
            j = flat[p]
            reads[j] += 1
            reader[j] = k
            has_row[j] = True  # a constant read by an array: a row of it
    fusing = np.zeros(n, np.bool_)
    for k in range(n):
        fusing[k] = not computed[k] and fuses[code[k]] > 0 and fuses[code[k]] == start[k + 1] - start[k]
    inner = np.zeros(n, np.bool_)
    for k in range(n):
        inner[k] = fusing[k] and not kept[k] and reads[k] == 1 and fusing[reader[k]]
    root = np.arange(n)
    for k in range(n - 1, -1, -1):
        if inner[k]:
            root[k] = root[reader[k]]
    fused = np.zeros(n, np.bool_)  # a cluster's root
    for k in range(n):
        if inner[k]:
            fused[root[k]] = True
            has_row[k] = False
    last = np.zeros(n, np.int64)  # depth at which the last reader reads
    for k in range(n):
        if computed[k]:
            continue
        d = depth[root[k]]
        for p in range(start[k], start[k + 1]):
            j = flat[p]
            if last[j] < d:
                last[j] = d
    takes = np.full(n, -1, np.int64)
    taken = np.zeros(n, np.bool_)
    for k in range(n):
        if computed[k]:
            continue
        r = root[k]
        if takes[r] >= 0:
            continue
        for i in range(min(start[k + 1] - start[k], 3)):
            x = flat[start[k] + i]
            if fused[r]:
                if inner[x]:
                    continue
            elif not in_place[code[k], i]:
                continue
            if reads[x] == 1 and not kept[x] and condition[x] == condition[r] and not taken[x]:
                takes[r] = x
                taken[x] = True
                break
    # the nodes with a row by depth, and the rows handed on after each depth (plain loops: array
    # expressions would each be compiled on a first run, seconds in all)
    levels = 1
    kinds = in_place.shape[0] + 1  # the primitives, and fused clusters
    wide = 5  # inputs 0-3, and 4 for "more" (no row kernel takes more than 3)
    with_row = dies = work = 0
    for k in range(n):
        levels = max(levels, depth[k] + 1)
        with_row += has_row[k]
        dies += has_row[k] and not kept[k] and not taken[k]
        work += not computed[k]
    members = np.empty(with_row, np.int64)
    dying = np.empty(dies, np.int64)
    kernels = np.empty(work, np.int64)
    dies_at = np.empty(n, np.int64)
    key = np.empty(n, np.int64)
    with_row = dies = work = 0
    for k in range(n):
        dies_at[k] = max(last[k], depth[k])
        r = root[k]
        if fused[r]:
            key[k] = (depth[r] * kinds + kinds - 1) * wide
        else:
            key[k] = (depth[k] * kinds + code[k]) * wide + min(start[k + 1] - start[k], wide - 1)
        if has_row[k]:
            members[with_row] = k
            with_row += 1
            if not kept[k] and not taken[k]:
                dying[dies] = k
                dies += 1
        if not computed[k]:
            kernels[work] = k
            work += 1
    members = _by_key(members, depth, levels)
    dying = _by_key(dying, dies_at, levels)
    row = np.full(n, -1, np.int64)
    free = np.empty((2, n), np.int64)
    top = np.zeros(2, np.int64)
    size = np.zeros(2, np.int64)
    live = peak = 0
    freed = 0
    for k in range(n):
        freed += taken[k]
    m = q = 0
    for d in range(levels):
        while m < members.size and depth[members[m]] == d:
            k = members[m]
            m += 1
            if takes[k] >= 0:
                row[k] = row[takes[k]]
                continue
            a = 1 if condition[k] else 0
            if top[a]:
                top[a] -= 1
                row[k] = free[a, top[a]]
            else:
                row[k] = size[a]
                size[a] += 1
            live += 1
        peak = max(peak, live)
        while q < dying.size and dies_at[dying[q]] == d:
            k = dying[q]
            q += 1
            a = 1 if condition[k] else 0
            free[a, top[a]] = row[k]
            top[a] += 1
            live -= 1
            freed += 1
    # the groups: the nodes computed by kernels, by group and cluster (in topological order
    # within one); each member's output and input rows (up to 3; a group's inputs are
    # contiguous slices), an inner node's a scratch slot of its cluster
    kernels = _by_key(_by_key(kernels, root, n), key, levels * kinds * wide)
    slot = np.zeros(n, np.int64)
    slots = np.zeros(n, np.int64)
    groups = 0
    for g in range(kernels.size):
        k = kernels[g]
        groups += g > 0 and key[k] != key[kernels[g - 1]]
        if inner[k]:
            slot[k] = slots[root[k]]
            slots[root[k]] += 1
    bounds = np.empty(groups, np.int64)
    ins = np.full((3, kernels.size), -1, np.int64)
    outs = np.empty(kernels.size, np.int64)
    groups = 0
    for g in range(kernels.size):
        k = kernels[g]
        if g and key[k] != key[kernels[g - 1]]:
            bounds[groups] = g
            groups += 1
        outs[g] = -1 - slot[k] if inner[k] else row[k]
        for i in range(min(start[k + 1] - start[k], 3)):
            x = flat[start[k] + i]
            ins[i, g] = -1 - slot[x] if inner[x] else row[x]
    return row, kernels, bounds, ins, outs, root[kernels], slots, size[0], size[1], peak, freed


@numba.njit(**_JIT)
def _unbounded(start: np.ndarray, flat: np.ndarray, code: np.ndarray, rule: np.ndarray) -> np.ndarray:
    """Whether each node (topological order) may hold ±inf, by its primitive's `rule` (`_INFINITE`)."""
    n = code.size
    out = np.zeros(n, np.bool_)
    for k in range(n):
        r = rule[code[k]]
        if r == 2:
            out[k] = True
        elif r == 1:
            for p in range(start[k], start[k + 1]):
                if out[flat[p]]:
                    out[k] = True
                    break
    return out


@numba.njit(**_JIT)
def _needs(start: np.ndarray, flat: np.ndarray, code: np.ndarray, reads: np.ndarray, window: np.ndarray,
           need: np.ndarray) -> None:
    """`need` (the first day each node's value is read; the number of days where nothing reads
    it) carried from the outputs' to every node, readers before inputs, by the days each
    primitive reads (`_READS`; `window`: a window's or shift's n)."""
    for k in range(code.size - 1, -1, -1):
        d = need[k]
        rule = reads[code[k]]
        for i in range(start[k + 1] - start[k]):
            j = flat[start[k] + i]
            if rule == _SAME or (rule == _VALID_FROM and i == 0):
                e = d
            elif rule == _WINDOW:
                e = max(d - max(window[k], 0), 0)
            else:
                e = 0
            if e < need[j]:
                need[j] = e


@numba.njit(**_JIT)
def _foldable(start: np.ndarray, flat: np.ndarray, const: np.ndarray) -> np.ndarray:
    """The nodes (topological order) that are leaves or read only constants and such nodes: the
    only ones whose value can be known while planning."""
    n = const.size
    maybe = np.zeros(n, np.bool_)
    count = 0
    for k in range(n):
        leaf = start[k] == start[k + 1]
        ok = not leaf
        for p in range(start[k], start[k + 1]):
            j = flat[p]
            if not (const[j] or (maybe[j] and start[j] != start[j + 1])):
                ok = False
                break
        maybe[k] = leaf or ok
        count += maybe[k]
    out = np.empty(count, np.int64)
    count = 0
    for k in range(n):
        if maybe[k]:
            out[count] = k
            count += 1
    return out


class _Plan:
    """Where every node of a graph is computed: scalars (constants and element-wise ops of
    constants, computed while planning), and arena rows for the arrays, with the nodes grouped
    by depth (1 + the deepest array input's) and primitive. A row is handed to a later node once
    the depth of its node's last reader has been computed, so the arenas hold about the arrays
    of two depths and the outputs, not one array per node. Python walks the graph's objects once
    (`topological`, ~0.5 µs a node) and writes it down as arrays; `_foldable` names the few
    nodes whose value is known while planning, and the placing is `_place`. `batched` names each group's runner by
    (primitive, inputs) (the CUDA backend gives its own); a group without one runs node by node.
    `fused` runs a group of fused element-wise clusters; without it (None) nothing is fused."""

    def __init__(self, outputs: list[Node], ctx: _Ctx, batched: Mapping[tuple[str, int], Any] = _BATCHED,
                 fused: Runner | None = _run_fused, since: Sequence[int] | None = None) -> None:
        order = topological(outputs)  # inputs before readers
        position = dict(zip(order, range(len(order))))  # nodes hash by identity
        inputs = [node.inputs for node in order]
        flat = [position[j] for ins in inputs for j in ins]
        start = list(accumulate(map(len, inputs), initial=0))
        try:
            code = [_KNOWN[node.op] for node in order]
        except KeyError as e:
            raise NotImplementedError(f"numba backend: no kernel for primitive {e.args[0]!r}") from None
        code_of = np.array(code, dtype=np.int64)
        start_of, flat_of = _rows(start), _rows(flat)
        # leaves, and ops of constants only (computed now: a constant, or an array for a window
        # of one); `_foldable` names the nodes that may be such ops
        values: dict[int, Value] = {}  # position -> value known while planning
        scalar = np.zeros(len(order), dtype=np.bool_)
        for k in _foldable(start_of, flat_of, code_of == _CODE["const"]).tolist():
            ins = flat[start[k]:start[k + 1]]
            if ins and not all(scalar[j] for j in ins):
                continue
            node = order[k]
            if node.op == "price":  # copied into its row: no copy of its own
                value = _price_row(node.params, ctx)
            else:
                value = _OPS[node.op]([values[j] for j in ins], node.params, ctx)
            values[k] = value
            scalar[k] = not isinstance(value, np.ndarray)
        n = len(order)
        wanted = list(map(position.__getitem__, outputs))
        computed = np.zeros(n, dtype=np.bool_)
        computed[list(values)] = True
        kept = np.zeros(n, dtype=np.bool_)
        kept[wanted] = True
        condition = _IS_CONDITION[code_of]
        row, work, starts, ins, outs, cluster, slots, floats, flags, peak, freed = _place(
            start_of, flat_of, code_of, computed, scalar, kept, condition, _IN_PLACE,
            _FUSES if fused is not None else _NO_FUSION)
        # the first day each node is read (`since`: each output's; from day 0 without it)
        need = np.full(n, ctx.n, dtype=np.int64)
        need[wanted] = np.clip(since, 0, ctx.n) if since is not None else 0
        windowed = np.flatnonzero(_READS[code_of] == _WINDOW)
        window = np.zeros(n, dtype=np.int64)
        window[windowed] = [int(order[k].params[0]) for k in windowed.tolist()]
        _needs(start_of, flat_of, code_of, _READS, window, need)
        self.need = need
        self.order, self.wanted = order, wanted
        self.unbounded = _unbounded(start_of, flat_of, code_of, _INFINITE)[wanted].tolist()  # per output
        self.row, self.condition = row.tolist(), condition.tolist()  # (−1: no row), per position
        self.size = (int(floats), int(flags))
        self.live_peak, self.freed, self.inner = int(peak), int(freed), int((outs < 0).sum())
        # what each row starts as: the values known while planning that have a row
        self.ready = {k: value for k, value in values.items() if row[k] >= 0}
        # the work, depth by depth: (runner, input rows, parameters, output rows) per group of a
        # batched primitive, (None, position, input positions, None) per node of another; and
        # the day each member (each cluster of a fused group) is computed from, None for a node
        self.steps: list[tuple[Runner | None, Any, Any, Any]] = []
        self.from_day: list[np.ndarray | None] = []
        work_list = work.tolist()
        bounds = [0, *starts.tolist(), len(work_list)] if work_list else [0]
        for lo, hi in zip(bounds[:-1], bounds[1:]):
            k = work_list[lo]
            if cluster[lo] != k:  # fused clusters: a cluster's first member is inner, its root last
                roots = cluster[lo:hi]
                ends = np.flatnonzero(roots[1:] != roots[:-1]) + 1
                codes = code_of[work[lo:hi]]
                self.steps.append((fused, [_FUSED_FAMILY[codes], _FUSED_CODE[codes], *ins[:, lo:hi]],
                                   (np.concatenate(([0], ends, [hi - lo])), int(slots[roots].max())), outs[lo:hi]))
                self.from_day.append(need[roots[np.concatenate(([0], ends))]])
                continue
            width = start[k + 1] - start[k]
            runner = batched.get((order[k].op, width))
            if runner is not None:
                params = [order[j].params for j in work_list[lo:hi]]
                self.steps.append((runner, [ins[i, lo:hi] for i in range(width)], params, outs[lo:hi]))
                self.from_day.append(need[work[lo:hi]])
            else:
                self.steps.extend((None, j, flat[start[j]:start[j + 1]], None) for j in work_list[lo:hi])
                self.from_day.extend([None] * (hi - lo))


# glibc serves a freed block again from its heap up to this size (its mmap threshold rises to
# the size of the blocks freed, up to 32 MB on 64-bit); a bigger one is mapped anew each time
_MAPPED = 32 << 20


class _Buffers:
    """Arena memory kept between calls. A fresh arena over 32 MB is mapped anew by the allocator
    and zeroed by the kernel on first touch: 1,349 rows × 6,783 days (73 MB, 1,000 × 1,000)
    cost ~9 ms a call that way; a smaller one comes from the heap, already touched. A buffer
    goes back to the pool only when the last array viewing it is gone (the views returned to
    the caller included): the arena is an array over a `bytearray` whose end a
    `weakref.finalize` watches, so a buffer is never lent twice. Buffers are told apart by
    position, never by `==` (which compares bytearrays' contents)."""

    def __init__(self, keep: int = 4) -> None:
        self._keep = keep
        self._forget()
        os.register_at_fork(after_in_child=self._forget)  # as `gpubt.parallel` does for its lock

    def _forget(self) -> None:
        self._lock = threading.Lock()
        self._free: list[bytearray] = []

    def arena(self, rows: int, days: int, dtype: type) -> np.ndarray:
        size = rows * days * np.dtype(dtype).itemsize
        if size < _MAPPED:
            return np.empty((rows, days), dtype)
        with self._lock:
            free = self._free
            best = -1  # the smallest that fits
            for i in range(len(free)):
                if len(free[i]) >= size and (best < 0 or len(free[i]) < len(free[best])):
                    best = i
            memory = free.pop(best) if best >= 0 else bytearray(size)
        flat = np.frombuffer(memory, dtype, rows * days)
        weakref.finalize(flat, self._give, memory).atexit = False
        return flat.reshape(rows, days)

    def _give(self, memory: bytearray) -> None:
        with self._lock:
            free = self._free
            free.append(memory)
            if len(free) > self._keep:
                free.pop(min(range(len(free)), key=lambda i: len(free[i])))


_BUFFERS = _Buffers()


class NumbaBackend:
    """`Backend` over NumPy arrays and Numba kernels on the CPU, one kernel call per group of
    nodes (a primitive at one depth of the graph)."""

    name = "numba"

    def __init__(self, fuse: bool = True) -> None:
        self.fuse = fuse  # element-wise trees computed in day tiles (`_run_fused`); False: a row per node
        self.live_peak = 0  # most node arrays held at once during the last evaluate
        self.freed = 0  # arrays whose rows were handed on during the last evaluate
        self.inner = 0  # nodes computed inside a fused cluster, without a row, in the last evaluate
        self.nodes = 0  # nodes in the last evaluate's graph
        self.calls = 0  # kernel calls (groups and lone nodes) in the last evaluate

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
        fused, rest = split(outputs)
        first = first or {}
        # Planning makes small containers per node while the graph's own objects (hundreds of
        # thousands for a big tree) are alive; nothing made here forms a cycle.
        with paused():
            packed = Packed(fused) if fused else None
            # the first day each of `rest` is read: its own, or a condition list's lookback before
            since = {node: first.get(node, 0) for node in outputs if node.op != "lines"}
            if packed is not None:
                for node, back in zip(fused, packed.lookback.tolist()):
                    day = max(first.get(node, 0) - back, 0)
                    for series in node.inputs:
                        if since.get(series, day + 1) > day:
                            since[series] = day
            values, floats, row = self._evaluate(rest, market, branches, [since[node] for node in rest])
            if fused:  # their series are rows of the float arena already
                values.update(evaluate_lines(fused, floats, row, values, first, packed))
        return {node: values[node] for node in outputs}

    def _evaluate(
        self,
        outputs: list[Node],
        market: Market,
        branches: Mapping[object, np.ndarray],
        since: list[int],
    ) -> tuple[dict[Node, np.ndarray], np.ndarray, dict[Node, int]]:
        """(each output's values, missing before the first day it is read (`since`), the float
        arena, each float output's row there)."""
        ctx = _Ctx(market, branches)
        with np.errstate(all="ignore"):
            plan = _Plan(outputs, ctx, fused=_run_fused if self.fuse else None, since=since)
            order, row, condition = plan.order, plan.row, plan.condition
            arenas = (_BUFFERS.arena(plan.size[0], ctx.n, np.float64), _BUFFERS.arena(plan.size[1], ctx.n, np.int8))
            floats, flags = arenas
            for k, value in plan.ready.items():
                arenas[condition[k]][row[k]] = value if isinstance(value, np.ndarray) else _scalar(value)
            threaded = len(order) >= _THREADED_NODES
            for (runner, inputs, params, out), lo in zip(plan.steps, plan.from_day):
                if runner is not None:
                    runner(floats, flags, inputs, params, out, lo, threaded)
                else:  # a lone node: `inputs` is its position, `params` its inputs' positions
                    k = inputs
                    args = [arenas[condition[j]][row[j]] for j in params]
                    arenas[condition[k]][row[k]] = _OPS[order[k].op](args, order[k].params, ctx)
        wanted = plan.wanted
        # the days before an output is read were computed from whatever its row held, or not at all
        computed = [k for k in wanted if k not in plan.ready and plan.need[k] > 0]
        for arena, blank in ((0, _NAN), (1, NULL)):
            heads = [k for k in computed if condition[k] == arena]
            if heads:
                _missing_heads.pick(len(heads), threaded)(
                    arenas[arena], _rows([row[k] for k in heads]), plan.need[heads], blank)
        float_rows = {order[k]: row[k] for k in wanted if not condition[k]}
        overflow = [row[k] for k, unbounded in zip(wanted, plan.unbounded) if unbounded and not condition[k]]
        if overflow:  # the boundary: ±inf (a window's overflow) → NaN
            _finite_rows_inplace.pick(len(overflow), threaded)(floats, _rows(overflow))
        self.live_peak, self.freed, self.inner = plan.live_peak, plan.freed, plan.inner
        self.nodes, self.calls = len(order), len(plan.steps)
        values = {order[k]: arenas[condition[k]][row[k]] for k in wanted}
        return values, floats, float_rows


__all__ = ["NumbaBackend"]
