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

import numba
import numpy as np

_JIT = {"cache": True, "nogil": True, "error_model": "numpy"}


@numba.njit(**_JIT)
def _runs(x: np.ndarray) -> np.ndarray:
    """run[t] = number of consecutive present values ending at t."""
    run = np.empty(x.size, dtype=np.int64)
    count = 0
    for t in range(x.size):
        count = 0 if np.isnan(x[t]) else count + 1
        run[t] = count
    return run


# ------------------------------------------------------------------------------------- windows


@numba.njit(**_JIT)
def rolling_std(x: np.ndarray, n: int) -> np.ndarray:
    """Population standard deviation of each window, by two passes over the window (mean first),
    so a constant window gives exactly 0 and a series far from 0 loses no digits (the one-pass
    sum-of-squares form loses them)."""
    out = np.full(x.size, np.nan)
    run = _runs(x)
    for t in range(n - 1, x.size):
        if run[t] < n:
            continue
        lo = t - n + 1
        first = x[lo]
        flat = True
        s = 0.0
        for i in range(lo, t + 1):
            s += x[i]
            if x[i] != first:
                flat = False
        if flat:
            out[t] = 0.0
            continue
        m = s / n
        q = 0.0
        for i in range(lo, t + 1):
            d = x[i] - m
            q += d * d
        out[t] = np.sqrt(q / n)
    return out


@numba.njit(**_JIT)
def rolling_mad(x: np.ndarray, n: int) -> np.ndarray:
    """Mean absolute deviation of each window around the window's own mean."""
    out = np.full(x.size, np.nan)
    run = _runs(x)
    for t in range(n - 1, x.size):
        if run[t] < n:
            continue
        lo = t - n + 1
        s = 0.0
        for i in range(lo, t + 1):
            s += x[i]
        m = s / n
        a = 0.0
        for i in range(lo, t + 1):
            a += abs(x[i] - m)
        out[t] = a / n
    return out


@numba.njit(**_JIT)
def rolling_argmax_age(x: np.ndarray, n: int) -> np.ndarray:
    """Days since the highest value of the window (the latest one on ties)."""
    out = np.full(x.size, np.nan)
    run = _runs(x)
    for t in range(n - 1, x.size):
        if run[t] < n:
            continue
        best = t - n + 1
        for i in range(t - n + 1, t + 1):
            if x[i] >= x[best]:
                best = i
        out[t] = t - best
    return out


@numba.njit(**_JIT)
def rolling_argmin_age(x: np.ndarray, n: int) -> np.ndarray:
    """Days since the lowest value of the window (the latest one on ties)."""
    out = np.full(x.size, np.nan)
    run = _runs(x)
    for t in range(n - 1, x.size):
        if run[t] < n:
            continue
        best = t - n + 1
        for i in range(t - n + 1, t + 1):
            if x[i] <= x[best]:
                best = i
        out[t] = t - best
    return out


@numba.njit(**_JIT)
def rolling_max_drawdown(x: np.ndarray, n: int) -> np.ndarray:
    """Largest (peak − x)/peak inside each window, the peak running from the window's first value
    (nothing before the window counts). A zero peak makes the window missing."""
    out = np.full(x.size, np.nan)
    run = _runs(x)
    for t in range(n - 1, x.size):
        if run[t] < n:
            continue
        peak = x[t - n + 1]
        worst = 0.0
        ok = True
        for i in range(t - n + 1, t + 1):
            if x[i] > peak:
                peak = x[i]
            if peak == 0.0:
                ok = False
                break
            dd = (peak - x[i]) / peak
            if dd > worst:
                worst = dd
        if ok:
            out[t] = worst
    return out


@numba.njit(**_JIT)
def rolling_ulcer(x: np.ndarray, n: int) -> np.ndarray:
    """sqrt(mean(dd²)) with dd = 100 (x − peak)/peak, the peak running from the window's first
    value. A zero peak makes the window missing."""
    out = np.full(x.size, np.nan)
    run = _runs(x)
    for t in range(n - 1, x.size):
        if run[t] < n:
            continue
        peak = x[t - n + 1]
        total = 0.0
        ok = True
        for i in range(t - n + 1, t + 1):
            if x[i] > peak:
                peak = x[i]
            if peak == 0.0:
                ok = False
                break
            dd = 100.0 * (x[i] - peak) / peak
            total += dd * dd
        if ok:
            out[t] = np.sqrt(total / n)
    return out


# ----------------------------------------------------------------------------------- recursions


@numba.njit(**_JIT)
def ewm(x: np.ndarray, alpha: float, seed: int) -> np.ndarray:
    """SMA-seeded exponential average: missing until the `seed`-th present value, which gets the
    mean of the first `seed` present values; then e += alpha (x − e)."""
    out = np.full(x.size, np.nan)
    count = 0
    s = 0.0
    e = 0.0
    for t in range(x.size):
        v = x[t]
        if np.isnan(v):
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
    return out


@numba.njit(**_JIT)
def wilder_mean(x: np.ndarray, n: int) -> np.ndarray:
    """Wilder's smoothing in TA-Lib's arithmetic: missing until the n-th present value, which gets
    the mean of the first n present values; then e = (e (n − 1) + x)/n."""
    out = np.full(x.size, np.nan)
    count = 0
    s = 0.0
    e = 0.0
    for t in range(x.size):
        v = x[t]
        if np.isnan(v):
            continue
        if count < n:
            count += 1
            s += v
            if count == n:
                e = s / n
                out[t] = e
            continue
        e = (e * (n - 1) + v) / n
        out[t] = e
    return out


