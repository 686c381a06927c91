"""Each allocation setting's pattern tables (returns per mode, turnovers, positions) and the
variants' backtest windows, assembled into the `Template`."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numba
import numpy as np

from gpubt.alloc.allocate import Allocator
from gpubt.backends.base import NULL, TRUE
from gpubt.compiler.plan import Blend, Choose, Combine, Count, Latch, Rank, Step
from gpubt.data.market import Market
from gpubt.errors import GpubtError
from gpubt.ir.nodes import Builder, Node
from gpubt.metrics.core import centre
from gpubt.parallel import parallel_kernel
from gpubt.schema.response import MIN_WEIGHT
from gpubt.sim.period import LAG, backtest_window
from gpubt.sim.simulate import period_returns
from gpubt.sweep.fused.kernel import Template
from gpubt.sweep.fused.plans import NotFused, Plan
from gpubt.sweep.fused.settings import unique_keys
from gpubt.sweep.spec import SweepSpec


# At most this many bytes of tables (returns per mode of each allocation setting's distinct
# allocations, and their turnovers); a sweep that needs more takes the general path.
TABLE_BYTES = 512 << 20


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


PATTERN_BLOCK = 4096  # patterns `pattern_weights` allocates at once


def pattern_weights(root: Step, steps: list[Step], layout: list[Bits], patterns: np.ndarray,
                    tickers: tuple[str, ...]) -> np.ndarray:
    """(P, N) allocation of each of ``patterns``, by the Allocator itself: on pseudo-day p an
    if/else node is True (an altExit node in) exactly when its bit of p is set; a function node
    picks a child exactly when that child's bit is set (its children are positions: what it
    holds depends on which it picks alone); a numbered node's item is True when its True bit is
    set, else Null when its Null bit is. Made `PATTERN_BLOCK` patterns at a time: the Allocator
    keeps a (pseudo-days × tickers) matrix per step."""
    if len(patterns) > PATTERN_BLOCK:
        return np.concatenate([pattern_weights(root, steps, layout, patterns[at : at + PATTERN_BLOCK], tickers)
                               for at in range(0, len(patterns), PATTERN_BLOCK)])
    P, N = len(patterns), len(tickers)
    truths, values = _stand_ins(steps, layout, patterns, 1)
    plan = _with_truths(root, truths, {})
    ones = np.ones((P, N))
    days = np.arange(P).astype("datetime64[D]")
    market = Market(days, tickers, ones, ones, ones, ones, ones, np.ones((P, N), bool), "patterns")
    return Allocator(market, values, 0).allocation(plan)


def pattern_weights_by_day(plan: Plan, layout: list[Bits], patterns: np.ndarray, market: Market,
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


def check_tables(settings: int, patterns: int, words: int, distinct: int | None = None) -> None:
    """`NotFused` where tables of ``words`` float64 values would take over `TABLE_BYTES`
    (``distinct``: the distinct allocations among the patterns, where known)."""
    if words * 8 > TABLE_BYTES:
        among = "" if distinct is None else f" ({distinct:,} distinct allocations)"
        raise NotFused(f"the tables of {settings} allocation settings × {patterns} branch patterns{among} would take "
                       f"{words * 8 / 2**20:,.1f} MiB (the fused path keeps them within "
                       f"{TABLE_BYTES / 2**20:,.0f} MiB)")


@parallel_kernel(cache=True, nogil=True, error_model="numpy")
def _turnovers(weights: np.ndarray, turn: np.ndarray) -> None:
    """Into ``turn`` (P + 1, P): the turnover from allocation a (a = P: all cash) to allocation b
    of ``weights`` (P, tickers), 0.5 Σ|w_a − w_b| summed over the tickers in column order, as
    `simulate` sums a day's (so equal to the bit); a row a thread (NumPy's passes over the pairs,
    a ticker at a time, took 19 ms for 2^10 patterns of 12 tickers)."""
    P, N = weights.shape
    for a in numba.prange(P + 1):
        for b in range(P):
            t = 0.0
            for n in range(N):
                t += abs((weights[a, n] if a < P else 0.0) - weights[b, n])
            turn[a, b] = 0.5 * t


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


def backtest_windows(spec: SweepSpec, market: Market, warmups: np.ndarray, windows: np.ndarray) -> _Windows:
    """Each distinct window (``windows``: a key of each variant's warm-up, mode, dates and
    benchmark) as `backtest_window` makes a single run's."""
    T = market.n_days
    distinct, start_of = unique_keys(windows)
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


def build_template(
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
        check_tables(A, P, U * len(set(modes)) * T + int(sizes.sum()), U)
        setting_at = np.stack([np.cumsum(widths) - widths, np.cumsum(sizes) - sizes, widths], axis=1)
        distinct = np.concatenate([w[f] for w, f in zip(weights, firsts)])
        turn = np.empty(int(sizes.sum()))
        for at, first, width in setting_at.tolist():  # each setting's table in place
            _turnovers(distinct[at : at + width], turn[first : first + (width + 1) * width].reshape(width + 1, width))
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
