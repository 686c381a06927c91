"""The HTTP API over real HTTP: a uvicorn server on a loopback port in a background thread,
driven with httpx (spec §1 request, §7 response, §8 errors)."""

from __future__ import annotations

import copy
import json
import logging
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("fastapi")
uvicorn = pytest.importorskip("uvicorn")
httpx = pytest.importorskip("httpx")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from gpubt import engine  # noqa: E402
from gpubt.api.app import Settings, create_app  # noqa: E402
from gpubt.data.synthetic import synthetic_market  # noqa: E402
from gpubt.schema.catalogue import METRICS  # noqa: E402
from gpubt.schema.parse import Limits, parse_request  # noqa: E402

EXAMPLES = sorted((Path(__file__).resolve().parents[1] / "examples").glob("*.json"))
EXAMPLE_IDS = [p.stem for p in EXAMPLES]
MAX_BYTES = 1_000_000  # the test server's body limit (small, so oversize bodies are cheap)
LIMITS = Limits(max_request_bytes=MAX_BYTES)

RESPONSE_FIELDS = {
    "equityCurve", "benchmarkCurve", "drawdownPoints", "days", "allocations",
    "monthly", "markers", "warnings", "metrics",
}
METRIC_FIELDS = {
    "startDate", "endDate", "days", "years", "totalReturn", "cagr", "vol", "maxDrawdown", "calmar",
    "sharpe", "sortino", "treynor", "beta", "winRate", "bestDay", "worstDay", "avgTurnover",
    "avgHoldings",
}
DAY_FIELDS = {"time", "date", "equity", "drawdown", "grossReturn", "netReturn", "turnover", "cost", "holdings"}


# -- the server -----------------------------------------------------------------------------------


@contextmanager
def serve(settings: Settings) -> Iterator[str]:
    """A real uvicorn server for `create_app(settings)` on a free loopback port, in a thread."""
    app = create_app(settings)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_level="warning", lifespan="on", timeout_graceful_shutdown=2)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the test server did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


@pytest.fixture(scope="session")
def base_url() -> Iterator[str]:
    with serve(Settings(port=0, limits=LIMITS, request_timeout_s=60.0)) as url:
        yield url


@pytest.fixture(scope="session")
def client(base_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=base_url, timeout=60.0) as c:
        yield c


@pytest.fixture(scope="session")
def direct() -> dict[str, Any]:
    """Each example's response from `run_backtest` called directly, as JSON would carry it."""
    market = synthetic_market()
    out = {}
    for path in EXAMPLES:
        strategy = parse_request(path.read_bytes(), LIMITS)
        result = engine.run_backtest(strategy, market, engine.DEFAULT_BACKEND)
        out[path.stem] = json.loads(result.to_json())
    return out


def example(name: str) -> dict[str, Any]:
    return json.loads((Path(__file__).resolve().parents[1] / "examples" / f"{name}.json").read_text())


