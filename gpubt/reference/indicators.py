"""The oracle's indicators: every metric of spec §4.1 as the plain per-day loop of its formula.

This is the slow, obvious implementation the compiled engines are proven equal to. It shares
nothing with them but the catalogue (names, aliases, first valid index). Choices the spec leaves
open are listed in docs/decisions.md (Indicators).

Missing values. A ticker's series is NaN before its first price and after its last; inside, a
field can be NaN only for a ratio whose denominator was 0 (and a ratio's volume is all NaN).
Two rules, applied to the fields a metric reads:

* windowed metrics (SMA, std, ROC, Stochastic, MFI, ...) read the inputs of days t−L … t,
  where L is the metric's lookback (`MetricInfo.lookback`); they are missing when any of those
  is missing. Before the ticker's first price that window reaches into the NaN prefix, which is
  why the first valid index is exactly the lookback counted from the first price.
* recursive metrics (EMA, Wilder, RSI, KAMA, Laguerre, MACD, PPO, ATR, ADX, OBV) are missing on
  a day whose input is missing and keep their state unchanged: they resume on the next valid
  day. That is the same as running the recursion on the valid days only and putting the
  results back on their dates (`_on_valid_days`), which is how it is written here.

A metric built on another applies each rule to its own stage: Stochastic RSI is a window over
the (recursive) RSI, OBV Rate of Change a window over the (recursive) OBV, ATR % the ATR over c.

A result that is not a finite number (a division by a zero price, say) is missing.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from gpubt.data.market import Bars
from gpubt.errors import GpubtError
from gpubt.schema.catalogue import METRICS, MetricInfo, resolve_metric

NAN = math.nan


# --------------------------------------------------------------------------------------------
# small helpers


def _nans(n: int) -> np.ndarray:
    return np.full(n, NAN)


def _missing(*fields: np.ndarray) -> np.ndarray:
    """True on the days where any of the fields is missing."""
    missing = np.zeros(fields[0].size, dtype=bool)
    for f in fields:
        missing |= np.isnan(f)
    return missing


def _runs(*fields: np.ndarray) -> list[int]:
    """run[t] = how many consecutive days ending at t have every field present."""
    run, count = [], 0
    for gap in _missing(*fields).tolist():
        count = 0 if gap else count + 1
        run.append(count)
    return run


def _on_valid_days(fn: Callable[..., np.ndarray], *fields: np.ndarray) -> np.ndarray:
    """Run a recursion `fn` over the days where every field is present, as if the other days did
    not exist; those days come out missing (the state is carried over them unchanged)."""
    out = _nans(fields[0].size)
    days = np.flatnonzero(~_missing(*fields))
    if days.size:
        out[days] = fn(*(f[days] for f in fields))
    return out


def _first_present(x: np.ndarray) -> int:
    """Index of the first non-NaN value (len(x) when none). Recursions below get series that are
    NaN only at the start (the warm-up of an earlier stage)."""
    for t in range(x.size):
        if not math.isnan(x[t]):
            return t
    return x.size


def _mean(w: list[float]) -> float:
    return sum(w) / len(w)


def _pstd(w: list[float]) -> float:
    """Population standard deviation (ddof = 0); exactly 0 when every value is equal."""
    if all(x == w[0] for x in w):
        return 0.0
    m = _mean(w)
    return math.sqrt(sum((x - m) * (x - m) for x in w) / len(w))


def _wma_value(w: list[float]) -> float:
    """Linear weights 1 … n, the newest value weighted n."""
    n = len(w)
    return sum((i + 1) * x for i, x in enumerate(w)) / (n * (n + 1) / 2)


# --------------------------------------------------------------------------------------------
# windowed loops (full-length series; missing when the window holds a missing value). The window
# functions get plain lists of the `span` values ending on day t, oldest first.


def _window_loop(f: Callable[..., float], span: int, *fields: np.ndarray) -> np.ndarray:
    """out[t] = f(fields over days t−span+1 … t), missing unless all of them are present (or
    when the formula divides by zero: a zero price, mean or volume sum)."""
    run = _runs(*fields)
    values = [x.tolist() for x in fields]
    out = _nans(fields[0].size)
    for t in range(fields[0].size):
        if run[t] >= span:
            try:
                out[t] = f(*(x[t - span + 1 : t + 1] for x in values))
            except (ZeroDivisionError, OverflowError):
                out[t] = NAN
    return out


def _sma_loop(x: np.ndarray, p: int) -> np.ndarray:
    return _window_loop(_mean, p, x)


def _wma_loop(x: np.ndarray, p: int) -> np.ndarray:
    return _window_loop(_wma_value, p, x)


# --------------------------------------------------------------------------------------------
# recursive loops (gapless series, possibly NaN at the start only)


def _ema_from(x: np.ndarray, p: int, seed_at: int, k: float | None = None) -> np.ndarray:
    """EMA with factor k (default 2/(p+1)), seeded at index `seed_at` with the mean of the p
    values ending there, then e_t = e_{t−1} + k(x_t − e_{t−1})."""
    k = 2.0 / (p + 1) if k is None else k
    out = _nans(x.size)
    if seed_at >= x.size or seed_at - p + 1 < 0:
        return out
    xs = x.tolist()
    e = _mean(xs[seed_at - p + 1 : seed_at + 1])
    out[seed_at] = e
    for t in range(seed_at + 1, len(xs)):
        e = e + k * (xs[t] - e)
        out[t] = e
    return out


def _ema_loop(x: np.ndarray, p: int) -> np.ndarray:
    """SMA-seeded EMA: first value at (first present index) + p − 1."""
    return _ema_from(x, p, _first_present(x) + p - 1)


def _wilder_loop(x: np.ndarray, p: int) -> np.ndarray:
    """SMA-seeded Wilder average: m_t = m_{t−1} + (x_t − m_{t−1})/p."""
    return _ema_from(x, p, _first_present(x) + p - 1, k=1.0 / p)


def _rsi_value(ag: float, al: float) -> float:
    if al == 0.0:
        return 100.0 if ag > 0.0 else 50.0
    return 100.0 - 100.0 / (1.0 + ag / al)


def _gains_losses(c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Gain and loss of each day's change (day 0 has none)."""
    g, lo = _nans(c.size), _nans(c.size)
    cs = c.tolist()
    for t in range(1, len(cs)):
        d = cs[t] - cs[t - 1]
        g[t] = d if d > 0 else 0.0
        lo[t] = -d if d < 0 else 0.0
    return g, lo


