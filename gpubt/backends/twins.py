"""One kernel definition, two targets: CUDA twins of the Numba CPU functions.

A function written once in the Numba subset (no allocation, `math` rather than NumPy scalar
functions) is compiled with `numba.njit` for the CPU and, from the very same Python source, with
`numba.cuda.jit(device=True)` for the GPU, so the two can never drift. A twin is the function's
code under a copy of its module's globals in which every function named in the same `twins` call
is replaced by its CUDA twin: calls between twins stay on the device. Nothing is compiled until
a kernel that calls a twin is first launched; launch it inside `exact_arithmetic()`, so that NVVM
does not fuse a·b + c into one rounding (its default, which the CPU does not do) and the twin
rounds every operation as the CPU function does. Kernels are built without link-time
optimisation (numba-cuda's default where nvJitLink is installed), whose final compile would
contract them again (seen on an H200 with numba-cuda 0.30.4: DFMA in the SASS of `.rn` PTX).

This module imports `numba.cuda` only when a twin is made, and the modules that launch kernels
(`gpubt.sweep.device`, `gpubt.backends.cupy_gpu`) are imported only on a GPU path. With
`NUMBA_ENABLE_CUDASIM=1` (set before anything imports Numba's CUDA target) the twins run in
Numba's CUDA simulator on the CPU, which is how CI checks the GPU kernels' logic without a GPU.
"""

from __future__ import annotations

import functools
import logging
import os
import sys
import types
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

# numba-cuda 0.2x registers an overload of `np.row_stack` when it first compiles a kernel; NumPy
# 2.5 removed that alias of `vstack`, and without it the first compile of a process fails.
if not hasattr(np, "row_stack"):
    np.row_stack = np.vstack


def twins(*functions: Callable[..., Any], kernels: tuple[Callable[..., Any], ...] = (),
          constants: dict[str, Any] | None = None) -> types.SimpleNamespace:
    """CUDA device functions compiled from the Python source of ``functions`` (njit dispatchers
    or plain functions), and CUDA kernels from ``kernels`` (plain functions that may call them),
    as attributes named after each function. ``constants``: module globals the twins read with
    another value (Numba freezes a global at compile time, so one source can take a branch on
    the CPU and another on the GPU); each must exist in a twin's module."""
    from numba import config, cuda

    copies: dict[int, dict[str, Any]] = {}  # one copy of each module's globals
    made: dict[str, Any] = {}

    def rebound(function: Callable[..., Any]) -> types.FunctionType:
        py = getattr(function, "py_func", function)
        namespace = copies.setdefault(id(py.__globals__), dict(py.__globals__))
        return types.FunctionType(py.__code__, namespace, py.__name__, py.__defaults__, py.__closure__)

    for function in functions:
        twin = rebound(function)
        made[twin.__name__] = cuda.jit(device=True)(twin)
    # No link-time optimisation: nvJitLink would fuse a·b + c again whatever NVVM was told (the
    # simulator has no such option).
    options = {} if config.ENABLE_CUDASIM else {"lto": False}
    for kernel in kernels:
        twin = rebound(kernel)
        made[twin.__name__] = cuda.jit(twin, **options)
    for name, value in (constants or {}).items():
        owners = [namespace for namespace in copies.values() if name in namespace]
        if not owners:
            raise NameError(f"no twin's module has a global {name!r}")
        for namespace in owners:
            namespace[name] = value
    for namespace in copies.values():
        namespace.update(made)
    return types.SimpleNamespace(**made)


# Share of the device's free memory one launch's working set may take, unless GPUBT_GPU_MEMORY
# (a size like 8GB, as --memory) says how much.
FREE_SHARE = 0.5


def memory_budget(free: Callable[[], int]) -> int:
    """Bytes one launch's working set may take: GPUBT_GPU_MEMORY, else FREE_SHARE of ``free()``
    (asked only then)."""
    env = os.environ.get("GPUBT_GPU_MEMORY")
    if env:
        from gpubt.sweep.spec import parse_memory

        return parse_memory(env)
    return int(FREE_SHARE * free())


def cuda_usable() -> tuple[bool, str]:
    """Whether a CUDA device can run kernels here (or the simulator is on), and if not why."""
    try:
        from numba import cuda

        if cuda.is_available():
            return True, "ok"
        return False, "no CUDA device or driver (numba.cuda.is_available() is False)"
    except Exception as exc:  # a broken driver or toolkit: report it, never crash
        return False, f"{type(exc).__name__}: {exc}"


@functools.cache
def _nvvm_modules() -> tuple[Any, ...]:
    """The NVVM binding modules kernels are compiled through: the one Numba's CUDA code generator
    imported, and any other loaded under a `cudadrv.nvvm` name (numba-cuda may be reached both
    as `numba.cuda` and as `numba_cuda.numba.cuda`); found once per process, as kernels are
    launched inside `exact_arithmetic` many times."""
    from numba.cuda import codegen

    found = {id(codegen.nvvm): codegen.nvvm}
    for name, module in list(sys.modules.items()):
        if name.endswith("cudadrv.nvvm") and hasattr(module, "compile_ir"):
            found[id(module)] = module
    return tuple(found.values())


@contextmanager
def exact_arithmetic() -> Iterator[None]:
    """NVVM without FMA contraction for the kernels compiled inside (Numba's CUDA target has no
    option for it: its calls to NVVM are given ``fma=False``). Where this Numba has no such call
    (another layout), kernels compile as they are, with a warning: their results may then differ
    from the CPU's in the last bits."""
    try:
        modules = [(m, m.compile_ir) for m in _nvvm_modules()]
    except (ImportError, AttributeError) as exc:
        log.warning("cannot switch NVVM's FMA contraction off (%s); GPU results may differ in the last bits", exc)
        yield
        return

    def without_fma(compile_ir: Callable[..., Any]) -> Callable[..., Any]:
        def compile_exact(llvmir: Any, **options: Any) -> Any:
            options.setdefault("fma", False)
            return compile_ir(llvmir, **options)

        return compile_exact

    for module, compile_ir in modules:
        module.compile_ir = without_fma(compile_ir)
    try:
        yield
    finally:
        for module, compile_ir in modules:
            module.compile_ir = compile_ir
