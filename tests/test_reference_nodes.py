"""The reference interpreter (the oracle) against allocations and backtests worked out by hand.

Every expected number below is derived in the comments next to it from the tiny markets built
here, using metrics whose values are obvious: `Current Price` (the close, window ignored),
`Cumulative Return` (100·(c_t/c_{t−p} − 1), first valid at index p) and `Simple Moving Average`.
Spec: shared/spec/flownode.md §2.1, §3, §5, §6, §7; gaps: docs/decisions.md.

Positions in tickers that are not in the market (`T`, `E`, `Z`, …) are fine for
`Interpreter.allocation`: a position node never reads prices, so `{"T": 1}` marks "the then side"
and `{"E": 1}` "the else side".
"""

from __future__ import annotations

import inspect

import datetime as dt
import itertools
import math
from typing import Any

import numpy as np
import pytest

from gpubt.errors import GpubtError
from gpubt.alloc.allocate import Allocator
from gpubt.backends import REGISTRY, get_backend
from gpubt.compiler.compile import compile_strategy
from gpubt.compiler.execute import evaluate_signals
from gpubt.data.market import Market
from gpubt.reference.backtest import run_reference
from gpubt.reference.interpreter import Interpreter
from gpubt.schema.parse import Strategy, parse_request
from gpubt.sim.period import MIN_HISTORY

try:  # pytest ≥ 9 registers tests/conftest.py as `tests.conftest` (rootdir on sys.path)
    from tests.conftest import business_days, make_market
except ImportError:  # older pytest: tests/ itself is on sys.path
    from conftest import business_days, make_market  # type: ignore[no-redef]

NAN = math.nan
_ids = itertools.count()


# -- tree builders ---------------------------------------------------------------------------------


def _id(prefix: str) -> str:
    return f"{prefix}{next(_ids)}"


def P(*tickers: str, **kw: Any) -> dict:
    """A position node."""
    return {"id": kw.pop("id", None) or _id("p"), "kind": "position", "positions": list(tickers), **kw}


def THEN() -> dict:
    return P("T")


def ELSE() -> dict:
    return P("E")


def BASIC(*children: dict, **kw: Any) -> dict:
    return {"id": kw.pop("id", None) or _id("b"), "kind": "basic", "children": {"next": list(children)}, **kw}


def IND(conditions: list[dict], then: list[dict] | None = None, else_: list[dict] | None = None, **kw: Any) -> dict:
    """An indicator node; by default then = position T, else = position E."""
    return {
        "id": kw.pop("id", None) or _id("i"),
        "kind": "indicator",
        "conditions": conditions,
        "children": {"then": [THEN()] if then is None else then, "else": [ELSE()] if else_ is None else else_},
        **kw,
    }


def C(metric: str, ticker: str, comparator: str = "gt", threshold: float = 0.0, window: int = 1, **kw: Any) -> dict:
    """A condition line."""
    return {
        "id": _id("c"),
        "metric": metric,
        "ticker": ticker,
        "comparator": comparator,
        "threshold": threshold,
        "window": window,
        **kw,
    }


def typed(cond: dict, kind: str) -> dict:
    return {**cond, "type": kind}


def strategy(tree: dict, **request: Any) -> Strategy:
    return parse_request({"payload": tree, **request})


def interpreter(tree: dict, market, start: int = 0, **request: Any) -> Interpreter:
    return Interpreter(strategy(tree, **request), market, start=start)


# Every test that reads allocations runs on the reference and on each compiled backend: the
# expectations below are hand-worked, so they hold for every engine (spec parity, issue 4).
ENGINES = ["reference", *REGISTRY]
_engine = {"name": "reference"}


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "allocations(" in inspect.getsource(metafunc.function):
        metafunc.fixturenames.append("engine")
        metafunc.parametrize("engine", ENGINES, indirect=True)


@pytest.fixture
def engine(request: pytest.FixtureRequest):
    _engine["name"] = request.param
    yield request.param
    _engine["name"] = "reference"


def allocations(tree: dict, market, days=None, start: int = 0, **request: Any) -> list[dict]:
    """The root's allocation on each day (all days by default), by the engine under test."""
    days = range(market.n_days) if days is None else days
    if _engine["name"] == "reference":
        it = interpreter(tree, market, start=start, **request)
        return [it.allocation(it.strategy.root, t) for t in days]
    program = compile_strategy(strategy(tree, **request), market)
    allocator = Allocator(market, {}, start)
    evaluate_signals(program, market, get_backend(_engine["name"]), allocator)
    matrix = allocator.allocation(program.root)
    return [
        {ticker: float(matrix[t, j]) for j, ticker in enumerate(market.tickers) if abs(matrix[t, j]) > 1e-15}
        for t in days
    ]


def assert_alloc(actual: dict, expected: dict) -> None:
    assert set(actual) == set(expected), (actual, expected)
    for ticker, weight in expected.items():
        assert actual[ticker] == pytest.approx(weight, rel=1e-12, abs=1e-12), (ticker, actual, expected)


def assert_allocs(actual: list[dict], expected: list[dict]) -> None:
    assert len(actual) == len(expected)
    for t, (a, e) in enumerate(zip(actual, expected)):
        try:
            assert_alloc(a, e)
        except AssertionError as exc:
            raise AssertionError(f"day {t}: {a} != {e}") from exc


T_, E_ = {"T": 1.0}, {"E": 1.0}

# A market for plain truth values: A = 10 on every day.
FLAT = make_market({"A": [10.0] * 5})
# Fixed truths on FLAT (any day t < 50): TRUE: 10 > 0; FALSE: 10 < 0; NULL: a 50-day return
# needs 50 earlier days, so it is missing (Null) on every day of a 5-day market.
TRUE = C("Current Price", "A", "gt", 0)
FALSE = C("Current Price", "A", "lt", 0)
NULL = C("Cumulative Return", "A", "gt", 0, window=50)


def truth(conditions: list[dict], t: int = 2, market=FLAT, group: str | None = None):
    """(three-valued result of the list, allocation of an indicator node holding it)."""
    tree = IND(conditions)
    it = interpreter(tree, market)
    root = it.strategy.root
    return it.lines(root, root.conditions, t, group=group), it.allocation(root, t)


# ==================================================================================================
# position (§3)


def test_position_equal_weights_dedup_and_skips() -> None:
    # distinct valid tickers of [A, B, A, "", Empty] = [A, B] → ½ each
    assert_alloc(allocations(P("A", "B", "A", "", "Empty"), FLAT, [0])[0], {"A": 0.5, "B": 0.5})
    # three distinct → ⅓ each
    assert_alloc(allocations(P("C", "A", "B"), FLAT, [0])[0], {"A": 1 / 3, "B": 1 / 3, "C": 1 / 3})


@pytest.mark.parametrize("positions", [[], [""], ["Empty"], ["", "Empty", "Empty"]])
def test_position_without_valid_ticker_is_empty(positions: list[str]) -> None:
    assert allocations(P(*positions), FLAT, [0])[0] == {}


# ==================================================================================================
# basic + weightings (§3.2)


def test_basic_equal() -> None:
    # children {A}, {B}, {B ½, C ½} at ⅓ each → A ⅓, B ⅓ + ⅙ = ½, C ⅙
    tree = BASIC(P("A"), P("B"), P("B", "C"))
    assert_alloc(allocations(tree, FLAT, [0])[0], {"A": 1 / 3, "B": 0.5, "C": 1 / 6})


def test_basic_defined_uses_child_window_missing_is_one() -> None:
    # weights 3 : 1 : (missing → 1) → 3/5, 1/5, 1/5
    tree = BASIC(P("A", window=3), P("B", window=1), P("C"), weighting="defined")
    assert_alloc(allocations(tree, FLAT, [0])[0], {"A": 0.6, "B": 0.2, "C": 0.2})


def test_basic_defined_counts_only_active_children() -> None:
    # the empty child (window 5) is not active: A 3/(3+1), B 1/(3+1)
    tree = BASIC(P("A", window=3), P("Empty", window=5), P("B", window=1), weighting="defined")
    assert_alloc(allocations(tree, FLAT, [0])[0], {"A": 0.75, "B": 0.25})


def test_basic_defined_zero_weights() -> None:
    # decisions.md: a child with weight 0 among positive ones gets 0; all-zero → equal
    tree = BASIC(P("A", window=2), P("B", window=0), weighting="defined")
    assert_alloc(allocations(tree, FLAT, [0])[0], {"A": 1.0})
    tree = BASIC(P("A", window=0), P("B", window=0), weighting="defined")
    assert_alloc(allocations(tree, FLAT, [0])[0], {"A": 0.5, "B": 0.5})


