"""Numba's parallel kernels called where a threading layer would kill the process: in a forked
child after the parent launched on GNU OpenMP, and from several threads on `workqueue`."""

from __future__ import annotations

import multiprocessing
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from polars.testing import assert_frame_equal

import gpubt.parallel
from gpubt.data.synthetic import synthetic_market
from gpubt.engine import run_backtest
from gpubt.metrics.core import _rows
from gpubt.schema.parse import parse_strategy_file
from gpubt.sweep import load_spec, run_sweep

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "tqqq_rsi.json"


def _request_json() -> bytes:
    return run_backtest(parse_strategy_file(EXAMPLE.read_text()), synthetic_market(), "numba").to_json()


def test_the_serial_twins_give_the_parallel_kernels_bits(monkeypatch: pytest.MonkeyPatch) -> None:
    """Condition lists, batch metrics and the fused sweep, each run parallel and serial."""
    rng = np.random.default_rng(7)
    net, turnover, holdings = rng.normal(0, 0.01, (80, 300)), rng.random((80, 300)), rng.random((80, 300))
    bench, shared = np.empty((0, 300)), np.empty(0)
    parallel, serial = np.empty((80, 16)), np.empty((80, 16))
    _rows.parallel(net, turnover, holdings, bench, shared, 0.0, parallel)
    _rows.serial(net, turnover, holdings, bench, shared, 0.0, serial)
    np.testing.assert_array_equal(parallel, serial)

    market = synthetic_market()
    spec = load_spec(ROOT / "examples" / "sweeps" / "sweep_tqqq_rsi.json")
    want_sweep = run_sweep(spec, market=market, backend="numba").table
    want_json = _request_json()
    monkeypatch.setattr(gpubt.parallel, "_serial_only", True)
    assert _request_json() == want_json
    assert_frame_equal(run_sweep(spec, market=market, backend="numba").table, want_sweep)


def _backtest_in_child(conn) -> None:  # noqa: ANN001 - runs in a forked child
    conn.send(_request_json())


@pytest.mark.skipif(not hasattr(os, "fork"), reason="this platform has no os.fork (Windows)")
def test_a_forked_child_runs_backtests_after_its_parent_did() -> None:
    """GNU OpenMP terminates a forked child that launches a parallel kernel once its parent has:
    a `multiprocessing` pool after one backtest in the parent. The child runs the serial twins."""
    want = _request_json()  # the condition lists' kernel launches here, starting the layer
    context = multiprocessing.get_context("fork")
    parent, child = context.Pipe()
    process = context.Process(target=_backtest_in_child, args=(child,))
    process.start()
    try:
        assert parent.poll(120), f"the forked child sent nothing (exit code {process.exitcode})"
        assert parent.recv() == want
    finally:
        process.kill()
        process.join()


def test_threads_launch_at_once_on_the_workqueue_layer() -> None:
    """`workqueue` aborts the process when two threads launch parallel kernels at once (the
    API's request threads); a thread that finds a launch in progress runs the serial twin."""
    script = textwrap.dedent(
        """
        import threading
        import numba
        import numpy as np
        from gpubt.metrics.core import _rows
        rng = np.random.default_rng(1)
        args = (rng.normal(0, 0.01, (512, 2000)), rng.random((512, 2000)), rng.random((512, 2000)),
                np.empty((0, 2000)), np.empty(0), 0.0)
        want = np.empty((512, 16))
        _rows(*args, want)
        assert numba.threading_layer() == "workqueue", numba.threading_layer()
        same = []
        def run():
            for _ in range(25):
                out = np.empty((512, 16))
                _rows(*args, out)
                same.append(bool(np.array_equal(out, want, equal_nan=True)))
        threads = [threading.Thread(target=run) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        print(len(same), all(same))
        """
    )
    env = {**os.environ, "NUMBA_THREADING_LAYER": "workqueue"}
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["100", "True"]
