"""The backtest response of spec §7, with V1's field names so the existing front end works."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import polars as pl

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


def _iso_days(dates: np.ndarray) -> list[str]:
    """YYYY-MM-DD of each date (Polars formats them twice as fast as NumPy)."""
    return pl.Series(dates.astype("datetime64[D]")).cast(pl.String).to_list()


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


def _entries(holdings: np.ndarray, tickers: Sequence[str]) -> list[list[dict[str, Any]]]:
    """Each day's held tickers by weight descending, then ticker, so equal runs give identical
    output. Allocations repeat: each distinct row's list is built once and shared by its days,
    and the distinct rows are ordered by one array sort, not one Python sort per day."""
    if not len(holdings):
        return []
    new = np.r_[True, np.any(holdings[1:] != holdings[:-1], axis=1)]  # a day unlike the day before
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
    values = weights.tolist()
    if not np.isfinite(weights).all():
        values = [w if math.isfinite(w) else None for w in values]
    names = np.asarray(tickers, dtype=object)[order[first]].tolist()
    # every entry of every distinct row in one pass, then cut into rows
    flat = [{"ticker": t, "weight": w} for t, w in zip(names, values)]
    ends = np.cumsum(counts).tolist()
    distinct = [flat[a:b] for a, b in zip([0, *ends[:-1]], ends)]
    return [distinct[i] for i in which[np.cumsum(new) - 1].tolist()]


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


@paused()  # tens of thousands of dicts and lists, no cycles
def build_response(
    *,
    dates: np.ndarray,
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
) -> dict[str, Any]:
    """The JSON object for one strategy. Curves start with the start day (1.0 / 0.0); ``days``
    has one row per credited day. When ``benchmark_net`` is None the benchmark had no data: its
    curve is empty, beta/treynor are null and a warning naming ``benchmark`` is added."""
    credited = np.asarray(credited, dtype=np.int64)
    net = np.asarray(net, dtype=np.float64)
    seconds = dates.astype("datetime64[s]").astype(np.int64)
    start_date = _iso_days(dates[[start]])[0]
    when = _iso_days(dates[credited])

    equity, drawdown = equity_and_drawdown(net)
    n_holdings = np.count_nonzero(_held(holdings), axis=-1)
    metrics = compute_metrics(net, turnover, n_holdings, benchmark_net)

    benchmark_curve: list[dict[str, Any]] = []
    warnings = list(warnings)
    if benchmark_net is None:
        warnings.append((None, f"benchmark {benchmark} has no data: beta and treynor are null"))
    else:
        # Days before the benchmark has prices keep it flat, so its curve starts at 1.0 with ours.
        bench_net = np.where(np.isfinite(benchmark_net), benchmark_net, 0.0)
        bench_equity = np.cumprod(1.0 + bench_net)
        benchmark_curve = _points(start_date, 1.0, when, json_list(bench_equity))

    entries = _entries(holdings, tickers)
    equity_list, drawdown_list = json_list(equity), json_list(drawdown)
    columns = zip(
        seconds[credited].tolist(), when, equity_list, drawdown_list,
        json_list(gross), json_list(net), json_list(turnover), json_list(cost), entries,
    )
    days = [
        {"time": t, "date": d, "equity": e, "drawdown": dd, "grossReturn": g, "netReturn": n,
         "turnover": tu, "cost": c, "holdings": h}
        for t, d, e, dd, g, n, tu, c, h in columns
    ]
    metric_values: dict[str, Any] = {"startDate": start_date}
    metric_values["endDate"] = when[-1] if when else None
    metric_values.update(
        {key: int(v) if key == "days" else json_safe(v) for key, v in metrics.items()}
    )
    return {
        "equityCurve": _points(start_date, 1.0, when, equity_list),
        "benchmarkCurve": benchmark_curve,
        "drawdownPoints": _points(start_date, 0.0, when, drawdown_list),
        "days": days,
        "allocations": [{"date": d, "entries": e} for d, e in zip(when, entries)],
        "monthly": _monthly(dates[credited].astype("datetime64[M]"), net),
        "markers": [{"time": int(seconds[i]), "text": text} for i, text in markers],
        "warnings": [
            {
                "time": None if i is None else int(seconds[i]),
                "date": None if i is None else _iso_days(dates[[i]])[0],
                "message": message,
            }
            for i, message in warnings
        ],
        "metrics": metric_values,
    }
