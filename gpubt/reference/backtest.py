"""A whole backtest with the reference interpreter: start rule, per-day simulation loop, response.

The loop here is the oracle's own simulation (spec §6); the compiled path has a vectorised one in
`gpubt.sim`, and parity tests compare the two.
"""

from __future__ import annotations

import math

import numpy as np

from gpubt.data.market import Market
from gpubt.reference.interpreter import Alloc, Interpreter
from gpubt.schema.models import FlowNode
from gpubt.schema.parse import Strategy
from gpubt.schema.response import BacktestResponse
from gpubt.sim.period import backtest_window, missing_price_warnings, prepare_market

# How many days after the decision day a mode's return is credited, and which prices bound it.
_PERIODS = {
    "CC": (1, ("close", 0), ("close", 1)),
    "CO": (1, ("close", 0), ("open", 1)),
    "OC": (1, ("open", 1), ("close", 1)),
    "OO": (2, ("open", 1), ("open", 2)),
}


def run_reference(strategy: Strategy, market: Market) -> BacktestResponse:
    """The full §7 response computed by the reference interpreter."""
    request = strategy.request
    market = prepare_market(strategy, market)
    interp = Interpreter(strategy, market)
    start, end, warnings = backtest_window(strategy, market.dates, interp.warmup(strategy.root))
    interp.start = start  # altExit states advance from the backtest start (spec §3)
    lag, (f0, d0), (f1, d1) = _PERIODS[request.mode]
    decisions = range(start, end - lag + 1)
    col = {t: j for j, t in enumerate(market.tickers)}
    n = len(market.tickers)
    holdings = np.zeros((len(decisions), n))
    gross, turnover = np.zeros(len(decisions)), np.zeros(len(decisions))
    bench = np.full(len(decisions), np.nan)
    missing: dict[str, list[int]] = {}
    previous: Alloc = {}
    for i, t in enumerate(decisions):
        held = interp.allocation(strategy.root, t)
        for ticker, w in held.items():
            holdings[i, col[ticker]] = w
            r = _period_return(market, f0, t + d0, f1, t + d1, col[ticker])
            if math.isfinite(r):
                gross[i] += w * r
            else:
                missing.setdefault(ticker, []).append(t + lag)
        # summed in market order: a set's order changes with the process's string hashing
        names = sorted(set(held) | set(previous), key=col.__getitem__)
        turnover[i] = 0.5 * sum(abs(held.get(k, 0.0) - previous.get(k, 0.0)) for k in names)
        previous = held
        if request.benchmark in col:
            bench[i] = _period_return(market, f0, t + d0, f1, t + d1, col[request.benchmark])
    warnings += missing_price_warnings(missing, market.dates)
    cost = turnover * request.cost_bps / 10_000.0
    credited = np.arange(start + lag, end + 1)
    return BacktestResponse(
        dates=market.dates,
        iso_dates=market.iso_dates,
        start=start,
        credited=credited,
        tickers=market.tickers,
        holdings=holdings,
        gross=gross,
        net=gross - cost,
        turnover=turnover,
        cost=cost,
        benchmark=request.benchmark,
        benchmark_net=bench if request.benchmark in col else None,
        markers=_markers(interp, strategy, start, end),
        warnings=warnings,
    )


def _period_return(market: Market, f0: str, t0: int, f1: str, t1: int, j: int) -> float:
    begin = getattr(market, f0)[t0, j]
    finish = getattr(market, f1)[t1, j]
    if not (math.isfinite(begin) and math.isfinite(finish)) or begin == 0:
        return math.nan
    return finish / begin - 1.0


def _markers(interp: Interpreter, strategy: Strategy, start: int, end: int) -> list[tuple[int, str]]:
    """altExit entries and exits inside the reported period, for every altExit node the tree
    can reach (through the slots its nodes read and through calls, each chain once)."""
    chains = strategy.request.call_chains
    roots: list[FlowNode] = [strategy.root]
    visited: set[str] = set()
    markers: list[tuple[int, str]] = []
    while roots:
        stack = [roots.pop()]
        while stack:
            node = stack.pop()
            stack.extend(c for slot in node.used_slots() for c in node.slot(slot))
            if node.kind == "call" and node.call_ref_id not in visited:
                visited.add(node.call_ref_id)
                roots.append(chains[node.call_ref_id])
            if node.kind != "altExit":
                continue
            state = interp.alt_exit_state(node)
            for t in range(start, end + 1):
                before = state[t - 1] if t > start else False
                if state[t] != before:
                    markers.append((t, f"{node.id}: {'enter' if state[t] else 'exit'}"))
    markers.sort()
    return markers
