"""The fused kernel: every variant's days and metrics from the template's rows and tables, in
one Numba source the CPU runs in parallel and `gpubt.sweep.device` compiles for CUDA."""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np

from gpubt.metrics.core import N_KEYS, row_metrics
from gpubt.parallel import parallel_kernel


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
