"""The CPU Numba backend: every primitive equals the Polars backend (and the hand-computed cases),
the whole catalogue equals the Polars backend and the reference, Kleene logic, branch leaves,
boundary encoding, the new window kernels against plain loops, and memory released early."""

from __future__ import annotations

import math
import weakref
from functools import cache

import numpy as np
import pytest
from numba.core.caching import NullCache

import gpubt.parallel
from gpubt.backends import REGISTRY, get_backend, kernels
from gpubt.backends import numba_cpu
from gpubt.backends.base import FALSE, NULL, TRUE
from gpubt.backends.numba_cpu import NumbaBackend
from gpubt.backends.polars_cpu import PolarsBackend
from gpubt.data.market import Market
from gpubt.engine import BACKENDS
from gpubt.indicators import expand, ticker_source
from gpubt.backends.lines import split
from gpubt.ir.lines import lines_node, lowered
from gpubt.ir.nodes import PRIMITIVES, Builder, Node
from gpubt.reference.indicators import indicator
from gpubt.schema.catalogue import METRICS
from tests.conftest import make_market
from tests.test_indicators_ir import _primitive_cases, _tiny
from tests.test_indicators_ir import synthetic as synthetic_slice

NAN = math.nan
T, F, U = int(TRUE), int(FALSE), int(NULL)
REL_POLARS = 1e-12  # against the Polars backend
REL_REF, ABS_REF = 1e-9, 1e-12  # against the reference interpreter


def run(market: Market, *nodes: Node, branches=None, backend=None) -> list[np.ndarray]:
    out = (backend or NumbaBackend()).evaluate(list(nodes), market, branches or {})
    return [out[n] for n in nodes]


def assert_same(got: np.ndarray, want: np.ndarray, what: str, rel: float = REL_POLARS, abs_: float = 0.0) -> None:
    """Same dtype and shape; conditions equal; floats with the same NaN mask and within rel."""
    assert got.dtype == want.dtype and got.shape == want.shape, (what, got.dtype, want.dtype)
    if got.dtype == np.int8:
        bad = np.flatnonzero(got != want)
        assert bad.size == 0, f"{what}: days {bad[:8].tolist()}: {got[bad[:8]]} != {want[bad[:8]]}"
        return
    gap = np.flatnonzero(np.isnan(got) != np.isnan(want))
    assert gap.size == 0, f"{what}: NaN masks differ at days {gap[:8].tolist()}"
    ok = ~np.isnan(want)
    diff = np.abs(got[ok] - want[ok])
    bad = diff > np.maximum(rel * np.abs(want[ok]), abs_)
    if bad.any():
        t = np.flatnonzero(ok)[np.flatnonzero(bad)[0]]
        pytest.fail(f"{what}: day {t}: {got[t]!r} != {want[t]!r} ({bad.sum()} days differ)")


# -- registry, encoding -------------------------------------------------------------------------


def test_registered_and_under_parity() -> None:
    assert REGISTRY["numba"] == ("gpubt.backends.numba_cpu", "NumbaBackend")
    backend = get_backend("numba")
    assert isinstance(backend, NumbaBackend) and backend.name == "numba"
    assert "numba" in BACKENDS  # so tests/test_parity.py runs it against the reference


def test_kernels_are_cached_on_disk() -> None:
    """A fresh process loads the compiled kernels instead of compiling them."""
    jitted = [getattr(numba_cpu, name) for name in dir(numba_cpu)]
    jitted += [getattr(kernels, name) for name in dir(kernels)]
    jitted = [f for f in jitted if hasattr(f, "py_func")]
    assert len(jitted) > 20
    for f in jitted:
        assert not isinstance(f._cache, NullCache), f.__name__


def test_boundary_encoding_and_fresh_arrays() -> None:
    m = make_market({"A": [1, 2, 4, 3, 5], "B": [None, 2, 2, 1, 2]})
    b = Builder()
    x, y = b.price("A"), b.price("B")
    k = b.const(2.5)
    three = b.node("add", (), (b.const(1.0), b.const(2.0)))
    got = run(m, x, k, three, b.node("add", (), (x, y)), b.node("gt", (), (y, b.const(1.5))),
              b.node("const", (math.inf,)))
    for g in got[:4] + got[5:]:
        assert g.dtype == np.float64 and g.shape == (5,) and g.flags.writeable and g.flags.c_contiguous
    assert got[0].tolist() == [1, 2, 4, 3, 5]
    assert got[1].tolist() == [2.5] * 5 and got[2].tolist() == [3.0] * 5
    assert np.isnan(got[3][0]) and got[3][1:].tolist() == [4, 6, 4, 7]
    assert got[4].dtype == np.int8 and got[4].tolist() == [U, T, T, F, T]
    assert np.isnan(got[5]).all()  # a non-finite constant is missing
    ids = {id(g) for g in got} | {id(g.base) for g in got if g.base is not None}
    assert len({id(g) for g in got}) == len(got) and id(m.close) not in ids


def test_empty_outputs() -> None:
    assert NumbaBackend().evaluate([], make_market({"X": [1.0]}), {}) == {}


def test_the_garbage_collector_state_is_restored() -> None:
    import gc

    m = make_market({"A": [1.0, 2.0]})
    b = Builder()
    node = b.node("neg", (), (b.price("A"),))
    assert gc.isenabled()
    run(m, node)
    assert gc.isenabled()
    gc.disable()
    try:
        run(m, node)
        assert not gc.isenabled()
    finally:
        gc.enable()
    with pytest.raises(KeyError):
        run(m, b.node("branch", ("absent",)))
    assert gc.isenabled()


def test_a_branch_of_the_wrong_length_is_an_error() -> None:
    m = make_market({"A": [1.0, 2.0]})
    b = Builder()
    with pytest.raises(ValueError, match="values for 2 days"):
        run(m, b.node("branch", ("k",)), branches={"k": np.ones(3)})


# -- every primitive: the hand-computed cases, and Polars on series with missing values ----------


def test_hand_computed_cases_equal_polars_bit_for_bit() -> None:
    cases = _primitive_cases()
    assert {op for op, _, _ in cases} == set(PRIMITIVES)
    nodes = [node for _, node, _ in cases]
    branches = {"k": np.array([NAN, 1.0, 1.5, NAN, 2.0])}
    got = NumbaBackend().evaluate(nodes, _tiny(), branches)
    want = PolarsBackend().evaluate(nodes, _tiny(), branches)
    for op, node, expected in cases:
        assert_same(got[node], want[node], op, rel=0.0)
        for t, e in enumerate(expected):
            if e is None:
                continue
            g = got[node][t]
            if isinstance(e, float) and math.isnan(e):
                assert math.isnan(g), (op, t)
            else:
                assert g == pytest.approx(e, rel=1e-12, abs=1e-12), (op, t)


