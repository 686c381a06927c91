"""CPU Polars backend: the whole graph as ONE lazy query, collected once on the in-memory engine.

The query starts from a frame holding only what the graph reads (one column per market (ticker,
field), one per branch leaf, the dates, the row index); every other node becomes one column
`_n<i>`, added level by level (`with_columns` per depth, so a column only reads columns of
earlier levels and the columns of one level are computed in parallel). Constants are inlined as
literals into element-wise expressions; a shift, window or recursion of a constant reads it
repeated per day.

Missing values are Polars nulls throughout: float columns never hold NaN or ±inf (Polars orders
NaN above every number, and the spec makes a non-finite result missing), so every arithmetic
result that is not finite becomes null (a check left out where the value intervals of
`gpubt.ir.bounds` prove the result finite). Conditions are nullable booleans, whose `&`, `|` and `~`
are Kleene's already. At the boundary floats come back as float64 with NaN, conditions as int8
1/0/-1 (`gpubt.backends.base`).

Exactness choices (the reference is a plain loop; parity is 1e-9 relative):
* Polars divides by a scalar as a multiplication by its reciprocal (an ulp off, which Stochastic
  RSI or CCI on a nearly flat stretch magnify); a constant divisor is read from a materialised
  column instead, where the division is exact.
* The window sums (`rolling_sum`, `rolling_mean`, `rolling_dot`: each window summed afresh,
  oldest first, the reference's own order, where a sliding sum drifts on a series spanning many
  orders of magnitude and leaves residues after zeros; Polars' weighted rolling sum has that
  arithmetic but cost ~200 µs a column), `rolling_std` (Polars' one-pass form loses digits on
  prices far from 0), `rolling_min`/`rolling_max` (Polars' cost ~115 µs a column, the kernels'
  O(1)-a-day blocks ~25 µs), `wilder_mean`/`wilder_sum` and `ewm` (the reference's own arithmetic and
  SMA seed), and the primitives Polars has no form for run as our Numba kernels
  (`gpubt.backends.kernels`): those of one level of the query in one `map_batches` call
  (`_kernels`).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import polars as pl

from gpubt.backends import kernels
from gpubt.backends.base import NULL
from gpubt.backends.lines import evaluate_lines, split
from gpubt.data.market import Market
from gpubt.ir.bounds import Bounds, Interval, leaf_interval
from gpubt.ir.nodes import Node, topological

if TYPE_CHECKING:
    from polars.expr.whenthen import When

ENGINE = "in-memory"
_AS_BUILT = pl.QueryOptFlags.none()
# graph nodes from which a graph is big: its dead columns are dropped level by level, and its
# kernel primitives' rows run in Numba's threads
_BIG = 1_000
_DATE = "_date"
_ROW_NAME = "_row"


# Literals made once: a Python number in an expression, or a when/then without otherwise (an
# implicit null), costs a `pl.lit` call each time, ~10 µs, thousands of times for a big graph.
_NULL = pl.lit(None, dtype=pl.Float64)
_NAN = pl.lit(float("nan"), dtype=pl.Float64)


def _finite(e: pl.Expr) -> pl.Expr:
    """Missing where the value is not finite (NaN, ±inf)."""
    return pl.when(e.is_finite()).then(e).otherwise(_NULL)


def _both(a: pl.Expr, b: pl.Expr, e: pl.Expr) -> pl.Expr:
    """e where a and b are present (min_horizontal/max_horizontal skip nulls; we must not)."""
    return pl.when(a.is_not_null() & b.is_not_null()).then(e).otherwise(_NULL)


# The primitives Polars has no exact form for (or, for `ewm` and the window sums, none on its GPU
# engine) run as our Numba kernels, all those of one level of the query in one `map_batches` call:
# the windows and `ewm` through their row form (`kernels.window_rows`, `kernels.ewm_rows`), their
# rows in Numba's threads on a big graph, the others (`_LONE`) member by member. A call per column
# cost ~250 µs of GIL-bound glue each (1,000 × 1,000: 106 ms for its 400 such columns).
_ROWS = (kernels.WINDOWS.keys() - {"shift"}) | {"ewm"}  # Polars shifts exactly itself
_LONE: dict[str, Callable[[tuple], tuple[Callable[..., np.ndarray], tuple]]] = {  # kernel, its parameters
    "rolling_dot": lambda p: (kernels.rolling_dot, (np.array(p[0], dtype=np.float64),)),
    "rolling_dot_centered": lambda p: (kernels.rolling_dot_centered, (np.array(p[0], dtype=np.float64),)),
    "ewm_var": lambda p: (kernels.ewm_var, (int(p[0]),)),
    "laguerre_rsi": lambda p: (kernels.laguerre_rsi, (float(p[0]),)),
}
_KERNELS = _ROWS | _LONE.keys()


def _kernels(nodes: list[Node], exprs: _Exprs, name: str, threaded: bool) -> pl.Expr:
    """A struct column `name` whose fields are the columns of `nodes` (kernel primitives of one
    level), computed in one matrix: the inputs' rows, then the outputs'."""
    inputs = list(dict.fromkeys(i for node in nodes for i in node.inputs))
    row = {node: k for k, node in enumerate(inputs)}
    members: dict[str, list[Node]] = {}
    for node in nodes:
        members.setdefault(node.op, []).append(node)
    nodes = [node for group in members.values() for node in group]  # the output rows, op by op
    rows, lone, size = [], [], len(inputs)  # size: the matrix's rows so far
    for op, group in members.items():
        out = size + np.arange(len(group), dtype=np.int64)
        size += len(group)
        if op in _LONE:
            lone.extend((*_LONE[op](node.params), [row[i] for i in node.inputs], k) for node, k in zip(group, out))
            continue
        x = np.array([row[node.inputs[0]] for node in group], dtype=np.int64)
        if op == "ewm":
            alpha = np.array([float(node.params[0]) for node in group], dtype=np.float64)
            seed = np.array([int(node.params[1]) for node in group], dtype=np.int64)
            rows.append((kernels.ewm_rows.pick(len(group), threaded), (x, alpha, seed, out)))
        else:
            n = np.array([int(node.params[0]) for node in group], dtype=np.int64)
            rows.append((kernels.window_rows(op).pick(len(group), threaded), (x, n, np.zeros_like(n), out)))
    fields = [exprs.names[node] for node in nodes]

    def run(series: Sequence[pl.Series]) -> pl.Series:
        arena = np.empty((size, len(series[0])))
        for k, s in enumerate(series):
            arena[k] = s.to_numpy()  # no nulls (NaN instead): a view, not a conversion
        for kernel, args in rows:
            kernel(arena, *args)
        for kernel, params, ins, out in lone:
            arena[out] = kernel(*[arena[i] for i in ins], *params)
        values = arena[len(inputs):]
        return pl.DataFrame([pl.Series(f, values[j], nan_to_null=True) for j, f in enumerate(fields)]).to_struct(name)

    args = [
        (pl.repeat(exprs.arg(node), pl.len()) if node.op == "const" else exprs.arg(node)).fill_null(_NAN)
        for node in inputs
    ]
    return pl.map_batches(args, run, return_dtype=pl.Struct({f: pl.Float64 for f in fields})).alias(name)


# each row's index: a column of the frame, not `int_range`, which every reader would compute
# afresh (and which Polars' GPU engine refuses)
_ROW = pl.col(_ROW_NAME)


def _first_index(anchor: pl.Expr) -> pl.Expr:
    """Row index of the anchor's first present value (null when it has none)."""
    return _ROW.filter(anchor.is_not_null()).min()


