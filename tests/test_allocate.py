"""Allocation building: the equal-weight path (no children × days weight matrix, if/else leaves
added from their truth rows) gives bit for bit what the general weighting code gives."""

from __future__ import annotations

import numpy as np
import pytest

from gpubt.alloc import allocate
from gpubt.alloc.allocate import Allocator
from gpubt.backends.numba_cpu import NumbaBackend
from gpubt.compiler.compile import compile_strategy
from gpubt.compiler.execute import _shared_steps, evaluate_signals
from gpubt.data.synthetic import synthetic_market
from gpubt.schema.parse import parse_request
from gpubt.sim.period import backtest_window, prepare_market


def _switch(node_id: str, then: list[str], other: list[str], threshold: float = 50.0) -> dict:
    return {
        "id": node_id, "kind": "indicator",
        "conditions": [{"id": f"{node_id}-c", "metric": "RSI", "window": 10, "ticker": "SPY",
                        "comparator": "gt", "threshold": threshold}],
        "children": {"then": [{"id": f"{node_id}-t", "kind": "position", "positions": then}],
                     "else": [{"id": f"{node_id}-e", "kind": "position", "positions": other}]},
    }


def _tree(weighting: str) -> dict:
    children = [
        _switch("a", ["SPY"], ["TLT"]),
        _switch("b", ["SPY"], ["TLT"], 60.0),
        _switch("empty", ["QQQ"], [], 45.0),  # inactive on some days: its empty side adds nothing
        {"id": "p", "kind": "position", "positions": ["QQQ", "SPY"]},
        _switch("both", ["SPY", "TLT"], ["TLT"], 55.0),  # TLT on both sides
        {"id": "call1", "kind": "call", "callRefId": "shared"},  # one step read twice: kept, added twice
        {"id": "call2", "kind": "call", "callRefId": "shared"},
        {"id": "nest", "kind": "basic", "children": {"next": [
            _switch("n1", ["GLD"], ["SPY"], 40.0), {"id": "n2", "kind": "position", "positions": ["TLT"]}]}},
        _switch("c", ["GLD"], ["QQQ"], 52.0),
    ]
    return {"payload": {"id": "root", "kind": "basic", "weighting": weighting, "children": {"next": children}},
            "callChains": {"shared": _switch("s", ["QQQ"], ["GLD"], 48.0)}}


@pytest.fixture(scope="module")
def market():
    return synthetic_market()


def _allocation(request: dict, market) -> np.ndarray:
    strategy = parse_request(request)
    sub = prepare_market(strategy, market)
    program = compile_strategy(strategy, sub)
    start, _, _ = backtest_window(strategy, sub.dates, program.warmup)
    allocator = Allocator(sub, {}, start, keep=_shared_steps(program))
    evaluate_signals(program, sub, NumbaBackend(), allocator)
    return allocator.allocation(program.root)


def test_equal_weights_equal_the_general_path_bit_for_bit(market, monkeypatch) -> None:
    runs: list[int] = []
    add = allocate._add_choices

    def counted(truths, *rest):
        runs.append(truths.shape[0])
        return add(truths, *rest)

    monkeypatch.setattr(allocate, "_add_choices", counted)
    fast = _allocation(_tree("equal"), market)
    # runs of if/else leaves, the children built in between flushing them: n1 (inside `nest`,
    # built while the root lists its children), then the root's a + b + empty (the position p
    # ends the run), then both + the call chain's step twice (a kept step is added from its
    # truth row too), then c after `nest`
    assert runs == [1, 3, 3, 1]
    general = _allocation(_tree("defined"), market)  # no windows: weight 1 each, the general code
    np.testing.assert_array_equal(fast, general)
    held = fast.sum(axis=1)
    assert np.allclose(held[held > 0], 1.0) and (fast > 0).sum(axis=0).min() > 0


def _best_by_argsort(scores: np.ndarray, active: np.ndarray, top: bool, bottom: int) -> np.ndarray:
    """The function node's selection as a stable argsort of the scores defines it."""
    valid = active & np.isfinite(scores)
    key = np.where(valid, -scores if top else scores, np.nan)
    order = np.argsort(key, axis=1, kind="stable")  # NaN (not ranked) sorts last
    rank = np.empty_like(order)
    np.put_along_axis(rank, order, np.arange(order.shape[1])[None, :].repeat(len(order), 0), axis=1)
    return (valid & (rank < bottom)).T


@pytest.mark.parametrize("k", [1, 3, 8, 40])
def test_function_selection_is_the_stable_ranking(k: int) -> None:
    """The b best active children with a finite score, by `_best` and by `best_places`' places,
    as a stable argsort of the scores ranks them."""
    rng = np.random.default_rng(k)
    days = 500
    scores = rng.integers(-3, 4, (days, k)).astype(np.float64)  # many ties, and -0.0 beside 0.0
    scores[rng.random((days, k)) < 0.1] = np.nan
    scores[rng.random((days, k)) < 0.05] = np.inf
    scores[rng.random((days, k)) < 0.05] = -0.0
    active = rng.random((days, k)) < 0.8
    for top in (True, False):
        places = allocate.best_places(scores, active, top, k)  # once, at the largest count
        for bottom in sorted({0, 1, 2, k - 1, k, k + 3}):
            want = _best_by_argsort(scores, active, top, bottom)
            got = allocate._best(scores, active, top, max(0, min(bottom, k)))
            np.testing.assert_array_equal(got, want, err_msg=f"top={top} bottom={bottom}")
            # the b best are the children placed below b (how a sweep ranks once for every count)
            np.testing.assert_array_equal(places < min(bottom, k), want, err_msg=f"places, top={top} bottom={bottom}")


def test_function_node_equal_weights_equal_the_general_path_bit_for_bit(market) -> None:
    def tree(weighting: str) -> dict:
        children = [
            {"id": f"p{i}", "kind": "position", "positions": [t]} for i, t in enumerate(("SPY", "QQQ", "TLT", "GLD"))
        ] + [_switch("sw", ["SPY"], ["GLD"]), _switch("part", ["QQQ"], [], 45.0)]
        return {"payload": {"id": "root", "kind": "function", "metric": "Cumulative Return", "window": 20,
                            "rank": "Top", "bottom": 3, "weighting": weighting, "children": {"next": children}}}

    fast = _allocation(tree("equal"), market)
    np.testing.assert_array_equal(fast, _allocation(tree("defined"), market))
    held = fast.sum(axis=1)
    assert np.allclose(held[held > 0], 1.0) and set((fast > 0).sum(axis=1).tolist()) >= {3}
