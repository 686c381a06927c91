"""The Polars GPU engine backend (`polars-gpu`) where no GPU is: its staging, on the CPU engine.

`PolarsGpuBackend` is the Polars backend run in stages (`PolarsBackend(staged=True)`), every
stage's query collected on Polars' GPU engine. Here the same stages run on the CPU engine
(`Staged`) and must answer what the one query answers, to the bit: every example, every catalogue
metric of a ticker and of a ratio, random requests on random markets. Each query a stage hands
the engine is checked on the way: it calls no Python (the GPU engine cannot), and where
cudf-polars is installed its translator, which needs no device, must take it whole (what the
engine would run; `raise_on_fail` would raise on anything else). On a GPU the parity suites run
`polars-gpu` itself against the reference (marker `gpu`).
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings

from gpubt.backends import AUTO_ORDER, GPU_BACKENDS, REGISTRY, pick, usable
from gpubt.backends.polars_cpu import _AS_BUILT, PolarsBackend
from gpubt.compiler.execute import run_compiled
from gpubt.data.synthetic import synthetic_market
from gpubt.errors import GpubtError
from gpubt.indicators import expand, ticker_source
from gpubt.ir.nodes import Builder
from gpubt.schema.catalogue import METRICS
from gpubt.schema.parse import parse_request
from tests.golden import EXAMPLES
from tests.strategies import market_requests

TRANSLATOR = importlib.util.find_spec("cudf_polars") is not None
USABLE, WHY = usable("polars-gpu")


class Staged(PolarsBackend):
    """The GPU backend's stages on the CPU engine, each stage's query checked before it runs."""

    def __init__(self, stage_bytes: int | None = None) -> None:
        super().__init__(staged=True, stage_bytes=stage_bytes)
        self.translated = 0  # stage queries cudf-polars' translator took

    def _collect(self, query: pl.LazyFrame) -> pl.DataFrame:
        assert "python_udf" not in query.explain(optimizations=_AS_BUILT), "a stage calls Python"
        if TRANSLATOR:
            from cudf_polars.dsl.translate import Translator

            translator = Translator(query._ldf.visit(), pl.GPUEngine(raise_on_fail=True, executor="in-memory"))
            translator.translate_ir()
            assert not translator.errors, f"the GPU engine would refuse: {translator.errors}"
            self.translated += 1
        return super()._collect(query)


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    """Equal to the bit, a missing value (NaN) equal to a missing value."""
    return a.dtype == b.dtype and a.tobytes() == b.tobytes()


# -- registry --------------------------------------------------------------------------------------


def test_registered_as_a_gpu_backend_that_auto_never_picks() -> None:
    assert REGISTRY["polars-gpu"] == ("gpubt.backends.polars_gpu", "PolarsGpuBackend")
    assert "polars-gpu" in GPU_BACKENDS and "polars-gpu" not in AUTO_ORDER
    assert pick("auto")[0] == "numba"


def test_asking_for_it_without_the_engine_says_why() -> None:
    if USABLE:
        pytest.skip("polars-gpu is usable on this machine: there is no refusal to check")
    assert "cudf-polars" in WHY or "CUDA device" in WHY
    from gpubt.backends import get_backend

    with pytest.raises(GpubtError, match=r"backend 'polars-gpu' cannot run here \(.+\); use --backend auto"):
        get_backend("polars-gpu")


def test_the_cli_says_why_with_the_extra_to_install(capsys) -> None:
    """The reason reaches the terminal whole: rich would read "[gpu]" as markup and drop it."""
    if USABLE:
        pytest.skip("polars-gpu is usable on this machine: there is no refusal to check")
    from gpubt.cli import main

    root = Path(__file__).resolve().parents[1]
    assert main(["run", str(root / "examples" / "tqqq_rsi.json"), "--backend", "polars-gpu"]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "backend 'polars-gpu' cannot run here" in err
    assert "gpubt[gpu]" in err or "CUDA device" in err


# -- the stages on the CPU engine ------------------------------------------------------------------


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: Path(p).stem)
def test_every_example_staged_equals_the_one_query(example: Path) -> None:
    strategy = parse_request(example.read_text())
    market = synthetic_market()
    staged = Staged()
    got = run_compiled(strategy, market, staged).to_json()
    assert got == run_compiled(strategy, market, PolarsBackend()).to_json()
    assert staged.translated == (staged.collects if TRANSLATOR else 0)


@pytest.mark.parametrize(("ticker", "columns"), [("SPY", None), ("QQQ/SPY", None), ("SPY", 40), ("QQQ/SPY", 7)])
def test_every_catalogue_metric_staged_equals_the_one_query(ticker: str, columns: int | None) -> None:
    """Every metric at four windows of one source: levels of kernels (windows, recursions, the
    lone kernels) alternating with levels of Polars columns, many stages; under a budget of a
    few columns a stage is many collects, each within it (but a column reading more)."""
    market = synthetic_market()
    b = Builder()
    src = ticker_source(b, ticker)
    nodes = [expand(b, m.name, src, w) for m in METRICS for w in (1, 2, 14, 200)]
    staged = Staged(None if columns is None else columns * 9 * market.n_days)
    parts = []  # per collect: (columns read, columns made)
    collect_part = staged._collect_part

    def counted(frame: pl.DataFrame, levels: list[list[pl.Expr]], reads: set[str], made: list[str]) -> pl.DataFrame:
        parts.append((len(reads), len(made)))
        return collect_part(frame, levels, reads, made)

    staged._collect_part = counted
    got = staged.evaluate(nodes, market, {})
    want = PolarsBackend().evaluate(nodes, market, {})
    assert [n for n in nodes if not _same(got[n], want[n])] == []
    assert len(parts) == staged.collects
    if columns is None:
        assert 3 <= staged.collects <= 20
    else:
        assert staged.collects > 20
        assert all(read + made <= columns or made == 1 for read, made in parts), parts


def test_date_tests_and_for_days_staged_equal_the_one_query() -> None:
    market = synthetic_market()
    b = Builder()
    above = b.node("gt", (), (b.price("SPY"), b.const(100.0)))
    nodes = [b.node("date_between", (3, 1, 5, 31)), b.node("date_between", (11, 1, 2, 15)),
             b.node("rolling_all", (3,), (above,))]
    staged = Staged()
    got = staged.evaluate(nodes, market, {})
    want = PolarsBackend().evaluate(nodes, market, {})
    assert [n for n in nodes if not _same(got[n], want[n])] == []
    assert staged.collects == 1


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(case=market_requests())
def test_random_requests_staged_equal_the_one_query(case) -> None:
    spec, body = case
    market = spec.build()
    answers = []
    for backend in (Staged(), PolarsBackend()):
        try:
            answers.append(run_compiled(parse_request(body), market, backend).to_json())
        except GpubtError as exc:
            answers.append(("error", exc.message))
    assert answers[0] == answers[1]


@pytest.mark.skipif(not TRANSLATOR, reason="cudf-polars (the GPU engine, pip install 'gpubt[gpu]') is not installed")
def test_a_failing_gpu_collect_reruns_on_the_cpu_with_a_warning() -> None:
    """With cudf-polars installed and a device reported (a stand-in here), the backend imports,
    plans and hands its first stage to the GPU engine; that collect failing (no driver here)
    reruns the backtest on numba, with a warning, and the answer is numba's."""
    code = textwrap.dedent("""
        import logging
        from cuda.bindings import runtime
        runtime.cudaGetDeviceCount = lambda: (runtime.cudaError_t.cudaSuccess, 1)
        runtime.cudaMemGetInfo = lambda: (runtime.cudaError_t.cudaSuccess, 1 << 30, 1 << 31)
        logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
        from gpubt.backends import get_backend, usable
        from gpubt.data.synthetic import synthetic_market
        from gpubt.engine import run_backtest
        from gpubt.schema.parse import parse_request
        assert usable("polars-gpu") == (True, "ok")
        backend = get_backend("polars-gpu")
        assert backend.staged and backend.stage_bytes == 1 << 29 and type(backend.engine).__name__ == "GPUEngine"
        strategy, market = parse_request(open("examples/tqqq_rsi.json").read()), synthetic_market()
        same = run_backtest(strategy, market, "polars-gpu").to_json() == run_backtest(strategy, market, "numba").to_json()
        print("same", same)
    """)
    root = Path(__file__).resolve().parents[1]
    done = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=False,
                          env={**os.environ, "GPUBT_GPU_MEMORY": ""})
    assert done.returncode == 0, done.stderr[-3000:]
    assert "same True" in done.stdout
    assert "WARNING backend polars-gpu failed" in done.stderr and "running on numba" in done.stderr
