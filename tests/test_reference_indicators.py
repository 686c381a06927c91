"""The oracle's indicators (gpubt.reference.indicators) against TA-Lib, hand-computed series, the
catalogue's warm-up and the missing-value rules (spec §4, docs/decisions.md (Indicators))."""

from __future__ import annotations

import math
from types import ModuleType

import numpy as np
import pytest

from gpubt.data.market import Bars
from gpubt.errors import GpubtError
from gpubt.reference.indicators import indicator
from gpubt.schema.catalogue import METRICS, resolve_metric

NAN = math.nan
WINDOWS = (2, 5, 14, 30)


def random_bars(n: int = 600, seed: int = 7) -> Bars:
    """A random walk with consistent OHLCV: high ≥ max(open, close), low ≤ min(open, close)."""
    rng = np.random.default_rng(seed)
    c = 100.0 * np.exp(np.cumsum(rng.normal(0.0, 0.02, n)))
    o = np.r_[c[0], c[:-1]] * np.exp(rng.normal(0.0, 0.005, n))
    h = np.maximum(o, c) * np.exp(np.abs(rng.normal(0.0, 0.01, n)))
    lo = np.minimum(o, c) * np.exp(-np.abs(rng.normal(0.0, 0.01, n)))
    v = np.round(rng.uniform(1e5, 1e6, n))
    return Bars(o, h, lo, c, v)


BARS = random_bars()


def closes(*values: float, volume: float = 1.0) -> Bars:
    """Bars whose open, high and low equal the close."""
    c = np.array(values, dtype=np.float64)
    return Bars(c.copy(), c.copy(), c.copy(), c, np.full(c.size, volume))


def lookback(metric: str, window: int) -> int:
    info = resolve_metric(metric)
    assert info is not None
    return info.lookback(window)


def first_finite(x: np.ndarray) -> int:
    idx = np.flatnonzero(np.isfinite(x))
    return int(idx[0]) if idx.size else x.size


def check(actual: np.ndarray, expected: list[float]) -> None:
    np.testing.assert_allclose(actual, np.array(expected, dtype=np.float64), rtol=1e-12, atol=1e-12)


# --------------------------------------------------------------------------------------------
# TA-Lib


@pytest.fixture(scope="module")
def talib() -> ModuleType:
    return pytest.importorskip("talib", reason="TA-Lib's Python wheel is needed for the TA-Lib tests")


def _shift(values: np.ndarray, start: int) -> np.ndarray:
    """TA-Lib run on values[start:], put back on the full axis."""
    out = np.full(values.size + start, NAN)
    out[start:] = values
    return out


def _talib_reference(talib: ModuleType, metric: str, p: int) -> np.ndarray:
    o, h, lo, c, v = BARS
    if metric == "Relative Strength Index":
        return talib.RSI(c, p)
    if metric == "Simple Moving Average":
        return talib.SMA(c, p)
    if metric == "Exponential Moving Average":
        return talib.EMA(c, p)
    if metric == "Weighted Moving Average":
        return talib.WMA(c, p)
    if metric == "DEMA":
        return talib.DEMA(c, p)
    if metric == "TEMA":
        return talib.TEMA(c, p)
    if metric == "KAMA":
        return talib.KAMA(c, p)
    if metric == "MACD Histogram":
        return talib.MACD(c, 12, 26, 9)[2]
    if metric == "PPO Histogram":
        # spec: PPO = 100(EMA12 − EMA26)/EMA26 (= talib.PPO with EMA), minus an EMA(9) of PPO
        e12, e26 = talib.EMA(c, 12), talib.EMA(c, 26)
        ppo = 100.0 * (e12 - e26) / e26
        np.testing.assert_allclose(ppo[25:], talib.PPO(c, 12, 26, matype=1)[25:], rtol=1e-9, atol=1e-9)
        return ppo - _shift(talib.EMA(ppo[25:], 9), 25)
    if metric == "Aroon Up":
        return talib.AROON(h, lo, p)[1]  # talib returns (down, up)
    if metric == "Aroon Down":
        return talib.AROON(h, lo, p)[0]
    if metric == "Aroon Oscillator":
        return talib.AROONOSC(h, lo, p)
    if metric == "ATR":
        return talib.ATR(h, lo, c, p)
    if metric == "Williams %R":
        return talib.WILLR(h, lo, c, p)
    if metric == "CCI":
        return talib.CCI(h, lo, c, p)
    if metric == "Stochastic %K":
        # STOCHF pads %K to %D's lookback; with a 1-day %D the %K starts at its own (p − 1)
        return talib.STOCHF(h, lo, c, fastk_period=p, fastd_period=1, fastd_matype=0)[0]
    if metric == "Stochastic %D":
        return talib.STOCHF(h, lo, c, fastk_period=p, fastd_period=3, fastd_matype=0)[1]
    if metric == "ADX":
        return talib.ADX(h, lo, c, p)
    if metric == "Money Flow Index":
        return talib.MFI(h, lo, c, v, p)
    raise AssertionError(metric)


