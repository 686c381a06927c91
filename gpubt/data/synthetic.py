"""The built-in default data: a deterministic synthetic market (2000-01-03 .. 2025-12-31).

Every command needs data before a user has any, so the package ships a generator instead of a
data set. It has to look like the real thing to a strategy: the usual ETF names, staggered start
dates, a calm / normal / crisis volatility regime (a Markov chain: crises are rare, come out of
"normal" stretches and so cluster), Student-t (df 4) shocks, bonds that rally when equities sell
off in a crisis, leveraged and inverse funds compounded daily from their underlying (so they decay
like real ones), and volatility funds that bleed in contango and spike in sell-offs.

Daily returns come from a factor model: equity market, technology, duration, commodities and the
dollar, each with a regime-dependent drift, volatility and correlation to the equity market; each
ticker loads on those factors and adds its own Student-t noise. A VIX-like level mean-reverts to a
regime-dependent level and jumps when equities fall; a front-month "futures" return (a share of the
VIX move minus a roll yield) drives UVXY / VIXY / SVXY.

Prices are split-adjusted like vendor data: a ticker whose path would fall below 1.0 is scaled up
over its whole history (UVXY starts near 560,000 and ends near 1), so prices stay well clear of
float trouble while every return is unchanged.

The logs, exponentials and powers are the C library's (`gpubt.libm`), so the market is the same
to the bit on every machine (NumPy's own forms of them on AVX-512 machines are not).

Build time of ``synthetic_market.__wrapped__()`` (6,782 days × 43 tickers), measured: median
0.20 s (0.09 s generating the frames, the rest aligning them in ``Market.from_frames``) on a
2-core container; later calls are memoised.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from gpubt import libm
from gpubt.data.market import Market

DEFAULT_SEED = 20240101
FIRST_DAY = np.datetime64("2000-01-03", "D")
LAST_DAY = np.datetime64("2025-12-31", "D")
YEAR = 252
PRICE_FLOOR = 1.0  # lowest price a split-adjusted series may reach
T_DF = 4.0
SHOCK_LIMIT = 6.0
# E[max(-z, 0)] of the unit-variance t(4) shock (E|t(4)| = 1), to centre the VIX's downside term.
T_DOWNSIDE_MEAN = 0.5 * np.sqrt((T_DF - 2.0) / T_DF)

# Regimes: 0 calm, 1 normal, 2 crisis. Rows: today's regime; columns: tomorrow's.
TRANSITIONS = np.array(
    [
        [0.993, 0.007, 0.000],
        [0.005, 0.9915, 0.0035],
        [0.000, 0.022, 0.978],
    ]
)
REGIME_VOL = np.array([0.62, 1.0, 2.3])  # volatility multiplier of each regime
REGIME_VOLUME = np.array([0.85, 1.0, 1.7])  # trading volume multiplier of each regime

# Factors (annualised): drift per regime, base volatility, how much of the regime's volatility
# multiplier applies (its exponent), and correlation with the equity market shock per regime.
FACTORS = ("mkt", "tech", "dur", "cmdty", "usd")
FACTOR_DRIFT = np.array(
    [
        [0.20, 0.10, -0.55],  # mkt
        [0.03, 0.03, -0.05],  # tech
        [0.02, 0.04, 0.16],  # dur: long bonds rally in a crisis (flight to quality)
        [0.05, 0.03, -0.20],  # cmdty
        [0.00, 0.00, 0.08],  # usd: the dollar is bid in a crisis
    ]
)
FACTOR_VOL = np.array([0.165, 0.12, 0.12, 0.17, 0.07])
FACTOR_VOL_EXPONENT = np.array([1.0, 1.0, 0.5, 0.7, 0.5])
FACTOR_MKT_CORR = np.array(
    [
        [1.0, 1.0, 1.0],
        [0.0, 0.0, 0.0],
        [0.25, -0.1, -0.65],
        [0.15, 0.3, 0.5],
        [0.0, -0.1, -0.45],
    ]
)

# VIX-like level: mean-reverting in logs towards a regime level, pushed up by equity losses.
VIX_LEVEL = np.array([13.0, 18.0, 38.0])
VIX_REVERSION = 0.05  # per day
VIX_MKT_BETA = -4.0  # log-VIX change per unit of equity return
VIX_DOWNSIDE_BETA = -3.0  # extra on the equity's down days (spikes in sell-offs)
VIX_NOISE = 0.035  # daily, times sqrt of the regime multiplier
VIX_LONG_RUN = 20.0
FUTURES_BETA = 0.5  # front-month futures move about half as much as spot VIX
ROLL_PER_LOG_GAP = 0.006  # daily roll yield per unit of log(long run / spot): contango bleed
ROLL_BASE = 0.0014  # the term structure's usual upward slope, even at the long-run level


@dataclass(frozen=True)
class Asset:
    """A ticker driven by the factors plus its own noise."""

    start: str
    price: float
    volume: float
    loadings: dict[str, float]
    idio: float  # annualised idiosyncratic volatility
    alpha: float = 0.0  # annual drift beyond the factors'
    vol_exponent: float = 1.0  # how much of the regime's volatility multiplier its noise takes


@dataclass(frozen=True)
class Derived:
    """A fund compounding ``leverage`` × its underlying's daily return, less its fee."""

    start: str
    price: float
    volume: float
    underlying: str
    leverage: float
    fee: float = 0.0095


