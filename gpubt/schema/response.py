"""The backtest response of spec §7, with V1's field names so the existing front end works."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numba
import numpy as np
import orjson

from gpubt.collector import paused
from gpubt.metrics import compute_metrics
from gpubt.sim import equity_and_drawdown

# Weights smaller than this are float dust from combining children, not positions.
MIN_WEIGHT = 1e-12


def json_safe(value: float) -> float | None:
    """A float JSON can carry: NaN and ±inf become null (V1's wire format has no NaN)."""
    value = float(value)
    return value if math.isfinite(value) else None


def json_list(values: np.ndarray) -> list[float | None]:
    """A float array as a JSON-safe list (one conversion, not one call per value)."""
    out = np.asarray(values, dtype=np.float64).tolist()
    if not np.isfinite(values).all():
        out = [v if math.isfinite(v) else None for v in out]
    return out


def _points(
    first_date: str, first: float, dates: list[str], values: list[float | None]
) -> list[dict[str, Any]]:
    """A curve of {date, equity} points that starts with the start day's value."""
    return [{"date": first_date, "equity": first}] + [
        {"date": d, "equity": v} for d, v in zip(dates, values, strict=True)
    ]


def _held(weights: np.ndarray) -> np.ndarray:
    """Positions worth reporting (and counting in avgHoldings)."""
    return np.abs(weights) >= MIN_WEIGHT


@numba.njit(cache=True, nogil=True)
def _changes(holdings: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(whether each day's allocation differs from the day before's, how many positions worth
    reporting it holds), in one pass over the days (NumPy's two reductions along the short
    ticker axis took ~280 µs for 4,683 days)."""
    days, n = holdings.shape
    new = np.empty(days, dtype=np.bool_)
    held = np.empty(days, dtype=np.int64)
    for d in range(days):
        changed = d == 0
        count = 0
        for j in range(n):
            w = holdings[d, j]
            count += abs(w) >= MIN_WEIGHT
            if not changed and w != holdings[d - 1, j]:
                changed = True
        new[d] = changed
        held[d] = count
    return new, held


@dataclass(frozen=True)
class _Entries:
    """The held positions of each distinct allocation, as columns: row r's entries are
    `cols[ends[r-1]:ends[r]]` (ticker columns) with their `weights`, by weight descending, then
    ticker (so equal runs give identical output); `which[d]` is the row day d holds. The entries'
    dicts or JSON are written only when asked for (`dicts`, `json`)."""

    tickers: tuple[str, ...]
    cols: list[int]
    weights: np.ndarray
    ends: list[int]
    which: list[int]

    @classmethod
    def of(cls, holdings: np.ndarray, new: np.ndarray, tickers: Sequence[str]) -> _Entries:
        """From the days' allocations (`new`: the days unlike the day before). Allocations repeat:
        each distinct row is kept once and the rows are ordered by one array sort, not one
        Python sort per day."""
        tickers = tuple(tickers)
        if not len(holdings):
            return cls(tickers, [], np.zeros(0), [], [])
        starts = holdings[new]
        ids: dict[bytes, int] = {}
        which = np.array([ids.setdefault(row.tobytes(), len(ids)) for row in starts])
        rows = starts[np.unique(which, return_index=True)[1]]  # distinct rows, in order of their ids
        held = _held(rows)
        rank = np.broadcast_to(np.argsort(np.argsort(np.asarray(tickers))), rows.shape)
        order = np.lexsort((rank, -rows, ~held), axis=-1)  # held first, then -weight, then ticker
        counts = held.sum(axis=-1)
        first = np.arange(rows.shape[1]) < counts[:, None]  # the held entries of each sorted row
        weights = np.take_along_axis(rows, order, axis=-1)[first]
        return cls(tickers, order[first].tolist(), weights, np.cumsum(counts).tolist(),
                   which[np.cumsum(new) - 1].tolist())

    def _spans(self) -> zip[tuple[int, int]]:
        return zip([0, *self.ends[:-1]], self.ends)

    def dicts(self) -> list[list[dict[str, Any]]]:
        """Each distinct row's entries as new {ticker, weight} dicts."""
        names = [self.tickers[c] for c in self.cols]
        values = json_list(self.weights)
        return [
            [{"ticker": t, "weight": w} for t, w in zip(names[a:b], values[a:b])] for a, b in self._spans()
        ]

    def json(self) -> list[bytes]:
        """Each distinct row's entries as the JSON of `dicts()`, laid out from the columns."""
        names = [orjson.dumps(t) for t in self.tickers]
        parts, width = _record_parts({"ticker": [names[c] for c in self.cols], "weight": _values(self.weights)})
        rows = []
        for a, b in self._spans():
            if a == b:
                rows.append(b"[]")
                continue
            parts[width * b - 1] = b"}"  # the row's last entry
            rows.append(b"[" + b"".join(parts[width * a : width * b]) + b"]")
        return rows


def _monthly(months: np.ndarray, net: np.ndarray) -> list[dict[str, Any]]:
    """Π(1 + net) − 1 over each calendar month of the (sorted) credited days."""
    if not months.size:
        return []
    starts = np.flatnonzero(np.r_[True, months[1:] != months[:-1]])
    values = np.multiply.reduceat(1.0 + net, starts) - 1.0
    index = months[starts].astype(np.int64).tolist()  # months since 1970-01
    return [
        {"year": 1970 + i // 12, "month": i % 12 + 1, "value": v}
        for i, v in zip(index, json_list(values), strict=True)
    ]


# -- JSON written from the columns ----------------------------------------------------------------
# orjson writes a float64 array as each float's shortest round-trip form (NaN and ±inf as null),
# exactly as it writes the same floats in a list; an array's text cut at its commas is one JSON
# value per element, and a list of records is those values laid between the keys by slice
# assignment and joined once: no dict per record.


def _values(values: np.ndarray | list[Any]) -> list[bytes]:
    """The JSON text of each element (numbers, strings without commas, null)."""
    text = orjson.dumps(values, option=orjson.OPT_SERIALIZE_NUMPY)
    return text[1:-1].split(b",") if len(text) > 2 else []


def _record_parts(columns: dict[str, list[bytes]]) -> tuple[list[bytes], int]:
    """The pieces of JSON objects, record i being {key: columns[key][i], ...} in the keys' order,
    `width` pieces a record, each record ending in "},"."""
    n = len(next(iter(columns.values())))
    width = 2 * len(columns) + 1
    parts: list[bytes] = [b""] * (n * width)
    for j, (key, values) in enumerate(columns.items()):
        parts[2 * j :: width] = [("{" if j == 0 else ",").encode() + orjson.dumps(key) + b":"] * n
        parts[2 * j + 1 :: width] = values
    parts[width - 1 :: width] = [b"},"] * n
    return parts, width


def _records(columns: dict[str, list[bytes]]) -> bytes:
    """A JSON list of objects, record i being {key: columns[key][i], ...} in the keys' order."""
    parts, _ = _record_parts(columns)
    if not parts:
        return b"[]"
    parts[-1] = b"}"
    return b"[" + b"".join(parts) + b"]"


class BacktestResponse:
    """The spec §7 response of one backtest, kept as columns. `to_json()` writes the wire format
    straight from them (what the API and the CLI send: a long backtest's response is tens of
    thousands of small objects, which Python would otherwise build and orjson walk); `to_dict()`
    builds the same response as Python dicts and lists. `orjson.dumps(r.to_dict()) ==
    r.to_json()`, byte for byte."""

    def __init__(
        self,
        *,
        dates: np.ndarray,
        iso_dates: Sequence[str] | np.ndarray,
        start: int,
        credited: np.ndarray,
        tickers: Sequence[str],
        holdings: np.ndarray,
        gross: np.ndarray,
        net: np.ndarray,
        turnover: np.ndarray,
        cost: np.ndarray,
        benchmark: str,
        benchmark_net: np.ndarray | None,
        markers: Sequence[tuple[int, str]],
        warnings: Sequence[tuple[int | None, str]],
    ) -> None:
        """Curves start with the start day (1.0 / 0.0); ``days`` has one row per credited day;
        ``iso_dates`` is each of ``dates`` as YYYY-MM-DD (`Market.iso_dates`, made once).
        When ``benchmark_net`` is None the benchmark had no data: its curve is empty, beta and
        treynor are null and a warning naming ``benchmark`` is added."""
        credited = np.asarray(credited, dtype=np.int64)
        self.net = np.asarray(net, dtype=np.float64)
        self.gross = np.asarray(gross, dtype=np.float64)
        self.turnover = np.asarray(turnover, dtype=np.float64)
        self.cost = np.asarray(cost, dtype=np.float64)
        seconds = dates.astype("datetime64[s]").astype(np.int64)
        self.seconds = seconds[credited]
        iso_dates = np.asarray(iso_dates, dtype=object)
        self.start_date = iso_dates[start]
        self.when = iso_dates[credited].tolist()
        self.equity, self.drawdown = equity_and_drawdown(self.net)
        new, n_holdings = _changes(np.ascontiguousarray(holdings, dtype=np.float64))
        metrics = compute_metrics(self.net, self.turnover, n_holdings, benchmark_net)

        warnings = list(warnings)
        self.bench_equity: np.ndarray | None = None
        if benchmark_net is None:
            warnings.append((None, f"benchmark {benchmark} has no data: beta and treynor are null"))
        else:
            # Days before the benchmark has prices keep it flat, so its curve starts at 1.0 with ours.
            bench_net = np.where(np.isfinite(benchmark_net), benchmark_net, 0.0)
            self.bench_equity = np.cumprod(1.0 + bench_net)
        self.entries = _Entries.of(holdings, new, tickers)
        self.monthly = _monthly(dates[credited].astype("datetime64[M]"), self.net)
        self.markers = [{"time": int(seconds[i]), "text": text} for i, text in markers]
        self.warnings = [
            {
                "time": None if i is None else int(seconds[i]),
                "date": None if i is None else iso_dates[i],
                "message": message,
            }
            for i, message in warnings
        ]
        self.metrics: dict[str, Any] = {"startDate": self.start_date}
        self.metrics["endDate"] = self.when[-1] if self.when else None
        self.metrics.update(
            {key: int(v) if key == "days" else json_safe(v) for key, v in metrics.items()}
        )

    @paused()  # tens of thousands of dicts and lists, no cycles
    def to_dict(self) -> dict[str, Any]:
        """The response as Python objects, made anew on each call; the days that hold the same
        allocation share one list of entries."""
        when, start_date = self.when, self.start_date
        equity, drawdown = json_list(self.equity), json_list(self.drawdown)
        distinct = self.entries.dicts()
        entries = [distinct[i] for i in self.entries.which]
        columns = zip(
            self.seconds.tolist(), when, equity, drawdown, json_list(self.gross),
            json_list(self.net), json_list(self.turnover), json_list(self.cost), entries,
        )
        days = [
            {"time": t, "date": d, "equity": e, "drawdown": dd, "grossReturn": g, "netReturn": n,
             "turnover": tu, "cost": c, "holdings": h}
            for t, d, e, dd, g, n, tu, c, h in columns
        ]
        benchmark = [] if self.bench_equity is None else _points(
            start_date, 1.0, when, json_list(self.bench_equity)
        )
        return {
            "equityCurve": _points(start_date, 1.0, when, equity),
            "benchmarkCurve": benchmark,
            "drawdownPoints": _points(start_date, 0.0, when, drawdown),
            "days": days,
            "allocations": [{"date": d, "entries": e} for d, e in zip(when, entries)],
            "monthly": [dict(m) for m in self.monthly],
            "markers": [dict(m) for m in self.markers],
            "warnings": [dict(w) for w in self.warnings],
            "metrics": dict(self.metrics),
        }

    def to_json(self) -> bytes:
        """The response's compact JSON (NaN and ±inf as null), as `orjson.dumps(self.to_dict())`."""
        dates = _values([self.start_date, *self.when])  # the curves' dates, the start day first
        when = dates[1:]
        equity, drawdown = _values(np.r_[1.0, self.equity]), _values(np.r_[0.0, self.drawdown])
        distinct = self.entries.json()
        entries = [distinct[i] for i in self.entries.which]
        benchmark = b"[]" if self.bench_equity is None else _records(
            {"date": dates, "equity": _values(np.r_[1.0, self.bench_equity])}
        )
        days = _records({
            "time": _values(self.seconds), "date": when, "equity": equity[1:],
            "drawdown": drawdown[1:], "grossReturn": _values(self.gross),
            "netReturn": _values(self.net), "turnover": _values(self.turnover),
            "cost": _values(self.cost), "holdings": entries,
        })
        small = orjson.dumps(
            {"monthly": self.monthly, "markers": self.markers, "warnings": self.warnings,
             "metrics": self.metrics}
        )
        return b"".join((
            b'{"equityCurve":', _records({"date": dates, "equity": equity}),
            b',"benchmarkCurve":', benchmark,
            b',"drawdownPoints":', _records({"date": dates, "equity": drawdown}),
            b',"days":', days,
            b',"allocations":', _records({"date": when, "entries": entries}), b",", small[1:],
        ))
