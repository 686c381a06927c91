"""Numba kernels for the primitives no columnar engine has natively (or not exactly enough).

Backend-neutral on purpose: a float64 array in (NaN = missing), a float64 array out, plain
loops, no Polars or GPU types, so the Polars backend (through `map_batches`), a Numba backend and
tests all call the same code. Each kernel follows the meaning given in `gpubt.ir.nodes.PRIMITIVES`
and, where the reference interpreter has the same computation, its arithmetic in the same order,
so the compiled indicators equal the reference's to the last bit wherever possible.

Windows: `out[t]` is missing unless the n values ending at t are all present.
Recursions: a missing input gives a missing output and leaves the state unchanged.
"""

from __future__ import annotations

import functools
import math
import types

import numba
import numpy as np

from gpubt.parallel import ParallelKernel, parallel_kernel

_JIT = {"cache": True, "nogil": True, "error_model": "numpy"}


# ------------------------------------------------------------------------------------- windows
# Each `_xxx_at(x, n, t)` computes one day of a window from x alone, without allocating, and
# `_xxx_into(x, n, out)` runs it over every day: the plain loops the CPU's fast kernels further
# down are tested against and, compiled from the same source by `gpubt.backends.twins`, the CUDA
# backend's kernels (a thread per series and day). A window is missing unless the n values
# ending on its day are all present.


@numba.njit(**_JIT)
def _complete(x: np.ndarray, n: int, t: int) -> bool:
    """Whether the n values ending on day t exist and are all present."""
    if n < 1 or t < n - 1:
        return False
    for i in range(t - n + 1, t + 1):
        if math.isnan(x[i]):
            return False
    return True


@numba.njit(**_JIT)
def _rolling_std_at(x: np.ndarray, n: int, t: int) -> float:
    """Population standard deviation of the window ending on day t, by two passes over it (mean
    first), so a constant window gives exactly 0 and a series far from 0 loses no digits (the
    one-pass sum-of-squares form loses them)."""
    if not _complete(x, n, t):
        return math.nan
    lo = t - n + 1
    first = x[lo]
    flat = True
    s = 0.0
    for i in range(lo, t + 1):
        s += x[i]
        if x[i] != first:
            flat = False
    if flat:
        return 0.0
    m = s / n
    q = 0.0
    for i in range(lo, t + 1):
        d = x[i] - m
        q += d * d
    return math.sqrt(q / n)


@numba.njit(**_JIT)
def _rolling_mad_at(x: np.ndarray, n: int, t: int) -> float:
    """Mean absolute deviation of the window ending on day t around the window's own mean."""
    if not _complete(x, n, t):
        return math.nan
    lo = t - n + 1
    s = 0.0
    for i in range(lo, t + 1):
        s += x[i]
    m = s / n
    a = 0.0
    for i in range(lo, t + 1):
        a += abs(x[i] - m)
    return a / n


@numba.njit(**_JIT)
def _rolling_extreme_age_at(x: np.ndarray, n: int, sign: float, t: int) -> float:
    """Days since the highest (sign 1) or lowest (sign −1) value of the window ending on day t,
    the latest one on ties."""
    if not _complete(x, n, t):
        return math.nan
    best = t - n + 1
    for i in range(t - n + 1, t + 1):
        if sign * x[i] >= sign * x[best]:
            best = i
    return t - best


@numba.njit(**_JIT)
def _peak_drawdown_at(x: np.ndarray, n: int, ulcer: bool, t: int) -> float:
    """Over the window ending on day t, the peak running from the window's first value (nothing
    before the window counts): the largest (peak − x)/peak, or with `ulcer` sqrt(mean(dd²)) with
    dd = 100 (x − peak)/peak. A zero peak makes it missing."""
    if not _complete(x, n, t):
        return math.nan
    peak = x[t - n + 1]
    worst = 0.0
    total = 0.0
    for i in range(t - n + 1, t + 1):
        if x[i] > peak:
            peak = x[i]
        if peak == 0.0:
            return math.nan
        if ulcer:
            dd = 100.0 * (x[i] - peak) / peak
            total += dd * dd
        else:
            dd = (peak - x[i]) / peak
            if dd > worst:
                worst = dd
    return math.sqrt(total / n) if ulcer else worst


@numba.njit(**_JIT)
def _rolling_extreme_at(x: np.ndarray, n: int, sign: float, t: int) -> float:
    """Highest (sign 1) or lowest (sign −1) value of the window ending on day t, the first
    occurrence kept on ties (so the bits of a −0.0 among 0.0s are a scan's from the window's
    start)."""
    if not _complete(x, n, t):
        return math.nan
    m = x[t - n + 1]
    for i in range(t - n + 2, t + 1):
        if sign * x[i] > sign * m:
            m = x[i]
    return m


@numba.njit(**_JIT)
def _rolling_std_into(x: np.ndarray, n: int, out: np.ndarray) -> None:
    for t in range(x.size):
        out[t] = _rolling_std_at(x, n, t)


