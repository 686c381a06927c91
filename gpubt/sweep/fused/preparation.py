"""`prepare`: a sweep spec to its fused `Template`, or `NotFused` with the reason."""

from __future__ import annotations

import functools
import itertools
from typing import Any

import numpy as np

from gpubt.alloc.allocate import Allocator
from gpubt.backends.base import NULL, TRUE, Backend
from gpubt.compiler.compile import Compiler
from gpubt.compiler.execute import _branch_reads, evaluate_signals
from gpubt.compiler.plan import Blend, Choose, Count, Hold, Latch, Rank, Step, walk_steps
from gpubt.data.market import Market
from gpubt.ir.nodes import Builder, Node
from gpubt.schema.parse import Strategy
from gpubt.sweep.fused.kernel import Template
from gpubt.sweep.fused.plans import (
    NotFused,
    Plan,
    allocation_plans,
    branching_steps,
    by_first_day,
    check_calendars,
    check_read,
    function_weights,
    level_reads,
    ranked_inside,
    reachable_steps,
    swept_inside,
    varies,
    volatile_children,
)
from gpubt.sweep.fused.rows import (
    Rows,
    condition_rows,
    evaluate_apart,
    finite_from,
    function_rows,
    on_altexit,
    picked,
    read_rows,
    timed_rows,
)
from gpubt.sweep.fused.settings import LATCH_LISTS, condition_list, equal_runs, flow_paths, unique_keys
from gpubt.sweep.fused.tables import (
    Bits,
    backtest_windows,
    build_template,
    check_tables,
    pattern_weights,
    pattern_weights_by_day,
)
from gpubt.sweep.spec import SweepSpec, dict_at


# At most MAX_BITS branch bits (the map from a day's bits to a pattern's row has 2^K entries),
# MAX_PATTERNS patterns variants can form (a function node forms only picks of at most its count,
# a numbered item is never both True and Null) and MAX_ALLOCATIONS pattern allocations for the
# Allocator to build (patterns × allocation settings, about 3 µs each here); a sweep that needs
# more takes the general path.
MAX_BITS = 20
MAX_PATTERNS = 1 << 16
MAX_ALLOCATIONS = 1 << 18
FUNCTION_FIELDS = ("window", "metric", "bottom", "rank")  # of a function node, on the fused path
# request fields that only choose a variant's backtest window (its days, periods and benchmark)
WINDOW_FIELDS = (("startDate",), ("endDate",), ("mode",), ("benchmark",))
# node fields that change only what a pattern holds (a node's window is its weight, or cap, in a
# defined or capped group; a function node's is its score's lookback), a setting's plan each
ALLOCATION_FIELDS = ("positions", "weighting", "weightingThen", "weightingElse", "volWindow", "volWindowThen",
                     "volWindowElse", "cappedFallback", "cappedFallbackThen", "cappedFallbackElse", "scaleMetric",
                     "scaleWindow", "scaleTicker", "scaleFrom", "scaleTo")
LEVEL_FIELDS = ("scaleMetric", "scaleWindow", "scaleTicker")  # of ALLOCATION_FIELDS: a scaling node's level series


