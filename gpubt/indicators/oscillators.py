"""Oscillators: the RSI family, stochastics, Williams %R, CCI, MACD, PPO, Aroon, ADX (spec §4.1)."""

from __future__ import annotations

from collections.abc import Callable

from gpubt.indicators._series import C, S, masked, max2, where
from gpubt.indicators.moving_averages import ema
from gpubt.indicators.source import Source
from gpubt.ir.nodes import Builder


def gains_losses(c: S) -> tuple[S, S]:
    """Gain and loss of each day's change (missing on the first day)."""
    prev = c.shift(1)
    return max2(c - prev, 0.0), max2(prev - c, 0.0)


def rsi_value(ag: S, al: S, gained: C, lost: C) -> S:
    """100 − 100/(1 + AG/AL); AL = 0 → 100 if AG > 0 else 50. `gained`/`lost` say exactly
    whether AG/AL are above 0 (a windowed sum may not come back to an exact 0)."""
    flat = masked(where(gained, 100.0, 50.0), ag, al)
    return where(lost, 100.0 - 100.0 / (1.0 + ag / al), flat)


def rsi_wilder(c: S, p: int) -> S:
    """Wilder RSI: averages seeded with the means of the first p gains/losses, then
    (avg·(p − 1) + x)/p (`wilder_mean`: the reference's arithmetic, to the last bit)."""
    g, lo = gains_losses(c)
    ag, al = g.wilder_mean(p), lo.wilder_mean(p)
    return rsi_value(ag, al, ag > 0.0, al > 0.0)


def rsi(b: Builder, src: Source, p: int) -> S:
    return rsi_wilder(S(b, src.close), p)


def rsi_sma(b: Builder, src: Source, p: int) -> S:
    g, lo = gains_losses(S(b, src.close))
    return rsi_value(
        g.rolling_mean(p), lo.rolling_mean(p), g.rolling_max(p) > 0.0, lo.rolling_max(p) > 0.0
    )


def rsi_ema(b: Builder, src: Source, p: int) -> S:
    g, lo = gains_losses(S(b, src.close))
    ag, al = ema(g, p), ema(lo, p)
    return rsi_value(ag, al, ag > 0.0, al > 0.0)


def stochastic_rsi(b: Builder, src: Source, p: int) -> S:
    r = rsi_wilder(S(b, src.close), p)
    hi, lo = r.rolling_max(p), r.rolling_min(p)
    return where(hi > lo, 100.0 * (r - lo) / (hi - lo), masked(50.0, hi, lo))


def laguerre(b: Builder, src: Source, p: int) -> S:
    return S(b, src.close).laguerre_rsi(0.8)  # the window is ignored: γ is fixed


def _differ(a: S, b: S) -> C:
    """a ≠ b (a ratio's "high" can be below its "low", so HH < LL happens)."""
    return (a > b) | (a < b)


def _stochastic(b: Builder, src: Source, p: int) -> S:
    _, h, lo, c, _ = src.series(b)
    hh, ll = h.rolling_max(p), lo.rolling_min(p)
    return where(_differ(hh, ll), 100.0 * (c - ll) / (hh - ll), masked(50.0, hh, ll, c))


def stochastic_k(b: Builder, src: Source, p: int) -> S:
    return _stochastic(b, src, p)


def stochastic_d(b: Builder, src: Source, p: int) -> S:
    return _stochastic(b, src, p).rolling_mean(3)


def williams_r(b: Builder, src: Source, p: int) -> S:
    _, h, lo, c, _ = src.series(b)
    hh, ll = h.rolling_max(p), lo.rolling_min(p)
    return where(_differ(hh, ll), -100.0 * (hh - c) / (hh - ll), masked(-50.0, hh, ll, c))


def cci(b: Builder, src: Source, p: int) -> S:
    """(TP − mean)/(0.015 · mean absolute deviation) over p typical prices; 0 when all equal."""
    _, h, lo, c, _ = src.series(b)
    tp = (h + lo + c) / 3.0
    mean = tp.rolling_mean(p)
    varied = tp.rolling_max(p) > tp.rolling_min(p)
    return where(varied, (tp - mean) / (0.015 * tp.rolling_mad(p)), masked(0.0, mean))


