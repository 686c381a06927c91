"""Value intervals of graph nodes, to find arithmetic that can never give a non-finite result.

The spec makes a non-finite arithmetic result missing, so a backend checks every sum, product
and quotient; in Polars that check is a `when/then` that costs three times the arithmetic. A
sum or product of bounded inputs, or a quotient by a divisor bounded away from zero, is finite
whenever its inputs are present: its check can go. The intervals here are sound
over-approximations of each node's present values, from the market's own columns up; a primitive
this module does not know is unbounded, and so is everything read from it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from gpubt.ir.nodes import Node

Interval = tuple[float, float]
UNBOUNDED: Interval = (-math.inf, math.inf)
# Bounds below this leave float64's 1.8e308 out of reach of any rounding.
_SAFE = 1e300
# A divisor is away from zero when its interval is, with room for a convex combination's rounding.
_RELATIVE = 1e-9

# inputs' values passed through, or convex combinations of them (`ewm` too, when alpha ≤ 1)
_HULL = frozenset("shift forward_fill rolling_min rolling_max rolling_mean wilder_mean fill_null".split())


def leaf_interval(values: np.ndarray) -> Interval:
    """The interval of an array's finite values (missing values are not values)."""
    finite = values[np.isfinite(values)]
    if not finite.size:
        return UNBOUNDED
    return float(finite.min()), float(finite.max())


def _bounded(i: Interval) -> bool:
    return -_SAFE < i[0] and i[1] < _SAFE


def _hull(*intervals: Interval) -> Interval:
    return min(i[0] for i in intervals), max(i[1] for i in intervals)


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
    """Intervals of the nodes of a topological order, given the leaves' (`leaf_interval`)."""

    def __init__(self, order: Sequence[Node], leaves: Mapping[Node, Interval], n_days: int) -> None:
        self.intervals: dict[Node, Interval] = {}
        for node in order:
            self.intervals[node] = self._interval(node, leaves, n_days)

    def finite(self, node: Node) -> bool:
        """Whether an add/sub/mul/div/ratio node is finite wherever its inputs are present."""
        if node.op == "div" or node.op == "ratio":
            return _away_from_zero(self.intervals[node.inputs[1]]) and _bounded(self.intervals[node])
        return _bounded(self.intervals[node])

    def _interval(self, node: Node, leaves: Mapping[Node, Interval], n_days: int) -> Interval:
        op, params = node.op, node.params
        if op in ("price", "branch"):
            return leaves.get(node, UNBOUNDED)
        if op == "const":
            value = float(params[0])
            return (value, value) if math.isfinite(value) else UNBOUNDED
        ins = [self.intervals.get(i, UNBOUNDED) for i in node.inputs]
        if op == "where":  # (condition, a, b): the condition's interval means nothing
            ins = ins[1:]
        elif op == "valid_from":  # (x, anchor): x or missing
            ins = ins[:1]
        if not ins or not all(_bounded(i) for i in ins):
            return UNBOUNDED
        if op in _HULL or op in ("where", "valid_from"):
            return _hull(*ins)
        if op == "ewm":
            return ins[0] if 0.0 < float(params[0]) <= 1.0 else UNBOUNDED
        if op in ("min2", "max2"):
            pick = min if op == "min2" else max
            return pick(ins[0][0], ins[1][0]), pick(ins[0][1], ins[1][1])
        if op == "add":
            return ins[0][0] + ins[1][0], ins[0][1] + ins[1][1]
        if op == "sub":
            return ins[0][0] - ins[1][1], ins[0][1] - ins[1][0]
        if op == "neg":
            return -ins[0][1], -ins[0][0]
        if op == "abs":
            lo, hi = ins[0]
            return (0.0 if lo <= 0 <= hi else min(abs(lo), abs(hi))), max(abs(lo), abs(hi))
        if op == "mul":
            return _products(ins[0], ins[1])
        if op in ("div", "ratio"):
            if not _away_from_zero(ins[1]):
                return UNBOUNDED
            lo, hi = ins[1]
            return _products(ins[0], (1.0 / hi, 1.0 / lo))  # 1/x of [lo, hi] on one side of 0
        if op == "rolling_sum":
            return _magnitude(ins[0], int(params[0]))
        if op == "rolling_dot":
            return _magnitude(ins[0], sum(abs(float(w)) for w in params[0]))
        if op == "cum_sum":
            return _magnitude(ins[0], n_days)
        if op == "rolling_std":
            return 0.0, ins[0][1] - ins[0][0]
        if op == "rolling_max_drawdown" and ins[0][0] > 0:  # (peak − x)/peak with 0 < x ≤ peak
            return 0.0, 1.0
        return UNBOUNDED
