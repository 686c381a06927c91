"""Volatility and drawdown: standard deviations, Bollinger, historical volatility, drawdowns,
Ulcer Index, ATR (spec §4.1)."""

from __future__ import annotations

import math
from collections.abc import Callable

from gpubt.indicators._series import S, log, masked, where
from gpubt.indicators.oscillators import true_range
from gpubt.indicators.source import Source
from gpubt.ir.nodes import Builder


def _returns(c: S) -> S:
    return c / c.shift(1) - 1.0


def std_dev(b: Builder, src: Source, p: int) -> S:
    return _returns(S(b, src.close)).rolling_std(p)


def std_dev_return(b: Builder, src: Source, p: int) -> S:
    return 100.0 * _returns(S(b, src.close)).rolling_std(p)


def std_dev_price(b: Builder, src: Source, p: int) -> S:
    return S(b, src.close).rolling_std(p)


def max_drawdown(b: Builder, src: Source, p: int) -> S:
    return 100.0 * S(b, src.close).rolling_max_drawdown(p)


def drawdown(b: Builder, src: Source, p: int) -> S:
    c = S(b, src.close)
    top = c.rolling_max(p)
    return 100.0 * (top - c) / top


def bollinger_b(b: Builder, src: Source, p: int) -> S:
    """(c − (M − 2σ))/(4σ); 0.5 when σ = 0 (rolling_std is exactly 0 on a constant window)."""
    c = S(b, src.close)
    sd, mean = c.rolling_std(p), c.rolling_mean(p)
    return where(sd > 0.0, (c - (mean - 2.0 * sd)) / (4.0 * sd), masked(0.5, sd))


def bollinger_width(b: Builder, src: Source, p: int) -> S:
    c = S(b, src.close)
    return 100.0 * 4.0 * c.rolling_std(p) / c.rolling_mean(p)


def historical_volatility(b: Builder, src: Source, p: int) -> S:
    c = S(b, src.close)
    return 100.0 * math.sqrt(252.0) * log(c / c.shift(1)).rolling_std(p)


def ulcer(b: Builder, src: Source, p: int) -> S:
    return S(b, src.close).rolling_ulcer(p)


def atr(b: Builder, src: Source, p: int) -> S:
    """Wilder average of the true range: mean of TR₁ … TRₚ on day p, then smoothing 1/p."""
    _, h, lo, c, _ = src.series(b)
    return true_range(h, lo, c).wilder_mean(p)


def atr_percent(b: Builder, src: Source, p: int) -> S:
    return 100.0 * atr(b, src, p) / S(b, src.close)


EXPANSIONS: dict[str, Callable[[Builder, Source, int], S]] = {
    "Standard Deviation": std_dev,
    "Standard Deviation of Return": std_dev_return,
    "Standard Deviation of Price": std_dev_price,
    "Max Drawdown": max_drawdown,
    "Drawdown": drawdown,
    "Bollinger %B": bollinger_b,
    "Bollinger Bandwidth": bollinger_width,
    "Historical Volatility": historical_volatility,
    "Ulcer Index": ulcer,
    "ATR": atr,
    "ATR %": atr_percent,
}
