"""Value intervals of graph nodes, to find arithmetic that can never give a non-finite result.

The spec makes a non-finite arithmetic result missing, so a backend checks every sum, product
and quotient; in Polars that check is a `when/then` that costs two to three times the
arithmetic. A sum or product of bounded inputs, or a quotient by a divisor bounded away from
zero, is finite whenever its inputs are present: its check can go. The intervals here are sound
over-approximations of each node's present values, from the market's own columns up; a primitive
this module does not know is unbounded, and so is everything read from it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence

import numpy as np

from gpubt.ir.nodes import Node

Interval = tuple[float, float]
UNBOUNDED: Interval = (-math.inf, math.inf)
# Bounds below this leave float64's 1.8e308 out of reach of any rounding.
_SAFE = 1e300
# A divisor is away from zero when its interval is, with room for a convex combination's rounding.
_RELATIVE = 1e-9


def leaf_interval(values: np.ndarray) -> Interval:
    """The interval of an array's finite values (missing values are not values)."""
    finite = values[np.isfinite(values)]
    if not finite.size:
        return UNBOUNDED
    return float(finite.min()), float(finite.max())


def _bounded(i: Interval) -> bool:
    return -_SAFE < i[0] and i[1] < _SAFE


def _away_from_zero(i: Interval) -> bool:
    lo, hi = i
    if not _bounded(i):
        return False
    scale = max(abs(lo), abs(hi))
    return (lo > 0 or hi < 0) and min(abs(lo), abs(hi)) > max(_RELATIVE * scale, 1 / _SAFE)


def _products(a: Interval, b: Interval) -> Interval:
    corners = (a[0] * b[0], a[0] * b[1], a[1] * b[0], a[1] * b[1])
    return min(corners), max(corners)


def _magnitude(i: Interval, times: float) -> Interval:
    m = times * max(abs(i[0]), abs(i[1]))
    return -m, m


class Bounds:
    """Intervals of the float nodes of a topological order, given the leaves' (`leaf_interval`);
    a node without one (`intervals.get(node, UNBOUNDED)`) is unbounded."""

    def __init__(self, order: Sequence[Node], leaves: Mapping[Node, Interval], n_days: int) -> None:
        intervals: dict[Node, Interval] = {}
        get = intervals.get
        for node in order:
            op = node.op
            if op == "price" or op == "branch":
                intervals[node] = leaves.get(node, UNBOUNDED)
            elif op == "const":
                value = float(node.params[0])
                intervals[node] = (value, value) if math.isfinite(value) else UNBOUNDED
            else:  # a condition has no rule
                rule = _RULES.get(op)
                if rule is None:
                    continue
                ins = [get(i, UNBOUNDED) for i in node.inputs[_READ.get(op, _ALL)]]
                if ins and all(-_SAFE < lo and hi < _SAFE for lo, hi in ins):
                    intervals[node] = rule(ins, node.params, n_days)
        self.intervals = intervals

    def finite(self, node: Node) -> bool:
        """Whether an add/sub/mul/div/ratio node is finite wherever its inputs are present."""
        get = self.intervals.get
        if node.op == "div" or node.op == "ratio":
            return _away_from_zero(get(node.inputs[1], UNBOUNDED)) and _bounded(get(node, UNBOUNDED))
        return _bounded(get(node, UNBOUNDED))


def _hull(ins: list[Interval], p: tuple, n_days: int) -> Interval:
    return min(i[0] for i in ins), max(i[1] for i in ins)


def _quotient(ins: list[Interval], p: tuple, n_days: int) -> Interval:
    if not _away_from_zero(ins[1]):
        return UNBOUNDED
    lo, hi = ins[1]
    return _products(ins[0], (1.0 / hi, 1.0 / lo))  # 1/x of [lo, hi] on one side of 0


def _abs(ins: list[Interval], p: tuple, n_days: int) -> Interval:
    lo, hi = ins[0]
    return (0.0 if lo <= 0 <= hi else min(abs(lo), abs(hi))), max(abs(lo), abs(hi))


_Rule = Callable[[list[Interval], tuple, int], Interval]
# per primitive, its interval from its (bounded) inputs'; any other primitive is unbounded
_RULES: dict[str, _Rule] = {
    # the inputs' values passed through, or convex combinations of them
    **dict.fromkeys(
        ("shift", "forward_fill", "rolling_min", "rolling_max", "rolling_mean", "wilder_mean", "fill_null",
         "where", "valid_from"),
        _hull,
    ),
    "ewm": lambda a, p, n: a[0] if 0.0 < float(p[0]) <= 1.0 else UNBOUNDED,
    "min2": lambda a, p, n: (min(a[0][0], a[1][0]), min(a[0][1], a[1][1])),
    "max2": lambda a, p, n: (max(a[0][0], a[1][0]), max(a[0][1], a[1][1])),
    "add": lambda a, p, n: (a[0][0] + a[1][0], a[0][1] + a[1][1]),
    "sub": lambda a, p, n: (a[0][0] - a[1][1], a[0][1] - a[1][0]),
    "neg": lambda a, p, n: (-a[0][1], -a[0][0]),
    "abs": _abs,
    "mul": lambda a, p, n: _products(a[0], a[1]),
    "div": _quotient,
    "ratio": _quotient,
    "rolling_sum": lambda a, p, n: _magnitude(a[0], int(p[0])),
    "rolling_dot": lambda a, p, n: _magnitude(a[0], sum(abs(float(w)) for w in p[0])),
    "cum_sum": lambda a, p, n: _magnitude(a[0], n),
    "rolling_std": lambda a, p, n: (0.0, a[0][1] - a[0][0]),
    # (peak − x)/peak with 0 < x ≤ peak
    "rolling_max_drawdown": lambda a, p, n: (0.0, 1.0) if a[0][0] > 0 else UNBOUNDED,
}
# the inputs a rule reads: not `where`'s condition nor `valid_from`'s anchor (their intervals
# mean nothing for the value)
_ALL = slice(None)
_READ = {"where": slice(1, None), "valid_from": slice(0, 1)}