# Two single-ticker children with known daily returns (6 days):
#   A: 100, 100, 100, 102, 102, 99.96     r = –, 0, 0, +.02, 0, −.02
#   B: 100, 100, 100, 101, 102.01, 99.9698 r = –, 0, 0, +.01, +.01, −.02
# Branch series of `position A` starts at day 0 (its warm-up), so its returns are r_A from day 1.
# volWindow 3 on day 5 → A's returns {.02, 0, −.02}: mean 0, σ_A = √(.0008/3) (population)
#                         B's returns {.01, .01, −.02}: mean 0, σ_B = √(.0006/3) = √.0002
# σ_A/σ_B = √(4/3) = 2/√3.
# inverse: w_A = (1/σ_A)/(1/σ_A + 1/σ_B) = σ_B/(σ_A + σ_B) = √3/(2 + √3) ≈ 0.4641
# pro:     w_A = σ_A/(σ_A + σ_B) = 2/(2 + √3) ≈ 0.5359
VOL = make_market(
    {"A": [100, 100, 100, 102, 102, 99.96], "B": [100, 100, 100, 101, 102.01, 99.9698], "F": [50.0] * 6}
)
S3 = math.sqrt(3.0)


def test_branch_volatility_is_population_std() -> None:
    it = interpreter(BASIC(P("A"), P("B"), weighting="inverse", volWindow=3), VOL)
    a, b = it.strategy.root.slot("next")
    assert it.branch_volatility(a, 3, 5) == pytest.approx(math.sqrt(0.0008 / 3), rel=1e-9)
    assert it.branch_volatility(b, 3, 5) == pytest.approx(math.sqrt(0.0002), rel=1e-9)
    # day 2 with window 3 would need the return of day 0, which does not exist → missing
    assert it.branch_volatility(a, 3, 2) is None
    assert it.branch_volatility(a, 3, 3) == pytest.approx(math.sqrt((0.02 - 0.02 / 3) ** 2 / 3 + 2 * (0.02 / 3) ** 2 / 3))


@pytest.mark.parametrize(
    ("weighting", "expected"),
    [
        ("inverse", {"A": S3 / (2 + S3), "B": 2 / (2 + S3)}),
        ("pro", {"A": 2 / (2 + S3), "B": S3 / (2 + S3)}),
    ],
)
def test_inverse_and_pro_weights(weighting: str, expected: dict) -> None:
    tree = BASIC(P("A"), P("B"), weighting=weighting, volWindow=3)
    assert_alloc(allocations(tree, VOL, [5])[0], expected)


@pytest.mark.parametrize("weighting", ["inverse", "pro"])
def test_inverse_and_pro_fall_back_to_equal(weighting: str) -> None:
    # σ missing (day 2: window 3 reaches the return-less day 0) → equal
    tree = BASIC(P("A"), P("B"), weighting=weighting, volWindow=3)
    assert_alloc(allocations(tree, VOL, [2])[0], {"A": 0.5, "B": 0.5})
    # F is flat: σ_F = 0 → equal among all three
    tree = BASIC(P("A"), P("B"), P("F"), weighting=weighting, volWindow=3)
    assert_alloc(allocations(tree, VOL, [5])[0], {"A": 1 / 3, "B": 1 / 3, "F": 1 / 3})


def test_inverse_uses_the_slot_vol_window() -> None:
    # empty condition list → True → then, combined with weightingThen/volWindowThen (3, as above);
    # the node's own volWindow 1 would give σ of one return = 0 → equal.
    tree = IND([], then=[P("A"), P("B")], weighting="equal", weightingThen="inverse", volWindow=1, volWindowThen=3)
    assert_alloc(allocations(tree, VOL, [5])[0], {"A": S3 / (2 + S3), "B": 2 / (2 + S3)})
    tree = IND([], then=[P("A"), P("B")], weightingThen="inverse", volWindow=1)
    assert_alloc(allocations(tree, VOL, [5])[0], {"A": 0.5, "B": 0.5})


def test_capped_excess_to_fallback() -> None:
    # equal ⅓ each; A capped at 20/100 = .2 → excess ⅓ − .2 = 2/15 to the fallback D;
    # B has no cap; C's cap .5 > ⅓ does nothing
    tree = BASIC(P("A", window=20), P("B"), P("C", window=50), weighting="capped", cappedFallback="D")
    assert_alloc(allocations(tree, FLAT, [0])[0], {"A": 0.2, "B": 1 / 3, "C": 1 / 3, "D": 2 / 15})


def test_capped_excess_to_cash_without_fallback() -> None:
    # same without a fallback: the 2/15 stays cash (sum 13/15), not redistributed to siblings
    tree = BASIC(P("A", window=20), P("B"), P("C", window=50), weighting="capped")
    out = allocations(tree, FLAT, [0])[0]
    assert_alloc(out, {"A": 0.2, "B": 1 / 3, "C": 1 / 3})
    assert sum(out.values()) == pytest.approx(13 / 15)


def test_capped_fallback_adds_to_a_held_ticker() -> None:
    # A ½ → capped .2, excess .3 to B: B = ½ + .3 = .8
    tree = BASIC(P("A", window=20), P("B"), weighting="capped", cappedFallback="B")
    assert_alloc(allocations(tree, FLAT, [0])[0], {"A": 0.2, "B": 0.8})


def test_inactive_child_share_goes_to_siblings() -> None:
    # 4 children, two empty (a position of "Empty"; an indicator whose False side is empty)
    # → A and B ½ each, not ¼
    tree = BASIC(P("A"), P("Empty"), IND([FALSE], else_=[P("Empty")]), P("B"))
    assert_alloc(allocations(tree, FLAT, [0])[0], {"A": 0.5, "B": 0.5})
    # all children empty → the node is empty
    assert allocations(BASIC(P("Empty"), P("")), FLAT, [0])[0] == {}


def test_child_cash_stays_cash() -> None:
    # child 2 is capped with cash: B cap .25 of ½ → B .25, C .5, cash .25
    # parent equal: A ½, B ½·.25 = .125, C ½·.5 = .25; total .875 (no renormalisation)
    capped = BASIC(P("B", window=25), P("C"), weighting="capped")
    out = allocations(BASIC(P("A"), capped), FLAT, [0])[0]
    assert_alloc(out, {"A": 0.5, "B": 0.125, "C": 0.25})
    # child 2 is a scaling node with b = ½ and an empty else side → {B: ½}; parent: A ½, B ¼
    scaling = {
        "id": "s", "kind": "scaling", "scaleMetric": "Current Price", "scaleTicker": "A",
        "scaleFrom": 0, "scaleTo": 20,  # A = 10 → b = (10 − 0)/20 = ½
        "children": {"then": [P("B")], "else": [P("Empty")]},
    }
    out = allocations(BASIC(P("A"), scaling), FLAT, [0])[0]
    assert_alloc(out, {"A": 0.5, "B": 0.25})


# ==================================================================================================
# indicator and conditions (§2.1, §3)


def test_indicator_true_false_null() -> None:
    # A = 10, 11, 12, 13, 14
    market = make_market({"A": [10, 11, 12, 13, 14]})
    # Current Price > 11.5: F, F, T, T, T
    assert_allocs(allocations(IND([C("Current Price", "A", "gt", 11.5)]), market), [E_, E_, T_, T_, T_])
    # 3-day return > 20: days 0–2 Null (needs 3 earlier days) → else;
    # day 3: 100(13/10 − 1) = 30 > 20 → then; day 4: 100(14/11 − 1) = 27.3 → then
    tree = IND([C("Cumulative Return", "A", "gt", 20, window=3)])
    assert_allocs(allocations(tree, market), [E_, E_, E_, T_, T_])
    it = interpreter(tree, market)
    cond = it.strategy.root.conditions[0]
    assert [it.condition(it.strategy.root, cond, t) for t in range(5)] == [None, None, None, True, True]


def test_empty_condition_list_is_true() -> None:
    assert truth([]) == (True, T_)


