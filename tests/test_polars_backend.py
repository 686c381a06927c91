"""The CPU Polars backend: boundary encoding, three-valued logic, missing values, the date and
forDays conditions, branch leaves, and one lazy query collected once on the in-memory engine."""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest

from gpubt.backends import get_backend
from gpubt.backends.base import FALSE, NULL, TRUE
from gpubt.backends.polars_cpu import PolarsBackend
from gpubt.indicators import expand, ticker_source
from gpubt.ir.nodes import Builder, Node
from tests.conftest import make_market

NAN = math.nan
T, F, U = int(TRUE), int(FALSE), int(NULL)


@pytest.fixture
def market():
    # Mon 2021-01-04 … Fri 2021-01-08; B has no price on the first day
    return make_market({"A": [1, 2, 4, 3, 5], "B": [None, 2, 2, 1, 2]})


def run(market, *nodes: Node, branches=None) -> list[np.ndarray]:
    out = PolarsBackend().evaluate(list(nodes), market, branches or {})
    return [out[n] for n in nodes]


def truth(b: Builder, values: list[float | None]) -> Node:
    """A condition with the given truth per day (1 True, 0 False, None null), via a branch."""
    return b.node("gt", (), (b.node("branch", (("truth", tuple(values)),)), b.const(0.5)))


def truth_branches(*conds: Node) -> dict:
    out = {}
    for c in conds:
        for leaf in _leaves(c):
            values = leaf.params[0][1]
            out[leaf.params[0]] = np.array([NAN if v is None else v for v in values], dtype=float)
    return out


def _leaves(node: Node):
    if node.op == "branch":
        yield node
    for i in node.inputs:
        yield from _leaves(i)


def test_registry_and_name() -> None:
    backend = get_backend("polars")
    assert isinstance(backend, PolarsBackend) and backend.name == "polars"


# -- boundary encoding ---------------------------------------------------------------------------


def test_floats_come_back_float64_with_nan_for_missing(market) -> None:
    b = Builder()
    (got,) = run(market, b.node("add", (), (b.price("A"), b.price("B"))))
    assert got.dtype == np.float64 and got.flags.writeable
    assert np.isnan(got[0]) and got[1:].tolist() == [4, 6, 4, 7]


def test_conditions_come_back_int8_true_false_null(market) -> None:
    b = Builder()
    (got,) = run(market, b.node("gt", (), (b.price("B"), b.const(1.5))))
    assert got.dtype == np.int8
    assert got.tolist() == [U, T, T, F, T]


def test_non_finite_arithmetic_is_missing(market) -> None:
    b = Builder()
    x = b.price("A")
    zero = b.node("sub", (), (x, x))
    inf = b.node("div", (), (x, zero))
    nan = b.node("div", (), (zero, zero))
    big = b.node("exp", (), (b.node("mul", (), (x, b.const(1000.0))),))
    logneg = b.node("log", (), (b.node("neg", (), (x,)),))
    # a missing value must not compare greater than everything (Polars orders NaN above numbers)
    cmp = b.node("gt", (), (nan, b.const(0.0)))
    got = run(market, inf, nan, big, logneg, cmp)
    for g in got[:4]:
        assert np.isnan(g).all()
    assert got[4].tolist() == [U] * 5


def test_division_by_a_constant_is_exact(market) -> None:
    """Polars multiplies by the reciprocal when dividing by a scalar; the backend must not."""
    rng = np.random.default_rng(3)
    values = list(rng.uniform(1, 10, 400))
    m = make_market({"X": values})
    b = Builder()
    x = b.price("X")
    three = b.node("add", (), (b.const(1.0), b.const(2.0)))
    got = run(m, b.node("div", (), (x, b.const(3.0))), b.node("div", (), (x, three)),
              b.node("rolling_mean", (3,), (x,)))
    arr = np.array(values)
    assert np.array_equal(got[0], arr / 3.0)
    assert np.array_equal(got[1], arr / 3.0)
    means = np.array([NAN, NAN] + [sum(values[t - 2 : t + 1]) / 3 for t in range(2, 400)])
    assert np.array_equal(got[2], means, equal_nan=True)


