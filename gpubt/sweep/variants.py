"""Variant requests parsed from the base's parse: only the nodes a variant changes are validated.

A sweep's variants differ from the base in a few fields of a few nodes, so parsing each whole
(pydantic over every node, then every whole-tree rule) costs the tree's size per variant: ~7 ms
on a 1,000-node tree. Here the base is parsed once; a variant's changed nodes are validated by
pydantic with their (already valid) children passed in as models, their ancestors are copied
with the new children, and the node rules of spec §2 run on the changed nodes alone. No rule
ties a field to another node's (ids, call chains and the tree's shape are not parameters), so
the result equals `parse_request` of the variant's body, model for model, with the tickers in
the same order; the unchanged sub-trees are the base's own objects, which lets the compiler
reuse their plan steps across variants. Anything refused is parsed whole again, so a refusal
reads exactly as `parse_request` words it.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import pydantic

from gpubt.errors import GpubtError, json_path
from gpubt.schema.models import BacktestRequest, FlowNode
from gpubt.schema.parse import Limits, Strategy, check_node, parse_request

Path = tuple[str | int, ...]
# request fields the base's models stand in for (a variant never changes them)
_TREES = ("payload", "callChains", "call_chains", "customIndicators", "custom_indicators")


def node_path(field_path: Path) -> Path | None:
    """The path of the node a field path is in (a root, then ``children, slot, i`` steps), or
    None for a field of the request itself."""
    if not field_path or field_path[0] not in ("payload", "callChains"):
        return None
    end = 1 if field_path[0] == "payload" else 2
    while end + 2 < len(field_path) and field_path[end] == "children":
        end += 3
    return field_path[:end]


class VariantParser:
    """Parses the variants of one base request whose parameters set the given field paths."""

    def __init__(self, base: dict[str, Any], fields: Sequence[Path], limits: Limits) -> None:
        self.limits = limits
        self.strategy = parse_request(base, limits)  # the base must parse: its error otherwise
        request = self.strategy.request
        self.nodes = sorted({p for p in map(node_path, fields) if p is not None}, key=len, reverse=True)
        # every node that must be rebuilt when the changed ones are: them and their ancestors
        rebuilt = {p[:end] for p in self.nodes for end in range(len(p), 0, -3)}
        self.rebuilt = sorted((p for p in rebuilt if _is_node(p)), key=len, reverse=True)
        # the market tickers the nodes read, in `validate`'s walk order (the order
        # `Strategy.tickers` keeps): the runs of unchanged nodes between the changed ones, whose
        # tickers each variant finds again
        changed, self.runs = set(self.nodes), [[]]
        self.changed_order: list[Path] = []
        for path, node in _walk(request):
            if path in changed:
                self.changed_order.append(path)
                self.runs.append([])
                continue
            found: dict[str, None] = {}
            check_node(node, json_path(*path), request, self.strategy.formulas, found, limits)
            self.runs[-1].extend(found)

    def parse(self, body: dict[str, Any]) -> Strategy:
        """The variant whose request body is ``body`` (the base with the parameters set)."""
        try:
            return self._parse(body)
        except (GpubtError, pydantic.ValidationError):
            return parse_request(body, self.limits)  # the refusal, worded as for any request

    def _parse(self, body: dict[str, Any]) -> Strategy:
        base = self.strategy.request
        models: dict[Path, FlowNode] = {}
        changed = set(self.nodes)
        for path in self.rebuilt:  # children before their parents
            old = _model_at(base, path)
            children = {
                slot: None if kids is None else tuple(
                    None if kid is None else models.get((*path, "children", slot, i), kid)
                    for i, kid in enumerate(kids))
                for slot, kids in old.children.items()
            }
            if path in changed:
                models[path] = FlowNode.model_validate({**_raw_at(body, path), "children": children})
            else:
                models[path] = old.model_copy(update={"children": children})
        fields = {k: v for k, v in body.items() if k not in _TREES}
        request = BacktestRequest.model_validate({
            **fields,
            "payload": models.get(("payload",), base.payload),
            "callChains": {k: models.get(("callChains", k), chain) for k, chain in base.call_chains.items()},
            "customIndicators": base.custom_indicators,
        })
        tickers: list[str] = list(self.runs[0])
        for path, run in zip(self.changed_order, self.runs[1:]):
            found: dict[str, None] = {}
            check_node(models[path], json_path(*path), request, self.strategy.formulas, found, self.limits)
            tickers += found
            tickers += run
        return Strategy(request=request, formulas=self.strategy.formulas, tickers=tuple(dict.fromkeys(tickers)))


def _is_node(path: Path) -> bool:
    return (path[0] == "payload" and len(path) % 3 == 1) or (path[0] == "callChains" and len(path) % 3 == 2)


def _model_at(request: BacktestRequest, path: Path) -> FlowNode:
    node = request.payload if path[0] == "payload" else request.call_chains[str(path[1])]
    start = 1 if path[0] == "payload" else 2
    for k in range(start, len(path), 3):
        node = node.children[str(path[k + 1])][int(path[k + 2])]  # type: ignore[index,assignment]
    return node


def _raw_at(body: dict[str, Any], path: Path) -> dict[str, Any]:
    node: Any = body
    for key in path:
        node = node[key]
    return node  # type: ignore[no-any-return]


def _walk(request: BacktestRequest) -> Iterator[tuple[Path, FlowNode]]:
    """Every node with its path, in `gpubt.schema.parse.validate`'s order."""
    roots: list[tuple[Path, FlowNode]] = [(("payload",), request.payload)]
    roots += [(("callChains", key), chain) for key, chain in request.call_chains.items()]
    for root in roots:
        stack = [root]
        while stack:
            path, node = stack.pop()
            yield path, node
            kids = [((*path, "children", slot, i), child)
                    for slot, children in node.children.items() for i, child in enumerate(children or ())
                    if child is not None]
            stack.extend(reversed(kids))