@pytest.mark.parametrize(
    ("lines", "expected"),
    [
        ([TRUE], True),
        ([FALSE], False),
        ([NULL], None),
        # one AND-term
        ([TRUE, typed(TRUE, "and")], True),
        ([TRUE, typed(FALSE, "and")], False),
        ([TRUE, typed(NULL, "and")], None),  # no False, a Null → Null
        ([NULL, typed(FALSE, "and")], False),  # any False → False, even with a Null
        ([TRUE, typed(TRUE, "if")], True),  # `if` after the first line joins the term like `and`
        ([TRUE, typed(FALSE, "if")], False),
        # OR of terms
        ([FALSE, typed(TRUE, "or")], True),
        ([FALSE, typed(FALSE, "or")], False),
        ([FALSE, typed(NULL, "or")], None),  # no True, a Null → Null
        ([NULL, typed(TRUE, "or")], True),  # any True → True, even with a Null
        # (F ∧ T) ∨ T = T;  T ∨ (F ∧ N) = T ∨ F = T;  N ∨ (F ∧ T) = N ∨ F = N;  (T ∧ T) ∨ (N ∧ F) = T
        ([FALSE, typed(TRUE, "and"), typed(TRUE, "or")], True),
        ([TRUE, typed(FALSE, "or"), typed(NULL, "and")], True),
        ([NULL, typed(FALSE, "or"), typed(TRUE, "and")], None),
        ([FALSE, typed(TRUE, "or"), typed(TRUE, "and"), typed(NULL, "or"), typed(FALSE, "and")], True),
        # (T ∧ F) ∨ (N ∧ T) = F ∨ N = N
        ([TRUE, typed(FALSE, "and"), typed(NULL, "or"), typed(TRUE, "and")], None),
        # a first line of type `or` behaves like `if` (V1 made the whole list True): T ∧ F = F
        ([typed(TRUE, "or"), typed(FALSE, "and")], False),
        ([typed(FALSE, "or")], False),
        ([typed(FALSE, "or"), typed(TRUE, "or")], True),
        ([typed(NULL, "and")], None),
    ],
)
def test_condition_lists(lines: list[dict], expected) -> None:
    value, alloc = truth(lines)
    assert value is expected
    assert alloc == (T_ if expected is True else E_)  # Null → else


@pytest.mark.parametrize(
    ("lines", "group", "expected"),
    [
        ([TRUE, typed(FALSE, "or")], "and", False),  # without groupLogic: T ∨ F = T
        ([TRUE, typed(NULL, "or")], "and", None),
        ([FALSE, typed(TRUE, "and")], "or", True),  # without groupLogic: F ∧ T = F
        ([FALSE, typed(NULL, "and")], "or", None),
        ([FALSE, FALSE], "or", False),
    ],
)
def test_group_logic(lines: list[dict], group: str, expected) -> None:
    assert truth(lines, group=group)[0] is expected


def test_gt_lt_are_strict() -> None:
    # A = 10: 10 > 10 and 10 < 10 are both False (not Null)
    assert truth([C("Current Price", "A", "gt", 10)])[0] is False
    assert truth([C("Current Price", "A", "lt", 10)])[0] is False
    assert truth([C("Current Price", "A", "gt", 9.999)])[0] is True
    assert truth([C("Current Price", "A", "lt", 10.001)])[0] is True


CROSS = make_market({"A": [10, 12, 9, 11, 11, 13, 8]})


def _condition_values(cond: dict, market, start: int = 0) -> list:
    it = interpreter(IND([cond]), market)
    root = it.strategy.root
    return [it.condition(root, root.conditions[0], t) for t in range(start, market.n_days)]


def test_cross_above_and_below_threshold() -> None:
    # A = 10, 12, 9, 11, 11, 13, 8 against 11
    # crossAbove (L₋₁ < 11 and L ≥ 11): day 0 Null; 1: 10<11, 12≥11 T; 2: 12<11? F; 3: 9<11, 11≥11 T;
    #   4: 11<11? F; 5: F; 6: 13<11? F
    assert _condition_values(C("Current Price", "A", "crossAbove", 11), CROSS) == [
        None, True, False, True, False, False, False,
    ]
    # crossBelow (L₋₁ > 11 and L ≤ 11): 0 Null; 1: 10>11? F; 2: 12>11, 9≤11 T; 3: F; 4: 11>11? F;
    #   5: F; 6: 13>11, 8≤11 T
    assert _condition_values(C("Current Price", "A", "crossBelow", 11), CROSS) == [
        None, False, True, False, False, False, True,
    ]


def test_cross_against_a_series_is_null_while_any_value_is_missing() -> None:
    # right = SMA(A, 3): –, –, 31/3, 32/3, 31/3, 35/3, 32/3 (missing on days 0 and 1)
    # day 2 needs SMA on day 1 → Null. crossAbove: 3: 9 < 10.33 and 11 ≥ 10.67 T; 4: 11 < 10.67? F;
    #   5: 11 < 10.33? F; 6: 13 < 11.67? F.  crossBelow: 6: 13 > 11.67 and 8 ≤ 10.67 T, else F.
    above = C("Current Price", "A", "crossAbove", expanded=True, rightMetric="Simple Moving Average", rightWindow=3)
    below = {**above, "comparator": "crossBelow"}
    assert _condition_values(above, CROSS) == [None, None, None, True, False, False, False]
    assert _condition_values(below, CROSS) == [None, None, None, False, False, False, True]


def test_for_days() -> None:
    # A > 10.5 on A = 10, 12, 9, 11, 11, 13, 8: F, T, F, T, T, T, F
    # forDays 3: True only on day 5 (days 3, 4, 5 all True); any False in the 3 days → False
    cond = C("Current Price", "A", "gt", 10.5, forDays=3)
    assert _condition_values(cond, CROSS) == [False, False, False, False, False, True, False]
    # A > 5 is True every day; with forDays 3 days 0 and 1 have fewer than 3 days → Null
    assert _condition_values(C("Current Price", "A", "gt", 5, forDays=3), CROSS) == [
        None, None, True, True, True, True, True,
    ]
    # 1-day return > −100: Null on day 0, True after; forDays 3: day 2 sees (T, T, Null) → Null
    cond = C("Cumulative Return", "A", "gt", -100, window=1, forDays=3)
    assert _condition_values(cond, CROSS) == [None, None, None, True, True, True, True]
    # through an indicator: Null → else
    assert_allocs(allocations(IND([cond]), CROSS), [E_, E_, E_, T_, T_, T_, T_])


def test_expanded_right_side_defaults() -> None:
    # A = 10, 20, 10; B = 14, 22, 10. Day 2: SMA2(A) = 15, SMA2(B) = 16, price A = 10, price B = 10.
    market = make_market({"A": [10, 20, 10], "B": [14, 22, 10]})
    sma = {"metric": "Simple Moving Average", "ticker": "A", "window": 2, "comparator": "gt", "expanded": True}
    # right = SMA2(B) (metric and window default to the left's): 15 > 16 → False
    assert truth([{**sma, "rightTicker": "B"}], t=2, market=market)[0] is False
    # right = price of B: 15 > 10 → True
    assert truth([{**sma, "rightTicker": "B", "rightMetric": "Current Price"}], t=2, market=market)[0] is True
    # right = SMA1(B) = 10: 15 > 10 → True
    assert truth([{**sma, "rightTicker": "B", "rightWindow": 1}], t=2, market=market)[0] is True
    # right ticker defaults to A: SMA2(A) vs price A = 10 → 15 > 10 True; all defaults: 15 > 15 False
    assert truth([{**sma, "rightMetric": "Current Price"}], t=2, market=market)[0] is True
    assert truth([sma], t=2, market=market)[0] is False
    # threshold is ignored when expanded: 15 > 16 stays False with threshold −1000
    assert truth([{**sma, "rightTicker": "B", "threshold": -1000}], t=2, market=market)[0] is False


def test_ratio_ticker() -> None:
    # A/B = 10/5, 20/10, 10/20 = 2, 2, .5
    market = make_market({"A": [10, 20, 10], "B": [5, 10, 20]})
    assert _condition_values(C("Current Price", "A/B", "gt", 1), market) == [True, True, False]
    # 2-day return of A/B on day 2: 100(.5/2 − 1) = −75 < −70
    assert _condition_values(C("Cumulative Return", "A/B", "lt", -70, window=2), market) == [None, None, True]


# 2021-12-27 (Mon) … 2021-12-31 (Fri), 2022-01-03 (Mon), 2022-01-04 (Tue)
YEAR_END = make_market({"A": [1.0] * 7}, start="2021-12-27")