N_DAYS = 260


@cache
def _random_setup(days: int = N_DAYS) -> tuple[Market, dict, dict[str, Node], Builder]:
    """A market (A from day 0; B starts on day 20) and branch series with interior gaps, zeros,
    negatives, a flat stretch and magnitudes from 1e-3 to 1e5."""
    rng = np.random.default_rng(7)
    a = 50 * np.exp(np.cumsum(rng.normal(0, 0.02, days)))
    bb = [None] * 20 + list(20 * np.exp(np.cumsum(rng.normal(0, 0.03, days - 20))))
    market = make_market({"A": list(a), "B": bb})
    g = rng.normal(0, 1, days)
    g[rng.random(days) < 0.08] = NAN
    g[30:40] = 0.0
    g[100:115] = 1.25
    wide = np.exp(rng.uniform(np.log(1e-3), np.log(1e5), days))
    wide[rng.random(days) < 0.05] = NAN
    wide[:3] = NAN
    truth = np.where(rng.random(days) < 0.5, 1.0, 0.0)
    truth[rng.random(days) < 0.15] = NAN
    branches = {"g": g, "wide": wide, "truth": truth}
    b = Builder()
    series = {
        "A": b.price("A"),
        "B": b.price("B"),
        "g": b.node("branch", ("g",)),
        "wide": b.node("branch", ("wide",)),
    }
    return market, branches, series, b


def _primitive_graph() -> dict[str, list[Node]]:
    """Nodes of every primitive over arrays with missing values, constants and NaN constants."""
    market, branches, s, b = _random_setup()
    n = b.node
    k = b.const
    A, B, g, wide = s["A"], s["B"], s["g"], s["wide"]
    folded = n("add", (), (k(1.0), k(2.0)))  # an element-wise node of constants
    floats = [A, B, g, wide, k(2.0), k(0.0), k(-1.5), k(NAN), folded]
    cond = n("gt", (), (n("branch", ("truth",)), k(0.5)))
    cond2 = n("lt", (), (g, k(0.2)))
    cond3 = n("ge", (), (wide, B))
    conds = [cond, cond2, cond3]
    windows = (1, 2, 5, 21)
    cases: dict[str, list[Node]] = {op: [] for op in PRIMITIVES}
    cases["price"] += [A, B, b.price("A", "open"), b.price("B", "volume")]
    cases["const"] += [k(2.5), k(NAN), k(-0.0)]
    cases["branch"] += [g, wide]
    cases["date_between"] += [n("date_between", p) for p in ((1, 5, 3, 7), (11, 15, 2, 10), (6, 1, 6, 1))]
    for op in ("add", "sub", "mul", "div", "ratio", "pow", "min2", "max2"):
        for x in floats:
            for y in floats:
                cases[op].append(n(op, (), (x, y)))
    for op in ("neg", "abs", "log", "exp", "sqrt", "sign"):
        for x in floats + [n("sub", (), (g, g)), n("neg", (), (n("sub", (), (g, g)),))]:
            cases[op].append(n(op, (), (x,)))
    for c in conds:
        for x, y in ((A, g), (g, k(1.0)), (k(NAN), wide), (k(1.0), k(2.0))):
            cases["where"].append(n("where", (), (c, x, y)))
    for x, y in ((g, A), (g, k(0.0)), (k(NAN), g), (k(1.0), g), (wide, g), (k(NAN), k(NAN))):
        cases["fill_null"].append(n("fill_null", (), (x, y)))
    for x, y in ((A, B), (A, g), (g, wide), (k(3.0), B), (A, k(NAN)), (A, k(1.0))):
        for off in (0, 3, 40):
            cases["valid_from"].append(n("valid_from", (off,), (x, y)))
    inputs = [A, B, g, wide, k(2.0), k(NAN), n("mul", (), (g, k(0.0)))]
    for x in inputs:
        for w in windows:
            for op in ("shift", "rolling_mean", "rolling_sum", "rolling_std", "rolling_min",
                       "rolling_max", "rolling_argmax_age", "rolling_argmin_age",
                       "rolling_max_drawdown", "rolling_ulcer", "rolling_mad", "wilder_mean", "wilder_sum"):
                cases[op].append(n(op, (w,), (x,)))
            cases["ewm"].append(n("ewm", (2.0 / (w + 1), w), (x,)))
        for weights in ((1.0,), (0.5, -2.0), (1.0, 2.0, 3.0, 4.0, 5.0)):
            cases["rolling_dot"].append(n("rolling_dot", (weights,), (x,)))
            cases["rolling_dot_centered"].append(n("rolling_dot_centered", (weights,), (x,)))
        for op in ("cum_sum", "forward_fill"):
            cases[op].append(n(op, (), (x,)))
        cases["laguerre_rsi"].append(n("laguerre_rsi", (0.8,), (x,)))
        alpha = n("where", (), (n("gt", (), (n("shift", (5,), (A,)), k(0.0))), n("abs", (), (g,)), k(NAN)))
        cases["ewm_var"] += [n("ewm_var", (off,), (x, alpha)) for off in (0, 1, 5)]
    cases["shift"] += [n("shift", (0,), (A,)), n("shift", (-3,), (g,)), n("shift", (N_DAYS + 5,), (A,))]
    cmp_pairs = [(A, B), (g, k(0.0)), (k(0.0), g), (g, g), (g, k(NAN)), (k(1.0), k(2.0)), (wide, A),
                 (n("shift", (1,), (g,)), g)]
    for op in ("gt", "lt", "ge", "le"):
        cases[op] += [n(op, (), (x, y)) for x, y in cmp_pairs]
        # many thresholds on one series: one grouped kernel call
        cases[op] += [n(op, (), (g, k(v))) for v in (-1.0, -0.5, 0.0, 0.5, NAN)]
        cases[op] += [n(op, (), (k(v), g)) for v in (-1.0, 0.0, 1.0)]
    for op in ("and", "or"):
        cases[op] += [n(op, (), ()), n(op, (), (cond,)), n(op, (), (cond, cond2)),
                      n(op, (), (cond, cond2, cond3)), n(op, (), (cond3, cond3))]
    cases["not"] += [n("not", (), (c,)) for c in conds]
    cases["null_if_any_missing"] += [
        n("null_if_any_missing", (), (cond,)),
        n("null_if_any_missing", (), (cond, g)),
        n("null_if_any_missing", (), (cond2, wide, B)),
        n("null_if_any_missing", (), (cond3, k(NAN))),
        n("null_if_any_missing", (), (cond, k(1.0), g)),
    ]
    for c in conds:
        cases["rolling_all"] += [n("rolling_all", (w,), (c,)) for w in (1, 2, 3, 10)]
    cases["lines"] += _line_lists(b, s)
    return cases


