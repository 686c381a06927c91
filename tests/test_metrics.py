"""Metrics (spec §7) against their textbook formulas evaluated with plain Python."""

from __future__ import annotations

import math
import statistics

import numpy as np
import pytest

from gpubt.metrics import KEYS, compute_metrics

NET = [
    0.012, -0.004, 0.007, 0.0, -0.015, 0.021, 0.003, -0.008, 0.010, -0.002,
    0.005, -0.011, 0.014, 0.006, -0.003, -0.020, 0.009, 0.001, 0.004, -0.007,
    0.016, -0.001, 0.002, -0.009, 0.011, 0.008, -0.006, 0.013, -0.012, 0.003,
]  # fmt: skip
BENCH = [
    0.010, -0.002, 0.004, 0.001, -0.012, float("nan"), 0.002, -0.005, 0.008, -0.001,
    0.003, -0.009, 0.010, 0.004, -0.004, -0.015, 0.006, 0.000, 0.003, -0.006,
    0.012, -0.002, 0.001, -0.007, 0.009, 0.006, -0.004, 0.010, -0.010, 0.002,
]  # fmt: skip
TURNOVER = [0.5 if i % 3 == 0 else 0.0 for i in range(30)]
HOLDINGS = [float(1 + i % 4) for i in range(30)]


def equity_and_drawdown(net: list[float]) -> tuple[list[float], list[float]]:
    equity, drawdown, value, peak = [], [], 1.0, 1.0
    for r in net:
        value *= 1.0 + r
        peak = max(peak, value)
        equity.append(value)
        drawdown.append(value / peak - 1.0)
    return equity, drawdown


def metrics_of(net, bench=None, turnover=None, holdings=None) -> dict[str, np.ndarray]:
    n = len(net)
    return compute_metrics(
        np.array(net, dtype=float),
        np.array(turnover if turnover is not None else [0.0] * n),
        np.array(holdings if holdings is not None else [1.0] * n),
        None if bench is None else np.array(bench, dtype=float),
    )


def test_textbook_values() -> None:
    m = metrics_of(NET, BENCH, TURNOVER, HOLDINGS)
    assert set(m) == set(KEYS)
    assert all(np.shape(v) == () for v in m.values())

    equity, drawdown = equity_and_drawdown(NET)
    n = len(NET)
    years = n / 252
    end = equity[-1]
    cagr = end ** (1 / years) - 1
    max_dd = min(min(drawdown), 0.0)
    mean, stdev = statistics.mean(NET), statistics.stdev(NET)
    downside = math.sqrt(sum(min(r, 0.0) ** 2 for r in NET) / n)
    pairs = [(r, b) for r, b in zip(NET, BENCH) if math.isfinite(b)]
    xs, bs = [p[0] for p in pairs], [p[1] for p in pairs]
    beta = statistics.covariance(xs, bs) / statistics.variance(bs)

    expected = {
        "days": 30,
        "years": years,
        "totalReturn": end - 1,
        "cagr": cagr,
        "vol": stdev * math.sqrt(252),
        "maxDrawdown": max_dd,
        "calmar": cagr / abs(max_dd),
        "sharpe": mean / stdev * math.sqrt(252),
        "sortino": mean * 252 / (downside * math.sqrt(252)),
        "beta": beta,
        "treynor": cagr / beta,
        "winRate": sum(r > 0 for r in NET) / n,
        "bestDay": max(NET),
        "worstDay": min(NET),
        "avgTurnover": sum(TURNOVER) / n,
        "avgHoldings": sum(HOLDINGS) / n,
    }
    for key, value in expected.items():
        assert float(m[key]) == pytest.approx(value, rel=1e-11), key
    assert m["days"].dtype.kind == "i"


def test_max_drawdown_counts_the_start_point() -> None:
    assert float(metrics_of([0.01, 0.02])["maxDrawdown"]) == 0.0
    # A first-day loss is a drawdown from the starting 1.0.
    assert float(metrics_of([-0.05, 0.01])["maxDrawdown"]) == pytest.approx(0.95 - 1)


def test_single_day_leaves_spread_metrics_undefined() -> None:
    m = metrics_of([0.01], [0.02])
    for key in ("vol", "sharpe", "beta", "treynor"):
        assert math.isnan(m[key]), key
    assert float(m["totalReturn"]) == pytest.approx(0.01)
    assert float(m["cagr"]) == pytest.approx(1.01**252 - 1)
    assert float(m["winRate"]) == 1.0


def test_no_days() -> None:
    m = metrics_of([], [])
    assert int(m["days"]) == 0
    assert float(m["years"]) == 0.0
    assert all(math.isnan(m[key]) for key in KEYS if key not in ("days", "years"))


def test_zero_variance_and_missing_benchmark() -> None:
    m = metrics_of([0.001] * 30, [0.002] * 30)
    assert float(m["vol"]) == 0.0
    for key in ("sharpe", "sortino", "calmar", "beta", "treynor"):
        assert math.isnan(m[key]), key  # zero std, no downside, no drawdown, constant benchmark
    m = metrics_of(NET)
    assert math.isnan(m["beta"]) and math.isnan(m["treynor"])
    assert math.isfinite(m["sharpe"])


def test_batch_equals_rows() -> None:
    rng = np.random.default_rng(3)
    net = rng.normal(0.0005, 0.01, (7, 30))
    net[2] = 0.001  # constant row: NaN sharpe inside a batch
    bench = rng.normal(0.0, 0.01, (7, 30))
    bench[:, 4] = np.nan
    bench[5] = np.nan  # a row whose benchmark never trades
    turnover = rng.random((7, 30))
    holdings = rng.integers(0, 5, (7, 30)).astype(float)

    for b in (bench[0], bench):
        batch = compute_metrics(net, turnover, holdings, b)
        for s in range(7):
            single = compute_metrics(
                net[s], turnover[s], holdings[s], b if b.ndim == 1 else b[s]
            )
            for key in KEYS:
                assert batch[key].shape == (7,)
                np.testing.assert_allclose(batch[key][s], single[key], rtol=1e-12, err_msg=key)
    assert math.isnan(batch["sharpe"][2]) and math.isnan(batch["treynor"][2])
    assert batch["beta"][2] == 0.0
    assert math.isnan(batch["beta"][5])