def test_date_metric() -> None:
    assert [str(d) for d in YEAR_END.dates] == [
        "2021-12-27", "2021-12-28", "2021-12-29", "2021-12-30", "2021-12-31", "2022-01-03", "2022-01-04",
    ]
    date = {"metric": "Date", "ticker": "A", "comparator": "lt", "threshold": 1e9}  # both ignored
    # a single day
    assert _condition_values({**date, "dateMonth": 12, "dateDay": 29}, YEAR_END) == [
        False, False, True, False, False, False, False,
    ]
    # dateTo without `expanded` is ignored: still the single day 12-29
    assert _condition_values({**date, "dateMonth": 12, "dateDay": 29, "dateTo": {"month": 12, "day": 31}}, YEAR_END) == [
        False, False, True, False, False, False, False,
    ]
    # a range 12-28 … 12-30
    rng = {**date, "dateMonth": 12, "dateDay": 28, "expanded": True, "dateTo": {"month": 12, "day": 30}}
    assert _condition_values(rng, YEAR_END) == [False, True, True, True, False, False, False]
    # a range wrapping the year end 12-30 … 01-03
    wrap = {**date, "dateMonth": 12, "dateDay": 30, "expanded": True, "dateTo": {"month": 1, "day": 3}}
    assert _condition_values(wrap, YEAR_END) == [False, False, False, True, True, True, False]
    # defaults: 01-01 only (not a trading day here) → never
    assert _condition_values(dict(date), YEAR_END) == [False] * 7


# ==================================================================================================
# numbered (§3)


def NUM(quantifier: str, items: list, n: int = 0, children: dict | None = None, **kw: Any) -> dict:
    """items: each a condition list, or (condition list, groupLogic)."""
    built = []
    for item in items:
        conds, group = item if isinstance(item, tuple) else (item, None)
        built.append({"id": _id("n"), "conditions": conds, **({"groupLogic": group} if group else {})})
    return {
        "id": _id("num"),
        "kind": "numbered",
        "numbered": {"quantifier": quantifier, "n": n, "items": built},
        "children": children if children is not None else {"then": [THEN()], "else": [ELSE()]},
        **kw,
    }


# items T, T, F, Null: T = 2, U = 1, I = 4
MIXED = [[TRUE], [TRUE], [FALSE], [NULL]]


@pytest.mark.parametrize(
    ("quantifier", "n", "items", "expected"),
    [
        ("any", 0, MIXED, T_),  # T = 2 ≥ 1
        ("any", 0, [[FALSE], [NULL]], E_),  # T = 0
        ("all", 0, MIXED, E_),  # T = 2 ≠ 4
        ("all", 0, [[TRUE], [TRUE]], T_),
        ("all", 0, [[TRUE], [NULL]], E_),  # U > 0 → else
        ("none", 0, MIXED, E_),
        ("none", 0, [[FALSE], [FALSE]], T_),
        ("none", 0, [[FALSE], [NULL]], E_),  # T = 0 but U = 1 → else
        ("exactly", 2, MIXED, T_),
        ("exactly", 1, MIXED, E_),
        ("exactly", 3, MIXED, E_),  # the Null item does not count as True
        ("atLeast", 2, MIXED, T_),
        ("atLeast", 3, MIXED, E_),
        ("atMost", 2, MIXED, T_),
        ("atMost", 1, MIXED, E_),
        ("atMost", 0, [[FALSE], [NULL]], T_),  # T = 0 ≤ 0
        # no items → then, whatever the quantifier
        ("any", 0, [], T_),
        ("none", 0, [], T_),
        ("exactly", 3, [], T_),
        # an item with no conditions is True
        ("all", 0, [[], [TRUE]], T_),
    ],
)
def test_numbered_quantifiers(quantifier: str, n: int, items: list, expected: dict) -> None:
    assert allocations(NUM(quantifier, items, n), FLAT, [2])[0] == expected


def test_numbered_group_logic() -> None:
    # item (T or F): default grouping → T ∨ F = True; groupLogic "and" → T ∧ F = False
    ors = [TRUE, typed(FALSE, "or")]
    assert allocations(NUM("all", [ors]), FLAT, [2])[0] == T_
    assert allocations(NUM("all", [(ors, "and")]), FLAT, [2])[0] == E_
    # item (F and T): default → False; groupLogic "or" → True
    ands = [FALSE, typed(TRUE, "and")]
    assert allocations(NUM("any", [ands]), FLAT, [2])[0] == E_
    assert allocations(NUM("any", [(ands, "or")]), FLAT, [2])[0] == T_


def LADDER(items: list, slots: dict[str, list], **kw: Any) -> dict:
    children = {"then": [THEN()], "else": [ELSE()], **slots}
    return NUM("ladder", items, children=children, **kw)


def test_ladder_uses_slot_of_true_count() -> None:
    # T = 2 (the Null and False items do not count) → slot ladder-2
    slots = {"ladder-0": [P("L0")], "ladder-1": [P("L1")], "ladder-2": [P("L2")], "ladder-3": [P("L3")]}
    assert allocations(LADDER(MIXED, slots), FLAT, [2])[0] == {"L2": 1.0}
    assert allocations(LADDER([[FALSE], [NULL]], slots), FLAT, [2])[0] == {"L0": 1.0}
    # the node's weighting combines the ladder slot: defined 3 : 1
    slots2 = {"ladder-2": [P("X", window=3), P("Y", window=1)]}
    out = allocations(LADDER(MIXED, slots2, weighting="defined"), FLAT, [2])[0]
    assert_alloc(out, {"X": 0.75, "Y": 0.25})


def test_ladder_fallback() -> None:
    # ladder-2 missing → T = 2 > 0 → then
    assert allocations(LADDER(MIXED, {"ladder-1": [P("L1")]}), FLAT, [2])[0] == T_
    # ladder-2 present but with no active child → then
    assert allocations(LADDER(MIXED, {"ladder-2": [P("Empty")]}), FLAT, [2])[0] == T_
    # T = 0 and ladder-0 missing or empty → else
    assert allocations(LADDER([[FALSE], [NULL]], {"ladder-1": [P("L1")]}), FLAT, [2])[0] == E_
    assert allocations(LADDER([[FALSE], [NULL]], {"ladder-0": [P("")]}), FLAT, [2])[0] == E_
    # decisions.md: the fallback uses weightingThen (defined 1 : 3 here), not the node's weighting
    tree = NUM(
        "ladder", MIXED, weighting="equal", weightingThen="defined",
        children={"then": [P("X", window=1), P("Y", window=3)], "else": [ELSE()]},
    )
    assert_alloc(allocations(tree, FLAT, [2])[0], {"X": 0.25, "Y": 0.75})


# ==================================================================================================
# function (§3)

# Day 0: all 100. Day 1: A 103, B 101, C 105, D 101; E has no price on day 0.
# 1-day Cumulative Return on day 1: A 3, B 1, C 5, D 1 (B and D tie exactly), E missing.
FUNC = make_market({"A": [100, 103], "B": [100, 101], "C": [100, 105], "D": [100, 101], "E": [None, 100]})


def FN(*children: dict, rank: str = "Bottom", bottom: int = 1, **kw: Any) -> dict:
    return {
        "id": _id("f"), "kind": "function", "metric": "Cumulative Return", "window": 1,
        "rank": rank, "bottom": bottom, "children": {"next": list(children)}, **kw,
    }


def test_function_top_and_bottom() -> None:
    kids = lambda: [P("A"), P("B"), P("C"), P("D")]  # noqa: E731
    # Top 2: C (5), A (3)
    assert_alloc(allocations(FN(*kids(), rank="Top", bottom=2), FUNC, [1])[0], {"C": 0.5, "A": 0.5})
    # Bottom 1: B (1) and D (1) tie → child order keeps B
    assert allocations(FN(*kids(), bottom=1), FUNC, [1])[0] == {"B": 1.0}
    # same with D listed first → D
    assert allocations(FN(P("D"), P("A"), P("B"), bottom=1), FUNC, [1])[0] == {"D": 1.0}
    # Bottom 3: B, D, A
    assert_alloc(allocations(FN(*kids(), bottom=3), FUNC, [1])[0], {"B": 1 / 3, "D": 1 / 3, "A": 1 / 3})
    # rank in any case ("top"); bottom larger than the number of children → all of them
    assert_alloc(
        allocations(FN(*kids(), rank="top", bottom=9), FUNC, [1])[0],
        {"A": 0.25, "B": 0.25, "C": 0.25, "D": 0.25},
    )
    # defaults: rank Bottom, bottom 1
    tree = {"id": "f", "kind": "function", "metric": "Cumulative Return", "window": 1, "children": {"next": kids()}}
    assert allocations(tree, FUNC, [1])[0] == {"B": 1.0}


