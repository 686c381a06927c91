"""The fused path of a sweep whose variants differ in conditions, counts, holdings and weights,
not in the shape of the tree.

When the tree is made of positions, if/else, numbered, altExit and scaling nodes, function nodes
and groups (a sub-tree whose equity the tree reads, by a function node ranking it or a branch:
ticker, has its series computed once, the same for every variant, or, with swept fields
inside, once per setting of those: the node's picks are then made per function setting ×
sub-tree setting, the condition's bits per setting of its own fields and the sub-tree's; where inverse or pro weights read the volatility of children with
conditions, the signals swept inside them are part of the allocation setting, and so is the
variant's first day where an altExit node is inside), a variant's
allocation on a day is fixed by its K
branch bits that day (an if/else node's truth, a ranked child picked or not, a numbered node's
item True, and Null where a quantifier counts Nulls, an altExit node's state, which the kernel
scans from the entry and exit bits from the variant's first day), by its allocation setting
(its values of swept positions, weights, weightings, numbered counts and scaling fields) and,
where a scaling node or volatility weights move weights from day to day, by the day.
Every swept parameter must be one of those, a condition line's field, a function node's
window/metric/bottom/rank, or a request field (costs, mode, dates, benchmark). Then the work is:

1. each swept condition list's distinct settings are compiled once (a 16 × 16 × 16 × 16 grid
   over two nodes is 2 × 256 condition lists, not 65,536 trees) and all of them evaluated in ONE
   backend call, kept as one bit per (setting, day); a node whose one line compares two series
   with > or < keeps the series instead (a 100 × 100 crossover grid is 200 series, compared in
   the kernel, not 10,000 conditions), and one whose line compares a series with a threshold
   gets its bits from the series (16 windows × 16 thresholds are 16 series);
2. the allocation of each branch pattern variants can form is built once per allocation setting
   by the ordinary `Allocator` (on a market of one pseudo-day per pattern), so weights
   follow exactly the rules of a single backtest, and turned into tables: the pattern's return
   on every day, the turnover between two patterns, its number of positions (where weights move
   by day: the Allocator on the market itself with the bits held, the children of volatility
   weights keeping their real series, and the pattern's weights, turnover and positions by
   day); a setting's patterns holding the same weights share one row of returns and its
   turnovers are between its distinct allocations (momentum_rotation.json's 1,304 patterns
   hold 166: while its trend is down, what its top node would pick changes nothing);
3. one parallel Numba kernel walks every variant's days: the pattern from its K bits, the net
   return from its setting's tables, then `row_metrics` on those returns while they are in cache.

Memory is flat in the number of variants (bits per setting, not per variant); rows reading
the equity of a sub-tree with an altExit node inside are made per first decision day
(`_timed_rows`). Anything else (swept fields inside a sub-tree both ranked and read by a
branch: ticker, or inside one compiled per setting that itself reads branch series, more than
`MAX_BITS` bits
or `MAX_PATTERNS` patterns, variants whose tickers trade on different calendars) takes the
general path of `gpubt.sweep.run`.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numba
import numpy as np

from gpubt.alloc.allocate import Allocator, _best
from gpubt.backends.base import NULL, TRUE, Backend
from gpubt.compiler.compile import DEFAULT_FUNCTION_WINDOW, Compiler
from gpubt.compiler.execute import _branch_reads, evaluate_signals
from gpubt.compiler.plan import Blend, Choose, Combine, Count, Hold, Latch, Rank, Step, walk_steps
from gpubt.data.market import Market
from gpubt.errors import GpubtError, json_path
from gpubt.ir.nodes import Builder, Node
from gpubt.metrics.core import N_KEYS, centre, row_metrics
from gpubt.parallel import parallel_kernel
from gpubt.schema.catalogue import DATE_METRIC
from gpubt.schema.models import BacktestRequest, Condition, FlowNode
from gpubt.schema.parse import Strategy, check_conditions
from gpubt.schema.response import MIN_WEIGHT
from gpubt.sim.period import LAG, backtest_window
from gpubt.sim.simulate import period_returns
from gpubt.sweep.spec import Parameter, SweepSpec, dict_at

# At most MAX_BITS branch bits (the map from a day's bits to a pattern's row has 2^K entries) and
# MAX_PATTERNS patterns variants can form (a function node forms only picks of at most its count,
# a numbered item is never both True and Null); a tree with more takes the general path.
MAX_BITS = 20
MAX_PATTERNS = 4096
VOLATILITY_WEIGHTINGS = ("inverse", "pro")  # weights from the children's trailing volatility
FUNCTION_FIELDS = ("window", "metric", "bottom", "rank")  # of a function node, on the fused path
# request fields that only choose a variant's backtest window (its days, periods and benchmark)
WINDOW_FIELDS = (("startDate",), ("endDate",), ("mode",), ("benchmark",))
# node fields that change only what a pattern holds (a node's window is its weight, or cap, in a
# defined or capped group; a function node's is its score's lookback), a setting's plan each
ALLOCATION_FIELDS = ("positions", "weighting", "weightingThen", "weightingElse", "volWindow", "volWindowThen",
                     "volWindowElse", "cappedFallback", "cappedFallbackThen", "cappedFallbackElse", "scaleMetric",
                     "scaleWindow", "scaleTicker", "scaleFrom", "scaleTo")
LEVEL_FIELDS = ("scaleMetric", "scaleWindow", "scaleTicker")  # of ALLOCATION_FIELDS: a scaling node's level series
# At most this many bytes of tables (returns per mode of each allocation setting's distinct
# allocations, and their turnovers); a sweep that needs more takes the general path.
TABLE_BYTES = 512 << 20


@dataclass(frozen=True, eq=False)
class Template:
    """Everything the fused kernel needs for any range of the sweep's variants."""

    bits: np.ndarray  # (R, T) uint8: 1 where condition setting r is True on day t
    series: np.ndarray  # (F, T) float64: the two sides of the comparisons in `pairs`
    pairs: np.ndarray  # (Q, 3) int64: (left row, right row, 0 for > or 1 for <) of `series`
    latches: np.ndarray  # (L, 2) int64: the entry and exit `bits` rows of an altExit setting (-1: never)
    kinds: np.ndarray  # (K,) int8: 0 when bit k's rows are `bits` rows, 1 `pairs` rows, 2 `latches` rows
    rows: np.ndarray  # (n_variants, K) int32: each variant's row (of `bits`, `pairs` or `latches`) for branch bit k
    # with A allocation settings (values of swept positions, weights, weightings, counts, scaling), P
    # patterns variants can form and V_a distinct allocations among setting a's patterns (patterns
    # holding the same weights share their rows), U = Σ V_a rows in all:
    table_row: np.ndarray  # (A, P) int32: the allocation v of pattern p among setting a's
    setting_at: np.ndarray  # (A, 3) int64: setting a's first row of U, its first entry in `turn`, V_a
    gross: np.ndarray  # (M·U, T) return of allocation u over the period decided on day t (M modes)
    turn: np.ndarray  # (Σ (V_a + 1)·V_a,) setting a's turnover from its allocation v (V_a: all cash) to w
    held: np.ndarray  # (U,) positions of allocation u
    # where some allocation changes from day to day (a scaling node, inverse or pro weights), the
    # allocation's weights, turnover from the day before and positions by day instead of `turn`
    # and `held`, (0, 0, 0) and (0, 0) otherwise (each pattern its own allocation):
    daily: np.ndarray  # (U, T, N) weights of allocation u decided on day t
    daily_turn: np.ndarray  # (U, T) ½ Σ |w(t) − w(t − 1)| of allocation u
    daily_held: np.ndarray  # (U, T) positions of allocation u on day t
    dense: np.ndarray  # (2^K,) int32: the row p of the patterns variants can form, by branch bits
    alloc: np.ndarray  # (n_variants,) int32: the allocation setting of each variant
    gross_at: np.ndarray  # (n_starts,) int64: the first row of `gross` for each window's mode
    start_of: np.ndarray  # (n_variants,) index into `starts`
    starts: np.ndarray  # (n_starts,) first decision day
    stops: np.ndarray  # (n_starts,) one past the last decision day
    bench: np.ndarray  # (n_starts, T) centred benchmark returns per start ((n_starts, 0): none)
    bench_squares: np.ndarray  # (n_starts,)
    cost: np.ndarray  # (n_variants,) cost per unit of turnover (costBps / 10,000)
    start_dates: tuple[str, ...]
    end_dates: tuple[str | None, ...]

    def run(self, lo: int, hi: int) -> np.ndarray:
        """(N_KEYS, hi − lo) metrics of variants lo..hi-1: one row per metric, in `KEYS` order."""
        out = np.empty((N_KEYS, hi - lo))
        _fused(self.bits, self.series, self.pairs, self.latches, self.kinds, self.rows[lo:hi], self.table_row,
               self.setting_at, self.gross, self.turn, self.held, self.daily, self.daily_turn,
               self.daily_held, self.dense, self.alloc[lo:hi], self.gross_at,
               self.start_of[lo:hi], self.starts, self.stops, self.bench, self.bench_squares, self.cost[lo:hi], out)
        return out


