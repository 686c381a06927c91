"""Request parsing: JSON → validated `Strategy`, or one `GpubtError` naming the JSON path.

Order matters: size and shape limits are checked on the raw JSON first (a 10,000-deep tree must
never reach a recursive validator), then types and ranges (pydantic), then the rules that need
the whole tree: unique ids, known metrics, calls that resolve without cycles, holdable positions.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pydantic

from gpubt.collector import paused
from gpubt.errors import GpubtError, LazyPath, json_path
from gpubt.schema.catalogue import DATE_METRIC, is_catalogue_name, resolve_metric
from gpubt.schema.formula import Formula, formula_lookback, formula_window, parse_formula
from gpubt.schema.models import BacktestRequest, Condition, CustomIndicator, FlowNode


@dataclass(frozen=True)
class Limits:
    """Safe defaults for what one request may ask; the API and CLI may raise or lower them."""

    max_request_bytes: int = 5_000_000
    max_depth: int = 64
    max_nodes: int = 10_000
    max_window: int = 5_000
    max_custom_indicators: int = 100


DEFAULT_LIMITS = Limits()

BRANCH_PREFIX = "branch:"
_SLOT_ALIASES = {"from": "then", "then": "then", "enter": "then", "to": "else", "else": "else", "exit": "else"}


def branch_slot(ticker: str) -> str | None:
    """The slot a `branch:<slot>` ticker refers to (spec §5), or None for a market ticker."""
    if not ticker.startswith(BRANCH_PREFIX):
        return None
    name = ticker[len(BRANCH_PREFIX) :]
    return _SLOT_ALIASES.get(name, name)


def is_holdable(ticker: str) -> bool:
    return bool(ticker) and ticker != "Empty"


@dataclass(frozen=True)
class Strategy:
    """A validated request: the tree, its call chains and parsed custom indicators, plus the
    market tickers the tree reads (positions, condition and ratio tickers, fallbacks); the
    benchmark is apart, since a benchmark without data is only a warning."""

    request: BacktestRequest
    formulas: dict[str, Formula] = field(default_factory=dict)  # by custom indicator name and id
    tickers: tuple[str, ...] = ()

    @property
    def root(self) -> FlowNode:
        return self.request.payload

    def custom(self, metric: str) -> Formula | None:
        """The custom formula a metric name stands for; a catalogue name always means the
        catalogue metric, even when a custom indicator has the same name."""
        if resolve_metric(metric) is not None:
            return None
        return self.formulas.get(metric)


@paused()  # pydantic models by the thousand, no cycles
def parse_request(body: bytes | str | dict[str, Any], limits: Limits = DEFAULT_LIMITS) -> Strategy:
    """Parse and validate a backtest request body (bytes, JSON text or an already-decoded dict)."""
    if isinstance(body, (bytes, str)):
        if len(body) > limits.max_request_bytes:
            raise GpubtError(
                f"request is {len(body):,} bytes; the limit is {limits.max_request_bytes:,}",
                status=413,
            )
        body = _loads(body, "")
    if not isinstance(body, dict):
        raise GpubtError(f"the request must be a JSON object, got {_json_type(body)}")
    body = dict(body)
    payload = body.get("payload")
    if payload is None:
        raise GpubtError("payload is required: the FlowNode tree as a JSON string or object", "payload")
    if isinstance(payload, str):
        if len(payload) > limits.max_request_bytes:
            raise GpubtError(
                f"payload is {len(payload):,} bytes; the limit is {limits.max_request_bytes:,}",
                "payload",
                status=413,
            )
        payload = _loads(payload, "payload")
    if not isinstance(payload, dict):
        raise GpubtError(f"payload must be a FlowNode object, got {_json_type(payload)}", "payload")
    body["payload"] = payload
    _check_shape(payload, "payload", limits)
    chains = body.get("callChains")
    if isinstance(chains, dict):
        for key, chain in chains.items():
            if isinstance(chain, dict):
                _check_shape(chain, json_path("callChains", key), limits)
    try:
        request = BacktestRequest.model_validate(body)
    except pydantic.ValidationError as exc:
        raise _from_pydantic(exc) from None
    return validate(request, limits)


def parse_strategy_file(text: str, limits: Limits = DEFAULT_LIMITS) -> Strategy:
    """A strategy file is either a full request (with `payload`) or a bare FlowNode tree."""
    data = _loads(text, "")
    if isinstance(data, dict) and "payload" not in data and "kind" in data:
        data = {"payload": data}
    return parse_request(data, limits)


def validate(request: BacktestRequest, limits: Limits = DEFAULT_LIMITS) -> Strategy:
    """The whole-tree rules of spec §2 and §8."""
    formulas = _custom_formulas(request.custom_indicators, limits)
    tickers: dict[str, None] = {}
    roots = [("payload", request.payload)] + [
        (json_path("callChains", k), v) for k, v in request.call_chains.items()
    ]
    for root_path, root in roots:
        seen: dict[str, str | LazyPath] = {}
        for path, node in walk(root, root_path):
            if node.id in seen:
                raise GpubtError(
                    f"duplicate node id {node.id!r} (also at {seen[node.id]}); ids must be unique",
                    json_path(path, "id"),
                )
            seen[node.id] = path
            check_node(node, path, request, formulas, tickers, limits)
    _check_calls(request)
    return Strategy(request=request, formulas=formulas, tickers=tuple(tickers))


def walk(node: FlowNode, path: str | LazyPath) -> Iterator[tuple[str | LazyPath, FlowNode]]:
    """Every node of a tree with its JSON path, parents before children (no recursion limit)."""
    stack = [(path, node)]
    while stack:
        path, node = stack.pop()
        yield path, node
        kids = []
        for slot, children in node.children.items():
            for i, child in enumerate(children or ()):
                if child is not None:
                    kids.append((LazyPath(path, "children", slot, i), child))
        stack.extend(reversed(kids))


def node_conditions(node: FlowNode) -> Iterator[tuple[tuple[str | int, ...], Condition]]:
    """Every condition line a node evaluates, with its path below the node's."""
    for name, lines in (
        ("conditions", node.conditions),
        ("entryConditions", node.entry_conditions),
        ("exitConditions", node.exit_conditions),
    ):
        for i, cond in enumerate(lines):
            yield (name, i), cond
    if node.numbered is not None:
        for i, item in enumerate(node.numbered.items):
            for j, cond in enumerate(item.conditions):
                yield ("numbered", "items", i, "conditions", j), cond


