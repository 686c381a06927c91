"""The built-in synthetic market must be deterministic and look like real ETF data to a strategy."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from gpubt.data.market import FIELDS, Market
from gpubt.data.synthetic import (
    DEFAULT_SEED,
    SYNTHETIC_TICKERS,
    synthetic_frames,
    synthetic_market,
    write_synthetic,
)

REQUIRED = (
    "SPY QQQ IWM DIA TLT IEF AGG BND SHY BIL GLD DBC EFA EEM VNQ XLK XLE XLU XLP TQQQ UPRO SPXL "
    "SQQQ SPXU SOXL SOXX UVXY VIXY SVXY TMF TMV SH PSQ UUP HYG LQD TIP"
).split()


@pytest.fixture(scope="module")
def market() -> Market:
    return synthetic_market()


def closes(market: Market, ticker: str) -> np.ndarray:
    close = market.bars(ticker).close
    return close[np.isfinite(close)]


def returns(market: Market, ticker: str) -> np.ndarray:
    """Daily simple returns over the ticker's live days."""
    close = closes(market, ticker)
    return close[1:] / close[:-1] - 1.0


def paired_returns(market: Market, a: str, b: str) -> tuple[np.ndarray, np.ndarray]:
    """Both tickers' daily returns on the days both have one."""
    r = np.diff(market.close[:, [market.column(a), market.column(b)]], axis=0)
    r /= market.close[:-1, [market.column(a), market.column(b)]]
    both = np.isfinite(r).all(axis=1)
    return r[both, 0], r[both, 1]


def test_same_seed_is_identical_and_other_seed_differs(market: Market) -> None:
    again = synthetic_market.__wrapped__(DEFAULT_SEED)
    for name in FIELDS:
        assert np.array_equal(getattr(market, name), getattr(again, name), equal_nan=True)
    other = synthetic_market.__wrapped__(DEFAULT_SEED + 1)
    assert other.tickers == market.tickers
    assert np.array_equal(other.dates, market.dates)
    assert not np.allclose(closes(other, "SPY"), closes(market, "SPY"))


def test_memoised_and_named_after_seed(market: Market) -> None:
    assert synthetic_market() is market
    assert market.source == f"built-in synthetic market (seed {DEFAULT_SEED})"


def test_business_day_calendar(market: Market) -> None:
    assert market.dates[0] == np.datetime64("2000-01-03")
    assert market.dates[-1] == np.datetime64("2025-12-31")
    assert np.is_busday(market.dates).all()
    assert np.all(np.diff(market.dates).astype(int) >= 1)
    expected = np.arange("2000-01-03", "2026-01-01", dtype="datetime64[D]")
    assert market.n_days == int(np.is_busday(expected).sum())


def test_tickers_cover_the_usual_names(market: Market) -> None:
    assert len(market.tickers) >= 25
    assert market.tickers == SYNTHETIC_TICKERS
    assert set(REQUIRED) <= set(market.tickers)


def test_prices_positive_and_finite_on_live_days_nan_before(market: Market) -> None:
    for ticker in market.tickers:
        first = market.first_index(ticker)
        bars = market.bars(ticker)
        for name in ("open", "high", "low", "close"):
            live = getattr(bars, name)[first:]
            assert np.isfinite(live).all() and (live > 0).all(), (ticker, name)
            assert np.isnan(getattr(bars, name)[:first]).all(), (ticker, name)
        assert (bars.volume[first:] >= 1).all() and np.isfinite(bars.volume[first:]).all()
        assert market.observed[first:, market.column(ticker)].all()
    assert market.first_index("SPY") == 0


def test_late_starters(market: Market) -> None:
    def start_year(ticker: str) -> int:
        return int(str(market.dates[market.first_index(ticker)])[:4])

    assert start_year("TQQQ") == 2010
    assert start_year("SQQQ") == 2010
    assert start_year("UVXY") == 2011
    assert start_year("TMF") == 2009
    assert start_year("BIL") == 2007
    assert start_year("GLD") == 2004
    assert start_year("QQQ") == 2000


@pytest.mark.parametrize(
    ("fund", "underlying", "lo", "hi"),
    [
        ("TQQQ", "QQQ", 2.9, 3.1),
        ("SQQQ", "QQQ", -3.1, -2.9),
        ("UPRO", "SPY", 2.9, 3.1),
        ("SH", "SPY", -1.05, -0.95),
        ("TMV", "TLT", -3.1, -2.9),
    ],
)
def test_leveraged_funds_follow_their_underlying_daily(
    market: Market, fund: str, underlying: str, lo: float, hi: float
) -> None:
    x, y = paired_returns(market, underlying, fund)
    slope, intercept = np.polyfit(x, y, 1)
    assert lo <= slope <= hi
    assert intercept < 0  # the fee (and nothing else) is a daily drag
    assert np.corrcoef(x, y)[0, 1] ** 2 > 0.99


