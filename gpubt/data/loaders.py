"""Price files on disk → a validated, aligned `Market` (spec §4).

Every file is read and checked before the Market is built, so a bad file is refused whole, with
the file, the 1-based data row and the offending value, and nothing is ever half-loaded.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from gpubt.data.market import Market
from gpubt.errors import GpubtError

SUFFIXES = (".parquet", ".csv")
VALUES = ("open", "high", "low", "close", "adj_close", "volume")
# A zero close has no return and would zero the adjustment factor; a zero open/high/low is left
# as given (the Market's ratios treat a zero denominator as missing).
POSITIVE = ("close", "adj_close")

# Accepted header spellings, compared lower-cased with spaces, underscores and dashes removed;
# the first spelling a file has wins.
_ALIASES: dict[str, tuple[str, ...]] = {
    "date": ("date", "timestamp", "datetime", "time"),
    "ticker": ("ticker", "symbol"),
    "open": ("open",),
    "high": ("high",),
    "low": ("low",),
    "close": ("close",),
    "adj_close": ("adjclose", "adjustedclose"),
    "volume": ("volume", "vol"),
}
_CSV_NULLS = ["", "NA", "N/A", "NaN", "nan", "null", "NULL", "None"]
_ISO_DATE = r"^\d{4}-\d{2}-\d{2}(?:[ T].*)?$"  # a time or UTC offset after the day is ignored
_INTEGER = r"^-?\d+$"
_MAX_UNIX_SECONDS = 10**11  # ~year 5000: anything larger is not seconds (milliseconds, say)
_YYYYMMDD = (18000101, 22001231)  # integers in this range are YYYYMMDD dates
_ROW = "__row"


def load_market(path: str | Path, tickers: Iterable[str] | None = None) -> Market:
    """Load a folder of ``<TICKER>.parquet|csv`` files, or one long-format file, into a Market.

    With ``tickers`` only those are read (ratio names ``A/B`` count as A and B), which keeps a
    strategy on 5 of 60 tickers from paying for the other 55.
    """
    path = Path(path)
    return Market.from_frames(_read_frames(path, tickers), source=str(path))


def check_folder(path: str | Path) -> list[dict[str, Any]]:
    """Summaries for ``gpubt data check``: the same validation as `load_market`, then per ticker
    its row count, first/last date (ISO strings), whether it has an adjusted close, and how many
    business days (Mon-Fri, holidays included) are missing inside its span."""
    out = []
    for ticker, frame in _read_frames(Path(path), None).items():
        days = frame["date"].to_numpy().astype("datetime64[D]")
        first, last = days[0], days[-1]
        gaps = np.busday_count(first, last + np.timedelta64(1, "D")) - np.is_busday(days).sum()
        out.append(
            {
                "ticker": ticker,
                "rows": frame.height,
                "first": str(first),
                "last": str(last),
                "has_adj_close": "adj_close" in frame.columns,
                "gaps": int(gaps),
            }
        )
    return out


def write_market_frames(frames: Mapping[str, pl.DataFrame], out_dir: Path) -> list[Path]:
    """Write one ``<TICKER>.parquet`` per ticker: the folder layout `load_market` reads back."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for ticker, frame in frames.items():
        if not ticker or Path(ticker).name != ticker or ticker in (".", ".."):
            raise GpubtError(f"ticker {ticker!r} cannot be a file name", path=str(out_dir))
        path = out_dir / f"{ticker}.parquet"
        frame.write_parquet(path)
        paths.append(path)
    return paths


# -- reading ------------------------------------------------------------------------------------


def _read_frames(path: Path, tickers: Iterable[str] | None) -> dict[str, pl.DataFrame]:
    """Validated per-ticker frames (date: Date, values: Float64) from a folder or a long file."""
    wanted = None if tickers is None else _components(tickers)
    if path.is_dir():
        return _read_folder(path, wanted)
    if path.is_file():
        return _read_long(path, wanted)
    raise GpubtError(f"no such file or folder: {path}", path=str(path))


def _components(tickers: Iterable[str]) -> list[str]:
    """The plain tickers behind a request, ratios ``A/B`` split, order kept, duplicates dropped."""
    if isinstance(tickers, str):
        tickers = [tickers]
    return list(dict.fromkeys(part for t in tickers for part in t.split("/") if part))


