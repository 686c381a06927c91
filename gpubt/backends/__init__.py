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
# numba ~15x polars on signals (bit-equal); on an H100, cupy's signals are still slower than
# numba's on the host's 16 cores in every scenario (0.23-0.94x, session 15), so cupy runs only
# when asked for; polars-gpu (host kernels between GPU collects, never yet run on a GPU) too.
# Sweeps use the GPU where it pays (`gpu_sweeps`).
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


# `auto` runs a fused sweep of fewer variants on the CPU kernel even where a GPU is usable: a
# thread per variant leaves most of the device idle, and the uploads cost more than the kernel
# saves. On an H100 (session 15): 1,000 variants of 10 if/else nodes took 33 ms in the device
# kernel and 12.5-15 ms of uploads, against 23 ms on the host's 16-core CPU kernel; 65,536 of 2
# nodes 8 ms against 125 ms.
AUTO_GPU_MIN_VARIANTS = 4096


def gpu_sweeps(name: str, variants: int | None = None) -> bool:
    """Whether a fused sweep of ``variants`` asked to run on ``name`` runs its per-variant kernel
    on the GPU: when asked for a GPU backend, or for auto where one is usable and the sweep has
    at least AUTO_GPU_MIN_VARIANTS (one thread per variant: 7-9x the 16-core CPU kernel for
    65,536 variants and 10x for a million on an H100, session 21, benchmarks/RESULTS.md)."""
    if name in GPU_BACKENDS:
        return True
    if name != "auto" or (variants is not None and variants < AUTO_GPU_MIN_VARIANTS):
        return False
    return any(usable(g)[0] for g in GPU_BACKENDS)


def get_backend(name: str) -> Backend:
    resolved, reason = pick(name)
    if name == "auto":
        log.info("backend auto -> %s (%s)", resolved, reason)
    ok, why = usable(resolved)
    if not ok:  # asked for by name (a GPU backend on a machine without CUDA): say why, no traceback
        raise GpubtError(f"backend {resolved!r} cannot run here ({why}); use --backend auto", "backend")
    module, cls = REGISTRY[resolved]
    return getattr(import_module(module), cls)()


__all__ = ["AUTO_GPU_MIN_VARIANTS", "AUTO_ORDER", "GPU_BACKENDS", "REGISTRY", "Backend", "get_backend", "gpu_sweeps",
           "pick", "usable"]
