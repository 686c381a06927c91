"""Loaders: every file layout, spelling and date type lands on the same Market, and every bad
input is refused naming the file, the row and the value."""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from gpubt.data import Market, load_market
from gpubt.data.loaders import check_folder, write_market_frames
from gpubt.errors import GpubtError

ETF = Path(__file__).parents[2] / "shared" / "data" / "etf"
NAN = np.nan


def write_csv(path: Path, text: str) -> Path:
    path.write_text(text.strip() + "\n" if text else "")
    return path


def axis(*days: str) -> np.ndarray:
    return np.array(days, dtype="datetime64[D]")


def series(market: Market, ticker: str, field: str = "close") -> np.ndarray:
    return getattr(market.bars(ticker), field)


def refusal(path: Path, tickers: list[str] | None = None) -> GpubtError:
    with pytest.raises(GpubtError) as caught:
        load_market(path, tickers)
    return caught.value


# -- alignment and adjustment -------------------------------------------------------------------


def test_two_calendars_align_on_the_union_axis(tmp_path: Path) -> None:
    pl.DataFrame(
        {
            "date": [date(2024, 1, d) for d in (2, 3, 4, 5)],
            "close": [10.0, 11.0, 12.0, 13.0],
            "volume": [100, 110, 120, 130],
        }
    ).write_parquet(tmp_path / "A.parquet")
    write_csv(tmp_path / "B.csv", "date,close\n2024-01-03,20\n2024-01-05,22\n2024-01-08,23")
    market = load_market(tmp_path)

    assert market.tickers == ("A", "B")
    assert market.source == str(tmp_path)
    np.testing.assert_array_equal(
        market.dates, axis("2024-01-02", "2024-01-03", "2024-01-04", "2024-01-05", "2024-01-08")
    )
    # A: NaN after its last price; B: NaN before its first, interior gap forward-filled.
    np.testing.assert_array_equal(series(market, "A"), [10, 11, 12, 13, NAN])
    np.testing.assert_array_equal(series(market, "B"), [NAN, 20, 20, 22, 23])
    np.testing.assert_array_equal(series(market, "A", "volume"), [100, 110, 120, 130, NAN])
    np.testing.assert_array_equal(series(market, "B", "open"), [NAN, 20, 20, 22, 23])
    np.testing.assert_array_equal(market.observed[:, 1], [False, True, False, True, True])


def test_adjusted_close_scales_open_high_low(tmp_path: Path) -> None:
    write_csv(
        tmp_path / "X.csv",
        """
Date,Open,High,Low,Close,Adj Close,Volume
2024-01-02,98,102,96,100,50,1000
2024-01-03,108,112,105,110,99,2000
""",
    )
    bars = load_market(tmp_path).bars("X")
    np.testing.assert_allclose(bars.close, [50.0, 99.0], rtol=1e-15)
    np.testing.assert_allclose(bars.open, [49.0, 97.2], rtol=1e-15)  # 98 * 0.5, 108 * 0.9
    np.testing.assert_allclose(bars.high, [51.0, 100.8], rtol=1e-15)
    np.testing.assert_allclose(bars.low, [48.0, 94.5], rtol=1e-15)
    np.testing.assert_array_equal(bars.volume, [1000.0, 2000.0])


@pytest.mark.parametrize(
    "header",
    [
        "Date,Open,High,Low,Close,Adj Close,Volume",
        "timestamp,open,high,low,close,adj_close,vol",
        "Datetime,OPEN,HIGH,LOW,CLOSE,adjclose,VOLUME",
        "time,Open,High,Low,Close,Adj_Close,Volume",
        "DATE,open,high,low,close,adjusted_close,Vol",
    ],
)
def test_column_spellings(tmp_path: Path, header: str) -> None:
    rows = "2024-01-02,9,12,8,10,5,700\n2024-01-03,10,11,9,11,5.5,800"
    write_csv(tmp_path / "x.csv", f"{header}\n{rows}")
    market = load_market(tmp_path)
    assert market.tickers == ("X",)  # the stem, upper-cased
    bars = market.bars("X")
    np.testing.assert_allclose(bars.close, [5.0, 5.5])
    np.testing.assert_allclose(bars.open, [4.5, 5.0])
    np.testing.assert_allclose(bars.high, [6.0, 5.5])
    np.testing.assert_allclose(bars.low, [4.0, 4.5])
    np.testing.assert_array_equal(bars.volume, [700.0, 800.0])