@numba.njit(**_JIT)
def _rolling_mad_into(x: np.ndarray, n: int, out: np.ndarray) -> None:
    for t in range(x.size):
        out[t] = _rolling_mad_at(x, n, t)


@numba.njit(**_JIT)
def _rolling_argmax_age_into(x: np.ndarray, n: int, out: np.ndarray) -> None:
    for t in range(x.size):
        out[t] = _rolling_extreme_age_at(x, n, 1.0, t)


@numba.njit(**_JIT)
def _rolling_argmin_age_into(x: np.ndarray, n: int, out: np.ndarray) -> None:
    for t in range(x.size):
        out[t] = _rolling_extreme_age_at(x, n, -1.0, t)


@numba.njit(**_JIT)
def _rolling_max_drawdown_into(x: np.ndarray, n: int, out: np.ndarray) -> None:
    for t in range(x.size):
        out[t] = _peak_drawdown_at(x, n, False, t)


@numba.njit(**_JIT)
def _rolling_ulcer_into(x: np.ndarray, n: int, out: np.ndarray) -> None:
    for t in range(x.size):
        out[t] = _peak_drawdown_at(x, n, True, t)


@numba.njit(**_JIT)
def _rolling_min_into(x: np.ndarray, n: int, out: np.ndarray) -> None:
    for t in range(x.size):
        out[t] = _rolling_extreme_at(x, n, -1.0, t)


@numba.njit(**_JIT)
def _rolling_max_into(x: np.ndarray, n: int, out: np.ndarray) -> None:
    for t in range(x.size):
        out[t] = _rolling_extreme_at(x, n, 1.0, t)


# ----------------------------------------------------------------------------------- recursions


@numba.njit(**_JIT)
def _ewm_into(x: np.ndarray, alpha: float, seed: int, out: np.ndarray) -> None:
    """SMA-seeded exponential average: missing until the `seed`-th present value, which gets the
    mean of the first `seed` present values; then e += alpha (x − e)."""
    count = 0
    s = 0.0
    e = 0.0
    for t in range(x.size):
        out[t] = math.nan
        v = x[t]
        if math.isnan(v):
            continue
        if count < seed:
            count += 1
            s += v
            if count == seed:
                e = s / seed
                out[t] = e
            continue
        e = e + alpha * (v - e)
        out[t] = e


@numba.njit(**_JIT)
def ewm(x: np.ndarray, alpha: float, seed: int) -> np.ndarray:
    out = np.empty(x.size)
    _ewm_into(x, alpha, seed, out)
    return out


@numba.njit(**_JIT)
def _wilder_into(x: np.ndarray, n: int, total: bool, out: np.ndarray) -> None:
    """Wilder's smoothing in TA-Lib's arithmetic, missing until the n-th present value. As a mean:
    the mean of the first n present values there, then e = (e (n − 1) + x)/n; as a total (`total`):
    their sum, then s = s − s/n + x (TA-Lib's smoothed +DM, −DM and TR of ADX)."""
    count = 0
    s = 0.0
    e = 0.0
    for t in range(x.size):
        out[t] = math.nan
        v = x[t]
        if math.isnan(v):
            continue
        if count < n:
            count += 1
            s += v
            if count == n:
                e = s if total else s / n
                out[t] = e
            continue
        e = e - e / n + v if total else (e * (n - 1) + v) / n
        out[t] = e


@numba.njit(**_JIT)
def wilder_mean(x: np.ndarray, n: int) -> np.ndarray:
    out = np.empty(x.size)
    _wilder_into(x, n, False, out)
    return out


@numba.njit(**_JIT)
def wilder_sum(x: np.ndarray, n: int) -> np.ndarray:
    out = np.empty(x.size)
    _wilder_into(x, n, True, out)
    return out


@numba.njit(**_JIT)
def _ewm_var_into(x: np.ndarray, alpha: np.ndarray, seed_offset: int, out: np.ndarray) -> None:
    """Exponential average with a factor per day (KAMA): e = x on the day `seed_offset` days
    before alpha's first present value, then e += alpha_t (x_t − e) on the days both are present."""
    first = -1
    for t in range(x.size):
        out[t] = math.nan
        if first < 0 and not math.isnan(alpha[t]):
            first = t
    if first < 0:
        return
    start = first - seed_offset
    if start < 0 or math.isnan(x[start]):
        return
    e = x[start]
    out[start] = e
    for t in range(start + 1, x.size):
        if math.isnan(x[t]) or math.isnan(alpha[t]):
            continue
        e = e + alpha[t] * (x[t] - e)
        out[t] = e


@numba.njit(**_JIT)
def ewm_var(x: np.ndarray, alpha: np.ndarray, seed_offset: int) -> np.ndarray:
    out = np.empty(x.size)
    _ewm_var_into(x, alpha, seed_offset, out)
    return out


