"""The §7 response: V1 field names, first points, ordering and JSON safety."""

from __future__ import annotations

import gc
import json
from datetime import datetime, timezone

import numpy as np
import orjson
import pytest

from gpubt.metrics import KEYS
from gpubt.schema.response import BacktestResponse, json_safe

# Monday 2024-01-29 .. Friday 2024-02-02: the credited days cross a month boundary.
DATES = np.array(
    ["2024-01-29", "2024-01-30", "2024-01-31", "2024-02-01", "2024-02-02"], dtype="datetime64[D]"
)
TICKERS = ("C", "A", "B", "D", "E")
HOLDINGS = np.array(
    [
        [0.3, 0.3, 0.4, 1e-13, 0.0],  # ties by ticker; dust and zero omitted
        [0.0, 1.0, 0.0, 0.0, 0.0],
        [0.0, 0.0, 0.0, 0.0, 0.0],  # all cash
        [0.5, 0.0, 0.0, 0.0, 0.25],
    ]
)
NET = np.array([0.01, -0.02, 0.0, 0.03])
GROSS = np.array([0.011, -0.019, 0.0, 0.0305])
TURNOVER = np.array([0.5, 1.0, 0.5, 0.375])
COST = GROSS - NET
BENCH = np.array([0.005, np.nan, 0.01, -0.01])


def respond(**overrides):
    args = dict(
        dates=DATES,
        start=0,
        credited=np.array([1, 2, 3, 4]),
        tickers=TICKERS,
        holdings=HOLDINGS,
        gross=GROSS,
        net=NET,
        turnover=TURNOVER,
        cost=COST,
        benchmark="SPY",
        benchmark_net=BENCH,
        markers=[(2, "altExit: exit")],
        warnings=[(3, "C has no price"), (None, "general")],
    )
    args.update(overrides)
    args["iso_dates"] = [str(d) for d in args["dates"].astype("datetime64[D]")]
    response = BacktestResponse(**args)
    as_dict = response.to_dict()
    assert response.to_json() == orjson.dumps(as_dict)  # the wire format, written from the columns
    return as_dict


def unix(day: str) -> int:
    return int(datetime.strptime(day, "%Y-%m-%d").replace(tzinfo=timezone.utc).timestamp())


def test_field_names() -> None:
    r = respond()
    assert list(r) == [
        "equityCurve", "benchmarkCurve", "drawdownPoints", "days", "allocations", "monthly",
        "markers", "warnings", "metrics",
    ]  # fmt: skip
    assert set(r["days"][0]) == {
        "time", "date", "equity", "drawdown", "grossReturn", "netReturn", "turnover", "cost",
        "holdings",
    }  # fmt: skip
    assert set(r["equityCurve"][0]) == {"date", "equity"}
    assert set(r["benchmarkCurve"][0]) == {"date", "equity"}
    assert set(r["drawdownPoints"][0]) == {"date", "equity"}
    assert set(r["allocations"][0]) == {"date", "entries"}
    assert set(r["monthly"][0]) == {"year", "month", "value"}
    assert set(r["markers"][0]) == {"time", "text"}
    assert set(r["warnings"][0]) == {"time", "date", "message"}
    assert list(r["metrics"]) == ["startDate", "endDate", *KEYS]


def test_curves_start_on_the_start_day() -> None:
    r = respond()
    assert r["equityCurve"][0] == {"date": "2024-01-29", "equity": 1.0}
    assert r["benchmarkCurve"][0] == {"date": "2024-01-29", "equity": 1.0}
    assert r["drawdownPoints"][0] == {"date": "2024-01-29", "equity": 0.0}
    assert len(r["equityCurve"]) == len(r["days"]) + 1 == 5

    e1 = 1.01
    e2 = 1.01 * 0.98
    e3 = e2 * 1.0
    e4 = e3 * 1.03
    assert [p["equity"] for p in r["equityCurve"][1:]] == pytest.approx([e1, e2, e3, e4])
    assert [p["equity"] for p in r["drawdownPoints"][1:]] == pytest.approx(
        [0.0, e2 / e1 - 1, e3 / e1 - 1, 0.0]  # e4 = 1.019494 is a new peak
    )
    # The benchmark stays flat on the day it has no return.
    assert [p["equity"] for p in r["benchmarkCurve"][1:]] == pytest.approx(
        [1.005, 1.005, 1.005 * 1.01, 1.005 * 1.01 * 0.99]
    )


def test_days_rows() -> None:
    day = respond()["days"][0]
    assert day["time"] == unix("2024-01-30")
    assert day["date"] == "2024-01-30"
    assert day["equity"] == pytest.approx(1.01)
    assert day["drawdown"] == 0.0
    assert day["grossReturn"] == 0.011
    assert day["netReturn"] == 0.01
    assert day["turnover"] == 0.5
    assert day["cost"] == pytest.approx(0.001)


