"""The HTTP API (spec §1, §7, §8): one FastAPI app over one market loaded at startup.

- `POST /api/backtest` takes the spec §1 body and answers the §7 response (`?format=html`: the
  HTML report). `POST /api/validate` parses a body and checks its tickers against the market.
  `GET /api/metrics`, `GET /api/tickers`, `GET /health`.
- The raw body is read here, not by FastAPI: a `Content-Length` over the limit is refused before
  a byte is read, a streamed body as soon as it passes the limit, and the bytes go to
  `parse_request`, so every error path and message is the one the CLI gives.
- Every error is `{"error": {"message", "path"}}` (spec §8): `GpubtError` with its status (400,
  413), FastAPI's own request errors as 400, unknown routes with their status, a backtest over
  the time limit 503, anything unexpected 500 with a `requestId` that the logged traceback
  carries too. The server keeps serving after any of them.
- Backtests run in a bounded thread pool off the event loop, so `/health` answers while they run.
  A request that exceeds `request_timeout_s` is answered 503; a backtest that had not started is
  cancelled, one that had keeps its worker until it ends (Python threads cannot be killed), so
  runaway work is bounded by `max_concurrent`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import json
import logging
import os
import uuid
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import orjson
from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from gpubt import __version__, engine
from gpubt.collector import paused
from gpubt.data.loaders import load_market
from gpubt.data.market import Market
from gpubt.data.synthetic import synthetic_market
from gpubt.errors import GpubtError, json_path
from gpubt.schema.catalogue import DATE_METRIC, METRICS
from gpubt.schema.parse import DEFAULT_LIMITS, Limits, Strategy, parse_request

log = logging.getLogger("gpubt.api")

SETTINGS_ENV = "GPUBT_API_SETTINGS"  # JSON settings for worker processes (`gpubt serve --workers`)


def _default_backend() -> str:
    return engine.DEFAULT_BACKEND


def _default_concurrency() -> int:
    return max(2, min(8, os.cpu_count() or 2))


@dataclass(frozen=True)
class Settings:
    """How one API process runs. `data` None means the built-in synthetic market; `max_days`
    caps the days one backtest computes (its calendar up to `endDate`; None: no cap), refused
    with 413 like the other limits; `max_concurrent` caps backtests computing at once."""

    host: str = "127.0.0.1"
    port: int = 3030
    data: str | Path | None = None
    backend: str = field(default_factory=_default_backend)
    limits: Limits = DEFAULT_LIMITS
    request_timeout_s: float = 120.0
    max_days: int | None = 20_000
    max_concurrent: int = field(default_factory=_default_concurrency)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), default=str)

    @classmethod
    def from_json(cls, text: str) -> Settings:
        raw = json.loads(text)
        raw["limits"] = Limits(**raw.get("limits", {}))
        return cls(**raw)


# -- state ----------------------------------------------------------------------------------------


class _State:
    """What the app shares between requests: settings, the market, the worker pool."""

    def __init__(self, settings: Settings, market: Market) -> None:
        self.settings = settings
        self.market = market
        self.tickers = _ticker_summary(market)
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None

    @property
    def pool(self) -> concurrent.futures.ThreadPoolExecutor:
        if self._pool is None:
            self._pool = concurrent.futures.ThreadPoolExecutor(
                max_workers=self.settings.max_concurrent, thread_name_prefix="gpubt-backtest"
            )
        return self._pool

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None


def load_settings_market(settings: Settings) -> Market:
    """The whole data folder/file of the settings, or the built-in synthetic market."""
    if settings.data is None:
        return synthetic_market()
    return load_market(settings.data)


def _ticker_summary(market: Market) -> list[dict[str, Any]]:
    out = []
    for j, ticker in enumerate(market.tickers):
        rows = np.flatnonzero(market.observed[:, j])
        out.append(
            {
                "ticker": ticker,
                "first": str(market.dates[rows[0]]) if rows.size else None,
                "last": str(market.dates[rows[-1]]) if rows.size else None,
                "days": int(rows.size),
            }
        )
    return out


# -- the app --------------------------------------------------------------------------------------


def create_app(settings: Settings | None = None, market: Market | None = None) -> FastAPI:
    """The API over `market` (default: the settings' data, loaded now, once)."""
    settings = settings or Settings()
    if settings.backend not in engine.CHOICES:
        raise ValueError(
            f"unknown backend {settings.backend!r}; available: {', '.join(engine.CHOICES)}"
        )
    state = _State(settings, market if market is not None else load_settings_market(settings))

    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        yield
        state.close()

    app = FastAPI(
        title="gpubt",
        version=__version__,
        description="Backtest Composer-style FlowNode strategy trees (spec: shared/spec/flownode.md).",
        lifespan=lifespan,
    )
    app.state.gpubt = state
    app.add_middleware(_InternalErrors)
    _install_error_handlers(app)

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "backend": settings.backend, "tickers": len(state.market.tickers)}

    @app.get("/api/tickers")
    async def tickers() -> dict[str, Any]:
        return {"source": state.market.source, "count": len(state.tickers), "tickers": state.tickers}

    @app.get("/api/metrics")
    async def metrics() -> dict[str, Any]:
        return _CATALOGUE

    @app.post("/api/validate")
    async def validate(request: Request) -> Response:
        body = await _read_body(request, settings.limits.max_request_bytes)

        def work() -> bytes:
            strategy = parse_request(body, settings.limits)
            state.market.require(strategy.tickers)
            return _dumps({"valid": True, "tickers": list(strategy.tickers)})

        return Response(await _run(state, work), media_type="application/json")

    @app.post("/api/backtest")
    async def backtest(
        request: Request, format: Literal["json", "html"] = Query("json")  # noqa: A002
    ) -> Response:
        body = await _read_body(request, settings.limits.max_request_bytes)

        @paused()  # one pause per request: the collector resumes once its objects are gone
        def work() -> bytes:
            strategy = parse_request(body, settings.limits)
            state.market.require(strategy.tickers)
            _check_days(strategy, state.market, settings.max_days)
            result = engine.run_backtest(strategy, state.market, settings.backend)
            if format == "html":
                from gpubt.report import render_html

                return render_html(
                    result.to_dict(), title=_title(strategy), benchmark=strategy.request.benchmark
                ).encode()
            return result.to_json()

        content = await _run(state, work)
        if format == "html":
            return HTMLResponse(content)
        return Response(content, media_type="application/json")

    return app


