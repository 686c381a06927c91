"""A condition list as one graph node: the fused form of an if/else node's lines (spec §2.1).

The condition lines of one node (comparisons, crosses, date ranges, each with its forDays) and
their and/or grouping are one `lines` node whose inputs are the distinct series the lines read.
Its value is what the primitives give when the list is spelt out (`expand`): an OR of terms,
each a Kleene AND of lines. Written as one node, a tree of 10,000 lines is 10,000 small tuples
rather than 20,000–60,000 graph nodes, and a backend can compute each node's truth in one pass
over the days without materialising a boolean column per line (`gpubt.backends.lines`). A
backend without that kernel runs the expansion (`lowered`), which is the primitive form the
compiler wrote before this node existed.

params: a tuple of terms, each a tuple of lines ``(code, left, right, threshold, for_days)``:
``code`` one of `CODES`; ``left``/``right`` positions in the node's inputs (``right`` -1: the
constant ``threshold``); an ``is`` line reads a condition input (a date range) as it is.
"""

from __future__ import annotations

from collections.abc import Sequence

from gpubt.ir.nodes import Builder, Node

CODES = ("gt", "lt", "crossAbove", "crossBelow", "is")

_NAN = float("nan")  # one NaN object, so equal line lists intern to one node

# (code, left series, right series or None, threshold, for_days)
Line = tuple[str, Node, "Node | None", float, int]


def lines_node(builder: Builder, terms: Sequence[Sequence[Line]]) -> Node:
    """The `lines` node of an OR of AND-terms (a term of one line is that line)."""
    position: dict[Node, int] = {}
    packed = []
    for term in terms:
        lines = []
        for code, left, right, threshold, for_days in term:
            a = position.setdefault(left, len(position))
            b = -1 if right is None else position.setdefault(right, len(position))
            lines.append((code, a, b, _NAN if threshold != threshold else float(threshold), int(for_days)))
        packed.append(tuple(lines))
    return builder.node("lines", tuple(packed), tuple(position))


def expand(builder: Builder, node: Node) -> Node:
    """The same truth as primitives: comparisons, shifted comparisons for crosses, rolling_all
    for forDays, and/or joins."""
    b = builder
    inputs = node.inputs

    def line(code: str, left: int, right: int, threshold: float, for_days: int) -> Node:
        a = inputs[left]
        if code == "is":
            truth = a
        else:
            y = b.const(threshold) if right < 0 else inputs[right]
            if code in ("gt", "lt"):
                truth = b.node(code, (), (a, y))
            else:
                a0, y0 = b.node("shift", (1,), (a,)), b.node("shift", (1,), (y,))
                if code == "crossAbove":
                    parts = (b.node("lt", (), (a0, y0)), b.node("ge", (), (a, y)))
                else:
                    parts = (b.node("gt", (), (a0, y0)), b.node("le", (), (a, y)))
                truth = b.node("null_if_any_missing", (), (b.node("and", (), parts), a0, y0, a, y))
        if for_days > 1:
            truth = b.node("rolling_all", (for_days,), (truth,))
        return truth

    def join(op: str, parts: list[Node]) -> Node:
        return parts[0] if len(parts) == 1 else b.node(op, (), parts)

    return join("or", [join("and", [line(*spec) for spec in term]) for term in node.params])


def lowered(outputs: Sequence[Node]) -> list[Node]:
    """`outputs` with every `lines` node replaced by its expansion (position for position). Only
    the allocation plan reads a `lines` node, never another node, so replacing the outputs
    replaces them all."""
    builder = Builder()
    return [expand(builder, node) if node.op == "lines" else node for node in outputs]