def _rolling_all(x: pl.Expr, n: int) -> pl.Expr:
    """Kleene AND over the last n days; days before the first count as null."""
    false = (~x).fill_null(False).cast(pl.Float64).rolling_max(n, min_samples=1) > 0.0
    null = x.is_null().cast(pl.Float64).rolling_max(n, min_samples=1) > 0.0
    short = _ROW < n - 1
    return (
        pl.when(false)
        .then(pl.lit(False))
        .when(null | short)
        .then(pl.lit(None, dtype=pl.Boolean))
        .otherwise(pl.lit(True))
    )


def _date_between(fm: int, fd: int, tm: int, td: int) -> pl.Expr:
    date = pl.col(_DATE)
    md = date.dt.month().cast(pl.Int32) * 100 + date.dt.day().cast(pl.Int32)
    lo, hi = fm * 100 + fd, tm * 100 + td
    if lo <= hi:
        return (md >= lo) & (md <= hi)
    return (md >= lo) | (md <= hi)


class PolarsBackend:
    """`Backend` over Polars' lazy API on the CPU (in-memory engine).

    `staged=True` collects the query in stages, none calling Python on `engine` (`_stages`), as
    Polars' GPU engine needs (`gpubt.backends.polars_gpu`); on the CPU engine that is how the
    staging is tested."""

    name = "polars"
    engine: str | pl.GPUEngine = ENGINE

    def __init__(self, staged: bool = False, stage_bytes: int | None = None) -> None:
        self.staged = staged
        self.stage_bytes = stage_bytes  # the most one staged collect's columns may take (None: no limit)
        self.collects = 0  # how many queries were collected on `engine` (one per evaluate call unless staged)

    # -- public --------------------------------------------------------------------------------

    def evaluate(
        self,
        outputs: Sequence[Node],
        market: Market,
        branches: Mapping[object, np.ndarray],
        first: Mapping[Node, int] | None = None,
    ) -> dict[Node, np.ndarray]:
        outputs = list(dict.fromkeys(outputs))
        fused, rest = split(outputs)
        floats = [node for node in rest if node.kind == "f"]
        arena = np.empty((0, market.n_days))
        values: dict[Node, np.ndarray] = {}
        if rest:
            frame, names = self._frame(rest, market, branches)
            arena = self._float_rows(frame.select([names[node] for node in floats]), market.n_days)
            values = dict(zip(floats, arena))
            for node in rest:
                if node.kind == "b":
                    column = frame.get_column(names[node])
                    values[node] = column.cast(pl.Int8).fill_null(int(NULL)).to_numpy().astype(np.int8)
        if fused:  # their series are rows of the float outputs' matrix already
            row = {node: i for i, node in enumerate(floats)}
            values.update(evaluate_lines(fused, arena, row, values, first))
        return {node: values[node] for node in outputs}

    def query(
        self,
        outputs: Sequence[Node],
        market: Market,
        branches: Mapping[object, np.ndarray],
    ) -> tuple[pl.LazyFrame, dict[Node, str]]:
        """The lazy query computing `outputs`, and the column name of each node."""
        parts = self._parts(outputs, market, branches)
        query = pl.LazyFrame(parts.base)
        for level in parts.levels:
            query = query.with_columns(level.columns if level.kernels is None else [*level.columns, level.kernels])
            if level.kernels is not None:
                query = query.unnest(level.struct)
            if level.dead:
                query = query.drop(level.dead)
        return query.select(parts.outputs), parts.names

    def _frame(
        self, outputs: Sequence[Node], market: Market, branches: Mapping[object, np.ndarray]
    ) -> tuple[pl.DataFrame, dict[Node, str]]:
        """The outputs' columns, and the column name of each node: the query collected once, or
        in stages."""
        if self.staged:
            parts = self._parts(outputs, market, branches)
            return self._stages(parts), parts.names
        query, names = self.query(outputs, market, branches)
        return self._collect(query), names

    def _stages(self, parts: _Parts) -> pl.DataFrame:
        """The query collected in stages, none of them calling Python on `engine`: the Polars
        columns of the levels up to one with kernel primitives in one collect on `engine`, then
        that level's kernels on the host (Python's `map_batches`, on the CPU engine), and so on.
        The frame lives on the host; each collect reads only the columns its levels read."""
        frame = pl.DataFrame(parts.base)
        pending: list[list[pl.Expr]] = []  # the Polars columns of the levels not collected yet
        dead: list[str] = []  # columns their last reader has been collected for
        for level in parts.levels:
            if level.columns:
                pending.append(level.columns)
            dead.extend(level.dead)
            if level.kernels is None:
                continue
            frame = self._stage(frame, pending)
            pending = []
            kernels = frame.lazy().select(level.kernels).unnest(level.struct)
            frame = frame.hstack(kernels.collect(engine=ENGINE, optimizations=_AS_BUILT)).drop(dead)
            dead = []
        return self._stage(frame, pending).drop(dead).select(parts.outputs)

    def _stage(self, frame: pl.DataFrame, levels: list[list[pl.Expr]]) -> pl.DataFrame:
        """The frame with the columns of `levels` (each reading the frame and the levels before)
        added: in one collect on `engine` over the frame's columns they read, or in as few as
        keep each collect's columns (read and made) within `stage_bytes`."""
        column_bytes = 9 * frame.height  # a float64 and its validity bit, rounded up
        limit = None if self.stage_bytes is None else max(self.stage_bytes // column_bytes, 1)
        part: list[list[pl.Expr]] = []  # the levels' columns of the next collect
        reads: set[str] = {_ROW_NAME}  # the frame's columns it reads
        made: dict[str, None] = {}  # the columns it makes, in order
        for columns in levels:
            part.append([])
            for e in columns:
                roots = set(e.meta.root_names())
                if limit is not None and made and len(reads | (roots - made.keys())) + len(made) + 1 > limit:
                    frame = self._collect_part(frame, part, reads, list(made))
                    part, reads, made = [[]], {_ROW_NAME}, {}
                part[-1].append(e)
                reads |= roots - made.keys()
                made[e.meta.output_name()] = None
        return self._collect_part(frame, part, reads, list(made)) if made else frame

    def _collect_part(
        self, frame: pl.DataFrame, levels: list[list[pl.Expr]], reads: set[str], made: list[str]
    ) -> pl.DataFrame:
        """The frame with the columns `made` by `levels` added, collected on `engine` from its
        `reads`."""
        query = frame.lazy().select([c for c in frame.columns if c in reads])
        for columns in levels:
            if columns:
                query = query.with_columns(columns)
        return frame.hstack(self._collect(query.select(made)))

    def _parts(
        self, outputs: Sequence[Node], market: Market, branches: Mapping[object, np.ndarray]
    ) -> _Parts:
        """The query's pieces: a column per node, level by level (`query` chains them)."""
        order = topological(outputs)
        wanted = set(outputs)
        names: dict[Node, str] = {}
        base: dict[str, pl.Series] = {
            _DATE: market.derived(("polars", _DATE), lambda: pl.Series(_DATE, market.dates, dtype=pl.Date)),
            _ROW_NAME: market.derived(
                ("polars", _ROW_NAME), lambda: pl.Series(_ROW_NAME, np.arange(market.n_days, dtype=np.int64))
            ),
        }
        level: dict[Node, int] = {}
        levels: list[list[Node]] = []
        leaves: dict[Node, _Leaf] = {}
        for i, node in enumerate(order):
            name = names[node] = f"_n{i}"
            if node.op in ("price", "branch"):
                leaf = leaves[node] = self._leaf(node, market, branches)
                base[name] = leaf.series.alias(name)
                level[node] = 0
                continue
            if node.op == "const" and node not in wanted:
                level[node] = 0  # inlined as a literal wherever it is read
                continue
            depth = 1 + max((level[i] for i in node.inputs), default=0)
            level[node] = depth
            while len(levels) < depth:
                levels.append([])
            levels[depth - 1].append(node)

        bounds = Bounds(order, {k: leaf.interval for k, leaf in leaves.items()}, market.n_days)
        exprs = _Exprs(names, bounds, {k: leaf.first for k, leaf in leaves.items()})
        columns, kernel_structs = [], []  # per level: its expressions, the struct of its kernel primitives
        for depth, nodes in enumerate(levels):
            columns.append([exprs.build(node).alias(names[node]) for node in nodes if node.op not in _KERNELS])
            batch = [node for node in nodes if node.op in _KERNELS]
            kernel_structs.append(_kernels(batch, exprs, f"_s{depth}", len(order) >= _BIG) if batch else None)
        for name, value in exprs.divisors.items():
            base[name] = pl.Series(name, np.full(market.n_days, value))
        # On a big graph each column is dropped after the last level that reads it, as Polars'
        # projection pushdown would (the query runs without the optimizer): peak memory stays
        # that of the columns alive at once (stress scenario: 731 → 568 MiB). A small graph
        # keeps them: each drop is a plan step (~40 µs), and its columns are a few MB.
        dying: list[list[str]] = [[] for _ in levels]
        if len(order) >= _BIG:
            last: dict[Node, int] = {}
            for depth, nodes in enumerate(levels):
                for node in nodes:
                    for i in node.inputs:
                        last[i] = depth
            for node, depth in last.items():
                if node not in wanted and node.op != "const":
                    dying[depth].append(names[node])
        return _Parts(
            base,
            [_Level(*level, f"_s{depth}") for depth, level in enumerate(zip(columns, kernel_structs, dying))],
            [names[node] for node in dict.fromkeys(outputs)],
            names,
        )

    # -- helpers -------------------------------------------------------------------------------

    def _collect(self, query: pl.LazyFrame) -> pl.DataFrame:
        self.collects += 1
        # The query is built as it should run (one column per distinct node, only the columns
        # read): Polars' optimizer passes find nothing to gain and took ~20 % of a 10-indicator
        # query's collect; nor may it rewrite the arithmetic (a division stays a division).
        return query.collect(engine=self.engine, optimizations=_AS_BUILT)

    @staticmethod
    def _leaf(node: Node, market: Market, branches: Mapping[object, np.ndarray]) -> _Leaf:
        """A leaf's column; a market column's is made once per market (markets never change)."""
        if node.op == "price":
            ticker, field = node.params
            return market.derived(
                ("polars", ticker, field),
                lambda: _Leaf.of(getattr(market, field)[:, market.column(ticker)], node, market.n_days),
            )
        key = node.params[0]
        return _Leaf.of(branches[key] if key in branches else branches[node.params], node, market.n_days)

    @staticmethod
    def _float_rows(frame: pl.DataFrame, n_days: int) -> np.ndarray:
        """The frame's columns as the rows of one C-contiguous matrix, NaN where missing or not
        finite. One conversion of the whole frame: Polars writes a column-major array, whose
        transpose is that matrix without a copy (a column at a time, then stacked, took four
        times as long: 120–145 against 26–33 ms for 1,000 × 1,000)."""
        if not frame.width:
            return np.empty((0, n_days))
        rows = frame.cast(pl.Float64).to_numpy(order="fortran").T
        if not (rows.flags.c_contiguous and rows.flags.writeable):
            rows = np.array(rows, dtype=np.float64, order="C")
        rows[~np.isfinite(rows)] = np.nan
        return rows


@dataclass(frozen=True)
class _Level:
    """One depth of the query: its Polars columns, the struct column of its kernel primitives (one
    `map_batches` call, None when it has none) named `struct`, the columns no later level reads."""

    columns: list[pl.Expr]
    kernels: pl.Expr | None
    dead: list[str]
    struct: str


@dataclass(frozen=True)
class _Parts:
    """The query in pieces: the starting frame's columns, the levels, the output columns, each
    node's column name."""

    base: dict[str, pl.Series]
    levels: list[_Level]
    outputs: list[str]
    names: dict[Node, str]


@dataclass(frozen=True)
class _Leaf:
    """A leaf column (non-finite values missing), the interval of its values, its first row with
    a value (the row count when none has one)."""

    series: pl.Series
    interval: Interval
    first: int

    @classmethod
    def of(cls, values: object, node: Node, n_days: int) -> _Leaf:
        values = np.asarray(values, dtype=np.float64)
        if values.shape != (n_days,):
            raise ValueError(f"{node!r}: {values.shape} values for {n_days} days")
        values = np.where(np.isfinite(values), values, np.nan)
        present = np.flatnonzero(~np.isnan(values))
        first = int(present[0]) if present.size else n_days
        return cls(pl.Series("leaf", values, nan_to_null=True), leaf_interval(values), first)


class _Exprs:
    """One Polars expression per primitive, reading its inputs' columns.

    Polars divides by a scalar as a multiplication by its reciprocal (off by an ulp), so a
    constant divisor is read from a materialised column (`divisor`), where division is exact.
    Arithmetic that `bounds` proves finite skips the finiteness check, and a `valid_from` anchored
    on a leaf compares the row with its start day (`first`: each leaf's first present row)."""

    def __init__(self, names: Mapping[Node, str], bounds: Bounds, first: Mapping[Node, int]) -> None:
        self.names = names
        self.bounds = bounds
        self.first = first
        self._columns: dict[Node, pl.Expr] = {}
        self.divisors: dict[str, float] = {}
        self._constants: dict[Node, bool] = {}

    def divisor(self, value: float) -> pl.Expr:
        """A column holding `value` on every row, for an exact `x / value`."""
        value = float(value)
        if not np.isfinite(value):
            return pl.lit(None, dtype=pl.Float64)
        name = f"_k{value!r}"
        self.divisors[name] = value
        return pl.col(name)

    def _constant(self, node: Node) -> bool:
        """Whether a node reads no column (Polars folds it to a scalar)."""
        known = self._constants.get(node)
        if known is None:
            if node.op == "const":
                known = True
            elif not node.inputs:
                known = False
            else:
                known = all(self._constant(i) for i in node.inputs)
            self._constants[node] = known
        return known

    def arg(self, node: Node) -> pl.Expr:
        """An input: its column, or a literal for a constant."""
        if node.op == "const":
            return _literal(node.params[0])
        column = self._columns.get(node)
        if column is None:  # made once: a node is read ~twice, and `pl.col` costs ~5 µs
            column = self._columns[node] = pl.col(self.names[node])
        return column

    def build(self, node: Node) -> pl.Expr:
        args = [self.arg(i) for i in node.inputs]
        if node.op not in _ELEMENTWISE:
            # a window or recursion of a constant must see one value per day, not one scalar
            args = [
                pl.repeat(a, pl.len()) if i.op == "const" else a for a, i in zip(args, node.inputs)
            ]
        if node.op in ("div", "ratio") and node.inputs[1].op == "const":
            args[1] = self.divisor(node.inputs[1].params[0])
        elif node.op in ("div", "ratio") and self._constant(node.inputs[1]):
            args[1] = args[1] + self.divisor(0.0)  # a column, not a folded scalar
        elif node.op == "valid_from" and node.inputs[1] in self.first:
            start = self.first[node.inputs[1]] + int(node.params[0])
            return _from_row(start).then(args[0]).otherwise(_NULL)
        if node.op in _UNCHECKED and self.bounds.finite(node):
            return _UNCHECKED[node.op](args[0], args[1])
        builder = _BUILDERS.get(node.op)
        if builder is None:
            raise NotImplementedError(f"polars backend: no expression for primitive {node.op!r}")
        return builder(args, node.params)


def _literal(value: float) -> pl.Expr:
    """A float literal (null if not finite), memoised: `pl.lit` with a dtype builds a Series
    each time (~60 µs), and a big tree reads the same few constants thousands of times."""
    return _literal_of(float(value).hex())  # the hex text keeps -0.0 apart from 0.0


@functools.lru_cache(maxsize=1024)
def _from_row(start: int) -> When:
    """`when(row >= start)`, memoised: every indicator is a `valid_from` of a few start days, and
    the condition costs ~6 µs to build (a `When` is immutable: each `then` makes a new one)."""
    return pl.when(_ROW >= _int_literal(start))


@functools.lru_cache(maxsize=1024)
def _int_literal(value: int) -> pl.Expr:
    return pl.lit(value, dtype=pl.Int64)


@functools.lru_cache(maxsize=4096)
def _literal_of(text: str) -> pl.Expr:
    value = float.fromhex(text)
    return pl.lit(value if math.isfinite(value) else None, dtype=pl.Float64)


# arithmetic without its finiteness check, for the nodes whose bounds keep it finite
_UNCHECKED: dict[str, Callable[[pl.Expr, pl.Expr], pl.Expr]] = {
    "add": lambda a, b: a + b,
    "sub": lambda a, b: a - b,
    "mul": lambda a, b: a * b,
    "div": lambda a, b: a / b,
    "ratio": lambda a, b: a / b,
}

# element-wise primitives: a literal input broadcasts; every other primitive reads whole columns
_ELEMENTWISE = frozenset(
    "add sub mul div ratio pow min2 max2 neg abs log exp sqrt sign where fill_null "
    "gt lt ge le and or not null_if_any_missing".split()
)


def _nary(op: Callable[[pl.Expr, pl.Expr], pl.Expr], empty: bool) -> Callable[..., pl.Expr]:
    def build(a: list[pl.Expr], p: tuple) -> pl.Expr:
        if not a:
            return pl.repeat(pl.lit(empty), pl.len())
        return functools.reduce(op, a)

    return build


def _null_if_any_missing(a: list[pl.Expr], p: tuple) -> pl.Expr:
    cond, *values = a
    if not values:
        return cond
    missing = functools.reduce(lambda x, y: x | y, [v.is_null() for v in values])
    return pl.when(missing).then(pl.lit(None, dtype=pl.Boolean)).otherwise(cond)


def _valid_from(a: list[pl.Expr], p: tuple) -> pl.Expr:
    x, anchor = a
    return pl.when(_ROW >= _first_index(anchor) + _int_literal(int(p[0]))).then(x).otherwise(_NULL)


_BUILDERS: dict[str, Callable[[list[pl.Expr], tuple], pl.Expr]] = {
    # leaves (price and branch leaves are frame columns)
    "const": lambda a, p: pl.repeat(_literal(p[0]), pl.len()),
    "date_between": lambda a, p: _date_between(*p),
    # element-wise
    "add": lambda a, p: _finite(a[0] + a[1]),
    "sub": lambda a, p: _finite(a[0] - a[1]),
    "mul": lambda a, p: _finite(a[0] * a[1]),
    "div": lambda a, p: _finite(a[0] / a[1]),
    "ratio": lambda a, p: _finite(a[0] / a[1]),
    "pow": lambda a, p: _finite(a[0].pow(a[1])),
    "min2": lambda a, p: _both(a[0], a[1], pl.min_horizontal(a[0], a[1])),
    "max2": lambda a, p: _both(a[0], a[1], pl.max_horizontal(a[0], a[1])),
    "neg": lambda a, p: -a[0],
    "abs": lambda a, p: a[0].abs(),
    "log": lambda a, p: _finite(a[0].log()),
    "exp": lambda a, p: _finite(a[0].exp()),
    "sqrt": lambda a, p: _finite(a[0].sqrt()),
    "sign": lambda a, p: a[0].sign().cast(pl.Float64),
    "where": lambda a, p: pl.when(a[0]).then(a[1]).otherwise(a[2]),
    "fill_null": lambda a, p: a[0].fill_null(a[1]),
    "valid_from": _valid_from,
    # windows
    "shift": lambda a, p: a[0].shift(int(p[0])),
    "cum_sum": lambda a, p: a[0].cum_sum(),
    "forward_fill": lambda a, p: a[0].forward_fill(),
    # (the other windows and the recursions: `_kernels`)
    # conditions
    "gt": lambda a, p: a[0] > a[1],
    "lt": lambda a, p: a[0] < a[1],
    "ge": lambda a, p: a[0] >= a[1],
    "le": lambda a, p: a[0] <= a[1],
    "and": _nary(lambda x, y: x & y, True),
    "or": _nary(lambda x, y: x | y, False),
    "not": lambda a, p: ~a[0],
    "null_if_any_missing": _null_if_any_missing,
    "rolling_all": lambda a, p: _rolling_all(a[0], int(p[0])),
}
