"""Performance metrics of spec §7 (empyrical definitions, 252 periods a year, zero risk-free rate),
computed for one strategy or a whole batch at once.

One Numba function, `row_metrics`, defines every metric of one strategy; the batch entry point
runs it over rows in parallel, and the sweep's fused kernel calls it on each variant's returns
while they are still in cache, so a single backtest and a million-variant sweep share one
definition of each metric. The functions that `row_metrics` calls are written in the subset that
also compiles for CUDA (`math` not NumPy scalar functions, comparisons not `min`/`max`), so the
GPU sweep runs their twins (`gpubt.backends.twins`) compiled from this same source.
"""

from __future__ import annotations

import math

import numba
import numpy as np

from gpubt.parallel import parallel_kernel

PERIODS = 252
KEYS = (
    "days",
    "years",
    "totalReturn",
    "cagr",
    "vol",
    "maxDrawdown",
    "calmar",
    "sharpe",
    "sortino",
    "beta",
    "treynor",
    "winRate",
    "bestDay",
    "worstDay",
    "avgTurnover",
    "avgHoldings",
)
N_KEYS = len(KEYS)
# A spread below this fraction of the mean is rounding noise (a constant series), not variance.
_NOISE = 1e-12

_JIT = {"cache": True, "nogil": True, "error_model": "numpy"}


@numba.njit(**_JIT)
def _ratio(num: float, den: float) -> float:
    """num / den, NaN where den is 0: an undefined metric is reported as missing, never ±inf."""
    return num / den if den != 0.0 else np.nan


@numba.njit(**_JIT)
def centre(bench: np.ndarray, out: np.ndarray) -> float:
    """Benchmark returns minus their mean over the days they are finite (0 elsewhere) into
    ``out``; returns their sum of squares (0 when it is only rounding noise). Σ x·(b − b̄) over
    those days equals Σ (x − x̄)(b − b̄), so a strategy's covariance is one dot product."""
    n = 0
    s = 0.0
    for d in range(bench.size):
        if math.isfinite(bench[d]):
            n += 1
            s += bench[d]
    mean = s / n if n else np.nan
    ss = 0.0
    for d in range(bench.size):
        out[d] = bench[d] - mean if math.isfinite(bench[d]) else 0.0
        ss += out[d] * out[d]
    return ss if ss > n * (_NOISE * mean) ** 2 else 0.0


@numba.njit(**_JIT)
def _squares(x: np.ndarray, mean: float) -> float:
    """Σ (x − mean)², in four interleaved partial sums: one running sum waits on each
    addition's latency, four keep the adder busy."""
    a = b = c = e = 0.0
    n = x.size - x.size % 4
    for d in range(0, n, 4):
        u0, u1, u2, u3 = x[d] - mean, x[d + 1] - mean, x[d + 2] - mean, x[d + 3] - mean
        a += u0 * u0
        b += u1 * u1
        c += u2 * u2
        e += u3 * u3
    for d in range(n, x.size):
        a += (x[d] - mean) * (x[d] - mean)
    return (a + b) + (c + e)


