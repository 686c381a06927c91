"""The catalogue as IR expansions (gpubt.indicators) run on the Polars backend equals the oracle
(gpubt.reference.indicators / formula_eval); interning removes duplicates; every primitive of
`PRIMITIVES` does what its description says on a tiny hand-computed case.

Equality: the same NaN mask, and values within 1e-9 relative (1e-12 absolute near 0), for every
catalogue metric × windows {1, 2, 5, 14, 30, 200} × tickers of the synthetic market (a plain
ticker, one that starts inside the range, a reverse-split volatility fund, a ratio) and of the
real ETF data (a T-bill fund with flat stretches, a fund whose prices end before the data does,
a ratio). Markets are cut to ~1,800 days so the plain-loop reference stays fast; each ticker is
evaluated in ONE backend call for all 288 (metric, window) series.
"""

from __future__ import annotations

import math
from functools import cache
from pathlib import Path

import numpy as np
import pytest

from gpubt.backends.polars_cpu import PolarsBackend
from gpubt.data.market import Market
from gpubt.data.synthetic import synthetic_market
from gpubt.errors import GpubtError
from gpubt.indicators import EXPANSIONS, _expand, branch_source, expand, expand_formula, ticker_source
from gpubt.ir.lines import lines_node
from gpubt.ir.nodes import PRIMITIVES, Builder, Node, topological
from gpubt.reference.formula_eval import evaluate_formula
from gpubt.reference.indicators import indicator
from gpubt.schema.catalogue import METRICS, resolve_metric
from gpubt.schema.formula import parse_formula
from tests.conftest import make_market

NAN = math.nan
WINDOWS = (1, 2, 5, 14, 30, 200)
REL, ABS = 1e-9, 1e-12
REAL_DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "etf"

SYNTHETIC_TICKERS = ("SPY", "TQQQ", "UVXY", "QQQ/SPY")
REAL_TICKERS = ("BIL", "UVXY", "UVXY/SPY")


def window_of_days(market: Market, start: int, stop: int | None = None) -> Market:
    """The market's days start … stop (every ticker kept; prices outside simply drop)."""
    rows = slice(start, stop)
    return Market(
        market.dates[rows],
        market.tickers,
        open=market.open[rows],
        high=market.high[rows],
        low=market.low[rows],
        close=market.close[rows],
        volume=market.volume[rows],
        observed=market.observed[rows],
        source=market.source,
    )


@cache
def synthetic() -> Market:
    # 2009-12 … 2017-02: SPY throughout, TQQQ from day 138, UVXY (prices ~1e5 → 1e2) from day 566
    return window_of_days(synthetic_market(), 2500, 4300)


@cache
def real() -> Market | None:
    if not REAL_DATA.is_dir():
        return None
    from gpubt.data.loaders import load_market

    market = load_market(REAL_DATA, tickers=["BIL", "UVXY", "SPY"])
    # the last ~1,800 days: BIL has long flat stretches, UVXY's prices end ~700 days early
    return window_of_days(market, market.n_days - 1800)


def assert_equal_series(got: np.ndarray, ref: np.ndarray, what: str) -> None:
    assert got.shape == ref.shape, what
    gap = np.flatnonzero(np.isnan(got) != np.isnan(ref))
    assert gap.size == 0, f"{what}: NaN masks differ at {gap[:8].tolist()} (first valid: " \
        f"got {first(got)}, reference {first(ref)})"
    ok = ~np.isnan(ref)
    diff = np.abs(got[ok] - ref[ok])
    bad = diff > np.maximum(REL * np.abs(ref[ok]), ABS)
    if bad.any():
        i = np.flatnonzero(ok)[np.flatnonzero(bad)[0]]
        pytest.fail(f"{what}: day {i}: got {got[i]!r}, reference {ref[i]!r} ({bad.sum()} days differ)")


def first(x: np.ndarray) -> int:
    idx = np.flatnonzero(~np.isnan(x))
    return int(idx[0]) if idx.size else x.size


# --------------------------------------------------------------------------------------------
# the whole catalogue against the reference


@cache
def compiled(source: str, ticker: str) -> dict[tuple[str, int], np.ndarray]:
    """Every (metric, window) of one ticker, from ONE evaluate call."""
    market = synthetic() if source == "synthetic" else real()
    assert market is not None
    b = Builder()
    src = ticker_source(b, ticker)
    keys = [(m.name, w) for m in METRICS for w in WINDOWS]
    nodes = [expand(b, name, src, w) for name, w in keys]
    out = PolarsBackend().evaluate(nodes, market, {})
    return {key: out[node] for key, node in zip(keys, nodes)}


