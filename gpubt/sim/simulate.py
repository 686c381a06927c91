"""Vectorised portfolio simulation (spec §6): returns, turnover, costs and equity for a batch of
strategies sharing one market, without a per-day Python loop."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numba
import numpy as np

from gpubt.parallel import parallel_kernel

# Days between a decision and the day its return is credited, per mode.
_LAG = {"CC": 1, "CO": 1, "OC": 1, "OO": 2}


def _lag(mode: str) -> int:
    try:
        return _LAG[mode]
    except KeyError:
        raise ValueError(f"unknown mode {mode!r}; expected one of CC, OO, OC, CO") from None


@dataclass(frozen=True, eq=False)
class SimResult:
    """One row per credited day; the start day itself (equity 1.0) is not a row."""

    decision: np.ndarray  # (D,) int, day index of the decision A_t
    credited: np.ndarray  # (D,) int, day index on which its return is credited
    holdings: np.ndarray  # (S, D, N) allocation held over each period
    gross: np.ndarray  # (S, D)
    turnover: np.ndarray  # (S, D)
    cost: np.ndarray  # (S, D)
    net: np.ndarray  # (S, D)
    equity: np.ndarray  # (S, D), after each credited day
    drawdown: np.ndarray  # (S, D), after each credited day
    missing: list[tuple[int, int]]  # (credited day, ticker column) held without a return


def period_returns(
    open_: np.ndarray, close: np.ndarray, mode: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-ticker return of the period each decision day's allocation is held for.

    Returns ``(decision_idx, credited_idx, R)`` with R of shape (D, N); R is NaN (or ±inf on a
    zero price) where a price is missing. Shared by the simulation and the benchmark curve so
    both use the same periods."""
    lag = _lag(mode)
    T = close.shape[0]
    with np.errstate(divide="ignore", invalid="ignore"):
        if mode == "CC":
            R = close[1:] / close[:-1] - 1.0
        elif mode == "CO":
            R = open_[1:] / close[:-1] - 1.0
        elif mode == "OC":
            R = close[1:] / open_[1:] - 1.0
        else:  # OO
            R = open_[2:] / open_[1:-1] - 1.0
    decision = np.arange(max(T - lag, 0))
    return decision, decision + lag, R


def equity_and_drawdown(net: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Equity compounding ``net`` along the last axis from 1.0, and its drawdown against the
    running peak, which includes the starting 1.0 (a first-day loss is already a drawdown)."""
    equity = np.cumprod(1.0 + net, axis=-1)
    peak = np.maximum(np.maximum.accumulate(equity, axis=-1), 1.0)
    return equity, equity / peak - 1.0


def simulate(
    alloc: np.ndarray,
    open_: np.ndarray,
    close: np.ndarray,
    mode: str,
    cost_bps: float,
    start: int,
    end: int | None = None,
) -> SimResult:
    """Backtest allocations ``alloc`` ((T, N) or (S, T, N)) decided from day ``start`` on,
    crediting every period that ends by ``end`` (inclusive day index, default the last day).

    Weights must be finite; cash is 1 − Σw. A held ticker without a period return earns 0 and is
    listed in ``missing`` so the caller can warn about it."""
    alloc = np.asarray(alloc, dtype=np.float64)
    batch = alloc if alloc.ndim == 3 else alloc[None]
    T, N = close.shape
    if batch.shape[1:] != (T, N) or open_.shape != (T, N):
        raise ValueError(f"alloc {alloc.shape} and prices {close.shape} do not share (T, N)")
    if not 0 <= start < T:
        raise ValueError(f"start {start} is outside the {T} market days")
    last = T - 1 if end is None else min(end, T - 1)

    _, credited_all, R_all = period_returns(open_, close, mode)
    lag = _lag(mode)
    stop = max(start, last - lag + 1)  # decisions start .. stop-1
    decision = np.arange(start, stop)
    credited = credited_all[start:stop]
    R = R_all[start:stop]
    holdings = batch[:, start:stop]

    gross, turnover, cost, net, equity, drawdown = np.empty((6, *holdings.shape[:2]))
    run = _simulate_rows if holdings.shape[0] >= _PARALLEL_ROWS else _simulate_rows.serial
    run(holdings, R, cost_bps / 10_000.0, gross, turnover, cost, net, equity, drawdown)

    missing: list[tuple[int, int]] = []
    days, columns = np.nonzero(~np.isfinite(R))  # before a ticker's first price, after its last
    if days.size:
        held = (holdings[:, days, columns] != 0.0).any(axis=0)
        missing = list(zip(credited[days[held]].tolist(), columns[held].tolist()))
    return SimResult(
        decision, credited, holdings, gross, turnover, cost, net, equity, drawdown, missing
    )


# Below this many strategies the simulation runs on the calling thread (a single backtest's
# rows are a fraction of a millisecond); a batch runs its strategies in parallel.
_PARALLEL_ROWS = 4


@parallel_kernel(cache=True, nogil=True, error_model="numpy")
def _simulate_rows(holdings: np.ndarray, R: np.ndarray, cost_rate: float, gross: np.ndarray,
                   turnover: np.ndarray, cost: np.ndarray, net: np.ndarray, equity: np.ndarray,
                   drawdown: np.ndarray) -> None:
    """Every strategy's periods in one pass over its holdings: gross return Σ w·r (a period
    without a return earns 0), turnover ½ Σ |w − w_prev| (from all cash before the first
    period), each summed over the tickers in column order, then cost, net, the compounded
    equity and its drawdown against the running peak (which starts at 1). A ticker never held
    adds exactly 0 to both sums, so a sum over a strategy's own tickers in the same order gives
    the same bits; equity and drawdown are `equity_and_drawdown`'s operations in its order."""
    S, D, N = holdings.shape
    for s in numba.prange(S):
        e = 1.0
        peak = 1.0
        for d in range(D):
            g = 0.0
            t = 0.0
            for n in range(N):
                w = holdings[s, d, n]
                r = R[d, n]
                if math.isfinite(r):
                    g += w * r
                t += abs(w - (holdings[s, d - 1, n] if d > 0 else 0.0))
            gross[s, d] = g
            turnover[s, d] = 0.5 * t
            cost[s, d] = turnover[s, d] * cost_rate
            net[s, d] = g - cost[s, d]
            e = e * (1.0 + net[s, d]) if d > 0 else 1.0 + net[s, d]
            peak = max(peak, e)
            equity[s, d] = e
            drawdown[s, d] = e / peak - 1.0