TALIB_METRICS = (
    "Relative Strength Index",
    "Simple Moving Average",
    "Exponential Moving Average",
    "Weighted Moving Average",
    "DEMA",
    "TEMA",
    "KAMA",
    "MACD Histogram",
    "PPO Histogram",
    "Aroon Up",
    "Aroon Down",
    "Aroon Oscillator",
    "ATR",
    "Williams %R",
    "CCI",
    "Stochastic %K",
    "Stochastic %D",
    "ADX",
    "Money Flow Index",
)


@pytest.mark.parametrize("p", WINDOWS)
@pytest.mark.parametrize("metric", TALIB_METRICS)
def test_equals_talib(talib: ModuleType, metric: str, p: int) -> None:
    ours = indicator(metric, BARS, p)
    ref = _talib_reference(talib, metric, p)
    first = lookback(metric, p)
    assert np.isnan(ours[:first]).all()
    assert np.isfinite(ours[first:]).all()
    both = np.isfinite(ours) & np.isfinite(ref)
    assert both.sum() >= BARS.close.size - first - 1  # TA-Lib is defined from `first` (KAMA: +1)
    np.testing.assert_allclose(ours[both], ref[both], rtol=1e-9, atol=1e-9)


def test_kama_starts_one_day_before_talib_with_its_seed(talib: ModuleType) -> None:
    # spec: seed c_{p−1} and first index p − 1; TA-Lib's first output is on day p.
    for p in WINDOWS:
        ours = indicator("KAMA", BARS, p)
        assert first_finite(talib.KAMA(BARS.close, p)) == p
        assert ours[p - 1] == BARS.close[p - 1]


def test_macd_fast_ema_is_seeded_like_talib(talib: ModuleType) -> None:
    # TA-Lib seeds both MACD EMAs on day 25: the fast one with the mean of c14 … c25.
    c = np.arange(1.0, 61.0) ** 1.5
    b = closes(*c)
    fast = c[14:26].mean()
    slow = c[0:26].mean()
    macd = [fast - slow]
    for t in range(26, 34):
        fast += 2 / 13 * (c[t] - fast)
        slow += 2 / 27 * (c[t] - slow)
        macd.append(fast - slow)
    signal = sum(macd) / 9
    got = indicator("MACD Histogram", b, 0)
    assert np.isnan(got[:33]).all()
    assert got[33] == pytest.approx(macd[-1] - signal, rel=1e-12)
    np.testing.assert_allclose(got[33:], talib.MACD(c, 12, 26, 9)[2][33:], rtol=1e-9, atol=1e-12)


# --------------------------------------------------------------------------------------------
# warm-up of every catalogue metric


@pytest.mark.parametrize("p", (1, 2, 5, 14))
@pytest.mark.parametrize("metric", [m.name for m in METRICS])
def test_first_valid_index_is_the_catalogue_lookback(metric: str, p: int) -> None:
    out = indicator(metric, BARS, p)
    first = lookback(metric, p)
    assert out.shape == BARS.close.shape and out.dtype == np.float64
    assert np.isnan(out[:first]).all()
    if first >= 1:
        assert np.isnan(out[first - 1])
    assert np.isfinite(out[first])
    assert np.isfinite(out[first:]).all()


