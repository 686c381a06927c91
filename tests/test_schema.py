"""Request parsing (spec §1, §2, §8): every malformed request is refused with the JSON path of the
culprit, the right status and a message that says what to change; every valid request parses to
the same model whatever its encoding; random damage never escapes as anything but a GpubtError."""

from __future__ import annotations

import copy
import json
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gpubt.errors import GpubtError
from gpubt.schema import Limits, parse_request

EXAMPLES = sorted((Path(__file__).parents[1] / "examples").glob("*.json"))
TOP_LEVEL = (
    "payload",
    "mode",
    "costBps",
    "cost_bps",
    "customIndicators",
    "callChains",
    "benchmark",
    "startDate",
    "endDate",
)
KINDS = ("basic", "function", "indicator", "numbered", "position", "call", "altExit", "scaling")


# -- builders ------------------------------------------------------------------------------------


def pos(node_id: str, *tickers: str, **extra: Any) -> dict[str, Any]:
    return {"id": node_id, "kind": "position", "positions": list(tickers), **extra}


def cond(**fields: Any) -> dict[str, Any]:
    """A valid condition line; a field given as None is removed."""
    line: dict[str, Any] = {
        "id": "c",
        "metric": "RSI",
        "window": 10,
        "ticker": "SPY",
        "comparator": "gt",
        "threshold": 50,
    }
    line.update(fields)
    return {k: v for k, v in line.items() if v is not None}


def ind(node_id: str, conditions: Any, then: list[Any], else_: list[Any], **extra: Any) -> dict[str, Any]:
    return {
        "id": node_id,
        "kind": "indicator",
        "conditions": conditions,
        "children": {"then": then, "else": else_},
        **extra,
    }


def basic(node_id: str, *kids: Any, **extra: Any) -> dict[str, Any]:
    return {"id": node_id, "kind": "basic", "children": {"next": list(kids)}, **extra}


def simple(**extra: Any) -> dict[str, Any]:
    """A small valid indicator tree; `extra` fields are set on the root."""
    return ind("root", [cond()], [pos("a", "SPY")], [pos("b", "TLT")], **extra)


def with_cond(**fields: Any) -> dict[str, Any]:
    """A request whose root has one condition line built from `fields`."""
    return {"payload": ind("root", [cond(**fields)], [pos("a", "SPY")], [pos("b", "TLT")])}


def numbered(**spec: Any) -> dict[str, Any]:
    block = {"quantifier": "any", "n": 0, "items": [{"id": "i1", "conditions": [cond()]}]}
    block.update(spec)
    return {
        "payload": {
            "id": "root",
            "kind": "numbered",
            "numbered": block,
            "children": {"then": [pos("a", "SPY")], "else": [pos("b", "TLT")]},
        }
    }


def function(**fields: Any) -> dict[str, Any]:
    node = {
        "id": "root",
        "kind": "function",
        "metric": "Cumulative Return",
        "window": 20,
        "rank": "Top",
        "bottom": 1,
        "children": {"next": [pos("a", "SPY"), pos("b", "TLT")]},
    }
    node.update(fields)
    return {"payload": node}


def call(ref: str | None, chains: dict[str, Any]) -> dict[str, Any]:
    node: dict[str, Any] = {"id": "root", "kind": "call"}
    if ref is not None:
        node["callRefId"] = ref
    return {"payload": node, "callChains": chains}


def chain_calling(target: str, node_id: str = "x") -> dict[str, Any]:
    return {"id": node_id, "kind": "call", "callRefId": target}


def deep_chain(depth: int) -> dict[str, Any]:
    """A `basic` chain `depth` nodes deep, built without recursion."""
    node: dict[str, Any] = pos(f"n{depth - 1}", "SPY")
    for i in range(depth - 2, -1, -1):
        node = basic(f"n{i}", node)
    return node


def deep_text(depth: int) -> str:
    """The JSON text of a request whose payload is `depth` nodes deep (built as a string)."""
    head = "".join(f'{{"id":"n{i}","kind":"basic","children":{{"next":[' for i in range(depth))
    return '{"payload":' + head + '{"id":"leaf","kind":"position","positions":["SPY"]}' + "]}}" * depth + "}"


def customs(*items: dict[str, Any], payload: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"payload": payload or simple(), "customIndicators": list(items)}


# -- the refusal table ---------------------------------------------------------------------------

DEEP_COND_TREE = ind(
    "root",
    [cond()],
    [ind("inner", [cond(id="ok"), cond(id="bad", window=-1)], [pos("a", "SPY")], [pos("b", "TLT")])],
    [pos("c", "BIL")],
)


def case(case_id: str, body: Any, path: str, status: int, needle: str, limits: Limits | None = None) -> Any:
    return pytest.param(body, path, status, needle, limits, id=case_id)