@numba.njit(**_JIT)
def row_metrics(
    net: np.ndarray,
    turnover_sum: float,
    holdings_sum: float,
    bench: np.ndarray,
    bench_squares: float,
    out: np.ndarray,
) -> None:
    """Every metric of one strategy into ``out`` (KEYS order; days as a float).

    ``net``: its D daily net returns; the equity starts at 1.0 before them, and the start point
    counts for the drawdown (a first-day loss is already one). ``bench``: the centred benchmark
    of the same days (`centre`), or an empty array when there is none (beta, treynor NaN).
    Undefined metrics (division by zero, fewer than two days) are NaN."""
    D = net.size
    out[:] = np.nan
    out[0] = D
    out[1] = D / PERIODS
    if D == 0:
        return
    years = D / PERIODS
    total = 0.0
    equity = 1.0
    peak = 1.0
    max_dd = 0.0
    wins = 0
    best = net[0]
    worst = net[0]
    down = 0.0
    has_bench = bench.size > 0
    cov = 0.0  # Σ r·(b − b̄) in this pass: one pass fewer over the days (a GPU thread waits on each)
    for d in range(D):
        r = net[d]
        total += r
        equity *= 1.0 + r
        if equity > peak:
            peak = equity
        drawdown = equity / peak - 1.0
        if drawdown < max_dd:
            max_dd = drawdown
        wins += r > 0.0
        if r > best:
            best = r
        if r < worst:
            worst = r
        if r < 0.0:
            down += r * r
        if has_bench:
            cov += r * bench[d]
    mean = total / D
    squares = _squares(net, mean)
    if not squares > D * (_NOISE * mean) ** 2:
        squares = 0.0
    std = math.sqrt(_ratio(squares, D - 1.0))
    cagr = equity ** (1.0 / years) - 1.0
    out[2] = equity - 1.0
    out[3] = cagr
    out[4] = std * math.sqrt(PERIODS)
    out[5] = max_dd
    out[6] = _ratio(cagr, abs(max_dd))
    out[7] = _ratio(mean, std) * math.sqrt(PERIODS)
    out[8] = _ratio(mean * PERIODS, math.sqrt(down / D) * math.sqrt(PERIODS))
    out[11] = wins / D
    out[12] = best
    out[13] = worst
    out[14] = turnover_sum / D
    out[15] = holdings_sum / D
    if has_bench:
        # |cov| ≤ σx·σb: a constant strategy has beta 0 exactly, not rounding noise.
        beta = _ratio(cov if squares > 0.0 else 0.0, bench_squares)
        out[9] = beta
        out[10] = _ratio(cagr, beta)


@numba.njit(**_JIT)
def _row(s: int, net: np.ndarray, turnover: np.ndarray, holdings: np.ndarray, bench: np.ndarray,
         shared: np.ndarray, shared_squares: float, out: np.ndarray) -> None:
    """`row_metrics` of row s; ``bench`` is (0, D) for none, (1, D) shared (centred once into
    ``shared``), or (S, D)."""
    if bench.shape[0] == 0:
        centred, squares = bench[0:0, 0], 0.0
    elif bench.shape[0] == 1:
        centred, squares = shared, shared_squares
    else:
        centred = np.empty(net.shape[1])
        squares = centre(bench[s], centred)
    row_metrics(net[s], turnover[s].sum(), holdings[s].sum(), centred, squares, out[s])


@parallel_kernel(**_JIT)
def _rows(net: np.ndarray, turnover: np.ndarray, holdings: np.ndarray, bench: np.ndarray,
          shared: np.ndarray, shared_squares: float, out: np.ndarray) -> None:
    for s in numba.prange(net.shape[0]):
        _row(s, net, turnover, holdings, bench, shared, shared_squares, out)


# Below this many rows the metrics run on the calling thread: waking the thread pool costs more
# than the rows (a single backtest is one row of microseconds).
_PARALLEL_ROWS = 64


def compute_metrics(
    net: np.ndarray,
    turnover: np.ndarray,
    n_holdings: np.ndarray,
    benchmark_net: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """Every §7 metric for (D,) series (0-d results) or (S, D) batches ((S,) results).

    ``benchmark_net`` is (D,) shared by all rows or (S, D); beta uses the days on which it is
    finite. Undefined metrics (division by zero, fewer than two days, no benchmark) are NaN."""
    net = np.asarray(net, dtype=np.float64)
    batch_shape, D = net.shape[:-1], net.shape[-1]
    S = int(np.prod(batch_shape))

    def rows(a: np.ndarray, n: int = S) -> np.ndarray:
        return np.ascontiguousarray(np.asarray(a, dtype=np.float64).reshape(n, D))

    if benchmark_net is None:
        bench = np.empty((0, D))
    else:
        bench = rows(benchmark_net, 1 if np.ndim(benchmark_net) == 1 else S)
    out = np.empty((S, N_KEYS))
    shared = np.empty(D if bench.shape[0] == 1 else 0)
    shared_squares = centre(bench[0], shared) if bench.shape[0] == 1 else 0.0
    run = _rows if S >= _PARALLEL_ROWS else _rows.serial
    run(rows(net), rows(turnover), rows(n_holdings), bench, shared, shared_squares, out)
    result = {key: out[:, k].reshape(batch_shape) for k, key in enumerate(KEYS)}
    result["days"] = result["days"].astype(np.int64)
    return result
