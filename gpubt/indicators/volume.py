"""Volume metrics: Money Flow Index, OBV rate of change, VWAP ratio (spec §4.1). A ratio ticker has
no volume (a missing series), so each of these is missing for it."""

from __future__ import annotations

from collections.abc import Callable

from gpubt.indicators._series import NAN, S, masked, sign, where
from gpubt.indicators.source import Source
from gpubt.ir.nodes import Builder


def _typical(h: S, lo: S, c: S) -> S:
    return (h + lo + c) / 3.0


def money_flow_index(b: Builder, src: Source, p: int) -> S:
    """100 − 100/(1 + pos/neg) of TP·v flows over p days; neg = 0 → 100 if pos > 0 else 50. A day
    whose TP equals the previous one adds to neither side."""
    _, h, lo, c, v = src.series(b)
    tp = _typical(h, lo, c)
    flow = tp * v
    zero = masked(0.0, flow)
    pos_flow = where(tp > tp.shift(1), flow, zero)
    neg_flow = where(tp < tp.shift(1), flow, zero)
    pos, neg = pos_flow.rolling_sum(p), neg_flow.rolling_sum(p)
    flat = masked(where(pos_flow.rolling_max(p) > 0.0, 100.0, 50.0), pos, neg)
    return where(neg_flow.rolling_max(p) > 0.0, 100.0 - 100.0 / (1.0 + pos / neg), flat)


def obv_rate_of_change(b: Builder, src: Source, p: int) -> S:
    """On-balance volume from the first day's volume; 100(OBV − OBV₋ₚ)/|OBV₋ₚ|."""
    _, _, _, c, v = src.series(b)
    signed = sign(c - c.shift(1)) * v
    obv = signed.fill_null(v).cum_sum()
    then = obv.shift(p)
    return 100.0 * (obv - then) / abs(then)


def vwap_ratio(b: Builder, src: Source, p: int) -> S:
    """c over Σ TP·v / Σ v of the last p days; missing when no volume traded."""
    _, h, lo, c, v = src.series(b)
    vwap = (_typical(h, lo, c) * v).rolling_sum(p) / v.rolling_sum(p)
    return where(v.rolling_max(p) > 0.0, c / vwap, NAN)


EXPANSIONS: dict[str, Callable[[Builder, Source, int], S]] = {
    "Money Flow Index": money_flow_index,
    "OBV Rate of Change": obv_rate_of_change,
    "VWAP Ratio": vwap_ratio,
}
