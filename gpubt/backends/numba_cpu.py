"""CPU Numba backend: the graph walked once in topological order, one NumPy array per node.

Each node becomes a 1-D array over the market's days: float64 with NaN for missing ('f'), int8
TRUE=1 / FALSE=0 / NULL=-1 for conditions ('b'), the boundary encoding itself, so nothing is
converted on the way out. Windows and recursions run in the backend-neutral kernels of
`gpubt.backends.kernels` (shared with the Polars backend); add/sub/mul/div, comparisons, Kleene
logic, `where` and `valid_from` in the small kernels below; the remaining element-wise
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

Speed: the condition lists of a tree (`lines` nodes) are one parallel pass over their input
series (`gpubt.backends.lines`); a big graph's components (a ticker's indicators, once the price
leaves are left out) are walked by Numba's number of threads at once, the kernels releasing the
GIL; the comparisons of one series with several constants elsewhere (indicator formulas) are
computed in one kernel call; the cyclic garbage collector is paused during a call (the walk makes
a few small containers per node while the graph's own objects are alive, and nothing it makes
forms a cycle).

Memory: every node's array is dropped as soon as the last node reading it has been computed
(reference counts from the topological order), so a graph of 20,000 nodes holds only the arrays
still to be read plus the outputs. `live_peak` reports the most arrays held at once during the
last `evaluate` (outputs included), `freed` how many were dropped early, `nodes` how many nodes
it computed.
"""
from __future__ import annotations

import concurrent.futures
import functools
import math
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numba
import numpy as np

from gpubt.backends import kernels
from gpubt.backends.lines import evaluate_lines, split
from gpubt.collector import paused
from gpubt.data.market import Market
from gpubt.ir.nodes import PRIMITIVES, Node, topological

_JIT = {"cache": True, "nogil": True, "error_model": "numpy"}
_NAN = float("nan")

Value = Any  # np.ndarray, or a float for a constant (element-wise ops of constants stay scalars)

# comparison codes of the kernels below; `_FLIP[op]` is op with its sides swapped
_GT, _LT, _GE, _LE = 0, 1, 2, 3
_CMP = {"gt": _GT, "lt": _LT, "ge": _GE, "le": _LE}
_FLIP = {_GT: _LT, _LT: _GT, _GE: _LE, _LE: _GE}


# ------------------------------------------------------------------------------ element kernels


@numba.njit(**_JIT)
def _compare(a: np.ndarray, b: np.ndarray, op: int) -> np.ndarray:
    """a <op> b per day; NULL where either side is missing."""
    out = np.empty(a.size, dtype=np.int8)
    # one loop per comparator, without branches: a comparison with NaN is False, so
    # (a <op> b) − missing is 1/0 where both sides exist and −1 (NULL) elsewhere; the loops vectorise
    if op == 0:
        for t in range(a.size):
            out[t] = np.int8(a[t] > b[t]) - np.int8(np.isnan(a[t]) | np.isnan(b[t]))
    elif op == 1:
        for t in range(a.size):
            out[t] = np.int8(a[t] < b[t]) - np.int8(np.isnan(a[t]) | np.isnan(b[t]))
    elif op == 2:
        for t in range(a.size):
            out[t] = np.int8(a[t] >= b[t]) - np.int8(np.isnan(a[t]) | np.isnan(b[t]))
    else:
        for t in range(a.size):
            out[t] = np.int8(a[t] <= b[t]) - np.int8(np.isnan(a[t]) | np.isnan(b[t]))
    return out


@numba.njit(**_JIT)
def _compare_scalar(a: np.ndarray, y: float, op: int) -> np.ndarray:
    """a <op> y per day for a constant y; NULL where a is missing (everywhere when y is)."""
    out = np.empty(a.size, dtype=np.int8)
    if np.isnan(y):
        out[:] = -1
        return out
    if op == 0:
        for t in range(a.size):
            x = a[t]
            out[t] = -1 if np.isnan(x) else (1 if x > y else 0)
    elif op == 1:
        for t in range(a.size):
            x = a[t]
            out[t] = -1 if np.isnan(x) else (1 if x < y else 0)
    elif op == 2:
        for t in range(a.size):
            x = a[t]
            out[t] = -1 if np.isnan(x) else (1 if x >= y else 0)
    else:
        for t in range(a.size):
            x = a[t]
            out[t] = -1 if np.isnan(x) else (1 if x <= y else 0)
    return out