def test_function_drops_missing_scores_and_inactive_children() -> None:
    # E has no 1-day return on day 1 → dropped, even though Bottom would otherwise pick it first
    assert_alloc(
        allocations(FN(P("E"), P("A"), P("C"), bottom=5), FUNC, [1])[0], {"A": 0.5, "C": 0.5}
    )
    # an empty child is not ranked: scored on its (all-cash) branch it would score 0 and win Bottom 1
    assert allocations(FN(P("Empty"), P("C"), P("A"), bottom=1), FUNC, [1])[0] == {"A": 1.0}
    # no child with a score → empty
    assert allocations(FN(P("E"), bottom=1), FUNC, [1])[0] == {}
    # decisions.md: bottom 0 selects nothing; a missing window is 14 (no 14-day return on day 1)
    assert allocations(FN(P("A"), P("B"), bottom=0), FUNC, [1])[0] == {}
    tree = FN(P("A"), P("B"))
    del tree["window"]
    assert allocations(tree, FUNC, [1])[0] == {}


def test_function_scores_other_children_on_their_branch_series() -> None:
    # basic(A, C): branch B_0 = 1, b_1 = ½·.03 + ½·.05 = .04 → 1-day return 4
    # Top 2 of [A (3), basic(A, C) (4), B (1)] → basic (4) and A (3), equal ½ each:
    #   A ½ + ½·½ = .75, C ½·½ = .25
    out = allocations(FN(P("A"), BASIC(P("A"), P("C")), P("B"), rank="Top", bottom=2), FUNC, [1])[0]
    assert_alloc(out, {"A": 0.75, "C": 0.25})
    # a position with two tickers is scored on its branch too ([A, C] → 4): Top 1 of [it, C (5)] is C,
    # Top 1 of [it, A (3)] is it
    assert allocations(FN(P("A", "C"), P("C"), rank="Top"), FUNC, [1])[0] == {"C": 1.0}
    assert_alloc(allocations(FN(P("A", "C"), P("A"), rank="Top"), FUNC, [1])[0], {"A": 0.5, "C": 0.5})


def test_function_weights_the_selection() -> None:
    # Top 2 → C (window 3), A (window 1); defined → C ¾, A ¼
    tree = FN(P("A", window=1), P("B", window=5), P("C", window=3), rank="Top", bottom=2, weighting="defined")
    assert_alloc(allocations(tree, FUNC, [1])[0], {"C": 0.75, "A": 0.25})
    # capped with fallback: A and C ½ each, C capped at 30% → .2 to B
    tree = FN(P("A"), P("B"), P("C", window=30), rank="Top", bottom=2, weighting="capped", cappedFallback="B")
    assert_alloc(allocations(tree, FUNC, [1])[0], {"A": 0.5, "C": 0.3, "B": 0.2})


# ==================================================================================================
# scaling (§3)

SCALE = make_market({"A": [12.5, 25, 5, 15]})


def SCALING(then: list[dict], else_: list[dict], **kw: Any) -> dict:
    params = {"scaleMetric": "Current Price", "scaleTicker": "A", "scaleFrom": 10, "scaleTo": 20, **kw}
    return {"id": _id("s"), "kind": "scaling", "children": {"then": then, "else": else_}, **params}


def test_scaling_formula_and_clamp() -> None:
    # b = clamp((v − 10)/10): 12.5 → .25; 25 → 1.5 → 1; 5 → −.5 → 0; 15 → .5
    # result = (1 − b)·{B} + b·{C}
    assert_allocs(
        allocations(SCALING([P("B")], [P("C")]), SCALE),
        [{"B": 0.75, "C": 0.25}, {"C": 1.0}, {"B": 1.0}, {"B": 0.5, "C": 0.5}],
    )


def test_scaling_reversed_range() -> None:
    # from 20 to 10: b = (v − 20)/(10 − 20): 12.5 → .75; 25 → −.5 → 0; 5 → 1.5 → 1; 15 → .5
    assert_allocs(
        allocations(SCALING([P("B")], [P("C")], scaleFrom=20, scaleTo=10), SCALE),
        [{"B": 0.25, "C": 0.75}, {"B": 1.0}, {"C": 1.0}, {"B": 0.5, "C": 0.5}],
    )


def test_scaling_degenerate_range_and_missing_value() -> None:
    # |to − from| < 1e-12 → b = ½ whatever v
    tree = SCALING([P("B")], [P("C")], scaleFrom=15, scaleTo=15 + 1e-13)
    assert_allocs(allocations(tree, SCALE), [{"B": 0.5, "C": 0.5}] * 4)
    # v = 2-day return: missing on days 0, 1 → b = 0 (all then);
    # day 2: 100(5/12.5 − 1) = −60, from −100 to 100 → b = 40/200 = .2; day 3: 100(15/25 − 1) = −40 → .3
    tree = SCALING([P("B")], [P("C")], scaleMetric="Cumulative Return", scaleWindow=2, scaleFrom=-100, scaleTo=100)
    assert_allocs(
        allocations(tree, SCALE), [{"B": 1.0}, {"B": 1.0}, {"B": 0.8, "C": 0.2}, {"B": 0.7, "C": 0.3}]
    )


def test_scaling_missing_value_wins_over_degenerate_range() -> None:
    # Implementation order (the spec lists both rules without saying which wins): v missing → b = 0
    # even when |to − from| < 1e-12 would give ½. Days 0–1 have no 2-day return.
    tree = SCALING([P("B")], [P("C")], scaleMetric="Cumulative Return", scaleWindow=2, scaleFrom=5, scaleTo=5)
    assert_allocs(allocations(tree, SCALE), [{"B": 1.0}, {"B": 1.0}, {"B": 0.5, "C": 0.5}, {"B": 0.5, "C": 0.5}])


def test_scaling_blends_without_renormalising() -> None:
    # b = .25 on day 0. Empty else side: {B .75}, the other .25 cash
    out = allocations(SCALING([P("B")], [P("Empty")]), SCALE, [0])[0]
    assert_alloc(out, {"B": 0.75})
    # empty then side on day 2 (b = 0): nothing at all
    assert allocations(SCALING([P("Empty")], [P("C")]), SCALE, [2])[0] == {}
    # overlapping sides: .75·{B ½, C ½} + .25·{C} = B .375, C .375 + .25 = .625
    out = allocations(SCALING([P("B", "C")], [P("C")]), SCALE, [0])[0]
    assert_alloc(out, {"B": 0.375, "C": 0.625})


# ==================================================================================================
# altExit (§3)


def ALT(entry: list[dict], exit_: list[dict], **kw: Any) -> dict:
    return {
        "id": kw.pop("id", None) or _id("ae"), "kind": "altExit",
        "entryConditions": entry, "exitConditions": exit_,
        "children": {"then": [THEN()], "else": [ELSE()]}, **kw,
    }


def test_alt_exit_sequence() -> None:
    # A = 10, 20, 10, 3, 10, 20, 4; enter when A > 15, exit when A < 5
    # 0: out (10 > 15 F); 1: enter; 2: in (10 < 5 F keeps); 3: exit (3 < 5); 4: out (10 > 15 F);
    # 5: enter; 6: exit
    market = make_market({"A": [10, 20, 10, 3, 10, 20, 4]})
    tree = ALT([C("Current Price", "A", "gt", 15)], [C("Current Price", "A", "lt", 5)])
    assert_allocs(allocations(tree, market), [E_, T_, T_, E_, E_, T_, E_])


def test_alt_exit_null_keeps_the_state() -> None:
    # entry on E, which has no price on days 0–1 (Null), then 20 > 15: out, out, in, in, …
    # no exit conditions → never exits
    market = make_market({"E": [None, None, 20, 20, 1], "A": [10, 20, 10, 10, 10], "X": [10, 10, 10, None, None]})
    tree = ALT([C("Current Price", "E", "gt", 15)], [])
    assert_allocs(allocations(tree, market), [E_, E_, T_, T_, T_])
    # enter on day 1 (A = 20); exit when X < 5: day 2 F; days 3–4 X has no price (trailing gap,
    # not filled) → Null keeps "in"
    tree = ALT([C("Current Price", "A", "gt", 15)], [C("Current Price", "X", "lt", 5)])
    assert_allocs(allocations(tree, market), [E_, T_, T_, T_, T_])
    it = interpreter(tree, market)
    cond = it.strategy.root.exit_conditions[0]
    assert [it.condition(it.strategy.root, cond, t) for t in range(5)] == [False, False, False, None, None]


