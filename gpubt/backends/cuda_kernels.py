"""The CUDA kernels of the `cupy` backend: a thread per series row, each running the CPU's loop.

Every kernel calls one `_xxx_into` loop of `gpubt.backends.kernels` on its row of a (rows, days)
matrix; `compiled()` makes their CUDA twins from that same Python source (`gpubt.backends.twins`),
so the GPU and the CPU run one definition. This module needs no CuPy and no device (only Numba), so
the kernels can be compiled to PTX on any machine with libNVVM (`ptx`), which catches constructs
the CUDA target refuses and the simulator accepts.
"""

from __future__ import annotations

import functools
from typing import Any

from numba import cuda, types

from gpubt.backends.kernels import (  # the loops compiled for the GPU by `twins`
    _cum_sum_into,
    _ewm_into,
    _ewm_var_into,
    _forward_fill_into,
    _laguerre_rsi_into,
    _rolling_all_into,
    _rolling_argmax_age_into,
    _rolling_argmin_age_into,
    _rolling_dot_into,
    _rolling_extreme_into,
    _rolling_mad_into,
    _rolling_max_drawdown_into,
    _rolling_max_into,
    _rolling_min_into,
    _rolling_std_into,
    _rolling_ulcer_into,
    _unit_sums_into,
    _wilder_into,
)
from gpubt.backends.twins import exact_arithmetic, twins


# A thread per row of the (rows, days) matrices; each runs the CPU backend's loop on its row.


def _k_rolling_std(x, n, out):  # noqa: ANN001, ANN202 - CUDA kernels: typed at launch
    i = cuda.grid(1)
    if i < x.shape[0]:
        _rolling_std_into(x[i], n, out[i])


def _k_rolling_mad(x, n, out):  # noqa: ANN001, ANN202
    i = cuda.grid(1)
    if i < x.shape[0]:
        _rolling_mad_into(x[i], n, out[i])


def _k_rolling_argmax_age(x, n, out):  # noqa: ANN001, ANN202
    i = cuda.grid(1)
    if i < x.shape[0]:
        _rolling_argmax_age_into(x[i], n, out[i])


def _k_rolling_argmin_age(x, n, out):  # noqa: ANN001, ANN202
    i = cuda.grid(1)
    if i < x.shape[0]:
        _rolling_argmin_age_into(x[i], n, out[i])


def _k_rolling_max_drawdown(x, n, out):  # noqa: ANN001, ANN202
    i = cuda.grid(1)
    if i < x.shape[0]:
        _rolling_max_drawdown_into(x[i], n, out[i])


def _k_rolling_ulcer(x, n, out):  # noqa: ANN001, ANN202
    i = cuda.grid(1)
    if i < x.shape[0]:
        _rolling_ulcer_into(x[i], n, out[i])


def _k_rolling_min(x, n, out):  # noqa: ANN001, ANN202
    i = cuda.grid(1)
    if i < x.shape[0]:
        _rolling_min_into(x[i], n, out[i])


def _k_rolling_max(x, n, out):  # noqa: ANN001, ANN202
    i = cuda.grid(1)
    if i < x.shape[0]:
        _rolling_max_into(x[i], n, out[i])


def _k_wilder(x, n, total, out):  # noqa: ANN001, ANN202
    i = cuda.grid(1)
    if i < x.shape[0]:
        _wilder_into(x[i], n, total, out[i])


def _k_rolling_all(c, n, out):  # noqa: ANN001, ANN202
    i = cuda.grid(1)
    if i < c.shape[0]:
        _rolling_all_into(c[i], n, out[i])


def _k_unit_sums(x, n, divisor, out):  # noqa: ANN001, ANN202
    i = cuda.grid(1)
    if i < x.shape[0]:
        _unit_sums_into(x[i], n, divisor, out[i])


def _k_rolling_dot(x, weights, out):  # noqa: ANN001, ANN202
    i = cuda.grid(1)
    if i < x.shape[0]:
        _rolling_dot_into(x[i], weights, False, out[i])


def _k_rolling_dot_centered(x, weights, out):  # noqa: ANN001, ANN202
    i = cuda.grid(1)
    if i < x.shape[0]:
        _rolling_dot_into(x[i], weights, True, out[i])


