"""The allocation plan: layer 4 of the graph, one step per tree node, reading layer-3 signals.

Steps are built once per tree node (a call chain used twice is one step) and executed by
`gpubt.alloc` as whole-period array operations. Each step knows its warm-up day, so a branch
series built from it starts where the reference's does.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from gpubt.ir.nodes import Node


@dataclass(eq=False)
class Step:
    """Base of every plan step; `warmup` is the first day the sub-tree can be decided."""

    warmup: int = field(default=0, kw_only=True)

    # A method per kind rather than one function testing each kind in turn: walking a tree of
    # 10,000 steps took 17 ms that way.
    def signals(self) -> list[Node]:
        """The graph nodes this step reads directly (not those of its children)."""
        return []

    def substeps(self) -> list[Step]:
        """The steps this one combines or chooses between."""
        return []

    def key(self) -> tuple[Any, ...] | None:
        """What makes two steps compute the same weights from the same signals: the kind, the
        parameters, the signal nodes and the children (by identity: interned children first),
        or None for a step that must stay one program's own."""
        return None


@dataclass(eq=False)
class Hold(Step):
    """position: equal weights over distinct holdable tickers (empty when none)."""

    tickers: tuple[str, ...]

    def key(self) -> tuple[Any, ...]:
        return ("hold", self.tickers, self.warmup)


@dataclass(eq=False)
class Combine(Step):
    """Children of one slot combined with a weighting (spec §3.1–§3.2)."""

    children: tuple[Step, ...]
    weighting: str
    vol_window: int
    fallback: str | None
    child_windows: tuple[int | None, ...]  # `defined` weights and `capped` caps

    def substeps(self) -> list[Step]:
        return list(self.children)

    def key(self) -> tuple[Any, ...]:
        return ("combine", *map(id, self.children), self.weighting, self.vol_window, self.fallback,
                self.child_windows, self.warmup)


@dataclass(eq=False)
class Choose(Step):
    """indicator: `then` where the condition list is True, else `other` (None = always True)."""

    truth: Node | None
    then: Combine
    other: Combine

    def signals(self) -> list[Node]:
        return [self.truth] if self.truth is not None else []

    def substeps(self) -> list[Step]:
        return [self.then, self.other]

    def key(self) -> tuple[Any, ...]:
        return ("choose", self.truth, id(self.then), id(self.other), self.warmup)


@dataclass(eq=False)
class Count(Step):
    """numbered: counts of True and Null items choose a slot per day."""

    items: tuple[Node | None, ...]
    quantifier: str
    n: int
    then: Combine
    other: Combine
    ladder: dict[int, Combine]

    def signals(self) -> list[Node]:
        return [n for n in self.items if n is not None]

    def substeps(self) -> list[Step]:
        return [self.then, self.other, *self.ladder.values()]

    def key(self) -> tuple[Any, ...]:
        return ("count", self.items, self.quantifier, self.n, id(self.then), id(self.other),
                *((rung, id(c)) for rung, c in self.ladder.items()), self.warmup)


@dataclass(eq=False)
class Rank(Step):
    """function: score active children, keep the first `bottom` in rank order, combine them."""

    children: tuple[Step, ...]
    scores: tuple[Node, ...]
    top: bool
    bottom: int
    combine: Combine  # carries the weighting of the selected children

    def signals(self) -> list[Node]:
        return list(self.scores)

    def substeps(self) -> list[Step]:
        return [*self.children, self.combine]

    def key(self) -> tuple[Any, ...]:
        return ("rank", *map(id, self.children), self.scores, self.top, self.bottom, id(self.combine),
                self.warmup)


@dataclass(eq=False)
class Blend(Step):
    """scaling: (1 − b)·then + b·other with b from a metric clamped between two levels;
    `value_warmup`: the first day of that metric alone (a sweep's variants share it while the
    conditions below differ)."""

    value: Node
    low: float
    high: float
    then: Combine
    other: Combine
    value_warmup: int = field(default=0, kw_only=True)

    def signals(self) -> list[Node]:
        return [self.value]

    def substeps(self) -> list[Step]:
        return [self.then, self.other]

    def key(self) -> tuple[Any, ...]:
        return ("blend", self.value, self.low, self.high, id(self.then), id(self.other), self.warmup)


@dataclass(eq=False)
class Latch(Step):
    """altExit: an in/out state per day from the backtest start; in → then, out → other. Never
    interned (its state depends on the program's start), nor is anything above it."""

    node_id: str
    entry: Node | None
    exit: Node | None
    then: Combine
    other: Combine

    def signals(self) -> list[Node]:
        return [n for n in (self.entry, self.exit) if n is not None]

    def substeps(self) -> list[Step]:
        return [self.then, self.other]


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

    @cached_property
    def walked(self) -> tuple[dict[int, int], list[Node]]:
        """`walk_steps` from the root, once: a run needs both its answers."""
        return walk_steps(self.root)


def walk_steps(root: Step) -> tuple[dict[int, int], list[Node]]:
    """One walk of the steps under `root`: how many parents reach each step (by id; a step read
    twice is worth keeping), and the signal nodes they read, each once."""
    parents: dict[int, int] = {}
    signals: list[Node] = []
    stack = [root]
    pop, push, read = stack.pop, stack.extend, signals.extend
    while stack:
        step = pop()
        k = id(step)
        if k in parents:
            parents[k] += 1
            continue
        parents[k] = 1
        read(step.signals())
        push(step.substeps())
    return parents, list(dict.fromkeys(signals))