@cache
def _both_backends() -> tuple[dict[Node, np.ndarray], dict[Node, np.ndarray]]:
    market, branches, _, _ = _random_setup()
    nodes = list(dict.fromkeys(node for nodes in _primitive_graph().values() for node in nodes))
    return (NumbaBackend().evaluate(nodes, market, branches),
            PolarsBackend().evaluate(nodes, market, branches))


@pytest.mark.parametrize("op", sorted(PRIMITIVES))
def test_primitive_equals_polars_with_missing_values(op: str) -> None:
    cases = _primitive_graph()[op]
    assert cases, f"no case for {op}"
    got, want = _both_backends()
    for node in cases:
        assert_same(got[node], want[node], f"{node!r} {[i.op for i in node.inputs]}")


def test_every_primitive_is_exercised_with_missing_values() -> None:
    market, branches, _, _ = _random_setup()
    assert np.isnan(branches["g"]).any() and np.isnan(market.close[:, market.column("B")]).any()
    assert set(_primitive_graph()) == set(PRIMITIVES)


# -- the catalogue: Polars and the reference --------------------------------------------------------

CATALOGUE_TICKERS = ("SPY", "TQQQ", "QQQ/SPY")  # TQQQ starts inside the market (2010)
CATALOGUE_WINDOWS = (2, 14, 50)


@cache
def _catalogue(ticker: str) -> tuple[dict, dict]:
    market = synthetic_slice()
    b = Builder()
    src = ticker_source(b, ticker)
    keys = [(m.name, w) for m in METRICS for w in CATALOGUE_WINDOWS]
    nodes = [expand(b, name, src, w) for name, w in keys]
    got = NumbaBackend().evaluate(nodes, market, {})
    want = PolarsBackend().evaluate(nodes, market, {})
    return ({key: got[node] for key, node in zip(keys, nodes)},
            {key: want[node] for key, node in zip(keys, nodes)})


def test_catalogue_has_48_metrics() -> None:
    assert len(METRICS) == 48


@pytest.mark.parametrize("ticker", CATALOGUE_TICKERS)
@pytest.mark.parametrize("metric", [m.name for m in METRICS])
def test_catalogue_metric_equals_polars_and_reference(ticker: str, metric: str) -> None:
    got, want = _catalogue(ticker)
    market = synthetic_slice()
    for w in CATALOGUE_WINDOWS:
        what = f"{metric}({w}) of {ticker}"
        assert_same(got[(metric, w)], want[(metric, w)], what + " vs polars", abs_=1e-15)
        ref = indicator(metric, market.bars(ticker), w)
        assert_same(got[(metric, w)], ref, what + " vs reference", rel=REL_REF, abs_=ABS_REF)


@pytest.mark.parametrize("ticker", CATALOGUE_TICKERS)
def test_catalogue_metrics_equal_the_reference_bit_for_bit(ticker: str) -> None:
    """A function node ranking branch series of equal shape must break their mathematical tie the
    reference's way (tests/found/near_tie_linreg_branch_scores.json: the regression slope, made
    the reference's centered sum); so every metric is the reference's arithmetic, to the bit."""
    bars = synthetic_slice().bars(ticker)
    for got, backend in zip(_catalogue(ticker), ("numba", "polars")):
        for metric in sorted(m.name for m in METRICS):
            for w in CATALOGUE_WINDOWS:
                want = indicator(metric, bars, w)
                np.testing.assert_array_equal(got[(metric, w)], want, err_msg=f"{metric}({w}) on {backend}")


# -- Kleene logic, comparisons ----------------------------------------------------------------------


def truth(b: Builder, key: str) -> Node:
    return b.node("gt", (), (b.node("branch", (key,)), b.const(0.5)))


def _truth_series(values: list) -> np.ndarray:
    return np.array([NAN if v is None else float(v) for v in values])


KLEENE = [  # a, b, a AND b, a OR b
    (1, 1, T, T), (1, 0, F, T), (1, None, U, T),
    (0, 1, F, T), (0, 0, F, F), (0, None, F, U),
    (None, 1, U, T), (None, 0, F, U), (None, None, U, U),
]


def test_kleene_truth_tables() -> None:
    m = make_market({"X": [1.0] * len(KLEENE)})
    b = Builder()
    ca, cb = truth(b, "a"), truth(b, "b")
    branches = {"a": _truth_series([k[0] for k in KLEENE]), "b": _truth_series([k[1] for k in KLEENE])}
    both, either = b.node("and", (), (ca, cb)), b.node("or", (), (ca, cb))
    got = run(m, both, either, b.node("not", (), (ca,)), b.node("and", (), (cb, ca)),
              b.node("or", (), (cb, ca)), branches=branches)
    assert got[0].tolist() == [k[2] for k in KLEENE]
    assert got[1].tolist() == [k[3] for k in KLEENE]
    assert got[2].tolist() == [{1: F, 0: T, None: U}[k[0]] for k in KLEENE]
    assert got[3].tolist() == got[0].tolist() and got[4].tolist() == got[1].tolist()


def test_kleene_three_inputs_all_27_combinations() -> None:
    import itertools

    combos = list(itertools.product((1, 0, None), repeat=3))
    m = make_market({"X": [1.0] * len(combos)})
    b = Builder()
    cs = [truth(b, key) for key in "abc"]
    branches = {key: _truth_series([c[i] for c in combos]) for i, key in enumerate("abc")}
    got_and, got_or, empty_and, empty_or = run(
        m, b.node("and", (), cs), b.node("or", (), cs), b.node("and", (), ()), b.node("or", (), ()),
        branches=branches)
    for t, c in enumerate(combos):
        want_and = F if 0 in c else (U if None in c else T)
        want_or = T if 1 in c else (U if None in c else F)
        assert (got_and[t], got_or[t]) == (want_and, want_or), c
    assert empty_and.tolist() == [T] * len(combos) and empty_or.tolist() == [F] * len(combos)


def test_comparisons_with_missing_are_null_on_either_side() -> None:
    m = make_market({"A": [1, 2, 4, 3, 5], "B": [None, 2, 2, 1, 2]})
    b = Builder()
    x, y = b.price("A"), b.price("B")
    nan = b.const(NAN)
    got = run(m, *(b.node(op, (), (x, y)) for op in ("gt", "lt", "ge", "le")),
              b.node("gt", (), (x, nan)), b.node("lt", (), (nan, x)),
              *(b.node("gt", (), (x, b.const(v))) for v in (1.5, 3.0, NAN)),
              *(b.node("gt", (), (b.const(v), x)) for v in (1.5, 3.0)))
    assert got[0].tolist() == [U, F, T, T, T]
    assert got[1].tolist() == [U, F, F, F, F]
    assert got[2].tolist() == [U, T, T, T, T]
    assert got[3].tolist() == [U, T, F, F, F]
    assert got[4].tolist() == [U] * 5 and got[5].tolist() == [U] * 5
    assert got[6].tolist() == [F, T, T, T, T]
    assert got[7].tolist() == [F, F, T, F, T]
    assert got[8].tolist() == [U] * 5
    assert got[9].tolist() == [T, F, F, F, F]  # 1.5 > x
    assert got[10].tolist() == [T, T, F, F, F]  # 3 > x


