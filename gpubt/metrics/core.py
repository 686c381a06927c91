"""Performance metrics of spec §7 (empyrical definitions, 252 periods a year, zero risk-free rate),
computed for one strategy or a whole batch at once."""

from __future__ import annotations

import numpy as np

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
# Rows are processed in blocks of about this many elements: the temporaries of a block stay in
# cache and a 65,536-strategy sweep never allocates (S, D) temporaries of gigabytes.
_BLOCK = 1 << 18
# A spread below this fraction of the mean is rounding noise (a constant series), not variance.
_NOISE = 1e-12


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """num / den, NaN where den is 0: an undefined metric is reported as missing, never ±inf."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(den != 0, num / den, np.nan)


def _squares(dev: np.ndarray, mean: np.ndarray, n: np.ndarray | int) -> np.ndarray:
    """Row sums of squared deviations, zeroed where they are only the rounding noise of the mean,
    so a constant series has no variance rather than an absurd Sharpe ratio or beta."""
    ss = np.einsum("...d,...d->...", dev, dev)
    return np.where(ss > n * (_NOISE * mean) ** 2, ss, 0.0)


def _centred(bench: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Benchmark returns minus their mean over the days they are finite (0 elsewhere), and the
    sum of their squares. Σ x·(b − b̄) over those days equals Σ (x − x̄)(b − b̄), so the covariance
    with any strategy is one dot product."""
    known = np.isfinite(bench)
    n = known.sum(axis=-1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        mean = np.where(known, bench, 0.0).sum(axis=-1, keepdims=True) / n
    centred = np.where(known, bench - mean, 0.0)
    return centred, _squares(centred, mean[..., 0], n[..., 0])


def _fill(
    out: dict[str, np.ndarray],
    rows: slice,
    net: np.ndarray,
    turnover: np.ndarray,
    n_holdings: np.ndarray,
    equity: np.ndarray,
    drawdown: np.ndarray,
    bench: tuple[np.ndarray, np.ndarray] | None,
) -> None:
    """Metrics of a block of rows (each (b, D) with D ≥ 1), written into ``out[key][rows]``;
    ``bench`` is the centred benchmark ((D,) or (b, D)) and its sum of squares."""
    D = net.shape[-1]
    years = D / PERIODS
    mean = net.mean(axis=-1)
    squares = _squares(net - mean[:, None], mean, D)
    std = np.sqrt(_ratio(squares, np.float64(D - 1)))
    downside = np.minimum(net, 0.0)
    downside_rms = np.sqrt(np.einsum("sd,sd->s", downside, downside) / D)
    end = equity[:, -1]
    with np.errstate(invalid="ignore"):
        cagr = end ** (1.0 / years) - 1.0
    max_dd = np.minimum(drawdown.min(axis=-1), 0.0)

    out["totalReturn"][rows] = end - 1.0
    out["cagr"][rows] = cagr
    out["vol"][rows] = std * np.sqrt(PERIODS)
    out["maxDrawdown"][rows] = max_dd
    out["calmar"][rows] = _ratio(cagr, np.abs(max_dd))
    out["sharpe"][rows] = _ratio(mean, std) * np.sqrt(PERIODS)
    out["sortino"][rows] = _ratio(mean * PERIODS, downside_rms * np.sqrt(PERIODS))
    out["winRate"][rows] = np.count_nonzero(net > 0.0, axis=-1) / D
    out["bestDay"][rows] = net.max(axis=-1)
    out["worstDay"][rows] = net.min(axis=-1)
    out["avgTurnover"][rows] = turnover.mean(axis=-1)
    out["avgHoldings"][rows] = n_holdings.mean(axis=-1)
    if bench is not None:
        centred, bench_squares = bench
        cov = net @ centred if centred.ndim == 1 else np.einsum("sd,sd->s", net, centred)
        # |cov| ≤ σx·σb: a constant strategy has beta 0 exactly, not rounding noise.
        beta = _ratio(np.where(squares > 0.0, cov, 0.0), bench_squares)
        out["beta"][rows] = beta
        out["treynor"][rows] = _ratio(cagr, beta)


def compute_metrics(
    net: np.ndarray,
    turnover: np.ndarray,
    n_holdings: np.ndarray,
    equity: np.ndarray,
    drawdown: np.ndarray,
    benchmark_net: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """Every §7 metric for (D,) series (0-d results) or (S, D) batches ((S,) results).

    ``equity``/``drawdown`` are the values after each credited day (the start point, 1.0 and 0.0,
    is implied, so maxDrawdown ≤ 0). ``benchmark_net`` is (D,) shared by all rows or (S, D); beta
    uses the days on which it is finite. Undefined metrics (division by zero, fewer than two days,
    no benchmark) are NaN."""
    net = np.asarray(net)
    batch_shape, D = net.shape[:-1], net.shape[-1]
    S = int(np.prod(batch_shape))
    # Converted to float64 block by block: integer holding counts never cost an (S, D) copy.
    series = [np.asarray(a).reshape(S, D) for a in (net, turnover, n_holdings, equity, drawdown)]
    out = {key: np.full(S, np.nan) for key in KEYS}
    out["days"] = np.full(S, D, dtype=np.int64)
    out["years"][:] = D / PERIODS
    shared = per_row = None
    if benchmark_net is not None:
        b = np.asarray(benchmark_net, dtype=np.float64)
        # A shared benchmark is centred once; per-row benchmarks block by block.
        if b.ndim == 1:
            shared = _centred(b)
        else:
            per_row = b.reshape(S, D)
    if D:
        step = max(1, _BLOCK // D)
        for lo in range(0, S, step):
            rows = slice(lo, lo + step)
            bench = _centred(per_row[rows]) if per_row is not None else shared
            _fill(out, rows, *(a[rows].astype(np.float64, copy=False) for a in series), bench)
    return {key: value.reshape(batch_shape) for key, value in out.items()}