def test_holdings_sorted_and_zero_weights_omitted() -> None:
    r = respond()
    assert r["days"][0]["holdings"] == [
        {"ticker": "B", "weight": 0.4},
        {"ticker": "A", "weight": 0.3},
        {"ticker": "C", "weight": 0.3},
    ]
    assert r["days"][2]["holdings"] == []
    assert r["days"][3]["holdings"] == [
        {"ticker": "C", "weight": 0.5},
        {"ticker": "E", "weight": 0.25},
    ]
    assert [a["entries"] for a in r["allocations"]] == [d["holdings"] for d in r["days"]]
    assert [a["date"] for a in r["allocations"]] == [d["date"] for d in r["days"]]
    assert r["metrics"]["avgHoldings"] == pytest.approx((3 + 1 + 0 + 2) / 4)


def test_holdings_equal_a_sort_of_each_day() -> None:
    """Rows repeat next to each other and far apart, with ties, dust, ±0, shorts, inf and NaN:
    every day's entries are still that day's held tickers by weight descending, then ticker."""
    rng = np.random.default_rng(7)
    tickers = ("QQQ", "BIL", "TLT", "SPY", "GLD", "EEM")
    values = np.array([0.0, -0.0, 1e-13, 0.25, 0.5, -0.25, np.inf, np.nan])
    pool = rng.choice(values, size=(12, len(tickers)))
    holdings = pool[rng.integers(0, len(pool), size=300).repeat(2)[:300]]
    days = len(holdings)
    r = respond(
        dates=np.datetime64("2020-01-01") + np.arange(days + 1),
        credited=np.arange(1, days + 1),
        tickers=tickers,
        holdings=holdings,
        **{k: np.zeros(days) for k in ("gross", "net", "turnover", "cost", "benchmark_net")},
        markers=[],
        warnings=[],
    )
    for row, day, allocation in zip(holdings, r["days"], r["allocations"], strict=True):
        held = sorted((-w, t) for w, t in zip(row.tolist(), tickers) if abs(w) >= 1e-12)
        expected = [{"ticker": t, "weight": json_safe(-w)} for w, t in held]
        assert day["holdings"] == expected and allocation["entries"] == expected


@pytest.mark.parametrize("enabled", [True, False])
def test_collector_state_is_restored(enabled: bool) -> None:
    """Building the response pauses the garbage collector and leaves it as it found it."""
    was = gc.isenabled()
    try:
        (gc.enable if enabled else gc.disable)()
        respond()
        assert gc.isenabled() == enabled
    finally:
        (gc.enable if was else gc.disable)()


def test_monthly_groups_calendar_months() -> None:
    assert respond()["monthly"] == [
        {"year": 2024, "month": 1, "value": pytest.approx(1.01 * 0.98 - 1)},
        {"year": 2024, "month": 2, "value": pytest.approx(1.0 * 1.03 - 1)},
    ]


def test_markers_warnings_and_metrics_dates() -> None:
    r = respond()
    assert r["markers"] == [{"time": unix("2024-01-31"), "text": "altExit: exit"}]
    assert r["warnings"] == [
        {"time": unix("2024-02-01"), "date": "2024-02-01", "message": "C has no price"},
        {"time": None, "date": None, "message": "general"},
    ]
    assert r["metrics"]["startDate"] == "2024-01-29"
    assert r["metrics"]["endDate"] == "2024-02-02"
    assert r["metrics"]["days"] == 4 and isinstance(r["metrics"]["days"], int)
    assert r["metrics"]["beta"] is not None


def test_missing_benchmark() -> None:
    r = respond(benchmark_net=None)
    assert r["benchmarkCurve"] == []
    assert r["metrics"]["beta"] is None and r["metrics"]["treynor"] is None
    assert any("SPY" in w["message"] for w in r["warnings"])


def test_json_without_nan() -> None:
    r = respond(gross=np.array([np.nan, 0.0, np.inf, 0.0]), benchmark_net=np.full(4, np.nan))
    text = json.dumps(r, allow_nan=False)
    assert json.loads(text)["days"][0]["grossReturn"] is None
    assert r["metrics"]["beta"] is None
    assert json_safe(float("nan")) is None and json_safe(float("-inf")) is None
    assert json_safe(np.float64(0.5)) == 0.5


def test_no_credited_days() -> None:
    r = respond(
        start=4,
        credited=np.array([], dtype=int),
        holdings=np.zeros((0, 5)),
        gross=np.zeros(0),
        net=np.zeros(0),
        turnover=np.zeros(0),
        cost=np.zeros(0),
        benchmark_net=np.zeros(0),
        markers=[],
        warnings=[],
    )
    json.dumps(r, allow_nan=False)
    assert r["equityCurve"] == [{"date": "2024-02-02", "equity": 1.0}]
    assert r["drawdownPoints"] == [{"date": "2024-02-02", "equity": 0.0}]
    assert r["days"] == [] and r["allocations"] == [] and r["monthly"] == []
    assert r["metrics"]["startDate"] == "2024-02-02"
    assert r["metrics"]["endDate"] is None
    assert r["metrics"]["days"] == 0
    assert all(r["metrics"][k] is None for k in KEYS if k not in ("days", "years"))