def test_rolling_all_for_days() -> None:
    m = make_market({"X": [1.0] * 7})
    b = Builder()
    c = truth(b, "c")
    branches = {"c": _truth_series([1, 1, 1, None, 1, 0, 1]), "d": _truth_series([0, 1, 1])}
    got = run(m, *(b.node("rolling_all", (n,), (c,)) for n in (1, 2, 3)), branches=branches)
    assert got[0].tolist() == [T, T, T, U, T, F, T]
    assert got[1].tolist() == [U, T, T, U, U, F, F]
    assert got[2].tolist() == [U, U, T, U, U, F, F]
    (early,) = run(make_market({"X": [1.0] * 3}), b.node("rolling_all", (3,), (truth(b, "d"),)),
                   branches=branches)
    assert early.tolist() == [F, F, F]


# -- arithmetic rules -------------------------------------------------------------------------------


def test_non_finite_arithmetic_is_missing_and_division_by_a_constant_is_exact() -> None:
    rng = np.random.default_rng(3)
    values = list(rng.uniform(1, 10, 400))
    m = make_market({"X": values})
    b = Builder()
    x = b.price("X")
    zero = b.node("sub", (), (x, x))
    three = b.node("add", (), (b.const(1.0), b.const(2.0)))
    got = run(m, b.node("div", (), (x, zero)), b.node("div", (), (zero, zero)),
              b.node("exp", (), (b.node("mul", (), (x, b.const(1000.0))),)),
              b.node("log", (), (b.node("neg", (), (x,)),)),
              b.node("pow", (), (b.const(1.0), b.const(NAN))),
              b.node("pow", (), (b.node("div", (), (x, zero)), b.const(0.0))),
              b.node("div", (), (x, b.const(3.0))), b.node("div", (), (x, three)),
              b.node("rolling_mean", (3,), (x,)))
    for g in got[:6]:
        assert np.isnan(g).all()
    arr = np.array(values)
    assert np.array_equal(got[6], arr / 3.0) and np.array_equal(got[7], arr / 3.0)
    means = np.array([NAN, NAN] + [sum(values[t - 2 : t + 1]) / 3 for t in range(2, 400)])
    assert np.array_equal(got[8], means, equal_nan=True)


def test_log_exp_and_pow_are_the_c_librarys_to_the_bit() -> None:
    """The reference computes with Python's `math` (the C library); NumPy's own SIMD log, exp and
    pow, which it picks on AVX-512 machines, differ in the last bit for 0.1–5 % of inputs."""
    rng = np.random.default_rng(11)
    x = np.exp(rng.normal(0, 3, 3000))
    y = rng.normal(0, 2, 3000)
    m = make_market({"X": list(x), "Y": list(y)})
    b = Builder()
    px, py = b.price("X"), b.price("Y")
    log, exp, pow_ = run(m, b.node("log", (), (px,)), b.node("exp", (), (py,)), b.node("pow", (), (px, py)))
    assert log.tolist() == [math.log(v) for v in x]
    assert exp.tolist() == [math.exp(v) for v in y]
    assert pow_.tolist() == [math.pow(u, v) for u, v in zip(x, y)]
    (constant,) = run(m, b.node("pow", (), (b.const(1.7), b.const(-2.3))))
    assert np.all(constant == math.pow(1.7, -2.3))


def test_windows_and_recursions_of_a_constant() -> None:
    m = make_market({"A": [1, 2, 4, 3, 5]})
    b = Builder()
    k = b.const(-0.0)
    three = b.node("add", (), (b.const(1.0), b.const(2.0)))
    got = run(m, b.node("shift", (1,), (k,)), b.node("rolling_mean", (2,), (three,)),
              b.node("ewm", (0.5, 2), (three,)), b.node("cum_sum", (), (three,)),
              b.node("rolling_std", (2,), (three,)), b.node("lt", (), (b.node("shift", (1,), (k,)), k)))
    assert np.isnan(got[0][0]) and got[0][1:].tolist() == [0.0] * 4
    assert np.isnan(got[1][0]) and got[1][1:].tolist() == [3.0] * 4
    assert np.isnan(got[2][0]) and got[2][1:].tolist() == [3.0] * 4
    assert got[3].tolist() == [3.0, 6.0, 9.0, 12.0, 15.0]
    assert np.isnan(got[4][0]) and got[4][1:].tolist() == [0.0] * 4
    assert got[5].tolist() == [U, F, F, F, F]


def test_date_between_with_and_without_year_wrap() -> None:
    m = make_market({"X": [1.0] * 10}, start="2021-12-27")
    b = Builder()
    got = run(m, b.node("date_between", (12, 29, 12, 31)), b.node("date_between", (12, 30, 1, 4)),
              b.node("date_between", (1, 5, 1, 5)))
    assert got[0].tolist() == [F, F, T, T, T, F, F, F, F, F]
    assert got[1].tolist() == [F, F, F, T, T, T, T, F, F, F]
    assert got[2].tolist() == [F, F, F, F, F, F, F, T, F, F]


# -- branch leaves ------------------------------------------------------------------------------------


def test_branch_leaves_read_from_branches() -> None:
    m = make_market({"A": [1, 2, 4, 3, 5]})
    b = Builder()
    leaf = b.node("branch", ("branch0",))
    tuple_leaf = b.node("branch", (("k", 1),))
    sma = b.node("rolling_mean", (2,), (leaf,))
    equity = np.array([NAN, 1.0, 1.1, 1.21, math.inf])
    branches = {"branch0": equity, ("k", 1): np.arange(5.0)}
    got = run(m, leaf, sma, tuple_leaf, branches=branches)
    assert np.array_equal(got[0], [NAN, 1.0, 1.1, 1.21, NAN], equal_nan=True)  # inf: missing
    assert got[0] is not equity and np.isinf(equity[4])  # the caller's array is left alone
    assert np.allclose(got[1], [NAN, NAN, 1.05, 1.155, NAN], equal_nan=True)
    assert got[2].tolist() == [0, 1, 2, 3, 4]
    want = PolarsBackend().evaluate([leaf, sma], m, branches)
    assert_same(got[0], want[leaf], "leaf")
    assert_same(got[1], want[sma], "sma")