def test_alt_exit_without_entry_conditions_never_enters() -> None:
    market = make_market({"A": [10, 20, 10]})
    assert_allocs(allocations(ALT([], [FALSE]), market), [E_, E_, E_])
    assert_allocs(allocations(ALT([], []), market), [E_, E_, E_])


def test_alt_exit_state_starts_at_the_backtest_start() -> None:
    # A = 10, 20, 10, 20, 10; enter A > 15, exit A < 5
    market = make_market({"A": [10, 20, 10, 20, 10]})
    tree = ALT([C("Current Price", "A", "gt", 15)], [C("Current Price", "A", "lt", 5)])
    # from day 0: out, in (day 1), in, in, in
    assert_allocs(allocations(tree, market, start=0), [E_, T_, T_, T_, T_])
    # from day 2: out on days 0–1 whatever the entry says; day 2: 10 > 15 F → out; day 3: enter
    assert_allocs(allocations(tree, market, start=2), [E_, E_, E_, T_, T_])


def test_alt_exit_state_advances_when_not_reached() -> None:
    # root: R > .75 ? altExit : Z.  R = 1, .5, 1, 1: the altExit node is not reached on day 1,
    # when A = 20 makes it enter; on day 2 it is reached and already in (V1: evaluated then, out).
    market = make_market({"A": [10, 20, 10, 10], "R": [1, 0.5, 1, 1]})
    alt = ALT([C("Current Price", "A", "gt", 15)], [C("Current Price", "A", "lt", 5)])
    tree = IND([C("Current Price", "R", "gt", 0.75)], then=[alt], else_=[P("Z")])
    assert_allocs(allocations(tree, market), [E_, {"Z": 1.0}, T_, T_])


def test_alt_exit_one_transition_a_day() -> None:
    # Implementation choice (not written in the spec or decisions.md): on the day it enters, the exit
    # conditions are not checked. A = 10, 20, 20, 10; enter A > 15, exit A > 18:
    # 1: enter (and stays in although 20 > 18); 2: exit; 3: out (10 > 15 F)
    market = make_market({"A": [10, 20, 20, 10]})
    tree = ALT([C("Current Price", "A", "gt", 15)], [C("Current Price", "A", "gt", 18)])
    assert_allocs(allocations(tree, market), [E_, T_, E_, E_])


# ==================================================================================================
# call (§3)


def test_call_equals_its_chain_inlined() -> None:
    # chain: A > 11 ? B : C;  root: basic(call, D).  A = 10, 12, 11, 13
    # day 0: {C ½, D ½}; 1: {B ½, D ½}; 2: 11 > 11 F → {C ½, D ½}; 3: {B ½, D ½}
    market = make_market({"A": [10, 12, 11, 13]})
    chain = IND([C("Current Price", "A", "gt", 11)], then=[P("B")], else_=[P("C")], id="chain-root")
    called = BASIC({"id": "call", "kind": "call", "callRefId": "ch"}, P("D"), id="root")
    inlined = BASIC(chain, P("D"), id="root")
    expected = [{"C": 0.5, "D": 0.5}, {"B": 0.5, "D": 0.5}, {"C": 0.5, "D": 0.5}, {"B": 0.5, "D": 0.5}]
    via_call = allocations(called, market, callChains={"ch": chain})
    assert_allocs(via_call, expected)
    assert_allocs(allocations(inlined, market), expected)
    # nested calls: a chain that calls another chain
    outer = BASIC({"id": "c2", "kind": "call", "callRefId": "ch"}, id="outer-root")
    root = BASIC({"id": "c1", "kind": "call", "callRefId": "outer"}, P("D"), id="root")
    assert_allocs(allocations(root, market, callChains={"ch": chain, "outer": outer}), expected)


# ==================================================================================================
# branch references (§5)

# A = 100, 110, 99, 99, 108.9, 120;  B = 50, 50, 55, 55, 55, 60;  C = 10, 11, 11, 11, 11, 11
BRANCH = make_market(
    {"A": [100, 110, 99, 99, 108.9, 120], "B": [50, 50, 55, 55, 55, 60], "C": [10, 11, 11, 11, 11, 11]}
)


def _branch_tree(metric: str = "Current Price", ticker: str = "branch:then", comparator: str = "lt",
                 threshold: float = 0.95, window: int = 1) -> dict:
    # inner: 1-day return of A > 0 ? A : B. Returns of A: –, +10, −10, 0, +10, +10.19
    #   → allocations: day 0 Null → B; 1 A; 2 B; 3 (0 > 0 F) B; 4 A; 5 A.  Warm-up day 1.
    inner = IND([C("Cumulative Return", "A", "gt", 0, window=1)], then=[P("A")], else_=[P("B")], id="inner")
    return IND([C(metric, ticker, comparator, threshold, window=window)], then=[inner], else_=[P("C")], id="outer")


# Branch series of outer's then slot (only `inner`): starts at 1 on inner's warm-up day 1, NaN before;
# b_t = alloc_{t−1}·r_t:
#   day 2: alloc_1 = A, r_A = 99/110 − 1 = −.1 → B = .9   (alloc_2 = B would give r_B = +.1 instead)
#   day 3: alloc_2 = B, r_B = 55/55 − 1 = 0 → .9
#   day 4: alloc_3 = B, r_B = 0 → .9
#   day 5: alloc_4 = A, r_A = 120/108.9 − 1 → .9·120/108.9 = .99173…
THEN_EQUITY = [NAN, 1.0, 0.9, 0.9, 0.9, 0.9 * 120 / 108.9]
THEN_RETURNS = [NAN, NAN, -0.1, 0.0, 0.0, 120 / 108.9 - 1]


def test_branch_series_by_hand() -> None:
    it = interpreter(_branch_tree(), BRANCH)
    outer = it.strategy.root
    equity, returns = it.branch_series(outer, "then")
    np.testing.assert_allclose(equity, THEN_EQUITY, rtol=1e-12)
    np.testing.assert_allclose(returns, THEN_RETURNS, rtol=1e-12, atol=1e-15)
    assert it.warmup(outer.slot("then")[0]) == 1
    assert it.warmup(outer) == 1
    # the node `inner` on its own has the same series (used for function scores and inverse/pro)
    equity, returns = it.branch_series(outer.slot("then")[0])
    np.testing.assert_allclose(equity, THEN_EQUITY, rtol=1e-12)
    np.testing.assert_allclose(returns, THEN_RETURNS, rtol=1e-12, atol=1e-15)
    # else slot (position C, warm-up 0): 1, 1.1, 1.1, …
    equity, _ = it.branch_series(outer, "else")
    np.testing.assert_allclose(equity, [1.0, 1.1, 1.1, 1.1, 1.1, 1.1], rtol=1e-12)


def test_branch_reference_in_a_condition() -> None:
    # outer: price of branch:then < .95 ? inner : C
    #   day 0 NaN → Null → C; 1: 1 < .95 F → C; 2–4: .9 → inner (B, B, A); 5: .9917 F → C
    assert_allocs(
        allocations(_branch_tree(), BRANCH),
        [{"C": 1.0}, {"C": 1.0}, {"B": 1.0}, {"B": 1.0}, {"A": 1.0}, {"C": 1.0}],
    )
    # a 1-day return of the branch < −5: day 2: 100(.9/1 − 1) = −10 → inner (B); day 1: needs day 0 → Null
    tree = _branch_tree("Cumulative Return", "branch:then", "lt", -5)
    assert_allocs(
        allocations(tree, BRANCH),
        [{"C": 1.0}, {"C": 1.0}, {"B": 1.0}, {"C": 1.0}, {"C": 1.0}, {"C": 1.0}],
    )


def test_function_scores_a_changing_child_on_its_lagged_branch() -> None:
    # Bottom 1 by 1-day return on day 2 of [inner, C]: inner's branch −10 (it held A over day 2),
    # C: 100(11/11 − 1) = 0 → inner, whose allocation on day 2 is B.
    # (Scoring inner with its day-2 allocation B would give +10 and pick C.)
    inner = IND([C("Cumulative Return", "A", "gt", 0, window=1)], then=[P("A")], else_=[P("B")])
    assert allocations(FN(inner, P("C"), bottom=1), BRANCH, [2])[0] == {"B": 1.0}


@pytest.mark.parametrize(("alias", "slot"), [("from", "then"), ("enter", "then"), ("then", "then"),
                                             ("to", "else"), ("exit", "else"), ("else", "else")])
