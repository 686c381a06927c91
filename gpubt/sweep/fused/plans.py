"""Which sweeps the fused path takes, and each allocation setting's plan: the steps whose
weights a pattern fixes, and the signals that join the setting."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from gpubt.alloc.allocate import Allocator
from gpubt.compiler.compile import Compiler
from gpubt.compiler.execute import _branch_reads
from gpubt.compiler.plan import Blend, Choose, Combine, Count, Latch, Rank, Step
from gpubt.data.market import Market
from gpubt.sweep.fused.settings import distinct_rows, node_at, owner_of, settings_of
from gpubt.sweep.spec import SweepSpec


VOLATILITY_WEIGHTINGS = ("inverse", "pro")  # weights from the children's trailing volatility


def reachable_steps(root: Step) -> list[Step]:
    seen: dict[int, Step] = {}
    stack = [root]
    while stack:
        step = stack.pop()
        if id(step) not in seen:
            seen[id(step)] = step
            stack.extend(step.substeps())
    return list(seen.values())


def varies(step: Step) -> bool:
    """Whether a step's weights move from day to day whatever the branch bits: a scaling node,
    or inverse or pro weights over more than one child."""
    return isinstance(step, Blend) or (
        isinstance(step, Combine) and step.weighting in VOLATILITY_WEIGHTINGS and len(step.children) > 1)


# fields whose value can change the market tickers a variant reads (a Date metric reads none;
# an expanded line also reads its right ticker)
TICKER_FIELDS = ("ticker", "rightTicker", "metric", "expanded", "positions", "scaleTicker", "cappedFallback",
                 "cappedFallbackThen", "cappedFallbackElse", "benchmark")
CALENDAR_CHECKS = 4096  # at most this many distinct settings of them are parsed to check calendars


def check_calendars(spec: SweepSpec, market: Market, indices: np.ndarray) -> None:
    """`NotFused` unless every variant's calendar (the days any ticker it reads or its
    benchmark trades, as `prepare_market` selects them) is every day of ``market`` (the
    selection of every ticker and benchmark any variant reads), so all variants share one date
    axis. Variants that agree on every field in `TICKER_FIELDS` read the same tickers: one
    variant per distinct setting of those is parsed."""
    fields = [j for j, p in enumerate(spec.parameters) if p.path[-1] in TICKER_FIELDS]
    settings, _, example = settings_of(spec, indices, fields)
    if len(settings) > CALENDAR_CHECKS:
        raise NotFused(f"the held tickers do not trade on every day, and {len(settings):,} settings of swept "
                       "tickers are too many to check that variants share one calendar")
    for i in example.tolist():
        strategy = spec.strategy(i)
        read = [*strategy.tickers, *([strategy.request.benchmark] if market.has(strategy.request.benchmark) else [])]
        if not market.observed[:, [market.column(t) for t in read]].any(axis=1).all():
            raise NotFused(f"variant {i} ({spec.label(i)}): its tickers and benchmark miss days on which other "
                           "variants' tickers trade (variants would have different calendars)")


def by_first_day(plans: list[Plan], alloc_of: np.ndarray, first_day: np.ndarray, real: Allocator | None,
                 on_day: Callable[[int], Allocator]) -> tuple[np.ndarray, list[Plan], list[Allocator | None]]:
    """The allocation settings whose volatile children hold an altExit node split by their
    variants' first decision day (``first_day``): each variant's new setting, each setting's plan
    and the Allocator on the real signals its children's series come from (``real``, or for a
    split setting ``on_day`` of its day: altExit states started there, as a single run's)."""
    timed = np.array([any(isinstance(s, Latch) for c in plan.volatile for s in reachable_steps(c)) for plan in plans])
    if not timed.any():
        return alloc_of, plans, [real] * len(plans)
    day = np.where(timed[alloc_of], first_day, -1) + 1  # 0: a setting not split
    keys, of = distinct_rows(np.stack([alloc_of, day], axis=1), [len(plans), int(day.max()) + 1])
    return of, [plans[a] for a in keys[:, 0].tolist()], [on_day(d - 1) if d else real for d in keys[:, 1].tolist()]


class NotFused(Exception):
    """A sweep the fused path does not take; the message says why (shown to the user)."""


