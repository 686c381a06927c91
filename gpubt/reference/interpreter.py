"""The oracle: walks the strategy tree day by day, exactly as spec §2–§5 read.

Nothing here is shared with the compiled path except the schema and the market: indicators come
from `reference.indicators` (plain loops), weighting and ranking are written out per day, and the
simulation (`reference.simulate`) is its own loop. It is slow on purpose: obvious beats clever.

Allocations are dicts {ticker: weight}; an empty dict is "empty" (all cash). Conditions are
three-valued: True, False or None (Null).
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from gpubt.data.market import Bars, Market
from gpubt.errors import GpubtError
from gpubt.reference.formula_eval import evaluate_formula
from gpubt.reference.indicators import indicator
from gpubt.schema.catalogue import DATE_METRIC, resolve_metric
from gpubt.schema.formula import formula_lookback, formula_window
from gpubt.schema.models import Condition, FlowNode
from gpubt.schema.parse import Strategy, branch_slot, is_holdable

Alloc = dict[str, float]
Truth = bool | None


@dataclass
class Interpreter:
    """Evaluates one strategy on one market. `allocation(node, t)` is the node's allocation decided
    at the close of day t; everything is memoised per node object, so a branch series or an
    altExit state is computed once for all days."""

    strategy: Strategy
    market: Market
    start: int = 0  # the backtest's first decision day; altExit states advance from here
    _alloc: dict[tuple[int, int], Alloc] = field(default_factory=dict)
    _series: dict[tuple, np.ndarray] = field(default_factory=dict)
    _branch: dict[tuple[int, str], tuple[np.ndarray, int]] = field(default_factory=dict)
    _state: dict[int, np.ndarray] = field(default_factory=dict)
    _warmup: dict[int, int] = field(default_factory=dict)

    @property
    def n_days(self) -> int:
        return self.market.n_days

    # -- allocations ----------------------------------------------------------------------------

    def allocation(self, node: FlowNode, t: int) -> Alloc:
        key = (id(node), t)
        cached = self._alloc.get(key)
        if cached is None:
            cached = self._evaluate(node, t)
            self._alloc[key] = cached
        return cached

    def _evaluate(self, node: FlowNode, t: int) -> Alloc:
        kind = node.kind
        if kind == "position":
            held = list(dict.fromkeys(p for p in node.positions if is_holdable(p)))
            return {p: 1.0 / len(held) for p in held} if held else {}
        if kind == "basic":
            return self._combine_slot(node, "next", t)
        if kind == "indicator":
            truth = self.lines(node, node.conditions, t)
            return self._combine_slot(node, "then" if truth is True else "else", t)
        if kind == "numbered":
            return self._numbered(node, t)
        if kind == "function":
            return self._function(node, t)
        if kind == "scaling":
            return self._scaling(node, t)
        if kind == "altExit":
            inside = self.alt_exit_state(node)[t]
            return self._combine_slot(node, "then" if inside else "else", t)
        if kind == "call":
            return self.allocation(self.strategy.request.call_chains[node.call_ref_id], t)
        raise GpubtError(f"unknown node kind {kind!r}", node.id)

    def _combine_slot(self, node: FlowNode, slot: str, t: int) -> Alloc:
        weighting, vol_window, fallback = node.slot_weighting(slot)
        return self.combine(node.slot(slot), weighting, vol_window, fallback, t)

    def combine(
        self,
        children: Sequence[FlowNode],
        weighting: str,
        vol_window: int,
        fallback: str | None,
        t: int,
    ) -> Alloc:
        """Spec §3.1–§3.2: only active children count; a child's cash stays cash."""
        active = [(c, a) for c in children if (a := self.allocation(c, t))]
        k = len(active)
        if k == 0:
            return {}
        weights = [1.0 / k] * k
        excess = 0.0
        if weighting == "defined":
            raw = [1.0 if c.window is None else float(c.window) for c, _ in active]
            total = sum(raw)
            if total > 0:
                weights = [w / total for w in raw]
        elif weighting in ("inverse", "pro") and k > 1:
            sigmas = [self.branch_volatility(c, vol_window, t) for c, _ in active]
            if all(s is not None and s > 0 for s in sigmas):
                raw = [1.0 / s if weighting == "inverse" else s for s in sigmas]  # type: ignore[operator]
                total = sum(raw)
                weights = [w / total for w in raw]
        elif weighting == "capped":
            for i, (c, _) in enumerate(active):
                if c.window is not None and weights[i] > c.window / 100.0:
                    excess += weights[i] - c.window / 100.0
                    weights[i] = c.window / 100.0
        out: Alloc = {}
        for w, (_, alloc) in zip(weights, active):
            for ticker, x in alloc.items():
                out[ticker] = out.get(ticker, 0.0) + w * x
        if excess > 0 and fallback:
            out[fallback] = out.get(fallback, 0.0) + excess
        return {k_: v for k_, v in out.items() if v != 0.0}

    def _numbered(self, node: FlowNode, t: int) -> Alloc:
        numbered = node.numbered
        items = numbered.items if numbered else ()
        if not items:
            return self._combine_slot(node, "then", t)
        truths = [
            self.lines(node, item.conditions, t, group=item.group_logic) for item in items
        ]
        n_true = sum(1 for x in truths if x is True)
        n_null = sum(1 for x in truths if x is None)
        q, n = numbered.quantifier, numbered.n  # type: ignore[union-attr]
        if q == "ladder":
            rung = f"ladder-{n_true}"
            if any(self.allocation(c, t) for c in node.slot(rung)):
                return self._combine_slot(node, rung, t)
            return self._combine_slot(node, "then" if n_true > 0 else "else", t)
        passed = {
            "any": n_true >= 1,
            "all": n_true == len(items) and n_null == 0,
            "none": n_true == 0 and n_null == 0,
            "exactly": n_true == n,
            "atLeast": n_true >= n,
            "atMost": n_true <= n,
        }[q]
        return self._combine_slot(node, "then" if passed else "else", t)

    def _function(self, node: FlowNode, t: int) -> Alloc:
        window = 14 if node.window is None else node.window
        scored: list[tuple[float, int, FlowNode]] = []
        for order, child in enumerate(node.slot("next")):
            if not self.allocation(child, t):
                continue
            tickers = [p for p in child.positions if is_holdable(p)]
            if child.kind == "position" and len(set(tickers)) == 1:
                series = self.metric_series(node.metric, tickers[0], window, node)
            else:
                series = self.metric_on_branch(node.metric, window, child)
            score = series[t]
            if math.isfinite(score):
                scored.append((score, order, child))
        descending = node.rank == "Top"
        scored.sort(key=lambda x: (-x[0] if descending else x[0], x[1]))
        chosen = [c for _, _, c in scored[: node.bottom]]
        weighting, vol_window, fallback = node.slot_weighting("next")
        return self.combine(chosen, weighting, vol_window, fallback, t)

    def _scaling(self, node: FlowNode, t: int) -> Alloc:
        v = self.metric_series(node.scale_metric, node.scale_ticker, node.scale_window, node)[t]
        lo, hi = node.scale_from, node.scale_to
        if not math.isfinite(v):
            b = 0.0
        elif abs(hi - lo) < 1e-12:
            b = 0.5
        else:
            b = min(1.0, max(0.0, (v - lo) / (hi - lo)))
        then, other = self._combine_slot(node, "then", t), self._combine_slot(node, "else", t)
        out: Alloc = {}
        for share, alloc in ((1.0 - b, then), (b, other)):
            for ticker, x in alloc.items():
                out[ticker] = out.get(ticker, 0.0) + share * x
        return {k: v for k, v in out.items() if v != 0.0}

    def alt_exit_state(self, node: FlowNode) -> np.ndarray:
        """True where the node is "in" after day t's update; out before the backtest start."""
        state = self._state.get(id(node))
        if state is None:
            state = np.zeros(self.n_days, dtype=bool)
            inside = False
            for t in range(self.start, self.n_days):
                if not inside:
                    if node.entry_conditions and self.lines(node, node.entry_conditions, t) is True:
                        inside = True
                elif node.exit_conditions and self.lines(node, node.exit_conditions, t) is True:
                    inside = False
                state[t] = inside
            self._state[id(node)] = state
        return state

    # -- conditions -----------------------------------------------------------------------------

    def lines(
        self, node: FlowNode, lines: Sequence[Condition], t: int, group: str | None = None
    ) -> Truth:
        """A list of condition lines (spec §2.1): OR of AND-terms, or all AND/OR with `group`."""
        if not lines:
            return True
        values = [self.condition(node, c, t) for c in lines]
        if group == "and":
            return _and(values)
        if group == "or":
            return _or(values)
        terms: list[list[Truth]] = []
        for i, (cond, value) in enumerate(zip(lines, values)):
            if i == 0 or cond.type == "or":
                terms.append([value])
            else:
                terms[-1].append(value)
        return _or([_and(term) for term in terms])

    def condition(self, node: FlowNode, cond: Condition, t: int) -> Truth:
        """One line with its forDays (spec §2.1)."""
        results = []
        for day in range(t, t - cond.for_days, -1):
            if day < 0:
                results.append(None)
                continue
            results.append(self._condition_on(node, cond, day))
        if any(r is False for r in results):
            return False
        if all(r is True for r in results):
            return True
        return None

    def _condition_on(self, node: FlowNode, cond: Condition, t: int) -> Truth:
        if cond.metric == DATE_METRIC:
            return self._date_condition(cond, t)
        left = self.metric_series(cond.metric, cond.ticker, cond.window, node)
        if cond.expanded:
            metric, ticker, window = cond.right
            right = self.metric_series(metric, ticker, window, node)
        else:
            right = np.full(self.n_days, cond.threshold)
        if cond.comparator in ("gt", "lt"):
            a, b = left[t], right[t]
            if not (math.isfinite(a) and math.isfinite(b)):
                return None
            return bool(a > b) if cond.comparator == "gt" else bool(a < b)
        if t == 0:
            return None
        a0, b0, a1, b1 = left[t - 1], right[t - 1], left[t], right[t]
        if not all(math.isfinite(x) for x in (a0, b0, a1, b1)):
            return None
        if cond.comparator == "crossAbove":
            return bool(a0 < b0 and a1 >= b1)
        return bool(a0 > b0 and a1 <= b1)

    def _date_condition(self, cond: Condition, t: int) -> bool:
        day = self.market.dates[t].astype(dt.date)
        today = (day.month, day.day)
        start = (cond.date_month, cond.date_day)
        end = (cond.date_to.month, cond.date_to.day) if cond.expanded and cond.date_to else start
        if start <= end:
            return start <= today <= end
        return today >= start or today <= end

    # -- series ---------------------------------------------------------------------------------

    def metric_series(self, metric: str, ticker: str, window: int, node: FlowNode) -> np.ndarray:
        """metric(window) of a market ticker, a ratio, or the holder's branch slot (spec §4–§5)."""
        slot = branch_slot(ticker)
        if slot is not None:
            return self.metric_on_branch(metric, window, node, slot)
        key = (metric, ticker, window)
        series = self._series.get(key)
        if series is None:
            series = self._compute(metric, self.market.bars(ticker), window)
            self._series[key] = series
        return series

    def metric_on_branch(
        self, metric: str, window: int, node: FlowNode, slot: str | None = None
    ) -> np.ndarray:
        key = (metric, id(node), slot, window)
        series = self._series.get(key)
        if series is None:
            equity, _ = self.branch_series(node, slot)
            bars = Bars(equity, equity, equity, equity, np.full(self.n_days, np.nan))
            series = self._compute(metric, bars, window)
            self._series[key] = series
        return series

    def _compute(self, metric: str, bars: Bars, window: int) -> np.ndarray:
        formula = self.strategy.custom(metric)
        if formula is not None:
            return evaluate_formula(formula, bars, formula_window(window), indicator)
        return indicator(resolve_metric(metric).name, bars, window)  # type: ignore[union-attr]

    def branch_series(self, node: FlowNode, slot: str | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(equity B, daily returns b) of a node, or of one slot of it, evaluated on every day as
        if always reached (spec §5): B = 1 on the sub-tree's warm-up day, NaN before."""
        key = (id(node), slot or "")
        cached = self._branch.get(key)
        if cached is None:
            children = node.slot(slot) if slot else (node,)
            first = self._slot_warmup(node, slot) if slot else self.warmup(node)
            weighting, vol_window, fallback = node.slot_weighting(slot) if slot else ("equal", 20, None)
            close = self.market.close
            col = {t: j for j, t in enumerate(self.market.tickers)}
            equity = np.full(self.n_days, np.nan)
            returns = np.full(self.n_days, np.nan)
            if first < self.n_days:
                equity[first] = 1.0
            for t in range(first + 1, self.n_days):
                held = (
                    self.combine(children, weighting, vol_window, fallback, t - 1)
                    if slot
                    else self.allocation(node, t - 1)
                )
                b = 0.0
                for ticker in sorted(held, key=col.__getitem__):  # market order: a fixed sum order
                    j = col[ticker]
                    r = close[t, j] / close[t - 1, j] - 1.0
                    if math.isfinite(r):
                        b += held[ticker] * r
                returns[t] = b
                equity[t] = equity[t - 1] * (1.0 + b)
            cached = (equity, returns)
            self._branch[key] = cached
        return cached

    def branch_volatility(self, node: FlowNode, window: int, t: int) -> float | None:
        """Population std of the node's branch returns over the last `window` days, or None."""
        _, returns = self.branch_series(node)
        if t - window + 1 < 0:
            return None
        sample = returns[t - window + 1 : t + 1]
        if not np.all(np.isfinite(sample)):
            return None
        mean = sum(sample) / window
        return math.sqrt(sum((x - mean) * (x - mean) for x in sample) / window)

    # -- warm-up --------------------------------------------------------------------------------

    def warmup(self, node: FlowNode) -> int:
        """First day on which the sub-tree can be decided (spec §6 without the 50-day minimum):
        every position ticker has a price and every condition, score, volatility and branch
        reference it can reach has its lookback."""
        cached = self._warmup.get(id(node))
        if cached is not None:
            return cached
        first = 0
        if node.kind == "position":
            for ticker in node.positions:
                if is_holdable(ticker):
                    first = max(first, self.market.first_index(ticker))
        for cond in _node_conditions(node):
            first = max(first, self._condition_warmup(node, cond))
        if node.kind == "function":
            window = 14 if node.window is None else node.window
            for child in node.slot("next"):
                tickers = [p for p in child.positions if is_holdable(p)]
                if child.kind == "position" and len(set(tickers)) == 1:
                    first = max(first, self._series_warmup(node.metric, tickers[0], window, node))
                else:
                    first = max(first, self.warmup(child) + self._lookback(node.metric, window))
        if node.kind == "scaling":
            first = max(
                first, self._series_warmup(node.scale_metric, node.scale_ticker, node.scale_window, node)
            )
        for slot in node.used_slots():
            first = max(first, self._slot_warmup(node, slot))
        if node.kind == "call":
            first = max(first, self.warmup(self.strategy.request.call_chains[node.call_ref_id]))
        self._warmup[id(node)] = first
        return first

    def _slot_warmup(self, node: FlowNode, slot: str) -> int:
        """Warm-up of a slot's children combined: each child's, plus the volatility window when
        inverse/pro weighting compares two or more of them. An empty slot is decided at once."""
        weighting, vol_window, _ = node.slot_weighting(slot)
        children = node.slot(slot)
        first = max((self.warmup(c) for c in children), default=0)
        if weighting in ("inverse", "pro") and len(children) > 1:
            first += vol_window
        return first

    def _condition_warmup(self, node: FlowNode, cond: Condition) -> int:
        if cond.metric == DATE_METRIC:
            return 0
        first = self._series_warmup(cond.metric, cond.ticker, cond.window, node)
        if cond.expanded:
            metric, ticker, window = cond.right
            first = max(first, self._series_warmup(metric, ticker, window, node))
        if cond.comparator in ("crossAbove", "crossBelow"):
            first += 1
        return first + cond.for_days - 1

    def _series_warmup(self, metric: str, ticker: str, window: int, node: FlowNode) -> int:
        slot = branch_slot(ticker)
        if slot is not None:
            base = self._slot_warmup(node, slot)
        elif "/" in ticker:
            a, _, b = ticker.partition("/")
            base = max(self.market.first_index(a), self.market.first_index(b))
        else:
            base = self.market.first_index(ticker)
        return base + self._lookback(metric, window)

    def _lookback(self, metric: str, window: int) -> int:
        formula = self.strategy.custom(metric)
        if formula is not None:
            return formula_lookback(formula, formula_window(window))
        return resolve_metric(metric).lookback(window)  # type: ignore[union-attr]


def _node_conditions(node: FlowNode) -> list[Condition]:
    """The condition lines a node of its kind evaluates."""
    if node.kind == "indicator":
        return list(node.conditions)
    if node.kind == "altExit":
        return list(node.entry_conditions) + list(node.exit_conditions)
    if node.kind == "numbered" and node.numbered is not None:
        return [c for item in node.numbered.items for c in item.conditions]
    return []


def _and(values: Sequence[Truth]) -> Truth:
    if any(v is False for v in values):
        return False
    if any(v is None for v in values):
        return None
    return True


def _or(values: Sequence[Truth]) -> Truth:
    if any(v is True for v in values):
        return True
    if any(v is None for v in values):
        return None
    return False