def test_branch_aliases(alias: str, slot: str) -> None:
    it = interpreter(_branch_tree(ticker=f"branch:{alias}"), BRANCH)
    outer = it.strategy.root
    series = it.metric_series("Current Price", f"branch:{alias}", 1, outer)
    np.testing.assert_allclose(series, it.branch_series(outer, slot)[0], rtol=1e-12)
    expected = THEN_EQUITY if slot == "then" else [1.0, 1.1, 1.1, 1.1, 1.1, 1.1]
    np.testing.assert_allclose(series, expected, rtol=1e-12)


# ==================================================================================================
# warm-up (§6, decisions.md)


@pytest.mark.parametrize(
    ("cond", "expected"),
    [
        (C("Current Price", "A", "gt", 0), 0),
        (C("Simple Moving Average", "A", "gt", 0, window=55), 54),  # SMA first valid at p − 1
        (C("Cumulative Return", "A", "gt", 0, window=55), 55),  # first valid at p
        (C("Simple Moving Average", "A", "crossAbove", 0, window=55), 55),  # crosses add a day
        (C("Simple Moving Average", "A", "gt", 0, window=55, forDays=3), 56),  # forDays N adds N − 1
        (C("Current Price", "A", "gt", 0, expanded=True, rightMetric="Simple Moving Average", rightWindow=20), 19),
    ],
)
def test_warmup_of_conditions(cond: dict, expected: int) -> None:
    market = make_market({"A": [100.0 + t for t in range(60)]})
    it = interpreter(IND([cond], then=[P("A")], else_=[P("A")]), market)
    assert it.warmup(it.strategy.root) == expected


def test_warmup_counts_reachable_lookbacks_only() -> None:
    market = make_market({"A": [100.0 + t for t in range(60)], "B": [None] * 7 + [50.0] * 53})
    sma55 = IND([C("Simple Moving Average", "A", "gt", 0, window=55)], then=[P("A")], else_=[P("A")])
    # a position ticker's first price counts (B from day 7) …
    it = interpreter(BASIC(P("A"), P("B")), market)
    assert it.warmup(it.strategy.root) == 7
    # … and a nested condition (SMA 55 → day 54) …
    it = interpreter(BASIC(P("A"), sma55), market)
    assert it.warmup(it.strategy.root) == 54
    # … but not a slot the node never evaluates (a basic node only reads `next`)
    tree = BASIC(P("A"))
    tree["children"]["then"] = [sma55]
    it = interpreter(tree, market)
    assert it.warmup(it.strategy.root) == 0


def test_inverse_warmup_matches_volatility_availability() -> None:
    # branches start on day 0, returns from day 1: volWindow 3 is first complete on day 3 = 0 + 3
    it = interpreter(BASIC(P("A"), P("B"), weighting="inverse", volWindow=3), VOL)
    assert it.warmup(it.strategy.root) == 3
    # day 3: A's returns {0, 0, .02}, B's {0, 0, .01} → σ_A = 2σ_B → inverse A ⅓, B ⅔
    assert_alloc(it.allocation(it.strategy.root, 3), {"A": 1 / 3, "B": 2 / 3})


# ==================================================================================================
# run_reference (§6, §7)

N = 60
# A: close 100 + t, open 99.5 + t;  B: close 200 − t, open 201 − t  (t = 0 … 59)
CLOSES = {"A": [100.0 + t for t in range(N)], "B": [200.0 - t for t in range(N)]}
OPENS = {"A": [99.5 + t for t in range(N)], "B": [201.0 - t for t in range(N)]}
RUN = make_market(CLOSES, OPENS)
DATES = [str(d) for d in business_days(N)]
# root: defined 3 : 1 → A .75, B .25 on every day
FIXED = BASIC(P("A", window=3), P("B", window=1), weighting="defined")

def _response(s: Strategy, market: Market) -> dict[str, Any]:
    """run_reference's response as Python objects."""
    return run_reference(s, market).to_dict()


# Start = max(50, warm-up 0) = day 50. Prices around it:
#   close A 150, 151, 152 (days 50–52); open A 150.5, 151.5, 152.5 (days 51–53)
#   close B 150, 149, 148 (days 50–52); open B 150, 149, 148 (days 51–53)
GROSS = {
    # mode: (first credited day, gross of the first two credited days)
    "CC": (51, [0.75 * (151 / 150 - 1) + 0.25 * (149 / 150 - 1),  # = .5/150
                0.75 * (152 / 151 - 1) + 0.25 * (148 / 149 - 1)]),
    "CO": (51, [0.75 * (150.5 / 150 - 1) + 0.25 * (150 / 150 - 1),  # close 50 → open 51
                0.75 * (151.5 / 151 - 1) + 0.25 * (149 / 149 - 1)]),
    "OC": (51, [0.75 * (151 / 150.5 - 1) + 0.25 * (149 / 150 - 1),  # open 51 → close 51
                0.75 * (152 / 151.5 - 1) + 0.25 * (148 / 149 - 1)]),
    "OO": (52, [0.75 * (151.5 / 150.5 - 1) + 0.25 * (149 / 150 - 1),  # open 51 → open 52
                0.75 * (152.5 / 151.5 - 1) + 0.25 * (148 / 149 - 1)]),
}


def _gross(mode: str, t: int) -> float:
    """Gross return of the .75/.25 portfolio decided on day t (closed form of the table above)."""
    cA, oA = (lambda d: 100.0 + d), (lambda d: 99.5 + d)
    cB, oB = (lambda d: 200.0 - d), (lambda d: 201.0 - d)
    begin, end = {
        "CC": ((cA(t), cB(t)), (cA(t + 1), cB(t + 1))),
        "CO": ((cA(t), cB(t)), (oA(t + 1), oB(t + 1))),
        "OC": ((oA(t + 1), oB(t + 1)), (cA(t + 1), cB(t + 1))),
        "OO": ((oA(t + 1), oB(t + 1)), (oA(t + 2), oB(t + 2))),
    }[mode]
    return 0.75 * (end[0] / begin[0] - 1) + 0.25 * (end[1] / begin[1] - 1)


@pytest.mark.parametrize("mode", ["CC", "CO", "OC", "OO"])
def test_run_reference_modes(mode: str) -> None:
    r = _response(strategy(FIXED, mode=mode, costBps=10, benchmark="A"), RUN)
    first, (g1, g2) = GROSS[mode]
    assert r["metrics"]["startDate"] == DATES[50]
    assert r["equityCurve"][0] == {"date": DATES[50], "equity": 1.0}
    assert r["drawdownPoints"][0] == {"date": DATES[50], "equity": 0.0}
    days = r["days"]
    assert [d["date"] for d in days] == DATES[first:]  # one row per credited day, to the last day
    assert r["metrics"]["endDate"] == DATES[-1]
    assert r["metrics"]["days"] == N - first
    assert [d["grossReturn"] for d in days[:2]] == pytest.approx([g1, g2], rel=1e-12)
    # turnover: day 1 from cash ½(.75 + .25) = .5, then 0; cost = turnover · 10/10,000
    assert days[0]["turnover"] == pytest.approx(0.5)
    assert days[0]["cost"] == pytest.approx(0.5 * 10 / 10_000)
    assert days[0]["netReturn"] == pytest.approx(g1 - 0.0005, rel=1e-12)
    assert all(d["turnover"] == pytest.approx(0.0, abs=1e-15) for d in days[1:])
    assert days[1]["netReturn"] == pytest.approx(g2, rel=1e-12)
    # equity compounds net returns: E1 = 1 + net1, E2 = E1·(1 + net2), …
    assert days[0]["equity"] == pytest.approx(1 + g1 - 0.0005, rel=1e-12)
    assert days[1]["equity"] == pytest.approx((1 + g1 - 0.0005) * (1 + g2), rel=1e-12)
    equity = 1.0  # rebuilt from the closed form over every credited day
    for k, d in enumerate(days):
        t = first - (2 if mode == "OO" else 1) + k  # decision day
        equity *= 1 + _gross(mode, t) - (0.0005 if k == 0 else 0.0)
        assert d["equity"] == pytest.approx(equity, rel=1e-12)
    assert r["equityCurve"][-1]["equity"] == pytest.approx(equity, rel=1e-12)
    assert r["metrics"]["totalReturn"] == pytest.approx(equity - 1, rel=1e-9)
    assert days[0]["holdings"] == [{"ticker": "A", "weight": 0.75}, {"ticker": "B", "weight": 0.25}]
    assert r["allocations"][0] == {"date": days[0]["date"], "entries": days[0]["holdings"]}
    assert r["warnings"] == []
    assert r["metrics"]["beta"] is not None


