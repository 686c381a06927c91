"""Momentum and trend: 13612W/U, SMA12, ROC, mean return, trend clarity, linear regression
(spec §4.1)."""

from __future__ import annotations

from collections.abc import Callable

from gpubt.indicators._series import NAN, S, masked, where
from gpubt.indicators.source import Source
from gpubt.ir.nodes import Builder


def _ret(c: S, n: int) -> S:
    return c / c.shift(n) - 1.0


def momentum_weighted(b: Builder, src: Source, p: int) -> S:
    c = S(b, src.close)  # the window is ignored: the spec fixes the periods
    total = 12.0 * _ret(c, 21) + 4.0 * _ret(c, 63) + 2.0 * _ret(c, 126) + _ret(c, 252)
    return 100.0 * total / 19.0


def momentum_unweighted(b: Builder, src: Source, p: int) -> S:
    c = S(b, src.close)
    total = _ret(c, 21) + _ret(c, 63) + _ret(c, 126) + _ret(c, 252)
    return 100.0 * total / 4.0


def momentum_sma12(b: Builder, src: Source, p: int) -> S:
    avg = S(b, src.close).rolling_mean(12)
    return 100.0 * (avg / avg.shift(252) - 1.0)


def rate_of_change(b: Builder, src: Source, p: int) -> S:
    c = S(b, src.close)
    return 100.0 * (c / c.shift(p) - 1.0)


def average_return(b: Builder, src: Source, p: int) -> S:
    return 100.0 * _ret(S(b, src.close), 1).rolling_mean(p)


def trend_clarity(b: Builder, src: Source, p: int) -> S:
    """|c − c₋ₚ| / Σ|Δc| over p days; missing when nothing moved."""
    c = S(b, src.close)
    step = abs(c - c.shift(1))
    moved = step.rolling_max(p) > 0.0
    return where(moved, abs(c - c.shift(p)) / step.rolling_sum(p), NAN)


def _slope(c: S, p: int) -> S:
    """OLS slope of the last p values on 0 … p − 1 (0 for a single point): Σ(i − x̄)·(yᵢ − ȳ) / Sxx,
    centered as the reference sums it (the uncentered Σ(i − x̄)·yᵢ loses digits)."""
    if p == 1:
        return masked(0.0, c)
    xm = (p - 1) / 2.0
    sxx = sum((i - xm) ** 2 for i in range(p))
    return c.rolling_dot_centered([i - xm for i in range(p)]) / sxx


def linreg_slope(b: Builder, src: Source, p: int) -> S:
    c = S(b, src.close)
    return 100.0 * _slope(c, p) / c.rolling_mean(p)


def linreg_value(b: Builder, src: Source, p: int) -> S:
    c = S(b, src.close)
    if p == 1:
        return c
    return c.rolling_mean(p) + _slope(c, p) * (p - 1 - (p - 1) / 2.0)


def price_vs_sma(b: Builder, src: Source, p: int) -> S:
    c = S(b, src.close)
    return 100.0 * (c / c.rolling_mean(p) - 1.0)


EXPANSIONS: dict[str, Callable[[Builder, Source, int], S]] = {
    "Momentum (Weighted)": momentum_weighted,
    "Momentum (Unweighted)": momentum_unweighted,
    "Momentum (12-Month SMA)": momentum_sma12,
    "Rate of Change": rate_of_change,
    "Cumulative Return": rate_of_change,
    "Moving Average of Return": average_return,
    "Trend Clarity": trend_clarity,
    "Linear Reg Slope": linreg_slope,
    "Linear Reg Value": linreg_value,
    "Price vs SMA": price_vs_sma,
}
