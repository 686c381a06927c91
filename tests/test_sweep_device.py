"""The fused sweep on a CUDA GPU (`gpubt.sweep.device`): the CPU kernel's numbers, variant by variant.

* In Numba's CUDA simulator on the CPU (a subprocess: NUMBA_ENABLE_CUDASIM must be set before
  Numba's CUDA target is imported): every variant of a small sweep, in several launches, equal
  to the CPU kernel's metrics. This checks the kernel's indexing and scratch layout in CI.
* Compiled to PTX for sm_90 (H100/H200) without a GPU: the twins use only what CUDA compiles,
  which the simulator (plain Python) cannot tell.
* On a real GPU (marker ``gpu``, skipped without one): the same on the long synthetic market,
  and a whole sweep through `run_sweep` equal to the CPU run.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from numba import cuda

from gpubt.backends.twins import cuda_usable, exact_arithmetic, twins

ROOT = Path(__file__).resolve().parents[1]

# The device rounds every + − × ÷ and sqrt as the CPU does (no FMA contraction); its pow (the
# CAGR's root) may differ from the CPU's libm in the last bit.
DEVICE_REL = 1e-12


def small_sweep(first: str = "2010-03-01", last: str = "2011-06-30"):  # type: ignore[no-untyped-def]
    """A fused sweep over bits, series pairs, forDays, two warm-ups, two allocation settings (whose
    patterns without the hedge share their tables' rows) and costs, with its market."""
    from gpubt.backends import get_backend
    from gpubt.data.synthetic import synthetic_market
    from gpubt.sweep import make_spec
    from gpubt.sweep.fused import prepare
    from tests.test_sweep import FUSED_TREE, market_slice

    market = market_slice(synthetic_market(), first, last)
    spec = make_spec({"costBps": 7, "benchmark": "SPY", "payload": FUSED_TREE},
                     {"ca.window": [5, 14], "ca.threshold": [55, 70], "cb.window": [5, 20],
                      "cb.rightWindow": [40, 60], "cb.comparator": ["gt"], "costBps": [0, 12.5],
                      "hedge.positions": [["TLT", "GLD"], ["IEF"]]})
    template = prepare(spec, market, get_backend("numba"))
    assert template is not None and template.kinds.tolist() == [0, 0, 1] and template.alloc.max() == 1
    assert len(template.held) < template.table_row.size  # patterns holding the same share their rows
    return spec, template


def latch_sweep():  # type: ignore[no-untyped-def]
    """A fused sweep of altexit_trend.json's entry and exit thresholds (a state scanned per
    variant) over its scaling node (weights that move from day to day)."""
    from gpubt.backends import get_backend
    from gpubt.data.synthetic import synthetic_market
    from gpubt.sweep import make_spec
    from gpubt.sweep.fused import prepare
    from tests.test_sweep import ROOT, market_slice

    market = market_slice(synthetic_market(), "2010-03-01", "2011-06-30")
    spec = make_spec(ROOT / "examples" / "altexit_trend.json", {
        "exit-dd.threshold": [3, 8, 12], "enter-rsi.threshold": [50, 75], "enter-cross.rightWindow": [20, 40]})
    template = prepare(spec, market, get_backend("numba"))
    assert 2 in template.kinds.tolist() and template.daily.shape[0] > 0
    return spec, template


_SIMULATED = """
import numpy as np
from gpubt.sweep.device import DeviceTemplate
from tests.test_sweep_device import small_sweep
spec, template = small_sweep()
n = spec.n_variants
want = template.run(3, n)
for inline in (True, False):  # the pattern formed in the day loop (the GPU's), or in passes
    device = DeviceTemplate(template, memory=1, inline_pattern=inline)  # the smallest budget: one variant per launch
    assert device.chunk < n
    calls = []
    np.testing.assert_allclose(device.run(3, n, lambda: calls.append(1)), want, rtol=1e-13, atol=0, equal_nan=True)
    assert calls == [1]  # the host work meanwhile: once, while the first launch runs
    print("simulated", n - 3, "variants", "inline" if inline else "passes")
from gpubt.sweep.device import upload
mixed = [np.arange(5, dtype=np.int8), np.empty((0, 3), np.int64), np.random.default_rng(1).random((3, 7)),
         np.array([True, False]), np.arange(6, dtype=np.int32).reshape(2, 3)[:, ::2], np.zeros((2, 0))]
first = upload(mixed)
for a, d in zip(mixed, first, strict=True):  # one allocation, a typed view each
    assert d.shape == a.shape and d.dtype == a.dtype and np.array_equal(d.copy_to_host(), a), (a, d)
from gpubt.sweep import device as kit
staging = kit._STAGING[0]
assert np.array_equal(upload([np.full(9, 3.0)])[0].copy_to_host(), np.full(9, 3.0))
assert kit._STAGING[0] is staging  # the host buffer is kept for the next upload,
assert all(np.array_equal(d.copy_to_host(), a) for a, d in zip(mixed, first))  # which leaves the last one's copy be
def refused(*args, **kwargs):
    raise MemoryError("no page-locked memory")
kit._STAGING.clear()
kit.cuda.pinned_array = refused  # a memlock limit: a pageable buffer is kept instead
assert np.array_equal(upload([np.arange(5.0)])[0].copy_to_host(), np.arange(5.0)) and len(kit._STAGING) == 1
print("uploaded", len(mixed))
from tests.test_sweep_device import latch_sweep
spec, template = latch_sweep()
want = template.run(0, spec.n_variants)
from gpubt.metrics.core import KEYS
assert len(np.unique(want[KEYS.index("totalReturn")])) > 2  # the thresholds move the states
for inline in (True, False):
    got = DeviceTemplate(template, memory=1, inline_pattern=inline).run(0, spec.n_variants)
    np.testing.assert_allclose(got, want, rtol=1e-13, atol=0, equal_nan=True)
    print("latches", spec.n_variants, "variants", "inline" if inline else "passes")
"""


def test_the_kernel_in_the_cuda_simulator_equals_the_cpu_kernel() -> None:
    env = {**os.environ, "NUMBA_ENABLE_CUDASIM": "1"}
    done = subprocess.run([sys.executable, "-c", _SIMULATED], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "simulated 61 variants inline" in done.stdout and "simulated 61 variants passes" in done.stdout
    assert "uploaded 6" in done.stdout
    assert "latches 12 variants inline" in done.stdout and "latches 12 variants passes" in done.stdout


@pytest.mark.usefixtures("stand_in_hopper")
def test_the_kernel_compiles_for_hopper() -> None:
    """PTX for sm_90 from the same twins the GPU runs (NVVM, no driver needed)."""
    import numba

    from gpubt.sweep import device

    _, template = small_sweep()
    device._compiled.cache_clear()
    t = template
    arrays = (t.bits, t.series, t.pairs, t.latches, t.kinds, t.rows, t.table_row, t.setting_at, t.gross, t.turn,
              t.held, t.daily, t.daily_turn, t.daily_held, t.dense, t.alloc, t.gross_at, t.start_of,
              t.starts, t.stops, t.bench, t.bench_squares, t.cost, np.empty((4, 2), np.int32), np.empty((4, 2)),
              np.empty((16, 2)))
    with exact_arithmetic():
        root, _ = cuda.compile_ptx(_root, (numba.float64[::1],), cc=(9, 0))
        for inline in (True, False):
            kernel = device._compiled(inline)._kernel
            ptx, _ = cuda.compile_ptx(kernel.py_func, tuple(numba.typeof(a) for a in arrays), cc=(9, 0))
            assert ".entry" in ptx and "sm_90" in ptx
            # every + − × ÷ rounded as on the CPU: the only fused multiply-adds are those inside
            # CUDA's pow (the CAGR's root), as many as in a kernel that takes that root alone
            assert ptx.count("fma.rn") == root.count("fma.rn")
    device._compiled.cache_clear()  # compiled against a stand-in device


def _mul_add(x, out):  # type: ignore[no-untyped-def]
    if cuda.grid(1) == 0:
        out[0] = x[0] * x[1] + x[2]


@pytest.mark.gpu
def test_the_device_rounds_a_product_before_adding_as_the_cpu_does() -> None:
    """(1 + 2⁻³⁰)(1 − 2⁻³⁰) − 1 is 0 when the product is rounded first (the CPU), −2⁻⁶⁰ when
    fused into one FMA: the twins must be compiled without contraction (`exact_arithmetic`)."""
    _gpu()
    kernel = twins(kernels=(_mul_add,))._mul_add
    x = cuda.to_device(np.array([1 + 2.0**-30, 1 - 2.0**-30, -1.0]))
    out = cuda.to_device(np.array([np.nan]))
    with exact_arithmetic():
        kernel[1, 1](x, out)
    ptx = "\n".join(kernel.inspect_asm().values())
    assert out.copy_to_host()[0] == 0.0, [line for line in ptx.splitlines() if "f64" in line][:12]


def _root(x):  # type: ignore[no-untyped-def]
    x[0] = x[0] ** (1.0 / x[1])


def _gpu() -> None:
    ok, why = cuda_usable()
    if not ok or os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":
        pytest.skip(f"no CUDA device: {why}")


@pytest.mark.gpu
def test_on_the_gpu_every_variant_equals_the_cpu_kernel() -> None:
    _gpu()
    from gpubt.sweep.device import DeviceTemplate

    spec, template = small_sweep("2005-01-03", "2019-12-31")
    n = spec.n_variants
    want = template.run(0, n)
    for inline in (True, False):
        device = DeviceTemplate(template, memory=1, inline_pattern=inline)
        np.testing.assert_allclose(device.run(0, n), want, rtol=DEVICE_REL, atol=1e-14, equal_nan=True)
        whole = DeviceTemplate(template, inline_pattern=inline)
        assert whole.chunk >= n
        np.testing.assert_allclose(whole.run(0, n), want, rtol=DEVICE_REL, atol=1e-14, equal_nan=True)


def test_a_cuda_failure_runs_the_variants_on_the_cpu_kernel(monkeypatch: pytest.MonkeyPatch, caplog) -> None:
    """Where the device fails (here: there is none, so the first copy to it raises), the chunk
    runs on the CPU kernel with a warning: the same table, nothing partial."""
    if cuda_usable()[0]:
        pytest.skip("a working device would not fail")
    from gpubt.sweep import run as runner
    from gpubt.sweep import run_sweep
    from tests.test_sweep import market_slice

    spec, _ = small_sweep()
    from gpubt.data.synthetic import synthetic_market

    market = market_slice(synthetic_market(), "2010-03-01", "2011-06-30")
    expected = run_sweep(spec, market=market, backend="numba").table
    monkeypatch.setattr(runner, "gpu_sweeps", lambda name, variants=None: True)
    with caplog.at_level("WARNING", logger="gpubt.sweep.run"):
        got = run_sweep(spec, market=market, backend="numba").table
    assert got.equals(expected)
    assert "GPU sweep kernel failed for variants 0..63" in caplog.text and "running them on the CPU" in caplog.text


def test_a_twin_constant_must_name_a_global_of_a_twins_module() -> None:
    """`twins(constants=...)` replaces globals the twins read; a name none of their modules has
    (a typo) would silently change nothing, so it is refused."""
    from gpubt.sweep.fused import kernel

    with pytest.raises(NameError, match="INLINE_PATERN"):
        twins(kernel.variant_metrics, constants={"INLINE_PATERN": True})


def test_auto_runs_a_small_fused_sweep_on_the_cpu_kernel(monkeypatch: pytest.MonkeyPatch, caplog) -> None:
    """Under auto a sweep of fewer than AUTO_GPU_MIN_VARIANTS never goes to the device, even where
    one is usable (here: every GPU backend reported usable): no upload, no fallback warning."""
    from gpubt import backends
    from gpubt.sweep import run as runner

    monkeypatch.setattr(backends, "usable", lambda name: (True, "ok"))
    spec, template = small_sweep()
    assert spec.n_variants < backends.AUTO_GPU_MIN_VARIANTS and backends.gpu_sweeps("auto")
    values = runner._fused_values(template, 0, spec.n_variants, "auto")
    assert template not in runner._ON_DEVICE and "GPU" not in caplog.text
    np.testing.assert_array_equal(values, template.run(0, spec.n_variants))


@pytest.mark.gpu
def test_local_gpus_run_the_chunks_on_a_dask_cuda_worker(tmp_path: Path) -> None:
    """--local-gpus on a real device: a dask-cuda worker per GPU loads the market itself and runs
    the chunks, its fused kernel on its own device; the table is the local GPU run's."""
    _gpu()
    pytest.importorskip("dask_cuda", reason="dask-cuda is not installed (pip install dask-cuda)")
    from gpubt.data.loaders import write_market_frames
    from gpubt.data.synthetic import synthetic_frames
    from gpubt.sweep import make_spec, run_sweep
    from tests.test_sweep import TQQQ

    frames = synthetic_frames()
    write_market_frames({t: frames[t] for t in ("SPY", "QQQ", "TQQQ", "SQQQ", "UVXY", "BIL")}, tmp_path)
    spec = make_spec(TQQQ, {"c1.window": [6, 10, 14, 18], "c1.threshold": [72, 76, 80], "c2.threshold": [25, 31]})
    local = run_sweep(spec, chunk_size=8, backend="cupy", data=str(tmp_path))
    on_dask = run_sweep(spec, chunk_size=8, backend="cupy", local_gpus=1, data=str(tmp_path))
    assert on_dask.workers.startswith("dask LocalCUDACluster") and "(1 workers)" in on_dask.workers
    assert on_dask.table.equals(local.table)