@numba.njit(**_JIT)
def _compare_block(a: np.ndarray, ys: np.ndarray, ops: np.ndarray, out: np.ndarray) -> None:
    """Row j of out: a <ops[j]> ys[j] per day (the comparisons of one series with many constants,
    in one call); NULL where a is missing (a whole row where ys[j] is)."""
    for j in range(ys.size):
        y = ys[j]
        op = ops[j]
        row = out[j]
        if np.isnan(y):
            row[:] = -1
        elif op == 0:
            for t in range(a.size):
                x = a[t]
                row[t] = -1 if np.isnan(x) else (1 if x > y else 0)
        elif op == 1:
            for t in range(a.size):
                x = a[t]
                row[t] = -1 if np.isnan(x) else (1 if x < y else 0)
        elif op == 2:
            for t in range(a.size):
                x = a[t]
                row[t] = -1 if np.isnan(x) else (1 if x >= y else 0)
        else:
            for t in range(a.size):
                x = a[t]
                row[t] = -1 if np.isnan(x) else (1 if x <= y else 0)


@numba.njit(**_JIT)
def _where_aa(cond: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    out = np.empty(a.size)
    for t in range(a.size):
        out[t] = a[t] if cond[t] == 1 else b[t]
    return out


@numba.njit(**_JIT)
def _where_as(cond: np.ndarray, a: np.ndarray, y: float) -> np.ndarray:
    out = np.empty(a.size)
    for t in range(a.size):
        out[t] = a[t] if cond[t] == 1 else y
    return out


@numba.njit(**_JIT)
def _where_sa(cond: np.ndarray, x: float, b: np.ndarray) -> np.ndarray:
    out = np.empty(b.size)
    for t in range(b.size):
        out[t] = x if cond[t] == 1 else b[t]
    return out


# Kleene logic on TRUE=1 / FALSE=0 / NULL=-1: AND is FALSE if either side is FALSE, else the
# smaller (NULL < TRUE); OR is TRUE if either side is TRUE, else the smaller (NULL < FALSE).


@numba.njit(**_JIT)
def _and2(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    out = np.empty(a.size, dtype=np.int8)
    for t in range(a.size):
        x = a[t]
        y = b[t]
        out[t] = 0 if (x == 0) | (y == 0) else min(x, y)
    return out


@numba.njit(**_JIT)
def _or2(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    out = np.empty(a.size, dtype=np.int8)
    for t in range(a.size):
        x = a[t]
        y = b[t]
        out[t] = 1 if (x == 1) | (y == 1) else min(x, y)
    return out


@numba.njit(**_JIT)
def _and_into(acc: np.ndarray, b: np.ndarray) -> None:
    for t in range(acc.size):
        x = acc[t]
        y = b[t]
        acc[t] = 0 if (x == 0) | (y == 0) else min(x, y)


@numba.njit(**_JIT)
def _or_into(acc: np.ndarray, b: np.ndarray) -> None:
    for t in range(acc.size):
        x = acc[t]
        y = b[t]
        acc[t] = 1 if (x == 1) | (y == 1) else min(x, y)


# element-wise arithmetic with the finiteness rule fused in (a non-finite result is missing): one
# loop whose store is a select, which vectorises (a second pass with a conditional store made
# a 6,783-day product 2.8x slower)
_ADD, _SUB, _MUL, _DIV = 0, 1, 2, 3


@numba.njit(**_JIT)
def _arith_aa(a: np.ndarray, b: np.ndarray, op: int) -> np.ndarray:
    out = np.empty(a.size)
    if op == 0:
        for t in range(a.size):
            v = a[t] + b[t]
            out[t] = np.nan if np.isinf(v) else v
    elif op == 1:
        for t in range(a.size):
            v = a[t] - b[t]
            out[t] = np.nan if np.isinf(v) else v
    elif op == 2:
        for t in range(a.size):
            v = a[t] * b[t]
            out[t] = np.nan if np.isinf(v) else v
    else:
        for t in range(a.size):
            v = a[t] / b[t]
            out[t] = np.nan if np.isinf(v) else v
    return out


@numba.njit(**_JIT)
def _arith_as(a: np.ndarray, y: float, op: int) -> np.ndarray:
    out = np.empty(a.size)
    if op == 0:
        for t in range(a.size):
            v = a[t] + y
            out[t] = np.nan if np.isinf(v) else v
    elif op == 1:
        for t in range(a.size):
            v = a[t] - y
            out[t] = np.nan if np.isinf(v) else v
    elif op == 2:
        for t in range(a.size):
            v = a[t] * y
            out[t] = np.nan if np.isinf(v) else v
    else:
        for t in range(a.size):
            v = a[t] / y
            out[t] = np.nan if np.isinf(v) else v
    return out


@numba.njit(**_JIT)
def _arith_sa(x: float, b: np.ndarray, op: int) -> np.ndarray:
    out = np.empty(b.size)
    if op == 0:
        for t in range(b.size):
            v = x + b[t]
            out[t] = np.nan if np.isinf(v) else v
    elif op == 1:
        for t in range(b.size):
            v = x - b[t]
            out[t] = np.nan if np.isinf(v) else v
    elif op == 2:
        for t in range(b.size):
            v = x * b[t]
            out[t] = np.nan if np.isinf(v) else v
    else:
        for t in range(b.size):
            v = x / b[t]
            out[t] = np.nan if np.isinf(v) else v
    return out


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
        if np.isnan(x[t]):
            cond[t] = -1


@numba.njit(**_JIT)
def _finite_inplace(x: np.ndarray) -> np.ndarray:
    """x with every non-finite value (±inf, NaN) made NaN, in place."""
    for t in range(x.size):
        v = x[t]
        if np.isinf(v):
            x[t] = np.nan
    return x


@numba.njit(**_JIT)
def _valid_from_aa(x: np.ndarray, anchor: np.ndarray, offset: int) -> np.ndarray:
    """x from `offset` days after anchor's first present value on, missing before (and
    everywhere when anchor has no present value)."""
    out = np.full(x.size, np.nan)
    for t in range(anchor.size):
        if not np.isnan(anchor[t]):
            for u in range(max(t + offset, 0), x.size):
                out[u] = x[u]
            break
    return out


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
    """A fresh copy of a market column: a row of the field's tickers × days matrix, made once per
    market with non-finite values missing (a strided column and its check took 32 µs a leaf)."""
    market = ctx.market
    ticker, field = p
    rows = market.derived(("numba", field), lambda: _finite_rows(getattr(market, field)))
    return rows[market.column(ticker)].copy()


def _finite_rows(matrix: np.ndarray) -> np.ndarray:
    """A days × tickers matrix as tickers × days rows, non-finite values missing."""
    rows = np.array(matrix.T, dtype=np.float64, order="C")
    _finite_inplace(rows.reshape(-1))
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
        if isinstance(x, np.ndarray):
            if isinstance(y, np.ndarray):
                return _arith_aa(x, y, op)
            return _arith_as(x, float(y), op)
        if isinstance(y, np.ndarray):
            return _arith_sa(float(x), y, op)
        return _finite(fn(np.float64(x), np.float64(y)))  # constants: IEEE, no exception

    return run


def _pow(a: list[Value], p: tuple, ctx: _Ctx) -> Value:
    x, y = a
    r = np.power(x, y)
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
    if isinstance(x, np.ndarray):
        if isinstance(y, np.ndarray):
            return _where_aa(cond, x, y)
        return _where_as(cond, x, float(y))
    if isinstance(y, np.ndarray):
        return _where_sa(cond, float(x), y)
    return np.where(cond == 1, float(x), float(y))


def _fill_null(a: list[Value], p: tuple, ctx: _Ctx) -> Value:
    x, y = a
    if not _is_array(x):
        if x == x:
            return float(x)
        return y.copy() if _is_array(y) else float(y)
    return np.where(np.isnan(x), y, x)


def _valid_from(a: list[Value], p: tuple, ctx: _Ctx) -> np.ndarray:
    x, anchor = a
    return _valid_from_aa(_full(x, ctx.n), _full(anchor, ctx.n), int(p[0]))


def _shift(a: list[Value], p: tuple, ctx: _Ctx) -> np.ndarray:
    x = _full(a[0], ctx.n)
    k = int(p[0])
    out = np.full(ctx.n, _NAN)
    if k == 0:
        out[:] = x
    elif 0 < k < ctx.n:
        out[k:] = x[:-k]
    elif -ctx.n < k < 0:
        out[:k] = x[-k:]
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
    flipped = _FLIP[op]

    def run(a: list[Value], p: tuple, ctx: _Ctx) -> np.ndarray:
        x, y = a
        if isinstance(y, np.ndarray):
            if isinstance(x, np.ndarray):
                return _compare(x, y, op)
            return _compare_scalar(y, float(x), flipped)
        return _compare_scalar(_full(x, ctx.n), float(y), op)

    return run


def _and(a: list[Value], p: tuple, ctx: _Ctx) -> np.ndarray:
    if len(a) < 2:
        return a[0].copy() if a else np.ones(ctx.n, dtype=np.int8)
    acc = _and2(a[0], a[1])
    for other in a[2:]:
        _and_into(acc, other)
    return acc


def _or(a: list[Value], p: tuple, ctx: _Ctx) -> np.ndarray:
    if len(a) < 2:
        return a[0].copy() if a else np.zeros(ctx.n, dtype=np.int8)
    acc = _or2(a[0], a[1])
    for other in a[2:]:
        _or_into(acc, other)
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
    "log": _unary_finite(np.log),
    "exp": _unary_finite(np.exp),
    "sqrt": _unary_finite(np.sqrt),
    "sign": _plain(_sign),
    "where": _where,
    "fill_null": _fill_null,
    "valid_from": _valid_from,
    # windows
    "shift": _shift,
    "rolling_mean": _window(kernels.rolling_mean),
    "rolling_sum": _window(kernels.rolling_sum),
    "rolling_std": _window(kernels.rolling_std),
    "rolling_min": _window(kernels.rolling_min),
    "rolling_max": _window(kernels.rolling_max),
    "rolling_dot": _weighted(kernels.rolling_dot),
    "rolling_dot_centered": _weighted(kernels.rolling_dot_centered),
    "rolling_argmax_age": _window(kernels.rolling_argmax_age),
    "rolling_argmin_age": _window(kernels.rolling_argmin_age),
    "rolling_max_drawdown": _window(kernels.rolling_max_drawdown),
    "rolling_ulcer": _window(kernels.rolling_ulcer),
    "rolling_mad": _window(kernels.rolling_mad),
    "cum_sum": _cum_sum,
    "forward_fill": _forward_fill,
    # recursions
    "ewm": _ewm,
    "wilder_mean": _window(kernels.wilder_mean),
    "wilder_sum": _window(kernels.wilder_sum),
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


def _block(nodes: list[Node], x: Value, n: int, out: np.ndarray | None = None) -> np.ndarray:
    """The comparisons `nodes` of one series x with constants, one row each (into `out`)."""
    ys = np.empty(len(nodes))
    ops = np.empty(len(nodes), dtype=np.int64)
    for j, node in enumerate(nodes):
        a, b = node.inputs
        code = _CMP[node.op]
        if b.op == "const":
            ys[j], ops[j] = _scalar(b.params[0]), code
        else:
            ys[j], ops[j] = _scalar(a.params[0]), _FLIP[code]
    if out is None:
        out = np.empty((len(nodes), n), dtype=np.int8)
    _compare_block(_full(x, n), ys, ops, out)
    return out


# A graph with fewer computed nodes is walked in the calling thread: handing parts to threads
# costs more than it saves there.
_PARALLEL_NODES = 400


def _threads() -> int:
    """Threads a walk may use: Numba's (NUMBA_NUM_THREADS, by default one per core)."""
    return numba.get_num_threads()


def _parts(steps: list[tuple[Callable[..., Value], tuple, list[int]]], order: list[Node]) -> list[list[int]]:
    """The positions of the non-leaf nodes cut into parts that read no node of another part but
    leaves (the connected components of the graph without its leaves, largest first into the
    emptiest part), one per thread, each in topological order; none when the graph is small,
    one component, or Numba has one thread."""
    threads = _threads()
    inner = [k for k, node in enumerate(order) if node.inputs]
    if threads < 2 or len(inner) < _PARALLEL_NODES:
        return []
    parent = list(range(len(order)))

    def root(k: int) -> int:
        while parent[k] != k:
            parent[k] = parent[parent[k]]
            k = parent[k]
        return k

    for k in inner:
        for j in steps[k][2]:
            if order[j].inputs:
                parent[root(k)] = root(j)
    components: dict[int, list[int]] = {}
    for k in inner:
        components.setdefault(root(k), []).append(k)
    if len(components) < 2:
        return []
    parts: list[list[int]] = [[] for _ in range(min(threads, len(components)))]
    for component in sorted(components.values(), key=len, reverse=True):
        min(parts, key=len).extend(component)
    return [sorted(part) for part in parts]


@functools.cache
def _pool() -> concurrent.futures.ThreadPoolExecutor:
    return concurrent.futures.ThreadPoolExecutor(_threads(), thread_name_prefix="gpubt-numba")


# A forked process has none of its parent's threads: it makes its own pool (the inherited one
# would wait forever for workers that do not exist).
os.register_at_fork(after_in_child=_pool.cache_clear)


class NumbaBackend:
    """`Backend` over NumPy arrays and Numba kernels on the CPU, one pass over the graph."""

    name = "numba"

    def __init__(self) -> None:
        self.live_peak = 0  # most node arrays held at once during the last evaluate
        self.freed = 0  # arrays dropped before the end of the last evaluate
        self.nodes = 0  # nodes in the last evaluate's graph

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
        # The walk allocates small containers per node while the graph's own objects (hundreds
        # of thousands for a big tree) are alive; nothing made here forms a cycle.
        with paused():
            values, floats, row = self._evaluate(rest, market, branches)
            if fused:  # their series are rows of the output arena already
                values.update(evaluate_lines(fused, floats, row, values, first))
        return {node: values[node] for node in outputs}

    def _evaluate(
        self,
        outputs: list[Node],
        market: Market,
        branches: Mapping[object, np.ndarray],
    ) -> tuple[dict[Node, np.ndarray], np.ndarray, dict[Node, int]]:
        """(each output's values, the float outputs' arena, each float output's row there)."""
        order = topological(outputs)

        # one pass over the order: what to run for each node (its function, parameters and input
        # positions), how many input slots read each node, the comparisons with constants per series
        position: dict[int, int] = {}
        steps: list[tuple[Callable[..., Value], tuple, list[int]]] = []
        readers = [0] * len(order)  # how many input slots still have to read each node
        groups: dict[int, list[int]] = {}  # series position -> its comparisons with constants
        cmp = _CMP
        ops = _OPS
        for k, node in enumerate(order):
            position[id(node)] = k
            ins = [position[id(i)] for i in node.inputs]
            op = node.op
            fn = ops.get(op)
            if fn is None:
                raise NotImplementedError(f"numba backend: no kernel for primitive {op!r}")
            steps.append((fn, node.params, ins))
            for j in ins:
                readers[j] += 1
            if op in cmp:
                a, b = node.inputs
                if b.op == "const" and a.op != "const":
                    groups.setdefault(ins[0], []).append(k)
                elif a.op == "const" and b.op != "const":
                    groups.setdefault(ins[1], []).append(k)
        wanted = [position[id(node)] for node in outputs]
        for k in wanted:
            readers[k] += 1  # never dropped
        # comparisons of one series with constants are one kernel call: member -> (series, row)
        blocks = {k: (series, row) for series, ks in groups.items() if len(ks) > 1 for row, k in enumerate(ks)}
        computed: dict[int, np.ndarray] = {}  # series -> the rows of its group, until all are read

        # The outputs are written into two arenas (one row per output), so that the memory they
        # keep is two large allocations (huge pages, few page faults) rather than thousands of
        # small ones; a group of comparisons that are all outputs is computed in place there.
        ctx = _Ctx(market, branches)
        n = ctx.n
        is_output = set(wanted)
        arena_rows: dict[int, int] = {}  # series -> first arena row of its group
        slot: dict[int, tuple[bool, int]] = {}  # other output -> (condition?, arena row)
        n_b = n_f = 0
        for series, ks in groups.items():
            if len(ks) > 1 and all(k in is_output for k in ks):
                arena_rows[series] = n_b
                n_b += len(ks)
        for k in wanted:
            if k in blocks and blocks[k][0] in arena_rows:
                continue
            if PRIMITIVES[order[k].op][0] == "b":
                slot[k] = (True, n_b)
                n_b += 1
            else:
                slot[k] = (False, n_f)
                n_f += 1
        arena_b = np.empty((n_b, n), dtype=np.int8)
        arena_f = np.empty((n_f, n), dtype=np.float64)
        values: list[Value] = [None] * len(order)
        ndarray = np.ndarray

        def walk(positions: Sequence[int], kept: frozenset[int]) -> tuple[int, int]:
            """Computes the nodes at `positions` in order, dropping each array once read for the
            last time (`kept`: read by other walks too, never dropped); (most held, dropped)."""
            live = peak = freed = 0
            with np.errstate(all="ignore"):
                for k in positions:
                    fn, params, ins = steps[k]
                    block = blocks.get(k)
                    if block is None:
                        value = fn([values[j] for j in ins], params, ctx)
                    else:
                        series, row = block
                        rows = computed.get(series)
                        if rows is None:
                            members = [order[m] for m in groups[series]]
                            first = arena_rows.get(series)
                            into = None if first is None else arena_b[first : first + len(members)]
                            rows = computed[series] = _block(members, values[series], n, into)
                        value = rows[row]
                        if row == len(rows) - 1:
                            del computed[series]  # each row lives on in `values` while it is read
                    if k in slot:
                        condition, row = slot[k]
                        target = arena_b[row] if condition else arena_f[row]
                        target[:] = value  # a constant is repeated
                        value = target
                    values[k] = value
                    if isinstance(value, ndarray):
                        live += 1
                        if live > peak:
                            peak = live
                    for j in ins:
                        if j in kept:
                            continue
                        readers[j] -= 1
                        if not readers[j]:
                            if isinstance(values[j], ndarray):
                                live -= 1
                                freed += 1
                            values[j] = None
            return peak, freed

        parts = _parts(steps, order)
        if len(parts) < 2:
            peak, freed = walk(range(len(steps)), frozenset())
        else:  # the leaves first, then each part in a thread (the kernels release the GIL)
            leaves = [k for k, node in enumerate(order) if not node.inputs]
            walk(leaves, frozenset())
            shared = frozenset(leaves)
            counts = list(_pool().map(lambda part: walk(part, shared), parts))
            peak = len(leaves) + sum(c[0] for c in counts)
            freed = sum(c[1] for c in counts)
        self.live_peak, self.freed, self.nodes = peak, freed, len(order)
        if n_f:
            _finite_inplace(arena_f.reshape(-1))  # the boundary: ±inf (a window's overflow) → NaN
        rows = {order[k]: row for k, (condition, row) in slot.items() if not condition}
        return {node: values[k] for node, k in zip(outputs, wanted)}, arena_f, rows


__all__ = ["NumbaBackend"]
