"""Run a compiled strategy: signals on a backend, allocations as arrays, vectorised simulation.

Signals are evaluated in as few backend calls as the branch references allow: everything that
reads no branch series goes in the first call; a branch series is built as soon as the signals
of its sub-tree are known, and the signals reading it go in the next call. A tree without
branch references is one call, one query.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from gpubt.alloc.allocate import Allocator
from gpubt.backends.base import Backend
from gpubt.collector import paused
from gpubt.compiler.compile import compile_strategy
from gpubt.compiler.plan import Program, Step, walk_steps
from gpubt.data.market import Market
from gpubt.errors import GpubtError
from gpubt.ir.nodes import Node, topological
from gpubt.schema.parse import Strategy
from gpubt.schema.response import BacktestResponse
from gpubt.sim.period import backtest_window, missing_price_warnings, prepare_market
from gpubt.sim.simulate import period_returns, simulate


@paused()  # one pause for the whole run: the collector resumes once its temporaries are gone
def run_compiled(
    strategy: Strategy, market: Market, backend: Backend, timings: dict[str, float] | None = None
) -> BacktestResponse:
    """The spec §7 response computed through the column graph on `backend`. `timings`, when
    given, receives the seconds spent in each stage (compile, signals, allocation, simulation,
    response) for benchmarks."""
    clock = _Stages(timings)
    request = strategy.request
    market = prepare_market(strategy, market)
    program = compile_strategy(strategy, market)
    start, end, warnings = backtest_window(strategy, market.dates, program.warmup)
    clock.lap("compile")
    allocator = Allocator(market, {}, start, keep=_shared_steps(program))
    evaluate_signals(program, market, backend, allocator)
    clock.lap("signals")
    alloc = allocator.allocation(program.root)
    clock.lap("allocation")

    sim = simulate(alloc, market.open, market.close, request.mode, request.cost_bps, start, end)
    missing: dict[str, list[int]] = {}
    for day, column in sim.missing:
        missing.setdefault(market.tickers[column], []).append(int(day))
    warnings += missing_price_warnings(missing, market.dates)
    benchmark_net = None
    if request.benchmark in market.tickers:
        j = market.tickers.index(request.benchmark)
        _, _, returns = period_returns(market.open[:, j : j + 1], market.close[:, j : j + 1], request.mode)
        benchmark_net = returns[sim.decision, 0]  # the same periods: row d is decided on day d
    markers = []
    for latch in program.latches:
        state = allocator.latch_state(latch)[start : end + 1]
        for i in np.flatnonzero(state != np.r_[False, state[:-1]]).tolist():  # out before start
            markers.append((start + i, f"{latch.node_id}: {'enter' if state[i] else 'exit'}"))
    clock.lap("simulation")
    response = BacktestResponse(
        dates=market.dates,
        iso_dates=market.iso_dates,
        start=start,
        credited=sim.credited,
        tickers=market.tickers,
        holdings=sim.holdings[0],
        gross=sim.gross[0],
        net=sim.net[0],
        turnover=sim.turnover[0],
        cost=sim.cost[0],
        benchmark=request.benchmark,
        benchmark_net=benchmark_net,
        markers=sorted(markers),
        warnings=warnings,
    )
    clock.lap("response")
    return response


class _Stages:
    """Accumulates wall time per stage into a dict (a no-op without one)."""

    def __init__(self, timings: dict[str, float] | None) -> None:
        self.timings = timings
        self.last = time.perf_counter()

    def lap(self, stage: str) -> None:
        if self.timings is not None:
            now = time.perf_counter()
            self.timings[stage] = self.timings.get(stage, 0.0) + now - self.last
            self.last = now


def evaluate_signals(
    program: Program, market: Market, backend: Backend, allocator: Allocator
) -> dict[Node, np.ndarray]:
    """Every signal the plan reads, computed in dependency stages (see module doc) into the
    allocator's value table (branch series need allocations of earlier stages)."""
    signals = program.walked[1]
    # Without branch series nothing waits: skip walking the graph for what each signal reads.
    reads = _branch_reads(signals) if program.branches else dict.fromkeys(signals, frozenset())
    values: dict[Node, np.ndarray] = {}
    allocator.values = values
    branches: dict[tuple, np.ndarray] = {}
    needs = {key: _signals(step) for key, step in program.branches.items()}
    first = _first_reads(program, signals, allocator.start)
    pending = set(signals)  # a branch's step lies inside the tree, so its signals are here too
    while pending:
        ready = [n for n in pending if reads[n] <= branches.keys()]
        if ready:
            values.update(backend.evaluate(ready, market, branches, first))
            pending.difference_update(ready)
            continue
        built = False
        for key, step in program.branches.items():
            if key not in branches and all(n in values for n in needs[key]):
                branches[key] = allocator.branch_series(step)[0]
                built = True
        if not built:
            raise GpubtError("a branch series depends on itself", path="payload")
    return values


def _first_reads(program: Program, signals: list[Node], start: int) -> dict[Node, int]:
    """For each signal, the first day the allocation stage reads it: the backtest's start, or
    the warm-up day of an `early` step above it, whose allocation is read from there on."""
    first = dict.fromkeys(signals, start)
    day: dict[int, int] = {}
    stack = [(step, step.warmup) for step in program.early]
    while stack:
        step, d = stack.pop()
        if day.get(id(step), d + 1) <= d:
            continue
        day[id(step)] = d
        for node in step.signals():
            if first.get(node, d) > d:
                first[node] = d
        stack.extend((child, d) for child in step.substeps())
    return first


def _shared_steps(program: Program) -> set[int]:
    """Steps read more than once (a call chain used twice, a branch series): worth keeping."""
    parents = program.walked[0]
    return {k for k, n in parents.items() if n > 1} | {id(s) for s in program.branches.values()}


def _signals(root: Step) -> list[Node]:
    """The signal nodes a step and its descendants read."""
    return walk_steps(root)[1]


def _branch_reads(signals: list[Node]) -> dict[Node, set[str]]:
    """For each signal, the branch keys its sub-graph reads."""
    reads: dict[Node, set[str]] = {}
    for node in topological(signals):
        keys = {node.params[0]} if node.op == "branch" else set()
        for child in node.inputs:
            keys |= reads[child]
        reads[node] = keys
    return reads