# -- rules ---------------------------------------------------------------------------------------


def check_node(
    node: FlowNode,
    path: str | LazyPath,
    request: BacktestRequest,
    formulas: dict[str, Formula],
    tickers: dict[str, None],
    limits: Limits,
) -> None:
    for slot in node.children:
        if slot not in ("next", "then", "else") and not slot.startswith("ladder-"):
            raise GpubtError(
                f"unknown child slot {slot!r}: use next, then, else or ladder-<k>",
                json_path(path, "children", slot),
            )
    if node.kind == "position":
        for i, ticker in enumerate(node.positions):
            if "/" in ticker or ticker.startswith(BRANCH_PREFIX):
                raise GpubtError(
                    f"{ticker!r} cannot be held: positions take plain tickers "
                    "(ratio and branch tickers are for conditions)",
                    json_path(path, "positions", i),
                )
            if is_holdable(ticker):
                tickers[ticker] = None
    if node.kind == "call":
        if not node.call_ref_id:
            raise GpubtError("a call node needs callRefId", json_path(path, "callRefId"))
        if node.call_ref_id not in request.call_chains:
            known = ", ".join(sorted(request.call_chains)) or "none"
            raise GpubtError(
                f"callRefId {node.call_ref_id!r} is not in callChains (known: {known})",
                json_path(path, "callRefId"),
            )
    for name in ("capped_fallback", "capped_fallback_then", "capped_fallback_else"):
        fallback = getattr(node, name)
        if fallback and is_holdable(fallback):
            tickers[fallback] = None
    if node.kind == "function":
        _check_metric(node.metric, path, "metric", formulas,
                      14 if node.window is None else node.window)
        _check_window(node.window or 0, path, "window", limits)
    if node.kind == "scaling":
        _check_metric(node.scale_metric, path, "scaleMetric", formulas, node.scale_window)
        _check_window(node.scale_window, path, "scaleWindow", limits)
        _check_ticker(node, node.scale_ticker, path, "scaleTicker", tickers)
    check_conditions(node, path, formulas, tickers, limits)