DATE_COLUMNS = {
    "iso string": pl.Series(["2024-01-02", "2024-01-03"]),
    "Date": pl.Series([date(2024, 1, 2), date(2024, 1, 3)]),
    "Datetime with time": pl.Series([datetime(2024, 1, 2, 16), datetime(2024, 1, 3, 16)]),
    "Datetime ns": pl.Series([datetime(2024, 1, 2), datetime(2024, 1, 3)]).cast(
        pl.Datetime("ns")
    ),
    "tz New York": pl.Series([datetime(2024, 1, 2), datetime(2024, 1, 3)]).dt.replace_time_zone(
        "America/New_York"
    ),
    # 08:00 in Tokyo is the previous day in UTC: the local calendar date wins.
    "tz Tokyo": pl.Series([datetime(2024, 1, 2, 8), datetime(2024, 1, 3, 8)]).dt.replace_time_zone(
        "Asia/Tokyo"
    ),
    "unix seconds": pl.Series([1704153600, 1704240000], dtype=pl.Int64),
    "unix seconds int32": pl.Series([1704153600, 1704240000], dtype=pl.Int32),
    "integer YYYYMMDD": pl.Series([20240102, 20240103], dtype=pl.Int64),
    "integer YYYYMMDD int32": pl.Series([20240102, 20240103], dtype=pl.Int32),
}


@pytest.mark.parametrize("kind", DATE_COLUMNS)
def test_date_types_parquet(tmp_path: Path, kind: str) -> None:
    pl.DataFrame({"Date": DATE_COLUMNS[kind], "Close": [1.0, 2.0]}).write_parquet(
        tmp_path / "A.parquet"
    )
    market = load_market(tmp_path)
    np.testing.assert_array_equal(market.dates, axis("2024-01-02", "2024-01-03"))
    np.testing.assert_array_equal(series(market, "A"), [1.0, 2.0])


@pytest.mark.parametrize(
    "cells",
    [
        ("2024-01-02", "2024-01-03"),
        ("2024-01-02 00:00:00-05:00", "2024-01-03 00:00:00-05:00"),
        ("2024-01-02T16:00:00", "2024-01-03T16:00:00"),
        ("1704153600", "1704240000"),
        ("20240102", "20240103"),
    ],
)
def test_date_strings_csv(tmp_path: Path, cells: tuple[str, str]) -> None:
    write_csv(tmp_path / "A.csv", f"date,close\n{cells[0]},1\n {cells[1]} ,2")
    market = load_market(tmp_path)
    np.testing.assert_array_equal(market.dates, axis("2024-01-02", "2024-01-03"))


def test_an_integer_in_the_yyyymmdd_range_that_is_no_date_is_refused(tmp_path: Path) -> None:
    """20241399 is not read as seconds (1970-08-23): a YYYYMMDD-sized integer is a date or an error."""
    write_csv(tmp_path / "A.csv", "date,close\n20240102,1\n20241399,2")
    with pytest.raises(GpubtError, match=r"A.csv, row 2: cannot parse date .*20241399.*integer YYYYMMDD"):
        load_market(tmp_path)


def test_non_finite_prices_are_missing(tmp_path: Path) -> None:
    days = [date(2024, 1, d) for d in (2, 3, 4, 5)]
    pl.DataFrame({"date": days, "close": [10.0, np.nan, -np.inf, 13.0]}).write_parquet(
        tmp_path / "P.parquet"
    )
    write_csv(
        tmp_path / "C.csv",
        "date,close\n2024-01-02,10\n2024-01-03,NaN\n2024-01-04,inf\n2024-01-05,13",
    )
    market = load_market(tmp_path)
    for ticker in ("P", "C"):
        np.testing.assert_array_equal(series(market, ticker), [10, 10, 10, 13])
        np.testing.assert_array_equal(market.observed[:, market.column(ticker)], [1, 0, 0, 1])


