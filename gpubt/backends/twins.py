"""One kernel definition, two targets: CUDA twins of the Numba CPU functions.

A function written once in the Numba subset (no allocation, `math` rather than NumPy scalar
functions) is compiled with `numba.njit` for the CPU and, from the very same Python source, with
`numba.cuda.jit(device=True)` for the GPU, so the two can never drift. A twin is the function's
code under a copy of its module's globals in which every function named in the same `twins` call
is replaced by its CUDA twin: calls between twins stay on the device. Nothing is compiled until
a kernel that calls a twin is first launched.

`numba.cuda` is imported only here, on first use; with `NUMBA_ENABLE_CUDASIM=1` (set before
anything imports Numba's CUDA target) the twins run in Numba's CUDA simulator on the CPU, which
is how CI checks the GPU kernels' logic without a GPU.
"""

from __future__ import annotations

import types
from collections.abc import Callable
from typing import Any


def twins(*functions: Callable[..., Any], kernels: tuple[Callable[..., Any], ...] = ()) -> types.SimpleNamespace:
    """CUDA device functions compiled from the Python source of ``functions`` (njit dispatchers
    or plain functions), and CUDA kernels from ``kernels`` (plain functions that may call them),
    as attributes named after each function."""
    from numba import cuda

    copies: dict[int, dict[str, Any]] = {}  # one copy of each module's globals
    made: dict[str, Any] = {}

    def rebound(function: Callable[..., Any]) -> types.FunctionType:
        py = getattr(function, "py_func", function)
        namespace = copies.setdefault(id(py.__globals__), dict(py.__globals__))
        return types.FunctionType(py.__code__, namespace, py.__name__, py.__defaults__, py.__closure__)

    for function in functions:
        twin = rebound(function)
        made[twin.__name__] = cuda.jit(device=True)(twin)
    for kernel in kernels:
        twin = rebound(kernel)
        made[twin.__name__] = cuda.jit(twin)
    for namespace in copies.values():
        namespace.update(made)
    return types.SimpleNamespace(**made)


def cuda_usable() -> tuple[bool, str]:
    """Whether a CUDA device can run kernels here (or the simulator is on), and if not why."""
    try:
        from numba import cuda

        if cuda.is_available():
            return True, "ok"
        return False, "no CUDA device or driver (numba.cuda.is_available() is False)"
    except Exception as exc:  # a broken driver or toolkit: report it, never crash
        return False, f"{type(exc).__name__}: {exc}"