def check_conditions(
    node: FlowNode, path: str | LazyPath, formulas: dict[str, Formula], tickers: dict[str, None], limits: Limits
) -> None:
    """The rules of a node's condition lines; their market tickers are added to ``tickers``."""
    max_window = limits.max_window
    for where, cond in node_conditions(node):
        metric, ticker = cond.metric, cond.ticker
        if metric == DATE_METRIC:
            continue
        if (  # the usual line, decided without naming it: a catalogue metric of a plain ticker
            not cond.expanded and is_catalogue_name(metric) and cond.window <= max_window
            and cond.for_days <= max_window and ticker and "/" not in ticker
            and not ticker.startswith(BRANCH_PREFIX)
        ):
            tickers[ticker] = None
            continue
        cpath = LazyPath(path, *where)
        _check_metric(metric, cpath, "metric", formulas, cond.window)
        _check_window(cond.window, cpath, "window", limits)
        _check_window(cond.for_days, cpath, "forDays", limits)
        _check_ticker(node, ticker, cpath, "ticker", tickers)
        if cond.expanded:
            metric, ticker, window = cond.right
            _check_metric(metric, cpath, "rightMetric", formulas, window)
            _check_window(window, cpath, "rightWindow", limits)
            _check_ticker(node, ticker, cpath, "rightTicker", tickers)


# The checks below take the JSON path of a field as (the owner's path, the field's name) and join
# them only to report an error: a 10,000-line tree is 60,000 fields that pass.


def _check_metric(
    metric: str, owner: str | LazyPath, field: str, formulas: dict[str, Formula], window: int | None = None
) -> None:
    """A known metric; a custom formula must also accept the window it is used with."""
    if metric and resolve_metric(metric) is not None:
        return
    path = json_path(owner, field)
    if not metric:
        raise GpubtError("metric is required", path)
    formula = formulas.get(metric)
    if formula is None:
        raise GpubtError(
            f"unknown metric {metric!r}: use a catalogue metric (GET /api/metrics), "
            "a custom indicator's name or id, or 'Date'",
            path,
        )
    if window is not None:
        try:
            formula_lookback(formula, formula_window(window))
        except GpubtError as exc:
            raise GpubtError(exc.message, path, status=exc.status) from None


def _check_window(window: int, owner: str | LazyPath, field: str, limits: Limits) -> None:
    if window > limits.max_window:
        raise GpubtError(f"{window} is over the limit of {limits.max_window}", json_path(owner, field))


def _check_ticker(node: FlowNode, ticker: str, owner: str | LazyPath, field: str, tickers: dict[str, None]) -> None:
    slot = branch_slot(ticker) if ticker else None
    if ticker and slot is None and "/" not in ticker:  # a plain ticker, the common case
        tickers[ticker] = None
        return
    path = json_path(owner, field)
    if not ticker:
        raise GpubtError("ticker is required", path)
    if slot is not None:
        if not node.slot(slot):
            raise GpubtError(
                f"{ticker!r} refers to slot {slot!r}, which node {node.id!r} does not have",
                path,
            )
        return
    for part in ticker.split("/"):
        if not part:
            raise GpubtError(f"malformed ticker {ticker!r}: a ratio is written A/B", path)
        tickers[part] = None
    if ticker.count("/") > 1:
        raise GpubtError(f"malformed ticker {ticker!r}: a ratio has exactly two tickers", path)


