"""The backtest response of spec §7, with V1's field names so the existing front end works."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from gpubt.metrics import compute_metrics
from gpubt.sim import equity_and_drawdown

# Weights smaller than this are float dust from combining children, not positions.
_MIN_WEIGHT = 1e-12


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


def _held(weights: np.ndarray) -> np.ndarray:
    """Positions worth reporting (and counting in avgHoldings)."""
    return np.abs(weights) >= _MIN_WEIGHT


def _entries(weights: np.ndarray, tickers: Sequence[str]) -> list[dict[str, Any]]:
    """Held tickers by weight descending, then ticker, so equal runs give identical output."""
    held = sorted((-float(weights[j]), tickers[j]) for j in np.flatnonzero(_held(weights)))
    return [{"ticker": ticker, "weight": json_safe(-negated)} for negated, ticker in held]


def _monthly(months: np.ndarray, net: np.ndarray) -> list[dict[str, Any]]:
    """Π(1 + net) − 1 over each calendar month of the (sorted) credited days."""
    if not months.size:
        return []
    starts = np.flatnonzero(np.r_[True, months[1:] != months[:-1]])
    values = np.multiply.reduceat(1.0 + net, starts) - 1.0
    out = []
    for month, value in zip(months[starts], values, strict=True):
        index = int(month.astype(np.int64))  # months since 1970-01
        out.append({"year": 1970 + index // 12, "month": index % 12 + 1, "value": json_safe(value)})
    return out


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
    day_str = np.datetime_as_string(dates.astype("datetime64[D]"), unit="D")
    seconds = dates.astype("datetime64[s]").astype(np.int64)
    start_date = str(day_str[start])
    when = day_str[credited]

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
        benchmark_curve = [{"date": start_date, "equity": 1.0}] + [
            {"date": d, "equity": e}
            for d, e in zip(when.tolist(), json_list(bench_equity), strict=True)
        ]

    # Allocations repeat from day to day: build each distinct row's entries once.
    distinct, which = np.unique(holdings, axis=0, return_inverse=True)
    distinct_entries = [_entries(row, tickers) for row in distinct]
    entries = [distinct_entries[i] for i in which.ravel().tolist()]
    columns = zip(
        seconds[credited].tolist(), when.tolist(), json_list(equity), json_list(drawdown),
        json_list(gross), json_list(net), json_list(turnover), json_list(cost), entries,
    )
    days = [
        {"time": t, "date": d, "equity": e, "drawdown": dd, "grossReturn": g, "netReturn": n,
         "turnover": tu, "cost": c, "holdings": h}
        for t, d, e, dd, g, n, tu, c, h in columns
    ]
    metric_values: dict[str, Any] = {"startDate": start_date}
    metric_values["endDate"] = str(when[-1]) if credited.size else None
    metric_values.update(
        {key: int(v) if key == "days" else json_safe(v) for key, v in metrics.items()}
    )
    return {
        "equityCurve": [{"date": start_date, "equity": 1.0}]
        + [{"date": d["date"], "equity": d["equity"]} for d in days],
        "benchmarkCurve": benchmark_curve,
        "drawdownPoints": [{"date": start_date, "equity": 0.0}]
        + [{"date": d["date"], "equity": d["drawdown"]} for d in days],
        "days": days,
        "allocations": [{"date": d["date"], "entries": d["holdings"]} for d in days],
        "monthly": _monthly(dates[credited].astype("datetime64[M]"), net),
        "markers": [{"time": int(seconds[i]), "text": text} for i, text in markers],
        "warnings": [
            {
                "time": None if i is None else int(seconds[i]),
                "date": None if i is None else str(day_str[i]),
                "message": message,
            }
            for i, message in warnings
        ],
        "metrics": metric_values,
    }
