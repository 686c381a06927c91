"""A thin operator layer over `Builder`, so expansions read like the formulas they implement.

`S` wraps a float node, `C` a condition node; every operator or method builds exactly one
primitive through the builder (numbers become `const` nodes), so the graph is still made of
interned primitives only. Python evaluates `100.0 * (a - b) / c` left to right, as the reference
does, which keeps the order of floating-point operations (and so the last bits) the same.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from gpubt.ir.nodes import Builder, Node

NAN = math.nan  # one object, so const(NaN) interns to one node (NaN != NaN, identity does)



class S:
    """A float series node with arithmetic operators."""

    __slots__ = ("b", "node")

    def __init__(self, b: Builder, node: Node) -> None:
        self.b = b
        self.node = node

    # -- building ------------------------------------------------------------------------------

    def _in(self, other: S | float | int) -> Node:
        if isinstance(other, S):
            return other.node
        if isinstance(other, Node):
            return other
        value = float(other)
        return self.b.const(NAN if math.isnan(value) else value)

    def _op(self, op: str, *inputs: Node, params: Sequence[object] = ()) -> S:
        return S(self.b, self.b.node(op, tuple(params), inputs))

    def _cmp(self, op: str, other: S | float | int) -> C:
        return C(self.b, self.b.node(op, (), (self.node, self._in(other))))

    # -- arithmetic (a non-finite result is missing) --------------------------------------------

    def __add__(self, o: S | float) -> S:
        return self._op("add", self.node, self._in(o))

    def __radd__(self, o: float) -> S:
        return self._op("add", self._in(o), self.node)

    def __sub__(self, o: S | float) -> S:
        return self._op("sub", self.node, self._in(o))

    def __rsub__(self, o: float) -> S:
        return self._op("sub", self._in(o), self.node)

    def __mul__(self, o: S | float) -> S:
        return self._op("mul", self.node, self._in(o))

    def __rmul__(self, o: float) -> S:
        return self._op("mul", self._in(o), self.node)

    def __truediv__(self, o: S | float) -> S:
        return self._op("div", self.node, self._in(o))

    def __rtruediv__(self, o: float) -> S:
        return self._op("div", self._in(o), self.node)

    def __pow__(self, o: S | float) -> S:
        return self._op("pow", self.node, self._in(o))

    def __rpow__(self, o: float) -> S:
        return self._op("pow", self._in(o), self.node)

    def __neg__(self) -> S:
        return self._op("neg", self.node)

    def __abs__(self) -> S:
        return self._op("abs", self.node)

    # -- comparisons (null when either side is missing) ------------------------------------------

    def __gt__(self, o: S | float) -> C:  # type: ignore[override]
        return self._cmp("gt", o)

    def __lt__(self, o: S | float) -> C:  # type: ignore[override]
        return self._cmp("lt", o)

    def __ge__(self, o: S | float) -> C:  # type: ignore[override]
        return self._cmp("ge", o)

    def __le__(self, o: S | float) -> C:  # type: ignore[override]
        return self._cmp("le", o)

    __hash__ = object.__hash__

    def present(self) -> C:
        """True where the value is present, null where it is missing."""
        return self._cmp("ge", self)

    # -- series operations -----------------------------------------------------------------------

    def shift(self, n: int) -> S:
        return self if n == 0 else self._op("shift", self.node, params=(int(n),))

    def _window(self, op: str, n: int) -> S:
        return self._op(op, self.node, params=(int(n),))

    def rolling_mean(self, n: int) -> S:
        return self if n == 1 else self._window("rolling_mean", n)

    def rolling_sum(self, n: int) -> S:
        return self if n == 1 else self._window("rolling_sum", n)

    def rolling_std(self, n: int) -> S:
        return self._window("rolling_std", n)

    def rolling_min(self, n: int) -> S:
        return self if n == 1 else self._window("rolling_min", n)

    def rolling_max(self, n: int) -> S:
        return self if n == 1 else self._window("rolling_max", n)

    def rolling_mad(self, n: int) -> S:
        return self._window("rolling_mad", n)

    def rolling_argmax_age(self, n: int) -> S:
        return self._window("rolling_argmax_age", n)

    def rolling_argmin_age(self, n: int) -> S:
        return self._window("rolling_argmin_age", n)

    def rolling_max_drawdown(self, n: int) -> S:
        return self._window("rolling_max_drawdown", n)

    def rolling_ulcer(self, n: int) -> S:
        return self._window("rolling_ulcer", n)

    def rolling_dot(self, weights: Sequence[float]) -> S:
        return self._op("rolling_dot", self.node, params=(tuple(float(w) for w in weights),))

    def rolling_dot_centered(self, weights: Sequence[float]) -> S:
        return self._op("rolling_dot_centered", self.node, params=(tuple(float(w) for w in weights),))

    def cum_sum(self) -> S:
        return self._op("cum_sum", self.node)

    def forward_fill(self) -> S:
        return self._op("forward_fill", self.node)

    def ewm(self, alpha: float, seed: int) -> S:
        return self._op("ewm", self.node, params=(float(alpha), int(seed)))

    def wilder_mean(self, n: int) -> S:
        return self._op("wilder_mean", self.node, params=(int(n),))

    def wilder_sum(self, n: int) -> S:
        return self._op("wilder_sum", self.node, params=(int(n),))

    def ewm_var(self, alpha: S, seed_offset: int) -> S:
        return self._op("ewm_var", self.node, alpha.node, params=(int(seed_offset),))

    def laguerre_rsi(self, gamma: float) -> S:
        return self._op("laguerre_rsi", self.node, params=(float(gamma),))

    def valid_from(self, anchor: S, offset: int) -> S:
        """Missing before the anchor's first present day + offset."""
        return self._op("valid_from", self.node, anchor.node, params=(int(offset),))

    def fill_null(self, other: S | float) -> S:
        return self._op("fill_null", self.node, self._in(other))


class C:
    """A three-valued condition node with Kleene `&`, `|`, `~`."""

    __slots__ = ("b", "node")

    def __init__(self, b: Builder, node: Node) -> None:
        self.b = b
        self.node = node

    def __and__(self, o: C) -> C:
        return C(self.b, self.b.node("and", (), (self.node, o.node)))

    def __or__(self, o: C) -> C:
        return C(self.b, self.b.node("or", (), (self.node, o.node)))

    def __invert__(self) -> C:
        return C(self.b, self.b.node("not", (), (self.node,)))


def where(cond: C, a: S | float, b: S | float) -> S:
    """a where cond is True, else b (a null condition gives b)."""
    ref = S(cond.b, cond.node)  # only to lift numbers through the same builder
    return ref._op("where", cond.node, ref._in(a), ref._in(b))


def max2(a: S, b: S | float) -> S:
    return a._op("max2", a.node, a._in(b))


def min2(a: S, b: S | float) -> S:
    return a._op("min2", a.node, a._in(b))


def log(x: S) -> S:
    return x._op("log", x.node)


def exp(x: S) -> S:
    return x._op("exp", x.node)


def sqrt(x: S) -> S:
    return x._op("sqrt", x.node)


def sign(x: S) -> S:
    return x._op("sign", x.node)


def masked(value: S | float, *likes: S) -> S:
    """`value` on the days where every `likes` series is present, missing elsewhere: a fallback
    constant (50 for a flat RSI, say) must not fill the warm-up or the days after the last price."""
    cond = likes[0].present()
    for like in likes[1:]:
        cond = cond & like.present()
    return where(cond, value, NAN)