def _custom_formulas(
    customs: tuple[CustomIndicator, ...], limits: Limits
) -> dict[str, Formula]:
    if len(customs) > limits.max_custom_indicators:
        raise GpubtError(
            f"{len(customs)} custom indicators; the limit is {limits.max_custom_indicators}",
            "customIndicators",
            status=413,
        )
    formulas: dict[str, Formula] = {}
    for i, custom in enumerate(customs):
        label = custom.name or custom.id or f"#{i}"
        try:
            formula = parse_formula(custom.formula, name=label)
        except GpubtError as exc:
            raise GpubtError(
                exc.message, json_path("customIndicators", i, "formula"), status=exc.status
            ) from None
        for key in (custom.name, custom.id):
            if key:
                formulas[key] = formula
    return formulas


def _check_calls(request: BacktestRequest) -> None:
    """Every call resolves, and no chain calls itself through any path (spec §3 call)."""

    def calls(node: FlowNode) -> list[str]:
        return [n.call_ref_id for _, n in walk(node, "") if n.kind == "call" and n.call_ref_id]

    edges = {key: calls(chain) for key, chain in request.call_chains.items()}
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done

    def visit(key: str, trail: list[str]) -> None:
        if state.get(key) == 2:
            return
        if state.get(key) == 1:
            cycle = " -> ".join(trail[trail.index(key) :] + [key])
            raise GpubtError(f"call cycle: {cycle}", json_path("callChains", key))
        state[key] = 1
        for target in edges.get(key, []):
            visit(target, trail + [key])
        state[key] = 2

    for key in edges:
        visit(key, [])


def _check_shape(tree: dict[str, Any], path: str | LazyPath, limits: Limits) -> None:
    """Depth and node count of a raw tree, without recursion (refused with 413)."""
    count = 0
    stack: list[tuple[Any, int, str | LazyPath]] = [(tree, 1, path)]
    while stack:
        node, depth, npath = stack.pop()
        if not isinstance(node, dict):
            continue
        count += 1
        if depth > limits.max_depth:
            raise GpubtError(
                f"tree is deeper than the limit of {limits.max_depth} levels", npath, status=413
            )
        if count > limits.max_nodes:
            raise GpubtError(
                f"tree has more than the limit of {limits.max_nodes:,} nodes", path, status=413
            )
        children = node.get("children")
        if isinstance(children, dict):
            for slot, kids in children.items():
                if isinstance(kids, (list, tuple)):
                    for i, kid in enumerate(kids):
                        stack.append((kid, depth + 1, LazyPath(npath, "children", slot, i)))


def _loads(text: bytes | str, path: str) -> Any:
    try:
        return json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        where = f" at line {exc.lineno} column {exc.colno}" if isinstance(exc, json.JSONDecodeError) else ""
        what = "payload" if path else "request body"
        raise GpubtError(f"{what} is not valid JSON{where}: {getattr(exc, 'msg', exc)}", path) from None
    except RecursionError:
        raise GpubtError("JSON nested too deeply", path, status=413) from None


def _json_type(value: Any) -> str:
    return {list: "an array", str: "a string", int: "a number", float: "a number", bool: "a boolean"}.get(
        type(value), "null" if value is None else type(value).__name__
    )


def _from_pydantic(exc: pydantic.ValidationError) -> GpubtError:
    """The first pydantic error as a GpubtError with the spec's path style."""
    err = exc.errors(include_url=False)[0]
    loc = [p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-"))]
    path = json_path(*loc)
    message = err["msg"]
    if err["type"] == "missing":
        message = f"{loc[-1]} is required" if loc else "field required"
    elif "input" in err and err["type"] not in ("missing",):
        try:
            shown = json.dumps(err["input"], default=str)
        except (RecursionError, ValueError):  # a too deep or cyclic value in a decoded dict
            shown = _json_type(err["input"])
        if len(shown) > 60:
            shown = shown[:57] + "..."
        message = f"{message} (got {shown})"
    return GpubtError(message, path)