def _k_ewm(x, alpha, seed, out):  # noqa: ANN001, ANN202
    i = cuda.grid(1)
    if i < x.shape[0]:
        _ewm_into(x[i], alpha, seed, out[i])


def _k_ewm_var(x, alpha, seed_offset, out):  # noqa: ANN001, ANN202
    i = cuda.grid(1)
    if i < x.shape[0]:
        _ewm_var_into(x[i], alpha[i], seed_offset, out[i])


def _k_laguerre_rsi(x, gamma, out):  # noqa: ANN001, ANN202
    i = cuda.grid(1)
    if i < x.shape[0]:
        _laguerre_rsi_into(x[i], gamma, out[i])


def _k_cum_sum(x, out):  # noqa: ANN001, ANN202
    i = cuda.grid(1)
    if i < x.shape[0]:
        _cum_sum_into(x[i], out[i])


def _k_forward_fill(x, out):  # noqa: ANN001, ANN202
    i = cuda.grid(1)
    if i < x.shape[0]:
        _forward_fill_into(x[i], out[i])

DEVICE_FUNCTIONS = (
    _rolling_std_into, _rolling_mad_into, _rolling_argmax_age_into, _rolling_argmin_age_into,
    _rolling_max_drawdown_into, _rolling_ulcer_into, _rolling_extreme_into, _rolling_min_into, _rolling_max_into,
    _wilder_into, _rolling_all_into, _unit_sums_into, _rolling_dot_into, _ewm_into,
    _ewm_var_into, _laguerre_rsi_into, _cum_sum_into, _forward_fill_into,
)
KERNELS = (
    _k_rolling_std, _k_rolling_mad, _k_rolling_argmax_age, _k_rolling_argmin_age,
    _k_rolling_max_drawdown, _k_rolling_ulcer, _k_rolling_min, _k_rolling_max, _k_wilder,
    _k_rolling_all, _k_unit_sums, _k_rolling_dot, _k_rolling_dot_centered, _k_ewm, _k_ewm_var, _k_laguerre_rsi,
    _k_cum_sum, _k_forward_fill,
)

_F2 = types.float64[:, ::1]
_I2 = types.int8[:, ::1]
_F1 = types.float64[::1]
_INT = types.int64
_FLT = types.float64
# the argument types each kernel is launched with (C-contiguous matrices, Python ints and floats)
SIGNATURES: dict[str, tuple[Any, ...]] = {
    **{k.__name__: (_F2, _INT, _F2) for k in (
        _k_rolling_std, _k_rolling_mad, _k_rolling_argmax_age, _k_rolling_argmin_age,
        _k_rolling_max_drawdown, _k_rolling_ulcer, _k_rolling_min, _k_rolling_max)},
    "_k_wilder": (_F2, _INT, types.boolean, _F2),
    "_k_rolling_all": (_I2, _INT, _I2),
    "_k_unit_sums": (_F2, _INT, _FLT, _F2),
    "_k_rolling_dot": (_F2, _F1, _F2),
    "_k_rolling_dot_centered": (_F2, _F1, _F2),
    "_k_ewm": (_F2, _FLT, _INT, _F2),
    "_k_ewm_var": (_F2, _F2, _INT, _F2),
    "_k_laguerre_rsi": (_F2, _FLT, _F2),
    "_k_cum_sum": (_F2, _F2),
    "_k_forward_fill": (_F2, _F2),
}


@functools.cache
def compiled() -> Any:
    """The twins and kernels, made on first use (each kernel compiles at its first launch)."""
    return twins(*DEVICE_FUNCTIONS, kernels=KERNELS)


def ptx(name: str, cc: tuple[int, int] = (9, 0)) -> str:
    """The PTX of kernel `name` for compute capability `cc`, as the backend compiles it (no FMA
    contraction). Needs libNVVM, not a device: compiling a kernel that calls device functions
    asks the driver for the current device, so the caller supplies one where there is none."""
    with exact_arithmetic():
        code, _ = cuda.compile_ptx(getattr(compiled(), name).py_func, SIGNATURES[name], cc=cc)
    return code


__all__ = ["KERNELS", "SIGNATURES", "compiled", "ptx"]