def macd_histogram(b: Builder, src: Source, p: int) -> S:
    """TA-Lib MACD(12, 26, 9): both EMAs seeded on day 25 (the fast one with c₁₄ … c₂₅)."""
    c = S(b, src.close)
    fast = ema(c.valid_from(c, 14), 12)
    slow = ema(c, 26)
    macd = fast - slow
    return macd - ema(macd, 9)


def ppo_histogram(b: Builder, src: Source, p: int) -> S:
    c = S(b, src.close)
    e12, e26 = ema(c, 12), ema(c, 26)
    ppo = 100.0 * (e12 - e26) / e26
    return ppo - ema(ppo, 9)


def _aroon(b: Builder, src: Source, p: int) -> tuple[S, S]:
    """100 (p − bars since the high/low of the last p + 1 bars)/p, the latest bar on ties."""
    _, h, lo, _, _ = src.series(b)
    factor = 100.0 / p
    up = factor * (float(p) - h.rolling_argmax_age(p + 1))
    down = factor * (float(p) - lo.rolling_argmin_age(p + 1))
    return up, down


def aroon_up(b: Builder, src: Source, p: int) -> S:
    return _aroon(b, src, p)[0]


def aroon_down(b: Builder, src: Source, p: int) -> S:
    return _aroon(b, src, p)[1]


def aroon_oscillator(b: Builder, src: Source, p: int) -> S:
    up, down = _aroon(b, src, p)
    return up - down


def true_range(h: S, lo: S, c: S) -> S:
    """max(h − l, |h − c₋₁|, |l − c₋₁|), missing on the first day."""
    prev = c.shift(1)
    return max2(max2(h - lo, abs(h - prev)), abs(lo - prev))


def adx(b: Builder, src: Source, p: int) -> S:
    """TA-Lib ADX. Wilder's sums S = S − S/p + x, the first the sum of days 1 … p − 1 (day 0's
    moves are 0). DX (missing where undefined) enters the first ADX as 0; afterwards an undefined
    DX leaves ADX unchanged (carried forward)."""
    _, h, lo, c, _ = src.series(b)
    zero = masked(0.0, c)
    up = h - h.shift(1)
    down = lo.shift(1) - lo
    pdm = where((up > 0.0) & (up > down), up, zero)
    mdm = where((down > 0.0) & (up < down), down, zero)
    tr = true_range(h, lo, c).fill_null(zero)
    s_pdm, s_mdm, s_tr = pdm.wilder_sum(p), mdm.wilder_sum(p), tr.wilder_sum(p)
    pdi = 100.0 * (s_pdm / s_tr)
    mdi = 100.0 * (s_mdm / s_tr)
    dx = 100.0 * (abs(mdi - pdi) / (mdi + pdi))
    later = c.valid_from(c, 2 * p).present()  # days ≥ 2p: after the first ADX's window
    dx_in = where(later, dx, dx.fill_null(zero).valid_from(c, p))
    return masked(dx_in.wilder_mean(p).forward_fill(), c)


EXPANSIONS: dict[str, Callable[[Builder, Source, int], S]] = {
    "Relative Strength Index": rsi,
    "RSI (SMA)": rsi_sma,
    "RSI (EMA)": rsi_ema,
    "Stochastic RSI": stochastic_rsi,
    "Laguerre RSI": laguerre,
    "Stochastic %K": stochastic_k,
    "Stochastic %D": stochastic_d,
    "Williams %R": williams_r,
    "CCI": cci,
    "MACD Histogram": macd_histogram,
    "PPO Histogram": ppo_histogram,
    "Aroon Up": aroon_up,
    "Aroon Down": aroon_down,
    "Aroon Oscillator": aroon_oscillator,
    "ADX": adx,
}

