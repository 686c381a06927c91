"""The compiler: deduplication, warm-ups equal to the reference's, staging of branch series."""

from __future__ import annotations

import json

import numpy as np
import pytest

from gpubt.backends import get_backend
from gpubt.compiler.compile import Compiler, compile_strategy
from gpubt.compiler.execute import _first_reads, _signals, run_compiled
from gpubt.compiler.plan import Choose, Combine, Hold
from gpubt.data.synthetic import synthetic_market
from gpubt.ir.nodes import Builder, topological
from gpubt.reference.backtest import run_reference
from gpubt.reference.interpreter import Interpreter
from gpubt.schema.parse import parse_request
from gpubt.sim.period import backtest_window, prepare_market
from tests.golden import EXAMPLES
from tests.test_parity import differences


def _strategy(tree: dict, **extra):
    return parse_request({"payload": tree, **extra})


def _rsi_switch(node_id: str, threshold: float) -> dict:
    return {
        "id": node_id, "kind": "indicator",
        "conditions": [{"id": f"{node_id}-c", "metric": "RSI", "window": 14, "ticker": "SPY",
                        "comparator": "gt", "threshold": threshold}],
        "children": {"then": [{"id": f"{node_id}-a", "kind": "position", "positions": ["TLT"]}],
                     "else": [{"id": f"{node_id}-b", "kind": "position", "positions": ["SPY"]}]},
    }


@pytest.fixture(scope="module")
def market():
    return synthetic_market()


def test_one_rsi_for_a_hundred_conditions(market):
    tree = {"id": "root", "kind": "basic",
            "children": {"next": [_rsi_switch(f"n{i}", 30 + i % 40) for i in range(100)]}}
    strategy = _strategy(tree)
    compiler = Compiler(strategy, prepare_market(strategy, market))
    program = compiler.program()
    assert len(compiler.indicators) == 1  # RSI(14) of SPY, built once
    assert len(compiler.conditions) == 40  # one per distinct threshold
    assert compiler.builder.duplicates_removed > 0
    truths = [child.truth for child in program.root.children]
    assert len(set(truths)) == 40 and all(t.op == "lines" for t in truths)  # one node per list
    assert all(t.inputs == truths[0].inputs for t in truths)  # each reads the one RSI
    rsis = [n for n in topological(truths) if n.op == "ewm"]
    assert len(rsis) == len(set(map(id, rsis)))
    assert isinstance(program.root, Combine) and len(program.root.children) == 100
    text = compiler.explain(program)
    assert "indicators           1" in text and "conditions          40" in text


def test_same_graph_across_strategies(market):
    builder = Builder()
    a = _strategy(_rsi_switch("x", 70))
    b = _strategy(_rsi_switch("y", 70))
    pa = compile_strategy(a, prepare_market(a, market), builder)
    pb = compile_strategy(b, prepare_market(b, market), builder)
    assert isinstance(pa.root, Choose) and isinstance(pb.root, Choose)
    assert pa.root.truth is pb.root.truth  # equal sub-graphs are the same node


def test_position_dedupes_and_skips_empty(market):
    tree = {"id": "p", "kind": "position", "positions": ["SPY", "SPY", "", "Empty", "TLT"]}
    strategy = _strategy(tree)
    program = compile_strategy(strategy, prepare_market(strategy, market))
    assert isinstance(program.root, Hold) and program.root.tickers == ("SPY", "TLT")


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.stem)
def test_warmup_equals_reference(example, market):
    strategy = parse_request(json.loads(example.read_text()))
    sub = prepare_market(strategy, market)
    program = compile_strategy(strategy, sub)
    assert program.warmup == Interpreter(strategy, sub).warmup(strategy.root)


def test_branch_reference_is_staged(market):
    tree = {
        "id": "root", "kind": "indicator",
        "conditions": [{"id": "c", "metric": "Cumulative Return", "window": 20,
                        "ticker": "branch:then", "comparator": "gt", "threshold": 0}],
        "children": {"then": [_rsi_switch("inner", 60)],
                     "else": [{"id": "cash", "kind": "position", "positions": ["SHY"]}]},
    }
    strategy = _strategy(tree)
    sub = prepare_market(strategy, market)
    program = compile_strategy(strategy, sub)
    assert list(program.branches) == ["branch0"]
    reference = Interpreter(strategy, sub)
    assert program.warmup == reference.warmup(strategy.root)
    assert program.branches["branch0"].warmup == reference._slot_warmup(strategy.root, "then")
    assert np.isfinite(program.warmup)


def test_signals_are_read_from_the_start_or_an_early_steps_warm_up(market):
    """Signals are asked for from the backtest's start, except below a step whose branch series
    or volatility is read: from that step's warm-up. A late start asks for fewer days, and the
    backtest is the reference's all the same."""
    vol = {"id": "vol", "kind": "basic", "weighting": "inverse", "volWindow": 10,
           "children": {"next": [_rsi_switch("v1", 55), _rsi_switch("v2", 45)]}}
    tree = {
        "id": "root", "kind": "indicator",
        "conditions": [{"id": "c", "metric": "Cumulative Return", "window": 20,
                        "ticker": "branch:then", "comparator": "gt", "threshold": 0}],
        "children": {"then": [_rsi_switch("inner", 60)], "else": [vol]},
    }
    strategy = _strategy(tree, startDate="2015-01-02")
    sub = prepare_market(strategy, market)
    program = compile_strategy(strategy, sub)
    start, _, _ = backtest_window(strategy, sub.dates, program.warmup)
    first = _first_reads(program, _signals(program.root), start)
    root, inner = program.root, program.root.then.children[0]
    early = {program.branches["branch0"].warmup, *(c.warmup for c in root.other.children[0].children)}
    assert first[root.truth] == start and first[inner.truth] == program.branches["branch0"].warmup
    assert {first[c.truth] for c in root.other.children[0].children} <= early and max(early) < start
    want = run_reference(strategy, market).to_dict()
    for backend in ("numba", "polars"):
        got = run_compiled(strategy, market, get_backend(backend)).to_dict()
        assert not differences(want, got), differences(want, got)[:5]
