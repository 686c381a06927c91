"""Layer 4: allocation matrices (days × tickers) from signal columns, whole period at once.

Each plan step becomes one matrix through array operations over days: masks choose slots,
per-day weight vectors combine children, one kernel ranks function children, one scan
carries the altExit state. A step's weights cover only the tickers its sub-tree can hold, one
contiguous row of days per ticker (a node choosing between two positions is 2 × days, however
many tickers the market has), so every operation costs its own tickers × days. Arithmetic is done in the same order as the
reference's per-day sums so the two agree to the last bits wherever they can.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass

import numba
import numpy as np

from gpubt.backends.base import NULL, TRUE
from gpubt.compiler.plan import Blend, Choose, Combine, Count, Hold, Latch, Rank, Step
from gpubt.data.market import Market
from gpubt.ir.nodes import Node


@dataclass(frozen=True, eq=False)
class Weights:
    """A step's allocation on the tickers it can ever hold: market columns ``cols`` (ascending)
    and their weights ``w`` (len(cols) × days). Never modified in place: steps share them."""

    cols: np.ndarray
    w: np.ndarray

    def on(self, cols: np.ndarray) -> np.ndarray:
        """The weights on ``cols`` (a superset of this step's columns), zero elsewhere."""
        if self.cols.size == cols.size:
            return self.w
        out = np.zeros((cols.size, self.w.shape[1]))
        out[np.searchsorted(cols, self.cols)] = self.w
        return out


def _union(parts: list[Weights]) -> np.ndarray:
    """The sorted columns of all parts (a handful each: a set beats np.unique's sort here)."""
    cols: set[int] = set()
    for part in parts:
        cols.update(part.cols.tolist())
    return np.array(sorted(cols), dtype=np.int64)


@numba.njit(cache=True, nogil=True)
def _select(mask: np.ndarray, a: np.ndarray, a_rows: np.ndarray, b: np.ndarray, b_rows: np.ndarray,
            out: np.ndarray) -> np.ndarray:
    """np.where(mask, a, b) with a's and b's rows placed at a_rows/b_rows of out (zero elsewhere):
    an if/else step's weights without building either side on the union first."""
    out[:] = 0.0
    for r in range(a_rows.size):
        row, src = out[a_rows[r]], a[r]
        for t in range(mask.size):
            row[t] = src[t] if mask[t] else row[t]
    for r in range(b_rows.size):
        row, src = out[b_rows[r]], b[r]
        for t in range(mask.size):
            row[t] = row[t] if mask[t] else src[t]
    return out


class Allocator:
    """Computes (and memoises) the allocation matrix of every plan step."""

    def __init__(
        self,
        market: Market,
        values: Mapping[Node, np.ndarray],
        start: int,
        keep: set[int] | None = None,
        elsewhere: Mapping[int, tuple[Allocator, Step]] | None = None,
    ) -> None:
        """`keep`: ids of the steps whose matrices are worth memoising (read more than once);
        None keeps all. Dropping the others bounds memory on trees of thousands of nodes.
        `elsewhere`: steps whose branch series (and volatilities) another Allocator makes, by
        step id: (that Allocator, its step) (a sweep's plan with its branch bits held reads its
        children's real series)."""
        self.keep = keep
        self.market = market
        self.values = values
        self.start = start
        self.n_days = market.n_days
        self.column = {t: j for j, t in enumerate(market.tickers)}
        self._alloc: dict[int, Weights] = {}
        self._holds: dict[tuple[str, ...], Weights] = {}
        self._active: dict[int, np.ndarray] = {}
        # one shared (read-only) array for the steps active on every day and one for none
        self._always, self._never = np.ones(self.n_days, dtype=bool), np.zeros(self.n_days, dtype=bool)
        self._always.flags.writeable = self._never.flags.writeable = False
        self._branch: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self._volatility: dict[tuple[int, int], np.ndarray] = {}
        self._elsewhere = elsewhere or {}
        self._state: dict[int, np.ndarray] = {}
        self._choices: dict[int, tuple[np.ndarray, Weights, Weights] | None] = {}

    @functools.cached_property
    def returns(self) -> np.ndarray:
        """Close-to-close returns for branch series, one row per ticker (made when the first
        branch series is); a period without a price earns 0 (spec §5)."""
        close = self.market.close
        with np.errstate(divide="ignore", invalid="ignore"):
            returns = close[1:] / close[:-1] - 1.0
        return np.ascontiguousarray(
            np.vstack([np.zeros((1, close.shape[1])), np.where(np.isfinite(returns), returns, 0.0)]).T)

    def empty(self) -> Weights:
        return Weights(np.empty(0, np.int64), np.zeros((0, self.n_days)))

    def allocation(self, step: Step) -> np.ndarray:
        """The step's days × market tickers matrix (a new array)."""
        found = self.weights(step)
        out = np.zeros((self.n_days, len(self.column)))
        out[:, found.cols] = found.w.T
        return out

    def weights(self, step: Step) -> Weights:
        """The step's weights on its own tickers, memoised for the steps worth keeping."""
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
            held = _held(step)
            if held is not None:
                found = self._always if held.tickers else self._never
            elif isinstance(step, Choose) and step.truth is not None:
                then, other = self.active(step.then), self.active(step.other)
                found = then if then is other else np.where(self.values[step.truth] == TRUE, then, other)
            elif isinstance(step, Combine) and step.weighting != "capped":
                actives = [self.active(child) for child in step.children]
                if any(a is self._always for a in actives):
                    found = self._always
                else:
                    found = np.zeros(self.n_days, dtype=bool)
                    for a in actives:
                        found |= a
            else:
                found = self.weights(step).w.any(axis=0)
            self._active[id(step)] = found
        return found

    def _allocate(self, step: Step) -> Weights:
        if isinstance(step, Hold):
            return self._hold(step)
        if isinstance(step, Combine):
            return self.combine(step)
        if isinstance(step, Choose):
            if step.truth is None:
                return self.weights(step.then)
            return self._where(self.values[step.truth] == TRUE, step.then, step.other)
        if isinstance(step, Count):
            return self._count(step)
        if isinstance(step, Rank):
            return self._rank(step)
        if isinstance(step, Blend):
            return self._blend(step)
        if isinstance(step, Latch):
            return self._where(self.latch_state(step), step.then, step.other)
        raise TypeError(f"unknown plan step {type(step).__name__}")

    def _hold(self, step: Hold) -> Weights:
        """Equal weights on the position's tickers every day, one matrix per ticker set."""
        out = self._holds.get(step.tickers)
        if out is None:
            cols = np.array(sorted(self.column[t] for t in step.tickers), dtype=np.int64)
            row = np.full(cols.size, 1.0 / len(step.tickers)) if step.tickers else np.zeros(0)
            out = Weights(cols, np.broadcast_to(row[:, None], (cols.size, self.n_days)))
            self._holds[step.tickers] = out
        return out

    def _where(self, mask: np.ndarray, then: Step, other: Step) -> Weights:
        a, b = self.weights(then), self.weights(other)
        cols = _union([a, b])
        out = np.empty((cols.size, self.n_days))
        return Weights(cols, _select(mask, a.w, np.searchsorted(cols, a.cols), b.w, np.searchsorted(cols, b.cols), out))

    # -- combining children ---------------------------------------------------------------------

    def combine(self, step: Combine, select: np.ndarray | None = None) -> Weights:
        """Spec §3.1–§3.2 per day: only active (and, for a function node, selected: a children ×
        days mask) children."""
        if not step.children:
            return self.empty()
        if len(step.children) == 1 and select is None and step.weighting != "capped":
            return self.weights(step.children[0])  # weight 1 when active, nothing otherwise
        if step.weighting == "equal":
            return self._equal(step, select)
        # Per-child rows (children × days): each child's weights are one contiguous row.
        allocs = [self.weights(c) for c in step.children]
        active = np.stack([self.active(c) for c in step.children])
        if select is not None:
            active &= select
        count = active.sum(axis=0)
        with np.errstate(divide="ignore", invalid="ignore"):
            equal = np.where(active, 1.0 / count, 0.0)
        weights = equal
        excess = None
        if step.weighting == "defined":
            raw = np.array([1.0 if w is None else float(w) for w in step.child_windows])[:, None]
            total = _ordered_sum(np.where(active, raw, 0.0))
            with np.errstate(divide="ignore", invalid="ignore"):
                weights = np.where(total > 0, np.where(active, raw / total, 0.0), equal)
        elif step.weighting in ("inverse", "pro"):
            sigma = np.stack([self.branch_volatility(c, step.vol_window) for c in step.children])
            usable = np.all(~active | (np.isfinite(sigma) & (sigma > 0)), axis=0) & (count > 1)
            with np.errstate(divide="ignore", invalid="ignore"):
                raw = np.where(active, 1.0 / sigma if step.weighting == "inverse" else sigma, 0.0)
                raw = np.where(usable, raw, 0.0)
                total = _ordered_sum(raw)
                weights = np.where(usable, raw / total, equal)
        elif step.weighting == "capped":
            caps = np.array([np.inf if w is None else w / 100.0 for w in step.child_windows])[:, None]
            weights = np.where(active, np.minimum(equal, caps), 0.0)
            excess = _ordered_sum(equal - weights)
        fallback = self.column[step.fallback] if excess is not None and step.fallback else None
        parts = allocs + ([Weights(np.array([fallback]), np.empty((1, 0)))] if fallback is not None else [])
        cols = _union(parts)
        out = np.zeros((cols.size, self.n_days))
        for i, alloc in enumerate(allocs):
            # each of the child's tickers is one row of the union: added there, nowhere else
            for row, at in zip(alloc.w, np.searchsorted(cols, alloc.cols).tolist()):
                out[at] += weights[i] * row
        if fallback is not None:
            out[np.searchsorted(cols, fallback)] += excess
        return Weights(cols, out)

    def _equal(self, step: Combine, select: np.ndarray | None) -> Weights:
        """`combine` for equal weights, without a children × days weight matrix: each child adds
        1/count times its weights, in child order. A child that chooses per day between two
        constant allocations (an if/else over positions, the leaves of most trees) is never
        built, unless a function node's selection gates it: runs of them are added by one kernel
        from their truth rows."""
        n = self.n_days
        actives = [self.active(c) for c in step.children]
        if select is not None:
            actives = [a & chosen for a, chosen in zip(actives, select)]
        count = np.zeros(n, dtype=np.int64)
        always = 0
        for a in actives:
            if a is self._always:
                always += 1
            elif a is not self._never:
                count += a
        with np.errstate(divide="ignore"):
            inv = 1.0 / (count + always)
        leaves = select is None  # under a selection every child is gated: none is a plain leaf
        parts = [(self._choice(c) if leaves else None) or self.weights(c) for c in step.children]
        cols = _union([w for part in parts for w in (part[1:] if isinstance(part, tuple) else (part,))])
        out = np.zeros((cols.size, n))
        run: list[tuple[np.ndarray, Weights, Weights]] = []

        def add_run() -> None:
            if run:
                _add_choices(np.stack([r[0] for r in run]), inv, *_constant_rows([r[1] for r in run], cols),
                             *_constant_rows([r[2] for r in run], cols), out)
                run.clear()

        for part, active in zip(parts, actives):
            if isinstance(part, tuple):
                run.append(part)
                continue
            add_run()  # the leaves before this child first: children add in order
            weight = inv if active is self._always else np.where(active, inv, 0.0)
            for row, at in zip(part.w, np.searchsorted(cols, part.cols).tolist()):
                out[at] += weight * row
        add_run()
        return Weights(cols, out)

    def _choice(self, step: Step) -> tuple[np.ndarray, Weights, Weights] | None:
        """(truth row, then, other) of an if/else between two allocations constant over days and
        each active on every day or none: `_equal` adds it from these (faster than adding its
        rows even where they are built, as for a step many programs of a sweep share); None
        for any other step."""
        if not isinstance(step, Choose) or step.truth is None:
            return None
        if id(step) in self._choices:
            return self._choices[id(step)]
        found = self._choices[id(step)] = self._choice_of(step)
        return found

    def _choice_of(self, step: Choose) -> tuple[np.ndarray, Weights, Weights] | None:
        sides = []
        for side in (step.then, step.other):
            held = _held(side)
            if held is not None:  # most leaves: a position, alone in its slot
                w = self._hold(held)
            else:
                w = self.weights(side)
                if (w.w.shape[1] > 1 and w.w.strides[1] != 0) or self.active(side) is not (
                        self._always if w.cols.size else self._never):
                    return None
            sides.append(w)
        return self.values[step.truth], sides[0], sides[1]

    def _count(self, step: Count) -> Weights:
        if not step.items:
            return self.weights(step.then)
        truths = np.stack([
            np.full(self.n_days, TRUE) if item is None else self.values[item] for item in step.items
        ], axis=1)
        n_true = (truths == TRUE).sum(axis=1)
        n_null = (truths == NULL).sum(axis=1)
        if step.quantifier == "ladder":
            rungs = {rung: self.weights(combine) for rung, combine in step.ladder.items()}
            then, other = self.weights(step.then), self.weights(step.other)
            cols = _union([then, other, *rungs.values()])
            out = np.where(n_true > 0, then.on(cols), other.on(cols))
            for rung, combine in step.ladder.items():
                active = np.zeros(self.n_days, dtype=bool)
                for child in combine.children:
                    active |= self.active(child)
                out = np.where((n_true == rung) & active, rungs[rung].on(cols), out)
            return Weights(cols, out)
        k, n = len(step.items), step.n
        passed = {
            "any": n_true >= 1,
            "all": (n_true == k) & (n_null == 0),
            "none": (n_true == 0) & (n_null == 0),
            "exactly": n_true == n,
            "atLeast": n_true >= n,
            "atMost": n_true <= n,
        }[step.quantifier]
        return self._where(passed, step.then, step.other)

    def _rank(self, step: Rank) -> Weights:
        if not step.children:
            return self.empty()
        scores = np.stack([self.values[s] for s in step.scores], axis=1)  # days × children
        active = np.stack([self.active(c) for c in step.children], axis=1)
        selected = _best(scores, active, step.top, max(0, min(step.bottom, len(step.children))))
        return self.combine(step.combine, select=selected)

    def _blend(self, step: Blend) -> Weights:
        v = self.values[step.value]
        lo, hi = step.low, step.high
        if abs(hi - lo) < 1e-12:
            b = np.where(np.isfinite(v), 0.5, 0.0)
        else:
            with np.errstate(invalid="ignore"):
                b = np.where(np.isfinite(v), np.clip((v - lo) / (hi - lo), 0.0, 1.0), 0.0)
        then, other = self.weights(step.then), self.weights(step.other)
        cols = _union([then, other])
        return Weights(cols, (1.0 - b) * then.on(cols) + b * other.on(cols))

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
        if cached is None and id(step) in self._elsewhere:
            other, same = self._elsewhere[id(step)]
            return other.branch_series(same)
        if cached is None:
            alloc = self.weights(step)
            first = step.warmup
            returns = np.full(self.n_days, np.nan)
            equity = np.full(self.n_days, np.nan)
            if first < self.n_days:
                # summed ticker by ticker in market order, as the reference does, so equal
                # branches give bit-equal equities (ties in rankings must break the same way)
                daily = np.zeros(self.n_days - first - 1)
                for row, j in zip(alloc.w, alloc.cols.tolist()):
                    daily = daily + row[first:-1] * self.returns[j, first + 1 :]
                returns[first + 1 :] = daily
                equity[first] = 1.0
                equity[first + 1 :] = np.cumprod(1.0 + daily)
            cached = (equity, returns)
            self._branch[id(step)] = cached
        return cached

    def branch_volatility(self, step: Step, window: int) -> np.ndarray:
        """Population std of the step's branch returns over the last `window` days (NaN if any
        is missing). Each window is summed first day to last, as the reference adds: NumPy's
        pairwise sum differs in the last bits, and pro/inverse weights that differ in the last
        bits make branch equities, and so near-tied rankings of them, part ways."""
        if id(step) in self._elsewhere:
            other, same = self._elsewhere[id(step)]
            return other.branch_volatility(same, window)
        out = self._volatility.get((id(step), window))
        if out is None:
            _, returns = self.branch_series(step)
            out = self._volatility[(id(step), window)] = np.full(self.n_days, np.nan)
            if window <= self.n_days:
                view = np.lib.stride_tricks.sliding_window_view(returns, window)
                mean = _ordered_sum(view.T) / window
                out[window - 1 :] = np.sqrt(_ordered_sum(((view - mean[:, None]) ** 2).T) / window)
        return out


def _held(step: Step) -> Hold | None:
    """The position of a step that holds one on every day it is active: a Hold, or a slot (not
    capped) whose one child is a Hold, which gets weight 1."""
    if isinstance(step, Combine) and len(step.children) == 1 and step.weighting != "capped":
        step = step.children[0]
    return step if isinstance(step, Hold) else None


def _constant_rows(sides: list[Weights], cols: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Constant allocations as CSR (start of each, row in `cols`, weight), for `_add_choices`."""
    starts = np.zeros(len(sides) + 1, dtype=np.int64)
    starts[1:] = np.cumsum([w.cols.size for w in sides])
    rows = np.searchsorted(cols, np.concatenate([w.cols for w in sides]))
    values = np.concatenate([w.w[:, 0] if w.w.shape[1] else np.zeros(w.cols.size) for w in sides])
    return starts, rows.astype(np.int64), values.astype(np.float64)


@numba.njit(cache=True, nogil=True)
def _add_choices(truths: np.ndarray, inv: np.ndarray, a_start: np.ndarray, a_row: np.ndarray,
                 a_value: np.ndarray, b_start: np.ndarray, b_row: np.ndarray, b_value: np.ndarray,
                 out: np.ndarray) -> None:
    """Child by child, in order: out += inv * (the `then` allocation where its truth is TRUE,
    else the `other` one): what adding each child's np.where-built weights gives, to the bit
    (the side not chosen adds +0.0)."""
    for i in range(truths.shape[0]):
        truth = truths[i]
        for j in range(a_start[i], a_start[i + 1]):
            row, v = out[a_row[j]], a_value[j]
            for t in range(inv.size):
                row[t] += inv[t] * v if truth[t] == 1 else 0.0
        for j in range(b_start[i], b_start[i + 1]):
            row, v = out[b_row[j]], b_value[j]
            for t in range(inv.size):
                row[t] += 0.0 if truth[t] == 1 else inv[t] * v


def _best(scores: np.ndarray, active: np.ndarray, top: bool, bottom: int) -> np.ndarray:
    """Children × days: from days × children scores and activity, the `bottom` best active
    children with a finite score on each day (`best_places`)."""
    return best_places(scores, active, top, bottom) < bottom


@numba.njit(cache=True, nogil=True)
def best_places(scores: np.ndarray, active: np.ndarray, top: bool, bottom: int) -> np.ndarray:
    """Children × days int32: from days × children scores and activity, each child's place
    among the `bottom` best active children with a finite score that day (0: the best), `bottom`
    where it is not among them; best = highest score when `top`, else lowest; equal scores rank
    in child order (a stable sort's order), so the b best for any b < `bottom` are the children
    placed below b. One pass over the children per day keeps the best so far, sorted."""
    n, k = scores.shape
    out = np.full((k, n), bottom, dtype=np.int32)
    best = np.empty(max(bottom, 1), dtype=np.int64)
    for t in range(n):
        day, on = scores[t], active[t]
        m = 0
        for i in range(k):
            x = day[i]
            if not on[i] or not np.isfinite(x):
                continue
            p = m  # after every kept child that ranks before it or ties with it
            while p > 0 and (x > day[best[p - 1]] if top else x < day[best[p - 1]]):
                p -= 1
            if p >= bottom:
                continue
            for q in range(min(m, bottom - 1), p, -1):
                best[q] = best[q - 1]
            best[p] = i
            m = min(m + 1, bottom)
        for q in range(m):
            out[best[q], t] = q
    return out


def _ordered_sum(rows: np.ndarray) -> np.ndarray:
    """Column sums of rows (children × days, or a window's days × windows) added first to last,
    as the reference adds them."""
    total = np.zeros(rows.shape[1])
    for row in rows:
        total = total + row
    return total