def test_names_aliases_and_unknown() -> None:
    rsi = indicator("Relative Strength Index", BARS, 14)
    np.testing.assert_array_equal(indicator("RSI", BARS, 14), rsi)
    np.testing.assert_array_equal(indicator("rsi", BARS, 14), rsi)
    sma = indicator("Simple Moving Average", BARS, 3)
    np.testing.assert_array_equal(indicator("Moving Average of Price", BARS, 3), sma)
    with pytest.raises(GpubtError, match="unknown metric"):
        indicator("Relative Strangeness Index", BARS, 14)
    # p = max(1, window)
    np.testing.assert_array_equal(indicator("SMA", BARS, 0), BARS.close)
    np.testing.assert_array_equal(indicator("SMA", BARS, -3), BARS.close)


# --------------------------------------------------------------------------------------------
# hand-computed series (metrics TA-Lib lacks, and the spec's special cases)


def test_current_price() -> None:
    check(indicator("Current Price", closes(3, 1, 4, 1, 5), 7), [3, 1, 4, 1, 5])


def test_wilder_moving_average() -> None:
    # p = 3: seed mean(1,2,3) = 2; then m += (c − m)/3:
    # 2 + (4 − 2)/3 = 8/3; 8/3 + (5 − 8/3)/3 = 31/9; 31/9 + (6 − 31/9)/3 = 116/27
    check(indicator("Wilders MA", closes(1, 2, 3, 4, 5, 6), 3), [NAN, NAN, 2, 8 / 3, 31 / 9, 116 / 27])


def test_hull_moving_average() -> None:
    # p = 4: half 2, root 2. WMA2_t = (c_{t−1} + 2c_t)/3,
    # WMA4_t = (c_{t−3} + 2c_{t−2} + 3c_{t−1} + 4c_t)/10
    # c = 1 2 4 8 16 32
    # t=3: 2·(4 + 16)/3 − (1 + 4 + 12 + 32)/10 = 40/3 − 49/10 = 253/30
    # t=4: 2·(8 + 32)/3 − (2 + 8 + 24 + 64)/10 = 80/3 − 98/10 = 506/30; t=5: 1012/30 (doubling)
    # HMA_4 = (253 + 2·506)/90 = 1265/90, HMA_5 = (506 + 2·1012)/90 = 2530/90
    check(indicator("HMA", closes(1, 2, 4, 8, 16, 32), 4), [NAN] * 4 + [1265 / 90, 2530 / 90])
    # A straight line has no lag: HMA = c from index p − 1 + root − 1 = 4.
    check(indicator("HMA", closes(1, 2, 3, 4, 5, 6), 4), [NAN] * 4 + [5, 6])
    # p = 2: half 1, root 1 → 2c − WMA2: t=1: 12 − (3 + 12)/3 = 7; t=2: 6 − (6 + 6)/3 = 2
    check(indicator("HMA", closes(3, 6, 3), 2), [NAN, 7, 2])
    # p = 1 (decision): HMA = c
    check(indicator("HMA", closes(3, 6, 3), 1), [3, 6, 3])


def test_rsi_variants() -> None:
    # Δc = +2, −1, 0, +3 ; gains 2 0 0 3 ; losses 0 1 0 0 ; p = 2
    b = closes(10, 12, 11, 11, 14)
    # SMA: t2 AG 1, AL .5 → RS 2 → 66.67; t3 AG 0, AL .5 → 0; t4 AG 1.5, AL 0 → 100
    check(indicator("RSI (SMA)", b, 2), [NAN, NAN, 200 / 3, 0, 100])
    # EMA k = 2/3: seed AG 1, AL .5 (66.67); t3 AG 1/3, AL 1/6 (RS 2);
    # t4 AG 1/3 + 2/3·(3 − 1/3) = 19/9, AL 1/6 − 2/3·1/6 = 1/18 → RS 38 → 100 − 100/39
    check(indicator("RSI (EMA)", b, 2), [NAN, NAN, 200 / 3, 200 / 3, 100 - 100 / 39])
    # Wilder: t3 AG (1 + 0)/2 = .5, AL (.5 + 0)/2 = .25; t4 AG (.5 + 3)/2 = 1.75, AL .125 → RS 14
    check(indicator("RSI", b, 2), [NAN, NAN, 200 / 3, 200 / 3, 100 - 100 / 15])
    # no movement: AG = AL = 0 → 50 (TA-Lib says 0); only gains → 100
    for metric in ("RSI", "RSI (SMA)", "RSI (EMA)"):
        check(indicator(metric, closes(5, 5, 5, 5), 2), [NAN, NAN, 50, 50])
        check(indicator(metric, closes(5, 6, 7, 8), 2), [NAN, NAN, 100, 100])