def _read_folder(folder: Path, wanted: list[str] | None) -> dict[str, pl.DataFrame]:
    files: dict[str, Path] = {}
    for entry in sorted(folder.iterdir()):
        hidden = entry.name.startswith(".")
        if entry.suffix.lower() not in SUFFIXES or hidden or not entry.is_file():
            continue
        ticker = entry.stem.upper()
        if ticker in files:
            raise GpubtError(
                f"two files for ticker {ticker} in {folder}: "
                f"{files[ticker].name} and {entry.name}",
                path=str(entry),
            )
        files[ticker] = entry
    if wanted is not None:
        missing = [t for t in wanted if t not in files]
        if missing:
            raise GpubtError(
                f"no file for ticker(s) {', '.join(missing)} in {folder} "
                "(expected <TICKER>.parquet or <TICKER>.csv)",
                path=str(folder),
            )
        files = {t: files[t] for t in wanted}
    if not files:
        raise GpubtError(f"no .parquet or .csv files in {folder}", path=str(folder))
    return {t: _normalise(_read_table(file, long=False), file) for t, file in files.items()}


def _read_long(file: Path, wanted: list[str] | None) -> dict[str, pl.DataFrame]:
    """One file with a ticker (or symbol) column: rows of all tickers, in any interleaving."""
    table = _read_table(file, long=True).with_columns(
        pl.col("ticker").cast(pl.String).str.strip_chars().str.to_uppercase()
    )
    unnamed = table.select(pl.arg_where(pl.col("ticker").fill_null("") == "").first()).item()
    if unnamed is not None:
        raise GpubtError(
            f"{file.name}, row {table[_ROW][unnamed]}: ticker is missing", path=str(file)
        )
    if wanted is not None:
        missing = sorted(set(wanted) - set(table["ticker"].unique()))
        if missing:
            raise GpubtError(
                f"no rows for ticker(s) {', '.join(missing)} in {file}", path=str(file)
            )
        table = table.filter(pl.col("ticker").is_in(wanted))
    parts = _normalise(table, file).partition_by("ticker", maintain_order=True, as_dict=True)
    frames = {ticker: frame.drop("ticker") for (ticker,), frame in parts.items()}
    return frames if wanted is None else {t: frames[t] for t in wanted}


def _read_table(file: Path, *, long: bool) -> pl.DataFrame:
    """The file's rows with canonical column names and a 1-based ``_ROW`` number. CSV cells stay
    strings here so a bad value can be reported as written."""
    suffix = file.suffix.lower()
    if suffix not in SUFFIXES:
        raise GpubtError(
            f"{file.name}: unsupported file type {suffix!r} (expected .parquet or .csv)",
            path=str(file),
        )
    if file.stat().st_size == 0:
        raise GpubtError(f"{file.name} is empty", path=str(file))
    try:
        if suffix == ".parquet":
            raw = pl.read_parquet(file)
        else:
            raw = pl.read_csv(file, infer_schema=False, null_values=_CSV_NULLS)
    except (OSError, pl.exceptions.PolarsError) as exc:
        raise GpubtError(f"cannot read {file.name}: {exc}", path=str(file)) from exc

    spellings: dict[str, str] = {}
    for column in raw.columns:
        spellings.setdefault(re.sub(r"[\s_\-]", "", column.lower()), column)
    names = {}
    for name, keys in _ALIASES.items():
        column = next((spellings[k] for k in keys if k in spellings), None)
        if column is not None and (long or name != "ticker"):
            names[name] = column
    required = ("date", "ticker", "close") if long else ("date", "close")
    absent = [n for n in required if n not in names]
    if absent:
        what = {"date": "date", "close": "close", "ticker": "ticker (or symbol)"}
        raise GpubtError(
            f"{file.name} has no {' or '.join(what[n] for n in absent)} column; "
            f"columns found: {', '.join(raw.columns) or '(none)'}",
            path=str(file),
        )
    if raw.height == 0:
        raise GpubtError(f"{file.name} has no data rows", path=str(file))
    return raw.select(
        pl.int_range(1, raw.height + 1, dtype=pl.Int64).alias(_ROW),
        *(pl.col(column).alias(name) for name, column in names.items()),
    )


# -- validation ---------------------------------------------------------------------------------