VIX_FUTURES = "_VIX_FUTURES"  # internal underlying of the volatility funds, not a ticker

ASSETS: dict[str, Asset] = {
    "SPY": Asset("2000-01-03", 145.0, 8e7, {"mkt": 1.0}, 0.01),
    "VTI": Asset("2001-06-15", 100.0, 3e6, {"mkt": 1.02}, 0.02),
    "DIA": Asset("2000-01-03", 115.0, 5e6, {"mkt": 0.95}, 0.04),
    "QQQ": Asset("2000-01-03", 95.0, 5e7, {"mkt": 1.12, "tech": 1.0}, 0.03),
    "IWM": Asset("2000-05-26", 90.0, 3e7, {"mkt": 1.12}, 0.09, alpha=-0.01),
    "XLK": Asset("2000-01-03", 60.0, 8e6, {"mkt": 1.08, "tech": 1.1}, 0.05),
    "SOXX": Asset("2001-07-13", 50.0, 1e6, {"mkt": 1.25, "tech": 1.6}, 0.12, alpha=0.02),
    "XLE": Asset("2000-01-03", 28.0, 1.5e7, {"mkt": 0.85, "cmdty": 0.6}, 0.16),
    "XLU": Asset(
        "2000-01-03", 30.0, 1e7, {"mkt": 0.5, "dur": 0.3}, 0.12, alpha=0.01, vol_exponent=0.7
    ),
    "XLP": Asset("2000-01-03", 27.0, 1e7, {"mkt": 0.6, "dur": 0.1}, 0.08, alpha=0.01),
    "XLF": Asset("2000-01-03", 22.0, 4e7, {"mkt": 1.15}, 0.12, alpha=-0.02),
    "XLV": Asset("2000-01-03", 30.0, 9e6, {"mkt": 0.7}, 0.10, alpha=0.015),
    "XLI": Asset("2000-01-03", 30.0, 1e7, {"mkt": 1.0}, 0.07),
    "XLY": Asset("2000-01-03", 30.0, 5e6, {"mkt": 1.05, "tech": 0.3}, 0.08),
    "EFA": Asset("2001-08-17", 60.0, 2e7, {"mkt": 0.9, "usd": -0.6}, 0.08, alpha=-0.03),
    "EEM": Asset(
        "2003-04-14", 30.0, 4e7, {"mkt": 1.15, "usd": -0.8, "cmdty": 0.3}, 0.15, alpha=-0.02
    ),
    "VNQ": Asset("2004-09-29", 50.0, 5e6, {"mkt": 1.1, "dur": 0.4}, 0.15, alpha=-0.01),
    "TLT": Asset("2002-07-30", 80.0, 1.5e7, {"dur": 1.0}, 0.02, alpha=0.005, vol_exponent=0.5),
    "IEF": Asset("2002-07-30", 80.0, 6e6, {"dur": 0.45}, 0.01, alpha=0.008, vol_exponent=0.5),
    "AGG": Asset(
        "2003-09-29", 100.0, 6e6, {"dur": 0.32, "mkt": 0.03}, 0.012, alpha=0.012, vol_exponent=0.5
    ),
    "BND": Asset(
        "2007-04-10", 75.0, 5e6, {"dur": 0.33, "mkt": 0.03}, 0.012, alpha=0.011, vol_exponent=0.5
    ),
    "SHY": Asset("2002-07-30", 80.0, 3e6, {"dur": 0.09}, 0.006, alpha=0.014, vol_exponent=0.3),
    "BIL": Asset("2007-05-30", 45.0, 5e6, {}, 0.003, alpha=0.02, vol_exponent=0.2),
    "TIP": Asset(
        "2003-12-05", 100.0, 2e6, {"dur": 0.4, "cmdty": 0.1}, 0.025, alpha=0.012, vol_exponent=0.5
    ),
    "LQD": Asset(
        "2002-07-30", 100.0, 8e6, {"dur": 0.55, "mkt": 0.1}, 0.025, alpha=0.012, vol_exponent=0.7
    ),
    "HYG": Asset(
        "2007-04-11", 100.0, 2e7, {"mkt": 0.3, "dur": 0.15}, 0.04, alpha=0.025, vol_exponent=1.0
    ),
    "GLD": Asset(
        "2004-11-18", 44.0, 8e6, {"cmdty": 0.3, "usd": -0.8}, 0.12, alpha=0.07, vol_exponent=0.6
    ),
    "DBC": Asset("2006-02-06", 25.0, 1.5e6, {"cmdty": 1.0}, 0.04, vol_exponent=0.7),
    "UUP": Asset("2007-03-01", 25.0, 2e6, {"usd": 1.0}, 0.01, alpha=0.003, vol_exponent=0.5),
}

