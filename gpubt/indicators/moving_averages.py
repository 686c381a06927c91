"""Moving averages: SMA, EMA, WMA, HMA, Wilder, DEMA, TEMA, KAMA (spec §4.1).

Each expansion gets the builder, the source and p = max(1, window) and returns the metric's
series; `expand` adds the catalogue warm-up. Choices where the spec is silent:
docs/decisions.md (Indicators).
"""

from __future__ import annotations

import math
from collections.abc import Callable

from gpubt.indicators._series import S, masked, where
from gpubt.indicators.source import Source
from gpubt.ir.nodes import Builder


def ema(x: S, p: int) -> S:
    """SMA-seeded EMA, k = 2/(p+1): first value on x's p-th present day."""
    return x.ewm(2.0 / (p + 1), p)


def wma(x: S, p: int) -> S:
    """Linear weights 1 … p, the newest value weighted p."""
    return x.rolling_dot([float(i + 1) for i in range(p)]) / (p * (p + 1) / 2)


def current_price(b: Builder, src: Source, p: int) -> S:
    return S(b, src.close)


def sma(b: Builder, src: Source, p: int) -> S:
    return S(b, src.close).rolling_mean(p)


def exponential(b: Builder, src: Source, p: int) -> S:
    return ema(S(b, src.close), p)


def weighted(b: Builder, src: Source, p: int) -> S:
    return wma(S(b, src.close), p)


def hull(b: Builder, src: Source, p: int) -> S:
    """WMA(2·WMA(c, ⌊p/2⌋) − WMA(c, p), ⌊√p⌋), both lengths floored at 1."""
    c = S(b, src.close)
    half, root = max(1, p // 2), max(1, math.isqrt(p))
    return wma(2.0 * wma(c, half) - wma(c, p), root)


def wilder(b: Builder, src: Source, p: int) -> S:
    return S(b, src.close).ewm(1.0 / p, p)


def dema(b: Builder, src: Source, p: int) -> S:
    e1 = ema(S(b, src.close), p)
    e2 = ema(e1, p)
    return 2.0 * e1 - e2


def tema(b: Builder, src: Source, p: int) -> S:
    e1 = ema(S(b, src.close), p)
    e2 = ema(e1, p)
    e3 = ema(e2, p)
    return 3.0 * e1 - 3.0 * e2 + e3


def kama(b: Builder, src: Source, p: int) -> S:
    """Efficiency ratio over p changes (0 when nothing moved), smoothing constant
    (ER(2/3 − 2/31) + 2/31)², seeded with c on day p − 1."""
    c = S(b, src.close)
    fast, slow = 2.0 / 3.0, 2.0 / 31.0
    change = abs(c - c.shift(p))
    step = abs(c - c.shift(1))
    moved = step.rolling_max(p) > 0.0  # exact, where a sliding sum may leave a residue
    er = where(moved, change / step.rolling_sum(p), masked(0.0, change))
    sc = er * (fast - slow) + slow
    return c.ewm_var(sc * sc, 1)


EXPANSIONS: dict[str, Callable[[Builder, Source, int], S]] = {
    "Current Price": current_price,
    "Simple Moving Average": sma,
    "Exponential Moving Average": exponential,
    "Weighted Moving Average": weighted,
    "Hull Moving Average": hull,
    "Wilder Moving Average": wilder,
    "DEMA": dema,
    "TEMA": tema,
    "KAMA": kama,
}