def test_stochastic_rsi() -> None:
    # c = 10 12 11 11 14 13 15, Δc = +2 −1 0 +3 −1 +2, Wilder RSI(3):
    # t3: AG 2/3, AL 1/3 → 200/3 ; t4: AG (4/3 + 3)/3 = 13/9, AL (2/3)/3 = 2/9 → RS 6.5 → 260/3
    # t5: AG 26/27, AL 13/27 → 200/3 ; t6: AG 106/81, AL 26/81 → 100 − 100·13/66 = 2650/33
    b = closes(10, 12, 11, 11, 14, 13, 15)
    check(indicator("RSI", b, 3), [NAN] * 3 + [200 / 3, 260 / 3, 200 / 3, 2650 / 33])
    # StochRSI(3), first 2p − 1 = 5: t5 = minimum of (200/3, 260/3, 200/3) → 0
    # t6 over (260/3, 200/3, 2650/33) = (2860, 2200, 2650)/33 → 100·450/660
    check(indicator("Stochastic RSI", b, 3), [NAN] * 5 + [0, 100 * 450 / 660])
    # flat RSI window → 50
    check(indicator("Stochastic RSI", closes(5, 5, 5, 5), 1), [NAN, 50, 50, 50])


def test_laguerre_rsi_first_steps() -> None:
    # γ = 0.8, state 0 before the first price, c = 10, 10:
    # t0: L0 = .2·10 = 2; L1 = −.8·2 = −1.6; L2 = −.8·−1.6 = 1.28; L3 = −.8·1.28 = −1.024
    #     CU = (2 + 1.6) + (1.28 + 1.024) = 5.904, CD = 1.28 + 1.6 = 2.88 → 100·5.904/8.784
    # t1: L0 = 2 + .8·2 = 3.6; L1 = −2.88 + 2 − 1.28 = −2.16; L2 = 1.728 − 1.6 + 1.024 = 1.152;
    #     L3 = −.9216 + 1.28 − .8192 = −.4608; CU = 5.76 + 1.6128 = 7.3728, CD = 3.312
    check(indicator("Laguerre RSI", closes(10, 10), 14), [100 * 5.904 / 8.784, 100 * 7.3728 / 10.6848])
    # CU + CD = 0 (decision) → 50
    check(indicator("Laguerre RSI", closes(0, 0), 14), [50, 50])


def test_momentum_on_an_arithmetic_series() -> None:
    c = 100.0 + np.arange(300.0)  # c_t = 100 + t, so r_n(t) = n / (100 + t − n)
    b = closes(*c)
    w = indicator("13612W", b, 0)
    u = indicator("13612U", b, 0)
    s = indicator("SMA12", b, 0)
    for t in (252, 299):
        r21, r63, r126, r252 = (n / (100 + t - n) for n in (21, 63, 126, 252))
        assert w[t] == pytest.approx(100 * (12 * r21 + 4 * r63 + 2 * r126 + r252) / 19, rel=1e-12)
        assert u[t] == pytest.approx(100 * (r21 + r63 + r126 + r252) / 4, rel=1e-12)
    assert np.isnan(w[:252]).all() and np.isnan(u[:252]).all()
    # SMA(c, 12)_t = 100 + t − 5.5, so at 263: 100·((100 + 263 − 5.5)/(100 + 11 − 5.5) − 1)
    assert np.isnan(s[:263]).all()
    assert s[263] == pytest.approx(100 * (357.5 / 105.5 - 1), rel=1e-12)
    assert s[299] == pytest.approx(100 * (393.5 / 141.5 - 1), rel=1e-12)


