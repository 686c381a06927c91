"""One backtest from request to response: parse, load the market, pick a backend, run.

This is the single entry point the CLI and (later) the API call, so both answer the same way.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from gpubt.backends import AUTO_ORDER, GPU_BACKENDS, REGISTRY, get_backend, usable
from gpubt.collector import paused
from gpubt.compiler.execute import run_compiled
from gpubt.data.loaders import load_market
from gpubt.data.market import Market
from gpubt.data.synthetic import synthetic_market
from gpubt.errors import GpubtError
from gpubt.reference.backtest import run_reference
from gpubt.schema.parse import DEFAULT_LIMITS, Limits, Strategy, parse_request
from gpubt.schema.response import BacktestResponse

log = logging.getLogger(__name__)

BACKENDS = ("reference", *REGISTRY)  # concrete engines (parity tests run each)
CHOICES = ("auto", *BACKENDS)  # what a user may ask for
DEFAULT_BACKEND = "auto"


def market_for(strategy: Strategy, data: str | Path | None) -> Market:
    """The built-in synthetic market, or the strategy's tickers (and benchmark, when the source
    has it) read from a folder or long-format file."""
    if data is None:
        return synthetic_market()
    benchmark = strategy.request.benchmark
    tickers = [*strategy.tickers, benchmark]
    try:
        return load_market(data, tickers=tickers)
    except GpubtError as exc:
        if benchmark in strategy.tickers or benchmark not in exc.message:
            raise
        return load_market(data, tickers=strategy.tickers)


def run_backtest(strategy: Strategy, market: Market, backend: str = DEFAULT_BACKEND) -> BacktestResponse:
    """The spec §7 response for one strategy on one market: `.to_json()` is the wire format,
    `.to_dict()` the same as Python objects."""
    if backend not in CHOICES:
        raise GpubtError(f"unknown backend {backend!r}; available: {', '.join(CHOICES)}", "backend")
    if backend == "reference":
        return run_reference(strategy, market)
    engine = get_backend(backend)
    try:
        return run_compiled(strategy, market, engine)
    except GpubtError:
        raise
    except Exception as exc:  # a CUDA failure: the CPU answers the same numbers, never a partial one
        if engine.name not in GPU_BACKENDS:
            raise
        fallback = next(name for name in AUTO_ORDER if name not in GPU_BACKENDS and usable(name)[0])
        log.warning("backend %s failed (%s: %s); running on %s", engine.name, type(exc).__name__, exc, fallback)
        return run_compiled(strategy, market, get_backend(fallback))


@paused()  # one pause for parse and run: the collector resumes once their objects are gone
def backtest(
    body: bytes | str | dict[str, Any],
    data: str | Path | None = None,
    backend: str = DEFAULT_BACKEND,
    limits: Limits = DEFAULT_LIMITS,
) -> dict[str, Any]:
    """Parse a request body, load its data and run it: the whole pipeline in one call, the
    response as Python dicts and lists (`run_backtest(...).to_json()` writes it as JSON)."""
    strategy = parse_request(body, limits)
    return run_backtest(strategy, market_for(strategy, data), backend).to_dict()