# -- three-valued logic ----------------------------------------------------------------------------


KLEENE = [  # a, b, a AND b, a OR b
    (1, 1, T, T), (1, 0, F, T), (1, None, U, T),
    (0, 1, F, T), (0, 0, F, F), (0, None, F, U),
    (None, 1, U, T), (None, 0, F, U), (None, None, U, U),
]


def test_kleene_and_or_not(market) -> None:
    b = Builder()
    a_vals = [k[0] for k in KLEENE]
    b_vals = [k[1] for k in KLEENE]
    m = make_market({"X": [1.0] * len(KLEENE)})
    ca, cb = truth(b, a_vals), truth(b, b_vals)
    both, either, neg = b.node("and", (), (ca, cb)), b.node("or", (), (ca, cb)), b.node("not", (), (ca,))
    got = run(m, both, either, neg, branches=truth_branches(ca, cb))
    assert got[0].tolist() == [k[2] for k in KLEENE]
    assert got[1].tolist() == [k[3] for k in KLEENE]
    assert got[2].tolist() == [{1: F, 0: T, None: U}[v] for v in a_vals]


def test_and_or_of_three(market) -> None:
    b = Builder()
    m = make_market({"X": [1.0] * 3})
    c1, c2, c3 = truth(b, [1, 1, 1]), truth(b, [1, None, 0]), truth(b, [1, 1, None])
    got = run(m, b.node("and", (), (c1, c2, c3)), b.node("or", (), (c2, c3)),
              branches=truth_branches(c1, c2, c3))
    assert got[0].tolist() == [T, U, F]
    assert got[1].tolist() == [T, T, U]


def test_comparisons_with_missing_are_null(market) -> None:
    b = Builder()
    x, y = b.price("A"), b.price("B")
    got = run(market, *(b.node(op, (), (x, y)) for op in ("gt", "lt", "ge", "le")))
    assert [g[0] for g in got] == [U, U, U, U]
    assert got[0].tolist() == [U, F, T, T, T]
    assert got[3].tolist() == [U, T, F, F, F]


def test_null_if_any_missing(market) -> None:
    b = Builder()
    x, y = b.price("A"), b.price("B")
    cond = b.node("gt", (), (x, b.const(0.0)))  # True every day
    late = b.node("shift", (3,), (x,))
    (got,) = run(market, b.node("null_if_any_missing", (), (cond, y, late)))
    assert got.tolist() == [U, U, U, T, T]


# -- forDays, dates ------------------------------------------------------------------------------


def test_rolling_all_for_days() -> None:
    b = Builder()
    m = make_market({"X": [1.0] * 7})
    c = truth(b, [1, 1, 1, None, 1, 0, 1])
    got = run(m, *(b.node("rolling_all", (n,), (c,)) for n in (1, 2, 3)), branches=truth_branches(c))
    assert got[0].tolist() == [T, T, T, U, T, F, T]
    assert got[1].tolist() == [U, T, T, U, U, F, F]  # day 0: fewer than 2 days exist
    assert got[2].tolist() == [U, U, T, U, U, F, F]
    c2 = truth(b, [0, 1, 1])
    (early,) = run(make_market({"X": [1.0] * 3}), b.node("rolling_all", (3,), (c2,)),
                   branches=truth_branches(c2))
    assert early.tolist() == [F, F, F]  # an early False decides, even before 3 days exist


def test_date_between_with_and_without_year_wrap() -> None:
    m = make_market({"X": [1.0] * 10}, start="2021-12-27")  # Mon 12-27 … Fri 2022-01-07
    b = Builder()
    days = [str(d) for d in m.dates]
    assert days[0] == "2021-12-27" and days[5] == "2022-01-03"
    inside = b.node("date_between", (12, 29, 12, 31))
    wrap = b.node("date_between", (12, 30, 1, 4))
    single = b.node("date_between", (1, 5, 1, 5))
    got = run(m, inside, wrap, single)
    assert got[0].tolist() == [F, F, T, T, T, F, F, F, F, F]
    assert got[1].tolist() == [F, F, F, T, T, T, T, F, F, F]
    assert got[2].tolist() == [F, F, F, F, F, F, F, T, F, F]


