"""The allocation plan: layer 4 of the graph, one step per tree node, reading layer-3 signals.

Steps are built once per tree node (a call chain used twice is one step) and executed by
`gpubt.alloc` as whole-period array operations. Each step knows its warm-up day, so a branch
series built from it starts where the reference's does.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from gpubt.ir.nodes import Node


@dataclass(eq=False)
class Step:
    """Base of every plan step; `warmup` is the first day the sub-tree can be decided."""

    warmup: int = field(default=0, kw_only=True)


@dataclass(eq=False)
class Hold(Step):
    """position: equal weights over distinct holdable tickers (empty when none)."""

    tickers: tuple[str, ...]


@dataclass(eq=False)
class Combine(Step):
    """Children of one slot combined with a weighting (spec §3.1–§3.2)."""

    children: tuple[Step, ...]
    weighting: str
    vol_window: int
    fallback: str | None
    child_windows: tuple[int | None, ...]  # `defined` weights and `capped` caps


@dataclass(eq=False)
class Choose(Step):
    """indicator: `then` where the condition list is True, else `other` (None = always True)."""

    truth: Node | None
    then: Combine
    other: Combine


@dataclass(eq=False)
class Count(Step):
    """numbered: counts of True and Null items choose a slot per day."""

    items: tuple[Node | None, ...]
    quantifier: str
    n: int
    then: Combine
    other: Combine
    ladder: dict[int, Combine]


@dataclass(eq=False)
class Rank(Step):
    """function: score active children, keep the first `bottom` in rank order, combine them."""

    children: tuple[Step, ...]
    scores: tuple[Node, ...]
    top: bool
    bottom: int
    combine: Combine  # carries the weighting of the selected children


@dataclass(eq=False)
class Blend(Step):
    """scaling: (1 − b)·then + b·other with b from a metric clamped between two levels."""

    value: Node
    low: float
    high: float
    then: Combine
    other: Combine


@dataclass(eq=False)
class Latch(Step):
    """altExit: an in/out state per day from the backtest start; in → then, out → other."""

    node_id: str
    entry: Node | None
    exit: Node | None
    then: Combine
    other: Combine


@dataclass
class Program:
    """A compiled strategy: the root step, the signals it reads, and the branch series that
    feed back into layer 2 (key → the step whose equity the `branch` leaf stands for). `early`:
    the steps whose allocation is read from their own warm-up day, which can be before the days
    their parents are read (the branch series' steps, the children of a volatility weighting)."""

    root: Step
    warmup: int
    branches: dict[str, Step]
    latches: list[Latch]
    tickers: tuple[str, ...]
    early: list[Step] = field(default_factory=list)


def step_signals(step: Step) -> list[Node]:
    """The graph nodes a step reads directly (not those of its children)."""
    if isinstance(step, Choose):
        return [step.truth] if step.truth is not None else []
    if isinstance(step, Count):
        return [n for n in step.items if n is not None]
    if isinstance(step, Rank):
        return list(step.scores)
    if isinstance(step, Blend):
        return [step.value]
    if isinstance(step, Latch):
        return [n for n in (step.entry, step.exit) if n is not None]
    return []


def step_children(step: Step) -> list[Step]:
    if isinstance(step, Combine):
        return list(step.children)
    if isinstance(step, (Choose, Blend, Latch)):
        return [step.then, step.other]
    if isinstance(step, Count):
        return [step.then, step.other, *step.ladder.values()]
    if isinstance(step, Rank):
        return [*step.children, step.combine]
    return []