_JIT = {"cache": True, "nogil": True, "error_model": "numpy"}

# Where a day's branch pattern is formed. On the CPU (False): K vectorised passes over each
# condition's row into the ``pattern`` scratch before the day loop, 1.9× faster than forming it
# inside the loop (65,536 variants here). The GPU twin (`gpubt.sweep.device`) compiles this as
# True: the pattern is formed in the day loop from the bit rows (cache-resident), and the
# (days × variants) int32 scratch, 24 bytes of device-memory traffic a variant and day, is gone.
INLINE_PATTERN = False


@numba.njit(**_JIT)
def variant_metrics(s: int, bits: np.ndarray, series: np.ndarray, pairs: np.ndarray, latches: np.ndarray,
                    kinds: np.ndarray, rows: np.ndarray, table_row: np.ndarray, setting_at: np.ndarray,
                    gross: np.ndarray, turn: np.ndarray, held: np.ndarray,
                    daily: np.ndarray, daily_turn: np.ndarray, daily_held: np.ndarray, dense: np.ndarray,
                    alloc: np.ndarray, gross_at: np.ndarray, start_of: np.ndarray, starts: np.ndarray,
                    stops: np.ndarray, bench: np.ndarray, bench_squares: np.ndarray,
                    cost: np.ndarray, pattern: np.ndarray, net: np.ndarray, out: np.ndarray) -> None:
    """Every metric of variant s (a row of ``rows``, ``alloc``, ``start_of`` and ``cost``) into
    ``out`` (its column of the (N_KEYS, variants) result);
    ``pattern`` and ``net`` are its scratch, at least as long as its window (``pattern`` unread
    where INLINE_PATTERN). Written in the subset that also compiles for CUDA: the CPU kernel and
    the GPU kernel run this one source."""
    K = rows.shape[1]
    a = alloc[s]
    allocation = table_row[a]  # of each pattern, among the setting's
    first_row = setting_at[a, 0]
    turn_first = setting_at[a, 1]
    width = setting_at[a, 2]  # the setting's distinct allocations; all cash in its turnovers
    which = start_of[s]
    mode_rows = gross_at[which] + first_row
    lo = starts[which]
    n = stops[which] - lo
    if not INLINE_PATTERN:
        # The pattern of every day first (K passes over contiguous rows, vectorised: a bit row,
        # or a comparison of two series rows, which is False where a side is missing, as a
        # condition that is not True; an altExit state scanned from its entry and exit rows),
        # then its returns, without a dependency from one day to the next but the previous
        # pattern.
        for i in range(n):
            pattern[i] = 0
        for k in range(K):
            r = rows[s, k]
            if kinds[k] == 0:
                bit = bits[r, lo : lo + n]
                for i in range(n):
                    pattern[i] |= np.int32(bit[i]) << k
            elif kinds[k] == 2:  # out before the first day, in on an entry day, out on an exit day
                inside = np.int32(0)
                for i in range(n):
                    if inside == 0:
                        if latches[r, 0] >= 0:
                            inside = np.int32(bits[latches[r, 0], lo + i])
                    elif latches[r, 1] >= 0 and bits[latches[r, 1], lo + i] != 0:
                        inside = np.int32(0)
                    pattern[i] |= inside << k
            else:
                left = series[pairs[r, 0], lo : lo + n]
                right = series[pairs[r, 1], lo : lo + n]
                if pairs[r, 2] == 0:
                    for i in range(n):
                        pattern[i] |= np.int32(left[i] > right[i]) << k
                else:
                    for i in range(n):
                        pattern[i] |= np.int32(left[i] < right[i]) << k
    # Patterns hold for weeks: the pattern's row, turnover, costs and position counts are booked
    # when the day's branch bits change (a well-predicted branch). Two day loops, each without the
    # other's tests (a test per day cost the fixed tables 10–20 %): with weights fixed per pattern
    # the day loop only copies returns; with weights that move by day (`daily`) it books each
    # day's turnover and positions too.
    prev = width  # the allocation held the day before (width: all cash)
    prev_bits = np.int32(-1)
    b = np.int32(0)  # inline: the day before's bits, whose altExit bits are their states
    v = 0
    row = 0
    since = 0
    turnover = 0.0
    positions = 0.0
    if daily.shape[0] == 0:
        for i in range(n):
            b = day_bits(s, lo + i, rows, kinds, bits, series, pairs, latches, b) if INLINE_PATTERN else pattern[i]
            if b != prev_bits:  # a new pattern (distinct bits are distinct rows)
                prev_bits = b
                v = allocation[dense[b]]
                row = mode_rows + v
                traded = turn[turn_first + prev * width + v]
                net[i] = gross[row, lo + i] - traded * cost[s]
                turnover += traded
                if prev != width:
                    positions += held[first_row + prev] * (i - since)
                since = i
                prev = v
            else:
                net[i] = gross[row, lo + i]
        if prev != width:
            positions += held[first_row + prev] * (n - since)
    else:
        for i in range(n):
            b = day_bits(s, lo + i, rows, kinds, bits, series, pairs, latches, b) if INLINE_PATTERN else pattern[i]
            if b != prev_bits:  # ½ Σ |w_p(t) − w_prev(t − 1)| in column order (from cash on the first day)
                prev_bits = b
                v = allocation[dense[b]]
                row = mode_rows + v
                moved = 0.0
                for j in range(daily.shape[2]):
                    before = daily[first_row + prev, lo + i - 1, j] if prev != width else 0.0
                    moved += abs(daily[first_row + v, lo + i, j] - before)
                traded = 0.5 * moved
                prev = v
            else:
                traded = daily_turn[first_row + v, lo + i]
            net[i] = gross[row, lo + i] - traded * cost[s]
            turnover += traded
            positions += daily_held[first_row + v, lo + i]
    row_metrics(net[:n], turnover, positions, bench[which, lo : lo + n], bench_squares[which], out)


@numba.njit(**_JIT)
def day_bits(s: int, t: int, rows: np.ndarray, kinds: np.ndarray, bits: np.ndarray, series: np.ndarray,
             pairs: np.ndarray, latches: np.ndarray, before: int) -> int:
    """Variant s's branch bits on day t, formed inline (the GPU's `INLINE_PATTERN`), the same as
    `variant_metrics`' passes; ``before``: its bits the day before, whose altExit bits are their
    states (out before the first day: 0)."""
    b = np.int32(0)
    for k in range(rows.shape[1]):
        r = rows[s, k]
        if kinds[k] == 0:
            b |= np.int32(bits[r, t]) << k
        elif kinds[k] == 2:  # as the passes' scan, from the day before's state
            inside = (before >> k) & 1
            if inside == 0:
                if latches[r, 0] >= 0:
                    inside = np.int32(bits[latches[r, 0], t])
            elif latches[r, 1] >= 0 and bits[latches[r, 1], t] != 0:
                inside = np.int32(0)
            b |= inside << k
        elif pairs[r, 2] == 0:
            b |= np.int32(series[pairs[r, 0], t] > series[pairs[r, 1], t]) << k
        else:
            b |= np.int32(series[pairs[r, 0], t] < series[pairs[r, 1], t]) << k
    return b