# -- where, fill_null, valid_from, branches -----------------------------------------------------------


def test_where_takes_b_on_false_and_null(market) -> None:
    b = Builder()
    x, y = b.price("A"), b.price("B")
    (got,) = run(market, b.node("where", (), (b.node("lt", (), (y, b.const(1.5))), x, b.const(-1.0))))
    assert got.tolist() == [-1, -1, -1, 3, -1]


def test_fill_null(market) -> None:
    b = Builder()
    x, y = b.price("A"), b.price("B")
    got = run(market, b.node("fill_null", (), (y, x)), b.node("fill_null", (), (y, b.const(NAN))))
    assert got[0].tolist() == [1, 2, 2, 1, 2]
    assert np.isnan(got[1][0]) and got[1][1:].tolist() == [2, 2, 1, 2]


def test_valid_from_counts_from_the_anchor_first_value(market) -> None:
    b = Builder()
    x, y = b.price("A"), b.price("B")
    never = b.node("div", (), (x, b.const(0.0)))
    got = run(market, b.node("valid_from", (0,), (x, y)), b.node("valid_from", (1,), (y, x)),
              b.node("valid_from", (0,), (x, never)))
    assert np.isnan(got[0][0]) and got[0][1:].tolist() == [2, 4, 3, 5]
    assert np.isnan(got[1][:1]).all() and got[1][1:].tolist() == [2, 2, 1, 2]
    assert np.isnan(got[2]).all()  # an anchor that is never present


def test_branch_leaves_read_from_branches(market) -> None:
    b = Builder()
    leaf = b.node("branch", ("branch0",))
    sma = b.node("rolling_mean", (2,), (leaf,))
    equity = np.array([NAN, 1.0, 1.1, 1.21, 1.0])
    got = run(market, leaf, sma, branches={"branch0": equity})
    assert np.array_equal(got[0], equity, equal_nan=True)
    assert np.allclose(got[1], [NAN, NAN, 1.05, 1.155, 1.105], equal_nan=True)


def test_market_columns_read_are_only_those_the_graph_needs(market) -> None:
    b = Builder()
    query, names = PolarsBackend().query([b.node("shift", (1,), (b.price("A"),))], market, {})
    plan = query.explain(optimized=False)
    assert 'DF ["_date", "_row", "_n0"]' in plan  # dates, row index, A's close: nothing of B, no other field
    assert query.collect(engine="in-memory").columns == ["_n1"]


# -- one query, one collect, in-memory engine ---------------------------------------------------------


def test_many_outputs_one_collect_on_the_in_memory_engine(monkeypatch) -> None:
    calls: list[dict] = []
    original = pl.LazyFrame.collect

    def spy(self, *args, **kwargs):
        calls.append(kwargs)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(pl.LazyFrame, "collect", spy)
    from gpubt.data.synthetic import synthetic_market

    m = synthetic_market()
    b = Builder()
    outputs = []
    for ticker in ("SPY", "QQQ", "TLT", "QQQ/SPY"):
        src = ticker_source(b, ticker)
        for metric in ("RSI", "SMA", "EMA", "Max Drawdown", "KAMA", "Laguerre RSI", "ADX"):
            for w in (5, 14, 50):
                node = expand(b, metric, src, w)
                outputs += [node, b.node("gt", (), (node, b.const(50.0)))]
    backend = PolarsBackend()
    out = backend.evaluate(outputs, m, {})
    assert len(calls) == 1 and backend.collects == 1
    assert calls[0].get("engine") == "in-memory"
    assert set(out) == set(outputs)
    assert all(out[n].dtype == (np.int8 if n.kind == "b" else np.float64) for n in outputs)
    assert all(v.shape == (m.n_days,) for v in out.values())