def test_rate_of_change_and_cumulative_return() -> None:
    # p = 3: t3 100(15/10 − 1) = 50; t4 100(9/11 − 1)
    for metric in ("ROC", "Cumulative Return"):
        check(indicator(metric, closes(10, 11, 12, 15, 9), 3), [NAN] * 3 + [50, 100 * (9 / 11 - 1)])


def test_returns_mean_and_standard_deviations() -> None:
    b = closes(100, 110, 99, 99)  # r = .1, −.1, 0
    r1, r2 = 110 / 100 - 1, 99 / 110 - 1
    # p = 2: mean(.1, −.1) = 0, mean(−.1, 0) = −.05 ; std (pop) .1 and .05
    check(indicator("SMA of Returns", b, 2), [NAN, NAN, 100 * (r1 + r2) / 2, 100 * r2 / 2])
    check(indicator("Standard Deviation", b, 2), [NAN, NAN, abs(r1 - r2) / 2, abs(r2) / 2])
    check(
        indicator("Standard Deviation of Return", b, 2),
        [NAN, NAN, 100 * abs(r1 - r2) / 2, 100 * abs(r2) / 2],
    )
    # p = 3: returns .1, −.1, 0 → mean 0 → sqrt((.01 + .01 + 0)/3)
    m = (r1 + r2) / 3
    sd3 = math.sqrt(((r1 - m) ** 2 + (r2 - m) ** 2 + m**2) / 3)
    check(indicator("Standard Deviation", b, 3), [NAN] * 3 + [sd3])
    assert sd3 == pytest.approx(math.sqrt(0.02 / 3), rel=1e-3)
    # std of price: 2 4 4 4 5 5 7 9 has mean 5 and population std 2
    check(indicator("Standard Deviation of Price", closes(2, 4, 4, 4, 5, 5, 7, 9), 8), [NAN] * 7 + [2])
    check(indicator("Standard Deviation of Price", closes(2, 4, 4, 4, 5), 2), [NAN, 1, 0, 0, 0.5])


def test_drawdowns_and_ulcer() -> None:
    b = closes(10, 8, 12, 9, 6, 12)
    # p = 4. t3 [10 8 12 9]: peaks 10 10 12 12, worst (12 − 9)/12 = 25%
    # t4 [8 12 9 6]: worst (12 − 6)/12 = 50% ; t5 [12 9 6 12]: 50%
    check(indicator("Max Drawdown", b, 4), [NAN] * 3 + [25, 50, 50])
    # drawdown from the window's max: 9 vs 12, 6 vs 12, 12 vs 12
    check(indicator("Drawdown", b, 4), [NAN] * 3 + [25, 50, 0])
    # ulcer p = 3: t2 [10 8 12] dd 0 −20 0 → sqrt(400/3); t3 [8 12 9] dd 0 0 −25 → sqrt(625/3)
    # t4 [12 9 6]: dd 0 −25 −50 → sqrt(3125/3); t5 [9 6 12]: dd 0 −33.3 0 → sqrt((100/3)²/3)
    check(
        indicator("Ulcer Index", b, 3),
        [NAN, NAN]
        + [math.sqrt(400 / 3), math.sqrt(625 / 3), math.sqrt(3125 / 3), math.sqrt((100 / 3) ** 2 / 3)],
    )


def test_bollinger() -> None:
    # 2 4 4 6: M = 4, σ = sqrt((4 + 0 + 0 + 4)/4) = √2
    # %B = (6 − (4 − 2√2))/(4√2) = 1/2 + 1/(2√2); bandwidth = 100·4√2/4
    b = closes(2, 4, 4, 6)
    check(indicator("Bollinger %B", b, 4), [NAN] * 3 + [0.5 + 1 / (2 * math.sqrt(2))])
    check(indicator("Bollinger Bandwidth", b, 4), [NAN] * 3 + [100 * math.sqrt(2)])
    # σ = 0 (decision): %B 0.5, bandwidth 0
    check(indicator("Bollinger %B", closes(0.1, 0.1, 0.1), 3), [NAN, NAN, 0.5])
    check(indicator("Bollinger Bandwidth", closes(0.1, 0.1, 0.1), 3), [NAN, NAN, 0])