@numba.njit(**_JIT)
def ewm_var(x: np.ndarray, alpha: np.ndarray, seed_offset: int) -> np.ndarray:
    """Exponential average with a factor per day (KAMA): e = x on the day `seed_offset` days
    before alpha's first present value, then e += alpha_t (x_t − e) on the days both are present."""
    out = np.full(x.size, np.nan)
    first = -1
    for t in range(alpha.size):
        if not np.isnan(alpha[t]):
            first = t
            break
    if first < 0:
        return out
    start = first - seed_offset
    if start < 0 or np.isnan(x[start]):
        return out
    e = x[start]
    out[start] = e
    for t in range(start + 1, x.size):
        if np.isnan(x[t]) or np.isnan(alpha[t]):
            continue
        e = e + alpha[t] * (x[t] - e)
        out[t] = e
    return out


@numba.njit(**_JIT)
def laguerre_rsi(x: np.ndarray, gamma: float) -> np.ndarray:
    """Ehlers' Laguerre RSI on a 0 … 100 scale, the four filter values 0 before the first value;
    50 when the filters show no up or down movement."""
    out = np.full(x.size, np.nan)
    l0 = 0.0
    l1 = 0.0
    l2 = 0.0
    l3 = 0.0
    for t in range(x.size):
        price = x[t]
        if np.isnan(price):
            continue
        n0 = (1 - gamma) * price + gamma * l0
        n1 = -gamma * n0 + l0 + gamma * l1
        n2 = -gamma * n1 + l1 + gamma * l2
        n3 = -gamma * n2 + l2 + gamma * l3
        l0, l1, l2, l3 = n0, n1, n2, n3
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
    return out


@numba.njit(**_JIT)
def cum_sum(x: np.ndarray) -> np.ndarray:
    """Running sum of the present values (missing days: missing, sum carried)."""
    out = np.full(x.size, np.nan)
    s = 0.0
    for t in range(x.size):
        if not np.isnan(x[t]):
            s += x[t]
            out[t] = s
    return out


@numba.njit(**_JIT)
def forward_fill(x: np.ndarray) -> np.ndarray:
    """x, else its last present value (missing before the first)."""
    out = np.empty(x.size)
    last = np.nan
    for t in range(x.size):
        if not np.isnan(x[t]):
            last = x[t]
        out[t] = last
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
        acc[:m] = 0.0
        for i in range(n):
            xs = x[t0 - n + 1 + i : t0 - n + 1 + i + m]
            for j in range(m):
                acc[j] += xs[j]
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
def rolling_min(x: np.ndarray, n: int) -> np.ndarray:
    """Lowest of each window of n present values."""
    out = np.full(x.size, np.nan)
    run = _runs(x)
    for t in range(n - 1, x.size):
        if run[t] < n:
            continue
        m = x[t - n + 1]
        for i in range(t - n + 2, t + 1):
            if x[i] < m:
                m = x[i]
        out[t] = m
    return out


@numba.njit(**_JIT)
def rolling_max(x: np.ndarray, n: int) -> np.ndarray:
    """Highest of each window of n present values."""
    out = np.full(x.size, np.nan)
    run = _runs(x)
    for t in range(n - 1, x.size):
        if run[t] < n:
            continue
        m = x[t - n + 1]
        for i in range(t - n + 2, t + 1):
            if x[i] > m:
                m = x[i]
        out[t] = m
    return out


@numba.njit(**_JIT)
def rolling_all(c: np.ndarray, n: int) -> np.ndarray:
    """Kleene AND of the last n days of a three-valued int8 series (1 true, 0 false, −1 null);
    days before the first count as null, so a False decides even before n days exist."""
    out = np.empty(c.size, dtype=np.int8)
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
    return out


@numba.njit(**_JIT)
def rolling_std_blocked(x: np.ndarray, n: int) -> np.ndarray:
    """`rolling_std` to the bit (the same two passes per window: sum oldest first, mean, sum of
    squared deviations oldest first; exactly 0 for a window of equal values), the days done in
    blocks so the compiler vectorises across days. A window holding a missing value is missing."""
    size = x.size
    out = np.full(size, np.nan)
    if n < 1:
        return out
    s = np.empty(_BLOCK)
    q = np.empty(_BLOCK)
    flat = np.empty(_BLOCK, dtype=np.bool_)
    for t0 in range(n - 1, size, _BLOCK):
        m = min(_BLOCK, size - t0)
        lo = t0 - n + 1
        first = x[lo : lo + m]
        s[:m] = 0.0
        flat[:m] = True
        for i in range(n):
            xs = x[lo + i : lo + i + m]
            for j in range(m):
                v = xs[j]
                s[j] += v
                flat[j] &= v == first[j]
        for j in range(m):
            s[j] = s[j] / n  # the window's mean
        q[:m] = 0.0
        for i in range(n):
            xs = x[lo + i : lo + i + m]
            for j in range(m):
                d = xs[j] - s[j]
                q[j] += d * d
        for j in range(m):
            out[t0 + j] = 0.0 if flat[j] else np.sqrt(q[j] / n)
    return out