def test_ratio_ticker(tmp_path: Path) -> None:
    write_csv(
        tmp_path / "A.csv",
        "date,open,close,volume\n2024-01-02,9,10,1\n2024-01-03,11,12,1\n"
        "2024-01-04,13,14,1\n2024-01-05,15,16,1",
    )
    write_csv(
        tmp_path / "B.csv",
        "date,open,close,volume\n2024-01-03,0,4,1\n2024-01-04,3,6,1\n2024-01-05,4,8,1",
    )
    market = load_market(tmp_path, ["A/B"])
    assert market.tickers == ("A", "B")
    bars = market.bars("A/B")
    # B missing on day 1; B's open is 0 on day 2.
    np.testing.assert_allclose(bars.close, [NAN, 3.0, 14 / 6, 2.0])
    np.testing.assert_allclose(bars.open, [NAN, NAN, 13 / 3, 15 / 4])
    np.testing.assert_allclose(bars.high, bars.close)
    np.testing.assert_array_equal(bars.volume, [NAN] * 4)


# -- folder subsets and long files --------------------------------------------------------------


def test_tickers_subset_reads_only_those_files(tmp_path: Path) -> None:
    for name in ("A", "B", "C"):
        write_csv(tmp_path / f"{name}.csv", "date,close\n2024-01-02,1\n2024-01-03,2")
    write_csv(tmp_path / "BROKEN.csv", "no,columns,here\n1,2,3")
    (tmp_path / "SOURCES.md").write_text("# not data")
    (tmp_path / "manifest.json").write_text("{}")

    assert load_market(tmp_path, ["C", "A", "C"]).tickers == ("C", "A")
    assert load_market(tmp_path, ("B/A", "C")).tickers == ("B", "A", "C")

    err = refusal(tmp_path, ["A", "ZZZ", "YYY"])
    assert "ZZZ, YYY" in err.message and str(tmp_path) in err.message
    assert err.path == str(tmp_path)
    # Without a subset every data file is validated, so the broken one refuses the folder.
    assert "BROKEN.csv" in refusal(tmp_path).message


LONG_CSV = """
Date,Symbol,Close,Adj Close
2024-01-02,spy,100,50
2024-01-02,TLT,80,
2024-01-03,SPY,110,55
2024-01-04,TLT,82,
"""


def test_long_csv(tmp_path: Path) -> None:
    market = load_market(write_csv(tmp_path / "prices.csv", LONG_CSV))
    assert market.tickers == ("SPY", "TLT")
    np.testing.assert_array_equal(market.dates, axis("2024-01-02", "2024-01-03", "2024-01-04"))
    np.testing.assert_array_equal(series(market, "SPY"), [50, 55, NAN])
    np.testing.assert_array_equal(series(market, "TLT"), [80, 80, 82])


def test_long_parquet_with_subset(tmp_path: Path) -> None:
    path = tmp_path / "long.parquet"
    pl.DataFrame(
        {
            "ticker": ["A", "B", "C", "A", "B"],
            "date": [date(2024, 1, 2)] * 3 + [date(2024, 1, 3)] * 2,
            "close": [1.0, 2.0, 3.0, 1.5, 2.5],
            "volume": [10, 20, 30, 15, 25],
        }
    ).write_parquet(path)
    market = load_market(path, ["B", "A"])
    assert market.tickers == ("B", "A")
    np.testing.assert_array_equal(series(market, "A"), [1.0, 1.5])
    np.testing.assert_array_equal(series(market, "B", "volume"), [20.0, 25.0])

    err = refusal(path, ["A", "Q"])
    assert "Q" in err.message and str(path) in err.message


# -- refusals -----------------------------------------------------------------------------------

GOOD = """
date,open,high,low,close,volume
2024-01-02,10,11,9,10.5,100
2024-01-03,10.5,12,10,11,200
2024-01-04,11,12,10.5,11.5,300
"""