def _rsi_wilder(c: np.ndarray, p: int) -> np.ndarray:
    """Wilder RSI on a gapless series: averages seeded with the means of the first p gains and
    losses (days 1 … p), then avg = (avg·(p−1) + x)/p."""
    out = _nans(c.size)
    if c.size <= p:
        return out
    g, lo = (x.tolist() for x in _gains_losses(c))
    ag = _mean(g[1 : p + 1])
    al = _mean(lo[1 : p + 1])
    out[p] = _rsi_value(ag, al)
    for t in range(p + 1, c.size):
        ag = (ag * (p - 1) + g[t]) / p
        al = (al * (p - 1) + lo[t]) / p
        out[t] = _rsi_value(ag, al)
    return out


def _rsi_ema(c: np.ndarray, p: int) -> np.ndarray:
    g, lo = _gains_losses(c)
    ag, al = _ema_loop(g, p), _ema_loop(lo, p)
    out = _nans(c.size)
    for t in range(c.size):
        if not math.isnan(ag[t]):
            out[t] = _rsi_value(ag[t], al[t])
    return out


def _kama(c: np.ndarray, p: int) -> np.ndarray:
    """KAMA: value c_{p−1} at p−1, then k_t = k_{t−1} + sc(c_t − k_{t−1}),
    ER = |c_t − c_{t−p}| / Σ|Δc| over the last p changes (0 if no movement),
    sc = (ER(2/3 − 2/31) + 2/31)²."""
    out = _nans(c.size)
    if c.size < p:
        return out
    fast, slow = 2.0 / 3.0, 2.0 / 31.0
    x = c.tolist()
    k = x[p - 1]
    out[p - 1] = k
    for t in range(p, len(x)):
        path = 0.0
        for s in range(t - p + 1, t + 1):
            path += abs(x[s] - x[s - 1])
        er = abs(x[t] - x[t - p]) / path if path != 0.0 else 0.0
        sc = er * (fast - slow) + slow
        sc = sc * sc
        k = k + sc * (x[t] - k)
        out[t] = k
    return out