BAD = [
    # whole body
    case("body-not-json", b'{"payload": ', "", 400, "not valid JSON"),
    case("body-not-json-text", "mode=CC&payload=x", "", 400, "not valid JSON"),
    case("body-array", "[1, 2]", "", 400, "must be a JSON object"),
    case("body-array-dict-form", [{"payload": {}}], "", 400, "must be a JSON object"),
    case("payload-missing", {"mode": "CC"}, "payload", 400, "payload is required"),
    case("payload-null", {"payload": None}, "payload", 400, "payload is required"),
    case("payload-bad-json", {"payload": '{"id": "root", "kind": "basic",}'}, "payload", 400, "payload is not valid JSON"),
    case("payload-number", {"payload": 5}, "payload", 400, "FlowNode object"),
    case("payload-string-of-number", {"payload": "5"}, "payload", 400, "FlowNode object"),
    case("payload-array", {"payload": [simple()]}, "payload", 400, "FlowNode object"),
    # nodes
    case("node-without-id", {"payload": {"kind": "position", "positions": ["SPY"]}}, "payload.id", 400, "id is required"),
    case("node-empty-id", {"payload": pos("", "SPY")}, "payload.id", 400, "at least 1 character"),
    case(
        "child-without-id",
        {"payload": basic("root", {"kind": "position"})},
        "payload.children.next[0].id",
        400,
        "id is required",
    ),
    case("node-without-kind", {"payload": {"id": "root"}}, "payload.kind", 400, "kind is required"),
    case("unknown-kind", {"payload": {"id": "root", "kind": "portfolio"}}, "payload.kind", 400, "'altExit'"),
    case("kind-wrong-type", {"payload": {"id": "root", "kind": 3}}, "payload.kind", 400, "'basic'"),
    case(
        "children-slot-not-list",
        {"payload": {"id": "root", "kind": "basic", "children": {"next": pos("a", "SPY")}}},
        "payload.children.next",
        400,
        "valid tuple",
    ),
    case("children-not-object", {"payload": {"id": "root", "kind": "basic", "children": [pos("a", "SPY")]}}, "payload.children", 400, "valid dictionary"),
    case("child-not-object", {"payload": basic("root", "SPY")}, "payload.children.next[0]", 400, "valid dictionary"),
    case(
        "unknown-child-slot",
        {"payload": {"id": "root", "kind": "basic", "children": {"nxt": [pos("a", "SPY")]}}},
        "payload.children.nxt",
        400,
        "unknown child slot 'nxt'",
    ),
    case("positions-not-list", {"payload": {"id": "p", "kind": "position", "positions": "SPY"}}, "payload.positions", 400, "valid tuple"),
    case("position-not-string", {"payload": {"id": "p", "kind": "position", "positions": [7]}}, "payload.positions[0]", 400, "valid string"),
    case("position-ratio", {"payload": pos("p", "SPY/TLT")}, "payload.positions[0]", 400, "'SPY/TLT' cannot be held"),
    case(
        "position-branch-nested",
        {"payload": basic("root", pos("p", "SPY", "branch:then"))},
        "payload.children.next[0].positions[1]",
        400,
        "'branch:then' cannot be held",
    ),
    case("unknown-weighting", {"payload": basic("root", pos("a", "SPY"), weighting="volatility")}, "payload.weighting", 400, "'inverse'"),
    case("unknown-weighting-then", {"payload": simple(weightingThen="median")}, "payload.weightingThen", 400, "'capped'"),
    case("volwindow-zero", {"payload": basic("root", pos("a", "SPY"), weighting="inverse", volWindow=0)}, "payload.volWindow", 400, "greater than or equal to 1"),
    case("volwindow-fraction", {"payload": basic("root", pos("a", "SPY"), volWindow=14.5)}, "payload.volWindow", 400, "fractional part"),
    case("volwindow-else-negative", {"payload": simple(volWindowElse=-3)}, "payload.volWindowElse", 400, "greater than or equal to 1"),
    # condition lines
    case("window-negative-deep", {"payload": DEEP_COND_TREE}, "payload.children.then[0].conditions[1].window", 400, "greater than or equal to 0"),
    case("window-fraction", with_cond(window=14.5), "payload.conditions[0].window", 400, "fractional part"),
    case("window-boolean", with_cond(window=True), "payload.conditions[0].window", 400, "boolean"),
    case("window-string", with_cond(window="ten"), "payload.conditions[0].window", 400, "valid integer"),
    case("window-over-limit", with_cond(window=6000), "payload.conditions[0].window", 400, "over the limit of 5000"),
    case("for-days-zero", with_cond(forDays=0), "payload.conditions[0].forDays", 400, "greater than or equal to 1"),
    case("unknown-comparator", with_cond(comparator="gte"), "payload.conditions[0].comparator", 400, "'crossAbove'"),
    case("unknown-condition-type", with_cond(type="xor"), "payload.conditions[0].type", 400, "'or'"),
    case("unknown-metric", with_cond(metric="Relative Strenght Index"), "payload.conditions[0].metric", 400, "'Relative Strenght Index'"),
    case("metric-missing", with_cond(metric=None), "payload.conditions[0].metric", 400, "metric is required"),
    case("ticker-missing", with_cond(ticker=None), "payload.conditions[0].ticker", 400, "ticker is required"),
    case("ticker-three-parts", with_cond(ticker="A/B/C"), "payload.conditions[0].ticker", 400, "'A/B/C'"),
    case("ticker-half-ratio", with_cond(ticker="SPY/"), "payload.conditions[0].ticker", 400, "ratio is written A/B"),
    case("branch-unknown-slot", with_cond(ticker="branch:foo"), "payload.conditions[0].ticker", 400, "slot 'foo'"),
    case(
        "branch-empty-slot",
        {"payload": ind("root", [cond(ticker="branch:else")], [pos("a", "SPY")], [])},
        "payload.conditions[0].ticker",
        400,
        "does not have",
    ),
    case(
        "right-metric-unknown",
        with_cond(expanded=True, rightMetric="Nonsense MA"),
        "payload.conditions[0].rightMetric",
        400,
        "'Nonsense MA'",
    ),
    case("date-month-13", with_cond(metric="Date", dateMonth=13), "payload.conditions[0].dateMonth", 400, "less than or equal to 12"),
    case(
        "date-to-day-zero",
        with_cond(metric="Date", expanded=True, dateTo={"month": 4, "day": 0}),
        "payload.conditions[0].dateTo.day",
        400,
        "greater than or equal to 1",
    ),
    case("threshold-text", with_cond(threshold="abc"), "payload.conditions[0].threshold", 400, "valid number"),
    case("threshold-nan-string", with_cond(threshold="NaN"), "payload.conditions[0].threshold", 400, "finite"),
    case("threshold-infinity-string", with_cond(threshold="-Infinity"), "payload.conditions[0].threshold", 400, "finite"),
    case(
        "threshold-nan-literal",
        '{"payload": {"id": "r", "kind": "indicator", "conditions": [{"metric": "RSI", "ticker": "SPY", "threshold": NaN}]}}',
        "payload.conditions[0].threshold",
        400,
        "finite",
    ),
    case("threshold-boolean", with_cond(threshold=False), "payload.conditions[0].threshold", 400, "boolean"),
    case("conditions-not-list", {"payload": ind("root", cond(), [pos("a", "SPY")], [])}, "payload.conditions", 400, "valid tuple"),
    case(
        "altexit-exit-window",
        {"payload": {"id": "r", "kind": "altExit", "exitConditions": [cond(), cond(window=2.5)], "children": {"then": [pos("a", "SPY")]}}},
        "payload.exitConditions[1].window",
        400,
        "fractional part",
    ),
    # numbered
    case("numbered-quantifier", numbered(quantifier="most"), "payload.numbered.quantifier", 400, "'atLeast'"),
    case("numbered-n-negative", numbered(n=-1), "payload.numbered.n", 400, "greater than or equal to 0"),
    case(
        "numbered-group-logic",
        numbered(items=[{"id": "i1", "conditions": [cond()], "groupLogic": "xor"}]),
        "payload.numbered.items[0].groupLogic",
        400,
        "'and' or 'or'",
    ),
    case(
        "numbered-item-metric",
        numbered(items=[{"id": "i1", "conditions": [cond()]}, {"id": "i2", "conditions": [cond(metric="Foo")]}]),
        "payload.numbered.items[1].conditions[0].metric",
        400,
        "'Foo'",
    ),
    # function / scaling
    case("rank-middle", function(rank="Middle"), "payload.rank", 400, "'Top' or 'Bottom'"),
    case("bottom-negative", function(bottom=-1), "payload.bottom", 400, "greater than or equal to 0"),
    case("function-metric-unknown", function(metric="Sharpness"), "payload.metric", 400, "'Sharpness'"),
    case("function-window-over-limit", function(window=10_000), "payload.window", 400, "over the limit"),
    case(
        "scaling-window-fraction",
        {"payload": {"id": "s", "kind": "scaling", "scaleWindow": 1.5, "children": {"then": [pos("a", "SPY")]}}},
        "payload.scaleWindow",
        400,
        "fractional part",
    ),
    case(
        "scaling-ticker-bad",
        {"payload": {"id": "s", "kind": "scaling", "scaleTicker": "branch:next", "children": {"then": [pos("a", "SPY")]}}},
        "payload.scaleTicker",
        400,
        "slot 'next'",
    ),
    # top-level fields
    case("mode-unknown", {"payload": simple(), "mode": "XX"}, "mode", 400, "'CC'"),
    case("cost-negative", {"payload": simple(), "costBps": -1}, "costBps", 400, "greater than or equal to 0"),
    case("cost-alias-negative", {"payload": simple(), "cost_bps": -1}, "cost_bps", 400, "greater than or equal to 0"),
    case("cost-text", {"payload": simple(), "costBps": "five"}, "costBps", 400, "valid number"),
    case("start-date-bad-month", {"payload": simple(), "startDate": "2020-13-01"}, "startDate", 400, "month"),
    case("end-date-garbage", {"payload": simple(), "endDate": "yesterday"}, "endDate", 400, "valid date"),
    case("benchmark-empty", {"payload": simple(), "benchmark": ""}, "benchmark", 400, "at least 1 character"),
    case("custom-indicators-not-list", {"payload": simple(), "customIndicators": {"id": "x"}}, "customIndicators", 400, "valid tuple"),
    case("call-chains-not-object", {"payload": simple(), "callChains": []}, "callChains", 400, "valid dictionary"),
    # ids and calls
    case(
        "duplicate-id",
        {"payload": ind("root", [cond()], [pos("same", "SPY")], [pos("same", "TLT")])},
        "payload.children.else[0].id",
        400,
        "also at payload.children.then[0]",
    ),
    case(
        "duplicate-id-root",
        {"payload": basic("root", pos("root", "SPY"))},
        "payload.children.next[0].id",
        400,
        "duplicate node id 'root'",
    ),
    case(
        "duplicate-id-in-chain",
        call("a", {"a": basic("x", pos("y", "SPY"), pos("y", "TLT"))}),
        "callChains.a.children.next[1].id",
        400,
        "also at callChains.a.children.next[0]",
    ),
    case("call-unknown-ref", call("nope", {"a": pos("x", "SPY")}), "payload.callRefId", 400, "'nope' is not in callChains"),
    case("call-no-ref", call(None, {"a": pos("x", "SPY")}), "payload.callRefId", 400, "needs callRefId"),
    case("call-empty-ref", call("", {}), "payload.callRefId", 400, "needs callRefId"),
    case(
        "call-cycle",
        call("a", {"a": basic("ra", chain_calling("b")), "b": basic("rb", chain_calling("a"))}),
        "callChains.a",
        400,
        "a -> b -> a",
    ),
    case("call-self", call("a", {"a": basic("ra", pos("p", "SPY"), chain_calling("a"))}), "callChains.a", 400, "a -> a"),
    case(
        "call-cycle-unreached",
        call("a", {"a": pos("x", "SPY"), "b": chain_calling("c"), "c": chain_calling("b")}),
        "callChains.b",
        400,
        "b -> c -> b",
    ),
    case("chain-bad-node", call("a", {"a": {"id": "x", "kind": "bogus"}}), "callChains.a.kind", 400, "'position'"),
    # custom indicators
    case(
        "custom-bad-formula",
        customs({"id": "ci-1", "name": "My Trend", "formula": "SMA(50 / "}),
        "customIndicators[0].formula",
        400,
        "My Trend",
    ),
    case(
        "custom-bad-formula-second",
        customs({"id": "ok", "name": "Fine", "formula": "close"}, {"id": "ci-2", "name": "Broken", "formula": "close +* 2"}),
        "customIndicators[1].formula",
        400,
        "Broken",
    ),
    case("custom-empty-formula", customs({"id": "ci-1", "name": "Blank", "formula": ""}), "customIndicators[0].formula", 400, "at least 1 character"),
    case("custom-no-formula", customs({"id": "ci-1", "name": "Blank"}), "customIndicators[0].formula", 400, "formula is required"),
    case(
        "custom-unknown-by-name",
        customs({"id": "ci-1", "name": "Trend", "formula": "close"}, payload=with_cond(metric="trend2")["payload"]),
        "payload.conditions[0].metric",
        400,
        "'trend2'",
    ),
    # limits
    case("body-over-size", json.dumps({"payload": simple()}), "", 413, "the limit is 100", Limits(max_request_bytes=100)),
    case("payload-string-over-size", {"payload": json.dumps(simple())}, "payload", 413, "the limit is 100", Limits(max_request_bytes=100)),
    case(
        "too-deep",
        {"payload": deep_chain(5)},
        "payload.children.next[0].children.next[0].children.next[0]",
        413,
        "deeper than the limit of 3",
        Limits(max_depth=3),
    ),
    case(
        "chain-too-deep",
        call("a", {"a": deep_chain(5)}),
        "callChains.a.children.next[0].children.next[0].children.next[0]",
        413,
        "deeper than the limit of 3",
        Limits(max_depth=3),
    ),
    case("too-many-nodes", {"payload": basic("root", *(pos(f"p{i}", "SPY") for i in range(5)))}, "payload", 413, "limit of 4 nodes", Limits(max_nodes=4)),
    case("window-over-custom-limit", with_cond(window=31), "payload.conditions[0].window", 400, "limit of 30", Limits(max_window=30)),
    case(
        "too-many-custom-indicators",
        customs(*({"id": f"c{i}", "formula": "close"} for i in range(3))),
        "customIndicators",
        413,
        "limit is 2",
        Limits(max_custom_indicators=2),
    ),
]