def app_from_env() -> FastAPI:
    """Factory for worker processes: settings from `GPUBT_API_SETTINGS` (JSON), else defaults."""
    text = os.environ.get(SETTINGS_ENV)
    configure_logging()
    return create_app(Settings.from_json(text) if text else Settings())


def configure_logging(level: int = logging.INFO) -> None:
    """Route `gpubt.*` records (internal errors with their request id) to stderr, once, unless
    the host application configured logging itself."""
    logger = logging.getLogger("gpubt")
    if logger.handlers or logging.getLogger().handlers:
        return
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logger.addHandler(handler)
    logger.setLevel(level)


# -- request plumbing -----------------------------------------------------------------------------


async def _read_body(request: Request, limit: int) -> bytes:
    """The raw body, refused with 413 as soon as it is known to be over `limit` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            size = int(declared)
        except ValueError:
            raise GpubtError(f"invalid Content-Length header {declared!r}") from None
        if size > limit:
            raise GpubtError(f"request is {size:,} bytes; the limit is {limit:,}", status=413)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise GpubtError(f"request is over the limit of {limit:,} bytes", status=413)
        chunks.append(chunk)
    return b"".join(chunks)


async def _run(state: _State, work) -> bytes:
    """`work()` in the backtest pool, answered 503 past the request timeout."""
    timeout = state.settings.request_timeout_s
    future = asyncio.get_running_loop().run_in_executor(state.pool, work)
    try:
        return await asyncio.wait_for(future, timeout)
    except TimeoutError:
        raise GpubtError(
            f"the backtest did not finish within the {timeout:g} s limit of this server; "
            "try a shorter period (startDate/endDate) or a smaller tree",
            status=503,
        ) from None


def _check_days(strategy: Strategy, market: Market, max_days: int | None) -> None:
    """Refuse (413) a backtest whose calendar, up to endDate, is longer than `max_days`."""
    if max_days is None:
        return
    names = list(dict.fromkeys(p for t in strategy.tickers for p in t.split("/") if p))
    if not names:
        return
    cols = [market.column(t) for t in names]
    days = market.dates[market.observed[:, cols].any(axis=1)]
    end = strategy.request.end_date
    if end is not None:
        days = days[days <= np.datetime64(end, "D")]
    if days.size > max_days:
        raise GpubtError(
            f"the backtest spans {days.size:,} days of data; this server's limit is "
            f"{max_days:,}: set an earlier endDate",
            "endDate",
            status=413,
        )


def _title(strategy: Strategy) -> str:
    return f"Backtest of {strategy.root.id} · {strategy.request.mode}"


def _dumps(value: Any) -> bytes:
    """Compact JSON, NaN and ±inf as null (spec §7), as `BacktestResponse.to_json` writes a
    backtest: each float in its shortest round-trip form."""
    return orjson.dumps(value, option=orjson.OPT_SERIALIZE_NUMPY)


# -- errors ---------------------------------------------------------------------------------------


def _error(status: int, message: str, path: str = "", **extra: Any) -> JSONResponse:
    return JSONResponse({"error": {"message": message, "path": path, **extra}}, status_code=status)


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(GpubtError)
    async def gpubt_error(_request: Request, exc: GpubtError) -> JSONResponse:
        return JSONResponse(exc.to_json(), status_code=exc.status)

    @app.exception_handler(RequestValidationError)
    async def request_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        if not errors:
            return _error(400, "invalid request")
        err = errors[0]
        loc = [p for p in err.get("loc", ()) if p not in ("body", "query", "path", "header")]
        message = err.get("msg", "invalid request")
        if "input" in err and err.get("type") != "missing":
            message = f"{message} (got {json.dumps(err['input'], default=str)[:60]})"
        return _error(400, message, json_path(*loc))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        status = 400 if exc.status_code == 422 else exc.status_code
        response = _error(status, str(exc.detail))
        for key, value in (exc.headers or {}).items():
            response.headers[key] = value
        return response


class _InternalErrors:
    """Anything unexpected → 500 with a request id; the traceback is logged with that id."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracked_send(message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracked_send)
        except Exception:
            request_id = str(uuid.uuid4())
            log.exception(
                "internal error in %s %s [requestId %s]", scope.get("method"), scope.get("path"), request_id
            )
            if started:  # too late for a JSON answer: the server drops this connection only
                raise
            response = _error(500, "internal error", requestId=request_id)
            await response(scope, receive, send)


