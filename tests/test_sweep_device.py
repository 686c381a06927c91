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
import types
from pathlib import Path

import numpy as np
import pytest

from gpubt.backends.twins import cuda_usable

ROOT = Path(__file__).resolve().parents[1]

# Equal to the CPU kernel up to rounding: the device may fuse a multiply and an add into one FMA.
DEVICE_REL = 1e-10


def small_sweep(first: str = "2010-03-01", last: str = "2011-06-30"):  # type: ignore[no-untyped-def]
    """A fused sweep over bits, series pairs, forDays, two warm-ups and costs, with its market."""
    from gpubt.backends import get_backend
    from gpubt.data.synthetic import synthetic_market
    from gpubt.sweep import make_spec
    from gpubt.sweep.template import prepare
    from tests.test_sweep import FUSED_TREE, market_slice

    market = market_slice(synthetic_market(), first, last)
    spec = make_spec({"costBps": 7, "benchmark": "SPY", "payload": FUSED_TREE},
                     {"ca.window": [5, 14], "ca.threshold": [55, 70], "cb.window": [5, 20],
                      "cb.rightWindow": [40, 60], "cb.comparator": ["gt"], "costBps": [0, 12.5]})
    template = prepare(spec, market, get_backend("numba"))
    assert template is not None and template.kinds.tolist() == [0, 0, 1]
    return spec, template


_SIMULATED = """
import numpy as np
from gpubt.sweep.device import DeviceTemplate
from tests.test_sweep_device import small_sweep
spec, template = small_sweep()
n = spec.n_variants
device = DeviceTemplate(template, memory=1)  # the smallest budget: one variant per launch
assert device.chunk < n
np.testing.assert_allclose(device.run(3, n), template.run(3, n), rtol=1e-13, atol=0, equal_nan=True)
print("simulated", n - 3, "variants")
"""


def test_the_kernel_in_the_cuda_simulator_equals_the_cpu_kernel() -> None:
    env = {**os.environ, "NUMBA_ENABLE_CUDASIM": "1"}
    done = subprocess.run([sys.executable, "-c", _SIMULATED], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "simulated 29 variants" in done.stdout


def test_the_kernel_compiles_for_hopper(monkeypatch: pytest.MonkeyPatch) -> None:
    """PTX for sm_90 from the same twins the GPU runs (NVVM, no driver needed)."""
    import numba
    from numba import cuda

    try:
        cuda.compile_ptx(lambda x: None, (numba.float64,), device=True, cc=(9, 0))
    except Exception as exc:  # no NVVM library on this machine
        pytest.skip(f"NVVM unavailable: {type(exc).__name__}: {exc}")
    from gpubt.sweep import device

    _, template = small_sweep()
    # A device function's compile asks the current device for its capability; there is none here.
    monkeypatch.setattr("numba.cuda.dispatcher.get_current_device",
                        lambda: types.SimpleNamespace(compute_capability=(9, 0)))
    monkeypatch.setattr(device, "_DEVICE", None)
    kernel = device._compiled()._kernel
    t = template
    arrays = (t.bits, t.series, t.pairs, t.kinds, t.rows, t.gross, t.turn, t.held, t.start_of, t.starts, t.stops,
              t.bench, t.bench_squares, t.cost, np.empty((4, 2), np.int32), np.empty((4, 2)), np.empty((16, 2)))
    ptx, _ = cuda.compile_ptx(kernel.py_func, tuple(numba.typeof(a) for a in arrays), cc=(9, 0))
    assert ".entry" in ptx and "sm_90" in ptx
    monkeypatch.setattr(device, "_DEVICE", None)


def _gpu() -> None:
    ok, why = cuda_usable()
    if not ok or os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":
        pytest.skip(f"no CUDA device: {why}")


@pytest.mark.gpu
def test_on_the_gpu_every_variant_equals_the_cpu_kernel() -> None:
    _gpu()
    from gpubt.sweep.device import DeviceTemplate

    spec, template = small_sweep("2005-01-03", "2019-12-31")
    device = DeviceTemplate(template, memory=1)
    n = spec.n_variants
    np.testing.assert_allclose(device.run(0, n), template.run(0, n), rtol=DEVICE_REL, atol=1e-14, equal_nan=True)
    whole = DeviceTemplate(template)
    assert whole.chunk >= n
    np.testing.assert_allclose(whole.run(0, n), template.run(0, n), rtol=DEVICE_REL, atol=1e-14, equal_nan=True)