@pytest.mark.parametrize(("body", "path", "status", "needle", "limits"), BAD)
def test_refused(body: Any, path: str, status: int, needle: str, limits: Limits | None) -> None:
    with pytest.raises(GpubtError) as info:
        parse_request(body, limits or Limits())
    err = info.value
    assert err.path == path, err
    assert err.status == status, err
    assert needle in err.message, err
    assert err.to_json() == {"error": {"message": err.message, "path": path}}


def test_refusal_table_is_large_and_ids_unique() -> None:
    ids = [p.id for p in BAD]
    assert len(ids) >= 45
    assert len(ids) == len(set(ids))


@pytest.mark.parametrize("form", ["text", "bytes", "dict", "payload-string"])
def test_deep_nesting_is_refused_quickly(form: str) -> None:
    """A 5,000-deep tree never reaches a recursive validator (no RecursionError), whatever form."""
    text = deep_text(5000)
    if form == "text":
        body: Any = text
    elif form == "bytes":
        body = text.encode()
    elif form == "dict":
        body = {"payload": deep_chain(5000)}
    else:
        body = {"payload": text[len('{"payload":') : -1]}
    started = time.perf_counter()
    with pytest.raises(GpubtError) as info:
        parse_request(body)
    assert time.perf_counter() - started < 2.0
    assert info.value.status == 413
    assert info.value.path == "" or info.value.path.startswith("payload")