def test_leverage_decays_versus_multiple_of_underlying(market: Market) -> None:
    """Compounding 3x daily in a volatile market ends below 3x the underlying's log growth."""
    qqq, tqqq = paired_returns(market, "QQQ", "TQQQ")
    assert np.log1p(tqqq).sum() < 3 * np.log1p(qqq).sum()


def test_volatility_regimes_are_visible(market: Market) -> None:
    spy = returns(market, "SPY")
    rolling = np.lib.stride_tricks.sliding_window_view(spy, 63).std(axis=1)
    p5, p95 = np.percentile(rolling, [5, 95])
    assert p95 >= 2.5 * p5


def test_bonds_are_a_flight_to_quality(market: Market) -> None:
    spy, tlt = paired_returns(market, "SPY", "TLT")
    worst = spy <= np.quantile(spy, 0.05)
    crisis = np.corrcoef(spy[worst], tlt[worst])[0, 1]
    calm = np.corrcoef(spy[~worst], tlt[~worst])[0, 1]
    assert crisis < -0.2
    assert crisis < calm - 0.15
    # and on those days long bonds on average gain
    assert tlt[worst].mean() > 0


def test_volatility_funds_bleed_and_spike(market: Market) -> None:
    uvxy = closes(market, "UVXY")
    assert uvxy[-1] / uvxy[0] < 0.1
    assert uvxy.min() >= 0.5  # split-adjusted: never a tiny price
    assert (returns(market, "UVXY") > 0.20).sum() >= 1
    spy, uvxy_r = paired_returns(market, "SPY", "UVXY")
    assert np.corrcoef(spy, uvxy_r)[0, 1] < -0.5
    spy, svxy_r = paired_returns(market, "SPY", "SVXY")
    assert np.corrcoef(spy, svxy_r)[0, 1] > 0.5


def test_cash_and_short_bonds_are_quiet(market: Market) -> None:
    bil = returns(market, "BIL")
    assert bil.std() * np.sqrt(252) < 0.01
    assert 0.005 < bil.mean() * 252 < 0.04
    assert returns(market, "SHY").std() * np.sqrt(252) < 0.03


def test_spy_moments(market: Market) -> None:
    spy = returns(market, "SPY")
    assert 0.03 <= spy.mean() * 252 <= 0.15
    assert 0.12 <= spy.std() * np.sqrt(252) <= 0.25
    z = (spy - spy.mean()) / spy.std()
    assert (z**4).mean() - 3 > 3  # fat tails
    qqq = returns(market, "QQQ")
    assert qqq.std() > spy.std()


def test_ohlc_consistent(market: Market) -> None:
    live = np.isfinite(market.close)
    high, low = market.high[live], market.low[live]
    open_, close = market.open[live], market.close[live]
    assert (high >= np.maximum(open_, close)).all()
    assert (low <= np.minimum(open_, close)).all()
    assert (high > low).all()
    # the open is not the previous close: there are overnight gaps
    spy = market.bars("SPY")
    assert not np.allclose(spy.open[1:], spy.close[:-1])


def test_frames_are_live_days_only() -> None:
    frames = synthetic_frames()
    assert tuple(frames) == SYNTHETIC_TICKERS
    spy, tqqq = frames["SPY"], frames["TQQQ"]
    assert spy.columns == ["date", "open", "high", "low", "close", "volume"]
    assert spy.schema["date"] == pl.Date
    assert all(spy.schema[c] == pl.Float64 for c in spy.columns[1:])
    assert tqqq["date"].min().year == 2010
    assert tqqq.height < spy.height
    assert not any(f.null_count().sum_horizontal().item() for f in frames.values())


def test_build_is_fast() -> None:
    start = time.perf_counter()
    synthetic_market.__wrapped__(DEFAULT_SEED)
    print(f"synthetic_market built in {time.perf_counter() - start:.3f} s")


def test_write_synthetic_round_trips(tmp_path: Path) -> None:
    paths = write_synthetic(tmp_path / "synth")
    assert sorted(p.name for p in paths) == sorted(f"{t}.parquet" for t in SYNTHETIC_TICKERS)
    frames = synthetic_frames()
    for path in paths:
        back = pl.read_parquet(path)
        assert back.equals(frames[path.stem])
        assert back.schema["date"] == pl.Date