DERIVED: dict[str, Derived] = {
    "TQQQ": Derived("2010-02-11", 40.0, 6e7, "QQQ", 3.0),
    "SQQQ": Derived("2010-02-11", 40.0, 6e7, "QQQ", -3.0),
    "PSQ": Derived("2006-06-21", 60.0, 5e6, "QQQ", -1.0),
    "UPRO": Derived("2010-01-04", 40.0, 5e6, "SPY", 3.0),
    "SPXL": Derived("2010-01-04", 40.0, 4e6, "SPY", 3.0),
    "SPXU": Derived("2010-01-04", 40.0, 1e7, "SPY", -3.0),
    "SH": Derived("2006-06-21", 70.0, 6e6, "SPY", -1.0, fee=0.0089),
    "TECL": Derived("2010-01-04", 40.0, 2e6, "XLK", 3.0),
    "SOXL": Derived("2010-03-11", 40.0, 6e7, "SOXX", 3.0),
    "TMF": Derived("2009-04-16", 40.0, 4e6, "TLT", 3.0),
    "TMV": Derived("2009-04-16", 40.0, 2e6, "TLT", -3.0),
    "VIXY": Derived("2011-01-04", 100.0, 3e6, VIX_FUTURES, 1.0, fee=0.0085),
    "UVXY": Derived("2011-10-04", 100.0, 2e7, VIX_FUTURES, 1.5),
    "SVXY": Derived("2011-10-04", 100.0, 3e6, VIX_FUTURES, -0.5),
}

SYNTHETIC_TICKERS: tuple[str, ...] = tuple(ASSETS) + tuple(DERIVED)


def business_days() -> np.ndarray:
    """Mon–Fri from FIRST_DAY to LAST_DAY inclusive (no holidays: a synthetic exchange)."""
    days = np.arange(FIRST_DAY, LAST_DAY + 1, dtype="datetime64[D]")
    return days[np.is_busday(days)]


