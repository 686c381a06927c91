"""Reference evaluation of a custom indicator formula (spec §4.4).

This is the oracle the compiled formula columns are tested against, so the series functions are
plain per-day loops over the definition rather than anything vectorised or clever.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from gpubt.data.market import Bars
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
    elementwise,
    finite_or_nan,
    window_arg,
)

Indicator = Callable[[str, Bars, int], np.ndarray]  # (canonical metric name, bars, window)


def evaluate_formula(formula: Formula, bars: Bars, window: int, indicator: Indicator) -> np.ndarray:
    """The formula's daily values (NaN = missing) for one ticker and the condition's window;
    `indicator` computes catalogue metrics so this module stays independent of their code."""
    days = bars.close.shape[0]

    def value(expr: Expr) -> np.ndarray:
        match expr:
            case Num(number):
                return np.full(days, number)
            case Window():
                return np.full(days, float(window))
            case Field(name):
                return finite_or_nan(np.asarray(getattr(bars, name), dtype=np.float64))
            case Neg(operand):
                return elementwise("neg", value(operand))
            case BinOp(op, left, right):
                return elementwise(op, value(left), value(right))
            case MetricCall(metric, _):
                out = np.asarray(
                    indicator(metric, bars, window_arg(expr, window, formula.name)),
                    dtype=np.float64,
                )
                if out.shape != (days,):
                    raise ValueError(f"{metric} returned shape {out.shape}, expected ({days},)")
                return finite_or_nan(out)
            case Func(name, args) if name in SERIES_MIN_N:
                n = window_arg(expr, window, formula.name)
                return finite_or_nan(_SERIES[name](value(args[0]), n))
            case Func(name, args):
                return elementwise(name, *(value(a) for a in args))
        raise TypeError(f"not a formula node: {expr!r}")

    return value(formula.ast)


def _shift(x: np.ndarray, n: int) -> np.ndarray:
    out = np.full(x.shape, np.nan)
    for t in range(n, x.size):
        out[t] = x[t - n]
    return out


def _diff(x: np.ndarray, n: int) -> np.ndarray:
    out = np.full(x.shape, np.nan)
    for t in range(n, x.size):
        out[t] = x[t] - x[t - n]
    return out


def _rolling(reduce: Callable[[list[float]], float]) -> Callable[[np.ndarray, int], np.ndarray]:
    """A function of the last n values, missing while fewer than n exist or any of them is."""

    def apply(x: np.ndarray, n: int) -> np.ndarray:
        out = np.full(x.shape, np.nan)
        for t in range(n - 1, x.size):
            last = [float(v) for v in x[t - n + 1 : t + 1]]
            if not any(math.isnan(v) for v in last):
                out[t] = reduce(last)
        return out

    return apply


def _sum(values: list[float]) -> float:
    """Exactly rounded sum; an overflowing sum is missing like any other non-finite value."""
    try:
        return math.fsum(values)
    except OverflowError:
        return math.nan


def _mean(values: list[float]) -> float:
    return _sum(values) / len(values)


def _std(values: list[float]) -> float:
    """Population standard deviation (ddof = 0); exactly 0 on a window of equal values, as the
    catalogue's standard deviations (the mean of equal values can round one ulp away)."""
    if min(values) == max(values):
        return 0.0
    m = _mean(values)
    return math.sqrt(_sum([(v - m) * (v - m) for v in values]) / len(values))


_SERIES: dict[str, Callable[[np.ndarray, int], np.ndarray]] = {
    "shift": _shift,
    "diff": _diff,
    "mean": _rolling(_mean),
    "std": _rolling(_std),
    "sum": _rolling(_sum),
    "highest": _rolling(max),
    "lowest": _rolling(min),
}