CASES = [
    pytest.param(source, ticker, m.name, w, id=f"{source}-{ticker}-{m.name}-{w}")
    for source, tickers in (("synthetic", SYNTHETIC_TICKERS), ("real", REAL_TICKERS))
    for ticker in tickers
    for m in METRICS
    for w in WINDOWS
]


@pytest.mark.parametrize(("source", "ticker", "metric", "window"), CASES)
def test_metric_equals_reference(source: str, ticker: str, metric: str, window: int) -> None:
    market = synthetic() if source == "synthetic" else real()
    if market is None:
        pytest.skip(f"no real data at {REAL_DATA}")
    ref = indicator(metric, market.bars(ticker), window)
    got = compiled(source, ticker)[(metric, window)]
    assert_equal_series(got, ref, f"{metric}({window}) of {ticker}")


def test_warm_up_is_the_catalogue_first_index() -> None:
    """A ticker starting inside the range: each metric's first value is its lookback after the
    ticker's first price (the `valid_from` wrapper), for every window."""
    market = synthetic()
    start = market.first_index("TQQQ")
    assert 0 < start < 200
    for (metric, window), values in compiled("synthetic", "TQQQ").items():
        lookback = resolve_metric(metric).lookback(window)  # type: ignore[union-attr]
        assert first(values) == start + lookback, (metric, window)


def test_every_catalogue_metric_has_one_expansion() -> None:
    assert set(EXPANSIONS) == {m.name for m in METRICS}
    b = Builder()
    src = ticker_source(b, "SPY")
    for m in METRICS:
        for alias in m.aliases:
            assert expand(b, alias, src, 14) is expand(b, m.name, src, 14)


def test_expansions_use_primitives_only_and_end_in_the_warm_up() -> None:
    b = Builder()
    src = ticker_source(b, "SPY")
    for m in METRICS:
        node = expand(b, m.name, src, 10)
        assert node.op == "valid_from" and node.params == (m.lookback(10),)
        assert node.inputs[1] is src.close
        assert all(n.op in PRIMITIVES for n in topological([node]))


def test_unknown_metric_is_an_error() -> None:
    b = Builder()
    with pytest.raises(GpubtError, match="unknown metric 'Bogus'"):
        expand(b, "Bogus", ticker_source(b, "SPY"), 14)


def test_ratio_source_has_no_volume_and_volume_metrics_are_missing() -> None:
    b = Builder()
    src = ticker_source(b, "QQQ/SPY")
    assert src.close.op == "ratio" and src.volume.op == "const" and math.isnan(src.volume.params[0])
    out = compiled("synthetic", "QQQ/SPY")
    for metric in ("Money Flow Index", "OBV Rate of Change", "VWAP Ratio"):
        assert np.isnan(out[(metric, 14)]).all()


def test_branch_source_reads_the_branch_equity() -> None:
    """All four prices of a branch are its equity series (no volume), as the reference does."""
    market = synthetic()
    b = Builder()
    src = branch_source(b, "branch0")
    assert src.open is src.high is src.low is src.close and src.close.op == "branch"
    equity = np.full(market.n_days, NAN)
    equity[40:] = np.cumprod(1.0 + 0.01 * np.sin(np.arange(market.n_days - 40)))
    metrics = ("Relative Strength Index", "Max Drawdown", "ATR", "Stochastic %K", "Money Flow Index")
    nodes = {m: expand(b, m, src, 10) for m in metrics}
    out = PolarsBackend().evaluate(list(nodes.values()), market, {"branch0": equity})
    from gpubt.data.market import Bars

    bars = Bars(equity, equity, equity, equity, np.full(market.n_days, NAN))
    for m, node in nodes.items():
        assert_equal_series(out[node], indicator(m, bars, 10), m)


# --------------------------------------------------------------------------------------------
# deduplication


def test_expanding_twice_gives_the_same_node() -> None:
    b = Builder()
    first_rsi = expand(b, "RSI", ticker_source(b, "SPY"), 14)
    size = len(b)
    again = expand(b, "Relative Strength Index", ticker_source(b, "SPY"), 14)
    assert again is first_rsi
    assert len(b) == size


def _structure(b: Builder) -> list[tuple]:
    """A builder's nodes in the order made, inputs as positions."""
    made = b.nodes()
    position = {node: k for k, node in enumerate(made)}
    return [(n.op, n.params, tuple(position[i] for i in n.inputs)) for n in made]