@numba.njit(**_JIT)
def _laguerre_rsi_into(x: np.ndarray, gamma: float, out: np.ndarray) -> None:
    """Ehlers' Laguerre RSI on a 0 … 100 scale, the four filter values 0 before the first value;
    50 when the filters show no up or down movement."""
    l0 = 0.0
    l1 = 0.0
    l2 = 0.0
    l3 = 0.0
    for t in range(x.size):
        out[t] = math.nan
        price = x[t]
        if math.isnan(price):
            continue
        n0 = (1 - gamma) * price + gamma * l0
        n1 = -gamma * n0 + l0 + gamma * l1
        n2 = -gamma * n1 + l1 + gamma * l2
        n3 = -gamma * n2 + l2 + gamma * l3
        l0 = n0
        l1 = n1
        l2 = n2
        l3 = n3
        cu = 0.0
        cd = 0.0
        if l0 >= l1:
            cu += l0 - l1
        else:
            cd += l1 - l0
        if l1 >= l2:
            cu += l1 - l2
        else:
            cd += l2 - l1
        if l2 >= l3:
            cu += l2 - l3
        else:
            cd += l3 - l2
        out[t] = 100.0 * cu / (cu + cd) if cu + cd != 0.0 else 50.0


@numba.njit(**_JIT)
def laguerre_rsi(x: np.ndarray, gamma: float) -> np.ndarray:
    out = np.empty(x.size)
    _laguerre_rsi_into(x, gamma, out)
    return out


@numba.njit(**_JIT)
def _cum_sum_into(x: np.ndarray, out: np.ndarray) -> None:
    """Running sum of the present values (missing days: missing, sum carried)."""
    s = 0.0
    for t in range(x.size):
        out[t] = math.nan
        if not math.isnan(x[t]):
            s += x[t]
            out[t] = s


@numba.njit(**_JIT)
def _shift_into(x: np.ndarray, n: int, out: np.ndarray) -> None:
    """x shifted by n days (back in time when n > 0), missing where nothing shifts in."""
    for t in range(out.size):
        s = t - n
        out[t] = x[s] if 0 <= s < x.size else math.nan


@numba.njit(**_JIT)
def shift(x: np.ndarray, n: int) -> np.ndarray:
    out = np.empty(x.size)
    _shift_into(x, n, out)
    return out


@numba.njit(**_JIT)
def cum_sum(x: np.ndarray) -> np.ndarray:
    out = np.empty(x.size)
    _cum_sum_into(x, out)
    return out


@numba.njit(**_JIT)
def _forward_fill_into(x: np.ndarray, out: np.ndarray) -> None:
    """x, else its last present value (missing before the first)."""
    last = math.nan
    for t in range(x.size):
        if not math.isnan(x[t]):
            last = x[t]
        out[t] = last


@numba.njit(**_JIT)
def forward_fill(x: np.ndarray) -> np.ndarray:
    out = np.empty(x.size)
    _forward_fill_into(x, out)
    return out


# --------------------------------------------------------------- windows with a columnar form
# Polars computes these natively; the Numba backend needs them as kernels. Sums have the
# arithmetic of Polars' weighted rolling sum and of the reference's `sum(window)`: each window
# summed afresh, oldest first, from 0.0 (a running sum drifts on a series spanning many orders
# of magnitude). The days are done in blocks, one pass per lag over a block of accumulators, which
# the compiler vectorises; each day's sum still adds its window's values one by one, oldest first,
# so the result is the plain loop's to the bit. A missing value (NaN) in a window makes its sum NaN.

_BLOCK = 512


@numba.njit(**_JIT)
def _unit_sum_at(x: np.ndarray, n: int, divisor: float, t: int) -> float:
    """The window ending on day t added oldest first from 0.0, then divided (not when the divisor
    is 1): the plain loop `_unit_sums` is blocked from, to the bit."""
    if t < n - 1 or n < 1:
        return math.nan
    s = 0.0
    for i in range(t - n + 1, t + 1):
        s += x[i]
    return s / divisor if divisor != 1.0 else s


@numba.njit(**_JIT)
def _rolling_dot_at(x: np.ndarray, weights: np.ndarray, centered: bool, t: int) -> float:
    """Σ weights[i]·(x[t−n+1+i] − m), added in the order i = 0 … n − 1 from 0.0: m = 0 for the plain
    loop `rolling_dot` is blocked from (to the bit: x − 0.0 is x); centered, m is the window's
    mean (its values added oldest first from 0.0, divided by n): the reference's OLS sum, to the
    bit. Missing while the window holds a missing value (NaN propagates)."""
    n = weights.size
    if t < n - 1 or n < 1:
        return math.nan
    m = 0.0
    if centered:
        for i in range(n):
            m += x[t - n + 1 + i]
        m = m / n
    s = 0.0
    for i in range(n):
        s += weights[i] * (x[t - n + 1 + i] - m)
    return s