def test_run_reference_start_is_max_of_50_and_warmup() -> None:
    # SMA(A, 55) is first valid on day 54 → start day 54, credited 55 … 59 (CC)
    tree = IND([C("Simple Moving Average", "A", "gt", 0, window=55)], then=[FIXED], else_=[P("B")])
    r = _response(strategy(tree, benchmark="A"), RUN)
    assert r["metrics"]["startDate"] == DATES[54]
    assert [d["date"] for d in r["days"]] == DATES[55:]
    assert r["days"][0]["grossReturn"] == pytest.approx(_gross("CC", 54), rel=1e-12)
    # a short lookback does not start before day 50
    tree = IND([C("Simple Moving Average", "A", "gt", 0, window=5)], then=[FIXED], else_=[P("B")])
    assert _response(strategy(tree, benchmark="A"), RUN)["metrics"]["startDate"] == DATES[MIN_HISTORY]


@pytest.mark.parametrize(("mode", "credited"), [("CC", range(54, 58)), ("OO", range(55, 58))])
def test_run_reference_start_and_end_dates(mode: str, credited: range) -> None:
    # startDate = day 53, endDate = day 57: decisions from 53, credited up to 57
    r = _response(strategy(FIXED, mode=mode, benchmark="A", startDate=DATES[53], endDate=DATES[57]), RUN)
    assert r["metrics"]["startDate"] == DATES[53]
    assert r["equityCurve"][0]["date"] == DATES[53]
    assert [d["date"] for d in r["days"]] == [DATES[t] for t in credited]
    assert r["metrics"]["endDate"] == DATES[57]
    # indicators and the first turnover count from the clipped start (from cash)
    assert r["days"][0]["turnover"] == pytest.approx(0.5)


def test_run_reference_start_date_on_a_weekend_and_inside_the_warmup() -> None:
    # 2021-03-20 is a Saturday → the next trading day, day 55 (Monday 2021-03-22)
    assert DATES[55] == "2021-03-22"
    r = _response(strategy(FIXED, benchmark="A", startDate="2021-03-20"), RUN)
    assert r["metrics"]["startDate"] == DATES[55]
    # a startDate inside the 50-day minimum: start stays day 50, with a warning
    r = _response(strategy(FIXED, benchmark="A", startDate=DATES[10]), RUN)
    assert r["metrics"]["startDate"] == DATES[50]
    assert any("startDate" in w["message"] for w in r["warnings"])


def test_run_reference_not_enough_data() -> None:
    short = make_market({k: v[:40] for k, v in CLOSES.items()})
    with pytest.raises(GpubtError) as err:
        _response(strategy(FIXED, benchmark="A"), short)
    assert "40 days" in err.value.message and "not enough data" in err.value.message
    # CC needs day 50 to decide and day 51 to credit: 52 days; 51 are not enough, 52 are
    with pytest.raises(GpubtError):
        _response(strategy(FIXED, benchmark="A"), make_market({k: v[:51] for k, v in CLOSES.items()}))
    r = _response(strategy(FIXED, benchmark="A"), make_market({k: v[:52] for k, v in CLOSES.items()}))
    assert [d["date"] for d in r["days"]] == [DATES[51]]
    # OO credits two days later: 52 days are not enough
    with pytest.raises(GpubtError):
        _response(strategy(FIXED, benchmark="A", mode="OO"), make_market({k: v[:52] for k, v in CLOSES.items()}))
    # an endDate that leaves no credited day
    with pytest.raises(GpubtError):
        _response(strategy(FIXED, benchmark="A", endDate=DATES[50]), RUN)


def test_run_reference_held_ticker_without_prices() -> None:
    # B's data ends on day 55 (not extended): the periods 55→56 … 58→59 of B earn 0, one warning
    closes = {"A": CLOSES["A"], "B": CLOSES["B"][:56] + [None] * 4}
    r = _response(strategy(P("A", "B"), benchmark="A"), make_market(closes))
    days = {d["date"]: d for d in r["days"]}
    # day 55 (credited for decision 54): both: ½(155/154 − 1) + ½(145/146 − 1)
    assert days[DATES[55]]["grossReturn"] == pytest.approx(0.5 * (155 / 154 - 1) + 0.5 * (145 / 146 - 1))
    # day 56: only A counts: ½(156/155 − 1)
    assert days[DATES[56]]["grossReturn"] == pytest.approx(0.5 * (156 / 155 - 1))
    assert days[DATES[59]]["grossReturn"] == pytest.approx(0.5 * (159 / 158 - 1))
    warnings = [w for w in r["warnings"] if "B" in w["message"]]
    assert len(warnings) == 1
    assert warnings[0]["date"] == DATES[56]
    assert "4" in warnings[0]["message"]


def test_run_reference_unknown_ticker() -> None:
    with pytest.raises(GpubtError) as err:
        _response(strategy(P("A", "ZZZ"), benchmark="A"), RUN)
    assert "ZZZ" in err.value.message
    with pytest.raises(GpubtError) as err:
        _response(strategy(IND([C("Current Price", "QQQ", "gt", 0)], then=[P("A")]), benchmark="A"), RUN)
    assert "QQQ" in err.value.message


def test_run_reference_missing_benchmark() -> None:
    r = _response(strategy(FIXED), RUN)  # benchmark defaults to SPY, not in the data
    assert r["metrics"]["beta"] is None and r["metrics"]["treynor"] is None
    assert r["benchmarkCurve"] == []
    spy = [w for w in r["warnings"] if "SPY" in w["message"]]
    assert len(spy) == 1  # one warning, not one per source of the fact
    # the benchmark's absence changes nothing else
    with_bench = _response(strategy(FIXED, benchmark="A"), RUN)
    assert [d["equity"] for d in r["days"]] == [d["equity"] for d in with_bench["days"]]
    # the benchmark curve uses the strategy's mode: A's CC returns from day 50
    curve = with_bench["benchmarkCurve"]
    assert curve[0] == {"date": DATES[50], "equity": 1.0}
    assert curve[-1]["equity"] == pytest.approx(159 / 150)


def test_run_reference_alt_exit_markers() -> None:
    # A = 100 + t. enter A > 153 (day 54), exit A > 156 (day 57). From start day 50:
    #   50–53 out; 54 enter; 55, 56 in (155, 156 > 156 F); 57 exit; 58 enter (158 > 153); 59 exit
    alt = ALT([C("Current Price", "A", "gt", 153)], [C("Current Price", "A", "gt", 156)], id="ae")
    alt["children"] = {"then": [P("A")], "else": [P("B")]}
    r = _response(strategy(alt, benchmark="A"), RUN)
    seconds = {d: int(np.datetime64(d, "s").astype(np.int64)) for d in DATES}
    assert r["markers"] == [
        {"time": seconds[DATES[54]], "text": "ae: enter"},
        {"time": seconds[DATES[57]], "text": "ae: exit"},
        {"time": seconds[DATES[58]], "text": "ae: enter"},
        {"time": seconds[DATES[59]], "text": "ae: exit"},
    ]
    holdings = {d["date"]: d["holdings"] for d in r["days"]}
    # credited day t+1 holds the allocation decided on day t (CC)
    assert holdings[DATES[54]] == [{"ticker": "B", "weight": 1.0}]
    assert holdings[DATES[55]] == [{"ticker": "A", "weight": 1.0}]
    assert holdings[DATES[58]] == [{"ticker": "B", "weight": 1.0}]
    assert holdings[DATES[59]] == [{"ticker": "A", "weight": 1.0}]


def test_date_axis_helper() -> None:
    # the conftest helper: consecutive business days from a Monday
    assert DATES[:6] == ["2021-01-04", "2021-01-05", "2021-01-06", "2021-01-07", "2021-01-08", "2021-01-11"]
    assert dt.date.fromisoformat(DATES[-1]).weekday() < 5


def test_run_reference_markers_of_called_alt_exits_only() -> None:
    # the same altExit as above inside a call chain → markers; in a chain nobody calls → none
    def chain(node_id: str) -> dict:
        alt = ALT([C("Current Price", "A", "gt", 153)], [C("Current Price", "A", "gt", 156)], id=node_id)
        alt["children"] = {"then": [P("A")], "else": [P("B")]}
        return alt

    root = BASIC({"id": "call", "kind": "call", "callRefId": "used"}, id="root")
    r = _response(strategy(root, benchmark="A", callChains={"used": chain("in-used"), "idle": chain("in-idle")}), RUN)
    texts = [m["text"] for m in r["markers"]]
    assert texts == ["in-used: enter", "in-used: exit", "in-used: enter", "in-used: exit"]