@pytest.mark.parametrize("kind", ["SPY", "SPY/TLT", "branch"])
def test_a_replayed_expansion_makes_what_the_operator_layer_makes(kind: str) -> None:
    """`expand` replays a recording of each (metric, window): into a builder that already holds
    other indicators of the same source (so some nodes exist, and a branch source's four prices
    are one node), it makes the same nodes in the same order, returns the same node and counts
    the same requests as the expansion written with the operator layer."""
    replayed, direct = Builder(), Builder()
    mine, theirs = (branch_source(b, "k") if kind == "branch" else ticker_source(b, kind) for b in (replayed, direct))
    for metric in METRICS:
        for window in (1, 2, 7, 14, 50):
            got = expand(replayed, metric.name, mine, window)
            want = _expand(direct, metric.name, theirs, window)
            assert replayed.nodes().index(got) == direct.nodes().index(want), (metric.name, window)
    assert _structure(replayed) == _structure(direct)
    assert replayed.requests == direct.requests


def test_hundred_identical_conditions_hold_one_rsi() -> None:
    b = Builder()
    conditions = [
        b.node("gt", (), (expand(b, "RSI", ticker_source(b, "SPY"), 14), b.const(70.0)))
        for _ in range(100)
    ]
    assert all(c is conditions[0] for c in conditions)
    graph = topological(conditions)
    assert sum(n.op == "valid_from" and n.params == (14,) for n in graph) == 1
    assert sum(n.op == "wilder_mean" for n in graph) == 2  # average gain and average loss
    assert b.duplicates_removed > 99 * 10


def test_shared_sub_expressions_are_built_once() -> None:
    """SMA(p) is shared by SMA, Price vs SMA, Bollinger and Linear Reg Value of the same p."""
    b = Builder()
    src = ticker_source(b, "SPY")
    outs = [expand(b, m, src, 20) for m in ("SMA", "Price vs SMA", "Bollinger %B", "Linear Reg Value")]
    graph = topological(outs)
    assert sum(n.op == "rolling_mean" and n.params == (20,) for n in graph) == 1


# --------------------------------------------------------------------------------------------
# custom formulas


FORMULAS = (
    "SMA(50) / SMA(200) - 1",
    "mean(close, window) - shift(close, 2)",
    "highest(high, 10) / lowest(low, 10)",
    "RSI(window) ^ 2",
    "std(diff(log(close), 1), window) * sqrt(252)",
    "max(abs(close - open), sum(volume, 3) / 1e9) + min(exp(-1), window)",
    "-(close / 0) + 1",
)


@pytest.mark.parametrize("text", FORMULAS)
@pytest.mark.parametrize("ticker", ["SPY", "TQQQ", "QQQ/SPY"])
def test_formula_equals_reference(text: str, ticker: str) -> None:
    market = synthetic()
    formula = parse_formula(text, name="f")
    b = Builder()
    window = 14
    node = expand_formula(b, formula, ticker_source(b, ticker), window)
    assert all(n.op in PRIMITIVES for n in topological([node]))
    got = PolarsBackend().evaluate([node], market, {})[node]
    ref = evaluate_formula(formula, market.bars(ticker), window, indicator)
    assert_equal_series(got, ref, f"{text} of {ticker}")


def test_formula_metric_call_is_the_catalogue_node() -> None:
    b = Builder()
    src = ticker_source(b, "SPY")
    node = expand_formula(b, parse_formula("RSI(window)", name="f"), src, 14)
    assert node is expand(b, "RSI", src, 14)


# --------------------------------------------------------------------------------------------
# every primitive on a tiny hand-computed case (dates: Mon 2021-01-04 … Fri 2021-01-08)


def _tiny() -> Market:
    return make_market({"A": [1, 2, 4, 3, 5], "B": [None, 2, 2, 1, 2]})


def _laguerre_day0(price: float, gamma: float = 0.8) -> float:
    l0 = (1 - gamma) * price
    l1 = -gamma * l0
    l2 = -gamma * l1
    l3 = -gamma * l2
    cu = (l0 - l1) + (l2 - l3)  # l0 ≥ l1, l1 < l2, l2 ≥ l3
    cd = l2 - l1
    return 100.0 * cu / (cu + cd)