def test_branch_metrics_equal_reference() -> None:
    from gpubt.data.market import Bars
    from gpubt.indicators import branch_source

    market = synthetic_slice()
    b = Builder()
    src = branch_source(b, "branch0")
    equity = np.full(market.n_days, NAN)
    equity[40:] = np.cumprod(1.0 + 0.01 * np.sin(np.arange(market.n_days - 40)))
    metrics = ("Relative Strength Index", "Max Drawdown", "ATR", "Stochastic %K", "Money Flow Index")
    nodes = {m: expand(b, m, src, 10) for m in metrics}
    out = NumbaBackend().evaluate(list(nodes.values()), market, {"branch0": equity})
    bars = Bars(equity, equity, equity, equity, np.full(market.n_days, NAN))
    for m, node in nodes.items():
        assert_same(out[node], indicator(m, bars, 10), m, rel=REL_REF, abs_=ABS_REF)


# -- the new window kernels against plain loops ---------------------------------------------------------


def _plain_dot(x: np.ndarray, weights, divisor: float = 1.0) -> np.ndarray:
    n = len(weights)
    out = np.full(x.size, NAN)
    for t in range(n - 1, x.size):
        s = 0.0
        for i in range(n):
            s += weights[i] * x[t - n + 1 + i]
        out[t] = s / divisor if divisor != 1.0 else s
    return out


@pytest.mark.parametrize("n", [1, 2, 3, 7, 35, 600, 1300, 2000])
def test_window_sums_equal_the_plain_loop_bit_for_bit(n: int) -> None:
    rng = np.random.default_rng(n)
    x = np.exp(rng.normal(0, 6, 1500)) * rng.choice([-1.0, 1.0], 1500)
    x[rng.random(1500) < 0.01] = NAN
    weights = rng.normal(size=n)
    assert np.array_equal(kernels.rolling_sum(x, n), _plain_dot(x, [1.0] * n), equal_nan=True)
    assert np.array_equal(kernels.rolling_mean(x, n), _plain_dot(x, [1.0] * n, float(n)), equal_nan=True)
    assert np.array_equal(kernels.rolling_dot(x, weights), _plain_dot(x, weights), equal_nan=True)
    lo = np.full(x.size, NAN)
    hi = np.full(x.size, NAN)
    for t in range(n - 1, x.size):
        w = x[t - n + 1 : t + 1]
        if not np.isnan(w).any():
            lo[t], hi[t] = w.min(), w.max()
    assert np.array_equal(kernels.rolling_min(x, n), lo, equal_nan=True)
    assert np.array_equal(kernels.rolling_max(x, n), hi, equal_nan=True)


_BLOCKED = {  # kernel with its days in blocks -> its plain loop
    kernels.rolling_std: kernels._rolling_std_into,
    kernels.rolling_mad: kernels._rolling_mad_into,
    kernels.rolling_argmax_age: kernels._rolling_argmax_age_into,
    kernels.rolling_argmin_age: kernels._rolling_argmin_age_into,
    kernels.rolling_max_drawdown: kernels._rolling_max_drawdown_into,
    kernels.rolling_ulcer: kernels._rolling_ulcer_into,
}


@pytest.mark.parametrize("n", [1, 2, 3, 7, 35, 600, 1300, 2000])
def test_blocked_window_kernels_equal_their_plain_loops_bit_for_bit(n: int) -> None:
    """Gaps, flat runs (std exactly 0, tied extremes), zeros (a zero peak) and signs flipping."""
    rng = np.random.default_rng(100 + n)
    x = np.exp(rng.normal(0, 2, 1500)) * rng.choice([-1.0, 1.0], 1500, p=[0.1, 0.9])
    x[rng.random(1500) < 0.01] = NAN
    x[200:260] = 3.25
    x[400:410] = 0.0
    x[700:720] = -0.0
    for kernel, plain in _BLOCKED.items():
        expected = np.empty(x.size)
        plain(x, n, expected)
        assert np.array_equal(kernel(x, n), expected, equal_nan=True), kernel.__name__
    weights = rng.normal(size=n)
    expected = np.empty(x.size)
    kernels._rolling_dot_into(x, weights, True, expected)
    assert np.array_equal(kernels.rolling_dot_centered(x, weights), expected, equal_nan=True)


@pytest.mark.parametrize("rows", [1, 3, kernels._LANES, 9])
@pytest.mark.parametrize("threaded", [False, True])
def test_row_forms_equal_their_kernels_row_by_row_bit_for_bit(rows: int, threaded: bool) -> None:
    """Every window's and recursion's row form (the recursions advance `_LANES` rows together)
    over rows with gaps, late starts and a constant stretch, each with its own window (one
    longer than the days), gives each row the per-row kernel's bits, over every day of an output
    row that held other values."""
    rng = np.random.default_rng(rows)
    days = 700
    f = np.full((2 * rows, days), NAN)
    for i in range(rows):
        start = int(rng.integers(0, 60))
        f[i, start:] = np.exp(np.cumsum(rng.normal(0, 0.02, days - start)))
        f[i, rng.random(days) < 0.01] = NAN
        f[i, 300:320] = 1.5
    x = np.arange(rows, dtype=np.int64)
    out = np.arange(rows, 2 * rows, dtype=np.int64)
    f[rows:] = 7.25  # rows handed on hold an earlier node's values
    n = rng.integers(1, 60, rows).astype(np.int64)
    if rows > 2:
        n[-1] = days + 3
    for op, kernel in kernels.WINDOWS.items():
        g = f.copy()
        kernels.window_rows(op).pick(rows, threaded)(g, x, n, np.zeros_like(n), out)
        for i in range(rows):
            np.testing.assert_array_equal(g[out[i]], kernel(f[i], int(n[i])), err_msg=f"{op} row {i}")
    alpha = rng.uniform(0.01, 0.9, rows)
    g = f.copy()
    kernels.ewm_rows.pick(rows, threaded)(g, x, alpha, n, out)
    for i in range(rows):
        np.testing.assert_array_equal(g[out[i]], kernels.ewm(f[i], alpha[i], int(n[i])), err_msg=f"ewm row {i}")


@pytest.mark.parametrize("n", [2, 17, kernels._SHORT - 1, kernels._SHORT, 64, 250])
@pytest.mark.parametrize("shape", ["random walk", "rising", "falling", "ties"])
def test_max_drawdown_by_records_equals_the_scan_bit_for_bit(shape: str, n: int) -> None:
    """Long chains of records (a rising series), none (a falling one), peaks tied across a window
    and a random walk through 0, with gaps: every window's answer is the scan's."""
    rng = np.random.default_rng(n)
    x = {
        "random walk": np.cumsum(rng.normal(0.02, 1.0, 2000)),
        "rising": np.linspace(1.0, 5.0, 2000) * np.exp(rng.normal(0, 0.002, 2000)),
        "falling": np.linspace(5.0, 1.0, 2000) * np.exp(rng.normal(0, 0.002, 2000)),
        "ties": np.round(np.exp(rng.normal(0, 0.1, 2000)), 1),
    }[shape]
    x[rng.random(2000) < 0.003] = NAN
    expected = np.empty(x.size)
    kernels._rolling_max_drawdown_into(x, n, expected)
    assert np.array_equal(kernels.rolling_max_drawdown(x, n), expected, equal_nan=True)
    assert np.array_equal(kernels._max_drawdown_by_records(x, n), expected, equal_nan=True)  # any n