def test_historical_volatility() -> None:
    # log returns ln 1.1 and −ln 1.1: population std = ln 1.1
    hv = indicator("Historical Volatility", closes(100, 110, 100), 2)
    check(hv, [NAN, NAN, 100 * math.sqrt(252) * math.log(1.1)])


def test_trend_clarity() -> None:
    # p = 3: t3 |13 − 10|/(2 + 1 + 2) = .6; t4 |13 − 12|/(1 + 2 + 0); t5 |13 − 11|/(2 + 0 + 0) = 1;
    # t6 no movement → missing
    tc = indicator("Trend Clarity", closes(10, 12, 11, 13, 13, 13, 13), 3)
    check(tc, [NAN] * 3 + [0.6, 1 / 3, 1, NAN])


def test_linear_regression() -> None:
    # [1 3 2] on x = 0 1 2: x̄ 1, ȳ 2, Sxy = 1, Sxx = 2 → slope .5, value 2 + .5 = 2.5, slope% 25
    # [3 2 6]: ȳ 11/3, Sxy = −(3 − 11/3) + (6 − 11/3) = 3 → slope 1.5, value 11/3 + 1.5,
    # slope% 150/(11/3)
    b = closes(1, 3, 2, 6)
    check(indicator("Linear Reg Slope", b, 3), [NAN, NAN, 25, 150 / (11 / 3)])
    check(indicator("Linear Reg Value", b, 3), [NAN, NAN, 2.5, 11 / 3 + 1.5])
    # p = 1 (decision): slope 0, value c
    check(indicator("Linear Reg Slope", b, 1), [0, 0, 0, 0])
    check(indicator("Linear Reg Value", b, 1), [1, 3, 2, 6])


def test_price_vs_sma() -> None:
    # p = 3: t2 SMA 2, c 2 → 0; t3 SMA 11/3, c 6 → 100(18/11 − 1)
    check(indicator("Price vs SMA", closes(1, 3, 2, 6), 3), [NAN, NAN, 0, 100 * (18 / 11 - 1)])


def _hlc(h: list[float], lo: list[float], c: list[float], v: list[float] | None = None) -> Bars:
    cc = np.array(c, dtype=np.float64)
    vv = np.ones(cc.size) if v is None else np.array(v, dtype=np.float64)
    return Bars(cc.copy(), np.array(h, dtype=np.float64), np.array(lo, dtype=np.float64), cc, vv)


def test_atr_and_atr_percent() -> None:
    # TR1 = max(12 − 10, |12 − 10|, |10 − 10|) = 2 ; TR2 = max(1.5, |13 − 11|, |11.5 − 11|) = 2
    # TR3 = max(3.5, |12.5 − 12|, |9 − 12|) = 3.5 ; ATR(2): t2 mean(2, 2) = 2 ; t3 (2 + 3.5)/2 = 2.75
    b = _hlc([11, 12, 13, 12.5], [9, 10, 11.5, 9], [10, 11, 12, 10])
    check(indicator("ATR", b, 2), [NAN, NAN, 2, 2.75])
    check(indicator("ATR %", b, 2), [NAN, NAN, 100 * 2 / 12, 100 * 2.75 / 10])


def test_stochastic_and_williams_flat_window() -> None:
    # HH = LL → %K 50, Williams −50 (spec; TA-Lib gives 0); %D = SMA(%K, 3)
    b = _hlc([5, 5, 5, 6], [5, 5, 5, 4], [5, 5, 5, 5.5])
    # t3 with p = 2: HH 6, LL 4 → %K 100(5.5 − 4)/2 = 75, Williams −100(6 − 5.5)/2 = −25
    check(indicator("Stochastic %K", b, 2), [NAN, 50, 50, 75])
    check(indicator("Williams %R", b, 2), [NAN, -50, -50, -25])
    check(indicator("Stochastic %D", b, 2), [NAN, NAN, NAN, (50 + 50 + 75) / 3])


