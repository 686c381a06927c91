"""The metric catalogue (spec §4.1), each metric written once as an expansion into IR primitives.

`expand(b, metric, src, window)` builds a metric's series from the primitives of
`gpubt.ir.nodes.PRIMITIVES` only (a backend never knows what an RSI is), through the builder, so
asking twice for RSI(14) of SPY returns the same node. The result is wrapped in `valid_from` so
its first value is exactly the catalogue's "first" column, whatever the expansion's own warm-up.
Expansions live by family in the modules of this package, each with one `EXPANSIONS` registry.

`expand_formula` compiles a custom indicator (spec §4.4) to the same primitives, matching
`gpubt.reference.formula_eval`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

from gpubt.errors import GpubtError
from gpubt.indicators import momentum, moving_averages, oscillators, volatility, volume
from gpubt.indicators._series import NAN, S, exp, log, max2, min2, sqrt
from gpubt.indicators.source import SOURCE_FIELDS, Source, branch_source, ticker_source
from gpubt.ir.nodes import Builder, Node, Recording, record
from gpubt.schema.catalogue import METRICS, resolve_metric
from gpubt.schema.formula import (
    SERIES_MIN_N,
    BinOp,
    Expr,
    Field,
    Formula,
    Func,
    MetricCall,
    Neg,
    Num,
    Window,
    window_arg,
)

Expansion = Callable[[Builder, Source, int], S]

EXPANSIONS: dict[str, Expansion] = {}
for _family in (moving_averages, oscillators, momentum, volatility, volume):
    EXPANSIONS.update(_family.EXPANSIONS)

_missing = {m.name for m in METRICS} - set(EXPANSIONS)
assert not _missing, f"catalogue metrics without an expansion: {sorted(_missing)}"


def expand(b: Builder, metric: str, src: Source, window: int) -> Node:
    """The series of a catalogue metric (name or alias) over `src`, missing before the
    catalogue's first valid index counted from the first close."""
    info = resolve_metric(metric) if isinstance(metric, str) else None
    if info is None:
        raise GpubtError(
            f"unknown metric {metric!r}; known metrics: {', '.join(m.name for m in METRICS)}",
            path="metric",
        )
    recipe = _recipe(info.name, max(1, int(window)))
    nodes = [src.open, src.high, src.low, src.close, src.volume]
    b.replay(recipe.steps, nodes)
    b.requests += recipe.requests
    return nodes[recipe.result]


def _expand(b: Builder, name: str, src: Source, p: int) -> Node:
    """`expand` itself, through the operator layer."""
    series = EXPANSIONS[name](b, src, p)
    close = S(b, src.close)
    return series.valid_from(close, resolve_metric(name).lookback(p)).node  # type: ignore[union-attr]


# An expansion depends on (metric, window) and on nothing of its source but the five nodes it is
# given, which it only passes to the builder. So it is recorded once per process over five stand-in
# leaves, as the list of node requests it makes, and replayed onto any builder and source: the
# same requests in the same order, so interning returns the very nodes (and counts the same
# duplicates) the operator layer would, without its wrappers (1,000 random catalogue indicators
# into a fresh builder, min of 5: 41–48 → 28–32 ms; most of the rest is making the nodes), and
# without the builder re-checking requests it checked when they were recorded (`Builder.replay`,
# its steps' input positions prepared once by `gpubt.ir.nodes.record`).


@dataclass(frozen=True)
class _Recipe:
    steps: Recording  # the expansion's node requests over the five source nodes, in creation order
    result: int  # the position of the expansion's node (0–4: a source series itself)
    requests: int  # node requests the expansion made, new or answered by an existing node


@functools.lru_cache(maxsize=4096)
def _recipe(name: str, p: int) -> _Recipe:
    b = Builder()
    leaves = [b.node("price", ("", field)) for field in SOURCE_FIELDS]
    before = b.requests
    result = _expand(b, name, Source(*leaves), p)
    made = b.nodes()
    position = {node: k for k, node in enumerate(made)}
    steps = [(node.op, node.params, tuple(position[i] for i in node.inputs)) for node in made[len(leaves):]]
    return _Recipe(record(steps), position[result], b.requests - before)


_BINARY = {"+": "add", "-": "sub", "*": "mul", "/": "div", "^": "pow"}
_POINTWISE = {"abs": lambda x: abs(x), "log": log, "exp": exp, "sqrt": sqrt}


def expand_formula(b: Builder, formula: Formula | Expr, src: Source, window: int) -> Node:
    """A custom indicator formula over `src` for the condition's window, as primitives. Every
    node's value is finite or missing, as in the reference evaluator: the backends turn a
    non-finite arithmetic result into missing."""
    ast = formula.ast if isinstance(formula, Formula) else formula
    name = formula.name if isinstance(formula, Formula) else ""
    fields = dict(zip(("open", "high", "low", "close", "volume"), src.series(b)))

    def build(expr: Expr) -> S:
        match expr:
            case Num(value):
                return S(b, b.const(value))
            case Window():
                return S(b, b.const(float(window)))
            case Field(field):
                return fields[field]
            case Neg(operand):
                return -build(operand)
            case BinOp(op, left, right):
                lhs, rhs = build(left), build(right)
                return lhs._op(_BINARY[op], lhs.node, rhs.node)
            case MetricCall(metric, _):
                return S(b, expand(b, metric, src, window_arg(expr, window, name)))
            case Func(fname, args) if fname in SERIES_MIN_N:
                return _series_function(fname, build(args[0]), window_arg(expr, window, name))
            case Func("min", (x, y)):
                return min2(build(x), build(y))
            case Func("max", (x, y)):
                return max2(build(x), build(y))
            case Func(fname, (x,)) if fname in _POINTWISE:
                return _POINTWISE[fname](build(x))
        raise TypeError(f"not a formula node: {expr!r}")

    return build(ast).node


def _series_function(name: str, x: S, n: int) -> S:
    if name == "shift":
        return x.shift(n)
    if name == "diff":
        return x - x.shift(n)
    if name == "mean":
        return x.rolling_mean(n)
    if name == "std":
        return x.rolling_std(n)
    if name == "sum":
        return x.rolling_sum(n)
    if name == "highest":
        return x.rolling_max(n)
    if name == "lowest":
        return x.rolling_min(n)
    raise TypeError(f"unknown series function {name!r}")


__all__ = [
    "EXPANSIONS",
    "NAN",
    "Source",
    "branch_source",
    "expand",
    "expand_formula",
    "ticker_source",
]