# -- memory ---------------------------------------------------------------------------------------------


def test_a_long_chain_keeps_a_bounded_number_of_arrays(monkeypatch) -> None:
    m = make_market({"A": list(np.linspace(1.0, 2.0, 50))})
    b = Builder()
    node = b.price("A")
    for i in range(1000):
        node = b.node(("neg", "abs", "sqrt", "exp")[i % 4], (), (node,)) if i % 5 else \
            b.node("rolling_mean", (2,), (node,))
    alive: list[weakref.ref] = []
    most = 0
    ops = dict(numba_cpu._OPS)

    def spy(op):
        def run_op(a, p, ctx):
            nonlocal most
            value = ops[op](a, p, ctx)
            alive.append(weakref.ref(value))
            most = max(most, sum(r() is not None for r in alive[-20:]))
            return value

        return run_op

    for op in ("neg", "abs", "sqrt", "exp", "rolling_mean"):
        monkeypatch.setitem(numba_cpu._OPS, op, spy(op))
    backend = NumbaBackend()
    (got,) = run(m, node, backend=backend)
    assert backend.nodes == 1001
    assert backend.live_peak <= 3 and backend.freed == 1000
    assert most <= 3  # the arrays themselves are gone, not only uncounted
    assert sum(r() is not None for r in alive) == 0  # the output was copied into its arena
    want = PolarsBackend().evaluate([node], m, {})[node]
    assert_same(got, want, "chain")


def test_wide_graph_frees_intermediates_but_keeps_outputs() -> None:
    """192 indicators, 5 thresholds each: the backend holds the outputs and, per indicator, the
    arrays of about two depths of its expansion."""
    market = synthetic_slice()
    b = Builder()
    outs = []
    for ticker in ("SPY", "QQQ", "TLT", "GLD"):
        src = ticker_source(b, ticker)
        for metric in ("RSI", "SMA", "EMA", "Standard Deviation"):
            for w in range(2, 14):
                outs.append(expand(b, metric, src, w))
    conds = [b.node("gt", (), (o, b.const(float(v)))) for o in outs for v in range(5)]
    backend = NumbaBackend()
    got = backend.evaluate(conds, market, {})
    assert backend.live_peak <= len(conds) + 2 * len(outs) + 20
    assert backend.freed + backend.inner >= backend.nodes - len(conds) - 20
    want = PolarsBackend().evaluate(conds, market, {})
    for c in conds:
        assert_same(got[c], want[c], repr(c))


def _in_place_graph() -> tuple[Builder, dict[str, Node]]:
    b = Builder()
    close = b.price("SPY")
    m5, m7, m9 = (b.node("rolling_mean", (n,), (close,)) for n in (5, 7, 9))
    diff = b.node("sub", (), (m5, m7))
    scaled = b.node("div", (), (diff, m7))
    valid = b.node("valid_from", (12,), (scaled, close))
    above = b.node("gt", (), (m9, m7))
    chosen = b.node("where", (), (above, m9, m7))
    inside = b.node("and", (), (b.node("gt", (), (close, m9)), b.node("lt", (), (close, m7))))
    return b, dict(close=close, m5=m5, m7=m7, m9=m9, diff=diff, scaled=scaled, valid=valid, above=above,
                   chosen=chosen, inside=inside)


@pytest.mark.parametrize("fusion", [False, True], ids=["unfused", "fused"])
def test_element_wise_nodes_write_over_an_input_only_they_read(fusion: bool) -> None:
    """Unfused (as the CUDA backend plans): sub over its only-read left side, div and valid_from
    down the chain, and over a condition. Fused: sub, gt and the and's comparisons are inner (no
    row); div, the root of (sub, div), writes over m5, an outside input only it reads. Either
    way an input read twice, or an output, keeps its row and every value equals the Polars
    backend."""
    market = synthetic_slice()
    _, g = _in_place_graph()
    outputs = [g["valid"], g["chosen"], g["inside"], g["m7"]]
    plan = numba_cpu._Plan(outputs, numba_cpu._Ctx(market, {}), fused=numba_cpu._run_fused if fusion else None)
    row = {node: plan.row[k] for k, node in enumerate(plan.order)}
    arena = {node: plan.condition[k] for k, node in enumerate(plan.order)}
    m5, m7, m9, inside = g["m5"], g["m7"], g["m9"], g["inside"]
    assert row[g["scaled"]] == row[m5] and row[g["valid"]] == row[m5]
    if fusion:
        assert plan.inner == 4
        for node in (g["diff"], g["above"], *inside.inputs):
            assert row[node] == -1
        assert row[inside] >= 0 and arena[inside] == 1
        (step,) = [s for s in plan.steps if s[0] is numba_cpu._run_fused]
        starts, slots = step[2]
        assert starts.tolist() == [0, 2, 4, 7] and slots == 2  # (sub, div), (gt, where), (gt, lt, and)
    else:
        assert plan.inner == 0
        assert row[g["diff"]] == row[m5]
        assert row[inside] == row[inside.inputs[0]] and arena[inside] == arena[inside.inputs[0]] == 1
    for node in (m7, m9):  # read twice: copied into a row of their own
        assert row[g["chosen"]] != row[node] or arena[g["chosen"]] != arena[node]
    got = NumbaBackend(fuse=fusion).evaluate(outputs, market, {})
    want = PolarsBackend().evaluate(outputs, market, {})
    for node in outputs:
        assert_same(got[node], want[node], repr(node))
    valid = g["valid"]
    assert np.isnan(got[valid][:12]).all() and not np.isnan(got[valid][12:]).all()


