"""Where a swept parameter lives in the request (a node, a condition list, a line's field) and
the distinct settings of a group of parameters."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from gpubt.schema.models import BacktestRequest, Condition, FlowNode
from gpubt.sweep.spec import Parameter, SweepSpec


def node_at(request: BacktestRequest, path: Sequence[Any]) -> FlowNode:
    """The parsed node at a wire path ("payload"/"callChains", key, then "children", slot, i)."""
    if path[0] == "payload":
        node, rest = request.payload, path[1:]
    else:
        node, rest = request.call_chains[path[1]], path[2:]
    for i in range(0, len(rest), 3):
        node = node.children[rest[i + 1]][rest[i + 2]]
    return node


LATCH_LISTS = {"entryConditions": "entry_conditions", "exitConditions": "exit_conditions"}  # wire -> model


def owner_of(holder: tuple[Any, ...]) -> tuple[Any, ...]:
    """The wire path of the node that holds the condition list at ``holder``."""
    return holder[:-4] if holder[-4:-2] == ("numbered", "items") else holder[:-1]


def condition_list(request: BacktestRequest, holder: tuple[Any, ...]) -> tuple[FlowNode, tuple[Condition, ...],
                                                                                 str | None]:
    """(node, condition lines, group logic) of the condition list at its wire path ``holder``:
    an if/else node's ``conditions``, a numbered node's item's, or an altExit node's
    ``entryConditions`` or ``exitConditions``."""
    node = node_at(request, owner_of(holder))
    if holder[-4:-2] == ("numbered", "items"):
        item = node.numbered.items[holder[-2]]  # type: ignore[union-attr]
        return node, item.conditions, item.group_logic
    return node, getattr(node, LATCH_LISTS.get(holder[-1], "conditions")), None


def with_lines(node: FlowNode, holder: tuple[Any, ...], lines: tuple[Condition, ...]) -> FlowNode:
    """A copy of the node whose condition list at ``holder`` has these lines."""
    if holder[-4:-2] != ("numbered", "items"):
        return node.model_copy(update={LATCH_LISTS.get(holder[-1], "conditions"): lines})
    numbered = node.numbered
    items = list(numbered.items)  # type: ignore[union-attr]
    items[holder[-2]] = items[holder[-2]].model_copy(update={"conditions": lines})
    return node.model_copy(update={"numbered": numbered.model_copy(update={"items": tuple(items)})})  # type: ignore[union-attr]


def distinct_rows(indices: np.ndarray, sizes: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """np.unique(indices, axis=0, return_inverse=True) for value positions with these many
    values per column, through one integer key per row (sorting rows of a million variants
    as records is ten times slower)."""
    if math.prod(sizes) >= 2**62:
        distinct, inverse = np.unique(indices, axis=0, return_inverse=True)
        return distinct, inverse.ravel()
    keys, inverse = unique_keys(np.ravel_multi_index(tuple(indices.T), sizes))
    return np.stack(np.unravel_index(keys, sizes), axis=1), inverse


def settings_of(spec: SweepSpec, indices: np.ndarray, members: list[int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(the distinct settings of the parameters ``members``, each variant's setting, the first
    variant with each setting); one setting, variant 0's, where ``members`` is empty."""
    if not members:
        return np.zeros((1, 0), dtype=np.int64), np.zeros(spec.n_variants, dtype=np.int64), np.zeros(1, dtype=np.int64)
    settings, inverse = distinct_rows(indices[:, members], [len(spec.parameters[j].values) for j in members])
    example = np.full(len(settings), spec.n_variants)
    np.minimum.at(example, inverse, np.arange(spec.n_variants))
    return settings, inverse, example


def equal_runs(keys: np.ndarray) -> list[tuple[int, int]]:
    """(start, stop) of each run of equal values in sorted ``keys``."""
    edges = (np.flatnonzero(keys[1:] != keys[:-1]) + 1).tolist()
    return list(zip([0, *edges], [*edges, len(keys)])) if len(keys) else []


def unique_keys(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """np.unique(keys, return_inverse=True) for non-negative integers; through a table of seen
    keys when they span few values (counting a million keys instead of sorting them)."""
    span = int(keys.max()) + 1 if keys.size else 0
    if span > max(2**20, 4 * keys.size):
        distinct, inverse = np.unique(keys, return_inverse=True)
        return distinct, inverse.ravel()
    seen = np.zeros(span, dtype=bool)
    seen[keys] = True
    return np.flatnonzero(seen), (np.cumsum(seen) - 1)[keys]


def field_values(p: Parameter, raw: dict[str, Any]) -> tuple[int, str, list[Any]]:
    """(condition line, model field, each value as the model holds it) of a swept condition
    field. Each value is validated once, on its own line of the base: a line has no rule that
    ties two of its fields, so a setting is then a copy of the line with those values."""
    line = {k: v for k, v in raw.items() if k not in p.aliases}
    name = _FIELD_NAMES[p.path[-1]]
    values = [getattr(Condition.model_validate({**line, p.path[-1]: value}), name) for value in p.values]
    return int(p.path[-2]), name, values


_FIELD_NAMES = {field.alias or name: name for name, field in Condition.model_fields.items()}


def flow_paths(request: BacktestRequest) -> dict[int, tuple[FlowNode, tuple[Any, ...]]]:
    """Every node of the tree and the call chains, by id(), with its wire path (as `node_at`
    reads it)."""
    found: dict[int, tuple[FlowNode, tuple[Any, ...]]] = {}
    stack: list[tuple[FlowNode, tuple[Any, ...]]] = [
        (request.payload, ("payload",)), *((n, ("callChains", k)) for k, n in request.call_chains.items())]
    while stack:
        node, path = stack.pop()
        if id(node) not in found:
            found[id(node)] = (node, path)
            stack.extend((c, (*path, "children", slot, i)) for slot, kids in node.children.items()
                         for i, c in enumerate(kids or ()) if c is not None)
    return found