def _laguerre_rsi(c: np.ndarray, gamma: float = 0.8) -> np.ndarray:
    """Ehlers' Laguerre RSI, filter state 0 before the first price, scaled 0 … 100."""
    out = _nans(c.size)
    l0 = l1 = l2 = l3 = 0.0
    for t, price in enumerate(c.tolist()):
        n0 = (1 - gamma) * price + gamma * l0
        n1 = -gamma * n0 + l0 + gamma * l1
        n2 = -gamma * n1 + l1 + gamma * l2
        n3 = -gamma * n2 + l2 + gamma * l3
        l0, l1, l2, l3 = n0, n1, n2, n3
        cu = cd = 0.0
        for a, b in ((l0, l1), (l1, l2), (l2, l3)):
            if a >= b:
                cu += a - b
            else:
                cd += b - a
        out[t] = 100.0 * cu / (cu + cd) if cu + cd != 0.0 else 50.0
    return out


def _macd_hist(c: np.ndarray) -> np.ndarray:
    """TA-Lib MACD(12, 26, 9): both EMAs are seeded on day 25 (the fast one with the mean of
    c_14 … c_25, as TA-Lib does), MACD from day 25, signal = SMA-seeded EMA(9) of it (day 33)."""
    fast = _ema_from(c, 12, 25)
    slow = _ema_from(c, 26, 25)
    macd = fast - slow
    signal = _ema_loop(macd, 9)
    return macd - signal


def _ppo_hist(c: np.ndarray) -> np.ndarray:
    """PPO = 100(EMA12 − EMA26)/EMA26 with the catalogue's EMAs (TA-Lib PPO, EMA type), from day
    25; signal = SMA-seeded EMA(9) of PPO (day 33)."""
    e12, e26 = _ema_loop(c, 12), _ema_loop(c, 26)
    ppo = _nans(c.size)
    for t in range(c.size):
        if not math.isnan(e26[t]):
            ppo[t] = 100.0 * (e12[t] - e26[t]) / e26[t]
    return ppo - _ema_loop(ppo, 9)


def _true_range(h: np.ndarray, lo: np.ndarray, c: np.ndarray) -> np.ndarray:
    """TA-Lib TRANGE: max(h − l, |h − c_{t−1}|, |l − c_{t−1}|), from day 1."""
    tr = _nans(c.size)
    hs, ls, cs = h.tolist(), lo.tolist(), c.tolist()
    for t in range(1, len(cs)):
        tr[t] = max(hs[t] - ls[t], abs(hs[t] - cs[t - 1]), abs(ls[t] - cs[t - 1]))
    return tr


def _atr(h: np.ndarray, lo: np.ndarray, c: np.ndarray, p: int) -> np.ndarray:
    """TA-Lib ATR: mean of TR_1 … TR_p on day p, then (ATR·(p−1) + TR)/p."""
    out = _nans(c.size)
    if c.size <= p:
        return out
    tr = _true_range(h, lo, c).tolist()
    a = _mean(tr[1 : p + 1])
    out[p] = a
    for t in range(p + 1, c.size):
        a = (a * (p - 1) + tr[t]) / p
        out[t] = a
    return out


