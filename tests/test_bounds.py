"""Value intervals (gpubt.ir.bounds): sound on every catalogue expansion, and arithmetic they
prove finite loses its check in the Polars backend while overflow still comes back missing."""

from __future__ import annotations

import math

import numpy as np
import pytest

from gpubt.backends.numba_cpu import NumbaBackend
from gpubt.backends.polars_cpu import PolarsBackend
from gpubt.indicators import expand, ticker_source
from gpubt.ir.bounds import UNBOUNDED, Bounds, leaf_interval
from gpubt.ir.nodes import Builder, topological
from gpubt.schema.catalogue import METRICS
from tests.conftest import make_market
from tests.test_indicators_ir import synthetic


def _bounds(order, market) -> Bounds:
    leaves = {}
    for node in order:
        if node.op == "price":
            ticker, field = node.params
            leaves[node] = leaf_interval(getattr(market, field)[:, market.column(ticker)])
    return Bounds(order, leaves, market.n_days)


@pytest.mark.parametrize("ticker", ["SPY", "UVXY", "QQQ/SPY"])
def test_every_node_of_every_metric_stays_inside_its_interval(ticker: str) -> None:
    """Each float node's values, computed by the Numba backend, lie inside the node's interval,
    for every catalogue metric with short, usual and long windows."""
    market = synthetic()
    b = Builder()
    src = ticker_source(b, ticker)
    outputs = [expand(b, m.name, src, w) for m in METRICS for w in (2, 14, 200)]
    order = [n for n in topological(outputs) if n.kind == "f"]
    bounds = _bounds(order, market)
    values = NumbaBackend().evaluate(order, market, {})
    bounded = 0
    for node in order:
        lo, hi = bounds.intervals.get(node, UNBOUNDED)
        if (lo, hi) == UNBOUNDED:
            continue
        bounded += 1
        got = values[node]
        got = got[np.isfinite(got)]
        slack = 1e-9 * max(abs(lo), abs(hi), 1.0)
        assert got.size == 0 or (got.min() >= lo - slack and got.max() <= hi + slack), (node, lo, hi)
    assert bounded > len(order) // 3  # (a ratio has no volume: the volume metrics are unbounded)


def test_which_arithmetic_is_proved_finite() -> None:
    market = make_market({"A": [1, 2, 4, 3, 5], "B": [None, 2, 2, 1, 2], "Z": [1, 0, 2, 0, 3],
                          "H": [1e200, 3e200, 2e200, 1e200, 5e200]})
    b = Builder()
    a, bb, z, h = (b.price(t) for t in "ABZH")
    nodes = {
        "a-b": b.node("sub", (), (a, bb)),
        "a/b": b.node("div", (), (a, bb)),  # B's prices are away from zero
        "a/z": b.node("div", (), (a, z)),  # Z has zeros
        "a/(a-b)": b.node("div", (), (a, b.node("sub", (), (a, bb)))),  # a − b may be 0
        "h*h": b.node("mul", (), (h, h)),  # 1e400: overflows
        "h*a": b.node("mul", (), (h, a)),
        "h/3": b.node("div", (), (h, b.const(3.0))),
        "mean(a)*100": b.node("mul", (), (b.node("rolling_mean", (3,), (a,)), b.const(100.0))),
        "exp(a)+1": b.node("add", (), (b.node("exp", (), (a,)), b.const(1.0))),  # exp: unbounded
        "where": b.node("add", (), (b.node("where", (), (b.node("gt", (), (a, bb)), a, bb)), a)),
    }
    bounds = _bounds(topological(list(nodes.values())), market)
    proved = {name for name, node in nodes.items() if bounds.finite(node)}
    assert proved == {"a-b", "a/b", "h*a", "h/3", "mean(a)*100", "where"}
    assert bounds.intervals[nodes["a-b"]] == (1.0 - 2.0, 5.0 - 1.0)
    assert bounds.intervals[nodes["a/b"]] == (1.0 / 2.0, 5.0 / 1.0)


def test_polars_drops_only_the_checks_it_may_and_overflow_stays_missing() -> None:
    market = make_market({"H": [1e200, 3e200, 2e200, 1e200, 5e200], "A": [1, 2, 4, 3, 5]})
    b = Builder()
    h, a = b.price("H"), b.price("A")
    square, scaled = b.node("mul", (), (h, h)), b.node("mul", (), (h, a))
    backend = PolarsBackend()
    got = backend.evaluate([square, scaled], market, {})
    assert np.isnan(got[square]).all()  # 1e400: not finite, so missing
    assert np.array_equal(got[scaled], market.close[:, 0] * market.close[:, 1])
    plan = backend.query([scaled], market, {})[0].explain()
    assert "is_finite" not in plan
    assert "is_finite" in backend.query([square], market, {})[0].explain()
    assert math.isinf(_bounds([h, square], market).intervals[square][1])