def _student_t(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Fat-tailed shocks with unit variance, trimmed at SHOCK_LIMIT so that no single day is absurd
    (an untrimmed t(4) gives a 15-sigma bond day about once per series)."""
    shocks = rng.standard_t(T_DF, size=shape) * np.sqrt((T_DF - 2.0) / T_DF)
    return np.clip(shocks, -SHOCK_LIMIT, SHOCK_LIMIT)


def _regimes(uniforms: np.ndarray) -> np.ndarray:
    """Walk the regime Markov chain from "normal", one uniform draw per day."""
    cumulative = np.cumsum(TRANSITIONS, axis=1).tolist()
    states = np.empty(uniforms.size, dtype=np.intp)
    state = 1
    for t, u in enumerate(uniforms.tolist()):
        row = cumulative[state]
        state = 0 if u < row[0] else 1 if u < row[1] else 2
        states[t] = state
    return states


def _factor_returns(regime: np.ndarray, shocks: np.ndarray) -> np.ndarray:
    """Daily factor returns (days × factors); shocks[:, 0] is the equity market's."""
    mkt = shocks[:, :1]
    rho = FACTOR_MKT_CORR[:, regime].T
    z = rho * mkt + np.sqrt(1.0 - rho**2) * shocks
    scale = libm.power(REGIME_VOL[regime][:, None], FACTOR_VOL_EXPONENT) * FACTOR_VOL / np.sqrt(YEAR)
    return FACTOR_DRIFT[:, regime].T / YEAR + scale * z


def _vix_futures_returns(
    regime: np.ndarray, mkt_shock: np.ndarray, noise: np.ndarray
) -> np.ndarray:
    """Daily return of a rolled front-month VIX future: part of the spot's log move minus the roll.

    ``mkt_shock`` is the equity market's unit-variance shock; its down moves push the VIX up more
    than its up moves pull it down (centred, so the asymmetry adds spikes, not drift)."""
    mkt_move = REGIME_VOL[regime] * FACTOR_VOL[0] / np.sqrt(YEAR)
    push = (
        VIX_MKT_BETA * mkt_move * mkt_shock
        + VIX_DOWNSIDE_BETA * mkt_move * (np.minimum(mkt_shock, 0.0) + T_DOWNSIDE_MEAN)
        + VIX_NOISE * np.sqrt(REGIME_VOL[regime]) * noise
    )
    target = libm.log(VIX_LEVEL)[regime].tolist()
    log_vix = np.empty(regime.size)
    level = float(libm.log(VIX_LEVEL[1]))
    for t, p in enumerate(push.tolist()):
        level += VIX_REVERSION * (target[t] - level) + p
        log_vix[t] = level
    previous = np.concatenate(([libm.log(VIX_LEVEL[1])], log_vix[:-1]))
    roll = ROLL_BASE + ROLL_PER_LOG_GAP * (libm.log(VIX_LONG_RUN) - previous)
    return libm.expm1(FUTURES_BETA * (log_vix - previous) - roll)


def _returns(rng: np.random.Generator, n_days: int) -> tuple[np.ndarray, np.ndarray]:
    """Daily simple returns (days × SYNTHETIC_TICKERS) and the regime of each day."""
    regime = _regimes(rng.random(n_days))
    shocks = _student_t(rng, (n_days, len(FACTORS)))
    factors = _factor_returns(regime, shocks)
    vix_noise = _student_t(rng, (n_days,))
    idio = _student_t(rng, (n_days, len(ASSETS)))
    series: dict[str, np.ndarray] = {}
    for j, (name, asset) in enumerate(ASSETS.items()):
        loading = np.array([asset.loadings.get(f, 0.0) for f in FACTORS])
        vol = libm.power(REGIME_VOL[regime], asset.vol_exponent)
        noise = vol * asset.idio / np.sqrt(YEAR) * idio[:, j]
        series[name] = asset.alpha / YEAR + factors @ loading + noise
    series[VIX_FUTURES] = _vix_futures_returns(regime, shocks[:, 0], vix_noise)
    for name, fund in DERIVED.items():
        series[name] = fund.leverage * series[fund.underlying] - fund.fee / YEAR
    returns = np.column_stack([series[t] for t in SYNTHETIC_TICKERS])
    return np.maximum(returns, -0.99), regime


def _masked_std(values: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Per-column std over the masked cells (0 for a column with none)."""
    count = np.maximum(mask.sum(axis=0), 1)
    mean = np.where(mask, values, 0.0).sum(axis=0) / count
    return np.sqrt(np.where(mask, (values - mean) ** 2, 0.0).sum(axis=0) / count)


def _regime_sigma(returns: np.ndarray, regime: np.ndarray, live: np.ndarray) -> np.ndarray:
    """Each ticker's daily return std within each day's regime (days × tickers), for the
    intraday range; a regime a ticker never lived through falls back to its overall std."""
    overall = _masked_std(returns, live)
    sigma = np.empty_like(returns)
    for k in range(len(REGIME_VOL)):
        days = regime == k
        within = _masked_std(returns[days], live[days])
        sigma[days] = np.where(live[days].sum(axis=0) > 1, within, overall)
    return sigma


def synthetic_frames(seed: int = DEFAULT_SEED) -> dict[str, pl.DataFrame]:
    """One OHLCV frame per ticker (columns date, open, high, low, close, volume), live days only."""
    rng = np.random.default_rng(seed)
    dates = business_days()
    n_days, n_tickers = dates.size, len(SYNTHETIC_TICKERS)
    returns, regime = _returns(rng, n_days)
    specs: dict[str, Asset | Derived] = {**ASSETS, **DERIVED}
    starts = np.searchsorted(
        dates, np.array([specs[t].start for t in SYNTHETIC_TICKERS], dtype="datetime64[D]")
    )
    live = np.arange(n_days)[:, None] >= starts[None, :]
    sigma = _regime_sigma(returns, regime, live)
    overnight_noise = rng.standard_normal((n_days, n_tickers))
    ranges = np.abs(rng.standard_normal((2, n_days, n_tickers)))
    volume_noise = rng.standard_normal((n_days, n_tickers))

    log_ret = libm.log1p(returns)
    # About a third of the day's move happens overnight, plus gap noise the session reverses.
    overnight = 0.35 * log_ret + 0.25 * sigma * overnight_noise
    frames: dict[str, pl.DataFrame] = {}
    for j, ticker in enumerate(SYNTHETIC_TICKERS):
        spec, s = specs[ticker], int(starts[j])
        log_close = libm.log(spec.price) + np.cumsum(log_ret[s:, j])
        log_close += max(0.0, libm.log(PRICE_FLOOR) - log_close.min())  # split adjustment
        prev = np.concatenate(([log_close[0] - log_ret[s, j]], log_close[:-1]))
        open_, close = libm.exp(prev + overnight[s:, j]), libm.exp(log_close)
        half_range = 0.5 * sigma[s:, j]
        high = np.maximum(open_, close) * libm.exp(half_range * ranges[0, s:, j])
        low = np.minimum(open_, close) * libm.exp(-half_range * ranges[1, s:, j])
        volume = np.round(
            spec.volume * REGIME_VOLUME[regime[s:]] * libm.exp(0.35 * volume_noise[s:, j])
        )
        frames[ticker] = pl.DataFrame(
            {
                "date": dates[s:],
                "open": open_,
                "high": high,
                "low": low,
                "close": close,
                "volume": np.maximum(volume, 1.0),
            }
        )
    return frames


@functools.lru_cache(maxsize=4)
def synthetic_market(seed: int = DEFAULT_SEED) -> Market:
    """The default data of every command, built once per seed."""
    source = f"built-in synthetic market (seed {seed})"
    return Market.from_frames(synthetic_frames(seed), source=source)


def write_synthetic(out_dir: Path, seed: int = DEFAULT_SEED) -> list[Path]:
    """Write ``<TICKER>.parquet`` per ticker (date, open, high, low, close, volume) into out_dir,
    the folder layout the file loader reads back."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for ticker, frame in synthetic_frames(seed).items():
        path = out_dir / f"{ticker}.parquet"
        frame.write_parquet(path)
        paths.append(path)
    return paths