def swept_inside(spec: SweepSpec, compiler: Compiler, swept: list[int], inside: dict[int, Step]) -> list[int]:
    """The swept parameters (``swept``: positions) whose node's step, in ``compiler``'s
    program, is one of ``inside`` (by id)."""
    request = compiler.strategy.request
    found = []
    for j in swept:
        p = spec.parameters[j]
        owner = owner_of(p.path[:-2]) if p.target == "condition" else p.path[: -2 if p.path[-2] == "numbered" else -1]
        if id(compiler._steps.get(id(node_at(request, owner)))) in inside:
            found.append(j)
    return found


def ranked_inside(spec: SweepSpec, base: Compiler, program: Any, ranks: list[Rank],
                  swept: list[int]) -> dict[int, list[int]]:
    """For each sub-tree a function node ranks with swept fields inside (of ``swept``:
    parameter positions), and each position it ranks with swept fields (its tickers are its
    score), by its step id: those parameters. Its equity, and so its score, then
    differs by setting and is made per setting (`function_rows`; its allocation for a branch
    pattern is its allocation setting's plan, as anywhere; with an altExit node inside, its rows
    are made per first day too: `timed_rows`). Left to `check_read` (so the general path)
    where something else reads its equity (a branch: ticker)."""
    scores = {id(n) for r in ranks for n in r.scores}
    others = [n for n in program.walked[1] if id(n) not in scores]
    elsewhere = set().union(*_branch_reads(others).values()) if program.branches and others else set()
    inside: dict[int, list[int]] = {}
    for r in ranks:
        for c in r.children:
            key = base._branch_keys.get(id(c))
            if key in elsewhere:
                continue  # read by a branch: ticker too
            if key is None:  # a position scored by its ticker: its swept tickers are its settings
                found = swept_inside(spec, base, swept, {id(c): c})
                if found:
                    inside[id(c)] = found
                continue
            steps = {id(s): s for s in reachable_steps(c)}
            found = swept_inside(spec, base, swept, steps)
            if found:
                inside[id(c)] = found
    return inside


def check_read(spec: SweepSpec, base: Compiler, program: Any, swept: list[int], apart: set[int]) -> None:
    """`NotFused` unless every sub-tree the tree reads (a branch: ticker, a function node
    ranking sub-trees) but those whose equity is made per setting (``apart``: step ids) is the
    same for every variant, its equity then computed once (per first decision day where an
    altExit node is inside: `timed_rows`): where a swept field (``swept``: parameter
    positions) lies inside one."""
    inside = {id(s): s for step in program.branches.values() if id(step) not in apart for s in reachable_steps(step)}
    found = swept_inside(spec, base, swept, inside)
    if found:
        raise NotFused(f"{spec.parameters[found[0]].name} is inside a sub-tree whose equity the tree reads (a "
                       "branch: ticker, or a function node ranking sub-trees)")


def volatile_children(spec: SweepSpec, compiler: Compiler, steps: list[Step],
                      signalled: list[int]) -> tuple[list[Step], list[int]]:
    """The children of inverse or pro weights in ``steps`` that have conditions below them, and
    the swept signals inside them (of ``signalled``: positions of the swept condition fields,
    function nodes' fields and scaling levels). Their weights read each child's trailing
    volatility, which runs through every earlier day's branch bits: the same for the variants
    of an allocation setting only when those signals are part of the setting (and, where an
    altExit node is inside, whose state starts on the backtest's first day, when they start on
    the same day: `by_first_day`)."""
    found: dict[int, Step] = {}
    for step in steps:
        if isinstance(step, Combine) and varies(step) and branching_steps(reachable_steps(step)):
            found.update((id(c), c) for c in step.children)
    children = list(found.values())
    inside = {id(s): s for child in children for s in reachable_steps(child)}
    return children, swept_inside(spec, compiler, signalled, inside)


def function_weights(spec: SweepSpec, functions: list[int], paths: list[tuple[Any, ...]],
                     plans: list[Plan]) -> set[int]:
    """The swept function-node windows (of ``functions``) that are also the node's weight (or
    cap) in a defined or capped group of some plan (``paths``: the wire paths of its branching
    steps): they change what a pattern holds, so they join the allocation setting too."""
    found = set()
    for j in functions:
        p = spec.parameters[j]
        b = paths.index(p.path[:-1]) if p.path[:-1] in paths else None
        if p.path[-1] == "window" and b is not None and any(
                id(plan.at[b]) in {id(c) for s in plan.steps if isinstance(s, Combine)
                                   and s.weighting != "equal" for c in s.children}
                for plan in plans):
            found.add(j)
    return found