@pytest.mark.parametrize("depth", [65, 200, 400])
def test_moderately_deep_text_is_413(depth: int) -> None:
    with pytest.raises(GpubtError) as info:
        parse_request(deep_text(depth))
    assert info.value.status == 413


def _nested_list(depth: int) -> list[Any]:
    value: list[Any] = []
    for _ in range(depth):
        value = [value]
    return value


def _cyclic_condition() -> dict[str, Any]:
    line: dict[str, Any] = {"metric": "RSI", "ticker": "SPY"}
    line["threshold"] = [line]
    return line


def _cyclic_node() -> dict[str, Any]:
    node: dict[str, Any] = {"id": "r", "kind": "basic"}
    node["children"] = {"next": [node]}
    return node


def _tuple_chain(depth: int) -> dict[str, Any]:
    node: dict[str, Any] = pos("leaf", "SPY")
    for i in range(depth):
        node = {"id": f"n{i}", "kind": "basic", "children": {"next": (node,)}}
    return node


@pytest.mark.parametrize(
    ("body", "path", "status"),
    [
        pytest.param(
            {"payload": ind("r", [cond(threshold=_nested_list(5000))], [pos("a", "SPY")], [])},
            "payload.conditions[0].threshold",
            400,
            id="deep-value",
        ),
        pytest.param({"payload": ind("r", [_cyclic_condition()], [pos("a", "SPY")], [])}, "payload.conditions[0].threshold", 400, id="cyclic-value"),
        pytest.param({"payload": _cyclic_node()}, None, 413, id="cyclic-tree"),
        pytest.param({"payload": _tuple_chain(3000)}, None, 413, id="tuple-children"),
    ],
)
def test_decoded_dict_oddities_are_refused(body: dict[str, Any], path: str | None, status: int) -> None:
    """A caller that passes an already-decoded dict (a web framework, a script) may hand over
    values no JSON text produces: very deep, cyclic, tuples for lists. Still only GpubtError."""
    with pytest.raises(GpubtError) as info:
        parse_request(body)
    assert info.value.status == status
    if path is not None:
        assert info.value.path == path
    else:
        assert info.value.path.startswith("payload")


