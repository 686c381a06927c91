"""Column-graph nodes: one immutable `Node` type, interned so that equal means identical.

A node is an operation name, hashable parameters and input nodes. Nodes are only made through a
`Builder`, which keeps one instance per (op, params, inputs): building RSI(14) of SPY twice, in
one tree or across a thousand, returns the same object, so deduplication is free and equality is
identity. Every node is one column over the date axis: float64 (missing = null) for series,
nullable boolean (Kleene three-valued logic) for conditions.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from operator import itemgetter
from typing import Any

# op name -> (kind of result, number of inputs or None for any, meaning)
PRIMITIVES: dict[str, tuple[str, int | None, str]] = {
    # leaves
    "price": ("f", 0, "params (ticker, field): a market column; ratios are built with `ratio`"),
    "const": ("f", 0, "params (value,)"),
    "branch": ("f", 0, "params (key,): a branch equity series supplied by the allocation stage"),
    "date_between": ("b", 0, "params (from_month, from_day, to_month, to_day): calendar range, wraps the year end"),
    # element-wise arithmetic; a non-finite result is missing
    "add": ("f", 2, ""), "sub": ("f", 2, ""), "mul": ("f", 2, ""),
    "div": ("f", 2, "missing where the divisor is 0"),
    "pow": ("f", 2, ""), "min2": ("f", 2, ""), "max2": ("f", 2, ""),
    "neg": ("f", 1, ""), "abs": ("f", 1, ""), "log": ("f", 1, ""), "exp": ("f", 1, ""),
    "sqrt": ("f", 1, ""), "sign": ("f", 1, "-1, 0, 1"),
    "ratio": ("f", 2, "a/b, missing where b is 0 (spec §4.2)"),
    "where": ("f", 3, "inputs (cond, a, b): a where cond is True, else b (null cond -> b)"),
    "fill_null": ("f", 2, "inputs (x, y): y where x is missing"),
    "valid_from": ("f", 2, "inputs (x, anchor), params (offset,): missing before anchor's first valid index + offset"),
    # windows over the last n values (missing if any value in the window is missing)
    "shift": ("f", 1, "params (n,): x[t-n]"),
    "rolling_mean": ("f", 1, "params (n,)"),
    "rolling_sum": ("f", 1, "params (n,)"),
    "rolling_std": ("f", 1, "params (n,): population (ddof 0)"),
    "rolling_min": ("f", 1, "params (n,)"),
    "rolling_max": ("f", 1, "params (n,)"),
    "rolling_dot": ("f", 1, "params (weights,): sum of weights[i] * x[t-n+1+i]"),
    "rolling_dot_centered": ("f", 1, "params (weights,): sum of weights[i] * (x[t-n+1+i] - the window's mean). "
                             "Added for the regression slope: its uncentered form sum((i - m) x) cancels digits "
                             "(1e-12 relative on prices near 100), and near-ties between scale-equal branch "
                             "series then rank differently than the reference's centered sum"),
    "rolling_argmax_age": ("f", 1, "params (n,): days since the highest of the last n values (latest on ties)"),
    "rolling_argmin_age": ("f", 1, "params (n,): days since the lowest of the last n values (latest on ties)"),
    "rolling_max_drawdown": ("f", 1, "params (n,): max over the window of (running peak - x)/running peak"),
    "rolling_ulcer": ("f", 1, "params (n,): sqrt(mean((100 (x - running peak)/running peak)^2))"),
    "rolling_mad": ("f", 1, "params (n,): mean absolute deviation of the last n values around their own mean. "
                    "Added for CCI: each value is paired with its own window's mean, which rolling sums can "
                    "only express with one shifted copy per lag (O(n) nodes)"),
    "cum_sum": ("f", 1, "running sum from the first valid value (a missing day: missing, sum carried)"),
    "forward_fill": ("f", 1, "x, else its last present value (missing before the first). Added for ADX, which keeps "
                     "its value on a day whose DX is undefined: no window or recursion above can carry a value "
                     "over an unbounded run of such days"),
    # recursions (state carried over a missing input; output missing that day)
    "ewm": ("f", 1, "params (alpha, seed): missing until the `seed`-th present value, which gets the mean of "
            "the first `seed` present values; then e += alpha (x - e)"),
    "wilder_mean": ("f", 1, "params (n,): missing until the n-th present value, which gets the mean of the first n; "
                    "then e = (e (n - 1) + x)/n. Added for RSI and ATR: it is ewm(1/n, n) up to rounding, but "
                    "Stochastic RSI over a flat stretch is the stochastic of that rounding, so the catalogue's own "
                    "(TA-Lib's) arithmetic has to be a primitive to be reproduced"),
    "wilder_sum": ("f", 1, "params (n,): missing until the n-th present value, which gets the sum of the first n; "
                   "then s = s - s/n + x. Added for ADX: TA-Lib smooths +DM, -DM and TR as these sums, and "
                   "the DI ratios of n times a Wilder mean round differently (up to 6e-15 relative), which "
                   "could break a tie between scale-equal branch series the other way"),
    "ewm_var": ("f", 2, "inputs (x, alpha series), params (seed_offset,): e = x on the day `seed_offset` days before "
                "alpha's first present value (output there), then e += alpha_t (x_t - e)"),
    "laguerre_rsi": ("f", 1, "params (gamma,): Ehlers Laguerre RSI on a 0-100 scale (50 when flat), filter state 0 "
                     "before the first value"),
    # conditions (nullable boolean, Kleene logic)
    "gt": ("b", 2, "null if either side is missing"), "lt": ("b", 2, ""),
    "ge": ("b", 2, ""), "le": ("b", 2, ""),
    "and": ("b", None, "Kleene AND"), "or": ("b", None, "Kleene OR"), "not": ("b", 1, ""),
    "null_if_any_missing": ("b", None, "inputs (cond, *values): null where any value is missing"),
    "rolling_all": ("b", 1, "params (n,): Kleene AND of the last n days; days before the first count as null (so any False -> False)"),
    "lines": ("b", None, "params (terms): a condition list fused, OR of Kleene-AND terms of lines; read only by the "
              "allocation plan (gpubt.ir.lines)"),
}


_NAN = float("nan")  # one NaN object: NaN != NaN, but tuples compare identical objects as equal


class Node:
    """One column of the graph. Made by `Builder.node`; never constructed directly."""

    # Equality is identity (interning makes equal nodes one object), so hashing and comparing
    # are object's own: no Python call per dict lookup, of which a big graph makes ~100,000.
    __slots__ = ("op", "params", "inputs", "__weakref__")

    def __init__(self, op: str, params: tuple[Any, ...], inputs: tuple[Node, ...]) -> None:
        # the slots' own descriptors bypass the immutability guard while constructing
        _OP(self, op)
        _PARAMS(self, params)
        _INPUTS(self, inputs)

    def __setattr__(self, name: str, value: Any) -> None:
        if hasattr(self, "inputs"):
            raise AttributeError("graph nodes are immutable")
        object.__setattr__(self, name, value)

    @property
    def kind(self) -> str:
        """'f' for a float series, 'b' for a three-valued condition."""
        return PRIMITIVES[self.op][0]

    def __repr__(self) -> str:
        params = ", ".join(map(repr, self.params))
        return f"{self.op}({params}{'; ' if params and self.inputs else ''}{len(self.inputs)} in)"


_OP, _PARAMS, _INPUTS = (getattr(Node, name).__set__ for name in ("op", "params", "inputs"))


class Builder:
    """The intern table: `node()` returns the one existing node equal to what is asked for."""

    def __init__(self) -> None:
        self._table: dict[tuple[Any, ...], Node] = {}
        self.requests = 0

    def node(self, op: str, params: Iterable[Any] = (), inputs: Iterable[Node] = ()) -> Node:
        # looked up first, checked only when new: a compile asks for tens of thousands of nodes,
        # most of them already made (the key's nodes hash and compare by identity)
        if type(params) is not tuple:
            params = tuple(params)
        if type(inputs) is not tuple:
            inputs = tuple(inputs)
        self.requests += 1
        found = self._table.get((op, params, inputs))
        if found is not None:
            return found
        spec = PRIMITIVES.get(op)
        if spec is None:
            raise ValueError(f"unknown primitive {op!r}")
        if spec[1] is not None and len(inputs) != spec[1]:
            raise ValueError(f"{op} takes {spec[1]} inputs, got {len(inputs)}")
        for p in params:
            if p != p:  # only NaN differs from itself: one NaN object, so equal keys stay equal
                params = tuple(_NAN if q != q else q for q in params)
                found = self._table.get((op, params, inputs))
                if found is not None:
                    return found
                break
        found = self._table[(op, params, inputs)] = Node(op, params, inputs)
        return found

    def replay(self, recording: Recording, nodes: list[Node]) -> None:
        """Requests made through `node` once already (`record`), made again: each step appends
        its node to `nodes` (the leaves first). Its checks and NaN canonicalisation were done when
        it was recorded, so none is redone; counts no request."""
        table = self._table
        find, append = table.get, nodes.append
        for op, params, one, many in recording:
            key = (op, params, many(nodes) if many is not None else ((nodes[one],) if one >= 0 else ()))
            found = find(key)
            if found is None:
                found = table[key] = Node(*key)
            append(found)

    def __len__(self) -> int:
        return len(self._table)

    def nodes(self) -> list[Node]:
        """Every node made, in the order made (inputs before readers)."""
        return list(self._table.values())

    @property
    def duplicates_removed(self) -> int:
        return self.requests - len(self._table)

    # short-hands used by the indicator expansions and the compiler
    def const(self, value: float) -> Node:
        return self.node("const", (float(value),))

    def price(self, ticker: str, field: str = "close") -> Node:
        if "/" in ticker:
            a, _, b = ticker.partition("/")
            return self.node("ratio", (), (self.price(a, field), self.price(b, field)))
        return self.node("price", (ticker, field))

    def __getattr__(self, op: str):  # b.add(x, y), b.shift(x, n=3) ...
        if op.startswith("_") or op not in PRIMITIVES:
            raise AttributeError(op)

        def make(*inputs: Node, **params: Any) -> Node:
            return self.node(op, tuple(params.values()), inputs)

        return make


# per step: (op, params, the position of its one input (−1: none), or a getter of its inputs)
Recording = tuple[tuple[str, tuple[Any, ...], int, "Callable[[list[Node]], tuple[Node, ...]] | None"], ...]


def record(steps: Sequence[tuple[str, tuple[Any, ...], tuple[int, ...]]]) -> Recording:
    """Steps (op, params, positions of the inputs among the leaves and the steps before) made
    ready for `Builder.replay`: the positions of two or more inputs become an `itemgetter`,
    which returns their tuple in one C call (a loop building each tuple took ~25 % longer)."""
    return tuple((op, params, inputs[0] if len(inputs) == 1 else -1, itemgetter(*inputs) if len(inputs) > 1 else None)
                 for op, params, inputs in steps)


def topological(outputs: Iterable[Node]) -> list[Node]:
    """Every node the outputs depend on, inputs before users (iterative: deep graphs are fine)."""
    order: list[Node] = []
    seen: set[Node] = set()  # nodes hash by identity
    for root in outputs:
        stack: list[tuple[Node, Iterator[Node]]] = [(root, iter(root.inputs))]
        if root in seen:
            continue
        seen.add(root)
        while stack:
            node, it = stack[-1]
            child = next(it, None)
            if child is None:
                stack.pop()
                order.append(node)
            elif child not in seen:
                seen.add(child)
                stack.append((child, iter(child.inputs)))
    return order