@pytest.mark.parametrize("threads", [False, True], ids=["serial", "threaded"])
def test_fused_clusters_give_the_unfused_bits(threads: bool, monkeypatch) -> None:
    """Random element-wise trees (arithmetic, comparisons, Kleene logic, where; shared nodes and
    outputs among them) over series with gaps, windows and constants, on 2,600 days (six day
    tiles, the last one partial), and catalogue indicators: fused, every value is the unfused
    plan's to the bit (whose row kernels tests compare with the per-node kernels and Polars)."""
    market, branches, s, b = _random_setup(2600)
    rng = np.random.default_rng(11)
    n, k = b.node, b.const
    floats = [s["A"], s["B"], s["g"], s["wide"], k(2.0), k(0.0), k(NAN),
              n("rolling_mean", (5,), (s["A"],)), n("shift", (3,), (s["g"],))]
    floats += [expand(b, metric, ticker_source(b, "A"), 9) for metric in ("RSI", "Stochastic %K", "Drawdown")]
    conds = [n("gt", (), (s["g"], k(0.1))), n("branch", ("truth",))]
    conds[1] = n("ge", (), (conds[1], k(0.5)))
    outputs = []
    for _ in range(400):
        kind = rng.integers(4)
        if kind == 0:
            op = ("add", "sub", "mul", "div")[rng.integers(4)]
            node = n(op, (), (floats[rng.integers(len(floats))], floats[rng.integers(len(floats))]))
        elif kind == 1:
            op = ("gt", "lt", "ge", "le")[rng.integers(4)]
            node = n(op, (), (floats[rng.integers(len(floats))], floats[rng.integers(len(floats))]))
        elif kind == 2:
            op = ("and", "or")[rng.integers(2)]
            node = n(op, (), (conds[rng.integers(len(conds))], conds[rng.integers(len(conds))]))
        else:
            node = n("where", (), (conds[rng.integers(len(conds))], floats[rng.integers(len(floats))],
                                   floats[rng.integers(len(floats))]))
        (conds if node.kind == "b" else floats).append(node)
        if rng.random() < 0.1:
            outputs.append(node)
    outputs += floats[-40:] + conds[-40:]
    monkeypatch.setattr(numba_cpu, "_THREADED_NODES", 1 if threads else 10**9)
    fused = NumbaBackend()
    got = fused.evaluate(outputs, market, branches)
    assert fused.inner > 50
    want = NumbaBackend(fuse=False).evaluate(outputs, market, branches)
    for node in outputs:
        np.testing.assert_array_equal(got[node], want[node], err_msg=repr(node))


def test_an_overflow_is_missing_in_every_output_that_can_hold_it() -> None:
    """A window sum of values near the largest float overflows to ±inf; the boundary makes it
    missing in the window's output and in every output that passes its values on (valid_from,
    shift, neg, min2, where), while arithmetic makes it missing itself. Only outputs that may hold
    ±inf are checked at the boundary (`_Plan.unbounded`)."""
    days = 40
    huge = np.full(days, 1.5e308)
    huge[::7] = -1.6e308
    market = make_market({"A": list(np.linspace(10.0, 20.0, days))})
    b = Builder()
    x = b.node("branch", ("huge",))
    close = b.price("A")
    total = b.node("rolling_sum", (3,), (x,))
    outputs = {
        "sum": total,
        "valid_from": b.node("valid_from", (2,), (total, close)),
        "shift": b.node("shift", (1,), (total,)),
        "neg": b.node("neg", (), (total,)),
        "min2": b.node("min2", (), (total, close)),
        "where": b.node("where", (), (b.node("gt", (), (close, b.const(15.0))), total, close)),
        "mul": b.node("mul", (), (total, b.const(1.0))),
        "ratio": b.node("div", (), (close, b.node("rolling_mean", (3,), (close,)))),
    }
    nodes = list(outputs.values())
    plan = numba_cpu._Plan(nodes, numba_cpu._Ctx(market, {"huge": huge}))
    assert dict(zip(outputs, plan.unbounded)) == {
        "sum": True, "valid_from": True, "shift": True, "neg": True, "min2": True, "where": True,
        "mul": False, "ratio": False}
    got = NumbaBackend().evaluate(nodes, market, {"huge": huge})
    want = PolarsBackend().evaluate(nodes, market, {"huge": huge})
    for name, node in outputs.items():
        assert not np.isinf(got[node]).any(), name
        assert_same(got[node], want[node], name)
    assert np.isnan(got[total][2:]).sum() > 5 and np.isfinite(got[total]).sum() > 5  # overflows, and sums


def test_arena_memory_is_lent_again_only_when_no_array_views_it() -> None:
    buffers = numba_cpu._Buffers()

    def address(a: np.ndarray) -> int:
        return a.__array_interface__["data"][0]

    days = numba_cpu._MAPPED // 16  # 2 float rows: the smallest arena kept
    first = buffers.arena(3, days, np.float64)
    row = first[1]
    where = address(first)
    del first
    other = buffers.arena(3, days, np.float64)
    assert address(other) != where  # `row` still views the first memory
    del row
    again = buffers.arena(2, days, np.float64)  # smaller fits: the same memory, lent again
    assert address(again) == where and again.shape == (2, days) and again.flags.writeable
    assert buffers.arena(2, 5, np.float64).base is None  # small: NumPy's own, from the heap
    del again, other  # two buffers back, both all zeros: equal contents, still two buffers
    one, two = buffers.arena(2, days, np.float64), buffers.arena(2, days, np.float64)
    assert address(one) != address(two)


def test_values_of_an_earlier_call_survive_a_later_call(monkeypatch) -> None:
    monkeypatch.setattr(numba_cpu, "_MAPPED", 0)  # every arena from the kept buffers
    market = synthetic_slice()
    b = Builder()
    close = b.price("SPY")
    means = [b.node("rolling_mean", (n,), (close,)) for n in range(2, 40)]
    backend = NumbaBackend()
    before = backend.evaluate(means[:20], market, {})
    copies = {node: values.copy() for node, values in before.items()}
    backend.evaluate(means[20:], market, {})  # its arena's memory went back: the next may reuse it
    backend.evaluate(means[20:], market, {})
    for node, values in before.items():
        np.testing.assert_array_equal(values, copies[node])


def test_groups_run_in_threads_give_the_serial_bits(monkeypatch) -> None:
    """The nodes of one primitive at one depth are one kernel call whose members run in Numba's
    threads (in a graph of `_THREADED_NODES` nodes or more): the values are the serial run's to
    the bit, and far fewer calls than nodes."""
    market = synthetic_slice()
    b = Builder()
    outs = []
    for ticker in ("SPY", "QQQ", "TLT", "GLD", "QQQ/SPY"):
        src = ticker_source(b, ticker)
        for metric in ("RSI", "Standard Deviation", "Max Drawdown", "ADX"):
            for w in (3, 9, 21):
                outs.append(expand(b, metric, src, w))
    conds = [b.node("gt", (), (o, b.const(v))) for o in outs[::7] for v in (0.5, 30.0)]
    monkeypatch.setattr(numba_cpu, "_THREADED_NODES", 1)
    backend = NumbaBackend()
    threaded = backend.evaluate(outs + conds, market, {})
    assert backend.calls * 4 < backend.nodes
    monkeypatch.setattr(gpubt.parallel, "_serial_only", True)
    serial = NumbaBackend().evaluate(outs + conds, market, {})
    for node in outs + conds:
        np.testing.assert_array_equal(threaded[node], serial[node], err_msg=repr(node))


