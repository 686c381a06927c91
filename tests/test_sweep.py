"""Parameter sweeps: specs and variants, batched execution equal to single runs, resume, Dask."""

from __future__ import annotations

import dataclasses
import itertools
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

import gpubt
from gpubt.data.market import FIELDS, Market
from gpubt.data.synthetic import synthetic_market
from gpubt.engine import BACKENDS, run_backtest
from gpubt.errors import GpubtError
from gpubt.metrics.core import KEYS
from gpubt.sweep import load_spec, make_spec, parse_memory, run_chunk, run_sweep
from gpubt.sweep.run import MAX_CHUNK, METRIC_COLUMNS, chunk_size_for, chunks_of, merge_frames
from gpubt.sweep.spec import SweepSpec
from tests.conftest import backend_params, make_market
from tests.strategies import market_requests, requests

ROOT = Path(__file__).resolve().parents[1]
TQQQ = ROOT / "examples" / "tqqq_rsi.json"
REL = 1e-9


def market_slice(market: Market, first: str, last: str) -> Market:
    """The market on the days first..last (a short market keeps single-run comparisons fast)."""
    rows = (market.dates >= np.datetime64(first)) & (market.dates <= np.datetime64(last))
    return Market(market.dates[rows], market.tickers, observed=market.observed[rows],
                  source=f"{market.source}[{first}..{last}]", **{f: getattr(market, f)[rows] for f in FIELDS})


@pytest.fixture(scope="module")
def short_market() -> Market:
    return market_slice(synthetic_market(), "2010-01-04", "2014-12-31")


def same(expected: Any, got: Any) -> bool:
    if expected is None or got is None:
        return expected is None and got is None
    if isinstance(expected, str):
        return expected == got
    return expected == got or abs(expected - got) <= REL * abs(expected)


def assert_metrics_equal(row: dict[str, Any], metrics: dict[str, Any], label: str) -> None:
    bad = {k: (v, row[k]) for k, v in metrics.items() if not same(v, row[k])}
    assert not bad, f"{label}: {bad}"


# -- execution equals single runs ------------------------------------------------------------------


def test_every_variant_equals_its_single_compiled_run(short_market: Market) -> None:
    spec = make_spec(TQQQ, {
        "c1.window": [6, 10, 14],
        "c1.threshold": {"start": 75, "stop": 84, "step": 4},  # 75, 79, 83
        "c3.rightWindow": [20, 50],
        "costBps": [0, 10],
    })
    assert spec.n_variants == 36
    result = run_sweep(spec, market=short_market, chunk_size=10)  # 4 chunks, one a remainder
    table = result.table
    assert table["variant"].to_list() == list(range(36))
    assert table.columns == ["variant", "c1.window", "c1.threshold", "c3.rightWindow", "costBps", *METRIC_COLUMNS]
    for i, row in enumerate(table.iter_rows(named=True)):
        assert (row["c1.window"], row["c1.threshold"], row["c3.rightWindow"], row["costBps"]) == spec.values(i)
        single = run_backtest(spec.strategy(i), short_market, "polars").metrics
        assert_metrics_equal(row, single, spec.label(i))


@pytest.mark.parametrize("backend", backend_params([b for b in BACKENDS if b != "reference"]))
def test_every_backend_sweeps_like_its_single_runs(short_market: Market, backend: str) -> None:
    spec = make_spec(TQQQ, {"c1.window": [7, 12], "c2.threshold": [27, 33]})
    table = run_sweep(spec, market=short_market, backend=backend).table
    for i in range(spec.n_variants):
        single = run_backtest(spec.strategy(i), short_market, backend).metrics
        assert_metrics_equal(table.row(i, named=True), single, f"{backend}: {spec.label(i)}")


def test_sample_equals_the_reference_interpreter(short_market: Market) -> None:
    spec = make_spec(TQQQ, {"c1.window": [5, 9, 13, 17], "c2.threshold": [25, 35], "hedge.positions": [["UVXY"], ["TLT", "GLD"]]})
    table = run_sweep(spec, market=short_market).table
    for i in (0, 7, 14):
        reference = run_backtest(spec.strategy(i), short_market, "reference").metrics
        assert_metrics_equal(table.row(i, named=True), reference, spec.label(i))


def test_branch_references_function_nodes_and_modes_across_variants(short_market: Market) -> None:
    """Variants with branch series (whose keys must not collide in the shared graph), ranking,
    inverse volatility and different modes and windows (several simulation batches per chunk)."""
    tree = {"id": "root", "kind": "indicator",
            "conditions": [{"id": "bc", "metric": "RSI", "ticker": "branch:then", "window": 14,
                            "comparator": "gt", "threshold": 50}],
            "children": {
                "then": [{"id": "f", "kind": "function", "metric": "Standard Deviation", "window": 20,
                          "rank": "Top", "bottom": 1, "children": {"next": [
                              {"id": "b1", "kind": "basic", "children": {"next": [
                                  {"id": "x1", "kind": "position", "positions": ["SPY"]},
                                  {"id": "x2", "kind": "position", "positions": ["TLT"]}]}},
                              {"id": "x3", "kind": "position", "positions": ["QQQ"]}]}}],
                "else": [{"id": "inv", "kind": "basic", "weighting": "inverse", "volWindow": 30,
                          "children": {"next": [{"id": "y1", "kind": "position", "positions": ["GLD"]},
                                                {"id": "y2", "kind": "position", "positions": ["IEF"]}]}}]}}
    spec = make_spec({"payload": tree}, {"bc.window": [7, 21], "f.window": [10, 40], "x2.positions": [["TLT"], ["TQQQ"]],
                                         "mode": ["CC", "OO"]})
    table = run_sweep(spec, market=short_market).table
    for i in range(spec.n_variants):
        single = run_backtest(spec.strategy(i), short_market, "polars").metrics
        assert_metrics_equal(table.row(i, named=True), single, spec.label(i))


@pytest.mark.parametrize("example, parameters", [
    # the altExit state depends on each variant's start (startDate and enter-cross.window move
    # it; it is in from 2013-04-11 to 2013-08-30 for the earlier start, out on 2013-06-03 for the
    # later), the `safety` sub-tree under it does not: shared by every variant with one bond-trend
    ("altexit_trend.json", {"enter-cross.window": [20, 200], "bond-trend.window": [30, 60],
                            "startDate": ["2011-06-01", "2013-06-03"], "exit-dd.threshold": [8, 15]}),
    # a ladder of numbered items, a ratio ticker, a call chain and defined weights
    ("regime_ladder.json", {"n2.window": [21, 63], "l1-bonds.window": [50, 70], "n3.threshold": [18, 22]}),
    ("momentum_rotation.json", {"top3.window": [63, 126], "top3.bottom": [2, 3], "defense.window": [20, 60],
                                "trend.window": [100, 150]}),
])
def test_variants_sharing_sub_trees_equal_their_single_runs(short_market: Market, example: str,
                                                          parameters: dict) -> None:
    """The general path allocates a sub-tree that several variants agree on once for all of
    them (interned steps); every variant still equals its own backtest."""
    spec = make_spec(ROOT / "examples" / example, parameters)
    table = run_sweep(spec, market=short_market, chunk_size=5).table
    for i in range(spec.n_variants):
        single = run_backtest(spec.strategy(i), short_market, "polars").metrics
        assert_metrics_equal(table.row(i, named=True), single, spec.label(i))


def test_a_swept_start_date_has_its_own_column_beside_the_backtest_s(short_market: Market) -> None:
    spec = make_spec(TQQQ, {"startDate": ["2011-06-01", "2012-01-01"], "endDate": ["2013-12-31"]})
    result = run_sweep(spec, market=short_market)
    assert result.parameters == ["request.startDate", "request.endDate"]
    table = result.table
    assert table["request.startDate"].to_list() == ["2011-06-01", "2012-01-01"]
    # the backtest's own first days: after the warm-up, then the first market day from Jan 1
    assert table["startDate"].to_list() == ["2011-10-04", "2012-01-02"]
    assert table["startDate"].to_list() == [run_backtest(spec.strategy(i), short_market, "numba").metrics["startDate"]
                                            for i in range(2)]
    assert table["endDate"].to_list() == ["2013-12-31"] * 2
    assert result.top(1).columns[:3] == ["variant", "request.startDate", "request.endDate"]


def test_programs_of_a_sweep_share_equal_sub_trees_but_never_an_alt_exit(short_market: Market) -> None:
    from gpubt.compiler.compile import Compiler
    from gpubt.compiler.plan import Choose, Latch, walk_steps
    from gpubt.ir.nodes import Builder

    spec = make_spec(ROOT / "examples" / "altexit_trend.json", {"enter-cross.window": [20, 50]})
    builder, interned = Builder(), {}
    roots = [Compiler(spec.strategy(i), short_market, builder, interned=interned).program().root for i in range(2)]
    assert all(isinstance(root, Latch) for root in roots) and roots[0] is not roots[1]
    assert roots[0].other is roots[1].other  # the `safety` slot: one step for both variants
    assert isinstance(roots[0].other.children[0], Choose)
    assert roots[0].then is roots[1].then  # the scaling sub-tree too
    alone = Compiler(spec.strategy(0), short_market, builder).program().root
    assert alone.other is not roots[0].other  # a single run interns nothing
    assert len(walk_steps(roots[0])[0]) == len(walk_steps(alone)[0])


def test_later_variants_take_unchanged_sub_trees_compiled(short_market: Market) -> None:
    """Variants parsed from one base share their unchanged tree nodes; a sub-tree whose compiling
    added nothing to its program (no branch series, altExit or volatility child) is compiled once
    and taken as it is by later variants, which still list their own altExit and branch steps."""
    from gpubt.compiler.compile import Compiler
    from gpubt.ir.nodes import Builder

    tree = json.loads((ROOT / "examples" / "altexit_trend.json").read_text())
    tree["payload"]["children"]["else"][0]["conditions"][0]["ticker"] = "branch:then"  # a branch series
    spec = make_spec(tree, {"enter-cross.window": [20, 50, 80]})
    builder, interned, reused, keys = Builder(), {}, {}, itertools.count()  # as `_run_group` shares them
    programs = [Compiler(spec.strategy(i), short_market, builder, branch_counter=keys, interned=interned,
                         reused=reused).program() for i in range(3)]
    base = spec._parser.strategy.request.payload
    scale, safety = base.children["then"][0], base.children["else"][0]
    assert reused[id(scale)][0] is scale and reused[id(scale)][1] is programs[0].root.then.children[0]
    assert id(safety) not in reused  # it reads a branch series: compiled again for each program
    assert id(base) not in reused  # an altExit: each program's own
    for program in programs:
        assert len(program.latches) == 1 and program.latches[0] is program.root
        assert len(program.branches) == 1
    assert len({id(p.root.other.children[0]) for p in programs}) == 3
    assert {id(p.root.then.children[0]) for p in programs} == {id(programs[0].root.then.children[0])}


# -- the fused path (gpubt.sweep.fused) ---------------------------------------------------------

FUSED_TREE = {"id": "root", "kind": "basic", "weighting": "defined", "children": {"next": [
    {"id": "a", "kind": "indicator", "window": 60, "conditions": [
        {"id": "ca", "metric": "RSI", "ticker": "SPY", "window": 10, "comparator": "gt", "threshold": 70},
        {"id": "ca2", "type": "and", "metric": "Current Price", "ticker": "SPY", "window": 1, "comparator": "gt",
         "expanded": True, "rightMetric": "SMA", "rightWindow": 50, "forDays": 2}],
     "children": {"then": [{"id": "hedge", "kind": "position", "positions": ["TLT", "GLD"]}],
                  "else": [{"id": "b", "kind": "indicator", "conditions": [
                      {"id": "cb", "metric": "SMA", "ticker": "QQQ", "window": 10, "comparator": "crossAbove",
                       "expanded": True, "rightWindow": 40}],
                      "children": {"then": [{"id": "ride", "kind": "position", "positions": ["TQQQ"]}],
                                   "else": [{"id": "cash", "kind": "position", "positions": []}]}}]}},
    {"id": "static", "kind": "indicator", "window": 40, "conditions": [
        {"id": "cs", "metric": "Cumulative Return", "ticker": "GLD", "window": 30, "comparator": "gt", "threshold": 0}],
     "children": {"then": [{"id": "gold", "kind": "position", "positions": ["GLD"]}],
                  "else": [{"id": "capped", "kind": "basic", "weighting": "capped", "cappedFallback": "BIL",
                            "children": {"next": [{"id": "s1", "kind": "position", "positions": ["SHY"], "window": 30},
                                                  {"id": "s2", "kind": "position", "positions": ["IEF"], "window": 30}]}}]}}]}}
FUSED_PARAMETERS = {  # costBps: a number per variant inside the kernel
    "ca.window": [5, 14, 30], "ca.threshold": [55, 70], "ca2.forDays": [1, 3],
    "cb.comparator": ["gt", "crossAbove"], "cb.window": [5, 20], "cb.rightWindow": [40, 120], "costBps": [0, 12.5],
}


