"""Backends execute column-graph nodes over a market; each is one module behind `Backend`.

The registry maps a name to the module and class that implement it, imported only when used,
so a machine without CUDA never imports a GPU library (`cupy` imports CuPy only in its own
module, which refuses to import without a usable device). Adding a backend adds one line here
(and, if it should be picked automatically, one place in `AUTO_ORDER` or `GPU_BACKENDS`).
"""

from __future__ import annotations

import functools
import logging
from importlib import import_module

from gpubt.backends.base import Backend
from gpubt.errors import GpubtError

log = logging.getLogger(__name__)

REGISTRY: dict[str, tuple[str, str]] = {
    "polars": ("gpubt.backends.polars_cpu", "PolarsBackend"),
    "numba": ("gpubt.backends.numba_cpu", "NumbaBackend"),
    "cupy": ("gpubt.backends.cupy_gpu", "CupyBackend"),
    "polars-gpu": ("gpubt.backends.polars_gpu", "PolarsGpuBackend"),
}

# What auto picks for a backtest's signals, fastest first, as measured in benchmarks/RESULTS.md:
# numba ~15x polars on signals (bit-equal); on an H200 and an H100, numba on the host's 16 cores
# beat cupy at every scenario (cupy 0.2-0.75x end to end on the H100), so cupy runs only when
# asked for; polars-gpu (host kernels between GPU collects, never yet run on a GPU) too. Sweeps
# use the GPU where it pays (`gpu_sweeps`).
AUTO_ORDER = ("numba", "polars")
# Backends that run on a CUDA device: their tests are marked `gpu`, a CUDA failure in them falls
# back to a CPU backend with a warning, and fused sweeps run their kernel on the device.
GPU_BACKENDS = ("cupy", "polars-gpu")


@functools.cache
def usable(name: str) -> tuple[bool, str]:
    """Whether a registered backend can run here, and if not why (its import error). Asked once
    per process: a failed import is not cached by Python, and retrying `import cupy` on a machine
    without it costs ~6 ms, on every `auto` backtest."""
    module, cls = REGISTRY[name]
    try:
        getattr(import_module(module), cls)
    except Exception as exc:  # an optional dependency missing or broken: report, never crash
        return False, f"{type(exc).__name__}: {exc}"
    return True, "ok"


def pick(name: str) -> tuple[str, str]:
    """The concrete backend for a name ("auto" resolves to the fastest usable one), and why."""
    if name != "auto":
        return name, "asked for"
    skipped = []
    for candidate in AUTO_ORDER:
        ok, why = usable(candidate)
        if ok:
            gpus = [g for g in GPU_BACKENDS if usable(g)[0]]
            if gpus:
                skipped.append(f"{', '.join(gpus)} usable but slower for one backtest's signals")
            reason = "fastest usable backend" + (f" ({'; '.join(skipped)})" if skipped else "")
            return candidate, reason
        skipped.append(f"{candidate} unusable: {why}")
    raise RuntimeError("no usable backend: " + "; ".join(skipped))


def gpu_sweeps(name: str) -> bool:
    """Whether a fused sweep asked to run on ``name`` runs its per-variant kernel on the GPU: when
    asked for a GPU backend, or for auto where one is usable (one thread per variant: 4.8x the
    16-core CPU kernel at a million variants on an H200, benchmarks/RESULTS.md)."""
    if name in GPU_BACKENDS:
        return True
    return name == "auto" and any(usable(g)[0] for g in GPU_BACKENDS)


def get_backend(name: str) -> Backend:
    resolved, reason = pick(name)
    if name == "auto":
        log.info("backend auto -> %s (%s)", resolved, reason)
    ok, why = usable(resolved)
    if not ok:  # asked for by name (a GPU backend on a machine without CUDA): say why, no traceback
        raise GpubtError(f"backend {resolved!r} cannot run here ({why}); use --backend auto", "backend")
    module, cls = REGISTRY[resolved]
    return getattr(import_module(module), cls)()


__all__ = ["AUTO_ORDER", "GPU_BACKENDS", "REGISTRY", "Backend", "get_backend", "gpu_sweeps", "pick", "usable"]