def _adx(h: np.ndarray, lo: np.ndarray, c: np.ndarray, p: int) -> np.ndarray:
    """TA-Lib ADX. +DM/−DM/TR are summed over days 1 … p−1; from day p on each is smoothed as
    S = S − S/p + x; DX = 100|+DI − −DI|/(+DI + −DI) on days p … 2p−1 averages into the first ADX
    (day 2p−1), then ADX = (ADX·(p−1) + DX)/p. A day with smoothed TR = 0 or +DI + −DI = 0 adds a
    DX of 0 to the first average and leaves ADX unchanged afterwards (TA-Lib)."""
    out = _nans(c.size)
    if c.size < 2 * p:
        return out
    hs, ls, cs = h.tolist(), lo.tolist(), c.tolist()

    def moves(t: int) -> tuple[float, float, float]:
        up = hs[t] - hs[t - 1]
        down = ls[t - 1] - ls[t]
        pdm = mdm = 0.0
        if down > 0 and up < down:
            mdm = down
        elif up > 0 and up > down:
            pdm = up
        tr = max(hs[t] - ls[t], abs(hs[t] - cs[t - 1]), abs(ls[t] - cs[t - 1]))
        return pdm, mdm, tr

    def dx(spdm: float, smdm: float, str_: float) -> float | None:
        if str_ == 0.0:
            return None
        pdi = 100.0 * (spdm / str_)
        mdi = 100.0 * (smdm / str_)
        if pdi + mdi == 0.0:
            return None
        return 100.0 * (abs(mdi - pdi) / (mdi + pdi))

    spdm = smdm = s_tr = 0.0
    for t in range(1, p):
        pdm, mdm, tr = moves(t)
        spdm += pdm
        smdm += mdm
        s_tr += tr
    sum_dx = 0.0
    for t in range(p, 2 * p):
        pdm, mdm, tr = moves(t)
        spdm = spdm - spdm / p + pdm
        smdm = smdm - smdm / p + mdm
        s_tr = s_tr - s_tr / p + tr
        d = dx(spdm, smdm, s_tr)
        sum_dx += 0.0 if d is None else d
    adx = sum_dx / p
    out[2 * p - 1] = adx
    for t in range(2 * p, c.size):
        pdm, mdm, tr = moves(t)
        spdm = spdm - spdm / p + pdm
        smdm = smdm - smdm / p + mdm
        s_tr = s_tr - s_tr / p + tr
        d = dx(spdm, smdm, s_tr)
        if d is not None:
            adx = (adx * (p - 1) + d) / p
        out[t] = adx
    return out


def _obv(c: np.ndarray, v: np.ndarray) -> np.ndarray:
    """On-balance volume, starting at the first day's volume (TA-Lib)."""
    out = _nans(c.size)
    if c.size == 0:
        return out
    cs, vs = c.tolist(), v.tolist()
    obv = vs[0]
    out[0] = obv
    for t in range(1, len(cs)):
        if cs[t] > cs[t - 1]:
            obv += vs[t]
        elif cs[t] < cs[t - 1]:
            obv -= vs[t]
        out[t] = obv
    return out


# --------------------------------------------------------------------------------------------
# the catalogue


def _typical(b: Bars) -> np.ndarray:
    return (b.high + b.low + b.close) / 3.0