@numba.njit(**_JIT)
def _unit_sums_into(x: np.ndarray, n: int, divisor: float, out: np.ndarray) -> None:
    for t in range(x.size):
        out[t] = _unit_sum_at(x, n, divisor, t)


@numba.njit(**_JIT)
def _rolling_dot_into(x: np.ndarray, weights: np.ndarray, centered: bool, out: np.ndarray) -> None:
    for t in range(x.size):
        out[t] = _rolling_dot_at(x, weights, centered, t)


@numba.njit(**_JIT)
def _add_lags(x: np.ndarray, lo: int, n: int, m: int, mean: np.ndarray, squared: bool, acc: np.ndarray) -> None:
    """acc[j] = the sum over i = 0 … n − 1 of x[lo + j + i] (of (x[lo + j + i] − mean[j])² when
    `squared`; `mean` is not read otherwise), added oldest first from 0.0, for j < m. Four lags a
    pass over the block: each accumulator is loaded and stored once per four additions, which
    keep their order (~25–30 % faster than a lag a pass; 2× for the squares)."""
    for j in range(m):
        acc[j] = 0.0
    i = 0
    while i + 4 <= n:
        x0 = x[lo + i : lo + i + m]
        x1 = x[lo + i + 1 : lo + i + 1 + m]
        x2 = x[lo + i + 2 : lo + i + 2 + m]
        x3 = x[lo + i + 3 : lo + i + 3 + m]
        if squared:
            for j in range(m):
                c = mean[j]
                d0 = x0[j] - c
                d1 = x1[j] - c
                d2 = x2[j] - c
                d3 = x3[j] - c
                acc[j] = (((acc[j] + d0 * d0) + d1 * d1) + d2 * d2) + d3 * d3
        else:
            for j in range(m):
                acc[j] = (((acc[j] + x0[j]) + x1[j]) + x2[j]) + x3[j]
        i += 4
    while i < n:
        xs = x[lo + i : lo + i + m]
        if squared:
            for j in range(m):
                d = xs[j] - mean[j]
                acc[j] += d * d
        else:
            for j in range(m):
                acc[j] += xs[j]
        i += 1


@numba.njit(**_JIT)
def _unit_sums(x: np.ndarray, n: int, divisor: float) -> np.ndarray:
    """out[t] = (x[t−n+1] + … + x[t], added oldest first from 0.0) / divisor (none when the divisor
    is 1); missing for t < n − 1."""
    size = x.size
    out = np.full(size, np.nan)
    if n < 1:
        return out
    acc = np.empty(_BLOCK)
    for t0 in range(n - 1, size, _BLOCK):
        m = min(_BLOCK, size - t0)
        _add_lags(x, t0 - n + 1, n, m, acc, False, acc)
        if divisor != 1.0:
            for j in range(m):
                out[t0 + j] = acc[j] / divisor
        else:
            for j in range(m):
                out[t0 + j] = acc[j]
    return out


@numba.njit(**_JIT)
def rolling_sum(x: np.ndarray, n: int) -> np.ndarray:
    """Sum of each window of n values (missing if one is), summed afresh oldest first."""
    return _unit_sums(x, n, 1.0)


@numba.njit(**_JIT)
def rolling_mean(x: np.ndarray, n: int) -> np.ndarray:
    """`rolling_sum(x, n) / n`, the division exact (not a multiplication by 1/n)."""
    return _unit_sums(x, n, float(n))


