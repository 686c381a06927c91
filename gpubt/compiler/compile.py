"""FlowNode tree → column graph (layers 1–3) + allocation plan (layer 4).

Conditions become three-valued graph nodes built through one `Builder`, so every indicator,
comparison and condition list exists once however often the tree (or a sweep of trees) asks for
it. The warm-up of each sub-tree is derived here from the catalogue's lookbacks and the market's
first prices, independently of the reference interpreter, and must agree with it.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

from gpubt.collector import paused
from gpubt.compiler.plan import (
    Blend,
    Choose,
    Combine,
    Count,
    Hold,
    Latch,
    Program,
    Rank,
    Step,
)
from gpubt.data.market import Market
from gpubt.indicators import Source, branch_source, expand, expand_formula, ticker_source
from gpubt.ir.lines import Line, lines_node
from gpubt.ir.nodes import Builder, Node, topological
from gpubt.schema.catalogue import DATE_METRIC, resolve_metric
from gpubt.schema.formula import formula_lookback, formula_window
from gpubt.schema.models import Condition, FlowNode
from gpubt.schema.parse import Strategy, branch_slot, is_holdable

DEFAULT_FUNCTION_WINDOW = 14

_S = TypeVar("_S", bound=Step)


@dataclass
class Compiler:
    """Compiles one strategy for one market (first prices fix the warm-ups)."""

    strategy: Strategy
    market: Market
    builder: Builder = field(default_factory=Builder)
    _steps: dict[int, Step] = field(default_factory=dict)
    _slots: dict[tuple[int, str], Combine] = field(default_factory=dict)
    _branch_keys: dict[int, str] = field(default_factory=dict)
    branches: dict[str, Step] = field(default_factory=dict)
    latches: list[Latch] = field(default_factory=list)
    volatile: list[Step] = field(default_factory=list)  # children of inverse/pro weightings
    indicators: dict[Node, None] = field(default_factory=dict)
    conditions: dict[Line, None] = field(default_factory=dict)
    _series: dict[tuple[str, str, int], tuple[Node, int]] = field(default_factory=dict)
    _sources: dict[str, Source] = field(default_factory=dict)
    _bases: dict[str, int] = field(default_factory=dict)  # a ticker's (or ratio's) first day
    _lookbacks: dict[tuple[str, int], int] = field(default_factory=dict)
    # a position list's holdable tickers and first day: a big tree repeats a few lists thousands
    # of times (1,000 × 10,000: 4,000 positions, 5 distinct lists)
    _positions: dict[tuple[str, ...], tuple[tuple[str, ...], int]] = field(default_factory=dict)
    # numbers the `branch` leaves; programs sharing one Builder share one counter, so two
    # variants' `branch0` leaves never become one graph node
    branch_counter: Iterator[int] = field(default_factory=itertools.count)
    # steps by `Step.key`, shared by the programs of a sweep so that variants whose sub-trees
    # agree share one step, and their allocations are computed once; None interns nothing
    interned: dict[tuple[Any, ...], Step] | None = None
    # a sweep's tree nodes (by identity: variants parsed from one base share their unchanged
    # nodes) and their steps, for the sub-trees whose compiling added no branch series, altExit
    # or volatility child to the program and resolved no call (whose chain a variant may
    # change): those the next variant takes without compiling
    reused: dict[int, tuple[FlowNode, Step]] | None = None
    _calls: int = 0  # calls resolved so far

    def program(self) -> Program:
        root = self.step(self.strategy.root)
        return Program(root, root.warmup, self.branches, self.latches, self.market.tickers,
                       [*self.branches.values(), *self.volatile])

    def explain(self, program: Program) -> str:
        """The graph in numbers: what was built, and how much interning saved."""
        parents, signals = program.walked
        steps = len(parents)
        graph = topological([*self.indicators, *signals])
        series = sum(1 for n in graph if n.op in ("price", "ratio", "branch"))
        lines = [
            f"series        {series:>8}  (prices, ratios, branch equities)",
            f"indicators    {len(self.indicators):>8}  distinct metric(ticker, window)",
            f"conditions    {len(self.conditions):>8}  distinct condition lines",
            f"node signals  {len(signals):>8}  truths, scores and levels read by the plan",
            f"alloc steps   {steps:>8}  ({len(program.branches)} feeding branch series)",
            f"graph nodes   {len(graph):>8}  primitives in topological order",
            f"duplicates    {self.builder.duplicates_removed:>8}  requests answered by an existing node",
            f"warm-up       {program.warmup:>8}  first decidable day index",
        ]
        return "\n".join(lines)

    # -- steps ----------------------------------------------------------------------------------

    def step(self, node: FlowNode) -> Step:
        step = self._steps.get(id(node))
        if step is None:
            step = self._steps[id(node)] = (
                self._reuse(node) if self.reused is not None else self._intern(self._build(node)))
        return step

    def _reuse(self, node: FlowNode) -> Step:
        """A sweep's step for the node: the one an earlier variant compiled from this very node,
        or a new (interned) one, kept for later variants when compiling it added nothing that
        is this program's own."""
        seen = self.reused.get(id(node))  # type: ignore[union-attr]
        if seen is not None and seen[0] is node:
            return seen[1]
        effects = self._effects()
        step = self._intern(self._build(node))
        if effects == self._effects():
            self.reused[id(node)] = (node, step)  # type: ignore[index]
        return step

    def _effects(self) -> tuple[int, int, int, int]:
        """What compiling a sub-tree may add that is this program's own (see `reused`)."""
        return len(self.branches), len(self.latches), len(self.volatile), self._calls

    def _intern(self, step: _S) -> _S:
        """The step, or the equal one another program of the sweep built first."""
        if self.interned is None:
            return step
        key = step.key()
        return step if key is None else self.interned.setdefault(key, step)  # type: ignore[return-value]

    def _build(self, node: FlowNode) -> Step:
        kind = node.kind
        if kind == "call":
            self._calls += 1
            return self.step(self.strategy.request.call_chains[node.call_ref_id])
        if kind == "position":
            held = self._positions.get(node.positions)
            if held is None:
                tickers = tuple(dict.fromkeys(p for p in node.positions if is_holdable(p)))
                held = self._positions[node.positions] = (
                    tickers, max((self.market.first_index(t) for t in tickers), default=0))
            return Hold(held[0], warmup=held[1])
        if kind == "basic":
            return self.slot(node, "next")
        if kind == "indicator":
            truth, first = self.lines(node, node.conditions)
            then, other = self.slot(node, "then"), self.slot(node, "else")
            return Choose(truth, then, other, warmup=max(first, then.warmup, other.warmup))
        if kind == "numbered":
            return self._numbered(node)
        if kind == "function":
            return self._function(node)
        if kind == "scaling":
            value, first = self.series(node.scale_metric, node.scale_ticker, node.scale_window, node)
            then, other = self.slot(node, "then"), self.slot(node, "else")
            return Blend(value, node.scale_from, node.scale_to, then, other,
                         warmup=max(first, then.warmup, other.warmup), value_warmup=first)
        if kind == "altExit":
            entry, f1 = self.lines(node, node.entry_conditions) if node.entry_conditions else (None, 0)
            exit_, f2 = self.lines(node, node.exit_conditions) if node.exit_conditions else (None, 0)
            then, other = self.slot(node, "then"), self.slot(node, "else")
            latch = Latch(node.id, entry, exit_, then, other, warmup=max(f1, f2, then.warmup, other.warmup))
            self.latches.append(latch)
            return latch
        raise ValueError(f"unknown node kind {kind!r}")

    def slot(self, node: FlowNode, name: str) -> Combine:
        key = (id(node), name)
        combine = self._slots.get(key)
        if combine is None:
            weighting, vol_window, fallback = node.slot_weighting(name)
            children = node.slot(name)
            steps = tuple(self.step(c) for c in children)
            first = max((s.warmup for s in steps), default=0)
            if weighting in ("inverse", "pro") and len(steps) > 1:
                first = max(first, max(s.warmup for s in steps) + vol_window)
                self.volatile.extend(steps)
            combine = self._intern(Combine(steps, weighting, vol_window, fallback,
                                           tuple(c.window for c in children), warmup=first))
            self._slots[key] = combine
        return combine

    def _slots_warmup(self, node: FlowNode) -> int:
        return max((self.slot(node, name).warmup for name in node.used_slots()), default=0)

    def _numbered(self, node: FlowNode) -> Count:
        numbered = node.numbered
        items: list[Node | None] = []
        first = 0
        for item in numbered.items if numbered else ():
            truth, f = self.lines(node, item.conditions, group=item.group_logic)
            items.append(truth)
            first = max(first, f)
        ladder = {
            int(name[7:]): self.slot(node, name) for name in node.used_slots() if name.startswith("ladder-")
        }
        return Count(
            tuple(items),
            numbered.quantifier if numbered else "any",
            numbered.n if numbered else 0,
            self.slot(node, "then"),
            self.slot(node, "else"),
            ladder,
            warmup=max(first, self._slots_warmup(node)),
        )

    def _function(self, node: FlowNode) -> Rank:
        window = DEFAULT_FUNCTION_WINDOW if node.window is None else node.window
        combine = self.slot(node, "next")
        scores = []
        first = combine.warmup
        for child, step in zip(node.slot("next"), combine.children):
            score, f = self.score(node, window, child, step)
            scores.append(score)
            first = max(first, f)
        return Rank(combine.children, tuple(scores), node.rank == "Top", node.bottom, combine,
                    warmup=first)

    def score(self, node: FlowNode, window: int, child: FlowNode, step: Step) -> tuple[Node, int]:
        """(score, first day) of a function node's child: its metric over the window of the
        child's one ticker when it is a position holding one, else of its branch series."""
        tickers = [p for p in child.positions if is_holdable(p)]
        if child.kind == "position" and len(set(tickers)) == 1:
            return self.series(node.metric, tickers[0], window, node)
        src = branch_source(self.builder, self.branch_key(step))
        return self._metric(node.metric, src, window), step.warmup + self._lookback(node.metric, window)

    def branch_key(self, step: Step) -> str:
        """The `branch` leaf key standing for a step's equity series."""
        key = self._branch_keys.get(id(step))
        if key is None:
            key = f"branch{next(self.branch_counter)}"
            self._branch_keys[id(step)] = key
            self.branches[key] = step
        return key

    # -- conditions (layer 3) -------------------------------------------------------------------

    def lines(
        self, node: FlowNode, lines: tuple[Condition, ...], group: str | None = None
    ) -> tuple[Node | None, int]:
        """(truth node or None for "always True", warm-up) of a condition list (spec §2.1): one
        `lines` node, an OR of AND-terms."""
        if not lines:
            return None, 0
        compiled = [self.condition(node, c) for c in lines]
        first = max(f for _, f in compiled)
        specs = [line for line, _ in compiled]
        if group == "and":
            terms = [specs]
        elif group == "or":
            terms = [[line] for line in specs]
        else:
            terms = []
            for i, (cond, line) in enumerate(zip(lines, specs)):
                if i == 0 or cond.type == "or":
                    terms.append([line])
                else:
                    terms[-1].append(line)
        return lines_node(self.builder, terms), first

    def condition(self, node: FlowNode, cond: Condition) -> tuple[Line, int]:
        """One line with its forDays, and the first day it can be decided."""
        if cond.metric == DATE_METRIC:
            to = (cond.date_to.month, cond.date_to.day) if cond.expanded and cond.date_to else (
                cond.date_month, cond.date_day)
            dates = self.builder.node("date_between", (cond.date_month, cond.date_day, *to))
            line: Line = ("is", dates, None, 0.0, cond.for_days)
            first = 0
        else:
            left, first = self.series(cond.metric, cond.ticker, cond.window, node)
            right, threshold = None, cond.threshold
            if cond.expanded:
                metric, ticker, window = cond.right
                right, f2 = self.series(metric, ticker, window, node)
                first, threshold = max(first, f2), 0.0
            if cond.comparator in ("crossAbove", "crossBelow"):
                first += 1  # the day before is read
            line = (cond.comparator, left, right, threshold, cond.for_days)
        first += cond.for_days - 1
        self.conditions[line] = None
        return line, first

    def series(self, metric: str, ticker: str, window: int, node: FlowNode) -> tuple[Node, int]:
        """metric(window) of a ticker, ratio or branch slot, and its first valid day. Market
        series are memoised: a thousand conditions on RSI(14) of SPY expand it once."""
        key = (metric, ticker, window)
        found = self._series.get(key)  # a market series seen before (a branch's is never kept)
        if found is not None:
            return found
        slot = branch_slot(ticker)
        if slot is not None:
            combine = self.slot(node, slot)
            src = branch_source(self.builder, self.branch_key(combine))
            return self._metric(metric, src, window), combine.warmup + self._lookback(metric, window)
        src = self._sources.get(ticker)
        if src is None:  # one Source per ticker: its five price leaves are asked for once
            src = self._sources[ticker] = ticker_source(self.builder, ticker)
            self._bases[ticker] = max(self.market.first_index(t) for t in ticker.split("/"))
        found = self._series[key] = (self._metric(metric, src, window),
                                     self._bases[ticker] + self._lookback(metric, window))
        return found

    def _metric(self, metric: str, src: Source, window: int) -> Node:
        formula = self.strategy.custom(metric)
        if formula is not None:
            node = expand_formula(self.builder, formula, src, formula_window(window))
        else:
            node = expand(self.builder, metric, src, window)
        self.indicators[node] = None
        return node

    def _lookback(self, metric: str, window: int) -> int:
        key = (metric, window)
        days = self._lookbacks.get(key)
        if days is None:
            formula = self.strategy.custom(metric)
            if formula is not None:
                days = formula_lookback(formula, formula_window(window))
            else:
                days = resolve_metric(metric).lookback(window)  # type: ignore[union-attr]
            self._lookbacks[key] = days
        return days



@paused()  # graph nodes and plan steps by the thousand, no cycles
def compile_strategy(strategy: Strategy, market: Market, builder: Builder | None = None) -> Program:
    """Compile a validated strategy against the market it will run on."""
    return Compiler(strategy, market, Builder() if builder is None else builder).program()