def _primitive_cases() -> list[tuple[str, Node, list[float]]]:
    b = Builder()
    x, y = b.price("A"), b.price("B")  # x = 1 2 4 3 5, y = – 2 2 1 2
    k = b.const
    n = b.node
    gappy = n("where", (), (n("lt", (), (x, k(3.5))), x, k(NAN)))  # 1 2 – 3 –
    T, F, U = 1.0, 0.0, -1.0  # condition encoding at the boundary (U = null)
    return [
        ("price", x, [1, 2, 4, 3, 5]),
        ("const", k(2.5), [2.5] * 5),
        ("branch", n("branch", ("k",)), [NAN, 1.0, 1.5, NAN, 2.0]),
        ("date_between", n("date_between", (1, 5, 1, 7)), [F, T, T, T, F]),
        ("date_between", n("date_between", (12, 31, 1, 5)), [T, T, F, F, F]),  # wraps
        ("add", n("add", (), (x, y)), [NAN, 4, 6, 4, 7]),
        ("sub", n("sub", (), (x, y)), [NAN, 0, 2, 2, 3]),
        ("mul", n("mul", (), (x, y)), [NAN, 4, 8, 3, 10]),
        ("div", n("div", (), (x, y)), [NAN, 1, 2, 3, 2.5]),
        ("div", n("div", (), (x, k(0.0))), [NAN] * 5),
        ("pow", n("pow", (), (x, k(2.0))), [1, 4, 16, 9, 25]),
        ("pow", n("pow", (), (n("neg", (), (x,)), k(0.5))), [NAN] * 5),
        ("min2", n("min2", (), (x, y)), [NAN, 2, 2, 1, 2]),
        ("max2", n("max2", (), (x, y)), [NAN, 2, 4, 3, 5]),
        ("neg", n("neg", (), (y,)), [NAN, -2, -2, -1, -2]),
        ("abs", n("abs", (), (n("sub", (), (y, k(1.5))),)), [NAN, 0.5, 0.5, 0.5, 0.5]),
        ("log", n("log", (), (n("sub", (), (x, k(1.0))),)), [NAN, 0.0, math.log(3), math.log(2), math.log(4)]),
        ("exp", n("exp", (), (y,)), [NAN, math.exp(2), math.exp(2), math.exp(1), math.exp(2)]),
        ("sqrt", n("sqrt", (), (n("sub", (), (x, k(2.0))),)), [NAN, 0, math.sqrt(2), 1, math.sqrt(3)]),
        ("sign", n("sign", (), (n("sub", (), (x, k(3.0))),)), [-1, -1, 1, 0, 1]),
        ("ratio", n("ratio", (), (x, y)), [NAN, 1, 2, 3, 2.5]),
        ("ratio", n("ratio", (), (x, n("sub", (), (y, y)))), [NAN] * 5),
        ("where", n("where", (), (n("gt", (), (y, k(1.5))), x, k(0.0))), [0, 2, 4, 0, 5]),
        ("fill_null", n("fill_null", (), (y, k(9.0))), [9, 2, 2, 1, 2]),
        ("valid_from", n("valid_from", (2,), (x, y)), [NAN, NAN, NAN, 3, 5]),
        ("shift", n("shift", (2,), (x,)), [NAN, NAN, 1, 2, 4]),
        ("rolling_mean", n("rolling_mean", (2,), (x,)), [NAN, 1.5, 3, 3.5, 4]),
        ("rolling_sum", n("rolling_sum", (2,), (y,)), [NAN, NAN, 4, 3, 3]),
        ("rolling_std", n("rolling_std", (2,), (x,)), [NAN, 0.5, 1, 0.5, 1]),
        ("rolling_min", n("rolling_min", (2,), (x,)), [NAN, 1, 2, 3, 3]),
        ("rolling_max", n("rolling_max", (2,), (x,)), [NAN, 2, 4, 4, 5]),
        ("rolling_dot", n("rolling_dot", ((1.0, 2.0),), (x,)), [NAN, 5, 10, 10, 13]),
        ("rolling_dot_centered", n("rolling_dot_centered", ((-1.0, 0.0, 1.0),), (x,)), [NAN, NAN, 3, 1, 1]),
        ("rolling_argmax_age", n("rolling_argmax_age", (3,), (x,)), [NAN, NAN, 0, 1, 0]),
        ("rolling_argmax_age", n("rolling_argmax_age", (2,), (y,)), [NAN, NAN, 0, 1, 0]),  # tie: latest
        ("rolling_argmin_age", n("rolling_argmin_age", (3,), (x,)), [NAN, NAN, 2, 2, 1]),
        ("rolling_max_drawdown", n("rolling_max_drawdown", (3,), (x,)), [NAN, NAN, 0, 0.25, 0.25]),
        ("rolling_ulcer", n("rolling_ulcer", (2,), (x,)), [NAN, 0, 0, math.sqrt(312.5), 0]),
        ("rolling_mad", n("rolling_mad", (3,), (x,)), [NAN, NAN, 10 / 9, 2 / 3, 2 / 3]),
        ("cum_sum", n("cum_sum", (), (y,)), [NAN, 2, 4, 5, 7]),
        ("forward_fill", n("forward_fill", (), (gappy,)), [1, 2, 2, 3, 3]),
        ("ewm", n("ewm", (0.5, 2), (x,)), [NAN, 1.5, 2.75, 2.875, 3.9375]),
        ("ewm", n("ewm", (0.5, 2), (gappy,)), [NAN, 1.5, NAN, 2.25, NAN]),  # state carried
        ("wilder_mean", n("wilder_mean", (3,), (x,)), [NAN, NAN, 7 / 3, 23 / 9, 91 / 27]),
        ("wilder_sum", n("wilder_sum", (3,), (x,)), [NAN, NAN, 7, 23 / 3, 91 / 9]),  # 3 × the mean's
        ("ewm_var", n("ewm_var", (1,), (x, n("where", (), (n("gt", (), (x, k(1.5))), k(0.5), k(NAN))))),
         [1, 1.5, 2.75, 2.875, 3.9375]),
        ("laguerre_rsi", n("laguerre_rsi", (0.8,), (n("sub", (), (y, y)),)), [NAN, 50, 50, 50, 50]),
        ("laguerre_rsi", n("laguerre_rsi", (0.8,), (k(2.0),)), [_laguerre_day0(2.0), None, None, None, None]),
        ("gt", n("gt", (), (x, y)), [U, F, T, T, T]),
        ("lt", n("lt", (), (x, y)), [U, F, F, F, F]),
        ("ge", n("ge", (), (x, y)), [U, T, T, T, T]),
        ("le", n("le", (), (x, y)), [U, T, F, F, F]),
        ("and", n("and", (), (n("gt", (), (x, k(1.5))), n("gt", (), (y, k(1.5))))), [F, T, T, F, T]),
        ("and", n("and", (), (n("gt", (), (x, k(0.5))), n("gt", (), (y, k(1.5))))), [U, T, T, F, T]),
        ("or", n("or", (), (n("gt", (), (x, k(3.5))), n("gt", (), (y, k(1.5))))), [U, T, T, F, T]),
        ("or", n("or", (), (n("lt", (), (x, k(1.5))), n("gt", (), (y, k(1.5))))), [T, T, T, F, T]),
        ("not", n("not", (), (n("gt", (), (y, k(1.5))),)), [U, F, F, T, F]),
        ("null_if_any_missing", n("null_if_any_missing", (), (n("gt", (), (x, k(1.5))), y, gappy)),
         [U, T, U, T, U]),
        ("rolling_all", n("rolling_all", (2,), (n("gt", (), (y, k(1.5))),)), [U, U, T, F, F]),
        ("rolling_all", n("rolling_all", (3,), (n("lt", (), (x, k(1.5))),)), [U, F, F, F, F]),
        ("lines", lines_node(b, [[("gt", x, None, 2.5, 1)]]), [F, F, T, T, T]),
        ("lines", lines_node(b, [[("crossBelow", x, None, 3.5, 1)]]), [U, F, F, T, F]),
        ("lines", lines_node(b, [[("gt", y, None, 1.5, 2), ("lt", x, None, 4.5, 1)],
                                 [("is", n("date_between", (1, 5, 1, 7)), None, 0.0, 1)]]), [U, T, T, T, F]),
    ]


def test_every_primitive_has_a_hand_computed_case() -> None:
    assert {op for op, _, _ in _primitive_cases()} == set(PRIMITIVES)


def test_primitives_on_hand_computed_cases() -> None:
    market = _tiny()
    cases = _primitive_cases()
    branch = np.array([NAN, 1.0, 1.5, NAN, 2.0])
    out = PolarsBackend().evaluate([node for _, node, _ in cases], market, {"k": branch})
    for op, node, expected in cases:
        got = out[node]
        if node.kind == "b":
            assert got.dtype == np.int8
            assert got.tolist() == [int(e) for e in expected], op
            continue
        assert got.dtype == np.float64
        for t, e in enumerate(expected):
            if e is None:
                continue  # not pinned by hand
            if isinstance(e, float) and math.isnan(e):
                assert math.isnan(got[t]), f"{op} day {t}: {got[t]} (expected missing)"
            else:
                assert got[t] == pytest.approx(e, rel=1e-12, abs=1e-12), f"{op} day {t}"