def assert_error(response: httpx.Response, status: int, path: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.text[:500]
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"}
    error = body["error"]
    assert isinstance(error["message"], str) and error["message"]
    assert isinstance(error["path"], str)
    if status != 500:
        assert set(error) == {"message", "path"}
    if path is not None:
        assert error["path"] == path, error
    return error


# -- the happy paths ------------------------------------------------------------------------------


def test_health(client: httpx.Client) -> None:
    r = client.get("/health")
    assert r.status_code == 200
    assert r.json() == {
        "status": "ok", "backend": engine.DEFAULT_BACKEND, "tickers": len(synthetic_market().tickers)
    }


def test_tickers(client: httpx.Client) -> None:
    body = client.get("/api/tickers").json()
    market = synthetic_market()
    assert [t["ticker"] for t in body["tickers"]] == list(market.tickers)
    spy = next(t for t in body["tickers"] if t["ticker"] == "SPY")
    assert spy["first"] == str(market.dates[0]) and spy["last"] == str(market.dates[-1])
    assert all(t["first"] <= t["last"] for t in body["tickers"])


def test_metrics_catalogue(client: httpx.Client) -> None:
    body = client.get("/api/metrics").json()
    by_name = {m["name"]: m for m in body["metrics"]}
    assert list(by_name) == [m.name for m in METRICS]
    for info in METRICS:
        entry = by_name[info.name]
        assert entry["aliases"] == list(info.aliases)
        assert entry["window"] and entry["needs"] and "close" in entry["needs"]
    assert "volume" in by_name["Money Flow Index"]["needs"]
    assert by_name["MACD Histogram"]["window"].startswith("ignored")


@pytest.mark.parametrize("encoding", ["string", "object"])
@pytest.mark.parametrize("name", EXAMPLE_IDS)
def test_examples(client: httpx.Client, direct: dict[str, Any], name: str, encoding: str) -> None:
    body = example(name)
    if encoding == "string":
        body["payload"] = json.dumps(body["payload"])  # spec §1: double-encoded, as V1 sends it
    r = client.post("/api/backtest", content=json.dumps(body))
    assert r.status_code == 200, r.text[:500]
    assert r.headers["content-type"].startswith("application/json")
    result = r.json()
    assert set(result) == RESPONSE_FIELDS
    assert set(result["metrics"]) == METRIC_FIELDS
    for key in ("equityCurve", "benchmarkCurve", "drawdownPoints"):
        assert result[key] and set(result[key][0]) == {"date", "equity"}
    assert result["equityCurve"][0]["equity"] == 1.0 and result["drawdownPoints"][0]["equity"] == 0.0
    assert len(result["days"]) == len(result["equityCurve"]) - 1 == len(result["allocations"])
    for day in result["days"][:50]:
        assert set(day) == DAY_FIELDS
        for h in day["holdings"]:
            assert set(h) == {"ticker", "weight"}
    for alloc in result["allocations"][:50]:
        assert set(alloc) == {"date", "entries"}
        for e in alloc["entries"]:
            assert set(e) == {"ticker", "weight"}
    assert result["monthly"] and set(result["monthly"][0]) == {"year", "month", "value"}
    for marker in result["markers"]:
        assert set(marker) == {"time", "text"}
    for warning in result["warnings"]:
        assert set(warning) == {"time", "date", "message"}
    assert result == direct[name]


def test_html_report(client: httpx.Client) -> None:
    r = client.post("/api/backtest", params={"format": "html"}, content=json.dumps(example("tqqq_rsi")))
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/html")
    text = r.text
    assert text.startswith("<!DOCTYPE html>")
    for name in ("equity", "drawdown", "monthly", "rollingSharpe", "allocation"):
        assert f'id="fig-{name}"' in text
    assert "Total return" in text
    import re

    assert not re.search(r"<script[^>]*\bsrc\s*=\s*[\"']?(https?:)?//", text, re.I)


def test_validate(client: httpx.Client) -> None:
    r = client.post("/api/validate", content=json.dumps(example("tqqq_rsi")))
    assert r.status_code == 200
    body = r.json()
    assert body["valid"] is True
    assert set(body["tickers"]) == {"SPY", "TQQQ", "UVXY", "QQQ", "SQQQ", "BIL"}
    bad = example("tqqq_rsi")
    bad["payload"]["children"]["then"][0]["children"]["then"][0]["positions"] = ["NOPE1"]
    error = assert_error(client.post("/api/validate", content=json.dumps(bad)), 400)
    assert "NOPE1" in error["message"]
    assert_error(client.post("/api/validate", content=b"{"), 400, "")


# -- spec §8 errors -------------------------------------------------------------------------------


def _tqqq_with(edit) -> dict[str, Any]:
    body = example("tqqq_rsi")
    edit(body)
    return body


def _deep_tree(depth: int) -> dict[str, Any]:
    node: dict[str, Any] = {"id": f"n{depth}", "kind": "position", "positions": ["SPY"]}
    for i in range(depth - 1, 0, -1):
        node = {"id": f"n{i}", "kind": "basic", "children": {"next": [node]}}
    return node


def _set(path: list[str | int], value: Any):
    def edit(body: dict[str, Any]) -> None:
        target = body
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value

    return edit


THEN0 = ["payload", "children", "then", 0]
CALL_NODE = {"id": "caller", "kind": "call", "callRefId": "missing"}

ERROR_CASES: dict[str, tuple[Any, int, str | None, str | None]] = {
    # name: (body (bytes or dict), status, exact path or None, a word the message must contain)
    "not json": (b"{'payload': nope", 400, "", "not valid JSON"),
    "empty body": (b"", 400, "", "not valid JSON"),
    "body is an array": (b"[1, 2]", 400, "", "JSON object"),
    "payload missing": ({"mode": "CC"}, 400, "payload", "payload"),
    "payload not json": ({"payload": "{not json"}, 400, "payload", "not valid JSON"),
    "payload not a FlowNode": ({"payload": "[1, 2, 3]"}, 400, "payload", "FlowNode"),
    "payload without kind": ({"payload": {"id": "x"}}, 400, "payload.kind", "kind"),
    "unknown kind": ({"payload": {"id": "x", "kind": "teleport"}}, 400, "payload.kind", "teleport"),
    "wrong type": (
        _tqqq_with(_set([*THEN0, "conditions", 0, "window"], "ten")),
        400, "payload.children.then[0].conditions[0].window", "integer",
    ),
    "fractional window": (
        _tqqq_with(_set([*THEN0, "conditions", 0, "window"], 14.5)),
        400, "payload.children.then[0].conditions[0].window", None,
    ),
    "negative cost": (_tqqq_with(_set(["costBps"], -1)), 400, "costBps", None),
    "bad mode": (_tqqq_with(_set(["mode"], "XX")), 400, "mode", None),
    "unknown metric": (
        _tqqq_with(_set([*THEN0, "conditions", 0, "metric"], "Bogus Metric")),
        400, "payload.children.then[0].conditions[0].metric", "Bogus Metric",
    ),
    "unknown call id": (
        _tqqq_with(_set(["payload", "children", "then"], [CALL_NODE])),
        400, "payload.children.then[0].callRefId", "missing",
    ),
    "call cycle": (
        _tqqq_with(
            lambda b: (
                b["payload"]["children"].__setitem__("then", [{"id": "c0", "kind": "call", "callRefId": "a"}]),
                b.__setitem__("callChains", {
                    "a": {"id": "ca", "kind": "call", "callRefId": "b"},
                    "b": {"id": "cb", "kind": "call", "callRefId": "a"},
                }),
            )
        ),
        400, None, "cycle",
    ),
    "duplicate id": (
        _tqqq_with(_set([*THEN0, "children", "else", 0, "id"], "hedge")),
        400, "payload.children.then[0].children.else[0].id", "hedge",
    ),
    "bad custom formula": (
        _tqqq_with(
            lambda b: (
                b.__setitem__("customIndicators", [{"id": "ci", "name": "Broken", "formula": "SMA(50) / (2 +"}]),
                _set([*THEN0, "conditions", 0, "metric"], "Broken")(b),
            )
        ),
        400, "customIndicators[0].formula", "Broken",
    ),
    "unknown ticker": (
        _tqqq_with(_set([*THEN0, "children", "then", 0, "positions"], ["NOSUCH"])),
        400, None, "NOSUCH",
    ),
    "too little data": (
        _tqqq_with(lambda b: b.update(startDate="2000-01-03", endDate="2000-01-14")),
        400, None, "not enough data",
    ),
    "too deep": ({"payload": _deep_tree(100)}, 413, None, "deeper"),
}


@pytest.mark.parametrize("case", list(ERROR_CASES))
def test_errors(client: httpx.Client, case: str) -> None:
    body, status, path, word = ERROR_CASES[case]
    content = body if isinstance(body, bytes) else json.dumps(body)
    error = assert_error(client.post("/api/backtest", content=content), status, path)
    if word is not None:
        assert word in error["message"], error


def test_error_messages_name_the_source(client: httpx.Client) -> None:
    body = ERROR_CASES["unknown ticker"][0]
    error = assert_error(client.post("/api/backtest", content=json.dumps(body)), 400)
    assert "synthetic market" in error["message"]
    body = ERROR_CASES["too little data"][0]
    error = assert_error(client.post("/api/backtest", content=json.dumps(body)), 400)
    assert "days" in error["message"] and "available" in error["message"]


def test_oversize_body_by_content_length(client: httpx.Client) -> None:
    body = json.dumps({"payload": "x" * (MAX_BYTES + 10)}).encode()
    error = assert_error(client.post("/api/backtest", content=body), 413)
    assert f"{MAX_BYTES:,}" in error["message"]
    assert client.get("/health").status_code == 200


def test_oversize_body_streamed(client: httpx.Client) -> None:
    def chunks() -> Iterator[bytes]:  # no Content-Length: the server counts what it reads
        yield b'{"payload": "'
        for _ in range(MAX_BYTES // 65_536 + 2):
            yield b"x" * 65_536
        yield b'"}'

    assert_error(client.post("/api/backtest", content=chunks()), 413)
    assert client.get("/health").status_code == 200


def test_framework_errors_have_the_shape(client: httpx.Client) -> None:
    body = json.dumps(example("tqqq_rsi"))
    assert_error(client.post("/api/backtest", params={"format": "pdf"}, content=body), 400, "format")
    assert_error(client.get("/api/nothing-here"), 404)
    assert_error(client.get("/api/backtest"), 405)


def test_internal_error_is_500_with_request_id(
    client: httpx.Client, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(*args: Any, **kwargs: Any) -> dict[str, Any]:
        raise RuntimeError("engine exploded")

    monkeypatch.setattr(engine, "run_backtest", broken)
    with caplog.at_level(logging.ERROR, logger="gpubt.api"):
        r = client.post("/api/backtest", content=json.dumps(example("tqqq_rsi")))
    error = assert_error(r, 500, "")
    assert error["message"] == "internal error"
    request_id = str(uuid.UUID(error["requestId"]))
    logged = [rec for rec in caplog.records if request_id in rec.getMessage()]
    assert logged and logged[0].exc_info and "engine exploded" in str(logged[0].exc_info[1])
    assert "engine exploded" not in r.text  # no internals leak to the client
    assert client.get("/health").status_code == 200
    monkeypatch.undo()
    body = example("tqqq_rsi")
    body["startDate"] = "2025-06-02"
    assert client.post("/api/backtest", content=json.dumps(body)).status_code == 200


def _slow_backtest(seconds: float):
    class Slow:
        def to_json(self) -> bytes:
            return b'{"slow":true}'

    def slow(strategy: Any, market: Any, backend: str = "") -> Slow:
        time.sleep(seconds)
        return Slow()

    return slow


def test_health_answers_while_a_backtest_runs(
    base_url: str, client: httpx.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(engine, "run_backtest", _slow_backtest(2.0))
    results: dict[str, Any] = {}

    def post() -> None:
        with httpx.Client(base_url=base_url, timeout=30) as c:
            results["r"] = c.post("/api/backtest", content=json.dumps(example("tqqq_rsi")))

    thread = threading.Thread(target=post)
    t0 = time.monotonic()
    thread.start()
    time.sleep(0.3)
    latencies = []
    for _ in range(5):
        t = time.monotonic()
        assert client.get("/health").status_code == 200
        latencies.append(time.monotonic() - t)
    assert thread.is_alive(), "the slow backtest should still be running"
    assert max(latencies) < 0.5, latencies
    thread.join(timeout=30)
    assert results["r"].status_code == 200 and results["r"].json() == {"slow": True}
    assert time.monotonic() - t0 >= 2.0


def test_timeout_and_max_days(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = Settings(port=0, limits=LIMITS, request_timeout_s=0.5, max_days=1000, max_concurrent=2)
    with serve(settings) as url, httpx.Client(base_url=url, timeout=30) as c:
        body = example("tqqq_rsi")
        error = assert_error(c.post("/api/backtest", content=json.dumps(body)), 413, "endDate")
        assert "1,000" in error["message"]
        monkeypatch.setattr(engine, "run_backtest", _slow_backtest(1.5))
        body["endDate"] = "2003-06-30"
        t0 = time.monotonic()
        error = assert_error(c.post("/api/backtest", content=json.dumps(body)), 503, "")
        assert time.monotonic() - t0 < 1.4
        assert "0.5 s" in error["message"]
        assert c.get("/health").status_code == 200


# -- fuzzing --------------------------------------------------------------------------------------

_json_scalars = (
    st.none() | st.booleans() | st.integers(-(2**40), 2**40)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=12)
)
_json = st.recursive(
    _json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)
_field_names = st.sampled_from(
    ["payload", "mode", "costBps", "cost_bps", "customIndicators", "callChains", "benchmark",
     "startDate", "endDate", "id", "kind", "children", "positions", "conditions", "metric", "window"]
)
_bodies = (
    st.binary(max_size=64)
    | _json.map(lambda v: json.dumps(v).encode())
    | st.dictionaries(_field_names, _json, max_size=5).map(lambda v: json.dumps(v).encode())
)


def _check_fuzz_answer(r: httpx.Response) -> None:
    assert r.status_code != 500, r.text[:500]
    assert r.status_code == 200 or 400 <= r.status_code < 500, r.status_code
    if r.status_code != 200:
        assert_error(r, r.status_code)


@settings(max_examples=100, deadline=None, suppress_health_check=list(HealthCheck))
@given(body=_bodies)
def test_fuzz_random_bodies(client: httpx.Client, body: bytes) -> None:
    _check_fuzz_answer(client.post("/api/backtest", content=body))


_INTERESTING = st.sampled_from(
    [None, -1, 0, 1, 2, 14.0, 14.5, 200, 10**9, "", "SPY", "QQQ", "TLT", "NOSUCH", "SPY/TLT", "SPY//", "branch:then",
     "branch:nowhere", "Empty", "RSI", "Bogus", "Top", "inverse", "capped", "ladder", "crossAbove",
     "position", "function", "call", "altExit", "scaling", "numbered", [], {}, [None], {"id": "z"},
     True, "1e309"]
)


def _containers(value: Any, out: list) -> list:
    """Every dict and list inside a JSON value (the value itself included)."""
    if isinstance(value, dict):
        out.append(value)
        for v in value.values():
            _containers(v, out)
    elif isinstance(value, list):
        out.append(value)
        for v in value:
            _containers(v, out)
    return out


def _mutate(body: dict[str, Any], data: st.DataObject) -> None:
    for _ in range(data.draw(st.integers(1, 3), label="mutations")):
        roots = [body["payload"], *body.get("callChains", {}).values(), *body.get("customIndicators", [])]
        containers = _containers(roots, [])[1:]
        target = data.draw(st.sampled_from(containers), label="container")
        keys = list(target) if isinstance(target, dict) else list(range(len(target)))
        op = data.draw(st.sampled_from(["set", "delete", "duplicate", "add"]), label="op")
        # a copy: `sampled_from` hands out the same [] and {} each time, which an "add" could put
        # inside itself (a cycle) and which would carry one example's mutations into the next
        new = copy.deepcopy(data.draw(_INTERESTING | _json_scalars, label="value"))
        if op == "add" or not keys:
            if isinstance(target, dict):
                target[data.draw(_field_names, label="key")] = new
            else:
                target.append(new)
            continue
        key = data.draw(st.sampled_from(keys), label="key")
        if op == "set":
            target[key] = new
        elif op == "delete":
            del target[key]
        elif isinstance(target, list):
            target.insert(key, copy.deepcopy(target[key]))
        else:
            target[key] = copy.deepcopy(target)  # a node inside itself: one level deeper


@settings(max_examples=100, deadline=None, suppress_health_check=list(HealthCheck))
@given(name=st.sampled_from(EXAMPLE_IDS), encode=st.booleans(), data=st.data())
def test_fuzz_mutated_examples(client: httpx.Client, name: str, encode: bool, data: st.DataObject) -> None:
    body = example(name)
    body["startDate"] = "2025-06-02"  # a short reported period keeps valid mutants quick
    _mutate(body, data)
    if encode:
        body["payload"] = json.dumps(body["payload"])
    _check_fuzz_answer(client.post("/api/backtest", content=json.dumps(body)))


def test_health_after_fuzzing(client: httpx.Client) -> None:
    assert client.get("/health").json()["status"] == "ok"