@parallel_kernel(**_JIT)
def _fused(bits: np.ndarray, series: np.ndarray, pairs: np.ndarray, latches: np.ndarray, kinds: np.ndarray,
           rows: np.ndarray, table_row: np.ndarray, setting_at: np.ndarray, gross: np.ndarray, turn: np.ndarray,
           held: np.ndarray, daily: np.ndarray, daily_turn: np.ndarray, daily_held: np.ndarray,
           dense: np.ndarray, alloc: np.ndarray, gross_at: np.ndarray,
           start_of: np.ndarray, starts: np.ndarray, stops: np.ndarray, bench: np.ndarray, bench_squares: np.ndarray,
           cost: np.ndarray, out: np.ndarray) -> None:
    T = gross.shape[1]
    for s in numba.prange(rows.shape[0]):
        variant_metrics(s, bits, series, pairs, latches, kinds, rows, table_row, setting_at, gross, turn, held,
                        daily, daily_turn, daily_held, dense, alloc, gross_at, start_of, starts, stops, bench,
                        bench_squares, cost, np.empty(T, dtype=np.int32), np.empty(T), out[:, s])


# -- eligibility and preparation ------------------------------------------------------------------


def _node_at(request: BacktestRequest, path: Sequence[Any]) -> FlowNode:
    """The parsed node at a wire path ("payload"/"callChains", key, then "children", slot, i)."""
    if path[0] == "payload":
        node, rest = request.payload, path[1:]
    else:
        node, rest = request.call_chains[path[1]], path[2:]
    for i in range(0, len(rest), 3):
        node = node.children[rest[i + 1]][rest[i + 2]]
    return node


def _reachable(root: Step) -> list[Step]:
    seen: dict[int, Step] = {}
    stack = [root]
    while stack:
        step = stack.pop()
        if id(step) not in seen:
            seen[id(step)] = step
            stack.extend(step.substeps())
    return list(seen.values())


def _varies(step: Step) -> bool:
    """Whether a step's weights move from day to day whatever the branch bits: a scaling node,
    or inverse or pro weights over more than one child."""
    return isinstance(step, Blend) or (
        isinstance(step, Combine) and step.weighting in VOLATILITY_WEIGHTINGS and len(step.children) > 1)


def _with_truths(step: Step, truths: dict[int, Any], memo: dict[int, Step]) -> Step:
    """A copy of the plan whose if/else truths (and function nodes' scores, which then pick
    every child with a finite score, numbered nodes' items, altExit nodes' states, as if/else
    nodes) are the given stand-in nodes."""
    done = memo.get(id(step))
    if done is None:
        if isinstance(step, Choose):
            done = dataclasses.replace(
                step, truth=truths.get(id(step)), then=_with_truths(step.then, truths, memo),
                other=_with_truths(step.other, truths, memo))
        elif isinstance(step, Combine):
            done = dataclasses.replace(step, children=tuple(_with_truths(c, truths, memo) for c in step.children))
        elif isinstance(step, Rank):  # its children (sub-trees with conditions too) are its combine's
            combine = _with_truths(step.combine, truths, memo)
            done = dataclasses.replace(step, children=combine.children, combine=combine,  # type: ignore[attr-defined]
                                       scores=truths[id(step)], top=True, bottom=len(step.children))
        elif isinstance(step, Blend):
            done = dataclasses.replace(step, then=_with_truths(step.then, truths, memo),
                                       other=_with_truths(step.other, truths, memo))
        elif isinstance(step, Latch):  # its state is a branch bit
            done = Choose(truths[id(step)], _with_truths(step.then, truths, memo),  # type: ignore[arg-type]
                          _with_truths(step.other, truths, memo), warmup=step.warmup)
        elif isinstance(step, Count):
            done = dataclasses.replace(
                step, items=truths.get(id(step), step.items), then=_with_truths(step.then, truths, memo),
                other=_with_truths(step.other, truths, memo),
                ladder={rung: _with_truths(c, truths, memo) for rung, c in step.ladder.items()})
        else:
            done = step
        memo[id(step)] = done
    return done


# The branch bits of a step, in bit order: an if/else or altExit node's one, a function node's one per child,
# a numbered node's (True bit, Null bit or None) per item (None for an item without conditions).
Bits = list[Any]


def _stand_ins(steps: list[Step], layout: list[Bits], patterns: np.ndarray, days: int) -> tuple[dict[int, Any],
                                                                                          dict[Node, np.ndarray]]:
    """Stand-in signals for ``steps`` (in bit order, ``layout``) and their values: entry d of a
    value holds pattern patterns[d // days]'s truth."""
    stand_in = Builder()
    truths: dict[int, Any] = {}
    values: dict[Node, np.ndarray] = {}

    def digit(k: int, value: np.ndarray) -> Node:
        node = stand_in.const(float(k))
        values[node] = np.repeat(value, days)
        return node

    def on(k: int) -> np.ndarray:
        return (patterns >> k) & 1 == 1

    for step, bits in zip(steps, layout):
        if isinstance(step, (Choose, Latch)):
            truths[id(step)] = digit(bits[0], np.where(on(bits[0]), TRUE, 0).astype(np.int8))
        elif isinstance(step, Rank):
            truths[id(step)] = tuple(digit(k, np.where(on(k), 1.0, np.nan)) for k in bits)
        else:
            truths[id(step)] = tuple(
                None if item is None else digit(item[0], np.where(
                    on(item[0]), TRUE, np.where(on(item[1]), NULL, 0) if item[1] is not None else 0).astype(np.int8))
                for item in bits)
    return truths, values


def _pattern_weights(root: Step, steps: list[Step], layout: list[Bits], patterns: np.ndarray,
                     tickers: tuple[str, ...]) -> np.ndarray:
    """(P, N) allocation of each of ``patterns``, by the Allocator itself: on pseudo-day p an
    if/else node is True (an altExit node in) exactly when its bit of p is set; a function node
    picks a child exactly when that child's bit is set (its children are positions: what it
    holds depends on which it picks alone); a numbered node's item is True when its True bit is
    set, else Null when its Null bit is."""
    P, N = len(patterns), len(tickers)
    truths, values = _stand_ins(steps, layout, patterns, 1)
    plan = _with_truths(root, truths, {})
    ones = np.ones((P, N))
    days = np.arange(P).astype("datetime64[D]")
    market = Market(days, tickers, ones, ones, ones, ones, ones, np.ones((P, N), bool), "patterns")
    return Allocator(market, values, 0).allocation(plan)


def _pattern_weights_by_day(plan: _Plan, layout: list[Bits], patterns: np.ndarray, market: Market,
                            levels: dict[Node, np.ndarray], real: Allocator | None, out: np.ndarray) -> None:
    """The (P, T, N) allocation of each of ``patterns`` on every day of the market into ``out``,
    where weights move from day to day (scaling nodes' ``levels``, volatilities): the Allocator
    on the market with the branch bits held at the pattern's. The children of volatility
    weights that have conditions (``plan.volatile``) keep their real series (from ``real``, the
    Allocator on the base's signals): their volatility runs through every earlier day's bits."""
    for i, pattern in enumerate(patterns.tolist()):
        truths, values = _stand_ins(plan.at, layout, np.array([pattern]), market.n_days)
        held: dict[int, Step] = {}
        root = _with_truths(plan.root, truths, held)
        real_of = {id(held[id(c)]): (real, c) for c in plan.volatile}
        out[i] = Allocator(market, {**levels, **values}, 0, elsewhere=real_of).allocation(root)  # type: ignore[arg-type]


def _evaluate_apart(signals: list[Node], branches: dict[str, Step], real: Allocator, engine: Backend,
                    market: Market) -> None:
    """The signals of sub-trees compiled per setting into ``real``'s values, in stages as
    `evaluate_signals` stages a single run's: a signal reading branch series (``branches``: by
    key, every compile's) once those series' sub-trees' signals are in and their equities made.
    `NotFused` where such a sub-tree holds an altExit node (its equity would differ by first
    day)."""
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
            step = branches[key]
            if any(isinstance(s, Latch) for s in _reachable(step)):
                raise NotFused("a sub-tree compiled per setting of the fields swept inside it reads the equity of "
                               "a sub-tree with an altExit node inside (it differs by first day)")
            if all(n in real.values for n in walk_steps(step)[1]):
                equities[key] = real.branch_series(step)[0]
                built = True
        if not built:
            raise NotFused("a sub-tree compiled per setting of the fields swept inside it reads a branch series "
                           "whose signals are not evaluated before it")