def _general_path(monkeypatch: pytest.MonkeyPatch) -> None:
    from gpubt.sweep import run as runner

    monkeypatch.setattr(runner, "fused_plan", lambda *args: "switched off")


def _fused_equals_general_and_single(spec: Any, market: Market, monkeypatch: pytest.MonkeyPatch,
                                     sample: tuple[int, ...]) -> None:
    """The fused sweep's table equals the general path's, and the sampled variants' single runs."""
    fused = run_sweep(spec, market=market, backend="numba").table
    with monkeypatch.context() as patch:
        _general_path(patch)
        general = run_sweep(spec, market=market, backend="numba").table
    assert_frame_equal(fused, general, check_exact=False, rel_tol=REL, abs_tol=1e-12)
    for i in sample:
        single = run_backtest(spec.strategy(i), market, "polars").metrics
        assert_metrics_equal(fused.row(i, named=True), single, spec.label(i))


@pytest.mark.parametrize("combine", ["grid", "zip", {"mode": "random", "samples": 40, "seed": 5}])
def test_fused_path_equals_the_general_path_and_single_runs(
    short_market: Market, combine: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from gpubt.sweep.run import fused_template

    body = {"costBps": 7, "benchmark": "SPY", "startDate": "2010-03-01", "payload": FUSED_TREE}
    parameters = FUSED_PARAMETERS if combine != "zip" else {
        "ca.window": [5, 14, 30, 9], "cb.comparator": ["gt", "crossAbove", "lt", "crossBelow"]}
    spec = make_spec(body, parameters, combine)
    assert fused_template(spec, short_market, "numba") is not None
    fused = run_sweep(spec, market=short_market, backend="numba", chunk_size=7).table
    with monkeypatch.context() as patch:
        _general_path(patch)
        general = run_sweep(spec, market=short_market, backend="numba").table
    assert_frame_equal(fused, general, check_exact=False, rel_tol=REL, abs_tol=1e-12)
    assert fused["startDate"].n_unique() > 1 or combine == "zip"  # windows move the warm-up
    for i in range(0, spec.n_variants, 9):
        single = run_backtest(spec.strategy(i), short_market, "polars").metrics
        assert_metrics_equal(fused.row(i, named=True), single, spec.label(i))
    reference = run_backtest(spec.strategy(1), short_market, "reference").metrics
    assert_metrics_equal(fused.row(1, named=True), reference, spec.label(1))


@pytest.mark.parametrize("comparator", ["gt", "lt"])
def test_window_grids_on_both_sides_run_as_series_pairs(
    short_market: Market, comparator: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A crossover grid (both windows of one line swept): one series per window, compared in
    the kernel; equal to the general path, to the same sweep with condition bits, and to
    single runs."""
    from gpubt.sweep import run as runner
    from gpubt.sweep import fused
    from gpubt.backends import get_backend

    tree = json.loads(json.dumps(FUSED_TREE))
    tree["children"]["next"][0]["children"]["else"][0]["conditions"][0]["comparator"] = comparator
    body = {"costBps": 3, "payload": tree}
    spec = make_spec(body, {"cb.window": [3, 8, 21], "cb.rightWindow": [30, 55], "ca.threshold": [60, 75]})
    plan = fused.prepare(spec, short_market, get_backend("numba"))
    assert plan is not None and plan.kinds.tolist().count(1) == 1 and len(plan.series) == 5
    bits_plan = fused.prepare(spec, short_market, get_backend("numba"), pairs=False)
    assert bits_plan is not None and not bits_plan.kinds.any()
    np.testing.assert_array_equal(plan.run(0, spec.n_variants), bits_plan.run(0, spec.n_variants))
    _fused_equals_general_and_single(spec, short_market, monkeypatch, (0, 5, 11))
    runner._TEMPLATES.clear()


def test_threshold_grids_run_from_one_series_per_window(short_market: Market, monkeypatch: pytest.MonkeyPatch) -> None:
    """A swept line comparing a series with a threshold: one series per window, its bits taken
    from the series for every threshold; equal to condition bits from the graph, to the general
    path and to single runs."""
    from gpubt.backends import get_backend
    from gpubt.sweep import fused

    tree = {"id": "root", "kind": "indicator", "conditions": [
        {"id": "a", "metric": "Relative Strength Index", "ticker": "SPY", "window": 10, "comparator": "gt",
         "threshold": 70}],
        "children": {"then": [{"id": "h", "kind": "position", "positions": ["TLT"]}],
                     "else": [{"id": "inner", "kind": "indicator", "conditions": [
                         {"id": "b", "metric": "Simple Moving Average", "ticker": "QQQ", "window": 20,
                          "comparator": "lt", "threshold": 60}],
                         "children": {"then": [{"id": "t", "kind": "position", "positions": ["TQQQ"]}],
                                      "else": [{"id": "s", "kind": "position", "positions": ["SPY"]}]}}]}}
    spec = make_spec({"costBps": 4, "payload": tree}, {"a.window": [5, 14, 30], "a.threshold": [55, 65, 75],
                                                       "b.window": [10, 40], "b.threshold": [50.5, 70.25]})
    plan = fused.prepare(spec, short_market, get_backend("numba"))
    assert plan is not None and not plan.kinds.any()
    assert len(plan.series) == 5 and len(plan.bits) == 3 * 3 + 2 * 2  # a series per window, a bit row per setting
    graph = fused.prepare(spec, short_market, get_backend("numba"), pairs=False)
    assert graph is not None and len(graph.series) == 0
    np.testing.assert_array_equal(plan.bits, graph.bits)
    np.testing.assert_array_equal(plan.run(0, spec.n_variants), graph.run(0, spec.n_variants))
    _fused_equals_general_and_single(spec, short_market, monkeypatch, (0, 17, 35))


def test_series_compared_outside_the_graph_must_be_finite_where_read() -> None:
    """A backend answers ±inf as missing, which a comparison inside the graph would see as a
    number: a series with a gap on a day a decision reads sends the sweep back to graph bits."""
    from gpubt.sweep.fused.rows import finite_from

    series = np.array([[np.nan, 1.0, 2.0, 3.0], [np.nan, 1.0, np.nan, 3.0]])
    assert finite_from(series, [0, 0], [1, 3])
    assert finite_from(series, [1], [3]) and not finite_from(series, [1], [1])
    assert finite_from(series, [], [])


@pytest.mark.parametrize(("patterns", "tickers"), [(1, 1), (3, 12), (64, 40), (1025, 12), (4096, 33)])
def test_pattern_turnovers_are_the_simulation_s_to_the_bit(patterns: int, tickers: int) -> None:
    """Between every two patterns (and from all cash), a row per thread, each
    equal to `simulate`'s turnover of a day moving from one to the other."""
    from gpubt.sim.simulate import simulate
    from gpubt.sweep.fused.tables import _turnovers

    rng = np.random.default_rng(patterns)
    weights = rng.random((patterns, tickers)) * (rng.random((patterns, tickers)) < 0.4)
    weights /= np.maximum(weights.sum(axis=1, keepdims=True), 1.0)
    turn = np.full((patterns + 1, patterns), np.nan)
    _turnovers(weights, turn)
    cash = np.vstack([weights, np.zeros((1, tickers))])
    prices = np.ones((3, tickers))
    for a in {0, patterns // 2, patterns}:
        holdings = np.stack([np.repeat(cash[a : a + 1], patterns, axis=0), weights, weights], axis=1)
        day_two = simulate(holdings, prices, prices, "CC", 0.0, 0).turnover[:, 1]  # (P, 3 days, N)
        assert turn[a].tobytes() == day_two.tobytes()


def test_fused_path_reads_call_chains_nodes_not_the_calls(short_market: Market) -> None:
    """An if/else node that a call reaches: its conditions are the chain root's (a call node
    has none; the fused path once read the call node's and failed)."""
    from gpubt.sweep.run import fused_template

    chain = {"id": "cr", "kind": "indicator", "conditions": [
        {"id": "c2", "metric": "RSI", "ticker": "QQQ", "window": 14, "comparator": "lt", "threshold": 40}],
        "children": {"then": [{"id": "x", "kind": "position", "positions": ["GLD"]}],
                     "else": [{"id": "y", "kind": "position", "positions": ["SPY"]}]}}
    body = {"payload": {"id": "root", "kind": "basic", "children": {"next": [
        {"id": "k", "kind": "call", "callRefId": "ch"},
        {"id": "u", "kind": "indicator", "conditions": [
            {"id": "c1", "metric": "RSI", "ticker": "SPY", "window": 10, "comparator": "gt", "threshold": 50}],
         "children": {"then": [{"id": "a", "kind": "position", "positions": ["QQQ"]}],
                      "else": [{"id": "b", "kind": "position", "positions": ["TLT"]}]}}]}},
        "callChains": {"ch": chain}}
    spec = make_spec(body, {"c1.threshold": [45, 55], "costBps": [0, 5]})
    assert fused_template(spec, short_market, "numba") is not None
    table = run_sweep(spec, market=short_market, backend="numba").table
    for i in range(spec.n_variants):
        assert_metrics_equal(table.row(i, named=True), run_backtest(spec.strategy(i), short_market, "numba").metrics,
                             spec.label(i))


def test_function_nodes_over_positions_run_on_the_fused_path(short_market: Market,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """A function node ranking positions adds a branch bit per child (picked that day or not):
    its window, metric, count and order sweep on the fused path, as the general path and single
    runs do (here under an if/else node, beside another function node; a count of 0 picks none)."""
    from gpubt.sweep.run import sweep_path

    spec = make_spec(ROOT / "examples" / "momentum_rotation.json", {
        "top3.window": [20, 63], "top3.bottom": [0, 2, 5], "top3.metric": ["Cumulative Return", "RSI"],
        "top3.rank": ["Top", "Bottom"], "trend.window": [50, 150], "defense.window": [20, 60]})
    assert sweep_path(spec, short_market, "numba") == "fused path, CPU kernel"
    fused = run_sweep(spec, market=short_market, backend="numba", chunk_size=11).table
    with monkeypatch.context() as patch:
        _general_path(patch)
        general = run_sweep(spec, market=short_market, backend="numba").table
    assert_frame_equal(fused, general, check_exact=False, rel_tol=REL, abs_tol=1e-12)
    assert fused["avgHoldings"].n_unique() > 3
    for i in range(0, spec.n_variants, 13):
        assert_metrics_equal(fused.row(i, named=True), run_backtest(spec.strategy(i), short_market, "polars").metrics,
                             spec.label(i))


def test_a_function_window_that_is_also_a_cap_is_an_allocation_setting(short_market: Market,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """A child's window is its cap in a capped group (its weight in a defined one): sweeping a
    function node's window there changes the allocation of every pattern (found by the
    random-tree property), so it is an allocation setting as well as the score's window."""
    from gpubt.sweep.run import fused_template, sweep_path

    body = {"payload": {"id": "in1", "kind": "indicator", "weighting": "capped", "conditions": [
        {"id": "c7", "ticker": "QQQ/SPY", "comparator": "lt", "metric": "RSI", "window": 5, "threshold": 40}],
        "children": {"then": [{"id": "fu2", "kind": "function", "metric": "RSI", "bottom": 1, "rank": "Top",
                               "children": {"next": [{"id": "p3", "kind": "position", "positions": ["SPY"]}]}}]}}}
    spec = make_spec(body, {"fu2.window": [3, 12]})
    template = fused_template(spec, short_market, "numba")
    assert template is not None and template.alloc.max() + 1 == 2
    table = run_sweep(spec, market=short_market, backend="numba").table
    for i in range(2):
        assert_metrics_equal(table.row(i, named=True), run_backtest(spec.strategy(i), short_market, "numba").metrics,
                             spec.label(i))
    equal = json.loads(json.dumps(body))
    equal["payload"]["weighting"] = "equal"
    assert sweep_path(make_spec(equal, {"fu2.window": [3, 12]}), short_market, "numba") == "fused path, CPU kernel"
    defined = {"payload": {"id": "root", "kind": "basic", "weighting": "defined", "children": {"next": [
        {"id": "fu", "kind": "function", "metric": "Cumulative Return", "window": 10, "bottom": 1, "rank": "Top",
         "children": {"next": [{"id": "s", "kind": "position", "positions": ["SPY"]},
                               {"id": "q", "kind": "position", "positions": ["QQQ"]}]}},
        {"id": "g", "kind": "position", "positions": ["GLD"], "window": 20}]}}}
    spec = make_spec(defined, {"fu.window": [5, 20, 60], "fu.bottom": [1, 2], "root.weighting": ["defined", "equal"]})
    assert fused_template(spec, short_market, "numba") is not None
    _fused_equals_general_and_single(spec, short_market, monkeypatch, tuple(range(spec.n_variants)))


def test_swept_dates_modes_and_benchmarks_stay_on_the_fused_path(short_market: Market,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """startDate and endDate only move a variant's backtest window, a mode its periods and a
    benchmark its beta (one window per warm-up, mode, dates and benchmark, pattern returns per
    mode; a benchmark without data leaves beta missing); the fused path runs them, as the
    general path and single runs do."""
    from gpubt.sweep.run import fused_template

    body = {"costBps": 7, "benchmark": "SPY", "payload": FUSED_TREE}
    spec = make_spec(body, {"startDate": ["2010-03-01", "2011-06-15", "2009-01-01"], "ca.window": [5, 30],
                            "endDate": ["2013-12-31", "2014-12-31"], "cb.rightWindow": [40, 120],
                            "mode": ["CC", "oo", "OC", "CO"], "benchmark": ["SPY", "QQQ", "NOPE"]})
    template = fused_template(spec, short_market, "numba")
    assert template is not None and len(template.starts) >= 72 and set(template.gross_at) == {
        0, *(k * len(template.held) for k in range(1, 4))}
    fused = run_sweep(spec, market=short_market, backend="numba", chunk_size=7).table
    assert fused["request.startDate"].n_unique() == 3 and fused["endDate"].n_unique() == 2
    assert fused.filter(pl.col("benchmark") == "NOPE")["beta"].null_count() == spec.n_variants // 3
    assert fused.filter(pl.col("benchmark") != "NOPE")["beta"].null_count() == 0
    with monkeypatch.context() as patch:
        _general_path(patch)
        general = run_sweep(spec, market=short_market, backend="numba").table
    assert_frame_equal(fused, general, check_exact=False, rel_tol=REL, abs_tol=1e-12)
    for i in range(0, spec.n_variants, 5):
        single = run_backtest(spec.strategy(i), short_market, "polars").metrics
        assert_metrics_equal(fused.row(i, named=True), single, spec.label(i))


def test_swept_positions_weights_and_weightings_stay_on_the_fused_path(short_market: Market,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """A position's tickers, a node's weight (its window in a defined group, its cap in a capped
    one), a group's weighting and fallback change only what each branch pattern holds: the fused
    path keeps tables per allocation setting (here 2 × 2 × 3 × 2 × 2 = 48, beside swept
    conditions and costs), equal to the general path and to single runs."""
    from gpubt.sweep.run import fused_template

    parameters = {"hedge.positions": [["TLT", "GLD"], ["UVXY"]], "a.window": [60, 15], "s1.window": [30, 5, 80],
                  "capped.weighting": ["capped", "equal"], "capped.cappedFallback": ["BIL", ""],
                  "ca.window": [5, 14], "cb.rightWindow": [40, 120], "costBps": [0, 12.5]}
    spec = make_spec({"costBps": 7, "payload": FUSED_TREE}, parameters)
    template = fused_template(spec, short_market, "numba")
    assert template is not None and template.alloc.max() + 1 == 48
    # patterns holding the same weights share their rows; turnovers are between distinct allocations
    settings, patterns = template.table_row.shape
    widths = template.setting_at[:, 2]
    assert settings == 48 and (widths < patterns).all() and (template.table_row.max(axis=1) + 1 == widths).all()
    assert len(template.held) == widths.sum() and len(template.turn) == ((widths + 1) * widths).sum()
    _fused_equals_general_and_single(spec, short_market, monkeypatch, tuple(range(0, spec.n_variants, 23)))
    fused = run_sweep(spec, market=short_market, backend="numba", chunk_size=9).table
    assert fused.group_by("hedge.positions", "s1.window").agg(pl.col("cagr").mean())["cagr"].n_unique() == 6
    assert fused["avgHoldings"].n_unique() > 8  # UVXY alone, caps that bind or not, the fallback


def test_positions_a_function_node_ranks_are_scored_per_setting(short_market: Market,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """A ranked position's tickers are also its score: its pick rows are made per setting of
    them (one ticker: that ticker's series; several: their branch series), beside the node's
    own fields; what the pattern holds is the setting's plan. momentum_rotation.json with two
    of its ranked positions swept (one to two tickers) and the node's window."""
    from gpubt.sweep.run import fused_template

    ranked = json.loads((ROOT / "examples" / "momentum_rotation.json").read_text())
    first, second = ranked["payload"]["children"]["then"][0]["children"]["next"][:2]
    spec = make_spec(ranked, {"top3.window": [20, 63], f"{first['id']}.positions": [first["positions"], ["GLD"]],
                              f"{second['id']}.positions": [second["positions"], ["TLT", "IEF"]]})
    template = fused_template(spec, short_market, "numba")
    assert template is not None and template.alloc.max() + 1 == 4
    _fused_equals_general_and_single(spec, short_market, monkeypatch, tuple(range(spec.n_variants)))


def test_weights_that_move_by_day_run_on_the_fused_path(short_market: Market,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """A scaling node and inverse or pro weights over children without conditions move a
    pattern's weights from day to day: the fused path keeps each pattern's weights, turnover and
    positions by day (the turnover of a day the pattern changes from both days' weights), equal
    to the general path and to single runs: altexit_trend.json's scaling node swept beside its
    entry and exit lines, and FUSED_TREE's capped group swept to pro and inverse weights."""
    from gpubt.sweep.run import fused_template

    spec = make_spec(ROOT / "examples" / "altexit_trend.json", {
        "exit-dd.threshold": [5, 12], "enter-rsi.threshold": [60, 90], "scale.scaleWindow": [7, 14],
        "scale.scaleTo": [70, 85], "costBps": [0, 10]})
    template = fused_template(spec, short_market, "numba")
    assert template is not None and template.daily.shape[0] == 4 * len(template.dense) and len(template.held) == 0
    _fused_equals_general_and_single(spec, short_market, monkeypatch, tuple(range(0, spec.n_variants, 5)))
    spec = make_spec({"payload": FUSED_TREE}, {"ca.window": [5, 14], "capped.weighting": ["capped", "pro", "inverse"],
                                              "capped.volWindow": [10, 30], "costBps": [0, 10]})
    assert fused_template(spec, short_market, "numba") is not None
    _fused_equals_general_and_single(spec, short_market, monkeypatch, tuple(range(0, spec.n_variants, 5)))


# a scaling node over FUSED_TREE's two if/else children (its level and the conditions inside swept)
SCALED_CONDITIONS = {"id": "lift", "kind": "scaling", "scaleMetric": "Relative Strength Index", "scaleWindow": 14,
                     "scaleTicker": "QQQ", "scaleFrom": 30, "scaleTo": 70, "children": {
                         "then": [FUSED_TREE["children"]["next"][0]], "else": [FUSED_TREE["children"]["next"][1]]}}


def test_moving_weights_over_children_with_conditions_run_on_the_fused_path(
        short_market: Market, monkeypatch: pytest.MonkeyPatch) -> None:
    """A scaling node's weights on a day read that day's branch bits and its level alone, so the
    conditions below it may be swept (its first day is its level's, the conditions' come with
    their bits: a variant's shorter SMA starts earlier than the first variant's). Inverse or pro weights read each child's trailing volatility, which runs
    through every earlier day's bits: fused when no signal inside the children is swept, with the
    children's real series, an allocation setting's own where positions inside are swept
    (FUSED_TREE's root swept to inverse and pro weights beside a position inside, costs and the
    start date)."""
    from gpubt.sweep.run import fused_template

    spec = make_spec({"payload": SCALED_CONDITIONS}, {
        "ca.window": [5, 30], "cb.rightWindow": [120, 40], "cs.threshold": [-2, 3], "lift.scaleWindow": [7, 14],
        "lift.scaleTo": [50, 90]})
    template = fused_template(spec, short_market, "numba")
    assert template is not None and template.daily.shape[0] == 4 * len(template.dense)
    _fused_equals_general_and_single(spec, short_market, monkeypatch, tuple(range(0, spec.n_variants, 3)))
    spec = make_spec({"payload": FUSED_TREE}, {"root.weighting": ["defined", "inverse", "pro"],
                                              "root.volWindow": [5, 30], "s1.positions": [["SHY"], ["TLT"]],
                                              "costBps": [0, 10], "startDate": ["2011-01-03", "2012-06-01"]})
    template = fused_template(spec, short_market, "numba")
    assert template is not None and template.daily.shape[0] > 0
    _fused_equals_general_and_single(spec, short_market, monkeypatch, tuple(range(0, spec.n_variants, 3)))


def test_scaling_settings_beside_branch_reads_run_on_the_fused_path(
        short_market: Market, monkeypatch: pytest.MonkeyPatch) -> None:
    """A scaling node swept in a tree that reads a branch series elsewhere (an if/else node on
    the RSI of its own then-branch): each scaling setting's level is a market series, the
    branch equity the base's. A setting's level may read a branch series too (its own
    compile's sub-tree: a then-branch whose position is swept), its equity made like a read
    sub-tree's."""
    from gpubt.sweep.run import fused_template

    scaling = {"id": "lift", "kind": "scaling", "scaleMetric": "Relative Strength Index", "scaleWindow": 14,
               "scaleTicker": "QQQ", "scaleFrom": 30, "scaleTo": 70, "children": {
                   "then": [{"id": "up", "kind": "position", "positions": ["SPY"]}],
                   "else": [{"id": "down", "kind": "position", "positions": ["TLT"]}]}}
    reader = {"id": "rd", "kind": "indicator", "conditions": [
        {"id": "cr", "metric": "RSI", "ticker": "branch:then", "window": 10, "comparator": "gt", "threshold": 50}],
        "children": {"then": [{"id": "hi", "kind": "position", "positions": ["QQQ"]}],
                     "else": [{"id": "lo", "kind": "position", "positions": ["IEF"]}]}}
    body = {"payload": {"id": "root", "kind": "basic", "children": {"next": [scaling, reader]}}}
    spec = make_spec(body, {"lift.scaleTo": [50, 90], "lift.scaleWindow": [7, 14], "up.positions": [["SPY"], ["GLD"]],
                            "cr.threshold": [40, 60]})
    template = fused_template(spec, short_market, "numba")
    assert template is not None and template.alloc.max() + 1 == 8  # 2 × 2 × 2 scaling settings
    _fused_equals_general_and_single(spec, short_market, monkeypatch, tuple(range(spec.n_variants)))
    spec = make_spec(body, {"lift.scaleTicker": ["QQQ", "branch:then", "branch:else"], "cr.threshold": [40, 60],
                            "up.positions": [["SPY"], ["GLD"]]})
    assert fused_template(spec, short_market, "numba") is not None
    _fused_equals_general_and_single(spec, short_market, monkeypatch, tuple(range(spec.n_variants)))


def test_signals_inside_a_sub_tree_a_scaling_level_reads_are_allocation_settings(
        short_market: Market, monkeypatch: pytest.MonkeyPatch) -> None:
    """A scaling level on a branch: ticker reads that slot's equity, which moves with the fields
    swept inside it (a function node's metric, a condition's threshold): they join the
    allocation setting, each setting's compile making its level (found by the random-tree
    property: the level was the first variant's for every variant)."""
    from gpubt.sweep.run import fused_template

    body = {"payload": {"id": "sc", "kind": "scaling", "scaleMetric": "Relative Strength Index", "scaleWindow": 5,
                        "scaleTicker": "branch:else", "scaleFrom": 30, "scaleTo": 70, "children": {
                            "then": [{"id": "t", "kind": "position", "positions": ["TLT"]}],
                            "else": [{"id": "fu", "kind": "function", "metric": "Relative Strength Index",
                                      "window": 5, "rank": "Top", "bottom": 1, "children": {"next": [
                                          {"id": "s", "kind": "position", "positions": ["SPY"]},
                                          {"id": "q", "kind": "position", "positions": ["QQQ"]}]}},
                                     {"id": "g", "kind": "indicator", "conditions": [
                                         {"id": "cg", "metric": "RSI", "ticker": "GLD", "window": 10, "comparator": "gt",
                                          "threshold": 50}],
                                      "children": {"then": [{"id": "gl", "kind": "position", "positions": ["GLD"]}],
                                                   "else": [{"id": "ie", "kind": "position", "positions": ["IEF"]}]}}]}}}
    spec = make_spec(body, {"fu.metric": ["Cumulative Return", "Relative Strength Index"], "cg.threshold": [40, 60],
                            "sc.scaleTo": [60, 80]})
    template = fused_template(spec, short_market, "numba")
    assert template is not None and template.alloc.max() + 1 == 8
    _fused_equals_general_and_single(spec, short_market, monkeypatch, tuple(range(spec.n_variants)))


@pytest.mark.parametrize("body, parameters", [
    ({"payload": FUSED_TREE}, {"ca.window": [5, 10], "root.weighting": ["defined", "inverse"], "costBps": [0, 10]}),
    ({"payload": FUSED_TREE}, {"cb.window": [5, 10], "cs.threshold": [-2, 3], "root.weighting": ["pro"],
                               "root.volWindow": [5, 20]}),
    ({"payload": {"id": "iv", "kind": "basic", "weighting": "inverse", "children": {"next": [
        SCALED_CONDITIONS, {"id": "q", "kind": "position", "positions": ["QQQ"]}]}}},
     {"lift.scaleWindow": [7, 14], "ca.threshold": [55, 70]}),
])
def test_signals_inside_volatility_weights_are_allocation_settings(
        short_market: Market, monkeypatch: pytest.MonkeyPatch, body: dict, parameters: dict) -> None:
    """A condition or scaling level swept inside a child of inverse or pro weights changes the
    child's volatility: each of its settings is an allocation setting, whose plan's children
    keep the real series of that setting's own signals (also where only some settings' weighting
    is volatile: the base's is defined in the first case)."""
    from gpubt.sweep.run import fused_template

    spec = make_spec(body, parameters)
    template = fused_template(spec, short_market, "numba")
    assert template is not None and template.daily.shape[0] > 0 and len(np.unique(template.alloc)) > 1
    _fused_equals_general_and_single(spec, short_market, monkeypatch, tuple(range(spec.n_variants)))


# an altExit node whose entry rarely fires: its state started on different days stays apart long
LATCH = {"id": "trend", "kind": "altExit",
         "entryConditions": [{"id": "in", "metric": "RSI", "ticker": "QQQ", "window": 10, "comparator": "crossAbove",
                              "threshold": 60}],
         "exitConditions": [{"id": "out", "metric": "RSI", "ticker": "QQQ", "window": 10, "comparator": "crossBelow",
                             "threshold": 35}],
         "children": {"then": [{"id": "lev", "kind": "position", "positions": ["TQQQ"]}],
                      "else": [{"id": "safe", "kind": "position", "positions": ["TLT"]}]}}


@pytest.mark.parametrize("weighting", ["inverse", "pro"])
def test_altexit_inside_volatility_weights_runs_per_first_day(
        short_market: Market, monkeypatch: pytest.MonkeyPatch, weighting: str) -> None:
    """An altExit node inside a child of inverse or pro weights starts its state on the
    backtest's first day, so the child's volatility (and the weights) depend on it: its
    allocation settings are made per first day. Swept here: a window outside the child (moves
    the first day), the altExit's own threshold (an allocation setting) and the start date."""
    from gpubt.sweep.run import fused_template

    body = {"payload": {"id": "gate", "kind": "indicator", "conditions": [
        {"id": "g", "metric": "RSI", "ticker": "SPY", "window": 14, "comparator": "gt", "threshold": 30}],
        "children": {"then": [{"id": "iv", "kind": "basic", "weighting": weighting, "children": {"next": [
            LATCH, {"id": "q", "kind": "position", "positions": ["QQQ"]}]}}],
            "else": [{"id": "t", "kind": "position", "positions": ["TLT"]}]}}}
    spec = make_spec(body, {"g.window": [14, 300], "out.threshold": [30, 35],
                            "startDate": ["2010-01-04", "2012-01-03"]})
    template = fused_template(spec, short_market, "numba")
    assert template is not None and template.daily.shape[0] > 0
    assert len(np.unique(template.alloc)) == 6  # 2 thresholds × 3 first days (the 2012 start is both windows')
    _fused_equals_general_and_single(spec, short_market, monkeypatch, tuple(range(spec.n_variants)))


@pytest.mark.parametrize("inside", [False, True])
@pytest.mark.parametrize("reader", ["condition", "function"])
def test_altexit_inside_a_read_subtree_runs_per_first_day(
        short_market: Market, monkeypatch: pytest.MonkeyPatch, reader: str, inside: bool) -> None:
    """A sub-tree the tree reads (a branch: condition on it, or a function node ranking it) with
    an altExit node inside: its state starts on the backtest's first day, so its equity, the
    signals on it and the picks do too; the rows reading it are made per first day (and per
    setting of the fields swept inside it, ``inside``: the altExit node's exit threshold).
    Swept: a window outside it that moves the first day, the reading condition's or function
    node's fields and the start date."""
    from gpubt.sweep.run import fused_template

    if reader == "condition":
        payload = {"id": "rd", "kind": "indicator", "conditions": [
            {"id": "cr", "metric": "RSI", "ticker": "branch:then", "window": 10, "comparator": "gt", "threshold": 50},
            {"id": "cg", "type": "and", "metric": "RSI", "ticker": "SPY", "window": 14, "comparator": "gt",
             "threshold": 20}],
            "children": {"then": [LATCH], "else": [{"id": "lo", "kind": "position", "positions": ["IEF"]}]}}
        parameters = {"cg.window": [14, 300], "cr.threshold": [40, 60], "cr.window": [5, 10],
                      "startDate": ["2010-01-04", "2012-01-03"]}
    else:
        payload = {"id": "gate", "kind": "indicator", "conditions": [
            {"id": "cg", "metric": "RSI", "ticker": "SPY", "window": 14, "comparator": "gt", "threshold": 20}],
            "children": {"then": [{"id": "f", "kind": "function", "metric": "Cumulative Return", "window": 20,
                                   "rank": "Top", "bottom": 1, "children": {"next": [
                                       LATCH, {"id": "q", "kind": "position", "positions": ["QQQ"]},
                                       {"id": "g", "kind": "position", "positions": ["GLD"]}]}}],
                         "else": [{"id": "lo", "kind": "position", "positions": ["IEF"]}]}}
        parameters = {"cg.window": [14, 300], "f.window": [10, 40], "f.bottom": [1, 2],
                      "startDate": ["2010-01-04", "2012-01-03"]}
    if inside:
        parameters["out.threshold"] = [30, 40]
    spec = make_spec({"payload": payload}, parameters)
    template = fused_template(spec, short_market, "numba")
    assert template is not None
    _fused_equals_general_and_single(spec, short_market, monkeypatch, tuple(range(spec.n_variants)))


# an if/else node on the RSI of its own then-branch: a sub-tree that reads a branch series
SELF_READ = {"id": "sr", "kind": "indicator", "conditions": [
    {"id": "cs2", "metric": "RSI", "ticker": "branch:then", "window": 10, "comparator": "lt", "threshold": 70}],
    "children": {"then": [{"id": "lev2", "kind": "position", "positions": ["TQQQ"]}],
                 "else": [{"id": "ief2", "kind": "position", "positions": ["IEF"]}]}}


@pytest.mark.parametrize("holder", ["function", "inverse"])
def test_subtrees_compiled_per_setting_may_read_their_own_branches(
        short_market: Market, monkeypatch: pytest.MonkeyPatch, holder: str) -> None:
    """A sub-tree compiled per setting of the fields swept inside it (ranked by a function
    node; a child of inverse weights whose settings differ) may read its own sub-trees'
    series: every compile numbers its branch leaves from one counter, and their signals are
    evaluated in stages, the equities they read made first."""
    from gpubt.sweep.run import fused_template

    others = [{"id": "q", "kind": "position", "positions": ["QQQ"]}, {"id": "g", "kind": "position", "positions": ["GLD"]}]
    if holder == "function":
        payload = {"id": "f", "kind": "function", "metric": "Cumulative Return", "window": 20, "rank": "Top",
                   "bottom": 1, "children": {"next": [SELF_READ, *others]}}
        parameters = {"cs2.threshold": [60, 80], "cs2.window": [5, 10], "f.window": [10, 40]}
    else:
        payload = {"id": "iv", "kind": "basic", "weighting": "inverse", "children": {"next": [SELF_READ, *others]}}
        parameters = {"cs2.threshold": [60, 80], "cs2.window": [5, 10], "iv.volWindow": [10, 30]}
    spec = make_spec({"payload": payload}, parameters)
    template = fused_template(spec, short_market, "numba")
    assert template is not None
    _fused_equals_general_and_single(spec, short_market, monkeypatch, tuple(range(spec.n_variants)))


# SELF_READ with an altExit node as its then-branch: a sub-tree reading the equity of one
LATCH_READ = {**SELF_READ, "children": {"then": [LATCH], "else": SELF_READ["children"]["else"]}}


@pytest.mark.parametrize("holder", ["function", "condition"])
def test_signals_reading_an_altexit_subtree_run_per_first_day(
        short_market: Market, monkeypatch: pytest.MonkeyPatch, holder: str) -> None:
    """A sub-tree whose condition reads the equity of its own then-branch, an altExit node: the
    altExit state starts on the backtest's first day, so that signal, the sub-tree's equity and
    whatever reads it differ by first day. Ranked by a function node with the condition swept
    (compiled per setting) or read by a branch: condition (the base's compile); its signals
    are evaluated again per first day, in stages. Swept: a window outside that moves the
    first day and the start date."""
    from gpubt.sweep.run import fused_template

    gate = {"id": "cg", "metric": "RSI", "ticker": "SPY", "window": 14, "comparator": "gt", "threshold": 20}
    if holder == "function":
        payload = {"id": "gate", "kind": "indicator", "conditions": [gate], "children": {"then": [
            {"id": "f", "kind": "function", "metric": "Cumulative Return", "window": 20, "rank": "Top", "bottom": 1,
             "children": {"next": [LATCH_READ, {"id": "q", "kind": "position", "positions": ["QQQ"]},
                                   {"id": "g", "kind": "position", "positions": ["GLD"]}]}}],
            "else": [{"id": "lo", "kind": "position", "positions": ["IEF"]}]}}
        parameters = {"cg.window": [14, 300], "cs2.threshold": [60, 80], "f.window": [10, 40],
                      "startDate": ["2010-01-04", "2012-01-03"]}
    else:
        payload = {"id": "rd", "kind": "indicator", "conditions": [
            {"id": "cr", "metric": "RSI", "ticker": "branch:then", "window": 10, "comparator": "gt", "threshold": 50},
            {**gate, "type": "and"}],
            "children": {"then": [LATCH_READ], "else": [{"id": "lo", "kind": "position", "positions": ["IEF"]}]}}
        parameters = {"cg.window": [14, 300], "cr.threshold": [40, 60], "startDate": ["2010-01-04", "2012-01-03"]}
    spec = make_spec({"payload": payload}, parameters)
    template = fused_template(spec, short_market, "numba")
    assert template is not None
    _fused_equals_general_and_single(spec, short_market, monkeypatch, tuple(range(spec.n_variants)))


def test_numbered_nodes_run_on_the_fused_path(short_market: Market, monkeypatch: pytest.MonkeyPatch) -> None:
    """A numbered node's item is a branch bit (True or not), and one more (Null) where a setting's
    quantifier counts Nulls (all, none); its n and quantifier, like weights, pick the pattern
    tables. regime_ladder.json (a ladder, a custom formula, a Date item, an item of two lines)
    swept over every quantifier, n and an item's threshold: equal to the general path and to
    single runs."""
    from gpubt.sweep.run import fused_template

    spec = make_spec(ROOT / "examples" / "regime_ladder.json", {
        "root.quantifier": ["ladder", "all", "none", "atLeast", "any", "exactly", "atMost"], "root.n": [1, 3],
        "n3.threshold": [18, 25], "n2.window": [21, 63]})
    template = fused_template(spec, short_market, "numba")
    assert template is not None and template.rows.shape[1] == 9 and template.alloc.max() + 1 == 14  # 4 items × 2, a chain's if/else
    _fused_equals_general_and_single(spec, short_market, monkeypatch, tuple(range(0, spec.n_variants, 7)))


def test_numbered_items_null_inside_the_window_are_counted_as_null(monkeypatch: pytest.MonkeyPatch) -> None:
    """An item whose ticker stops trading is Null from then on: "all" and "none" then fail while
    "any" and "atMost" count Trues only; the fused path keeps a Null bit per item for them."""
    from gpubt.sweep.run import fused_template
    from tests.strategies import MarketSpec

    market = MarketSpec(seed=3, start="2010-01-04", n_days=150, tickers=("SPY", "QQQ", "TLT"), vols=(0.01,) * 3,
                        first=(0, 0, 0), last=(149, 110, 149)).build()
    body = {"payload": {"id": "count", "kind": "numbered", "numbered": {"quantifier": "all", "n": 1, "items": [
        {"id": "i1", "conditions": [{"id": "q", "metric": "RSI", "ticker": "QQQ", "window": 5, "comparator": "gt",
                                     "threshold": 20}]},
        {"id": "i2", "conditions": [{"id": "s", "metric": "RSI", "ticker": "SPY", "window": 5, "comparator": "gt",
                                     "threshold": 20}]}]},
        "children": {"then": [{"id": "on", "kind": "position", "positions": ["SPY"]}],
                     "else": [{"id": "off", "kind": "position", "positions": ["TLT"]}]}}}
    spec = make_spec(body, {"count.quantifier": ["all", "none", "any", "atMost"], "q.threshold": [20, 80],
                            "s.threshold": [20, 80]})
    template = fused_template(spec, market, "numba")
    assert template is not None and template.rows.shape[1] == 4  # a True and a Null bit per item
    _fused_equals_general_and_single(spec, market, monkeypatch, tuple(range(spec.n_variants)))
    table = run_sweep(spec, market=market, backend="numba").table
    # "all" with both thresholds low: SPY until QQQ's Null, TLT after
    low = table.filter((pl.col("count.quantifier") == "all") & (pl.col("q.threshold") == 20) & (pl.col("s.threshold") == 20))
    assert low["avgTurnover"][0] > 0


# a function node ranking two sub-trees (an if/else node, a group) and a position, beside an
# if/else node reading the equity of its own then-branch
RANKED_TREES = {"id": "root", "kind": "basic", "children": {"next": [
    {"id": "f", "kind": "function", "metric": "Cumulative Return", "window": 20, "bottom": 1, "children": {"next": [
        {"id": "b1", "kind": "indicator", "conditions": [
            {"id": "cx", "metric": "RSI", "ticker": "QQQ", "window": 14, "comparator": "gt", "threshold": 50}],
         "children": {"then": [{"id": "x", "kind": "position", "positions": ["QQQ"]}],
                      "else": [{"id": "y", "kind": "position", "positions": ["IEF"]}]}},
        {"id": "b2", "kind": "basic", "children": {"next": [{"id": "g", "kind": "position", "positions": ["GLD"]},
                                                            {"id": "t", "kind": "position", "positions": ["TLT"]}]}},
        {"id": "x2", "kind": "position", "positions": ["SPY"]}]}},
    {"id": "top", "kind": "indicator", "conditions": [
        {"id": "ct", "metric": "RSI", "ticker": "branch:then", "window": 10, "comparator": "lt", "threshold": 80}],
     "children": {"then": [{"id": "lev", "kind": "position", "positions": ["TQQQ"]}],
                  "else": [{"id": "cash", "kind": "position", "positions": ["SHY"]}]}}]}}


def test_branch_series_the_variants_share_run_on_the_fused_path(short_market: Market,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """A sub-tree's equity (ranked by a function node, or read by a branch: ticker) is the same
    for every variant when nothing inside it is swept: computed once on the market, it makes the
    function node's scores and the condition's series; its children's picks see which are
    active that day. Swept function fields and the reading condition's threshold and window run
    on the fused path (with positions and weightings swept outside the read sub-trees too),
    equal to the general path and to single runs."""
    from gpubt.sweep.run import fused_template, sweep_path

    spec = make_spec({"payload": RANKED_TREES, "costBps": 5}, {
        "f.window": [5, 20, 60], "f.bottom": [1, 2], "f.rank": ["Top", "Bottom"], "ct.threshold": [50, 80],
        "ct.window": [5, 10]})
    assert fused_template(spec, short_market, "numba") is not None
    _fused_equals_general_and_single(spec, short_market, monkeypatch, tuple(range(0, spec.n_variants, 7)))
    # positions and weightings outside the read sub-trees: the same equities for every setting
    spec = make_spec({"payload": RANKED_TREES}, {"f.bottom": [1, 2], "cash.positions": [["SHY"], ["BIL", "TLT"]],
                                                 "root.weighting": ["equal", "defined"], "ct.threshold": [60, 80]})
    assert fused_template(spec, short_market, "numba") is not None
    _fused_equals_general_and_single(spec, short_market, monkeypatch, tuple(range(spec.n_variants)))


def test_ranked_sub_trees_with_swept_conditions_run_on_the_fused_path(short_market: Market,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """A sub-tree a function node ranks, with swept conditions inside: its conditions are branch
    bits like any other, and its equity (so its score, its first day and the days it is
    active) differs by setting: each setting of the sub-tree is compiled once, its equity made
    from its own signals, and the function node's picks are made per function setting × sub-tree
    setting. The first variant's RSI window is the longest, so a later setting starts earlier.
    A position swept inside is both: a setting of the sub-tree (its equity) and an allocation
    setting (what a pattern holds), and so are conditions inside when the node weights the
    sub-trees it picks by volatility. Equal to the general path and to single runs."""
    from gpubt.sweep.run import fused_template

    spec = make_spec({"payload": RANKED_TREES, "costBps": 5}, {
        "f.window": [40, 10], "f.bottom": [1, 2], "cx.window": [60, 7], "cx.threshold": [40, 55, 60],
        "ct.threshold": [60, 80], "costBps": [0, 5]})
    template = fused_template(spec, short_market, "numba")
    assert template is not None and len(np.unique(template.starts)) > 1
    _fused_equals_general_and_single(spec, short_market, monkeypatch, tuple(range(0, spec.n_variants, 4)))
    spec = make_spec({"payload": RANKED_TREES}, {"cx.window": [7, 14], "x.positions": [["QQQ"], ["SPY", "TLT"]],
                                                 "f.bottom": [1, 2], "ct.threshold": [60, 80]})
    template = fused_template(spec, short_market, "numba")
    assert template is not None and len(np.unique(template.alloc)) == 2
    _fused_equals_general_and_single(spec, short_market, monkeypatch, tuple(range(spec.n_variants)))
    # inverse weights over the picked sub-trees: their volatilities are each setting's too
    inverse = json.loads(json.dumps(RANKED_TREES))
    inverse["children"]["next"][0].update(weighting="inverse", volWindow=30)
    spec = make_spec({"payload": inverse}, {"cx.window": [60, 7], "f.bottom": [2, 3], "cx.threshold": [45, 55]})
    assert fused_template(spec, short_market, "numba") is not None
    _fused_equals_general_and_single(spec, short_market, monkeypatch, tuple(range(spec.n_variants)))


READ_BRANCH = {"id": "top", "kind": "indicator", "conditions": [
    {"id": "ct", "metric": "RSI", "ticker": "branch:then", "window": 10, "comparator": "lt", "threshold": 80}],
    "children": {"then": [{"id": "inner", "kind": "indicator", "conditions": [
        {"id": "ci", "metric": "RSI", "ticker": "QQQ", "window": 14, "comparator": "gt", "threshold": 50}],
        "children": {"then": [{"id": "lev", "kind": "position", "positions": ["TQQQ"]}],
                     "else": [{"id": "safe", "kind": "position", "positions": ["IEF"]}]}}],
        "else": [{"id": "cash", "kind": "position", "positions": ["SHY"]}]}}


def test_branch_tickers_reading_swept_sub_trees_run_on_the_fused_path(short_market: Market,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """A condition on a branch: ticker whose sub-tree has swept fields inside (a condition's
    window and threshold, a position) reads a different equity per setting of them: its bit
    rows are made per setting of its own fields and theirs, each from a variant's compile (its
    own branch leaf). The first variant's RSI window is the longest, so later settings start
    earlier. Equal to the general path and to single runs (also beside a function node)."""
    from gpubt.sweep.run import fused_template

    spec = make_spec({"payload": READ_BRANCH}, {"ci.window": [60, 7], "ci.threshold": [45, 55],
                                                "ct.threshold": [60, 80], "lev.positions": [["TQQQ"], ["SPY"]]})
    template = fused_template(spec, short_market, "numba")
    assert template is not None and len(np.unique(template.starts)) > 1
    _fused_equals_general_and_single(spec, short_market, monkeypatch, tuple(range(spec.n_variants)))
    spec = make_spec({"payload": RANKED_TREES}, {"f.window": [5, 60], "lev.positions": [["TQQQ"], ["UPRO"]],
                                                 "ct.window": [5, 10]})
    assert fused_template(spec, short_market, "numba") is not None
    _fused_equals_general_and_single(spec, short_market, monkeypatch, tuple(range(spec.n_variants)))


def altexit_without_scaling() -> dict:
    """examples/altexit_trend.json with its scaling node replaced by its first position."""
    body = json.loads((ROOT / "examples" / "altexit_trend.json").read_text())
    body["payload"]["children"]["then"] = [{"id": "lev", "kind": "position", "positions": ["TQQQ"]}]
    return body


def test_altexit_nodes_run_on_the_fused_path(short_market: Market, monkeypatch: pytest.MonkeyPatch) -> None:
    """An altExit node's state is a branch bit the kernel scans from its entry and exit rows (out
    before a variant's first day, in on an entry day, out on an exit day): its entry and exit
    lines' fields sweep on the fused path beside an if/else node's window, a position and the
    start date (which moves where each scan begins), equal to the general path and to single
    runs."""
    from gpubt.sweep.run import fused_template

    spec = make_spec(altexit_without_scaling(), {
        "exit-dd.threshold": [5, 12, 20], "enter-rsi.threshold": [60, 90], "exit-trend.forDays": [1, 5],
        "enter-cross.rightWindow": [100, 200], "bond-trend.window": [30, 60], "lev.positions": [["TQQQ"], ["SPY"]],
        "startDate": ["2010-06-01", "2012-01-03"]})
    template = fused_template(spec, short_market, "numba")
    assert template is not None and template.kinds.tolist() == [0, 2] and len(template.latches) == 3 * 2 * 2 * 2
    _fused_equals_general_and_single(spec, short_market, monkeypatch, tuple(range(0, spec.n_variants, 11)))


def test_a_swept_benchmark_the_market_lacks_keeps_the_held_tickers_calendar() -> None:
    """A benchmark without data adds no days: that variant's calendar is its tickers' alone
    (found by the static-tree property, with the fused path since benchmarks were swept there):
    SPY's last day missing ends it a day early, and a variant holding nothing has no days."""
    from gpubt.sweep.run import sweep_path
    from tests.strategies import MarketSpec

    tickers = ("SPY", "QQQ", "TLT")
    market = MarketSpec(seed=0, start="2010-01-04", n_days=150, tickers=tickers, vols=(0.005,) * 3,
                        first=(0, 0, 0), last=(148, 149, 149)).build()
    spec = make_spec({"startDate": "2010-01-11", "benchmark": "QQQ",
                      "payload": {"id": "p1", "kind": "position", "positions": ["SPY"]}}, {"benchmark": ["QQQ", "XYZ"]})
    assert sweep_path(spec, market, "numba") == (
        "general path: variant 1 (benchmark='XYZ'): its tickers and benchmark miss days on which other variants' "
        "tickers trade (variants would have different calendars)")
    table = run_sweep(spec, market=market, backend="numba").table
    assert table["endDate"].to_list() == ["2010-07-30", "2010-07-29"]
    for i in range(2):
        assert_metrics_equal(table.row(i, named=True), run_backtest(spec.strategy(i), market, "numba").metrics,
                             spec.label(i))
    empty = make_spec({"startDate": "2010-01-11", "benchmark": "QQQ",
                       "payload": {"id": "p1", "kind": "position", "positions": ["Empty"]}}, {"benchmark": ["QQQ", "XYZ"]})
    with pytest.raises(GpubtError, match="not enough data"):
        run_sweep(empty, market=market, backend="numba")


def test_tickers_read_but_not_held_fill_the_calendar(monkeypatch: pytest.MonkeyPatch) -> None:
    """A variant's calendar is the days any ticker it reads trades (or its benchmark), not only
    those it holds: SPY held, missing the last day, and QQQ read by a condition that trades on
    it share one calendar, so the sweep fuses; swept so that a variant reads SPY alone, that
    variant would miss the day: the general path, which says so."""
    from gpubt.sweep.run import fused_template, sweep_path
    from tests.strategies import MarketSpec

    market = MarketSpec(seed=0, start="2010-01-04", n_days=150, tickers=("SPY", "QQQ", "TLT"), vols=(0.005,) * 3,
                        first=(0, 0, 0), last=(148, 149, 149)).build()
    body = {"payload": {"id": "gate", "kind": "indicator", "conditions": [
        {"id": "c", "metric": "RSI", "ticker": "QQQ", "window": 5, "comparator": "gt", "threshold": 50}],
        "children": {"then": [{"id": "on", "kind": "position", "positions": ["SPY"]}],
                     "else": [{"id": "off", "kind": "position", "positions": ["Empty"]}]}}}
    spec = make_spec(body, {"c.threshold": [30, 50, 70], "c.window": [5, 10]})
    assert fused_template(spec, market, "numba") is not None
    _fused_equals_general_and_single(spec, market, monkeypatch, tuple(range(spec.n_variants)))
    assert run_sweep(spec, market=market, backend="numba").table["endDate"].unique().to_list() == ["2010-07-30"]
    spec = make_spec(body, {"c.threshold": [30, 50], "c.ticker": ["QQQ", "SPY"]})
    assert sweep_path(spec, market, "numba") == (
        "general path: variant 1 (c.threshold=30, c.ticker='SPY'): its tickers and benchmark miss days on which "
        "other variants' tickers trade (variants would have different calendars)")


def test_allocation_tables_beyond_the_budget_take_the_general_path(short_market: Market,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from gpubt.sweep.fused import tables
    from gpubt.sweep.run import sweep_path

    monkeypatch.setattr(tables, "TABLE_BYTES", 1 << 20)
    spec = make_spec({"payload": FUSED_TREE}, {"s1.window": list(range(5, 45))})
    assert sweep_path(spec, short_market, "numba") == (
        "general path: the tables of 40 allocation settings × 8 branch patterns (240 distinct allocations) would "
        "take 2.4 MiB (the fused path keeps them within 1 MiB)")


def test_trees_the_fused_path_cannot_take(short_market: Market) -> None:
    """Each says why (`gpubt sweep` prints it with the rate)."""
    from gpubt.sweep.run import fused_template, sweep_path

    trend = json.loads((ROOT / "examples" / "altexit_trend.json").read_text())["payload"]
    tqqq = make_spec(TQQQ, {"c1.window": [7, 12], "c2.threshold": [27, 33]})
    assert fused_template(tqqq, short_market, "numba") is not None
    assert sweep_path(tqqq, short_market, "numba") == "fused path, CPU kernel"
    assert fused_template(tqqq, short_market, "reference") is None
    assert sweep_path(tqqq, short_market, "reference") == "general path: the reference backend runs every variant whole"
    many = {"payload": {"id": "root", "kind": "basic", "children": {"next": [
        {"id": f"n{i}", "kind": "indicator", "conditions": [
            {"id": f"c{i}", "metric": "RSI", "ticker": "SPY", "window": 5 + i, "comparator": "gt", "threshold": 50}],
         "children": {"then": [{"id": f"t{i}", "kind": "position", "positions": ["SPY"]}]}} for i in range(21)]}}}
    assert sweep_path(make_spec(many, {"c0.window": [5, 6]}), short_market, "numba") == (
        "general path: the tree has 21 if/else and altExit nodes, 0 children of function nodes and 0 numbered "
        "items: 21 branch bits; the fused path takes at most 20")
    many["payload"]["children"]["next"] = many["payload"]["children"]["next"][:17]
    assert sweep_path(make_spec(many, {"c0.window": [5, 6]}), short_market, "numba") == (
        "general path: the tree's 17 branch bits form 131,072 patterns; the fused path takes at most 65,536")


def _ladder_of_conditions(depth: int) -> dict:
    """if RSI(t_i) > 50 then a position, else the next such node: ``depth`` if/else nodes, 2^depth
    branch patterns holding one of 6 single-ticker positions."""
    tickers = ["SPY", "QQQ", "TLT", "GLD", "IEF", "SHY"]
    node: dict = {"id": "last", "kind": "position", "positions": ["SHY"]}
    for i in reversed(range(depth)):
        node = {"id": f"n{i}", "kind": "indicator", "conditions": [
            {"id": f"c{i}", "metric": "RSI", "ticker": tickers[i % 6], "window": 5 + i, "comparator": "gt",
             "threshold": 50}], "children": {"then": [
                 {"id": f"t{i}", "kind": "position", "positions": [tickers[(i + 2) % 6]]}], "else": [node]}}
    return {"costBps": 5, "payload": node}


def test_trees_of_many_conditions_fuse_through_their_distinct_allocations(short_market: Market,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """14 nested if/else nodes form 16,384 branch patterns (more than the 4,096 the fused path
    took before session 20) but hold 6 allocations: the Allocator builds the patterns a block at
    a time and the tables keep the distinct allocations; equal to the general path and to single
    runs. A sweep needing more pattern allocations than `MAX_ALLOCATIONS` says so."""
    from gpubt.sweep.fused import preparation, tables
    from gpubt.sweep.run import fused_template, sweep_path

    monkeypatch.setattr(tables, "PATTERN_BLOCK", 1000)  # 17 blocks
    spec = make_spec(_ladder_of_conditions(14), {"c0.window": [5, 14], "c3.threshold": [40, 60], "t5.positions": [
        ["GLD"], ["QQQ", "TLT"]], "costBps": [0, 10]})
    template = fused_template(spec, short_market, "numba")
    assert template is not None and template.table_row.shape == (2, 1 << 14)
    assert template.setting_at[:, 2].tolist() == [6, 7] and len(template.held) == 13  # 6 tickers; QQQ + TLT
    _fused_equals_general_and_single(spec, short_market, monkeypatch, tuple(range(0, spec.n_variants, 3)))
    monkeypatch.setattr(preparation, "MAX_ALLOCATIONS", 1 << 14)
    spec = make_spec(_ladder_of_conditions(14), {"c0.window": [5, 14], "t5.positions": [["GLD"], ["QQQ", "TLT"]]})
    assert sweep_path(spec, short_market, "numba") == (
        "general path: 2 allocation settings × 16,384 branch patterns are 32,768 allocations to build; the fused "
        "path builds at most 16,384")


def test_a_function_node_over_many_children_forms_few_patterns(short_market: Market,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """A function node picking 2 of 16 positions is 16 branch bits but only 137 patterns it can
    form (none, one or two picked): the fused path takes it, equal to the general path and to
    single runs."""
    from gpubt.sweep.run import fused_template

    tickers = ["SPY", "QQQ", "IWM", "EFA", "EEM", "VNQ", "GLD", "DBC", "TLT", "IEF", "SHY", "XLE", "XLU", "XLK",
               "XLF", "XLV"]
    body = {"payload": {"id": "f", "kind": "function", "metric": "Cumulative Return", "window": 60, "bottom": 2,
                        "children": {"next": [{"id": f"p{j}", "kind": "position", "positions": [t]}
                                              for j, t in enumerate(tickers)]}}}
    spec = make_spec(body, {"f.window": [20, 60, 120], "f.bottom": [1, 2], "f.rank": ["Top", "Bottom"]})
    template = fused_template(spec, short_market, "numba")
    assert template is not None and template.rows.shape[1] == 16 and template.table_row.shape[1] == 137
    _fused_equals_general_and_single(spec, short_market, monkeypatch, tuple(range(0, spec.n_variants, 3)))


def test_sweeps_sharing_a_market_never_share_what_a_name_means(short_market: Market) -> None:
    """Chunks (and sweeps) on one market reuse each other's graph and signal values; a custom
    indicator's name must still mean the formula of its own request."""
    base = json.loads((ROOT / "examples" / "regime_ladder.json").read_text())
    for formula in ("SMA(50) / SMA(200) - 1", "SMA(10) / SMA(40) - 1"):
        base["customIndicators"][0]["formula"] = formula
        spec = make_spec(base, {"n1.threshold": [0, 0.02], "n2.window": [21, 63]})
        table = run_sweep(spec, market=short_market, chunk_size=2).table
        for i in range(spec.n_variants):
            single = run_backtest(spec.strategy(i), short_market, "polars").metrics
            assert_metrics_equal(table.row(i, named=True), single, f"{formula}: {spec.label(i)}")


def test_variants_on_different_calendars_are_grouped() -> None:
    """Two variants whose tickers trade on different days see different date axes, as their own
    backtests do (`prepare_market`); one chunk holds both."""
    rng = np.random.default_rng(7)
    n = 320

    def walk(gaps: range | None = None) -> list[float | None]:
        prices = list(100 * np.cumprod(1 + rng.normal(0.0004, 0.01, n)))
        return [None if gaps is not None and t in gaps else p for t, p in enumerate(prices)]

    market = make_market({"AAA": walk(range(120, 131)), "BBB": walk(), "CCC": walk(range(120, 131))})
    tree = {"id": "root", "kind": "indicator",
            "conditions": [{"id": "c", "metric": "RSI", "ticker": "AAA", "window": 10, "comparator": "gt", "threshold": 55}],
            "children": {"then": [{"id": "p", "kind": "position", "positions": ["BBB"]}],
                         "else": [{"id": "q", "kind": "position", "positions": ["AAA"]}]}}
    spec = make_spec({"payload": tree, "benchmark": "AAA"},
                     {"p.positions": [["BBB"], ["CCC"]], "c.threshold": [45, 55]})
    table = run_sweep(spec, market=market).table
    days = set()
    for i in range(spec.n_variants):
        single = run_backtest(spec.strategy(i), market, "polars").metrics
        assert_metrics_equal(table.row(i, named=True), single, spec.label(i))
        days.add(single["days"])
    assert len(days) == 2  # the two calendars differ


def test_python_api_top_and_table(short_market: Market) -> None:
    result = gpubt.sweep(str(TQQQ), {"c1.window": range(8, 12), "c1.threshold": range(76, 80)}, market=short_market)
    assert result.table.height == 16
    assert set(KEYS) <= set(result.table.columns) and {"startDate", "endDate"} <= set(result.table.columns)
    best = result.top(5, by="sharpe")
    assert best.height == 5
    assert best["sharpe"].to_list() == sorted(result.table["sharpe"].to_list(), reverse=True)[:5]
    assert result.top(3, by="maxDrawdown", descending=False)["maxDrawdown"].to_list() == sorted(
        result.table["maxDrawdown"].to_list())[:3]
    with pytest.raises(GpubtError, match="unknown column"):
        result.top(3, by="nope")


def test_chunking_never_changes_the_results(short_market: Market) -> None:
    spec = make_spec(TQQQ, {"c1.window": [6, 9, 12], "c2.window": [8, 12], "c2.threshold": [28, 34]})
    whole = run_sweep(spec, market=short_market, chunk_size=64).table
    # equal up to the last bits: BLAS sums a matrix-vector product (beta) in an order that
    # depends on the batch size, so only equal chunks give bit-equal tables
    for size in (1, 5):
        assert_frame_equal(run_sweep(spec, market=short_market, chunk_size=size).table, whole,
                           check_exact=False, rel_tol=1e-12, abs_tol=0.0)
    part = run_chunk(spec, 3, 7, short_market)
    assert_frame_equal(part, whole.slice(3, 4), check_exact=False, rel_tol=1e-12, abs_tol=0.0)
    same_chunks = run_sweep(spec, market=short_market, chunk_size=4).table
    assert run_chunk(spec, 4, 8, short_market).equals(same_chunks.slice(4, 4))  # same boundaries: bit-equal


def test_memory_budget_sets_the_chunk_size() -> None:
    assert parse_memory("2GB") == 2_000_000_000
    assert parse_memory("512MiB") == 512 * 2**20
    assert parse_memory("1.5G") == 1_500_000_000
    assert parse_memory(1000) == 1000
    for bad in ("lots", "-1GB", "0", True):
        with pytest.raises(GpubtError, match="memory"):
            parse_memory(bad)  # type: ignore[arg-type]
    small = chunk_size_for("600MB", 6783, 40)
    large = chunk_size_for("4GB", 6783, 40)
    assert 1 <= small < large
    assert chunk_size_for("100KB", 6783, 40) == 1  # never 0
    assert chunk_size_for("64GB", 100, 2) == MAX_CHUNK  # capped (fastest measured, finer resume)
    assert chunks_of(10, 4) == [(0, 0, 4), (1, 4, 8), (2, 8, 10)]


# -- specs -------------------------------------------------------------------------------------


def test_grid_zip_random_and_ranges() -> None:
    grid = make_spec(TQQQ, {"c1.window": [5, 6], "c1.threshold": {"values": [70, 80, 90]}})
    assert grid.n_variants == 6
    assert [grid.values(i) for i in range(6)] == [(5, 70), (5, 80), (5, 90), (6, 70), (6, 80), (6, 90)]
    body = grid.body(4)
    cond = body["payload"]["children"]["then"][0]["conditions"][0]
    assert (cond["window"], cond["threshold"]) == (6, 80)
    assert grid.strategy(4).root.slot("then")[0].conditions[0].window == 6
    base = json.loads(TQQQ.read_text())
    assert base["payload"]["children"]["then"][0]["conditions"][0]["window"] == 10  # base untouched

    zipped = make_spec(TQQQ, {"c1.window": [5, 6, 7], "c2.window": range(20, 23)}, combine="zip")
    assert [zipped.values(i) for i in range(3)] == [(5, 20), (6, 21), (7, 22)]

    params = {"c1.window": range(2, 40), "c1.threshold": range(50, 100), "c2.threshold": range(10, 50)}
    combine = {"mode": "random", "samples": 20, "seed": 11}
    a, b = make_spec(TQQQ, params, combine), make_spec(TQQQ, params, combine)
    assert a.n_variants == 20 and a.grid_size == 38 * 50 * 40
    assert [a.values(i) for i in range(20)] == [b.values(i) for i in range(20)]
    assert len({a.values(i) for i in range(20)}) == 20
    other = make_spec(TQQQ, params, {"mode": "random", "samples": 20, "seed": 12})
    assert [a.values(i) for i in range(20)] != [other.values(i) for i in range(20)]
    everything = make_spec(TQQQ, {"c1.window": [5, 6]}, {"mode": "random", "samples": 9})
    assert everything.n_variants == 2  # more samples than combinations: each combination once

    def positions(spec: SweepSpec, lo: int, hi: int) -> list[list[int]]:  # `values` as positions
        return [[p.values.index(v) for p, v in zip(spec.parameters, spec.values(i))] for i in range(lo, hi)]

    for spec in (grid, zipped, a):
        assert spec.value_indices(0, spec.n_variants).tolist() == positions(spec, 0, spec.n_variants)
    cube = make_spec(TQQQ, {"c1.window": range(2, 9), "c1.threshold": range(50, 61), "c2.threshold": range(10, 15)})
    for lo, hi in ((0, 1), (5, 37), (13, 14), (54, 385), (cube.n_variants - 3, cube.n_variants), (7, 7)):
        assert cube.value_indices(lo, hi).tolist() == positions(cube, lo, hi)  # runs cut at both ends
    # random picks in a grid of 10**30 combinations (past int64): cut into int64-sized digits
    wide = dataclasses.replace(a, parameters=tuple(dataclasses.replace(q, values=tuple(range(10**6)))
                                                   for q in (*a.parameters, a.parameters[0], a.parameters[1])))
    rng = np.random.default_rng(3)
    picks = tuple(int.from_bytes(rng.bytes(13)) % 10**30 for _ in range(50))
    wide = dataclasses.replace(wide, _picks=picks)
    assert wide.grid_size == 10**30 and wide.n_variants == 50
    assert wide.value_indices(0, 50).tolist() == positions(wide, 0, 50)
    assert wide.value_indices(7, 31).tolist() == positions(wide, 7, 31)

    ranges = make_spec(TQQQ, {
        "c1.window": {"start": 5, "stop": 11, "step": 2},  # stop excluded
        "c1.threshold": {"start": 80.0, "stop": 79.0, "step": -0.25},
        "c2.window": {"start": 3, "stop": 5},
    })
    values = {p.name: p.values for p in ranges.parameters}
    assert values == {"c1.window": (5, 7, 9), "c1.threshold": (80.0, 79.75, 79.5, 79.25), "c2.window": (3, 4)}

    request_level = make_spec(TQQQ, {"mode": ["OO"], "cost_bps": [1.5], "root.weightingThen": ["equal"],
                                     "c1.for_days": [2]})
    strategy = request_level.strategy(0)
    assert (strategy.request.mode, strategy.request.cost_bps) == ("OO", 1.5)
    assert strategy.root.slot("then")[0].conditions[0].for_days == 2


def test_spec_files_json_and_yaml(tmp_path: Path) -> None:
    example = load_spec(ROOT / "examples" / "sweeps" / "sweep_tqqq_rsi.json")
    assert example.n_variants == 40 and example.settings["backend"] == "polars"
    (tmp_path / "base.json").write_text(TQQQ.read_text())
    (tmp_path / "s.yaml").write_text(
        "strategy: base.json\n"
        "parameters:\n"
        "  c1.window: {start: 5, stop: 8}\n"
        "  c1.threshold: [70, 80]\n"
        "mode: random\nsamples: 4\nseed: 3\nmemory: 1GB\n"
    )
    spec = load_spec(tmp_path / "s.yaml")
    assert spec.combine == "random" and spec.n_variants == 4 and spec.settings["memory"] == "1GB"
    (tmp_path / "s.json").write_text(json.dumps({
        "strategy": "base.json", "parameters": {"c1.window": {"start": 5, "stop": 8}, "c1.threshold": [70, 80]},
        "combine": {"mode": "random", "samples": 4, "seed": 3}}))
    assert load_spec(tmp_path / "s.json").fingerprint() == spec.fingerprint()
    (tmp_path / "bad.json").write_text(json.dumps({"strategy": "base.json", "parameters": {}, "colour": 1}))
    with pytest.raises(GpubtError, match="colour"):
        load_spec(tmp_path / "bad.json")


@pytest.mark.parametrize(
    ("parameters", "combine", "pattern"),
    [
        ({"nope.window": [5]}, "grid", r"'nope.window'.*no node or condition has id 'nope'"),
        ({"c1.colour": [5]}, "grid", r"'c1.colour'.*condition, which has no field 'colour'"),
        ({"hedge.sharpness": [5]}, "grid", r"'hedge.sharpness'.*node 'hedge' has no settable field"),
        ({"hedge.children": [[]]}, "grid", r"'hedge.children'.*no settable field"),
        ({"c1.window": ["ten"]}, "grid", r"'c1.window'.*'ten' is invalid for condition 'c1' field 'window'"),
        ({"c1.window": [14.5]}, "grid", r"'c1.window'.*14.5"),
        ({"c1.window": [-3]}, "grid", r"'c1.window'.*-3"),
        ({"c1.threshold": [True]}, "grid", r"'c1.threshold'.*True"),
        ({"c1.comparator": ["gt", "above"]}, "grid", r"'c1.comparator'.*'above'"),
        ({"c1.metric": ["RSI", "Astrology"]}, "grid", r"'c1.metric'.*unknown metric 'Astrology'"),
        ({"hedge.positions": [["SPY/TLT"]]}, "grid", r"'hedge.positions'.*cannot be held"),
        ({"c1.window": []}, "grid", r"'c1.window' has no values"),
        ({"c1.window": {"start": 1, "stop": 5, "step": 0}}, "grid", r"'c1.window'.*step must not be 0"),
        ({"c1.window": {"start": 5, "stop": 1}}, "grid", r"'c1.window'.*empty"),
        ({"c1.window": {"start": "a", "stop": 9}}, "grid", r"'c1.window'.*start must be a number"),
        ({"c1.window": {"from": 1}}, "grid", r"'c1.window'.*range"),
        ({"c1.window": [5, 5]}, "grid", r"'c1.window'.*given twice"),
        ({"c1.window": [5, 6], "c2.window": [5, 6, 7]}, "zip", r"'c2.window' has 3, 'c1.window' has 2"),
        ({"c1.window": [5]}, {"mode": "random"}, r"samples"),
        ({"c1.window": [5]}, "shuffle", r"unknown combination 'shuffle'"),
        ({"leverage": [2]}, "grid", r"'leverage'.*<id>.<field>"),
        ({"costBps": [-1]}, "grid", r"'costBps'.*-1"),
        ({"c1.window": [5], "c1.Window": [6]}, "grid", r"no field 'Window'"),
    ],
)
def test_invalid_specs_are_refused_naming_the_parameter(parameters: dict, combine: Any, pattern: str) -> None:
    with pytest.raises(GpubtError, match=pattern):
        make_spec(TQQQ, parameters, combine)


@pytest.mark.parametrize("field", ["threshold", "comparator"])
@pytest.mark.parametrize("value", [70, 70.25, -1e300, "70", "gt", "crossAbove", "above", True, None, [70], {"x": 1},
                                   float(2**60), 10**400])
def test_line_only_values_are_judged_as_a_whole_parse_judges_them(field: str, value: Any,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """A threshold or comparator value is validated on its line alone (no tree rule reads those
    fields): the same values pass, and a refused one gets the whole parse's message."""
    from gpubt.sweep import spec as specs

    def outcome() -> Any:
        try:
            made = make_spec(TQQQ, {f"c1.{field}": [value]})
        except GpubtError as exc:
            return exc.message, exc.path
        return made.tickers, made.benchmarks, made.values(0)

    fast = outcome()
    monkeypatch.setattr(specs, "LINE_ONLY_FIELDS", frozenset())
    assert fast == outcome()


def test_ambiguous_ids_and_duplicate_fields_are_refused() -> None:
    body = json.loads(TQQQ.read_text())
    body["payload"]["children"]["else"][0]["conditions"][0]["id"] = "c1"  # two conditions c1
    with pytest.raises(GpubtError, match="'c1.window'.*ambiguous"):
        make_spec(body, {"c1.window": [5]})
    with pytest.raises(GpubtError, match="same field"):
        make_spec(TQQQ, {"costBps": [1], "cost_bps": [2]})


def test_unknown_tickers_are_refused_before_running(short_market: Market) -> None:
    spec = make_spec(TQQQ, {"hedge.positions": [["UVXY"], ["NOPE"]]})
    with pytest.raises(GpubtError, match="NOPE"):
        run_sweep(spec, market=short_market)


# -- resume ------------------------------------------------------------------------------------


def _cli(*args: str, **kwargs: Any) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "gpubt.cli", "sweep", *args], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kwargs)


def test_killed_sweep_resumes_without_losing_or_repeating_variants(tmp_path: Path) -> None:
    spec_file = tmp_path / "spec.json"
    spec_file.write_text(json.dumps({
        "strategy": str(TQQQ),
        "parameters": {"c1.window": [6, 8, 10, 12, 14, 16], "c1.threshold": [72, 76, 80, 84]},
    }))
    out = tmp_path / "results.parquet"
    chunks = tmp_path / "results.chunks"
    first = _cli(str(spec_file), "--out", str(out), "--chunk-size", "1")
    try:
        deadline = time.monotonic() + 60
        while not list(chunks.glob("chunk-*.parquet")):
            assert first.poll() is None, first.communicate()[0]
            assert time.monotonic() < deadline, "no chunk was written in 60 s"
            time.sleep(0.01)
        first.send_signal(signal.SIGKILL)  # a crash: no cleanup of any kind
    finally:
        first.wait(30)
        first.stdout.close()  # type: ignore[union-attr]
    done = len(list(chunks.glob("chunk-*.parquet")))
    assert 1 <= done < 24, "the sweep finished before it could be interrupted"
    assert not out.exists()

    refused = _cli(str(spec_file), "--out", str(out))
    assert refused.wait(60) == 2 and "--resume" in refused.communicate()[0]

    resumed = _cli(str(spec_file), "--out", str(out), "--resume", "--chunk-size", "1")
    text = resumed.communicate(timeout=120)[0]
    assert resumed.returncode == 0, text
    assert f"resuming: {done} of 24 variants already done" in text
    assert "best 10 of 24 variants by Sharpe" in text
    assert out.exists() and not chunks.exists()

    table = pl.read_parquet(out)
    assert table["variant"].to_list() == list(range(24))  # each variant exactly once
    whole = run_sweep(load_spec(spec_file), chunk_size=1).table  # an uninterrupted run, same chunks
    assert table.equals(whole)


def test_resume_refuses_a_different_sweep(tmp_path: Path, short_market: Market) -> None:
    out = tmp_path / "r.parquet"
    spec = make_spec(TQQQ, {"c1.window": [5, 6]})
    folder = tmp_path / "r.chunks"
    folder.mkdir()
    (folder / "sweep.json").write_text(json.dumps({"fingerprint": "0" * 16, "variants": 2, "chunkSize": 1,
                                                   "backend": "polars", "data": "builtin"}))
    with pytest.raises(GpubtError, match="differs in fingerprint"):
        run_sweep(spec, out=out, resume=True)
    with pytest.raises(GpubtError, match="--resume"):
        run_sweep(spec, out=out)
    with pytest.raises(GpubtError, match="needs --out"):
        run_sweep(spec, resume=True)


def test_merge_keeps_each_variant_once() -> None:
    spec = make_spec(TQQQ, {"c1.window": [5, 6, 7]})
    frame = pl.DataFrame({"variant": [0, 1, 2]})
    merged = merge_frames([frame, frame.slice(1, 1), frame.slice(0, 1)], spec)
    assert merged["variant"].to_list() == [0, 1, 2]
    with pytest.raises(GpubtError, match="incomplete"):
        merge_frames([frame.slice(0, 2)], spec)


# -- Dask --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def dask_client():
    distributed = pytest.importorskip("distributed", reason="dask.distributed is not installed")
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                       host="127.0.0.1", dashboard_address="127.0.0.1:0")
    client = distributed.Client(cluster)
    try:
        yield client
    finally:
        client.close()
        cluster.close()


@pytest.fixture(scope="module")
def data_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tickers of the TQQQ example as Parquet files: workers load them themselves."""
    from gpubt.data.loaders import write_market_frames
    from gpubt.data.synthetic import synthetic_frames

    folder = tmp_path_factory.mktemp("market")
    frames = synthetic_frames()
    write_market_frames({t: frames[t] for t in ("SPY", "QQQ", "TQQQ", "SQQQ", "UVXY", "BIL")}, folder)
    return folder


def test_dask_gives_the_local_table(dask_client: Any, data_folder: Path) -> None:
    spec = make_spec(TQQQ, {"c1.window": [6, 10, 14], "c2.threshold": [25, 31, 37]})
    local = run_sweep(spec, chunk_size=2)
    distributed = run_sweep(spec, chunk_size=2, client=dask_client)
    assert distributed.workers.startswith("dask")
    assert distributed.table.equals(local.table)
    from_files = run_sweep(spec, chunk_size=2, client=dask_client, data=data_folder)
    assert from_files.table.equals(run_sweep(spec, chunk_size=2, data=data_folder).table)
    assert from_files.table.equals(local.table)  # the files hold the built-in market's prices
    by_address = run_sweep(spec, chunk_size=2, scheduler=dask_client.scheduler.address)  # --scheduler
    assert by_address.workers.startswith("dask scheduler") and by_address.table.equals(local.table)


def test_local_workers_start_and_stop_their_own_cluster(data_folder: Path) -> None:
    pytest.importorskip("distributed", reason="dask.distributed is not installed")
    spec = make_spec(TQQQ, {"c1.window": [6, 10], "c2.threshold": [25, 31]})
    result = run_sweep(spec, chunk_size=3, local_workers=1, data=str(data_folder))
    assert result.workers.startswith("dask LocalCluster tcp://127.0.0.1:")
    assert result.table.equals(run_sweep(spec, chunk_size=3, data=str(data_folder)).table)


def test_local_gpus_start_one_dask_cuda_worker_per_gpu(data_folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The wiring of --local-gpus, on CPU: dask-cuda's LocalCUDACluster is asked for one worker
    per GPU with the sweep's worker settings (here a stand-in LocalCluster plays the GPUs), and
    the table is the local run's. Without dask-cuda the error says what to install."""
    import types

    distributed = pytest.importorskip("distributed", reason="dask.distributed is not installed")
    asked: list[dict] = []

    class LocalCUDACluster(distributed.LocalCluster):
        def __init__(self, **kwargs: Any) -> None:
            asked.append(kwargs)
            super().__init__(processes=True, **kwargs)

    spec = make_spec(TQQQ, {"c1.window": [6, 10], "c2.threshold": [25, 31]})
    monkeypatch.setitem(sys.modules, "dask_cuda", None)
    with pytest.raises(GpubtError, match="--local-gpus needs dask-cuda"):
        run_sweep(spec, local_gpus=2, data=str(data_folder))
    with pytest.raises(GpubtError, match="local GPUs must be a positive integer"):
        run_sweep(spec, local_gpus=0, data=str(data_folder))
    monkeypatch.setitem(sys.modules, "dask_cuda", types.SimpleNamespace(LocalCUDACluster=LocalCUDACluster))
    result = run_sweep(spec, chunk_size=2, local_gpus=2, data=str(data_folder))
    assert asked == [{"n_workers": 2, "threads_per_worker": 1, "host": "127.0.0.1",
                      "dashboard_address": "127.0.0.1:0", "env": {"POLARS_MAX_THREADS": "1", "NUMBA_NUM_THREADS": "1"}}]
    assert result.workers.startswith("dask LocalCUDACluster tcp://127.0.0.1:") and "(2 workers)" in result.workers
    assert result.table.equals(run_sweep(spec, chunk_size=2, data=str(data_folder)).table)


def test_dask_survives_a_worker_dying_mid_sweep(dask_client: Any) -> None:
    from gpubt.sweep.distributed import run_chunks

    spec = make_spec(TQQQ, {"c1.window": [6, 8, 10, 12], "c1.threshold": [72, 76, 80, 84], "c2.window": [8, 12]})
    frames = []
    results = run_chunks(dask_client, spec, chunks_of(spec.n_variants, 1), None, "polars")
    frames.append(next(results)[1])
    busy = dask_client.processing()
    assert sum(len(keys) for keys in busy.values()) > 0, "nothing left to interrupt"
    victim = max(busy, key=lambda address: len(busy[address]))
    dask_client.run(os._exit, 1, workers=[victim], on_error="ignore")  # the worker process dies
    frames.extend(frame for _, frame in results)
    table = merge_frames(frames, spec)
    assert table["variant"].to_list() == list(range(32))
    assert sum(frame.height for frame in frames) == 32  # every variant exactly once
    assert table.equals(run_sweep(spec, chunk_size=1).table)


def test_a_threshold_grid_parses_the_request_once_not_per_value(monkeypatch: pytest.MonkeyPatch) -> None:
    from gpubt.sweep import spec as specs

    calls = []
    whole = specs.parse_request
    monkeypatch.setattr(specs, "parse_request", lambda *a, **k: calls.append(1) or whole(*a, **k))
    made = make_spec(TQQQ, {"c1.threshold": {"start": 50, "stop": 100, "step": 0.5}, "c1.comparator": ["gt", "lt"]})
    assert made.n_variants == 200 and len(calls) == 2  # the base, checked, then read for its tickers


# -- variants parsed from the base's parse (gpubt.sweep.variants) ---------------------------------

VARIANT_SWEEPS = [
    ("tqqq_rsi.json", {"c1.window": [5, 20], "c1.ticker": ["TQQQ", "QQQ/SPY"], "hedge.positions": [["UVXY"], ["TLT", "GLD"]],
                       "c3.rightWindow": [10, 40], "costBps": [0, 7.5], "benchmark": ["SPY", "QQQ"]}),
    ("altexit_trend.json", {"enter-cross.window": [20, 50], "scale.scaleTicker": ["QQQ", "SPY/TLT"], "scale.scaleWindow": [7, 21],
                            "bond-trend.ticker": ["TLT/SHY", "IEF"], "mode": ["CC", "OO"], "startDate": ["2012-01-03"]}),
    ("regime_ladder.json", {"n2.ticker": ["IWM/SPY", "QQQ"], "root.quantifier": ["ladder", "atLeast"], "root.n": [0, 2],
                            "l1-bonds.window": [50, 70], "agg-c.threshold": [80, 90],
                            "agg-t.positions": [["TQQQ"], ["UPRO", "TMF"]], "n1.window": [0, 5]}),
    ("risk_parity.json", {"root.volWindow": [20, 60], "capped-sleeve.cappedFallback": ["SHY", "BIL"], "em.window": [40, 80],
                          "equities.positions": [["SPY", "EFA"], ["QQQ"]]}),
    ("momentum_rotation.json", {"top3.window": [63, 126], "top3.metric": ["Cumulative Return", "RSI"], "top3.bottom": [0, 3],
                                "top3.rank": ["Top", "Bottom"], "trend.forDays": [1, 3], "defense.weighting": ["equal", "inverse"]}),
]


@pytest.mark.parametrize("example, parameters", VARIANT_SWEEPS, ids=[e for e, _ in VARIANT_SWEEPS])
def test_variants_parse_as_their_whole_body_does(example: str, parameters: dict) -> None:
    """A variant parsed from the base's parse (only its changed nodes validated) equals
    `parse_request` of its body: every model, the formulas and the tickers in order; every
    node neither changed nor above a changed one is the base's own object."""
    from gpubt.schema.parse import parse_request
    from gpubt.sweep.variants import _walk

    spec = make_spec(ROOT / "examples" / example, parameters)
    parser = spec._parser
    base = dict(_walk(parser.strategy.request))
    for i in range(spec.n_variants):
        whole, fast = parse_request(spec.body(i), spec.limits), spec.strategy(i)
        assert fast.request == whole.request, spec.label(i)
        assert fast.tickers == whole.tickers and fast.formulas.keys() == whole.formulas.keys(), spec.label(i)
        nodes = dict(_walk(fast.request))
        assert nodes.keys() == base.keys()
        assert [p for p in nodes if nodes[p] is not base[p]] == [p for p in base if p in parser.rebuilt], spec.label(i)


def test_a_refused_variant_is_worded_as_a_whole_parse_words_it() -> None:
    """Values are checked one by one when the spec is made; a combination refused only as a
    whole (here forced past that check) is parsed whole again, for its usual message."""
    from gpubt.schema.parse import parse_request

    spec = make_spec(TQQQ, {"c1.window": [10, 20]})
    window = spec.parameters[0]
    spec = dataclasses.replace(spec, parameters=(dataclasses.replace(window, values=(10, 6000)),))
    with pytest.raises(GpubtError) as whole:
        parse_request(spec.body(1), spec.limits)
    with pytest.raises(GpubtError) as fast:
        spec.strategy(1)
    assert "6000 is over the limit" in whole.value.message
    assert fast.value.message.endswith(whole.value.message) and fast.value.path == whole.value.path
    assert spec.strategy(0).request == parse_request(spec.body(0), spec.limits).request


# Examples per property below (a long soak: SWEEP_EXAMPLES=1000).
_EXAMPLES = int(os.environ.get("SWEEP_EXAMPLES", "0"))
_PROPERTY = {"deadline": None, "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large]}


@settings(max_examples=_EXAMPLES or 60, **_PROPERTY)
@given(body=requests(), data=st.data())
def test_random_trees_variants_parse_as_their_whole_body_does(body: dict, data: Any) -> None:
    """On hypothesis-drawn requests: a few node and condition fields swept to values drawn like
    the trees' own, each variant parsed from the base's parse equals `parse_request` of it."""
    from gpubt.schema.parse import parse_request
    from gpubt.sweep.variants import _walk

    request = parse_request(body).request
    targets: list[tuple[str, list[Any]]] = []
    for _, node in _walk(request):
        if node.kind == "position":
            targets.append((f"{node.id}.positions", [["SPY"], ["TLT", "GLD"], []]))
        if node.kind == "function":
            targets += [(f"{node.id}.window", [3, 40]), (f"{node.id}.bottom", [0, 2])]
        for cond in (*node.conditions, *node.entry_conditions, *node.exit_conditions):
            if cond.metric != "Date":
                targets += [(f"{cond.id}.forDays", [1, 3]), (f"{cond.id}.ticker", ["QQQ", "IWM/SPY"])]
    chosen = data.draw(st.lists(st.sampled_from(targets), min_size=1, max_size=3, unique_by=lambda t: t[0])) \
        if targets else [("costBps", [0, 3])]
    try:
        spec = make_spec(body, dict(chosen))
    except GpubtError:  # a value this tree refuses (a window a custom formula cannot take)
        assume(False)
    base = dict(_walk(spec._parser.strategy.request))
    for i in range(spec.n_variants):
        whole, fast = parse_request(spec.body(i), spec.limits), spec.strategy(i)
        assert fast.request == whole.request and fast.tickers == whole.tickers, spec.label(i)
        nodes = dict(_walk(fast.request))
        assert [p for p in nodes if nodes[p] is not base[p]] == [p for p in base if p in spec._parser.rebuilt]


def _sweepable(request: Any, tickers: tuple[str, ...], starts: tuple[str, ...]) -> list[tuple[str, list[Any]]]:
    """Parameters a random tree offers: costs, modes, start dates and benchmarks, its positions and
    `defined` weights, weightings, function, numbered and scaling fields, condition lines'
    windows, thresholds, tickers and forDays."""
    from gpubt.sweep.variants import _walk

    out: list[tuple[str, list[Any]]] = [("costBps", [0, 4.5]), ("mode", ["CC", "OO"]), ("startDate", list(starts[1:3])),
                                        ("benchmark", [tickers[1], "XYZ"])]
    for _, node in _walk(request):
        if node.kind == "position":
            out += [(f"{node.id}.positions", [[tickers[0]], list(tickers[1:3])]), (f"{node.id}.window", [1, 3])]
        if node.kind == "function":
            out += [(f"{node.id}.window", [3, 12]), (f"{node.id}.bottom", [1, 2]),
                    (f"{node.id}.metric", ["Cumulative Return", "Relative Strength Index"])]
        if node.kind == "numbered":
            out += [(f"{node.id}.quantifier", ["any", "atLeast", "ladder"]), (f"{node.id}.n", [1, 2])]
        if node.kind == "scaling":
            out += [(f"{node.id}.scaleWindow", [5, 14]), (f"{node.id}.scaleTicker", [tickers[0], "/".join(tickers[1:3])])]
        if node.kind == "basic":
            out += [(f"{node.id}.weighting", ["equal", "inverse", "defined", "capped"]),
                    (f"{node.id}.cappedFallback", ["", tickers[0]])]
        for cond in (*node.conditions, *node.entry_conditions, *node.exit_conditions):
            if cond.metric != "Date":
                out += [(f"{cond.id}.forDays", [1, 2]), (f"{cond.id}.window", [2, 9]),
                        (f"{cond.id}.threshold", [20, 55]), (f"{cond.id}.ticker", [tickers[0], "/".join(tickers[1:3])])]
    return out


@settings(max_examples=_EXAMPLES or 25, **_PROPERTY)
@given(case=market_requests(), data=st.data())
def test_random_trees_sweep_like_their_single_runs(case: Any, data: Any) -> None:
    """On hypothesis-drawn markets and trees, a sweep (mostly the general path: variants parsed
    from the base, sub-trees compiled once and allocated once per chunk) gives every variant the
    metrics of its own backtest."""
    _sweeps_like_single_runs(case, data)


# trees the fused path takes: if/else, numbered, altExit, scaling and group nodes and positions
# (call nodes resolving to them), no branch: tickers (function nodes have their own fused tests;
# volatility weights or scaling over children with conditions and more than 12 branch bits
# still send some sweeps to the general path)
_STATIC_TREES = {"kinds": ("position", "basic", "indicator", "numbered", "altExit", "scaling", "call"),
                 "branch_refs": False}


@settings(max_examples=_EXAMPLES or 25, **_PROPERTY)
@given(case=market_requests(**_STATIC_TREES), data=st.data())
def test_random_static_trees_sweep_like_their_single_runs(case: Any, data: Any) -> None:
    """The same on trees the fused path takes: most of these sweeps run there (swept positions,
    weights and weightings included: tables per allocation setting; 226 of 262 in an ad-hoc
    count)."""
    _sweeps_like_single_runs(case, data)


def _sweeps_like_single_runs(case: Any, data: Any) -> None:
    from gpubt.schema.parse import parse_request

    market_spec, body = case
    market = market_spec.build()
    offered = _sweepable(parse_request(body).request, market_spec.tickers, market_spec.start_dates())
    chosen = data.draw(st.lists(st.sampled_from(offered), min_size=1, max_size=3, unique_by=lambda t: t[0]))
    try:
        spec = make_spec(body, dict(chosen))
    except GpubtError:  # a value this tree refuses (a window a custom formula cannot take)
        assume(False)
    try:
        table = run_sweep(spec, market=market, backend="numba", chunk_size=3).table
    except GpubtError as refused:  # then some variant's own backtest is refused too
        failures = []
        for i in range(spec.n_variants):
            try:
                run_backtest(spec.strategy(i), market, "numba")
            except GpubtError as exc:
                failures.append(exc.message)
        assert any(message in refused.message for message in failures), (refused.message, failures)
        return
    for i in range(spec.n_variants):
        single = run_backtest(spec.strategy(i), market, "numba").metrics
        assert_metrics_equal(table.row(i, named=True), single, spec.label(i))