def test_levels_only_read_earlier_levels(market) -> None:
    """Each with_columns adds the nodes of one depth; a column never reads one of its own level."""
    b = Builder()
    x = b.price("A")
    s1 = b.node("shift", (1,), (x,))
    s2 = b.node("add", (), (s1, x))
    s3 = b.node("mul", (), (s2, s1))
    query, names = PolarsBackend().query([s3, s2], market, {})
    plan = query.explain(optimized=False)
    assert plan.count("WITH_COLUMNS") == 3
    (got3, got2) = run(market, s3, s2)
    assert np.isnan(got3[0]) and got3[1:].tolist() == [3 * 1, 6 * 2, 7 * 4, 8 * 3]


def test_empty_outputs() -> None:
    assert PolarsBackend().evaluate([], make_market({"X": [1.0]}), {}) == {}


def test_windows_and_recursions_of_a_constant(market) -> None:
    """A constant is inlined as a literal into element-wise expressions only; a shift, window or
    recursion of it sees one value per day (crossAbove a threshold shifts the constant)."""
    b = Builder()
    k = b.const(-0.0)
    three = b.node("add", (), (b.const(1.0), b.const(2.0)))
    got = run(
        market,
        b.node("shift", (1,), (k,)),
        b.node("rolling_mean", (2,), (three,)),
        b.node("ewm", (0.5, 2), (three,)),
        b.node("cum_sum", (), (three,)),
        b.node("rolling_std", (2,), (three,)),
        b.node("lt", (), (b.node("shift", (1,), (k,)), k)),
    )
    assert np.isnan(got[0][0]) and got[0][1:].tolist() == [0.0] * 4
    assert np.isnan(got[1][0]) and got[1][1:].tolist() == [3.0] * 4
    assert np.isnan(got[2][0]) and got[2][1:].tolist() == [3.0] * 4
    assert got[3].tolist() == [3.0, 6.0, 9.0, 12.0, 15.0]
    assert np.isnan(got[4][0]) and got[4][1:].tolist() == [0.0] * 4
    assert got[5].tolist() == [U, F, F, F, F]


@pytest.mark.parametrize("threaded", [True, False])
def test_the_kernel_primitives_of_a_level_are_one_call(monkeypatch, threaded: bool) -> None:
    """The primitives run as Numba kernels (`_KERNELS`) are one `map_batches` per level of the
    query, their rows in Numba's threads on a big graph, and give each kernel's own values."""
    from gpubt.backends import kernels, polars_cpu
    from gpubt.data.synthetic import synthetic_market

    monkeypatch.setattr(polars_cpu, "_BIG", 1 if threaded else 10**9)
    batches = []
    original = pl.map_batches
    monkeypatch.setattr(pl, "map_batches", lambda *a, **k: batches.append(a) or original(*a, **k))
    m = synthetic_market()
    b = Builder()
    cases = []
    for ticker in ("SPY", "TQQQ"):  # TQQQ starts inside the market: missing values first
        x = b.price(ticker)
        close = m.close[:, m.column(ticker)]
        for n in (2, 14, 50):
            for op in sorted(polars_cpu._ROWS - {"ewm"}):
                cases.append((b.node(op, (n,), (x,)), kernels.WINDOWS[op](close, n)))
            cases.append((b.node("ewm", (2 / (n + 1), n), (x,)), kernels.ewm(close, 2 / (n + 1), n)))
            weights = tuple(float(i + 1) for i in range(n))
            cases.append((b.node("rolling_dot", (weights,), (x,)), kernels.rolling_dot(close, np.array(weights))))
            cases.append((b.node("laguerre_rsi", (0.5,), (x,)), kernels.laguerre_rsi(close, 0.5)))
        alpha = np.full(m.n_days, 0.3)  # a constant input: repeated once per day
        cases.append((b.node("ewm_var", (1,), (x, b.const(0.3))), kernels.ewm_var(close, alpha, 1)))
    out = PolarsBackend().evaluate([node for node, _ in cases], m, {})
    assert len(batches) == 1 and len(batches[0][0]) == 3  # one level: two price columns, one constant
    for node, want in cases:
        np.testing.assert_array_equal(out[node], want, err_msg=repr(node))
