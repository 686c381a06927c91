"""Layer 4: allocation matrices (days × tickers) from signal columns, whole period at once.

Each plan step becomes one matrix through array operations over days: masks choose slots,
per-day weight vectors combine children, a stable argsort ranks function children, one scan
carries the altExit state. Arithmetic is done in the same order as the reference's per-day
sums so the two agree to the last bits wherever they can.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from gpubt.backends.base import NULL, TRUE
from gpubt.compiler.plan import Blend, Choose, Combine, Count, Hold, Latch, Rank, Step
from gpubt.data.market import Market
from gpubt.ir.nodes import Node


class Allocator:
    """Computes (and memoises) the allocation matrix of every plan step."""

    def __init__(
        self,
        market: Market,
        values: Mapping[Node, np.ndarray],
        start: int,
        keep: set[int] | None = None,
    ) -> None:
        """`keep`: ids of the steps whose matrices are worth memoising (read more than once);
        None keeps all. Dropping the others bounds memory on trees of thousands of nodes."""
        self.keep = keep
        self.market = market
        self.values = values
        self.start = start
        self.n_days = market.n_days
        self.column = {t: j for j, t in enumerate(market.tickers)}
        with np.errstate(divide="ignore", invalid="ignore"):
            returns = market.close[1:] / market.close[:-1] - 1.0
        # close-to-close returns for branch series; a period without a price earns 0 (spec §5)
        self.returns = np.vstack([np.zeros((1, len(market.tickers))), np.where(np.isfinite(returns), returns, 0.0)])
        self._alloc: dict[int, np.ndarray] = {}
        self._holds: dict[tuple[str, ...], np.ndarray] = {}
        self._active: dict[int, np.ndarray] = {}
        self._branch: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self._state: dict[int, np.ndarray] = {}

    def empty(self) -> np.ndarray:
        return np.zeros((self.n_days, len(self.column)))

    def allocation(self, step: Step) -> np.ndarray:
        """The step's matrix. Matrices may be shared between steps: never modify one in place."""
        out = self._alloc.get(id(step))
        if out is None:
            out = self._allocate(step)
            if self.keep is None or id(step) in self.keep:
                self._alloc[id(step)] = out
        return out

    def active(self, step: Step) -> np.ndarray:
        """Days on which the step holds anything (spec §3.1), without rescanning its matrix
        when it is read again."""
        found = self._active.get(id(step))
        if found is None:
            if isinstance(step, Hold):
                found = np.full(self.n_days, bool(step.tickers))
            elif isinstance(step, Choose) and step.truth is not None:
                chosen = self.values[step.truth] == TRUE
                found = np.where(chosen, self.active(step.then), self.active(step.other))
            elif isinstance(step, Combine) and step.weighting != "capped":
                found = np.zeros(self.n_days, dtype=bool)
                for child in step.children:
                    found |= self.active(child)
            else:
                found = self.allocation(step).any(axis=1)
            self._active[id(step)] = found
        return found

    def _allocate(self, step: Step) -> np.ndarray:
        if isinstance(step, Hold):
            out = self._holds.get(step.tickers)
            if out is None:
                out = self.empty()
                for ticker in step.tickers:
                    out[:, self.column[ticker]] = 1.0 / len(step.tickers)
                self._holds[step.tickers] = out
            return out
        if isinstance(step, Combine):
            return self.combine(step)
        if isinstance(step, Choose):
            if step.truth is None:
                return self.allocation(step.then)
            chosen = self.values[step.truth] == TRUE
            return np.where(chosen[:, None], self.allocation(step.then), self.allocation(step.other))
        if isinstance(step, Count):
            return self._count(step)
        if isinstance(step, Rank):
            return self._rank(step)
        if isinstance(step, Blend):
            return self._blend(step)
        if isinstance(step, Latch):
            inside = self.latch_state(step)
            return np.where(inside[:, None], self.allocation(step.then), self.allocation(step.other))
        raise TypeError(f"unknown plan step {type(step).__name__}")

    # -- combining children ---------------------------------------------------------------------

    def combine(self, step: Combine, select: np.ndarray | None = None) -> np.ndarray:
        """Spec §3.1–§3.2 per day: only active (and, for a function node, selected) children."""
        if not step.children:
            return self.empty()
        if len(step.children) == 1 and select is None and step.weighting != "capped":
            return self.allocation(step.children[0])  # weight 1 when active, nothing otherwise
        out = self.empty()
        allocs = [self.allocation(c) for c in step.children]
        active = np.stack([self.active(c) for c in step.children], axis=1)
        if select is not None:
            active &= select
        count = active.sum(axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            equal = np.where(active, 1.0 / count[:, None], 0.0)
        weights = equal
        excess = None
        if step.weighting == "defined":
            raw = np.array([1.0 if w is None else float(w) for w in step.child_windows])
            total = _ordered_sum(np.where(active, raw, 0.0))
            with np.errstate(divide="ignore", invalid="ignore"):
                weights = np.where((total > 0)[:, None], np.where(active, raw / total[:, None], 0.0), equal)
        elif step.weighting in ("inverse", "pro"):
            sigma = np.stack([self.branch_volatility(c, step.vol_window) for c in step.children], axis=1)
            usable = np.all(~active | (np.isfinite(sigma) & (sigma > 0)), axis=1) & (count > 1)
            with np.errstate(divide="ignore", invalid="ignore"):
                raw = np.where(active, 1.0 / sigma if step.weighting == "inverse" else sigma, 0.0)
                raw = np.where(usable[:, None], raw, 0.0)
                total = _ordered_sum(raw)
                weights = np.where(usable[:, None], raw / total[:, None], equal)
        elif step.weighting == "capped":
            caps = np.array([np.inf if w is None else w / 100.0 for w in step.child_windows])
            weights = np.where(active, np.minimum(equal, caps), 0.0)
            excess = _ordered_sum(equal - weights)
        scratch = np.empty_like(out)
        for i, alloc in enumerate(allocs):
            out += np.multiply(weights[:, i : i + 1], alloc, out=scratch)
        if excess is not None and step.fallback:
            out[:, self.column[step.fallback]] += excess
        return out

    def _count(self, step: Count) -> np.ndarray:
        if not step.items:
            return self.allocation(step.then)
        truths = np.stack([
            np.full(self.n_days, TRUE) if item is None else self.values[item] for item in step.items
        ], axis=1)
        n_true = (truths == TRUE).sum(axis=1)
        n_null = (truths == NULL).sum(axis=1)
        then, other = self.allocation(step.then), self.allocation(step.other)
        if step.quantifier == "ladder":
            out = np.where((n_true > 0)[:, None], then, other)
            for rung, combine in step.ladder.items():
                active = np.zeros(self.n_days, dtype=bool)
                for child in combine.children:
                    active |= self.active(child)
                out = np.where(((n_true == rung) & active)[:, None], self.allocation(combine), out)
            return out
        k, n = len(step.items), step.n
        passed = {
            "any": n_true >= 1,
            "all": (n_true == k) & (n_null == 0),
            "none": (n_true == 0) & (n_null == 0),
            "exactly": n_true == n,
            "atLeast": n_true >= n,
            "atMost": n_true <= n,
        }[step.quantifier]
        return np.where(passed[:, None], then, other)

    def _rank(self, step: Rank) -> np.ndarray:
        allocs = [self.allocation(c) for c in step.children]
        if not allocs:
            return self.empty()
        scores = np.stack([self.values[s] for s in step.scores], axis=1)
        active = np.stack([self.active(c) for c in step.children], axis=1)
        valid = active & np.isfinite(scores)
        key = np.where(valid, -scores if step.top else scores, np.nan)
        order = np.argsort(key, axis=1, kind="stable")  # NaN (not ranked) sorts last
        rank = np.empty_like(order)
        np.put_along_axis(rank, order, np.arange(order.shape[1])[None, :].repeat(len(order), 0), axis=1)
        selected = valid & (rank < step.bottom)
        return self.combine(step.combine, select=selected)

    def _blend(self, step: Blend) -> np.ndarray:
        v = self.values[step.value]
        lo, hi = step.low, step.high
        if abs(hi - lo) < 1e-12:
            b = np.where(np.isfinite(v), 0.5, 0.0)
        else:
            with np.errstate(invalid="ignore"):
                b = np.where(np.isfinite(v), np.clip((v - lo) / (hi - lo), 0.0, 1.0), 0.0)
        then, other = self.allocation(step.then), self.allocation(step.other)
        return (1.0 - b)[:, None] * then + b[:, None] * other

    def latch_state(self, step: Latch) -> np.ndarray:
        """altExit state after each day's update: out before the start, then a scan."""
        state = self._state.get(id(step))
        if state is None:
            entry = None if step.entry is None else self.values[step.entry] == TRUE
            exit_ = None if step.exit is None else self.values[step.exit] == TRUE
            state = np.zeros(self.n_days, dtype=bool)
            inside = False
            for t in range(self.start, self.n_days):
                if not inside:
                    inside = entry is not None and bool(entry[t])
                elif exit_ is not None and exit_[t]:
                    inside = False
                state[t] = inside
            self._state[id(step)] = state
        return state

    # -- branch series --------------------------------------------------------------------------

    def branch_series(self, step: Step) -> tuple[np.ndarray, np.ndarray]:
        """(equity, daily returns) of a step as if always reached (spec §5): equity 1 on the
        step's warm-up day, returns of the previous day's allocation, NaN before."""
        cached = self._branch.get(id(step))
        if cached is None:
            alloc = self.allocation(step)
            first = step.warmup
            returns = np.full(self.n_days, np.nan)
            equity = np.full(self.n_days, np.nan)
            if first < self.n_days:
                # summed ticker by ticker in market order, as the reference does, so equal
                # branches give bit-equal equities (ties in rankings must break the same way)
                daily = np.zeros(self.n_days - first - 1)
                for j in range(alloc.shape[1]):
                    daily = daily + alloc[first:-1, j] * self.returns[first + 1 :, j]
                returns[first + 1 :] = daily
                equity[first] = 1.0
                equity[first + 1 :] = np.cumprod(1.0 + daily)
            cached = (equity, returns)
            self._branch[id(step)] = cached
        return cached

    def branch_volatility(self, step: Step, window: int) -> np.ndarray:
        """Population std of the step's branch returns over the last `window` days (NaN if any
        is missing)."""
        _, returns = self.branch_series(step)
        out = np.full(self.n_days, np.nan)
        if window <= self.n_days:
            view = np.lib.stride_tricks.sliding_window_view(returns, window)
            mean = view.sum(axis=1) / window
            out[window - 1 :] = np.sqrt(((view - mean[:, None]) ** 2).sum(axis=1) / window)
        return out


def _ordered_sum(matrix: np.ndarray) -> np.ndarray:
    """Row sums added left to right, as the reference adds children in order."""
    total = np.zeros(matrix.shape[0])
    for i in range(matrix.shape[1]):
        total = total + matrix[:, i]
    return total