def prepare(spec: SweepSpec, market: Market, engine: Backend, pairs: bool = True) -> Template:
    """The fused plan of a sweep (``pairs``: whether comparisons of two series may run inside
    the kernel); `NotFused` when its variants need the general path."""
    conditions = [j for j, p in enumerate(spec.parameters) if p.target == "condition"
                  and p.path[-3] in ("conditions", *LATCH_LISTS)]
    costs = [j for j, p in enumerate(spec.parameters) if p.path == ("costBps",)]
    windowed = [j for j, p in enumerate(spec.parameters) if p.path in WINDOW_FIELDS]
    functions = [j for j, p in enumerate(spec.parameters) if p.target == "node" and p.path[-1] in FUNCTION_FIELDS
                 and dict_at(spec.base, p.path[:-1]).get("kind") == "function"]
    if not spec.parameters:
        raise NotFused("no parameters")
    allocations = [j for j, p in enumerate(spec.parameters) if p.target == "node" and j not in functions
                   and (p.path[-1] in ALLOCATION_FIELDS or p.path[-1] == "window" or p.path[-2] == "numbered")]
    others = [p.name for j, p in enumerate(spec.parameters)
              if j not in {*conditions, *costs, *windowed, *functions, *allocations}]
    if others:
        raise NotFused(f"{others[0]} is not a field of a condition line, a function node's "
                       f"{', '.join(FUNCTION_FIELDS)}, a numbered node's n or quantifier, a scaling node's field, a "
                       "position, weight or weighting, costBps, mode, startDate, endDate or benchmark")
    indices = spec.value_indices(0, spec.n_variants)
    strategy0 = spec.strategy(0)
    request = strategy0.request
    benchmarks = [b for b in spec.benchmarks if market.has(b)]  # every one some variant names
    tmarket = market.select(list(dict.fromkeys([*spec.tickers, *benchmarks])))

    # shared by every compile below; one branch counter, so each compile's sub-trees are their
    # own branch leaves (a setting's compile may read its own sub-trees' series)
    builder, series, counter = Builder(), {}, itertools.count()
    compiles: list[Compiler] = []

    def compiler(strategy: Strategy) -> Compiler:
        compiles.append(Compiler(strategy, tmarket, builder, _series=series, branch_counter=counter))
        return compiles[-1]

    base = compiler(strategy0)
    program = base.program()
    read = set(program.branches)  # the sub-trees whose equity the base reads
    swept = [*conditions, *functions, *allocations]
    signalled = [*conditions, *functions, *(j for j in allocations if spec.parameters[j].path[-1] in LEVEL_FIELDS)]
    steps = reachable_steps(program.root)
    branching = branching_steps(steps)
    chooses = [s for s in branching if isinstance(s, (Choose, Latch))]
    ranks = [s for s in branching if isinstance(s, Rank)]
    counts = [s for s in branching if isinstance(s, Count)]
    flow = flow_paths(request)
    # each step's own node (a call node's step is its chain's: the chain root is the one)
    node_of = {id(step): flow[key][0] for key, step in base._steps.items()
               if key in flow and flow[key][0].kind != "call"}
    paths = [flow[id(node_of[id(s)])][1] for s in branching]
    # Other fields that change what a pattern holds join the allocation setting: signals swept
    # inside the children of volatility weights (each setting's children keep the real series of
    # its own signals) or inside the sub-trees scaling levels read, and function windows that are
    # also weights; found again on every setting's plan (a setting's weighting may be volatile
    # where the base's is not).
    children, joined = volatile_children(spec, base, steps, signalled)
    joined = sorted({*joined, *level_reads(spec, base, steps, signalled)})
    inside = ranked_inside(spec, base, program, ranks, swept)
    while True:
        alloc_of, plans, found = allocation_plans(spec, indices, [*allocations, *joined],
                                                  Plan(program.root, steps, branching, children), paths, compiler,
                                                  signalled, inside)
        found |= function_weights(spec, functions, paths, plans)
        if found <= set(joined):
            break
        joined += sorted(found - set(joined))
    # Branch bits: one per if/else or altExit node, one per child of a function node, one per item of a
    # numbered node, and one more per item for Null where some setting's quantifier counts Nulls
    # (all, none; the others count Trues only).
    layout: list[Bits] = []
    K = 0
    for b, step in enumerate(branching):
        if isinstance(step, Count):
            nulls = any(plan.at[b].quantifier in ("all", "none") for plan in plans)  # type: ignore[attr-defined]
            layout.append([])
            for item in step.items:
                layout[-1].append(None if item is None else (K, K + 1 if nulls else None))
                K += 0 if item is None else 1 + nulls
        else:
            width = len(step.children) if isinstance(step, Rank) else 1
            layout.append(list(range(K, K + width)))
            K += width
    if K > MAX_BITS:
        ranked, items = sum(len(r.children) for r in ranks), sum(len(c.items) for c in counts)
        raise NotFused(f"the tree has {len(chooses)} if/else and altExit nodes, {ranked} children of function nodes "
                       f"and {items} numbered items: {K} branch bits; the fused path takes at most {MAX_BITS}")
    # a variant's calendar: the days its tickers or its benchmark trade (its tickers' alone where
    # the market lacks the benchmark)
    calendars = list(dict.fromkeys(b if market.has(b) else None for b in spec.benchmarks)) or [None]
    for plan in plans:
        holds = list(dict.fromkeys(t for s in plan.steps if isinstance(s, Hold) for t in s.tickers))
        held_days = tmarket.observed[:, [tmarket.column(t) for t in holds]].any(axis=1)
        if not all((held_days if bench is None else held_days | tmarket.observed[:, tmarket.column(bench)]).all()
                   for bench in calendars):
            check_calendars(spec, tmarket, indices)  # held tickers alone leave days out: every ticker read
            break

    # One row per distinct setting of each condition list (an if/else node's, a numbered node's
    # item's, an altExit node's entry and exit lists): bits, or a pair of series rows.
    groups: dict[tuple[Any, ...], list[int]] = {}
    for j in conditions:
        groups.setdefault(spec.parameters[j].path[:-2], []).append(j)
    table = Rows()
    rows = np.empty((spec.n_variants, K), dtype=np.int32)
    kinds = np.zeros(K, dtype=np.int8)

    # sub-trees that branch: tickers read, with swept fields inside: a condition list reading one
    # gets a bit row per setting of its own fields and theirs, each compiled from a variant
    ranked = {id(c) for r in ranks for c in r.children}
    conditioned: dict[str, list[int]] = {}  # branch key -> the parameters swept inside its sub-tree
    for key, step in program.branches.items():
        below = {id(s): s for s in reachable_steps(step)}
        if id(step) not in ranked:
            found = swept_inside(spec, base, swept, below)
            if found:
                conditioned[key] = found
    read_apart: dict[str, Step] = {}  # branch keys those rows read -> their steps

    def list_rows(holder: tuple[Any, ...], truths: bool) -> tuple[int, np.ndarray]:
        """(kind, each variant's row) of a condition list (-1: an empty list, never True);
        ``truths``: bit rows of graph truths only (whose Nulls are known)."""
        members = groups.pop(holder, None)
        truth, first = base.lines(*condition_list(request, holder))
        reads = [key for key in _branch_reads([truth])[truth] if key in conditioned] if (
            conditioned and truth is not None) else []
        if reads:
            inside = [j for key in reads for j in conditioned[key]]
            return 0, read_rows(spec, indices, holder, [*(members or []), *inside], compiler, table, read_apart)
        if members is None:  # one setting, the base's
            return 0, np.full(spec.n_variants, -1 if truth is None else table.bit(truth, first), dtype=np.int32)
        found = condition_rows(spec, base, strategy0, holder, members, indices, table, pairs and not truths)
        if found is None:
            raise NotFused(f"{spec.parameters[members[0]].name}: a setting of its node has no condition")
        return found

    for step, path, bits in zip(branching, paths, layout):
        if isinstance(step, Choose):
            kinds[bits[0]], rows[:, bits[0]] = list_rows((*path, "conditions"), False)
        elif isinstance(step, Latch):  # its state is scanned in the kernel from the entry and exit rows
            entry, leave = (list_rows((*path, name), True)[1] for name in LATCH_LISTS)
            kinds[bits[0]], rows[:, bits[0]] = 2, table.latch(entry, leave)
        elif isinstance(step, Count):
            for m, bit in enumerate(bits):
                if bit is not None:
                    k, null = bit
                    kinds[k], rows[:, k] = list_rows((*path, "numbered", "items", m, "conditions"), null is not None)
                    if null is not None:
                        truth_of = {r: truth for truth, r in table.bits.items()}
                        distinct, inverse = unique_keys(rows[:, k].astype(np.int64))
                        rows[:, null] = np.array([table.null(truth_of[r]) for r in distinct.tolist()],
                                                 dtype=np.int32)[inverse]
    for holder, members in groups.items():  # conditions of nodes no branch bit reads
        if id(condition_list(request, holder)[0]) in base._steps:
            raise NotFused(f"{spec.parameters[members[0]].name} is a condition of a node that is not an if/else, "
                           "numbered or altExit node")
        # an unreachable node: its settings change nothing
    first_bit = {id(step): bits[0] for step, bits in zip(branching, layout) if isinstance(step, Rank)}
    most, subtrees = function_rows(spec, base, functions, inside, indices, ranks, first_bit,
                                   dict(zip(map(id, branching), paths)), table, rows, compiler)

    # a scaling node's level (its branches have no conditions: a series per allocation setting;
    # one on a branch: ticker reads its setting's own sub-tree)
    levels = list(dict.fromkeys(s.value for plan in plans for s in plan.steps if isinstance(s, Blend)))
    branches = {k: v for c in compiles for k, v in c.branches.items()}  # every compile's, by key
    leveled = {key: branches[key] for key in set().union(*_branch_reads(levels).values())} if levels else {}
    if read:
        check_read(spec, base, program, swept,
                   {*inside, *map(id, subtrees), *(id(program.branches[key]) for key in conditioned)})
    allocator = None  # on the base's signals, for the real series of the sub-trees read and of volatile children
    if program.branches or leveled or any(plan.volatile for plan in plans):
        allocator = Allocator(base.market, {}, 0)
        evaluate_signals(program, base.market, engine, allocator)
    # Sub-trees compiled per setting (ranked or read by a branch: ticker or a scaling level, and
    # the volatile children of the settings other than the base's): their signals, staged as a
    # single run's (those reading their own sub-trees' series once those are made).
    apart = [*subtrees, *read_apart.values(), *leveled.values(),
             *(c for plan in plans if plan.root is not program.root for c in plan.volatile)]
    signals = list(dict.fromkeys(n for step in apart for n in walk_steps(step)[1]))
    signals = [n for n in signals if n not in allocator.values]  # type: ignore[union-attr]
    if signals:
        evaluate_apart(signals, branches, allocator, engine, tmarket)  # type: ignore[arg-type]
    read_apart.update(leveled)  # their equities are made like the read sub-trees'
    equities = {key: allocator.branch_series(step)[0]  # type: ignore[union-attr]
                for key, step in {**program.branches, **read_apart}.items()}
    values = engine.evaluate([*table.bits, *table.series_nodes, *levels], tmarket, equities)
    series = np.array([values[node] for node in table.series_nodes]).reshape(len(table.series_nodes), tmarket.n_days)
    pair_rows = np.array(list(table.pairs), dtype=np.int64).reshape(-1, 3)
    bit_firsts = np.asarray(table.bit_firsts, dtype=np.int64)
    at, sides, ops, limits = table.compared()
    if pairs and not (finite_from(series, pair_rows[:, 0], table.pair_firsts)
                      and finite_from(series, pair_rows[:, 1], table.pair_firsts)
                      and finite_from(series, sides, bit_firsts[at])):
        return prepare(spec, market, engine, pairs=False)
    bits = np.empty((len(bit_firsts), tmarket.n_days), dtype=np.uint8)
    for truth, r in table.bits.items():
        bits[r] = values[truth] == TRUE
    for truth, r in table.nulls.items():
        bits[r] = values[truth] == NULL
    for r, found in picked(table.picks, series, allocator):  # the children a function node picks, as the Allocator
        bits[r : r + len(found)] = found
    # comparisons with thresholds, as the graph's (the series is finite where read): one
    # broadcast comparison per series and comparator
    order = np.lexsort((ops, sides))
    for lo, hi in equal_runs(sides[order] * 2 + ops[order]):
        group = order[lo:hi]
        x, limit = series[sides[group[0]]], limits[group, None]
        bits[at[group]] = x > limit if ops[group[0]] == 0 else x < limit
    # the first day of what no branch bit decides: positions, scaling nodes' levels and volatility
    # weights (nothing inside them is swept)
    static = np.array([max((s.value_warmup if isinstance(s, Blend) else s.warmup for s in plan.steps
                            if isinstance(s, Hold) or varies(s)), default=0) for plan in plans], dtype=np.int64)
    warmups = static[alloc_of]
    firsts_of = (bit_firsts, np.asarray(table.pair_firsts, dtype=np.int64),
                 np.asarray(table.latch_firsts, dtype=np.int64))  # by kind
    for k in range(K):
        np.maximum(warmups, firsts_of[kinds[k]][rows[:, k]], out=warmups)
    cost = np.full(spec.n_variants, request.cost_bps / 10_000.0)
    for j in costs:  # validated numbers (the spec parsed every value)
        cost = np.array([float(v) / 10_000.0 for v in spec.parameters[j].values])[indices[:, j]]
    # a variant's backtest window: its warm-up and the mode, dates and benchmark it asks for
    windows = warmups.astype(np.int64)
    for j in windowed:
        windows = windows * len(spec.parameters[j].values) + indices[:, j]
    found = backtest_windows(spec, tmarket, warmups, windows)
    first_day = np.asarray(found.starts)[found.of]
    # the Allocator on the real signals with altExit states started on a day, once per day
    on_day = functools.cache(lambda day: Allocator(tmarket, allocator.values, day))  # type: ignore[union-attr]
    latches = np.array(list(table.latches), dtype=np.int64).reshape(-1, 2)
    # sub-trees with an altExit node inside, or reading the equity of one: their equities differ
    # by first day
    timed: dict[str, Step] = {}
    again: list[Node] = []
    if branches:  # every compile's, the base's and the read sub-trees' among them
        read_keys = {*program.branches, *read_apart,
                     *set().union(*_branch_reads([*table.bits, *table.series_nodes]).values())}
        timed, again = on_altexit(branches, read_keys)
    if timed:
        inner = [n for step in (c for plan in plans for c in plan.volatile) for n in walk_steps(step)[1]]
        if any(reads & timed.keys() for reads in _branch_reads([*levels, *inner]).values()):
            raise NotFused("a scaling level, or a signal inside a child of inverse or pro weights, reads the equity "
                           "of a sub-tree with an altExit node inside (it differs by first day)")
        bits, series, pair_rows, latches = timed_rows(
            table, (bits, series, pair_rows, latches, kinds, rows), equities, timed, again, branches, on_day,
            engine, tmarket, first_day)
    # an altExit node inside a child of volatility weights starts its state on the backtest's
    # first day: that child's real series, so its setting's tables, are made per first day
    alloc_of, plans, reals = by_first_day(plans, alloc_of, first_day, allocator, on_day)
    # the patterns variants can form: a function node picks at most its largest count, an item
    # is not both True and Null
    patterns = np.arange(1 << K)
    formed = np.ones(1 << K, dtype=bool)
    for r in ranks:
        chosen = (patterns >> first_bit[id(r)]) & ((1 << len(r.children)) - 1)
        formed &= np.bitwise_count(chosen) <= most[id(r)]
    for bits_of in layout:
        for item in bits_of:
            if isinstance(item, tuple) and item[1] is not None:
                formed &= ((patterns >> item[0]) & (patterns >> item[1]) & 1) == 0
    if formed.sum() > MAX_PATTERNS:
        raise NotFused(f"the tree's {K} branch bits form {int(formed.sum()):,} patterns; the fused path takes at "
                       f"most {MAX_PATTERNS:,}")
    modes = next((len(spec.parameters[j].values) for j in windowed if spec.parameters[j].path == ("mode",)), 1)
    varying = any(varies(s) for plan in plans for s in plan.steps)
    A, P, T, N = len(plans), int(formed.sum()), tmarket.n_days, len(tmarket.tickers)
    if A * P > MAX_ALLOCATIONS:
        raise NotFused(f"{A:,} allocation settings × {P:,} branch patterns are {A * P:,} allocations to build; the "
                       f"fused path builds at most {MAX_ALLOCATIONS:,}")
    formable = np.flatnonzero(formed)
    if varying:  # each pattern's weights on every day, by the Allocator on the market itself
        check_tables(A, P, A * P * (modes * T + T * (N + 2)), A * P)
        weights = np.empty((A, P, T, N))
        level_values = {node: values[node] for node in levels}
        for a, plan in enumerate(plans):
            pattern_weights_by_day(plan, layout, formable, tmarket, level_values, reals[a], weights[a])
    else:  # `build_template` checks their size once patterns holding the same weights share their rows
        check_tables(A, P, A * P * N)
        weights = np.stack([pattern_weights(plan.root, plan.at, layout, formable, tmarket.tickers) for plan in plans])
    return build_template(spec, tmarket, weights, (bits, series, pair_rows, latches, kinds, rows), found, cost, formed,
                          alloc_of)