def test_depth_at_the_limit_is_accepted() -> None:
    parse_request({"payload": deep_chain(64)})
    parse_request(deep_text(63))  # 63 basic nodes + the leaf = 64 levels


# -- valid requests ------------------------------------------------------------------------------


def load(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_examples_parse_in_every_form(path: Path) -> None:
    body = load(path)
    as_dict = parse_request(body)
    as_text = parse_request(path.read_text())
    as_bytes = parse_request(path.read_bytes())
    double = dict(body, payload=json.dumps(body["payload"]))
    as_double = parse_request(double)
    as_double_text = parse_request(json.dumps(double))
    for other in (as_text, as_bytes, as_double, as_double_text):
        assert other.request == as_dict.request
        assert other.tickers == as_dict.tickers
        assert set(other.formulas) == set(as_dict.formulas)
    assert as_dict.root.id == "root"
    assert body == load(path), "parsing must not mutate the caller's dict"


def test_there_are_five_examples() -> None:
    assert len(EXAMPLES) == 5


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_dump_round_trip(path: Path) -> None:
    request = parse_request(load(path)).request
    for mode in ("json", "python"):
        dumped = request.model_dump(by_alias=True, mode=mode)
        assert parse_request(dumped).request == request
    text = request.model_dump_json(by_alias=True)
    assert parse_request(text).request == request


def test_example_values() -> None:
    by_name = {p.stem: parse_request(load(p)) for p in EXAMPLES}
    risk = by_name["risk_parity"].request
    assert risk.mode == "OO" and risk.cost_bps == 1.0
    assert risk.payload.weighting == "inverse" and risk.payload.vol_window == 60
    ladder = by_name["regime_ladder"]
    assert ladder.request.payload.numbered is not None
    assert ladder.request.payload.numbered.quantifier == "ladder"
    assert set(ladder.formulas) == {"Trend Ratio", "ci-trend"}
    assert ladder.custom("Trend Ratio") is ladder.custom("ci-trend") is not None
    assert "aggressive" in ladder.request.call_chains
    alt = by_name["altexit_trend"].request.payload
    assert [c.id for c in alt.exit_conditions] == ["exit-dd", "exit-trend"]
    assert alt.exit_conditions[1].type == "or" and alt.exit_conditions[1].for_days == 5
    assert alt.entry_conditions[0].right == ("SMA", "QQQ", 200)


def test_defaults() -> None:
    request = parse_request({"payload": {"id": "r", "kind": "indicator", "conditions": [{"metric": "RSI", "ticker": "SPY"}]}}).request
    assert request.mode == "CC" and request.cost_bps == 0 and request.benchmark == "SPY"
    assert request.start_date is None and request.end_date is None
    assert request.custom_indicators == () and request.call_chains == {}
    root = request.payload
    assert root.weighting == "equal" and root.vol_window == 20 and root.children == {}
    assert root.slot_weighting("then") == ("equal", 20, None)
    assert root.metric == "Relative Strength Index" and root.bottom == 1 and root.rank == "Bottom"
    assert (root.scale_metric, root.scale_window, root.scale_ticker, root.scale_from, root.scale_to) == (
        "Relative Strength Index",
        14,
        "SPY",
        30.0,
        70.0,
    )
    line = root.conditions[0]
    assert (line.type, line.window, line.comparator, line.threshold, line.expanded, line.for_days) == (
        "if",
        0,
        "gt",
        0.0,
        False,
        1,
    )
    assert (line.date_month, line.date_day, line.date_to) == (1, 1, None)


def test_slot_weighting_falls_back() -> None:
    root = parse_request(
        {"payload": simple(weighting="Inverse", volWindow=30, weightingElse="PRO", volWindowThen=5, cappedFallback="SHY")}
    ).root
    assert root.slot_weighting("then") == ("inverse", 5, "SHY")
    assert root.slot_weighting("else") == ("pro", 30, "SHY")
    assert root.slot_weighting("next") == ("inverse", 30, "SHY")


def test_cost_alias_is_accepted() -> None:
    assert parse_request({"payload": simple(), "cost_bps": 7.5}).request.cost_bps == 7.5
    assert parse_request('{"payload": ' + json.dumps(json.dumps(simple())) + ', "cost_bps": 4}').request.cost_bps == 4.0
    assert parse_request({"payload": simple(), "costBps": 2}).request.cost_bps == 2.0


def test_integral_floats_are_integers() -> None:
    body = {
        "payload": ind(
            "root",
            [cond(window=14.0, forDays=2.0, dateMonth=3.0)],
            [pos("a", "SPY")],
            [pos("b", "TLT")],
            volWindow=60.0,
        )
    }
    for form in (body, json.dumps(body)):
        root = parse_request(form).root
        line = root.conditions[0]
        assert line.window == 14 and isinstance(line.window, int)
        assert line.for_days == 2 and isinstance(line.for_days, int)
        assert line.date_month == 3
        assert root.vol_window == 60 and isinstance(root.vol_window, int)
    assert parse_request(function(window=126.0, bottom=3.0)).root.bottom == 3


def test_nulls_are_absent() -> None:
    body = {
        "payload": {
            "id": "root",
            "kind": "indicator",
            "weighting": None,
            "weightingThen": None,
            "volWindow": None,
            "title": None,
            "conditions": [cond(threshold=None, comparator=None) | {"rightMetric": None, "dateTo": None}],
            "children": {"then": None, "else": [None, pos("b", "TLT", positions=None), None, pos("c", "BIL")]},
        },
        "mode": None,
        "costBps": None,
        "benchmark": None,
        "customIndicators": None,
        "callChains": None,
        "startDate": None,
    }
    request = parse_request(body).request
    assert request.mode == "CC" and request.cost_bps == 0.0 and request.benchmark == "SPY"
    root = request.payload
    assert root.weighting == "equal" and root.weighting_then is None and root.vol_window == 20
    assert root.slot_weighting("then") == ("equal", 20, None)
    assert root.slot("then") == ()
    assert [c.id for c in root.slot("else")] == ["b", "c"]
    assert root.slot("else")[0].positions == ()
    line = root.conditions[0]
    assert line.threshold == 0.0 and line.comparator == "gt" and line.right_metric is None
    # the same as JSON text, and a branch ref to a slot with only nulls is still refused
    assert parse_request(json.dumps(body)).request == request
    body["payload"]["conditions"] = [cond(ticker="branch:then")]
    with pytest.raises(GpubtError) as info:
        parse_request(body)
    assert info.value.path == "payload.conditions[0].ticker"


def test_unknown_fields_are_ignored_everywhere() -> None:
    extra = {"futureField": {"nested": [1, 2]}, "bgColor": "#fff", "collapsed": True, "minCap": 3}
    plain = {
        "payload": ind(
            "root",
            [cond()],
            [
                {
                    "id": "n",
                    "kind": "numbered",
                    "numbered": {"quantifier": "any", "items": [{"id": "i", "conditions": [cond()]}]},
                    "children": {"then": [pos("a", "SPY")]},
                }
            ],
            [pos("b", "TLT")],
        ),
        "customIndicators": [{"id": "ci", "name": "C", "formula": "close"}],
        "callChains": {"k": pos("x", "SPY")},
    }
    noisy = copy.deepcopy(plain)
    noisy.update(extra)
    noisy["payload"].update(extra)
    noisy["payload"]["conditions"][0].update(extra)
    kid = noisy["payload"]["children"]["then"][0]
    kid.update(extra)
    kid["numbered"].update(extra)
    kid["numbered"]["items"][0].update(extra)
    kid["numbered"]["items"][0]["conditions"][0]["dateTo"] = {"month": 1, "day": 2, **extra}
    plain["payload"]["children"]["then"][0]["numbered"]["items"][0]["conditions"][0]["dateTo"] = {"month": 1, "day": 2}
    noisy["customIndicators"][0].update(extra)
    noisy["callChains"]["k"].update(extra)
    assert parse_request(noisy).request == parse_request(plain).request


@pytest.mark.parametrize("spelling", ["top", "Top", "TOP", "tOP"])
def test_rank_any_case(spelling: str) -> None:
    assert parse_request(function(rank=spelling)).root.rank == "Top"


@pytest.mark.parametrize("spelling", ["bottom", "BOTTOM"])
def test_rank_bottom_any_case(spelling: str) -> None:
    assert parse_request(function(rank=spelling)).root.rank == "Bottom"


@pytest.mark.parametrize("spelling", ["Inverse", "INVERSE", "inverse", "iNvErSe"])
def test_weighting_any_case(spelling: str) -> None:
    root = parse_request({"payload": simple(weighting=spelling, weightingThen=spelling.replace("nverse", "NVERSE"))}).root
    assert root.weighting == "inverse" and root.weighting_then == "inverse"


def test_mode_any_case() -> None:
    assert parse_request({"payload": simple(), "mode": "oc"}).request.mode == "OC"


def test_custom_indicator_by_name_and_id() -> None:
    body = customs(
        {"id": "ci-trend", "name": "Trend Ratio", "formula": "SMA(50) / SMA(200) - 1", "createdAt": "2024-01-01"},
        payload=ind(
            "root",
            [cond(metric="Trend Ratio", window=0), cond(id="c2", type="and", metric="ci-trend", ticker="QQQ")],
            [pos("a", "SPY")],
            [pos("b", "TLT")],
        ),
    )
    strategy = parse_request(body)
    assert strategy.custom("Trend Ratio") is not None
    assert strategy.custom("ci-trend") is strategy.custom("Trend Ratio")
    assert strategy.custom("RSI") is None
    assert strategy.request.custom_indicators[0].created_at == "2024-01-01"
    # a custom indicator also serves a function node's metric and a scaling metric
    parse_request(customs({"id": "ci", "name": "Mine", "formula": "close / SMA(window)"}, payload=function(metric="Mine")["payload"]))


def test_valid_expanded_date_and_aliases() -> None:
    body = {
        "payload": ind(
            "root",
            [
                cond(metric="Date", ticker=None, dateMonth=11, dateDay=1, expanded=True, dateTo={"month": 4, "day": 30}),
                cond(id="c2", type="or", comparator="crossBelow", expanded=True, rightMetric="SMA", rightTicker="TLT", rightWindow=50),
                cond(id="c3", ticker="branch:from", metric="Standard Deviation", window=20),
                cond(id="c4", ticker="branch:to"),
            ],
            [pos("a", "SPY")],
            [pos("b", "TLT")],
        )
    }
    root = parse_request(body).root
    assert root.conditions[0].date_to is not None and root.conditions[0].date_to.month == 4
    assert root.conditions[1].right == ("SMA", "TLT", 50)


def test_tickers_are_the_market_tickers_read() -> None:
    tree = {
        "id": "root",
        "kind": "indicator",
        "conditions": [
            cond(ticker="AAA"),
            cond(id="c2", ticker="BBB/CCC"),
            cond(id="c3", ticker="DDD", expanded=True, rightTicker="EEE"),
            cond(id="c4", ticker="branch:then"),
            cond(id="c5", ticker="FFF", rightTicker="NOT_READ"),  # not expanded: right side unused
            cond(id="c6", metric="Date", ticker="DATE_TICKER"),
        ],
        "children": {
            "then": [
                {
                    "id": "s",
                    "kind": "scaling",
                    "scaleTicker": "GGG",
                    "children": {"then": [pos("p1", "HHH", "", "Empty", "HHH")], "else": [pos("p2", "III")]},
                }
            ],
            "else": [
                basic("b", pos("p3", "JJJ"), weighting="capped", cappedFallback="KKK", cappedFallbackElse="LLL"),
                {"id": "cl", "kind": "call", "callRefId": "chain"},
            ],
        },
    }
    chains = {"chain": {"id": "x", "kind": "altExit", "entryConditions": [cond(ticker="MMM")], "children": {"then": [pos("y", "NNN")]}}}
    strategy = parse_request({"payload": tree, "callChains": chains, "benchmark": "BENCH"})
    got = strategy.tickers
    assert len(got) == len(set(got))
    assert set(got) == {"AAA", "BBB", "CCC", "DDD", "EEE", "FFF", "GGG", "HHH", "III", "JJJ", "KKK", "LLL", "MMM", "NNN"}
    for absent in ("BENCH", "NOT_READ", "DATE_TICKER", "Empty", "", "branch:then", "BBB/CCC"):
        assert absent not in got


def test_example_tickers() -> None:
    tickers = {p.stem: set(parse_request(load(p)).tickers) for p in EXAMPLES}
    assert tickers["tqqq_rsi"] == {"SPY", "TQQQ", "UVXY", "QQQ", "SQQQ", "BIL"}
    assert tickers["altexit_trend"] == {"QQQ", "TQQQ", "TLT", "SHY", "BIL"}
    assert tickers["risk_parity"] == {"SPY", "EFA", "TLT", "IEF", "GLD", "DBC", "SHY", "VNQ", "EEM"}


def test_calls_resolve() -> None:
    body = call("a", {"a": basic("ra", chain_calling("b", "x1"), chain_calling("b", "x2")), "b": pos("rb", "SPY")})
    strategy = parse_request(body)
    assert set(strategy.request.call_chains) == {"a", "b"}
    # the same chain called from two places, and ids repeated across separate trees, are fine
    body = {"payload": basic("root", chain_calling("a", "c1"), chain_calling("a", "c2")), "callChains": {"a": pos("root", "SPY")}}
    parse_request(body)


# -- random damage -------------------------------------------------------------------------------

JSON_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**20), max_value=10**20),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.sampled_from(["SPY/TLT", "branch:then", "branch:zz", "A/B/C", "/", "Date", "RSI", "14", "NaN", "top", "equal"]),
)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=8,
)