def _timed_rows(table: _Rows, signals: tuple[np.ndarray, ...], equities: dict[str, np.ndarray],
                timed: dict[str, Step], on_day: Callable[[int], Allocator], engine: Backend, market: Market,
                first_day: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Rows reading the equity of a sub-tree with an altExit node inside (``timed``: by branch
    key), made again for each first decision day (``first_day``: each variant's): its state
    starts there, as a single run's, so the equity, the signals on it and the function node's
    picks among active children do too. Each day's equities come from the Allocator on the real
    signals started that day (``on_day``); the signals reading them from one backend call. The
    variants' rows (``signals``' last) are pointed at their day's rows, in place; returns the
    bits, series, pairs and latches with those rows added."""
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
        for r, scored, children, top, bottom in picks:
            active = np.stack([starting.active(c) for c in children], axis=1)
            bit_of[r : r + len(scored)] = sizes[0] + len(day_bits) + np.arange(len(scored))
            day_bits.extend(_best(np.ascontiguousarray(own[scored].T), active, top, bottom))
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


# fields whose value can change the market tickers a variant reads (a Date metric reads none;
# an expanded line also reads its right ticker)
TICKER_FIELDS = ("ticker", "rightTicker", "metric", "expanded", "positions", "scaleTicker", "cappedFallback",
                 "cappedFallbackThen", "cappedFallbackElse", "benchmark")
CALENDAR_CHECKS = 4096  # at most this many distinct settings of them are parsed to check calendars


def _check_calendars(spec: SweepSpec, market: Market, indices: np.ndarray) -> None:
    """`NotFused` unless every variant's calendar (the days any ticker it reads or its
    benchmark trades, as `prepare_market` selects them) is every day of ``market`` (the
    selection of every ticker and benchmark any variant reads), so all variants share one date
    axis. Variants that agree on every field in `TICKER_FIELDS` read the same tickers: one
    variant per distinct setting of those is parsed."""
    fields = [j for j, p in enumerate(spec.parameters) if p.path[-1] in TICKER_FIELDS]
    settings, _, example = _settings_of(spec, indices, fields)
    if len(settings) > CALENDAR_CHECKS:
        raise NotFused(f"the held tickers do not trade on every day, and {len(settings):,} settings of swept "
                       "tickers are too many to check that variants share one calendar")
    for i in example.tolist():
        strategy = spec.strategy(i)
        read = [*strategy.tickers, *([strategy.request.benchmark] if market.has(strategy.request.benchmark) else [])]
        if not market.observed[:, [market.column(t) for t in read]].any(axis=1).all():
            raise NotFused(f"variant {i} ({spec.label(i)}): its tickers and benchmark miss days on which other "
                           "variants' tickers trade (variants would have different calendars)")


def _by_first_day(plans: list[_Plan], alloc_of: np.ndarray, first_day: np.ndarray, real: Allocator | None,
                  on_day: Callable[[int], Allocator]) -> tuple[np.ndarray, list[_Plan], list[Allocator | None]]:
    """The allocation settings whose volatile children hold an altExit node split by their
    variants' first decision day (``first_day``): each variant's new setting, each setting's plan
    and the Allocator on the real signals its children's series come from (``real``, or for a
    split setting ``on_day`` of its day: altExit states started there, as a single run's)."""
    timed = np.array([any(isinstance(s, Latch) for c in plan.volatile for s in _reachable(c)) for plan in plans])
    if not timed.any():
        return alloc_of, plans, [real] * len(plans)
    day = np.where(timed[alloc_of], first_day, -1) + 1  # 0: a setting not split
    keys, of = _distinct_rows(np.stack([alloc_of, day], axis=1), [len(plans), int(day.max()) + 1])
    return of, [plans[a] for a in keys[:, 0].tolist()], [on_day(d - 1) if d else real for d in keys[:, 1].tolist()]


class NotFused(Exception):
    """A sweep the fused path does not take; the message says why (shown to the user)."""


def _swept_inside(spec: SweepSpec, compiler: Compiler, swept: list[int], inside: dict[int, Step]) -> list[int]:
    """The swept parameters (``swept``: positions) whose node's step, in ``compiler``'s
    program, is one of ``inside`` (by id)."""
    request = compiler.strategy.request
    found = []
    for j in swept:
        p = spec.parameters[j]
        owner = _owner(p.path[:-2]) if p.target == "condition" else p.path[: -2 if p.path[-2] == "numbered" else -1]
        if id(compiler._steps.get(id(_node_at(request, owner)))) in inside:
            found.append(j)
    return found