def test_cci_and_mfi_special_cases() -> None:
    # CCI: every TP equal → 0 (TA-Lib); MFI: no flows either way → 50, only positive → 100
    flat = closes(0.1, 0.1, 0.1, 0.1)
    check(indicator("CCI", flat, 3), [NAN, NAN, 0, 0])
    check(indicator("MFI", flat, 2), [NAN, NAN, 50, 50])
    check(indicator("MFI", closes(1, 2, 3, 4), 2), [NAN, NAN, 100, 100])
    # MFI(2) with h = l = c: TP 10 11 10 12, v 1 2 3 4: flows t1 +22, t2 −30, t3 +48
    # t2: pos 22, neg 30 → 100 − 100/(1 + 22/30); t3: pos 48, neg 30 → 100 − 100/(1 + 48/30)
    b = _hlc([10, 11, 10, 12], [10, 11, 10, 12], [10, 11, 10, 12], [1, 2, 3, 4])
    check(indicator("MFI", b, 2), [NAN, NAN, 100 - 100 / (1 + 22 / 30), 100 - 100 / (1 + 48 / 30)])


def test_kama_flat_window() -> None:
    # p = 2, c = 10 12 11 11 11; fast 2/3, slow 2/31; value c1 = 12 on day 1
    f, s = 2 / 3, 2 / 31
    k1 = 12.0
    k2 = k1 + ((1 / 3) * (f - s) + s) ** 2 * (11 - k1)  # ER = |11 − 10|/(2 + 1)
    k3 = k2 + f**2 * (11 - k2)  # ER = |11 − 12|/(1 + 0) = 1
    k4 = k3 + s**2 * (11 - k3)  # no movement: ER = 0 (spec; TA-Lib uses 1)
    check(indicator("KAMA", closes(10, 12, 11, 11, 11), 2), [NAN, k1, k2, k3, k4])


def test_obv_rate_of_change() -> None:
    # OBV from the first volume (decision): 100, +50 = 150, −30 = 120, flat 120, +40 = 160
    # p = 2: t2 100(120 − 100)/100 = 20 ; t3 100(120 − 150)/150 = −20 ; t4 100(160 − 120)/120
    b = _hlc([10, 11, 10, 10, 12], [10, 11, 10, 10, 12], [10, 11, 10, 10, 12], [100, 50, 30, 20, 40])
    check(indicator("OBV Rate of Change", b, 2), [NAN, NAN, 20, -20, 100 * 40 / 120])


def test_vwap_ratio() -> None:
    # p = 2: TP = (h + l + c)/3
    # day 0: (12 + 8 + 10)/3 = 10, v 1 ; day 1: (22 + 18 + 20)/3 = 20, v 3 ;
    # day 2: (16 + 14 + 15)/3 = 15, v 2
    # t1: c 20 / ((10 + 60)/4) = 20/17.5 ; t2: c 15 / ((60 + 30)/5) = 15/18
    b = _hlc([12, 22, 16], [8, 18, 14], [10, 20, 15], [1, 3, 2])
    check(indicator("VWAP Ratio", b, 2), [NAN, 20 / 17.5, 15 / 18])
    # no volume in the window → missing; t2: VWAP (2·0 + 3·5)/5 = 3 → ratio 1
    no_volume = _hlc([1, 2, 3], [1, 2, 3], [1, 2, 3], [0, 0, 5])
    check(indicator("VWAP Ratio", no_volume, 2), [NAN, NAN, 1])


# --------------------------------------------------------------------------------------------
# missing values


def _late(b: Bars, prefix: int, suffix: int = 0) -> Bars:
    pad = lambda x: np.r_[np.full(prefix, NAN), x, np.full(suffix, NAN)]  # noqa: E731
    return Bars(*(pad(f) for f in b))


