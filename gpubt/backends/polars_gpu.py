"""Polars GPU engine backend: the Polars backend's query collected by cudf-polars on a CUDA device.

The query is the CPU Polars backend's own (`gpubt.backends.polars_cpu`), so the two cannot
drift. Polars' GPU engine cannot call Python, and the windows and recursions of that query are
our Numba kernels behind `map_batches` (Polars' own forms are inexact or, for `ewm_mean` and the
weighted window sums, refused by the engine), so the query runs in stages (`PolarsBackend._stages`):
the Polars columns of consecutive levels in one GPU collect, then the next level's kernels on
the host, their columns joined in for the levels after; a stage whose columns (those it reads
and those it makes) would pass the memory budget (`GPUBT_GPU_MEMORY`, else a share of the
device's free memory) is several collects. Every collect is made with
`raise_on_fail=True`: a query the engine cannot run raises, and `gpubt.engine.run_backtest`
reruns the backtest on a CPU backend with a logged warning, rather than Polars falling back
silently.

Importing this module needs cudf-polars (`pip install gpubt[gpu]` with Polars < 1.45, which it
pins) and a CUDA device, and the import error says which is missing, so `usable("polars-gpu")`
reports it and `auto` never picks it. Its device stages are checked without a GPU by cudf-polars'
translator (tests/test_polars_gpu.py); the staging itself runs on the CPU engine in every CI run.
"""

from __future__ import annotations

import polars as pl

try:
    import cudf_polars  # noqa: F401 - the engine Polars hands GPU queries to
    from cuda.bindings import runtime
except ImportError as exc:
    raise ImportError(f"the Polars GPU engine needs cudf-polars (pip install 'gpubt[gpu]'): {exc}") from exc

_error, _devices = runtime.cudaGetDeviceCount()
if _error != runtime.cudaError_t.cudaSuccess or not _devices:
    raise RuntimeError(f"no usable CUDA device for the Polars GPU engine ({_error.name}, {_devices or 0} devices)")

from gpubt.backends.polars_cpu import PolarsBackend  # noqa: E402 - once the engine is known to run
from gpubt.backends.twins import memory_budget  # noqa: E402


def _free_bytes() -> int:
    error, free, _total = runtime.cudaMemGetInfo()
    if error != runtime.cudaError_t.cudaSuccess:
        raise RuntimeError(f"cudaMemGetInfo failed: {error.name}")
    return int(free)


class PolarsGpuBackend(PolarsBackend):
    """`Backend`: the Polars backend's query in stages, its Polars columns on the GPU engine."""

    name = "polars-gpu"

    def __init__(self) -> None:
        # each collect's columns within the budget the CUDA backend's launches have
        # (GPUBT_GPU_MEMORY, else a share of the device's free memory)
        super().__init__(staged=True, stage_bytes=memory_budget(_free_bytes))
        # an unsupported query raises instead of running on the CPU unannounced
        self.engine = pl.GPUEngine(raise_on_fail=True, executor="in-memory")


__all__ = ["PolarsGpuBackend"]