def defect(row: int, old: str, new: str) -> str:
    """GOOD with one cell of data row `row` (1-based) replaced."""
    lines = GOOD.strip().splitlines()
    lines[row] = lines[row].replace(old, new, 1)
    return "\n".join(lines)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (defect(2, "2024-01-03", "2024-13-03"), ["row 2", "cannot parse date '2024-13-03'"]),
        (defect(2, "2024-01-03", "03/01/2024"), ["row 2", "'03/01/2024'"]),
        (defect(3, "2024-01-04", ""), ["row 3", "date is missing"]),
        (
            defect(3, "2024-01-04", "2024-01-02"),
            ["row 3", "date out of order: 2024-01-02 follows 2024-01-03 on row 2"],
        ),
        (defect(2, "2024-01-03", "2024-01-02"), ["row 2", "duplicate date: 2024-01-02", "row 1"]),
        (defect(2, ",12,", ",-12,"), ["row 2", "high is -12.0 (negative)"]),
        (defect(3, "11.5", "0"), ["row 3", "close is 0.0 (must be positive)"]),
        (defect(1, "10.5", "abc"), ["row 1", "close 'abc' is not a number"]),
        (defect(2, "200", "-200"), ["row 2", "volume is -200.0 (negative)"]),
        ("day,close\n2024-01-02,1", ["no date column", "columns found: day, close"]),
        ("Date,Price\n2024-01-02,1", ["no close column", "columns found: Date, Price"]),
        ("", ["is empty"]),
        ("date,close", ["has no data rows"]),
    ],
)
def test_bad_csv_is_refused_naming_file_row_and_value(
    tmp_path: Path, text: str, expected: list[str]
) -> None:
    write_csv(tmp_path / "GOOD.csv", GOOD)
    bad = write_csv(tmp_path / "BAD.csv", text)
    err = refusal(tmp_path)
    assert err.path == str(bad)
    assert err.message.startswith("BAD.csv")
    for part in expected:
        assert part in err.message


def test_good_csv_passes(tmp_path: Path) -> None:
    assert load_market(write_csv(tmp_path / "G.csv", GOOD).parent).n_days == 3


def test_unreadable_parquet(tmp_path: Path) -> None:
    bad = tmp_path / "X.parquet"
    bad.write_bytes(b"definitely not parquet")
    err = refusal(tmp_path)
    assert err.path == str(bad) and "cannot read X.parquet" in err.message


def test_negative_price_in_parquet(tmp_path: Path) -> None:
    path = tmp_path / "N.parquet"
    pl.DataFrame(
        {"date": [date(2024, 1, 2), date(2024, 1, 3)], "close": [1.0, 2.0], "low": [1.0, -0.5]}
    ).write_parquet(path)
    err = refusal(tmp_path)
    assert err.path == str(path)
    assert err.message == "N.parquet, row 2: low is -0.5 (negative)"


def test_long_file_errors(tmp_path: Path) -> None:
    no_ticker = write_csv(tmp_path / "wide.csv", "date,close\n2024-01-02,1")
    err = refusal(no_ticker)
    assert err.path == str(no_ticker)
    assert "wide.csv has no ticker (or symbol) column; columns found: date, close" in err.message

    blank = write_csv(tmp_path / "blank.csv", "date,ticker,close\n2024-01-02,A,1\n2024-01-02,,1")
    assert refusal(blank).message == "blank.csv, row 2: ticker is missing"

    # A repeated date of one ticker is found across interleaved rows and names both rows.
    dup = write_csv(
        tmp_path / "dup.csv",
        "date,ticker,close\n2024-01-02,A,1\n2024-01-02,B,1\n2024-01-03,B,1\n2024-01-02,A,2",
    )
    assert refusal(dup).message == (
        "dup.csv, row 4: ticker A: duplicate date: 2024-01-02 follows 2024-01-02 on row 1 "
        "(dates must strictly increase)"
    )


def test_path_errors(tmp_path: Path) -> None:
    assert "no such file or folder" in refusal(tmp_path / "nowhere").message
    assert "no .parquet or .csv files" in refusal(tmp_path).message
    txt = tmp_path / "prices.txt"
    txt.write_text("date,close\n")
    assert "unsupported file type '.txt'" in refusal(txt).message
    write_csv(tmp_path / "A.csv", GOOD)
    write_csv(tmp_path / "a.parquet", "")
    assert "two files for ticker A" in refusal(tmp_path).message


# -- round trip and folder check ----------------------------------------------------------------