@pytest.mark.parametrize("p", (1, 5, 14))
def test_late_ticker_shifts_every_metric(p: int) -> None:
    late = _late(BARS, 10, 5)
    n = BARS.close.size
    for m in METRICS:
        full = indicator(m.name, BARS, p)
        shifted = indicator(m.name, late, p)
        assert np.isnan(shifted[:10]).all(), m.name
        assert np.isnan(shifted[10 + n :]).all(), m.name  # after the last price
        np.testing.assert_array_equal(shifted[10 : 10 + n], full, err_msg=m.name)
        assert first_finite(shifted) == 10 + m.lookback(p), m.name


def test_ratio_volume_metrics_are_missing() -> None:
    o, h, lo, c, _ = BARS
    ratio = Bars(o, h, lo, c, np.full(c.size, NAN))
    for metric in ("Money Flow Index", "OBV Rate of Change", "VWAP Ratio"):
        assert np.isnan(indicator(metric, ratio, 14)).all(), metric
    assert np.isfinite(indicator("ATR", ratio, 14)[14:]).all()


WINDOWED = (
    "Simple Moving Average", "Weighted Moving Average", "Hull Moving Average", "RSI (SMA)",
    "Rate of Change", "Cumulative Return", "Moving Average of Return", "Standard Deviation",
    "Standard Deviation of Return", "Standard Deviation of Price", "Max Drawdown", "Drawdown",
    "Bollinger %B", "Bollinger Bandwidth", "Historical Volatility", "Ulcer Index", "Trend Clarity",
    "Linear Reg Slope", "Linear Reg Value", "Price vs SMA",
)
RECURSIVE = (
    "Exponential Moving Average", "Wilder Moving Average", "DEMA", "TEMA", "KAMA",
    "Relative Strength Index", "RSI (EMA)", "Laguerre RSI",
)


def test_missing_day_inside_the_series() -> None:
    c = np.arange(1.0, 41.0) + np.sin(np.arange(40.0))
    c[10] = NAN
    b = closes(*c)
    sma = indicator("SMA", b, 3)
    assert np.isnan(sma[[10, 11, 12]]).all()  # the three windows that hold day 10
    assert sma[9] == pytest.approx(np.mean(c[7:10])) and sma[13] == pytest.approx(np.mean(c[11:14]))
    assert np.isfinite(sma[13:]).all()
    ema = indicator("EMA", b, 3)
    k = 2 / 4
    assert np.isnan(ema[10])
    # the state of day 9 carries over day 10: e11 = e9 + k(c11 − e9)
    assert ema[11] == pytest.approx(ema[9] + k * (c[11] - ema[9]), rel=1e-14)
    assert np.isfinite(ema[11:]).all()
    for metric in WINDOWED:  # missing while the window (lookback + 1 days) holds day 10
        out = indicator(metric, b, 3)
        back = lookback(metric, 3)
        assert np.isnan(out[10 : 11 + back]).all(), metric
        assert np.isfinite(out[11 + back :]).all(), metric
        assert np.isfinite(out[back:10]).all(), metric
    for metric in RECURSIVE:  # missing on day 10 only, resumed from day 9's state
        out = indicator(metric, b, 3)
        assert np.isnan(out[10]), metric
        assert np.isfinite(out[lookback(metric, 3) : 10]).all() and np.isfinite(out[11:]).all(), metric
        # same as the series without day 10
        squeezed = indicator(metric, closes(*np.delete(c, 10)), 3)
        np.testing.assert_array_equal(np.delete(out, 10), squeezed, err_msg=metric)
    for metric in [m.name for m in METRICS]:
        assert np.isnan(indicator(metric, b, 3)[10]), metric


def test_missing_high_makes_hlc_metrics_missing() -> None:
    o, h, lo, c, v = (f.copy() for f in BARS)
    h[100] = NAN  # a ratio's denominator high was 0 that day
    b = Bars(o, h, lo, c, v)
    atr = indicator("ATR", b, 14)
    ref = indicator("ATR", BARS, 14)
    assert np.isnan(atr[100])
    np.testing.assert_array_equal(atr[:100], ref[:100])
    assert np.isfinite(atr[101:]).all()
    k = indicator("Stochastic %K", b, 14)
    assert np.isnan(k[100:114]).all() and np.isfinite(k[114:]).all()
    assert np.isfinite(indicator("RSI", b, 14)[100])  # close-only metrics do not read the high