def _ranked_inside(spec: SweepSpec, base: Compiler, program: Any, ranks: list[Rank],
                   swept: list[int]) -> dict[int, list[int]]:
    """For each sub-tree a function node ranks with swept fields inside (of ``swept``:
    parameter positions), and each position it ranks with swept fields (its tickers are its
    score), by its step id: those parameters. Its equity, and so its score, then
    differs by setting and is made per setting (`_function_rows`; its allocation for a branch
    pattern is its allocation setting's plan, as anywhere; with an altExit node inside, its rows
    are made per first day too: `_timed_rows`). Left to `_check_read` (so the general path)
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
                found = _swept_inside(spec, base, swept, {id(c): c})
                if found:
                    inside[id(c)] = found
                continue
            steps = {id(s): s for s in _reachable(c)}
            found = _swept_inside(spec, base, swept, steps)
            if found:
                inside[id(c)] = found
    return inside


def _check_read(spec: SweepSpec, base: Compiler, program: Any, swept: list[int], apart: set[int]) -> None:
    """`NotFused` unless every sub-tree the tree reads (a branch: ticker, a function node
    ranking sub-trees) but those whose equity is made per setting (``apart``: step ids) is the
    same for every variant, its equity then computed once (per first decision day where an
    altExit node is inside: `_timed_rows`): where a swept field (``swept``: parameter
    positions) lies inside one."""
    inside = {id(s): s for step in program.branches.values() if id(step) not in apart for s in _reachable(step)}
    found = _swept_inside(spec, base, swept, inside)
    if found:
        raise NotFused(f"{spec.parameters[found[0]].name} is inside a sub-tree whose equity the tree reads (a "
                       "branch: ticker, or a function node ranking sub-trees)")


def _volatile(spec: SweepSpec, compiler: Compiler, steps: list[Step],
              signalled: list[int]) -> tuple[list[Step], list[int]]:
    """The children of inverse or pro weights in ``steps`` that have conditions below them, and
    the swept signals inside them (of ``signalled``: positions of the swept condition fields,
    function nodes' fields and scaling levels). Their weights read each child's trailing
    volatility, which runs through every earlier day's branch bits: the same for the variants
    of an allocation setting only when those signals are part of the setting (and, where an
    altExit node is inside, whose state starts on the backtest's first day, when they start on
    the same day: `_by_first_day`)."""
    found: dict[int, Step] = {}
    for step in steps:
        if isinstance(step, Combine) and _varies(step) and _branching(_reachable(step)):
            found.update((id(c), c) for c in step.children)
    children = list(found.values())
    inside = {id(s): s for child in children for s in _reachable(child)}
    return children, _swept_inside(spec, compiler, signalled, inside)


def _function_weights(spec: SweepSpec, functions: list[int], paths: list[tuple[Any, ...]],
                      plans: list[_Plan]) -> set[int]:
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


def _level_reads(spec: SweepSpec, compiler: Compiler, steps: list[Step], signalled: list[int]) -> list[int]:
    """The swept signals (of ``signalled``) inside the sub-trees that the scaling levels in
    ``steps`` read (a branch: ticker): the level differs by their setting, so they join the
    allocation setting, whose compile makes the level."""
    levels = [s.value for s in steps if isinstance(s, Blend)]
    keys = set().union(*_branch_reads(levels).values()) if levels else set()
    inside = {id(x): x for key in keys for x in _reachable(compiler.branches[key])}
    return _swept_inside(spec, compiler, signalled, inside)


@dataclass(frozen=True, eq=False)
class _Plan:
    """One allocation setting's plan: its root, its reachable steps, its branching steps (those
    of the nodes the base's are, in bit order) and the children of its volatility weights that
    have conditions below them."""

    root: Step
    steps: list[Step]
    at: list[Step]
    volatile: list[Step]


def _allocations(spec: SweepSpec, indices: np.ndarray, members: list[int], base: _Plan, paths: list[tuple[Any, ...]],
                 compiler: Any, signalled: list[int], scored: dict[int, list[int]]) -> tuple[np.ndarray, list[_Plan], set[int]]:
    """Each variant's allocation setting (its values of the swept positions, weights,
    weightings, numbered nodes' counts and scaling fields, and of the signals inside the
    children of volatility weights: ``members``), each setting's plan (the base's: ``base``,
    of the nodes at ``paths``) and the swept signals inside the children of the plans'
    volatility weights (``signalled``: see `_volatile`). One compile per setting, whose plan the
    Allocator then runs on the branch patterns, so every weighting and counting rule is a
    single backtest's. A position a function node ranks may change only where its scores are
    made per setting (``scored``: `_ranked_inside`, by the base's step id)."""
    if not members:
        return np.zeros(spec.n_variants, dtype=np.int64), [base], set()
    settings, alloc_of, example = _settings_of(spec, indices, members)
    plans: list[_Plan] = []
    inside: set[int] = set()
    for i in example.tolist():
        if i == 0:  # the base's own
            plans.append(base)
            continue
        strategy = spec.strategy(i)
        found = compiler(strategy)
        plan = found.program()
        reached = _reachable(plan.root)
        at = [found._steps.get(id(_node_at(strategy.request, path))) for path in paths]
        if {id(s) for s in _branching(reached)} != {id(s) for s in at}:
            raise NotFused(f"variant {i} ({spec.label(i)}) has other if/else, function, numbered or altExit nodes "
                           "than the base")
        for mine, step in zip(at, base.at):
            if isinstance(step, Rank) and any(
                    a != b and id(c) not in scored for a, b, c in zip(_ranked(mine), _ranked(step), step.children)):  # type: ignore[arg-type]
                raise NotFused(f"variant {i} ({spec.label(i)}) changes a position a function node ranks "
                               "(its scores change with it)")
        children, signals = _volatile(spec, found, reached, signalled)
        inside.update(signals, _level_reads(spec, found, reached, signalled))
        plans.append(_Plan(plan.root, reached, at, children))  # type: ignore[arg-type]
    return alloc_of, plans, inside


def _ranked(step: Rank) -> list[tuple[str, ...] | None]:
    """The tickers of a function node's position children (None for a sub-tree)."""
    return [getattr(c, "tickers", None) for c in step.children]


def _branching(steps: list[Step]) -> list[Step]:
    """The steps that read branch bits: if/else nodes with conditions, then function nodes with
    children, then numbered nodes with an item that has conditions, then altExit nodes."""
    return ([s for s in steps if isinstance(s, Choose) and s.truth is not None]
            + [s for s in steps if isinstance(s, Rank) and s.children]
            + [s for s in steps if isinstance(s, Count) and any(item is not None for item in s.items)]
            + [s for s in steps if isinstance(s, Latch)])


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
    steps = _reachable(program.root)
    branching = _branching(steps)
    chooses = [s for s in branching if isinstance(s, (Choose, Latch))]
    ranks = [s for s in branching if isinstance(s, Rank)]
    counts = [s for s in branching if isinstance(s, Count)]
    flow = _flow_paths(request)
    # each step's own node (a call node's step is its chain's: the chain root is the one)
    node_of = {id(step): flow[key][0] for key, step in base._steps.items()
               if key in flow and flow[key][0].kind != "call"}
    paths = [flow[id(node_of[id(s)])][1] for s in branching]
    # Other fields that change what a pattern holds join the allocation setting: signals swept
    # inside the children of volatility weights (each setting's children keep the real series of
    # its own signals) or inside the sub-trees scaling levels read, and function windows that are
    # also weights; found again on every setting's plan (a setting's weighting may be volatile
    # where the base's is not).
    children, joined = _volatile(spec, base, steps, signalled)
    joined = sorted({*joined, *_level_reads(spec, base, steps, signalled)})
    inside = _ranked_inside(spec, base, program, ranks, swept)
    while True:
        alloc_of, plans, found = _allocations(spec, indices, [*allocations, *joined],
                                              _Plan(program.root, steps, branching, children), paths, compiler,
                                              signalled, inside)
        found |= _function_weights(spec, functions, paths, plans)
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
            _check_calendars(spec, tmarket, indices)  # held tickers alone leave days out: every ticker read
            break

    # One row per distinct setting of each condition list (an if/else node's, a numbered node's
    # item's, an altExit node's entry and exit lists): bits, or a pair of series rows.
    groups: dict[tuple[Any, ...], list[int]] = {}
    for j in conditions:
        groups.setdefault(spec.parameters[j].path[:-2], []).append(j)
    table = _Rows()
    rows = np.empty((spec.n_variants, K), dtype=np.int32)
    kinds = np.zeros(K, dtype=np.int8)

    # sub-trees that branch: tickers read, with swept fields inside: a condition list reading one
    # gets a bit row per setting of its own fields and theirs, each compiled from a variant
    ranked = {id(c) for r in ranks for c in r.children}
    conditioned: dict[str, list[int]] = {}  # branch key -> the parameters swept inside its sub-tree
    for key, step in program.branches.items():
        below = {id(s): s for s in _reachable(step)}
        if id(step) not in ranked:
            found = _swept_inside(spec, base, swept, below)
            if found:
                conditioned[key] = found
    read_apart: dict[str, Step] = {}  # branch keys those rows read -> their steps

    def list_rows(holder: tuple[Any, ...], truths: bool) -> tuple[int, np.ndarray]:
        """(kind, each variant's row) of a condition list (-1: an empty list, never True);
        ``truths``: bit rows of graph truths only (whose Nulls are known)."""
        members = groups.pop(holder, None)
        truth, first = base.lines(*_condition_list(request, holder))
        reads = [key for key in _branch_reads([truth])[truth] if key in conditioned] if (
            conditioned and truth is not None) else []
        if reads:
            inside = [j for key in reads for j in conditioned[key]]
            return 0, _read_rows(spec, indices, holder, [*(members or []), *inside], compiler, table, read_apart)
        if members is None:  # one setting, the base's
            return 0, np.full(spec.n_variants, -1 if truth is None else table.bit(truth, first), dtype=np.int32)
        found = _setting_rows(spec, base, strategy0, holder, members, indices, table, pairs and not truths)
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
                        distinct, inverse = _unique(rows[:, k].astype(np.int64))
                        rows[:, null] = np.array([table.null(truth_of[r]) for r in distinct.tolist()],
                                                 dtype=np.int32)[inverse]
    for holder, members in groups.items():  # conditions of nodes no branch bit reads
        if id(_condition_list(request, holder)[0]) in base._steps:
            raise NotFused(f"{spec.parameters[members[0]].name} is a condition of a node that is not an if/else, "
                           "numbered or altExit node")
        # an unreachable node: its settings change nothing
    first_bit = {id(step): bits[0] for step, bits in zip(branching, layout) if isinstance(step, Rank)}
    most, subtrees = _function_rows(spec, base, functions, inside, indices, ranks, first_bit,
                                    dict(zip(map(id, branching), paths)), table, rows, compiler)

    # a scaling node's level (its branches have no conditions: a series per allocation setting;
    # one on a branch: ticker reads its setting's own sub-tree)
    levels = list(dict.fromkeys(s.value for plan in plans for s in plan.steps if isinstance(s, Blend)))
    branches = {k: v for c in compiles for k, v in c.branches.items()}  # every compile's, by key
    leveled = {key: branches[key] for key in set().union(*_branch_reads(levels).values())} if levels else {}
    if read:
        _check_read(spec, base, program, swept,
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
        _evaluate_apart(signals, branches, allocator, engine, tmarket)  # type: ignore[arg-type]
    read_apart.update(leveled)  # their equities are made like the read sub-trees'
    equities = {key: allocator.branch_series(step)[0]  # type: ignore[union-attr]
                for key, step in {**program.branches, **read_apart}.items()}
    values = engine.evaluate([*table.bits, *table.series_nodes, *levels], tmarket, equities)
    series = np.array([values[node] for node in table.series_nodes]).reshape(len(table.series_nodes), tmarket.n_days)
    pair_rows = np.array(list(table.pairs), dtype=np.int64).reshape(-1, 3)
    bit_firsts = np.asarray(table.bit_firsts, dtype=np.int64)
    at, sides, ops, limits = table.compared()
    if pairs and not (_finite_from(series, pair_rows[:, 0], table.pair_firsts)
                      and _finite_from(series, pair_rows[:, 1], table.pair_firsts)
                      and _finite_from(series, sides, bit_firsts[at])):
        return prepare(spec, market, engine, pairs=False)
    bits = np.empty((len(bit_firsts), tmarket.n_days), dtype=np.uint8)
    for truth, r in table.bits.items():
        bits[r] = values[truth] == TRUE
    for truth, r in table.nulls.items():
        bits[r] = values[truth] == NULL
    for r, scored, children, top, bottom in table.picks:  # the children a function node picks, as the Allocator
        scores = np.ascontiguousarray(series[scored].T)
        active = np.ones(scores.shape, dtype=np.bool_) if allocator is None else np.stack(
            [allocator.active(c) for c in children], axis=1)
        bits[r : r + len(scored)] = _best(scores, active, top, bottom)
    # comparisons with thresholds, as the graph's (the series is finite where read): one
    # broadcast comparison per series and comparator
    order = np.lexsort((ops, sides))
    for lo, hi in _runs(sides[order] * 2 + ops[order]):
        group = order[lo:hi]
        x, limit = series[sides[group[0]]], limits[group, None]
        bits[at[group]] = x > limit if ops[group[0]] == 0 else x < limit
    # the first day of what no branch bit decides: positions, scaling nodes' levels and volatility
    # weights (nothing inside them is swept)
    static = np.array([max((s.value_warmup if isinstance(s, Blend) else s.warmup for s in plan.steps
                            if isinstance(s, Hold) or _varies(s)), default=0) for plan in plans], dtype=np.int64)
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
    found = _backtest_windows(spec, tmarket, warmups, windows)
    first_day = np.asarray(found.starts)[found.of]
    # the Allocator on the real signals with altExit states started on a day, once per day
    on_day = functools.cache(lambda day: Allocator(tmarket, allocator.values, day))  # type: ignore[union-attr]
    latches = np.array(list(table.latches), dtype=np.int64).reshape(-1, 2)
    timed = {key: step for key, step in {**program.branches, **read_apart}.items()
             if any(isinstance(s, Latch) for s in _reachable(step))}
    if timed:  # sub-trees read with an altExit node inside: their equities differ by first day
        inner = [n for step in [*program.branches.values(), *(c for plan in plans for c in plan.volatile)]
                 for n in walk_steps(step)[1]]
        if any(reads & timed.keys() for reads in _branch_reads([*levels, *inner]).values()):
            raise NotFused("a scaling level, or a signal inside a sub-tree whose equity or volatility is read, reads "
                           "the equity of a sub-tree with an altExit node inside (it differs by first day)")
        bits, series, pair_rows, latches = _timed_rows(
            table, (bits, series, pair_rows, latches, kinds, rows), equities, timed, on_day, engine, tmarket,
            first_day)
    # an altExit node inside a child of volatility weights starts its state on the backtest's
    # first day: that child's real series, so its setting's tables, are made per first day
    alloc_of, plans, reals = _by_first_day(plans, alloc_of, first_day, allocator, on_day)
    # the patterns variants can form: a function node picks at most its largest count, an item
    # is not both True and Null
    patterns = np.arange(1 << K)
    formed = np.ones(1 << K, dtype=bool)
    for r in ranks:
        picked = (patterns >> first_bit[id(r)]) & ((1 << len(r.children)) - 1)
        formed &= np.bitwise_count(picked) <= most[id(r)]
    for bits_of in layout:
        for item in bits_of:
            if isinstance(item, tuple) and item[1] is not None:
                formed &= ((patterns >> item[0]) & (patterns >> item[1]) & 1) == 0
    if formed.sum() > MAX_PATTERNS:
        raise NotFused(f"the tree's {K} branch bits form {int(formed.sum()):,} patterns; the fused path takes at "
                       f"most {MAX_PATTERNS:,}")
    modes = next((len(spec.parameters[j].values) for j in windowed if spec.parameters[j].path == ("mode",)), 1)
    varying = any(_varies(s) for plan in plans for s in plan.steps)
    A, P, T, N = len(plans), int(formed.sum()), tmarket.n_days, len(tmarket.tickers)
    formable = np.flatnonzero(formed)
    if varying:  # each pattern's weights on every day, by the Allocator on the market itself
        _check_tables(A, P, A * P, A * P * (modes * T + T * (N + 2)))
        weights = np.empty((A, P, T, N))
        level_values = {node: values[node] for node in levels}
        for a, plan in enumerate(plans):
            _pattern_weights_by_day(plan, layout, formable, tmarket, level_values, reals[a], weights[a])
    else:  # `_tables` checks their size once patterns holding the same weights share their rows
        _check_tables(A, P, A * P, A * P * N)
        weights = np.stack([_pattern_weights(plan.root, plan.at, layout, formable, tmarket.tickers) for plan in plans])
    return _tables(spec, tmarket, weights, (bits, series, pair_rows, latches, kinds, rows), found, cost, formed,
                   alloc_of)


def _check_tables(settings: int, patterns: int, distinct: int, words: int) -> None:
    """`NotFused` where tables of ``words`` float64 values would take over `TABLE_BYTES`."""
    if words * 8 > TABLE_BYTES:
        raise NotFused(f"the tables of {settings} allocation settings × {patterns} branch patterns ({distinct:,} "
                       f"distinct allocations) would take {words * 8 / 2**20:,.1f} MiB (the fused path keeps them "
                       f"within {TABLE_BYTES / 2**20:,.0f} MiB)")


class _Rows:
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
        pairs, inverse = _distinct_rows(np.stack([entry, leave], axis=1).astype(np.int64) + 1, [span, span])
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


def _function_rows(spec: SweepSpec, compiler: Compiler, functions: list[int], inside: dict[int, list[int]],
                   indices: np.ndarray, ranks: list[Rank], first_bit: dict[int, int],
                   path_of: dict[int, tuple[Any, ...]], table: _Rows, rows: np.ndarray,
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
        step = compiler._steps.get(id(_node_at(request, node_path)))
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
            node = _node_at(request, node_path)
            row = _picks(compiler, node, r, list(r.children), node.slot("next"), table)
            most[id(r)] = node.bottom
            for c in range(len(r.children)):
                rows[:, first_bit[id(r)] + c] = row + c
            continue
        settings, inverse, example = _settings_of(spec, indices, members)
        # the node's own settings, each parsed once, and a sub-tree child's, each compiled once
        own, *inner = [_distinct_rows(indices[:, sub], [len(spec.parameters[j].values) for j in sub])[1]
                       if sub else None for sub in (mine, *subs)]
        nodes: dict[int, FlowNode] = {}
        compiled: dict[tuple[int, int], tuple[Step, FlowNode]] = {}
        firsts = np.empty(len(settings), dtype=np.int64)
        for u, i in enumerate(example.tolist()):
            setting = 0 if own is None else int(own[i])
            node = nodes.get(setting)
            if node is None:  # variant i has the setting
                node = nodes[setting] = _node_at(spec.strategy(i).request, node_path)
            children, child_nodes = list(r.children), list(node.slot("next"))
            for c, setting_of in enumerate(inner):
                if setting_of is not None:
                    key = (c, int(setting_of[i]))
                    if key not in compiled:  # variant i has the setting
                        found = compile_variant(spec.strategy(i))
                        found.program()
                        child = _node_at(found.strategy.request, node_path).slot("next")[c]
                        compiled[key] = (found._steps[id(child)], child)
                        subtrees.append(compiled[key][0])
                    children[c], child_nodes[c] = compiled[key]
            firsts[u] = _picks(compiler, node, r, children, child_nodes, table)
        most[id(r)] = max(node.bottom for node in nodes.values())
        for c in range(len(r.children)):
            rows[:, first_bit[id(r)] + c] = firsts[inverse] + c
    return most, subtrees


def _read_rows(spec: SweepSpec, indices: np.ndarray, holder: tuple[Any, ...], members: list[int],
               compile_variant: Any, table: _Rows, read: dict[str, Step]) -> np.ndarray:
    """Each variant's bit row of a condition list (at ``holder``) that reads the equity of a
    sub-tree with swept fields inside: one per setting of ``members`` (its own swept fields and
    those inside the sub-trees it reads), its truth compiled from a variant with that setting
    (``compile_variant``: compiles sharing the base's builder and branch counter, so each
    setting's sub-tree is its own branch leaf); the branch keys the truths read go into
    ``read``."""
    settings, inverse, example = _settings_of(spec, indices, members)
    found = np.empty(len(settings), dtype=np.int32)
    for u, i in enumerate(example.tolist()):
        variant = compile_variant(spec.strategy(i))
        variant.program()
        truth, first = variant.lines(*_condition_list(variant.strategy.request, holder))
        read.update((key, variant.branches[key]) for key in _branch_reads([truth])[truth])
        found[u] = table.bit(truth, first)
    return found[inverse]


def _picks(compiler: Compiler, node: FlowNode, step: Rank, children: list[Step], child_nodes: Sequence[FlowNode],
           table: _Rows) -> int:
    """The bit rows of a function node's setting (``node``: the parsed node with it; ``step``:
    its step; ``children`` and ``child_nodes``: its children's steps and nodes, a sub-tree's or
    a position's of that setting), its children scored as `Compiler._function` scores them (a
    position of one ticker by that ticker's series, anything else by its branch series)."""
    window = DEFAULT_FUNCTION_WINDOW if node.window is None else node.window
    scored = [compiler.score(node, window, child, c) for child, c in zip(child_nodes, children)]
    # the combine's first day, as `Compiler.slot` makes it from these children
    combined = step.combine.warmup
    if children != list(step.children):
        combined = max(c.warmup for c in children) + (step.combine.vol_window if _varies(step.combine) else 0)
    first = max([combined, *(f for _, f in scored)])
    return table.pick([s for s, _ in scored], children, node.rank == "Top", max(0, min(node.bottom, len(children))),
                      first)


def _finite_from(series: np.ndarray, rows: Sequence[int] | np.ndarray, firsts: Sequence[int]) -> bool:
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


def _setting_rows(
    spec: SweepSpec,
    compiler: Compiler,
    strategy: Strategy,
    holder: tuple[Any, ...],
    members: list[int],
    indices: np.ndarray,
    table: _Rows,
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
    settings, inverse = _distinct_rows(indices[:, members], sizes)
    node, base_lines, group = _condition_list(strategy.request, holder)
    raw = dict_at(spec.base, holder)
    fields = [_field_values(spec.parameters[j], raw[spec.parameters[j].path[-2]]) for j in members]
    where = json_path(*_owner(holder))
    # A line's threshold is read by no tree rule and only compared with the line's series, so
    # settings that differ in thresholds alone share one shape: one copy of the lines and one
    # compile (a 16 × 16 window × threshold grid is 16 shapes, not 256).
    others = [m for m, (_, name, _) in enumerate(fields) if name != "threshold"]
    threshold_of = {line: (values, m) for m, (line, name, values) in enumerate(fields) if name == "threshold"}
    if others:
        shape_settings, shape_of = _distinct_rows(settings[:, others], [sizes[m] for m in others])
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
                check_conditions(_with_lines(node, holder, lines), where, strategy.formulas, {}, spec.limits)
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


LATCH_LISTS = {"entryConditions": "entry_conditions", "exitConditions": "exit_conditions"}  # wire -> model


def _owner(holder: tuple[Any, ...]) -> tuple[Any, ...]:
    """The wire path of the node that holds the condition list at ``holder``."""
    return holder[:-4] if holder[-4:-2] == ("numbered", "items") else holder[:-1]


def _condition_list(request: BacktestRequest, holder: tuple[Any, ...]) -> tuple[FlowNode, tuple[Condition, ...],
                                                                                 str | None]:
    """(node, condition lines, group logic) of the condition list at its wire path ``holder``:
    an if/else node's ``conditions``, a numbered node's item's, or an altExit node's
    ``entryConditions`` or ``exitConditions``."""
    node = _node_at(request, _owner(holder))
    if holder[-4:-2] == ("numbered", "items"):
        item = node.numbered.items[holder[-2]]  # type: ignore[union-attr]
        return node, item.conditions, item.group_logic
    return node, getattr(node, LATCH_LISTS.get(holder[-1], "conditions")), None


def _with_lines(node: FlowNode, holder: tuple[Any, ...], lines: tuple[Condition, ...]) -> FlowNode:
    """A copy of the node whose condition list at ``holder`` has these lines."""
    if holder[-4:-2] != ("numbered", "items"):
        return node.model_copy(update={LATCH_LISTS.get(holder[-1], "conditions"): lines})
    numbered = node.numbered
    items = list(numbered.items)  # type: ignore[union-attr]
    items[holder[-2]] = items[holder[-2]].model_copy(update={"conditions": lines})
    return node.model_copy(update={"numbered": numbered.model_copy(update={"items": tuple(items)})})  # type: ignore[union-attr]


def _distinct_rows(indices: np.ndarray, sizes: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """np.unique(indices, axis=0, return_inverse=True) for value positions with these many
    values per column, through one integer key per row (sorting rows of a million variants
    as records is ten times slower)."""
    if math.prod(sizes) >= 2**62:
        distinct, inverse = np.unique(indices, axis=0, return_inverse=True)
        return distinct, inverse.ravel()
    keys, inverse = _unique(np.ravel_multi_index(tuple(indices.T), sizes))
    return np.stack(np.unravel_index(keys, sizes), axis=1), inverse


def _settings_of(spec: SweepSpec, indices: np.ndarray, members: list[int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(the distinct settings of the parameters ``members``, each variant's setting, the first
    variant with each setting); one setting, variant 0's, where ``members`` is empty."""
    if not members:
        return np.zeros((1, 0), dtype=np.int64), np.zeros(spec.n_variants, dtype=np.int64), np.zeros(1, dtype=np.int64)
    settings, inverse = _distinct_rows(indices[:, members], [len(spec.parameters[j].values) for j in members])
    example = np.full(len(settings), spec.n_variants)
    np.minimum.at(example, inverse, np.arange(spec.n_variants))
    return settings, inverse, example


def _runs(keys: np.ndarray) -> list[tuple[int, int]]:
    """(start, stop) of each run of equal values in sorted ``keys``."""
    edges = (np.flatnonzero(keys[1:] != keys[:-1]) + 1).tolist()
    return list(zip([0, *edges], [*edges, len(keys)])) if len(keys) else []


def _unique(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """np.unique(keys, return_inverse=True) for non-negative integers; through a table of seen
    keys when they span few values (counting a million keys instead of sorting them)."""
    span = int(keys.max()) + 1 if keys.size else 0
    if span > max(2**20, 4 * keys.size):
        distinct, inverse = np.unique(keys, return_inverse=True)
        return distinct, inverse.ravel()
    seen = np.zeros(span, dtype=bool)
    seen[keys] = True
    return np.flatnonzero(seen), (np.cumsum(seen) - 1)[keys]


def _field_values(p: Parameter, raw: dict[str, Any]) -> tuple[int, str, list[Any]]:
    """(condition line, model field, each value as the model holds it) of a swept condition
    field. Each value is validated once, on its own line of the base: a line has no rule that
    ties two of its fields, so a setting is then a copy of the line with those values."""
    line = {k: v for k, v in raw.items() if k not in p.aliases}
    name = _FIELD_NAMES[p.path[-1]]
    values = [getattr(Condition.model_validate({**line, p.path[-1]: value}), name) for value in p.values]
    return int(p.path[-2]), name, values


_FIELD_NAMES = {field.alias or name: name for name, field in Condition.model_fields.items()}


def _flow_paths(request: BacktestRequest) -> dict[int, tuple[FlowNode, tuple[Any, ...]]]:
    """Every node of the tree and the call chains, by id(), with its wire path (as `_node_at`
    reads it)."""
    found: dict[int, tuple[FlowNode, tuple[Any, ...]]] = {}
    stack: list[tuple[FlowNode, tuple[Any, ...]]] = [
        (request.payload, ("payload",)), *((n, ("callChains", k)) for k, n in request.call_chains.items())]
    while stack:
        node, path = stack.pop()
        if id(node) not in found:
            found[id(node)] = (node, path)
            stack.extend((c, (*path, "children", slot, i)) for slot, kids in node.children.items()
                         for i, c in enumerate(kids or ()) if c is not None)
    return found


_TURN_BLOCK = 1 << 17  # pairs of patterns `_turnovers` sums at once (1 MiB of differences)


def _turnovers(weights: np.ndarray) -> np.ndarray:
    """(P + 1, P) turnover from allocation a (a = P: all cash) to allocation b, 0.5 Σ|w_a − w_b|
    summed over the tickers in column order, as `simulate` sums a day's (so equal to the bit), a
    block of rows at a time: all (P + 1, P) pairs at once took 1.6 GB for 2^12 patterns of 12
    tickers."""
    P, N = weights.shape
    cash = np.vstack([weights, np.zeros((1, N))])
    turn = np.empty((P + 1, P))
    rows = max(1, _TURN_BLOCK // max(P, 1))
    for a in range(0, P + 1, rows):
        block, d = turn[a : a + rows], np.empty((min(rows, P + 1 - a), P))
        block[:] = 0.0
        for n in range(N):
            np.subtract(cash[a : a + rows, n, None], weights[None, :, n], out=d)
            block += np.abs(d, out=d)
        block *= 0.5
    return turn


def _distinct_allocations(weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(the first of each distinct row of ``weights`` (patterns × tickers), equal to the bit,
    each row's index among them)."""
    keys = np.ascontiguousarray(weights).view(np.dtype((np.void, weights.shape[1] * 8))).ravel()
    _, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
    return first, inverse.ravel().astype(np.int32)


@dataclass(frozen=True)
class _Windows:
    """The distinct backtest windows of a sweep's variants (``of``: each variant's) and, per
    window, its first decision day, its stop, mode, benchmark and dates."""

    of: np.ndarray
    starts: list[int]
    stops: list[int]
    modes: list[str]
    benchmarks: list[str | None]
    start_dates: list[str]
    end_dates: list[str | None]


def _backtest_windows(spec: SweepSpec, market: Market, warmups: np.ndarray, windows: np.ndarray) -> _Windows:
    """Each distinct window (``windows``: a key of each variant's warm-up, mode, dates and
    benchmark) as `backtest_window` makes a single run's."""
    T = market.n_days
    distinct, start_of = _unique(windows)
    first = np.full(distinct.size, windows.size)
    np.minimum.at(first, start_of, np.arange(windows.size))  # a variant of each window
    found = _Windows(start_of.ravel().astype(np.int32), [], [], [], [], [], [])
    for i in first.tolist():
        variant = spec.strategy(i)  # its own mode, dates and benchmark (the base's when none is swept)
        try:
            start, end, _ = backtest_window(variant, market.dates, int(warmups[i]))
        except GpubtError as exc:
            raise GpubtError(f"variant {i} ({spec.label(i)}): {exc.message}", exc.path, exc.status) from None
        lag = LAG[variant.request.mode]
        stop = max(start, min(end, T - 1) - lag + 1)
        found.starts.append(start)
        found.stops.append(stop)
        found.modes.append(variant.request.mode)
        found.benchmarks.append(variant.request.benchmark if market.has(variant.request.benchmark) else None)
        found.start_dates.append(str(market.dates[start]))
        found.end_dates.append(str(market.dates[stop - 1 + lag]) if stop > start else None)
    return found


def _tables(
    spec: SweepSpec,
    market: Market,
    weights: np.ndarray,
    signals: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    found: _Windows,
    cost: np.ndarray,
    formed: np.ndarray,
    alloc_of: np.ndarray,
) -> Template:
    """Per-pattern returns, turnovers and positions of the patterns variants can form
    (``formed``; ``dense`` maps a day's branch bits to their rows; ``weights``: (allocation
    settings, formed patterns, tickers), or (settings, patterns, days, tickers) where weights
    move from day to day; ``alloc_of`` each variant's setting), returns over each mode's
    periods; centred returns of each backtest window's benchmark (``found``; their mean is over
    the window's own days). A setting's patterns holding the same weights share their rows
    (`table_row`). ``signals``: bits, series, pairs, latches, kinds and rows, as `Template`
    holds them."""
    T = market.n_days
    starts, stops, modes, benchmarks = found.starts, found.stops, found.modes, found.benchmarks
    A, P, N = weights.shape[0], weights.shape[1], weights.shape[-1]
    dense = np.full(len(formed), P, dtype=np.int32)  # a pattern never formed: never read
    dense[formed] = np.arange(P, dtype=np.int32)
    if weights.ndim == 4:  # (A, P, T, N): weights that move from day to day, each pattern its own
        table_row = np.tile(np.arange(P, dtype=np.int32), (A, 1))
        setting_at = np.stack([np.arange(A) * P, np.zeros(A, dtype=np.int64), np.full(A, P)], axis=1)
        distinct = daily = weights.reshape(A * P, T, N)
        U = A * P
        daily_turn = np.zeros((U, T))
        for n in range(N):  # ½ Σ |w(t) − w(t − 1)|, summed over the tickers in column order
            daily_turn[:, 1:] += np.abs(daily[:, 1:, n] - daily[:, :-1, n])
        daily_turn *= 0.5
        daily_held = (np.abs(daily) >= MIN_WEIGHT).sum(axis=2).astype(np.float64)
        turn, held = np.zeros(0), np.zeros(0)
    else:
        daily, daily_turn, daily_held = np.zeros((0, 0, 0)), np.zeros((0, 0)), np.zeros((0, 0))
        table_row = np.empty((A, P), dtype=np.int32)
        firsts = []
        for a in range(A):
            first, table_row[a] = _distinct_allocations(weights[a])
            firsts.append(first)
        widths = np.array([len(f) for f in firsts], dtype=np.int64)
        sizes = (widths + 1) * widths
        U = int(widths.sum())
        _check_tables(A, P, U, U * len(set(modes)) * T + int(sizes.sum()))
        setting_at = np.stack([np.cumsum(widths) - widths, np.cumsum(sizes) - sizes, widths], axis=1)
        distinct = np.concatenate([w[f] for w, f in zip(weights, firsts)])
        turn = np.concatenate([_turnovers(w[f]).ravel() for w, f in zip(weights, firsts)])
        held = (np.abs(distinct) >= MIN_WEIGHT).sum(axis=1).astype(np.float64)
    # returns of every distinct allocation over each period, a block of rows per mode the
    # windows use
    distinct_modes = list(dict.fromkeys(modes))
    gross = np.zeros((len(distinct_modes) * U, T))
    for b, mode in enumerate(distinct_modes):
        _, _, R = period_returns(market.open, market.close, mode)
        returns = np.where(np.isfinite(R), R, 0.0)
        for at in range(0, U, P):  # into the table, without a temporary as large as it
            rows = slice(b * U + at, b * U + min(U, at + P))
            if weights.ndim == 4:
                gross[rows, : R.shape[0]] = np.einsum("ptn,tn->pt", distinct[at : at + P, : R.shape[0]], returns)
            else:
                np.matmul(distinct[at : at + P], returns.T, out=gross[rows, : R.shape[0]])
    gross_at = np.array([distinct_modes.index(m) * U for m in modes], dtype=np.int64)

    # a window whose benchmark has no data keeps a row of zeros with no variance: beta and
    # treynor come out missing, as without a benchmark
    bench = np.zeros((len(starts), T if any(benchmarks) else 0))
    squares = np.zeros(len(starts))
    for k, (start, stop, mode, b) in enumerate(zip(starts, stops, modes, benchmarks)):
        if b is not None:
            j = market.column(b)
            _, _, Rb = period_returns(market.open[:, j : j + 1], market.close[:, j : j + 1], mode)
            squares[k] = centre(np.ascontiguousarray(Rb[start:stop, 0]), bench[k, start:stop])
    return Template(
        *signals, table_row, setting_at, gross, turn, held, daily, daily_turn, daily_held, dense,
        alloc_of.astype(np.int32), gross_at, found.of,
        np.asarray(starts, dtype=np.int64), np.asarray(stops, dtype=np.int64), bench, squares,
        cost, tuple(found.start_dates), tuple(found.end_dates),
    )
