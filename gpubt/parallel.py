"""Numba parallel kernels that are safe to call from any thread and in forked processes.

A `parallel=True` kernel runs on Numba's threading layer, and two of the layers kill the process
in situations gpubt's users meet:

- GNU OpenMP (`omp`, chosen on Linux wherever libgomp is installed) terminates a forked child
  that launches a parallel kernel after its parent launched one: a `multiprocessing` pool
  (fork is the default start method on Linux before Python 3.14) running backtests once the
  parent has run one.
- `workqueue` (what a machine without libgomp or TBB gets, such as the `python:*-slim` images)
  aborts when two threads launch parallel kernels at once: concurrent API requests.

`parallel_kernel` compiles a kernel twice from the same source, once with its `prange` loops
parallel and once serial, and runs the serial one where the parallel one would be unsafe. The
kernels it is used on have independent iterations, so both give the same bits.
"""

from __future__ import annotations

import functools
import os
import threading
import types
from collections.abc import Callable
from typing import Any

import numba

# One parallel launch at a time, while the layer is not known to be thread-safe (before the
# first launch the layer is not chosen yet; `workqueue` never is).
_launch = threading.Lock()
_thread_safe_layer = False
_serial_only = False  # a forked child of a process that launched on GNU OpenMP


class ParallelKernel:
    """A Numba kernel with a parallel and a serial build; calling it picks the safe one."""

    def __init__(self, function: Callable[..., Any], options: dict[str, Any]) -> None:
        self.parallel = numba.njit(parallel=True, **options)(function)
        twin = types.FunctionType(function.__code__, function.__globals__, function.__name__,
                                  function.__defaults__, function.__closure__)
        twin.__qualname__ = f"{function.__qualname__}_serial"  # an on-disk cache entry of its own
        self.serial = numba.njit(**options)(twin)
        functools.update_wrapper(self, function)

    def pick(self, members: int, threaded: bool) -> Callable[..., Any]:
        """This kernel for a group of several members of a big graph, else the serial build (a
        process that only meets small graphs never compiles the parallel one)."""
        return self if threaded and members > 1 else self.serial

    def __call__(self, *args: Any) -> Any:
        global _thread_safe_layer
        if _serial_only:
            return self.serial(*args)
        if _thread_safe_layer:
            return self.parallel(*args)
        if not _launch.acquire(blocking=False):
            return self.serial(*args)
        try:
            result = self.parallel(*args)
            _thread_safe_layer = _layer() in ("omp", "tbb")
            return result
        finally:
            _launch.release()


def parallel_kernel(**options: Any) -> Callable[[Callable[..., Any]], ParallelKernel]:
    """Decorator: `numba.njit(parallel=True, **options)`, with the serial twin beside it."""
    return lambda function: ParallelKernel(function, options)


def _layer() -> str | None:
    """The threading layer this process started (at its first parallel launch), or None."""
    try:
        return numba.threading_layer()
    except ValueError:
        return None


def _after_fork_in_child() -> None:
    global _launch, _serial_only
    _launch = threading.Lock()  # a parent thread may have held it at the fork
    _serial_only = _serial_only or _layer() == "omp"


os.register_at_fork(after_in_child=_after_fork_in_child)