# -- the metric catalogue -------------------------------------------------------------------------

_NEEDS = {
    "c": ["close"],
    "hlc": ["high", "low", "close"],
    "hlcv": ["high", "low", "close", "volume"],
    "ohlcv": ["open", "high", "low", "close", "volume"],
}
_WINDOW = {
    "Current Price": "ignored",
    "Laguerre RSI": "ignored (gamma 0.8)",
    "Momentum (Weighted)": "ignored (fixed 21/63/126/252-day returns)",
    "Momentum (Unweighted)": "ignored (fixed 21/63/126/252-day returns)",
    "Momentum (12-Month SMA)": "ignored (SMA(12) against 252 days earlier)",
    "MACD Histogram": "ignored (fixed 12/26/9)",
    "PPO Histogram": "ignored (fixed 12/26/9)",
    "Stochastic RSI": "the RSI period p and the number of RSI values the stochastic spans",
    "Stochastic %D": "the %K lookback p (%D is its 3-day SMA)",
    "Hull Moving Average": "the lookback p (at least 2)",
    "ADX": "the Wilder period p",
    "ATR": "the Wilder period p",
    "ATR %": "the Wilder period p",
}
_DEFAULT_WINDOW = "the lookback p = max(1, window) days"


def _catalogue() -> dict[str, Any]:
    metrics = [
        {
            "name": m.name,
            "aliases": list(m.aliases),
            "description": m.doc,
            "window": _WINDOW.get(m.name, _DEFAULT_WINDOW),
            "needs": _NEEDS.get(m.needs, list(m.needs)),
            "warmup": {"window": 14, "days": m.lookback(14)},
            "ratioTickers": "volume" not in _NEEDS.get(m.needs, []),
        }
        for m in METRICS
    ]
    return {
        "metrics": metrics,
        "special": [
            {
                "name": DATE_METRIC,
                "description": "True when the day's (month, day) lies in [dateMonth/dateDay, dateTo]",
                "window": "ignored",
                "needs": [],
            }
        ],
        "customFormula": {
            "fields": ["close", "open", "high", "low", "volume"],
            "variables": ["window"],
            "operators": ["+", "-", "*", "/", "^"],
            "functions": ["abs", "log", "exp", "sqrt", "min", "max", "shift", "diff", "mean",
                          "std", "sum", "highest", "lowest"],
            "metrics": "any catalogue name or alias as a function of a window, e.g. SMA(50)",
        },
    }


_CATALOGUE = _catalogue()