def _hma(c: np.ndarray, p: int) -> np.ndarray:
    half = max(1, p // 2)
    root = max(1, math.isqrt(p))
    diff = 2.0 * _wma_loop(c, half) - _wma_loop(c, p)
    return _wma_loop(diff, root)


def _dema(c: np.ndarray, p: int) -> np.ndarray:
    e1 = _ema_loop(c, p)
    e2 = _ema_loop(e1, p)
    return 2.0 * e1 - e2


def _tema(c: np.ndarray, p: int) -> np.ndarray:
    e1 = _ema_loop(c, p)
    e2 = _ema_loop(e1, p)
    e3 = _ema_loop(e2, p)
    return 3.0 * e1 - 3.0 * e2 + e3


def _rsi_sma(c: np.ndarray, p: int) -> np.ndarray:
    def f(w: list[float]) -> float:
        ag = al = 0.0
        for s in range(1, len(w)):
            d = w[s] - w[s - 1]
            ag += d if d > 0 else 0.0
            al += -d if d < 0 else 0.0
        return _rsi_value(ag / p, al / p)

    return _window_loop(f, p + 1, c)


def _stoch_rsi(c: np.ndarray, p: int) -> np.ndarray:
    rsi = _on_valid_days(lambda x: _rsi_wilder(x, p), c)

    def f(w: list[float]) -> float:
        hi, lo = max(w), min(w)
        return 50.0 if hi == lo else 100.0 * (w[-1] - lo) / (hi - lo)

    return _window_loop(f, p, rsi)


def _momentum(weights: tuple[float, float, float, float]) -> Callable[[list[float]], float]:
    def f(w: list[float]) -> float:  # w = the last 253 closes
        last = w[-1]
        rets = [last / w[-1 - n] - 1.0 for n in (21, 63, 126, 252)]
        return 100.0 * sum(wi * ri for wi, ri in zip(weights, rets)) / sum(weights)

    return f


def _sma12_momentum(w: list[float]) -> float:  # w = the last 264 closes
    now = _mean(w[-12:])
    then = _mean(w[:12])  # the 12 closes ending 252 days ago
    return 100.0 * (now / then - 1.0)


def _change(w: list[float]) -> float:  # w = the last p + 1 values
    return 100.0 * (w[-1] / w[0] - 1.0)


def _window_returns(w: list[float]) -> list[float]:
    """The daily returns inside a window of closes."""
    return [w[s] / w[s - 1] - 1.0 for s in range(1, len(w))]


def _max_drawdown(w: list[float]) -> float:
    peak, worst = w[0], 0.0
    for x in w:
        peak = max(peak, x)
        worst = max(worst, (peak - x) / peak)
    return 100.0 * worst


def _drawdown(w: list[float]) -> float:
    m = max(w)
    return 100.0 * (m - w[-1]) / m


def _bollinger_b(w: list[float]) -> float:
    sd = _pstd(w)
    if sd == 0.0:
        return 0.5
    m = _mean(w)
    return (w[-1] - (m - 2.0 * sd)) / (4.0 * sd)


def _bollinger_width(w: list[float]) -> float:
    return 100.0 * 4.0 * _pstd(w) / _mean(w)


def _hist_vol(w: list[float]) -> float:  # w = the last p + 1 closes
    ratios = [w[s] / w[s - 1] for s in range(1, len(w))]
    if not all(r > 0.0 for r in ratios):
        return NAN
    return 100.0 * math.sqrt(252.0) * _pstd([math.log(r) for r in ratios])


def _ulcer(w: list[float]) -> float:
    peak, total = w[0], 0.0
    for x in w:
        peak = max(peak, x)
        dd = 100.0 * (x - peak) / peak
        total += dd * dd
    return math.sqrt(total / len(w))


def _trend_clarity(w: list[float]) -> float:  # w = the last p + 1 closes
    path = sum(abs(w[s] - w[s - 1]) for s in range(1, len(w)))
    return abs(w[-1] - w[0]) / path if path != 0.0 else NAN


def _linreg(w: list[float]) -> tuple[float, float]:
    """OLS of w on 0 … n−1: (slope, fitted value at the last point). One point: slope 0."""
    n = len(w)
    xm = (n - 1) / 2.0
    ym = _mean(w)
    sxx = sum((i - xm) ** 2 for i in range(n))
    sxy = sum((i - xm) * (w[i] - ym) for i in range(n))
    slope = sxy / sxx if sxx != 0.0 else 0.0
    return slope, ym + slope * (n - 1 - xm)


def _linreg_slope(w: list[float]) -> float:
    return 100.0 * _linreg(w)[0] / _mean(w)


def _price_vs_sma(w: list[float]) -> float:
    return 100.0 * (w[-1] / _mean(w) - 1.0)


def _aroon(h: np.ndarray, lo: np.ndarray, p: int, which: str) -> np.ndarray:
    """TA-Lib Aroon over the p + 1 bars t−p … t: 100(p − bars since the highest high / lowest
    low)/p; on ties the most recent bar counts."""

    def f(wh: list[float], wl: list[float]) -> float:
        hi_at = lo_at = 0
        for s in range(len(wh)):
            if wh[s] >= wh[hi_at]:
                hi_at = s
            if wl[s] <= wl[lo_at]:
                lo_at = s
        factor = 100.0 / p
        up = factor * (p - (p - hi_at))
        down = factor * (p - (p - lo_at))
        return {"up": up, "down": down, "osc": up - down}[which]

    return _window_loop(f, p + 1, h, lo)


def _williams(wh: list[float], wl: list[float], wc: list[float]) -> float:
    hh, ll = max(wh), min(wl)
    return -50.0 if hh == ll else -100.0 * (hh - wc[-1]) / (hh - ll)


def _stoch_k(wh: list[float], wl: list[float], wc: list[float]) -> float:
    hh, ll = max(wh), min(wl)
    return 50.0 if hh == ll else 100.0 * (wc[-1] - ll) / (hh - ll)


def _cci(w: list[float]) -> float:  # w = the last p typical prices
    if all(x == w[0] for x in w):
        return 0.0
    m = _mean(w)
    mad = sum(abs(x - m) for x in w) / len(w)
    if mad == 0.0:
        return 0.0
    return (w[-1] - m) / (0.015 * mad)


def _mfi(wtp: list[float], wv: list[float]) -> float:  # the last p + 1 typical prices / volumes
    pos = neg = 0.0
    for s in range(1, len(wtp)):
        flow = wtp[s] * wv[s]
        if wtp[s] > wtp[s - 1]:
            pos += flow
        elif wtp[s] < wtp[s - 1]:
            neg += flow
    if neg == 0.0:
        return 100.0 if pos > 0.0 else 50.0
    return 100.0 - 100.0 / (1.0 + pos / neg)


def _obv_roc(w: list[float]) -> float:  # the last p + 1 OBV values
    return 100.0 * (w[-1] - w[0]) / abs(w[0]) if w[0] != 0.0 else NAN


def _vwap_ratio(wtp: list[float], wv: list[float], wc: list[float]) -> float:
    vol = sum(wv)
    if vol == 0.0:
        return NAN
    return wc[-1] / (sum(tp * v for tp, v in zip(wtp, wv)) / vol)


def _compute(name: str, b: Bars, p: int) -> np.ndarray:
    c, h, lo, v = b.close, b.high, b.low, b.volume
    W = _window_loop
    R = _on_valid_days
    if name == "Current Price":
        return c.copy()
    if name == "Simple Moving Average":
        return _sma_loop(c, p)
    if name == "Exponential Moving Average":
        return R(lambda x: _ema_loop(x, p), c)
    if name == "Weighted Moving Average":
        return _wma_loop(c, p)
    if name == "Hull Moving Average":
        return _hma(c, p)
    if name == "Wilder Moving Average":
        return R(lambda x: _wilder_loop(x, p), c)
    if name == "DEMA":
        return R(lambda x: _dema(x, p), c)
    if name == "TEMA":
        return R(lambda x: _tema(x, p), c)
    if name == "KAMA":
        return R(lambda x: _kama(x, p), c)
    if name == "Relative Strength Index":
        return R(lambda x: _rsi_wilder(x, p), c)
    if name == "RSI (SMA)":
        return _rsi_sma(c, p)
    if name == "RSI (EMA)":
        return R(lambda x: _rsi_ema(x, p), c)
    if name == "Stochastic RSI":
        return _stoch_rsi(c, p)
    if name == "Laguerre RSI":
        return R(_laguerre_rsi, c)
    if name == "Momentum (Weighted)":
        return W(_momentum((12.0, 4.0, 2.0, 1.0)), 253, c)
    if name == "Momentum (Unweighted)":
        return W(_momentum((1.0, 1.0, 1.0, 1.0)), 253, c)
    if name == "Momentum (12-Month SMA)":
        return W(_sma12_momentum, 264, c)
    if name in ("Rate of Change", "Cumulative Return"):
        return W(_change, p + 1, c)
    if name == "Moving Average of Return":
        return W(lambda w: 100.0 * _mean(_window_returns(w)), p + 1, c)
    if name == "Standard Deviation":
        return W(lambda w: _pstd(_window_returns(w)), p + 1, c)
    if name == "Standard Deviation of Return":
        return W(lambda w: 100.0 * _pstd(_window_returns(w)), p + 1, c)
    if name == "Standard Deviation of Price":
        return W(_pstd, p, c)
    if name == "Max Drawdown":
        return W(_max_drawdown, p, c)
    if name == "Drawdown":
        return W(_drawdown, p, c)
    if name == "Bollinger %B":
        return W(_bollinger_b, p, c)
    if name == "Bollinger Bandwidth":
        return W(_bollinger_width, p, c)
    if name == "Historical Volatility":
        return W(_hist_vol, p + 1, c)
    if name == "Ulcer Index":
        return W(_ulcer, p, c)
    if name == "Trend Clarity":
        return W(_trend_clarity, p + 1, c)
    if name == "Linear Reg Slope":
        return W(_linreg_slope, p, c)
    if name == "Linear Reg Value":
        return W(lambda w: _linreg(w)[1], p, c)
    if name == "Price vs SMA":
        return W(_price_vs_sma, p, c)
    if name == "MACD Histogram":
        return R(_macd_hist, c)
    if name == "PPO Histogram":
        return R(_ppo_hist, c)
    if name == "Aroon Up":
        return _aroon(h, lo, p, "up")
    if name == "Aroon Down":
        return _aroon(h, lo, p, "down")
    if name == "Aroon Oscillator":
        return _aroon(h, lo, p, "osc")
    if name == "ATR":
        return R(lambda *x: _atr(*x, p), h, lo, c)
    if name == "ATR %":
        return 100.0 * R(lambda *x: _atr(*x, p), h, lo, c) / c
    if name == "Williams %R":
        return W(_williams, p, h, lo, c)
    if name == "CCI":
        return W(_cci, p, _typical(b))
    if name == "Stochastic %K":
        return W(_stoch_k, p, h, lo, c)
    if name == "Stochastic %D":
        return _sma_loop(W(_stoch_k, p, h, lo, c), 3)
    if name == "ADX":
        return R(lambda *x: _adx(*x, p), h, lo, c)
    if name == "Money Flow Index":
        return W(_mfi, p + 1, _typical(b), v)
    if name == "OBV Rate of Change":
        return W(_obv_roc, p + 1, R(_obv, c, v))
    if name == "VWAP Ratio":
        return W(_vwap_ratio, p, _typical(b), v, c)
    raise AssertionError(f"catalogue metric {name!r} has no reference implementation")


def _info(metric: str) -> MetricInfo:
    info = resolve_metric(metric) if isinstance(metric, str) else None
    if info is None:
        raise GpubtError(
            f"unknown metric {metric!r}; known metrics: {', '.join(m.name for m in METRICS)}",
            path="metric",
        )
    return info


def indicator(metric: str, bars: Bars, window: int) -> np.ndarray:
    """The metric's full series over the bars' date axis (float64, NaN where missing).

    `metric` is a catalogue name or alias (spec §4.1); p = max(1, window)."""
    info = _info(metric)
    p = max(1, int(window))
    b = Bars(*(np.asarray(f, dtype=np.float64) for f in bars))
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        out = np.asarray(_compute(info.name, b, p), dtype=np.float64)
    out = out.copy()
    out[~np.isfinite(out)] = NAN
    return out
