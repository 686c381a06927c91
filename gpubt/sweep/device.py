"""The fused sweep kernel on a CUDA GPU: one thread per variant.

The kernel runs `gpubt.sweep.fused.kernel.variant_metrics` and `gpubt.metrics.core.row_metrics`
compiled for the device from the same source as the CPU kernel (`gpubt.backends.twins`), with
every operation rounded as on the CPU, so a variant's metrics differ from the CPU kernel's only
where CUDA's pow (the CAGR's root) differs from the CPU's by an ulp. The template's tables
(condition bits, series, per-pattern returns, windows, benchmark) go to the device once; each
launch covers as many variants as the memory budget allows, each thread with one column of a
(days × variants) scratch matrix of net returns (a column per thread, so the threads of a warp
touch adjacent words on each day; the twin forms each day's pattern inline, `INLINE_PATTERN`,
so no pattern matrix), and only the (metrics × variants) table comes back.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numba import cuda

from gpubt.backends.twins import exact_arithmetic, memory_budget, twins
from gpubt.metrics import core
from gpubt.metrics.core import N_KEYS
from gpubt.sweep.fused import kernel
from gpubt.sweep.fused.kernel import Template, variant_metrics

THREADS = 128


def _kernel(bits, series, pairs, latches, kinds, rows, table_row, setting_at,  # type: ignore[no-untyped-def]
            gross, turn, held, daily, daily_turn, daily_held, dense, alloc, gross_at, start_of, starts,
            stops, bench, bench_squares, cost, pattern, net, out):
    s = cuda.grid(1)
    if s < rows.shape[0]:
        variant_metrics(s, bits, series, pairs, latches, kinds, rows, table_row, setting_at, gross, turn, held,
                        daily, daily_turn, daily_held, dense, alloc, gross_at, start_of, starts, stops, bench,
                        bench_squares, cost, pattern[:, s], net[:, s], out[:, s])


@functools.cache
def _compiled(inline: bool) -> Any:
    """The CUDA kernel, with its twins, made once per process (``inline``: `INLINE_PATTERN`)."""
    return twins(core._ratio, core._squares, core.row_metrics, kernel.day_bits, kernel.variant_metrics,
                 kernels=(_kernel,), constants={"INLINE_PATTERN": inline})


ALIGN = 256  # bytes: where each table starts in the packed upload (CUDA's allocation alignment)
# The packed upload's host side: page-locked, kept for the next templates (each sweep prepares
# one), and grown up to STAGING_BYTES; a larger upload packs into a buffer of its own. A fresh
# buffer per template paid the first touch of each page: ~3 ms of `upload`'s own time for the
# 65,536-variant template's 4 MB on the H100's host (session 21), whose copy from page-locked
# memory runs at the bus' speed.
STAGING_BYTES = 64 * 2**20
_STAGING: list[np.ndarray] = []
_STAGING_LOCK = threading.Lock()


def upload(arrays: list[np.ndarray]) -> list[Any]:
    """The arrays on the device, packed into one host buffer and copied at once, each a typed
    view of its part of one allocation: one copy each was 14 allocations and copies, 82 CUDA
    calls and 4.3–5.7 ms for the 65,536-variant template's 5 MB on the H100 (session 15)."""
    arrays = [np.ascontiguousarray(a) for a in arrays]
    offsets, end = [], 0
    for a in arrays:
        offsets.append(-(-end // ALIGN) * ALIGN if a.nbytes else 0)  # an empty one: anywhere inside
        end = max(end, offsets[-1] + a.nbytes)
    end = max(end, 1)
    with _STAGING_LOCK:
        if end > STAGING_BYTES:
            packed = np.empty(end, dtype=np.uint8)
        else:
            if not _STAGING or _STAGING[0].size < end:
                try:
                    _STAGING[:] = [cuda.pinned_array(end, dtype=np.uint8)]
                except Exception:  # page-locked memory refused (a memlock limit): a pageable one is kept
                    _STAGING[:] = [np.empty(end, dtype=np.uint8)]
            packed = _STAGING[0][:end]
        for a, at in zip(arrays, offsets):
            packed[at : at + a.nbytes] = a.reshape(-1).view(np.uint8)
        device = cuda.to_device(packed)  # from page-locked memory, synchronous: the buffer is free again
    return [device[at : at + a.nbytes].view(a.dtype).reshape(a.shape) for a, at in zip(arrays, offsets)]


@dataclass
class DeviceTemplate:
    """A `Template` whose tables live on the GPU; `run` is `Template.run` on the device."""

    template: Template
    memory: int | None = None  # scratch budget in bytes (default: `twins.memory_budget`)
    inline_pattern: bool = True  # the kernel's `INLINE_PATTERN` (False: the CPU's passes, to compare)
    seconds: dict[str, float] = field(default_factory=lambda: {"to_device": 0.0, "kernel": 0.0, "to_host": 0.0})

    def __post_init__(self) -> None:
        t = self.template
        began = time.perf_counter()
        series = t.series if len(t.pairs) else t.series[:0]  # read through pair rows alone
        self._tables = upload([t.bits, series, t.pairs, t.latches, t.kinds, t.rows, t.table_row, t.setting_at,
                               t.gross, t.turn, t.held, t.daily, t.daily_turn, t.daily_held, t.dense, t.alloc,
                               t.gross_at, t.start_of, t.starts, t.stops,
                               t.bench, t.bench_squares, t.cost])
        cuda.synchronize()
        self.seconds["to_device"] += time.perf_counter() - began
        days = t.gross.shape[1]
        per_variant = days * (0 if self.inline_pattern else 4) + days * 8 + N_KEYS * 8
        budget = self.memory if self.memory is not None else memory_budget(
            lambda: cuda.current_context().get_memory_info()[0])
        chunk = max(1, min(len(t.rows), budget // per_variant))
        self.chunk = chunk if chunk < THREADS else chunk // THREADS * THREADS
        self._pattern: Any = None
        self._net: Any = None

    def run(self, lo: int, hi: int, meanwhile: Callable[[], None] | None = None) -> np.ndarray:
        """(N_KEYS, hi − lo) metrics of variants lo..hi-1: one row per metric, in `KEYS` order.
        ``meanwhile`` runs on the host while the first launch computes."""
        kernel = _compiled(self.inline_pattern)._kernel
        (bits, series, pairs, latches, kinds, rows, table_row, setting_at, gross, turn, held, daily, daily_turn,
         daily_held, dense, alloc, gross_at, start_of, starts, stops, bench, squares, cost) = self._tables
        out = np.empty((N_KEYS, hi - lo))
        size = min(self.chunk, hi - lo)
        pattern, net = self._scratch(size)
        for a in range(lo, hi, size):
            b = min(hi, a + size)
            began = time.perf_counter()
            values = cuda.device_array((N_KEYS, b - a))
            with exact_arithmetic():
                kernel[(b - a + THREADS - 1) // THREADS, THREADS](
                    bits, series, pairs, latches, kinds, rows[a:b], table_row, setting_at, gross, turn, held,
                    daily, daily_turn, daily_held, dense, alloc[a:b], gross_at, start_of[a:b], starts, stops, bench,
                    squares, cost[a:b], pattern, net, values)
            if meanwhile is not None:
                waited = time.perf_counter()
                meanwhile()
                began += time.perf_counter() - waited  # host work, not the kernel's
                meanwhile = None
            cuda.synchronize()
            copied = time.perf_counter()
            if b - a == hi - lo:
                values.copy_to_host(out)
            else:
                out[:, a - lo : b - lo] = values.copy_to_host()
            self.seconds["kernel"] += copied - began
            self.seconds["to_host"] += time.perf_counter() - copied
        return out

    def _scratch(self, size: int) -> tuple[Any, Any]:
        """The (days × variants) pattern (none where the pattern is inline) and return matrices,
        kept for the next chunks (allocating gigabytes of device memory per chunk costs more
        than the kernel)."""
        if self._net is None or self._net.shape[1] < size:
            self._pattern = self._net = None
            days = self.template.gross.shape[1]
            self._pattern = cuda.device_array((0 if self.inline_pattern else days, size), dtype=np.int32)
            self._net = cuda.device_array((days, size))
        return self._pattern, self._net
