"""The condition, pair, latch and pick rows the kernel reads: one per distinct setting of a
condition list or function node, made from one backend call."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np

from gpubt.alloc.allocate import Allocator, best_places
from gpubt.backends.base import NULL, TRUE, Backend
from gpubt.compiler.compile import DEFAULT_FUNCTION_WINDOW, Compiler
from gpubt.compiler.execute import _branch_reads
from gpubt.compiler.plan import Latch, Rank, Step, walk_steps
from gpubt.data.market import Market
from gpubt.errors import GpubtError, json_path
from gpubt.ir.nodes import Node
from gpubt.schema.catalogue import DATE_METRIC
from gpubt.schema.models import FlowNode
from gpubt.schema.parse import Strategy, check_conditions
from gpubt.sweep.fused.kernel import day_bits
from gpubt.sweep.fused.plans import NotFused, reachable_steps, varies
from gpubt.sweep.fused.settings import (
    condition_list,
    distinct_rows,
    field_values,
    node_at,
    owner_of,
    settings_of,
    with_lines,
)
from gpubt.sweep.spec import SweepSpec, dict_at


def evaluate_apart(signals: list[Node], branches: dict[str, Step], real: Allocator, engine: Backend,
                   market: Market) -> None:
    """The ``signals`` (of sub-trees compiled per setting, or read again per first day) into
    ``real``'s values, in stages as `evaluate_signals` stages a single run's: a signal reading
    branch series (``branches``: by key, every compile's) once those series' sub-trees' signals
    are in and their equities made by ``real`` (an altExit node's state started on its first
    day: `timed_rows` makes what reads such an equity again per first decision day)."""
    reads = _branch_reads(signals)
    equities: dict[str, np.ndarray] = {}
    pending = dict.fromkeys(signals)
    while pending:
        ready = [n for n in pending if reads[n] <= equities.keys()]
        if ready:
            real.values.update(engine.evaluate(ready, market, equities))  # type: ignore[attr-defined]
            for n in ready:
                del pending[n]
            continue
        built = False
        for key in sorted(set().union(*(reads[n] for n in pending)) - equities.keys()):
            inside = walk_steps(branches[key])[1]
            if all(n in real.values and n not in pending for n in inside):
                equities[key] = real.branch_series(branches[key])[0]
                built = True
        if not built:
            raise NotFused("a sub-tree compiled per setting of the fields swept inside it reads a branch series "
                           "whose signals are not evaluated before it")


def on_altexit(branches: dict[str, Step], read: set[str]) -> tuple[dict[str, Step], list[Node]]:
    """Of the sub-trees read (``read``: keys of ``branches``, every compile's) and those their
    signals read, the ones whose equity differs by first decision day: with an altExit node
    inside, or with a signal reading such an equity; and those signals, which `timed_rows`
    evaluates again per first day."""
    inside: dict[str, list[Node]] = {}
    reads: dict[Node, set[str]] = {}
    frontier = list(read)
    while frontier:
        key = frontier.pop()
        if key not in inside:
            inside[key] = walk_steps(branches[key])[1]
            found = _branch_reads(inside[key])
            reads.update(found)
            frontier.extend(set().union(*found.values()))
    timed = {key for key in inside if any(isinstance(s, Latch) for s in reachable_steps(branches[key]))}
    grown = True
    while grown:
        found = {key for key, nodes in inside.items() if key not in timed and any(reads[n] & timed for n in nodes)}
        timed |= found
        grown = bool(found)
    again = list(dict.fromkeys(n for key in timed for n in inside[key] if reads[n] & timed))
    return {key: branches[key] for key in timed}, again


def timed_rows(table: Rows, signals: tuple[np.ndarray, ...], equities: dict[str, np.ndarray],
               timed: dict[str, Step], again: list[Node], branches: dict[str, Step],
               on_day: Callable[[int], Allocator], engine: Backend, market: Market,
               first_day: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Rows reading the equity of a sub-tree with an altExit node inside, or of one reading such
    an equity (``timed``: by branch key, `on_altexit`), made again for each first decision day
    (``first_day``: each variant's): its state starts there, as a single run's, so the equity,
    the signals on it and the function node's picks among active children do too. Each day's
    equities come from the Allocator on the real signals started that day (``on_day``), with
    the signals inside those sub-trees that read them (``again``) evaluated again for the day
    (``branches``: every compile's sub-trees, by key); the rows' signals reading them from one
    backend call. The variants' rows (``signals``' last) are pointed at their day's rows, in
    place; returns the bits, series, pairs and latches with those rows added."""
    bits, series, pairs, latches, kinds, rows = signals
    reads = _branch_reads([*table.bits, *table.series_nodes])
    on_timed = {node for node, keys in reads.items() if keys & timed.keys()}
    moved_series = [(node, r) for node, r in table.series_nodes.items() if node in on_timed]
    is_moved = np.zeros(len(series), dtype=bool)
    is_moved[[r for _, r in moved_series]] = True
    at, sides, ops, limits = table.compared()
    compared = np.flatnonzero(is_moved[sides]).tolist()
    latched = {id(step) for step in timed.values()}
    picks = [p for p in table.picks if is_moved[p[1]].any() or any(id(c) in latched for c in p[2])]
    truths = [(truth, r, TRUE) for truth, r in table.bits.items() if truth in on_timed] + [
        (truth, r, NULL) for truth, r in table.nulls.items() if truth in on_timed]
    moved_pairs = np.flatnonzero(is_moved[pairs[:, 0]] | is_moved[pairs[:, 1]]) if len(pairs) else np.zeros(0, int)
    if not (truths or moved_series or picks):
        return bits, series, pairs, latches
    added: list[list[np.ndarray]] = [[bits], [series], [pairs], [latches]]
    sizes = [len(bits), len(series), len(pairs), len(latches)]  # rows so far, of each
    nodes = list(dict.fromkeys([*(node for node, _ in moved_series), *(truth for truth, _, _ in truths)]))
    for day in np.unique(first_day).tolist():
        starting = on_day(day)
        if again:  # the day's own values of the signals reading a timed equity
            starting = Allocator(market, dict(starting.values), day)  # type: ignore[attr-defined]
            for n in again:
                starting.values.pop(n, None)  # type: ignore[attr-defined]
            evaluate_apart(again, branches, starting, engine, market)
        found = engine.evaluate(nodes, market, {**equities, **{key: starting.branch_series(step)[0]
                                                                for key, step in timed.items()}})
        # each row's row for this day (its own where nothing it reads is timed)
        bit_of, series_of = np.arange(len(bits)), np.arange(len(series))
        own = series.copy()  # the series as this day's variants see them
        for i, (node, r) in enumerate(moved_series):
            series_of[r], own[r] = sizes[1] + i, found[node]
        day_bits: list[np.ndarray] = []
        for truth, r, value in truths:
            bit_of[r] = sizes[0] + len(day_bits)
            day_bits.append(found[truth] == value)
        for u in compared:
            bit_of[at[u]] = sizes[0] + len(day_bits)
            day_bits.append(own[sides[u]] > limits[u] if ops[u] == 0 else own[sides[u]] < limits[u])
        for r, found in picked(picks, own, starting):
            bit_of[r : r + len(found)] = sizes[0] + len(day_bits) + np.arange(len(found))
            day_bits.extend(found)
        pair_of, latch_of = np.arange(len(pairs)), np.arange(len(latches))
        pair_of[moved_pairs] = sizes[2] + np.arange(len(moved_pairs))
        day_pairs = np.column_stack([series_of[pairs[moved_pairs, 0]], series_of[pairs[moved_pairs, 1]],
                                     pairs[moved_pairs, 2]]) if len(pairs) else pairs
        ends = np.where(latches >= 0, bit_of[np.maximum(latches, 0)], -1)
        shifted = np.flatnonzero((ends != latches).any(axis=1))
        latch_of[shifted] = sizes[3] + np.arange(len(shifted))
        for k, part in enumerate((np.array(day_bits, dtype=np.uint8).reshape(-1, bits.shape[1]),
                                  own[is_moved], day_pairs, ends[shifted])):
            added[k].append(part)
            sizes[k] += len(part)
        mine = first_day == day
        for k, of in enumerate((bit_of, pair_of, latch_of)):
            for column in np.flatnonzero(kinds == k).tolist():
                old = rows[mine, column]
                rows[mine, column] = np.where(old >= 0, of[np.maximum(old, 0)], old)
    return tuple(np.concatenate(part) for part in added)  # type: ignore[return-value]


class Rows:
    """The distinct rows the kernel reads: condition truths (bit rows: a graph node, or a series
    compared with a threshold after the backend call) and comparisons of two series (series rows
    and pairs), each with the first day it can be decided."""

    def __init__(self) -> None:
        self.bits: dict[Node, int] = {}  # bit rows of graph truths
        self.nulls: dict[Node, int] = {}  # bit rows of where graph truths are Null
        self.latches: dict[tuple[int, int], int] = {}  # (entry bit row, exit bit row; -1: none) -> latch row
        self.latch_firsts: list[int] = []
        self.bit_firsts: list[int] = []  # of every bit row, truths' and thresholds'
        self.series_nodes: dict[Node, int] = {}
        self.pairs: dict[tuple[int, int, int], int] = {}
        self.pair_firsts: list[int] = []
        self._compared: list[tuple[np.ndarray, ...]] = []  # (rows, series rows, ops, limits)
        # (first row, score rows, children, top, bottom)
        self.picks: list[tuple[int, np.ndarray, list[Step], bool, int]] = []

    def pick(self, scores: list[Node], children: list[Step], top: bool, bottom: int, first: int) -> int:
        """New bit rows, one per child of a function node (``children``: their steps): whether
        it is among the ``bottom`` best ``scores`` of the children active that day (computed
        after the backend call); returns the first row."""
        sides = np.array([self.series_nodes.setdefault(s, len(self.series_nodes)) for s in scores], dtype=np.int64)
        row = len(self.bit_firsts)
        self.bit_firsts.extend([first] * len(scores))
        self.picks.append((row, sides, children, top, bottom))
        return row

    def bit(self, truth: Node, first: int) -> int:
        row = self.bits.get(truth)
        if row is None:
            row = self.bits[truth] = len(self.bit_firsts)
            self.bit_firsts.append(first)
        return row

    def latch(self, entry: np.ndarray, leave: np.ndarray) -> np.ndarray:
        """Each variant's latch row: its (entry, exit) pair of bit rows (-1: an empty list),
        first decided when both lists are."""
        span = len(self.bit_firsts) + 1  # rows -1 .. R - 1, shifted by one
        pairs, inverse = distinct_rows(np.stack([entry, leave], axis=1).astype(np.int64) + 1, [span, span])
        found = []
        for e, x in (pairs - 1).tolist():
            row = self.latches.get((e, x))
            if row is None:
                row = self.latches[(e, x)] = len(self.latch_firsts)
                self.latch_firsts.append(max(self.bit_firsts[e] if e >= 0 else 0, self.bit_firsts[x] if x >= 0 else 0))
            found.append(row)
        return np.array(found, dtype=np.int32)[inverse]

    def null(self, truth: Node) -> int:
        """The bit row of where a truth that has a bit row is Null (from the same first day)."""
        row = self.nulls.get(truth)
        if row is None:
            row = self.nulls[truth] = len(self.bit_firsts)
            self.bit_firsts.append(self.bit_firsts[self.bits[truth]])
        return row

    def thresholds(self, series: list[Node], shape: np.ndarray, ops: np.ndarray, limits: np.ndarray,
                   firsts: np.ndarray) -> np.ndarray:
        """New bit rows, one per u: ``series[shape[u]]`` > limits[u] where ops[shape[u]] is 0, <
        where 1 (``firsts``: each series' first day). A threshold grid over one window is one
        series, not one graph comparison per threshold; added a node at a time as arrays (two
        nodes with an equal setting keep two equal rows)."""
        sides = np.array([self.series_nodes.setdefault(s, len(self.series_nodes)) for s in series], dtype=np.int64)
        rows = np.arange(len(self.bit_firsts), len(self.bit_firsts) + len(shape), dtype=np.int64)
        self.bit_firsts.extend(firsts[shape].tolist())
        self._compared.append((rows, sides[shape], np.asarray(ops, dtype=np.int64)[shape], limits))
        return rows

    def compared(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(bit rows, series rows, ops, limits) of every threshold row."""
        if not self._compared:
            none = np.zeros(0, dtype=np.int64)
            return none, none, none, np.zeros(0)
        rows, sides, ops, limits = (np.concatenate(part) for part in zip(*self._compared))
        return rows, sides, ops, limits

    def pair(self, left: Node, right: Node, op: int, first: int) -> int:
        a = self.series_nodes.setdefault(left, len(self.series_nodes))
        b = self.series_nodes.setdefault(right, len(self.series_nodes))
        row = self.pairs.setdefault((a, b, op), len(self.pairs))
        if row == len(self.pair_firsts):
            self.pair_firsts.append(first)
        return row


def function_rows(spec: SweepSpec, compiler: Compiler, functions: list[int], inside: dict[int, list[int]],
                  indices: np.ndarray, ranks: list[Rank], first_bit: dict[int, int],
                  path_of: dict[int, tuple[Any, ...]], table: Rows, rows: np.ndarray,
                  compile_variant: Any) -> tuple[dict[int, int], list[Step]]:
    """Each function node's columns of ``rows`` (from ``first_bit``, one per child): a bit row per
    child and setting, picked that day or not. A setting is the node's swept fields
    (``functions``: parameter positions) with those inside each sub-tree child it ranks
    (``inside``: by the child's step id), whose equity, and so score, differs by setting: such a
    child is compiled from a variant with its setting (``compile_variant``). Returns the
    largest count each node takes (it never picks more children than that) and the sub-trees
    compiled per setting (their signals are evaluated apart)."""
    request = compiler.strategy.request
    by_node: dict[tuple[Any, ...], list[int]] = {}
    for j in functions:
        by_node.setdefault(spec.parameters[j].path[:-1], []).append(j)
    for node_path, members in by_node.items():
        step = compiler._steps.get(id(node_at(request, node_path)))
        if step is not None and id(step) not in first_bit:
            raise NotFused(f"{spec.parameters[members[0]].name} is a field of a function node without children")
    most: dict[int, int] = {}
    subtrees: list[Step] = []
    for r in ranks:
        node_path = path_of[id(r)]
        subs = [inside.get(id(c), []) for c in r.children]
        mine = by_node.get(node_path, [])
        members = [*mine, *(j for sub in subs for j in sub)]
        if not members:
            node = node_at(request, node_path)
            row = _picks(compiler, node, r, list(r.children), node.slot("next"), table)
            most[id(r)] = node.bottom
            for c in range(len(r.children)):
                rows[:, first_bit[id(r)] + c] = row + c
            continue
        settings, inverse, example = settings_of(spec, indices, members)
        # the node's own settings, each parsed once, and a sub-tree child's, each compiled once
        own, *inner = [distinct_rows(indices[:, sub], [len(spec.parameters[j].values) for j in sub])[1]
                       if sub else None for sub in (mine, *subs)]
        nodes: dict[int, FlowNode] = {}
        compiled: dict[tuple[int, int], tuple[Step, FlowNode]] = {}
        firsts = np.empty(len(settings), dtype=np.int64)
        for u, i in enumerate(example.tolist()):
            setting = 0 if own is None else int(own[i])
            node = nodes.get(setting)
            if node is None:  # variant i has the setting
                node = nodes[setting] = node_at(spec.strategy(i).request, node_path)
            children, child_nodes = list(r.children), list(node.slot("next"))
            for c, setting_of in enumerate(inner):
                if setting_of is not None:
                    key = (c, int(setting_of[i]))
                    if key not in compiled:  # variant i has the setting
                        found = compile_variant(spec.strategy(i))
                        found.program()
                        child = node_at(found.strategy.request, node_path).slot("next")[c]
                        compiled[key] = (found._steps[id(child)], child)
                        subtrees.append(compiled[key][0])
                    children[c], child_nodes[c] = compiled[key]
            firsts[u] = _picks(compiler, node, r, children, child_nodes, table)
        most[id(r)] = max(node.bottom for node in nodes.values())
        for c in range(len(r.children)):
            rows[:, first_bit[id(r)] + c] = firsts[inverse] + c
    return most, subtrees


def read_rows(spec: SweepSpec, indices: np.ndarray, holder: tuple[Any, ...], members: list[int],
              compile_variant: Any, table: Rows, read: dict[str, Step]) -> np.ndarray:
    """Each variant's bit row of a condition list (at ``holder``) that reads the equity of a
    sub-tree with swept fields inside: one per setting of ``members`` (its own swept fields and
    those inside the sub-trees it reads), its truth compiled from a variant with that setting
    (``compile_variant``: compiles sharing the base's builder and branch counter, so each
    setting's sub-tree is its own branch leaf); the branch keys the truths read go into
    ``read``."""
    settings, inverse, example = settings_of(spec, indices, members)
    found = np.empty(len(settings), dtype=np.int32)
    for u, i in enumerate(example.tolist()):
        variant = compile_variant(spec.strategy(i))
        variant.program()
        truth, first = variant.lines(*condition_list(variant.strategy.request, holder))
        read.update((key, variant.branches[key]) for key in _branch_reads([truth])[truth])
        found[u] = table.bit(truth, first)
    return found[inverse]


def _picks(compiler: Compiler, node: FlowNode, step: Rank, children: list[Step], child_nodes: Sequence[FlowNode],
           table: Rows) -> int:
    """The bit rows of a function node's setting (``node``: the parsed node with it; ``step``:
    its step; ``children`` and ``child_nodes``: its children's steps and nodes, a sub-tree's or
    a position's of that setting), its children scored as `Compiler._function` scores them (a
    position of one ticker by that ticker's series, anything else by its branch series)."""
    window = DEFAULT_FUNCTION_WINDOW if node.window is None else node.window
    scored = [compiler.score(node, window, child, c) for child, c in zip(child_nodes, children)]
    # the combine's first day, as `Compiler.slot` makes it from these children
    combined = step.combine.warmup
    if children != list(step.children):
        combined = max(c.warmup for c in children) + (step.combine.vol_window if varies(step.combine) else 0)
    first = max([combined, *(f for _, f in scored)])
    return table.pick([s for s, _ in scored], children, node.rank == "Top", max(0, min(node.bottom, len(children))),
                      first)


def picked(picks: list[tuple[int, np.ndarray, list[Step], bool, int]], series: np.ndarray,
           allocator: Allocator | None) -> Iterator[tuple[int, np.ndarray]]:
    """(first row, children × days bits) of each pick of `Rows.picks`: the children a function
    node picks, as the Allocator (``allocator``: whose children are active; None: all are).
    Picks differing only in their count share one ranking, at the largest count (a node's
    bottom swept over 1..4 ranks its children once, not four times)."""
    shared: dict[tuple[bytes, tuple[int, ...], bool], list[tuple[int, np.ndarray, list[Step], int]]] = {}
    for r, scored, children, top, bottom in picks:
        shared.setdefault((scored.tobytes(), tuple(map(id, children)), top), []).append((r, scored, children, bottom))
    for (_, _, top), members in shared.items():
        _, scored, children, _ = members[0]
        scores = np.ascontiguousarray(series[scored].T)
        active = np.ones(scores.shape, dtype=np.bool_) if allocator is None else np.stack(
            [allocator.active(c) for c in children], axis=1)
        places = best_places(scores, active, top, max(bottom for *_, bottom in members))
        for r, _, _, bottom in members:
            yield r, places < bottom


def finite_from(series: np.ndarray, rows: Sequence[int] | np.ndarray, firsts: Sequence[int]) -> bool:
    """Whether each series row is finite from its comparison's first day on. A backend returns
    ±inf as missing while a comparison inside the graph sees the infinity; with finite values on
    every day a decision can read, a comparison outside the graph is the graph's."""
    rows = np.asarray(rows, dtype=np.int64)
    if not rows.size:
        return True
    finite = np.isfinite(series)
    # first day from which each row stays finite (T when its last day is not)
    tail = np.where(finite[:, ::-1].all(axis=1), 0, np.argmin(finite[:, ::-1], axis=1))
    since = series.shape[1] - tail
    return bool(np.all(since[rows] <= np.asarray(firsts, dtype=np.int64)))


def condition_rows(
    spec: SweepSpec,
    compiler: Compiler,
    strategy: Strategy,
    holder: tuple[Any, ...],
    members: list[int],
    indices: np.ndarray,
    table: Rows,
    pairs: bool,
) -> tuple[int, np.ndarray] | None:
    """(kind, each variant's row) for one swept condition list (an if/else node's, or a numbered
    node's item's, an altExit node's entry or exit list: ``holder``, its wire path): its distinct settings (of the swept fields
    ``members``) compiled once each. A node whose one condition line compares with
    > or < on every day (no forDays, no cross) keeps the series: two series become a pair of
    series rows (a grid of windows on both sides costs one series per window, not one condition
    per pair), a series and a threshold become a bit row computed from the series (a threshold
    grid costs one series, not one graph comparison per threshold). None when a setting has no
    condition."""
    sizes = [len(spec.parameters[j].values) for j in members]
    settings, inverse = distinct_rows(indices[:, members], sizes)
    node, base_lines, group = condition_list(strategy.request, holder)
    raw = dict_at(spec.base, holder)
    fields = [field_values(spec.parameters[j], raw[spec.parameters[j].path[-2]]) for j in members]
    where = json_path(*owner_of(holder))
    # A line's threshold is read by no tree rule and only compared with the line's series, so
    # settings that differ in thresholds alone share one shape: one copy of the lines and one
    # compile (a 16 × 16 window × threshold grid is 16 shapes, not 256).
    others = [m for m, (_, name, _) in enumerate(fields) if name != "threshold"]
    threshold_of = {line: (values, m) for m, (line, name, values) in enumerate(fields) if name == "threshold"}
    if others:
        shape_settings, shape_of = distinct_rows(settings[:, others], [sizes[m] for m in others])
    else:
        shape_settings, shape_of = np.zeros((1, 0), dtype=np.int64), np.zeros(len(settings), dtype=np.int64)
    shapes = []
    for setting in shape_settings.tolist():
        lines = list(base_lines)
        updates: dict[int, dict[str, Any]] = {}
        for m, v in zip(others, setting):
            line, name, values = fields[m]
            updates.setdefault(line, {})[name] = values[v]
        for line, update in updates.items():
            lines[line] = lines[line].model_copy(update=update)
        shapes.append(tuple(lines))
    simple = pairs and all(
        len(lines) == 1 and lines[0].metric != DATE_METRIC and lines[0].comparator in ("gt", "lt")
        and lines[0].for_days == 1 for lines in shapes
    )
    as_pairs = simple and all(lines[0].expanded for lines in shapes)
    as_thresholds = simple and not any(lines[0].expanded for lines in shapes)
    compiled: list[tuple[Node, int] | tuple[Node, Node, int]] = []
    for b, lines in enumerate(shapes):
        # Each value passed the rules alone when the spec was made; only a custom formula's
        # lookback depends on two fields (formula and window) together.
        if strategy.formulas:
            try:
                check_conditions(with_lines(node, holder, lines), where, strategy.formulas, {}, spec.limits)
            except GpubtError:
                spec.strategy(int(np.argmax(shape_of[inverse] == b)))  # raises, naming a variant
                raise
        if as_pairs:
            left, f1 = compiler.series(lines[0].metric, lines[0].ticker, lines[0].window, node)
            right, f2 = compiler.series(*lines[0].right, node)
            compiled.append((left, right, max(f1, f2)))
        elif as_thresholds:
            compiled.append(compiler.series(lines[0].metric, lines[0].ticker, lines[0].window, node))
    if as_thresholds:  # every setting at once: its shape's series and comparator, its threshold
        ops = np.array([0 if lines[0].comparator == "gt" else 1 for lines in shapes])
        if 0 in threshold_of:
            values, m = threshold_of[0]
            limits = np.asarray(values, dtype=np.float64)[settings[:, m]]
        else:
            limits = np.array([lines[0].threshold for lines in shapes], dtype=np.float64)[shape_of]
        found = table.thresholds([s for s, _ in compiled], shape_of, ops, limits,  # type: ignore[misc]
                                 np.array([f for _, f in compiled], dtype=np.int64))
        return 0, found.astype(np.int32)[inverse]
    if as_pairs:  # a comparison of two series reads no threshold: one pair row per shape
        shape_rows = np.array([table.pair(left, right, 0 if lines[0].comparator == "gt" else 1, first)
                               for (left, right, first), lines in zip(compiled, shapes)],  # type: ignore[misc]
                              dtype=np.int32)
        return 1, shape_rows[shape_of][inverse]
    setting_rows = np.empty(len(settings), dtype=np.int32)
    for u, (b, setting) in enumerate(zip(shape_of.tolist(), settings.tolist())):
        thresholds = {k: values[setting[m]] for k, (values, m) in threshold_of.items()}
        lines = tuple(line.model_copy(update={"threshold": thresholds[k]}) if k in thresholds else line
                      for k, line in enumerate(shapes[b]))
        truth, first = compiler.lines(node, lines, group)
        if truth is None:
            return None
        setting_rows[u] = table.bit(truth, first)
    return 0, setting_rows[inverse]