def level_reads(spec: SweepSpec, compiler: Compiler, steps: list[Step], signalled: list[int]) -> list[int]:
    """The swept signals (of ``signalled``) inside the sub-trees that the scaling levels in
    ``steps`` read (a branch: ticker): the level differs by their setting, so they join the
    allocation setting, whose compile makes the level."""
    levels = [s.value for s in steps if isinstance(s, Blend)]
    keys = set().union(*_branch_reads(levels).values()) if levels else set()
    inside = {id(x): x for key in keys for x in reachable_steps(compiler.branches[key])}
    return swept_inside(spec, compiler, signalled, inside)


@dataclass(frozen=True, eq=False)
class Plan:
    """One allocation setting's plan: its root, its reachable steps, its branching steps (those
    of the nodes the base's are, in bit order) and the children of its volatility weights that
    have conditions below them."""

    root: Step
    steps: list[Step]
    at: list[Step]
    volatile: list[Step]


def allocation_plans(spec: SweepSpec, indices: np.ndarray, members: list[int], base: Plan,
                     paths: list[tuple[Any, ...]], compiler: Any, signalled: list[int],
                     scored: dict[int, list[int]]) -> tuple[np.ndarray, list[Plan], set[int]]:
    """Each variant's allocation setting (its values of the swept positions, weights,
    weightings, numbered nodes' counts and scaling fields, and of the signals inside the
    children of volatility weights: ``members``), each setting's plan (the base's: ``base``,
    of the nodes at ``paths``) and the swept signals inside the children of the plans'
    volatility weights (``signalled``: see `volatile_children`). One compile per setting, whose plan the
    Allocator then runs on the branch patterns, so every weighting and counting rule is a
    single backtest's. A position a function node ranks may change only where its scores are
    made per setting (``scored``: `ranked_inside`, by the base's step id)."""
    if not members:
        return np.zeros(spec.n_variants, dtype=np.int64), [base], set()
    settings, alloc_of, example = settings_of(spec, indices, members)
    plans: list[Plan] = []
    inside: set[int] = set()
    for i in example.tolist():
        if i == 0:  # the base's own
            plans.append(base)
            continue
        strategy = spec.strategy(i)
        found = compiler(strategy)
        plan = found.program()
        reached = reachable_steps(plan.root)
        at = [found._steps.get(id(node_at(strategy.request, path))) for path in paths]
        if {id(s) for s in branching_steps(reached)} != {id(s) for s in at}:
            raise NotFused(f"variant {i} ({spec.label(i)}) has other if/else, function, numbered or altExit nodes "
                           "than the base")
        for mine, step in zip(at, base.at):
            if isinstance(step, Rank) and any(
                    a != b and id(c) not in scored for a, b, c in zip(_ranked(mine), _ranked(step), step.children)):  # type: ignore[arg-type]
                raise NotFused(f"variant {i} ({spec.label(i)}) changes a position a function node ranks "
                               "(its scores change with it)")
        children, signals = volatile_children(spec, found, reached, signalled)
        inside.update(signals, level_reads(spec, found, reached, signalled))
        plans.append(Plan(plan.root, reached, at, children))  # type: ignore[arg-type]
    return alloc_of, plans, inside


def _ranked(step: Rank) -> list[tuple[str, ...] | None]:
    """The tickers of a function node's position children (None for a sub-tree)."""
    return [getattr(c, "tickers", None) for c in step.children]


def branching_steps(steps: list[Step]) -> list[Step]:
    """The steps that read branch bits: if/else nodes with conditions, then function nodes with
    children, then numbered nodes with an item that has conditions, then altExit nodes."""
    return ([s for s in steps if isinstance(s, Choose) and s.truth is not None]
            + [s for s in steps if isinstance(s, Rank) and s.children]
            + [s for s in steps if isinstance(s, Count) and any(item is not None for item in s.items)]
            + [s for s in steps if isinstance(s, Latch)])