def test_write_then_load_round_trip(tmp_path: Path) -> None:
    rng = np.random.default_rng(7)
    days = pl.date_range(date(2020, 1, 1), date(2020, 12, 31), "1d", eager=True)
    frames = {}
    for name, n in (("AAA", 200), ("BBB", 150)):
        picked = np.sort(rng.choice(days.len(), n, replace=False))
        close = 50 * np.exp(np.cumsum(rng.normal(0, 0.01, n)))
        frames[name] = pl.DataFrame(
            {
                "date": days.gather(picked),
                "open": close * 1.001,
                "high": close * 1.01,
                "low": close * 0.99,
                "close": close,
                "adj_close": close * np.linspace(0.9, 1.0, n),
                "volume": rng.integers(0, 10**6, n).astype(np.float64),
            }
        )
    paths = write_market_frames(frames, tmp_path / "out")
    assert paths == [tmp_path / "out" / "AAA.parquet", tmp_path / "out" / "BBB.parquet"]

    loaded, direct = load_market(tmp_path / "out"), Market.from_frames(frames, "direct")
    assert loaded.tickers == direct.tickers
    for name in ("dates", "open", "high", "low", "close", "volume", "observed"):
        np.testing.assert_array_equal(getattr(loaded, name), getattr(direct, name))


def test_write_refuses_path_like_tickers(tmp_path: Path) -> None:
    frame = pl.DataFrame({"date": [date(2024, 1, 2)], "close": [1.0]})
    with pytest.raises(GpubtError, match="cannot be a file name"):
        write_market_frames({"A/B": frame}, tmp_path)


def test_check_folder(tmp_path: Path) -> None:
    # Mon 1 .. Mon 8 January 2024 is six business days; Wednesday the 3rd is missing.
    days = "\n".join(f"2024-01-0{d},1" for d in (1, 2, 4, 5, 8))
    write_csv(tmp_path / "A.csv", f"date,close\n{days}")
    pl.DataFrame(
        {"date": [date(2024, 1, 2), date(2024, 1, 3)], "close": [2.0, 3.0], "adj_close": [1.0, 1.5]}
    ).write_parquet(tmp_path / "B.parquet")
    assert check_folder(tmp_path) == [
        {"ticker": "A", "rows": 5, "first": "2024-01-01", "last": "2024-01-08",
         "has_adj_close": False, "gaps": 1},
        {"ticker": "B", "rows": 2, "first": "2024-01-02", "last": "2024-01-03",
         "has_adj_close": True, "gaps": 0},
    ]
    write_csv(tmp_path / "C.csv", "date,close\n2024-01-02,-1")
    with pytest.raises(GpubtError, match=r"C\.csv, row 1: close is -1\.0"):
        check_folder(tmp_path)


# -- the real ETF files -------------------------------------------------------------------------

real_data = pytest.mark.skipif(
    not ETF.is_dir(), reason=f"real ETF data not present at {ETF} (../shared/data/etf)"
)


@real_data
def test_real_subset_spy_tqqq_tlt() -> None:
    tickers = ("SPY", "TQQQ", "TLT")
    market = load_market(ETF, tickers)
    assert market.tickers == tickers
    raw = {t: pl.read_parquet(ETF / f"{t}.parquet") for t in tickers}
    union = np.unique(np.concatenate([f["date"].to_numpy() for f in raw.values()]))
    np.testing.assert_array_equal(market.dates, union.astype("datetime64[D]"))

    tqqq_first = np.datetime64(raw["TQQQ"]["date"].min().date(), "D")
    first = market.first_index("TQQQ")
    assert market.dates[first] == tqqq_first
    assert np.isnan(market.bars("TQQQ").close[:first]).all()

    for t, frame in raw.items():
        rows = np.searchsorted(market.dates, frame["date"].to_numpy().astype("datetime64[D]"))
        expected = frame["adj_close" if "adj_close" in frame.columns else "close"].to_numpy()
        np.testing.assert_allclose(market.bars(t).close[rows], expected, rtol=1e-13)
        np.testing.assert_array_equal(market.bars(t).volume[rows], frame["volume"].to_numpy())
    assert "adj_close" not in raw["TQQQ"].columns  # price return only, per SOURCES.md


@real_data
def test_real_all_tickers() -> None:
    files = sorted(ETF.glob("*.parquet"))
    market = load_market(ETF)
    assert market.tickers == tuple(f.stem for f in files)
    summary = check_folder(ETF)
    for f, row in zip(files, summary, strict=True):
        frame = pl.read_parquet(f, columns=["date"])
        assert row["ticker"] == f.stem and row["rows"] == frame.height
        assert row["first"] == str(frame["date"].min().date())
        assert row["last"] == str(frame["date"].max().date())