def _normalise(table: pl.DataFrame, file: Path) -> pl.DataFrame:
    """Dates → pl.Date and values → Float64, non-finite values → missing. Refuses the first
    unparsable cell, negative value, zero close, or date that does not strictly increase (per
    ticker in a long file). All checks run in one pass; only a refusal looks at rows."""
    schema = table.schema
    values = [c for c in VALUES if c in schema]
    date = _date_expr(schema["date"], file)
    numbers = {c: _number_expr(c, schema[c], file) for c in values}
    finite = {c: pl.when(n.is_finite()).then(n) for c, n in numbers.items()}
    step = date.to_physical().diff()
    if "ticker" in schema:
        step = step.over("ticker")
    checks = {"date": date.is_null()}
    checks |= {
        f"parse {c}": pl.col(c).is_not_null() & numbers[c].is_null()
        for c in values
        if schema[c] == pl.String
    }
    checks |= {f"sign {c}": finite[c] <= 0 if c in POSITIVE else finite[c] < 0 for c in values}
    checks["order"] = step <= 0
    first = table.select(
        pl.arg_where(cond).first().alias(name) for name, cond in checks.items()
    ).row(0, named=True)
    for check, index in first.items():
        if index is not None:
            parsed = table.with_columns(date, *(n.alias(c) for c, n in numbers.items()))
            raise _refusal(check, index, table, parsed, file)
    return table.select(
        *(["ticker"] if "ticker" in schema else []),
        date,
        *(n.alias(c) for c, n in finite.items()),
    )


def _refusal(
    check: str, i: int, raw: pl.DataFrame, parsed: pl.DataFrame, file: Path
) -> GpubtError:
    """The error for the first failed `check`, at row index `i`, naming the row and value."""
    kind, _, column = check.partition(" ")
    row = raw[_ROW][i]
    if kind == "date":
        value = raw["date"][i]
        text = "date is missing" if value is None else f"cannot parse date {value!r}"
        text += " (expected YYYY-MM-DD, a date/datetime, an integer YYYYMMDD or integer UNIX seconds)"
    elif kind == "parse":
        text = f"{column} {raw[column][i]!r} is not a number"
    elif kind == "sign":
        value = parsed[column][i]
        text = f"{column} is {value!r} ({'negative' if value < 0 else 'must be positive'})"
    else:
        before = parsed[:i]
        if "ticker" in parsed.columns:
            text = f"ticker {parsed['ticker'][i]}: "
            before = before.filter(pl.col("ticker") == parsed["ticker"][i])
        else:
            text = ""
        date, previous = parsed["date"][i], before["date"][-1]
        text += (
            f"{'duplicate date' if date == previous else 'date out of order'}: {date} follows "
            f"{previous} on row {before[_ROW][-1]} (dates must strictly increase)"
        )
    return GpubtError(f"{file.name}, row {row}: {text}", path=str(file))


def _date_expr(dtype: pl.DataType, file: Path) -> pl.Expr:
    """Calendar dates from Date, Datetime (tz-aware: the local date), integer YYYYMMDD or UNIX
    seconds, or strings holding any of those; unparsable cells become null and are refused by
    `_normalise`."""
    col = pl.col("date")
    if dtype == pl.Date:
        return col
    if isinstance(dtype, pl.Datetime):
        return col.dt.date()
    if dtype.is_integer():
        return _from_integer(col.cast(pl.Int64))
    if dtype == pl.String:
        text = col.str.strip_chars()
        iso = text.str.slice(0, 10).str.strptime(pl.Date, "%Y-%m-%d", strict=False)
        return (
            pl.when(text.str.contains(_INTEGER))
            .then(_from_integer(text.cast(pl.Int64, strict=False)))
            .when(text.str.contains(_ISO_DATE))
            .then(iso)
            .alias("date")
        )
    raise GpubtError(
        f"{file.name}: date column has type {dtype}; expected dates, YYYY-MM-DD strings, integer "
        "YYYYMMDD or integer UNIX seconds",
        path=str(file),
    )


def _from_integer(value: pl.Expr) -> pl.Expr:
    """An integer date: YYYYMMDD for 18000101–22001231 (as seconds those would all fall in 47
    days of 1970), missing there when it is no calendar date (20241399); else UNIX seconds."""
    ymd = value.cast(pl.String).str.strptime(pl.Date, "%Y%m%d", strict=False)
    seconds = pl.when(value.abs() < _MAX_UNIX_SECONDS).then(pl.from_epoch(value, time_unit="s")).dt.date()
    return pl.when(value.is_between(*_YYYYMMDD)).then(ymd).otherwise(seconds).alias("date")


def _number_expr(column: str, dtype: pl.DataType, file: Path) -> pl.Expr:
    """Float64 of a value column; CSV strings that are not numbers become null (and refused)."""
    col = pl.col(column)
    if dtype == pl.String:
        return col.str.strip_chars().cast(pl.Float64, strict=False)
    if dtype.is_numeric():
        return col.cast(pl.Float64)
    raise GpubtError(
        f"{file.name}: column {column} has type {dtype}; expected numbers", path=str(file)
    )