@numba.njit(**_JIT)
def rolling_dot(x: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Σ weights[i]·x[t−n+1+i] over each window of n = weights.size values (missing if one is),
    added in the order i = 0 … n − 1 from 0.0."""
    n = weights.size
    size = x.size
    out = np.full(size, np.nan)
    if n < 1:
        return out
    acc = np.empty(_BLOCK)
    for t0 in range(n - 1, size, _BLOCK):
        m = min(_BLOCK, size - t0)
        acc[:m] = 0.0
        for i in range(n):
            w = weights[i]
            xs = x[t0 - n + 1 + i : t0 - n + 1 + i + m]
            for j in range(m):
                acc[j] += w * xs[j]
        out[t0 : t0 + m] = acc[:m]
    return out


@numba.njit(**_JIT)
def _rolling_all_into(c: np.ndarray, n: int, out: np.ndarray) -> None:
    """Kleene AND of the last n days of a three-valued int8 series (1 true, 0 false, −1 null);
    days before the first count as null, so a False decides even before n days exist."""
    last_false = -(1 << 62)
    last_null = -(1 << 62)
    for t in range(c.size):
        v = c[t]
        if v == 0:
            last_false = t
        elif v != 1:
            last_null = t
        if t - last_false < n:
            out[t] = 0
        elif t - last_null < n or t < n - 1:
            out[t] = -1
        else:
            out[t] = 1


@numba.njit(**_JIT)
def rolling_all(c: np.ndarray, n: int) -> np.ndarray:
    out = np.empty(c.size, dtype=np.int8)
    _rolling_all_into(c, n, out)
    return out


# ------------------------------------------------------------------ O(n) per day, days blocked
# The CPU forms of the windows that revisit every value of the window each day. Each is the plain
# loop `_xxx_into` above (the meaning, and the CUDA backend's per-day kernels) with the days done in
# blocks: one pass per lag over a block of per-day accumulators, which the compiler vectorises
# across days. Every day still sees its window's values in the plain loop's order with the same
# operations, so the results are the plain loop's to the bit (tests compare them); a window the
# plain loop skips (a missing value, a zero peak) is made missing afterwards where the arithmetic
# does not already give NaN.


@numba.njit(**_JIT)
def _missing_where_incomplete(x: np.ndarray, n: int, out: np.ndarray) -> None:
    """out[t] = NaN unless the n values ending at t are all present."""
    run = 0
    for t in range(x.size):
        run = 0 if math.isnan(x[t]) else run + 1
        if run < n:
            out[t] = math.nan


@numba.njit(**_JIT)
def _block_extremes(x: np.ndarray, n: int, sign: float, latest: bool) -> tuple[np.ndarray, np.ndarray]:
    """The days cut into blocks of n (van Herk / Gil-Werman): for each day, the position of the
    highest (sign 1) or lowest (sign −1) value from its block's start to it, and from it to its
    block's end; the first or the `latest` position on ties. A window of n days is the end of
    one block and the start of the next, so its extreme is one of those two: O(1) a day with no
    rescans, whatever n and whatever the series does."""
    size = x.size
    head = np.empty(size, dtype=np.int64)
    tail = np.empty(size, dtype=np.int64)
    for b0 in range(0, size, n):
        b1 = min(b0 + n, size)
        at = b0
        head[b0] = at
        for i in range(b0 + 1, b1):
            if sign * x[i] > sign * x[at] or (latest and sign * x[i] == sign * x[at]):
                at = i
            head[i] = at
        at = b1 - 1
        tail[at] = at
        for i in range(b1 - 2, b0 - 1, -1):
            if sign * x[i] > sign * x[at] or (not latest and sign * x[i] == sign * x[at]):
                at = i
            tail[i] = at
    return head, tail


@numba.njit(**_JIT)
def _window_extreme_at(x: np.ndarray, n: int, sign: float, latest: bool) -> np.ndarray:
    """Position of each window's extreme (`_block_extremes`), −1 before the first full window;
    the windows holding a missing value are the caller's to mask."""
    size = x.size
    at = np.full(size, -1, dtype=np.int64)
    if n < 1:
        return at
    head, tail = _block_extremes(x, n, sign, latest)
    for t in range(n - 1, size):
        a = tail[t - n + 1]
        b = head[t]
        if sign * x[b] > sign * x[a] or (latest and sign * x[b] == sign * x[a]):
            a = b
        at[t] = a
    return at


@numba.njit(**_JIT)
def _rolling_extreme(x: np.ndarray, n: int, sign: float) -> np.ndarray:
    """`_rolling_min_into` / `_rolling_max_into` in O(1) a day: `_block_extremes`'s blocks
    carrying values rather than positions (no gather through the positions: ~25 % faster), the
    first occurrence on ties, so the bits of a −0.0 among 0.0s are the scan's. The values are
    carried times `sign` (exact: a negation), so a day's step is one compare and select, and a
    block's head and tail run in one loop, two independent chains (~25 % faster again)."""
    size = x.size
    out = np.full(size, np.nan)
    if n < 1:
        return out
    head = np.empty(size)
    tail = np.empty(size)
    for b0 in range(0, size, n):
        b1 = min(b0 + n, size)
        h = sign * x[b0]
        g = sign * x[b1 - 1]
        for k in range(b1 - b0):
            v = sign * x[b0 + k]
            h = v if v > h else h
            head[b0 + k] = h
            w = sign * x[b1 - 1 - k]
            g = w if w >= g else g
            tail[b1 - 1 - k] = g
    for t in range(n - 1, size):
        a = tail[t - n + 1]
        b = head[t]
        out[t] = sign * (b if b > a else a)
    _missing_where_incomplete(x, n, out)
    return out


@numba.njit(**_JIT)
def rolling_min(x: np.ndarray, n: int) -> np.ndarray:
    return _rolling_extreme(x, n, -1.0)


@numba.njit(**_JIT)
def rolling_max(x: np.ndarray, n: int) -> np.ndarray:
    return _rolling_extreme(x, n, 1.0)


@numba.njit(**_JIT)
def rolling_std(x: np.ndarray, n: int) -> np.ndarray:
    """`_rolling_std_into`: the window's sum oldest first, its mean, the squared deviations
    oldest first; exactly 0 for a window of equal values (a run of n equal days)."""
    size = x.size
    out = np.full(size, np.nan)
    if n < 1:
        return out
    s = np.empty(_BLOCK)
    q = np.empty(_BLOCK)
    for t0 in range(n - 1, size, _BLOCK):
        m = min(_BLOCK, size - t0)
        lo = t0 - n + 1
        _add_lags(x, lo, n, m, s, False, s)
        for j in range(m):
            s[j] = s[j] / n  # the window's mean
        _add_lags(x, lo, n, m, s, True, q)
        for j in range(m):
            out[t0 + j] = math.sqrt(q[j] / n)  # a missing value: NaN throughout
    run = 0  # days ending at t equal to x[t] (NaN equals nothing)
    for t in range(size):
        v = x[t]
        run = 0 if math.isnan(v) else (run + 1 if t > 0 and v == x[t - 1] else 1)
        if run >= n:
            out[t] = 0.0
    return out


@numba.njit(**_JIT)
def rolling_mad(x: np.ndarray, n: int) -> np.ndarray:
    """`_rolling_mad_into`: mean absolute deviation around the window's own mean."""
    out = _centered_sums(x, np.ones(max(n, 0)), True)
    for t in range(out.size):
        out[t] = out[t] / n
    return out


@numba.njit(**_JIT)
def _rolling_extreme_age(x: np.ndarray, n: int, sign: float) -> np.ndarray:
    """Days since the highest (sign 1) or lowest (sign −1) value of the window, the latest one on
    ties: `_rolling_argmax_age_into` / `_rolling_argmin_age_into` in O(1) a day."""
    at = _window_extreme_at(x, n, sign, True)
    out = np.full(x.size, np.nan)
    for t in range(x.size):
        if at[t] >= 0:
            out[t] = t - at[t]
    _missing_where_incomplete(x, n, out)
    return out


@numba.njit(**_JIT)
def rolling_argmax_age(x: np.ndarray, n: int) -> np.ndarray:
    return _rolling_extreme_age(x, n, 1.0)


@numba.njit(**_JIT)
def rolling_argmin_age(x: np.ndarray, n: int) -> np.ndarray:
    return _rolling_extreme_age(x, n, -1.0)


_SHORT = 40  # windows shorter than this are scanned (`_rolling_drawdowns`): on the built-in
# market's series the scan is faster up to 30–60 days, the records' bookkeeping (~80–190 µs a
# series) after


@numba.njit(**_JIT)
def _max_drawdown_by_records(x: np.ndarray, n: int) -> np.ndarray:
    """`_rolling_max_drawdown_into` without its O(n) scan of every window, with the scan's own
    divisions, so equal to it to the bit.

    Scanning a window from its first day lo, the running peak steps through the window's records:
    lo, the first later day above it, the first day above that, ... up to the window's first
    highest day r. While record k is the peak, the worst drawdown is at the lowest value v of its
    stretch, because fl(fl(p − v) / p) never falls as v falls when p > 0 (a peak below 0 gives no
    drawdown above 0). A stretch that ends inside the window ends where the next record starts
    (`above[k]`), whatever the window, so its drawdown is computed once, and it counts for exactly
    the windows whose first day lo has k as a record (no value from lo to k reaches x[k]) and
    which reach `above[k]`: a run of first days, over which it is spread. A window's answer is the
    largest spread on its first day, or the open stretch's, from r to its last day."""
    size = x.size
    out = np.full(size, np.nan)
    if n < 1 or size < n:
        return out
    # A stack of the days still waiting for a higher one, each with the lowest value from it up
    # to the next day on the stack: popping day k at day j gives above[k] = j and worst[k]; the
    # day left on top is the last one before j at least as high (a window with that day does not
    # have j as a record).
    best = np.zeros(size)  # by first day: the largest complete stretch's drawdown, from 0.0
    above = np.full(size, size, dtype=np.int64)  # the first later day with a higher value
    below = np.empty(size, dtype=np.int64)  # the last earlier day at least as high (−1: none)
    stack = np.empty(size, dtype=np.int64)
    low = np.empty(size)
    top = 0
    for j in range(size):
        v = x[j]
        m = math.inf
        while top > 0 and x[stack[top - 1]] < v:
            top -= 1
            k = stack[top]
            if low[top] < m:
                m = low[top]
            above[k] = j
            w = (x[k] - m) / x[k]
            if w > 0.0:  # NaN and drawdowns ≤ 0 never beat the scan's starting 0.0
                for lo in range(max(below[k] + 1, j - n + 1), k + 1):
                    if w > best[lo]:
                        best[lo] = w
        if top > 0 and m < low[top - 1]:
            low[top - 1] = m
        below[j] = stack[top - 1] if top > 0 else -1
        stack[top] = j
        low[top] = v
        top += 1
    # first[k]: the first day from k on with a value >= 0; the running peak is exactly 0 somewhere
    # in a window iff that day is in the window and its value is 0
    first = np.empty(size + 1, dtype=np.int64)
    first[size] = size
    for k in range(size - 1, -1, -1):
        first[k] = k if x[k] >= 0.0 else first[k + 1]
    # r is carried from day to day; when it slides out of the window, the window's records are
    # walked from its first day. Neither r nor t ever moves back, so the lowest value from r to t
    # is the front of a queue of days with rising values (`lows[head:tail]`): each day is pushed
    # once and dropped at most once (a sparse table of minimums took ~15 % longer)
    lows = np.empty(size, dtype=np.int64)
    head = tail = 0
    run = 0
    r = 0
    for t in range(size):
        v = x[t]
        if math.isnan(v):
            run = 0
            continue
        run += 1
        if run == 1:
            head = tail = 0
        while tail > head and x[lows[tail - 1]] >= v:
            tail -= 1
        lows[tail] = t
        tail += 1
        lo = t - n + 1
        if run == 1 or v > x[r]:
            r = t
        elif r < lo:
            r = lo
            while above[r] <= t:
                r = above[r]
        if run < n:
            continue
        zero = first[lo]
        if zero <= t and x[zero] == 0.0:
            continue
        while lows[head] < r:
            head += 1
        m = x[lows[head]]
        last = (x[r] - m) / x[r]
        out[t] = last if last > best[lo] else best[lo]
    return out


@numba.njit(**_JIT)
def _rolling_drawdowns(x: np.ndarray, n: int, ulcer: bool) -> np.ndarray:
    """The drawdowns from the peak running from each window's first value: the largest
    (peak − x)/peak (`_rolling_max_drawdown_into`), or sqrt(mean(dd²)) with dd = 100 (x −
    peak)/peak (`_rolling_ulcer_into`). A zero peak makes the window missing."""
    size = x.size
    out = np.full(size, np.nan)
    if n < 1:
        return out
    peak = np.empty(_BLOCK)
    acc = np.empty(_BLOCK)
    zero = np.empty(_BLOCK, dtype=np.bool_)
    for t0 in range(n - 1, size, _BLOCK):
        m = min(_BLOCK, size - t0)
        lo = t0 - n + 1
        peak[:m] = x[lo : lo + m]
        acc[:m] = 0.0
        zero[:m] = False
        for i in range(n):
            xs = x[lo + i : lo + i + m]
            for j in range(m):
                v = xs[j]
                p = peak[j]
                if v > p:
                    p = v
                peak[j] = p
                zero[j] |= p == 0.0
                if ulcer:
                    dd = 100.0 * (v - p) / p
                    acc[j] += dd * dd
                else:
                    dd = (p - v) / p
                    if dd > acc[j]:
                        acc[j] = dd
        for j in range(m):
            if not zero[j]:
                out[t0 + j] = math.sqrt(acc[j] / n) if ulcer else acc[j]
    _missing_where_incomplete(x, n, out)
    return out


@numba.njit(**_JIT)
def rolling_max_drawdown(x: np.ndarray, n: int) -> np.ndarray:
    if n < _SHORT:  # the scan's few steps a day cost less than the records' bookkeeping
        return _rolling_drawdowns(x, n, False)
    return _max_drawdown_by_records(x, n)


@numba.njit(**_JIT)
def rolling_ulcer(x: np.ndarray, n: int) -> np.ndarray:
    return _rolling_drawdowns(x, n, True)


@numba.njit(**_JIT)
def _centered_sums(x: np.ndarray, weights: np.ndarray, absolute: bool) -> np.ndarray:
    """Σ weights[i]·d_i with d_i = x[t−n+1+i] − the window's mean (|d_i| when `absolute`), added
    in the order i = 0 … n − 1 from 0.0; missing while the window holds a missing value."""
    n = weights.size
    size = x.size
    out = np.full(size, np.nan)
    if n < 1:
        return out
    mean = np.empty(_BLOCK)
    acc = np.empty(_BLOCK)
    for t0 in range(n - 1, size, _BLOCK):
        m = min(_BLOCK, size - t0)
        lo = t0 - n + 1
        mean[:m] = 0.0
        for i in range(n):
            xs = x[lo + i : lo + i + m]
            for j in range(m):
                mean[j] += xs[j]
        for j in range(m):
            mean[j] = mean[j] / n
        acc[:m] = 0.0
        for i in range(n):
            w = weights[i]
            xs = x[lo + i : lo + i + m]
            if absolute:
                for j in range(m):
                    acc[j] += w * abs(xs[j] - mean[j])
            else:
                for j in range(m):
                    acc[j] += w * (xs[j] - mean[j])
        out[t0 : t0 + m] = acc[:m]
    return out


@numba.njit(**_JIT)
def rolling_dot_centered(x: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Σ weights[i]·(x[t−n+1+i] − the window's mean): `_rolling_dot_into`, centered."""
    return _centered_sums(x, weights, False)


# ------------------------------------------------------------------------------- row kernels
# One call computes the same window kernel over many rows of one float matrix (an arena): row
# out[i] = the kernel of row x[i] with window n[i] (`ewm_rows`: alpha[i], seed[i]), the rows in
# Numba's threads. The Numba backend runs a group of its plan this way, the Polars backend the
# windows of one level of its query. A window row is computed from day lo[i] on only (its days
# before are left as they are): a window's value depends on its own n days alone, so the kernel
# runs on the days from lo[i] − n, the same arithmetic window by window.

# window kernels of one integer parameter
WINDOWS = {
    "rolling_mean": rolling_mean, "rolling_sum": rolling_sum, "rolling_std": rolling_std,
    "rolling_min": rolling_min, "rolling_max": rolling_max, "rolling_argmax_age": rolling_argmax_age,
    "rolling_argmin_age": rolling_argmin_age, "rolling_max_drawdown": rolling_max_drawdown,
    "rolling_ulcer": rolling_ulcer, "rolling_mad": rolling_mad, "wilder_mean": wilder_mean,
    "wilder_sum": wilder_sum, "shift": shift,
}


def _window_rows(f: np.ndarray, x: np.ndarray, n: np.ndarray, lo: np.ndarray, out: np.ndarray) -> None:
    for i in numba.prange(out.size):
        s = max(lo[i] - max(n[i], 0), 0)
        f[out[i], s:] = _WINDOW_KERNEL(f[x[i], s:], n[i])  # noqa: F821 - bound per build (`window_rows`)


# The recursions are latency-bound: each day's step waits for the day before's (a multiply, an
# add and, for Wilder's mean, a division). Their row forms advance `_LANES` rows together, day by
# day, so independent rows fill each other's wait (4 rows of Wilder means: 2.5× faster than one
# after another), each row with the arithmetic of `_wilder_into` / `_ewm_into`, to the bit
# (`_recursion_lanes`).
_LANES = 4
_WILDER_MEAN, _WILDER_SUM, _EWM = range(3)


@numba.njit(**_JIT)
def _recursion_lanes(f: np.ndarray, x: np.ndarray, seed: np.ndarray, alpha: np.ndarray, out: np.ndarray, kind: int,
                     lo: int, hi: int) -> None:
    """Rows out[lo:hi] (at most `_LANES`) of a recursion's row form: row i missing until the
    seed[i]-th present value of its input, which gets their mean (their sum for Wilder's sum),
    then Wilder's mean, Wilder's sum or `ewm` with factor alpha[i] (`kind`)."""
    count = np.zeros(_LANES, np.int64)
    s = np.zeros(_LANES)
    e = np.zeros(_LANES)
    for t in range(f.shape[1]):
        for r in range(_LANES):
            i = lo + r
            if i < hi:
                v = f[x[i], t]
                o = math.nan
                if not math.isnan(v):
                    m = seed[i]
                    if count[r] < m:
                        count[r] += 1
                        s[r] += v
                        if count[r] == m:
                            e[r] = s[r] if kind == _WILDER_SUM else s[r] / m
                            o = e[r]
                    else:
                        if kind == _EWM:
                            e[r] = e[r] + alpha[i] * (v - e[r])
                        elif kind == _WILDER_SUM:
                            e[r] = e[r] - e[r] / m + v
                        else:
                            e[r] = (e[r] * (m - 1) + v) / m
                        o = e[r]
                f[out[i], t] = o


def _wilder_rows(f: np.ndarray, x: np.ndarray, n: np.ndarray, since: np.ndarray, out: np.ndarray) -> None:
    """`since` is not read: a recursion's every day depends on its whole past, so it runs on all."""
    no_alpha = np.empty(0)
    for g in numba.prange((out.size + _LANES - 1) // _LANES):
        lo = g * _LANES
        _recursion_lanes(f, x, n, no_alpha, out, _KIND, lo, min(lo + _LANES, out.size))  # noqa: F821 - bound per build


@functools.cache
def window_rows(op: str) -> ParallelKernel:
    """`_window_rows` built for one window kernel (`_wilder_rows` for Wilder's two), the kernel a
    constant of the build: a process compiles (or loads from the on-disk cache) only the kinds it
    meets (`docs/decisions.md`)."""
    if op in ("wilder_mean", "wilder_sum"):
        source, bound = _wilder_rows, {"_KIND": _WILDER_SUM if op == "wilder_sum" else _WILDER_MEAN}
    else:
        source, bound = _window_rows, {"_WINDOW_KERNEL": WINDOWS[op]}
    build = types.FunctionType(source.__code__, {**globals(), **bound}, source.__name__)
    build.__qualname__ = f"_window_rows_{op}"  # an on-disk cache entry of its own
    return ParallelKernel(build, _JIT)


@parallel_kernel(**_JIT)
def ewm_rows(f: np.ndarray, x: np.ndarray, alpha: np.ndarray, seed: np.ndarray, out: np.ndarray) -> None:
    for g in numba.prange((out.size + _LANES - 1) // _LANES):
        lo = g * _LANES
        _recursion_lanes(f, x, seed, alpha, out, _EWM, lo, min(lo + _LANES, out.size))