def _type_of(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    return type(value).__name__


def _locations(value: Any, here: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [here]
    if isinstance(value, dict):
        for k, v in value.items():
            out += _locations(v, here + (k,))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out += _locations(v, here + (i,))
    return out


def _get(value: Any, loc: tuple[Any, ...]) -> Any:
    for part in loc:
        value = value[part]
    return value


@st.composite
def damaged_requests(draw: st.DrawFn) -> Any:
    body = copy.deepcopy(load(draw(st.sampled_from(EXAMPLES))))
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        locs = _locations(body)
        what = draw(st.sampled_from(["delete", "replace", "unknown-kind", "insert-node"]))
        if what == "delete":
            keyed = [loc for loc in locs if loc and isinstance(loc[-1], str)]
            if not keyed:
                continue
            loc = draw(st.sampled_from(keyed))
            del _get(body, loc[:-1])[loc[-1]]
        elif what == "replace":
            loc = draw(st.sampled_from([loc for loc in locs if loc]))
            old = _get(body, loc)
            new = draw(JSON_VALUES.filter(lambda v, old=old: _type_of(v) != _type_of(old)))
            _get(body, loc[:-1])[loc[-1]] = new
        elif what == "unknown-kind":
            nodes = [loc for loc in locs if isinstance(_get(body, loc), dict) and "kind" in _get(body, loc)]
            if not nodes:
                continue
            kind = draw(st.text(max_size=10).filter(lambda k: k not in KINDS))
            _get(body, draw(st.sampled_from(nodes)))["kind"] = kind
        else:
            slots = [loc for loc in locs if len(loc) > 1 and loc[-2] == "children" and isinstance(_get(body, loc), list)]
            if not slots:
                continue
            node = {"id": draw(st.text(max_size=5)), "kind": draw(st.sampled_from(KINDS + ("mystery",)))}
            node.update(draw(st.dictionaries(st.sampled_from(["positions", "conditions", "callRefId", "children", "window"]), JSON_VALUES, max_size=2)))
            _get(body, draw(st.sampled_from(slots))).append(node)
    form = draw(st.sampled_from(["dict", "text", "double"]))
    if form == "dict":
        return body
    if form == "double" and isinstance(body, dict) and "payload" in body:
        body["payload"] = json.dumps(body["payload"])
    return json.dumps(body)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(damaged_requests())
def test_damage_is_parsed_or_refused(body: Any) -> None:
    try:
        strategy = parse_request(body)
    except GpubtError as err:
        assert isinstance(err.path, str)
        assert err.status in (400, 413)
        assert err.message
        if err.path:
            head = err.path.split(".")[0].split("[")[0]
            assert head in TOP_LEVEL, err
    else:
        assert strategy.root.id
        for ticker in strategy.tickers:
            assert ticker and "/" not in ticker and not ticker.startswith("branch:")


def test_custom_named_like_catalogue_metric_keeps_the_catalogue_meaning():
    from gpubt.schema.parse import parse_request

    tree = {"id": "r", "kind": "indicator",
            "conditions": [{"id": "c", "metric": "RSI", "ticker": "SPY", "window": 14,
                            "comparator": "gt", "threshold": 50}],
            "children": {"then": [{"id": "a", "kind": "position", "positions": ["SPY"]}],
                         "else": [{"id": "b", "kind": "position", "positions": ["TLT"]}]}}
    strategy = parse_request({"payload": tree,
                              "customIndicators": [{"id": "x", "name": "RSI", "formula": "close"}]})
    assert strategy.custom("RSI") is None
    assert strategy.custom("x") is not None


def test_formula_window_zero_means_one_and_bad_windows_get_a_path():
    from gpubt.errors import GpubtError
    from gpubt.schema.parse import parse_request

    def request(formula, window):
        return {"customIndicators": [{"id": "z", "name": "Z", "formula": formula}],
                "payload": {"id": "r", "kind": "indicator",
                            "conditions": [{"id": "c", "metric": "Z", "ticker": "SPY",
                                            "window": window, "comparator": "gt", "threshold": 0}],
                            "children": {"then": [{"id": "a", "kind": "position", "positions": ["SPY"]}]}}}

    parse_request(request("(close - mean(close, window)) / std(close, window)", 0))
    with pytest.raises(GpubtError) as err:
        parse_request(request("mean(close, window - 20)", 14))
    assert err.value.path == "payload.conditions[0].metric"