def test_lines_from_a_first_day_equal_the_whole_run_there() -> None:
    """A `lines` node asked for from day f (the backtest's first read) is Null before f and
    equal to the whole computation from f on: its crosses and forDays read the days before f."""
    market, branches, s, b = _random_setup(N_DAYS)
    fused = _line_lists(b, s)
    for backend in (NumbaBackend(), PolarsBackend()):
        whole = backend.evaluate(fused, market, branches)
        for f in (1, 7, 300, N_DAYS - 1, N_DAYS):
            got = backend.evaluate(fused, market, branches, dict.fromkeys(fused, f))
            for node in fused:
                assert (got[node][:f] == NULL).all(), f"{backend.name} {f}: {node.params}"
                np.testing.assert_array_equal(got[node][f:], whole[node][f:], err_msg=f"{backend.name} {f}")


@pytest.mark.parametrize("threads", [False, True], ids=["serial", "threaded"])
def test_outputs_read_from_a_later_day_equal_the_whole_run_there(threads: bool, monkeypatch) -> None:
    """Outputs asked for from day f on (`first`: the backtest reads nothing before) are computed
    from there back through their windows and shifts only, recursions and `valid_from` anchors
    over every day: every catalogue metric (several windows, a ticker and a ratio), fused
    element-wise trees and comparisons on them, shifts both ways and condition lists over them
    equal the whole run from f on; before f each day is missing (Null) or the whole run's value
    (`Backend.evaluate`), never anything else."""
    market, branches, s, b = _random_setup(2600)
    indicators = [expand(b, m.name, ticker_source(b, t), w)
                  for m in METRICS for t in ("A", "A/B") for w in (2, 9, 40)]
    rng = np.random.default_rng(5)
    k = b.const
    derived = []
    for x, y in zip(indicators[::3], indicators[1::3]):
        spread = b.node("sub", (), (b.node("mul", (), (x, k(2.0))), y))
        derived += [b.node("where", (), (b.node("gt", (), (x, y)), spread, b.node("shift", (3,), (y,)))),
                    b.node("and", (), (b.node("gt", (), (spread, k(0.0))), b.node("le", (), (x, k(50.0))))),
                    b.node("shift", (-2,), (x,))]
    lines = [lines_node(b, [[("crossAbove", x, y, 0.0, 1)], [("gt", x, None, 30.0, 4)]])
             for x, y in zip(indicators[::5], indicators[2::5])]
    outputs = [*indicators, *derived, *lines]
    first = {node: int(rng.integers(0, 2600)) for node in outputs}
    first[indicators[0]] = 0
    first[indicators[1]] = 2600 + 10  # read on no day of the market
    monkeypatch.setattr(numba_cpu, "_THREADED_NODES", 1 if threads else 10**9)
    whole = NumbaBackend().evaluate(outputs, market, branches)
    got = NumbaBackend().evaluate(outputs, market, branches, first)
    for node in outputs:
        f = first[node]
        head, same = got[node][:f], whole[node][:f]
        missing = head == NULL if node.kind == "b" else np.isnan(head)
        assert (missing | (head == same)).all(), repr(node)
        np.testing.assert_array_equal(got[node][f:], whole[node][f:], err_msg=f"{node!r} from {f}")
    rest = split(outputs)[1]
    plan = numba_cpu._Plan(rest, numba_cpu._Ctx(market, branches), since=[first.get(n, 0) for n in rest])
    windows = [k for k, node in enumerate(plan.order) if node.op in ("rolling_mean", "rolling_std", "rolling_max")]
    assert sum(plan.need[k] > 0 for k in windows) > len(windows) // 2  # computed from later days


def _line_lists(b: Builder, s: dict[str, Node]) -> list[Node]:
    """`lines` nodes covering every line code, constant and series right sides, a NaN threshold,
    a constant and a date range as inputs, forDays 1–10, AND-terms, OR-terms and both."""
    nan = float("nan")
    A, B, g, wide = s["A"], s["B"], s["g"], s["wide"]
    dates = b.node("date_between", (11, 15, 2, 10))
    two = b.const(2.0)
    one = {
        "gt": [("gt", g, None, 0.0, 1), ("gt", A, B, 0.0, 1), ("gt", wide, None, 50.0, 3)],
        "lt": [("lt", g, None, 0.5, 1), ("lt", wide, g, 0.0, 2), ("lt", two, None, 3.0, 1)],
        "crossAbove": [("crossAbove", g, wide, 0.0, 1), ("crossAbove", g, None, 0.25, 1),
                       ("crossAbove", A, None, nan, 1), ("crossAbove", B, g, 0.0, 2)],
        "crossBelow": [("crossBelow", A, B, 0.0, 1), ("crossBelow", wide, None, 50.0, 3),
                       ("crossBelow", g, two, 0.0, 1)],
        "is": [("is", dates, None, 0.0, 1), ("is", dates, None, 0.0, 10)],
    }
    flat = [line for group in one.values() for line in group]
    out = [lines_node(b, [[line]]) for line in flat]  # each line alone
    out += [lines_node(b, [flat[:4]]), lines_node(b, [[line] for line in flat[3:9]]),
            lines_node(b, [flat[:2], [flat[5]], flat[8:12], [flat[-1], flat[2]]]),
            lines_node(b, [[("gt", g, None, nan, 1), ("lt", g, None, 0.0, 1)]]),  # NULL AND
            lines_node(b, [[("gt", g, None, nan, 1)], [("lt", g, None, 9.0, 1)]])]  # NULL OR
    return out


@pytest.mark.parametrize("days", [N_DAYS, 2600])  # 2,600: crosses and forDays across day tiles
def test_lines_equal_their_expansion_into_primitives(days: int) -> None:
    """A `lines` node (one fused kernel pass on numba and polars) equals the primitive graph it
    stands for (comparisons, shifted comparisons, rolling_all, Kleene and/or) as the Polars
    backend evaluates it node by node: an independent implementation of every rule."""
    market, branches, s, b = _random_setup(days)
    fused = _line_lists(b, s)
    primitives = lowered(fused)
    assert all(p.op != "lines" for p in primitives)
    want = PolarsBackend().evaluate(primitives, market, branches)
    for backend in (NumbaBackend(), PolarsBackend()):
        got = backend.evaluate([*fused, s["g"]], market, branches)
        for node, primitive in zip(fused, primitives):
            assert_same(got[node], want[primitive], f"{backend.name}: {node.params}")
        np.testing.assert_array_equal(got[s["g"]], branches["g"])  # an input asked for too
    values = [want[p] for p in primitives]
    assert (values[0] == TRUE).any() and (values[0] == FALSE).any() and (values[0] == NULL).any()
    assert any((v == NULL).all() for v in values)  # the NaN threshold
    assert all(v[0] == NULL for v, p in zip(values, fused) if p.params[0][0][0].startswith("cross"))
