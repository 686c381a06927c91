"""The CUDA kernels of the `cupy` backend: one launch per group of the plan.

The backend plans a graph as the CPU backend does (`gpubt.backends.numba_cpu._Plan`): every node
is a row of one of two arenas (float64, and int8 conditions) and the nodes of one primitive at
one depth form a group. Each kernel below computes a whole group: member i reads the input rows
x[i] (b[i], …) of the arena and writes the row out[i], with its parameters (n[i], …), by calling
the CPU's own code on those rows: a window a thread per member and day (the per-day functions
`_xxx_at` of `gpubt.backends.kernels`), the rest a thread per member (the recursions' `_xxx_into`
loops there, the element loops of `gpubt.backends.numba_cpu`, the condition-list loop of
`gpubt.backends.lines`). `compiled()` makes their CUDA twins from that same Python source
(`gpubt.backends.twins`), so the GPU and the CPU run one definition. This module needs no CuPy
and no device (only Numba), so the kernels can be compiled to PTX on any machine with libNVVM
(`ptx`), which catches constructs the CUDA target refuses and the simulator accepts.
"""

from __future__ import annotations

import functools
from typing import Any

from numba import cuda, types

from gpubt.backends.kernels import (  # the loops compiled for the GPU by `twins`
    _complete,
    _cum_sum_into,
    _ewm_into,
    _ewm_var_into,
    _forward_fill_into,
    _laguerre_rsi_into,
    _peak_drawdown_at,
    _rolling_all_into,
    _rolling_dot_at,
    _rolling_extreme_age_at,
    _rolling_extreme_at,
    _rolling_mad_at,
    _rolling_std_at,
    _shift_into,
    _unit_sum_at,
    _wilder_into,
)
from gpubt.backends.lines import _line_into, _node_codes
from gpubt.backends.numba_cpu import (
    _arith_into,
    _compare_into,
    _finite_inplace,
    _logic_into,
    _missing_before,
    _valid_from_into,
    _where_into,
)
from gpubt.backends.twins import exact_arithmetic, twins

# Arguments: f the float arena, c the condition arena; x, a, b, cond, anchor the members' input
# rows and out their output rows; n, alpha, … the members' parameters, one entry per member.
# Windows give every (member, day) a thread (thread j: member j // days, day j % days), each
# computing its day apart (`kernels._xxx_at`). Element-wise primitives and condition lists give
# every (member, tile of TILE days) a thread, running the CPU's loop on the tile (a thread per
# day would be a Python call per day in the simulator the tests run). Recursions and
# `valid_from` (which finds its anchor's first value) run a thread per member over all its days.
TILE = 256


def _tile(j, days):  # noqa: ANN001, ANN202
    """Thread j of a launch giving every member a thread per tile of TILE days: (the member, the
    tile's first day)."""
    tiles = (days + TILE - 1) // TILE
    i = j // tiles
    return i, (j - i * tiles) * TILE


# the windows of one integer parameter, as `_k_window` tells them apart
_STD, _MAD, _ARGMAX_AGE, _ARGMIN_AGE, _MAX_DRAWDOWN, _ULCER, _MIN, _MAX = range(8)
WINDOWS = {
    "rolling_std": _STD, "rolling_mad": _MAD, "rolling_argmax_age": _ARGMAX_AGE,
    "rolling_argmin_age": _ARGMIN_AGE, "rolling_max_drawdown": _MAX_DRAWDOWN, "rolling_ulcer": _ULCER,
    "rolling_min": _MIN, "rolling_max": _MAX,
}


def _window_at(x, n, kind, t):  # noqa: ANN001, ANN202 - a device function: typed at launch
    """Day t of window `kind` (one of `WINDOWS`) of x."""
    if kind == _STD:
        return _rolling_std_at(x, n, t)
    if kind == _MAD:
        return _rolling_mad_at(x, n, t)
    if kind == _ARGMAX_AGE or kind == _ARGMIN_AGE:
        return _rolling_extreme_age_at(x, n, 1.0 if kind == _ARGMAX_AGE else -1.0, t)
    if kind == _MAX_DRAWDOWN or kind == _ULCER:
        return _peak_drawdown_at(x, n, kind == _ULCER, t)
    return _rolling_extreme_at(x, n, 1.0 if kind == _MAX else -1.0, t)


def _k_window(f, x, n, kind, out):  # noqa: ANN001, ANN202 - CUDA kernels: typed at launch
    j = cuda.grid(1)
    i = j // f.shape[1]
    if i < out.size:
        t = j - i * f.shape[1]
        f[out[i], t] = _window_at(f[x[i]], n[i], kind, t)


def _k_shift(f, x, n, out):  # noqa: ANN001, ANN202
    i = cuda.grid(1)
    if i < out.size:
        _shift_into(f[x[i]], n[i], f[out[i]])


def _k_wilder(f, x, n, total, out):  # noqa: ANN001, ANN202
    i = cuda.grid(1)
    if i < out.size:
        _wilder_into(f[x[i]], n[i], total, f[out[i]])


def _k_unit_sums(f, x, n, divisor, out):  # noqa: ANN001, ANN202
    j = cuda.grid(1)
    i = j // f.shape[1]
    if i < out.size:
        t = j - i * f.shape[1]
        f[out[i], t] = _unit_sum_at(f[x[i]], n[i], divisor[i], t)


def _k_rolling_dot(f, x, start, weights, centered, out):  # noqa: ANN001, ANN202
    """Member i's weights are weights[start[i]:start[i + 1]]."""
    j = cuda.grid(1)
    i = j // f.shape[1]
    if i < out.size:
        t = j - i * f.shape[1]
        f[out[i], t] = _rolling_dot_at(f[x[i]], weights[start[i]:start[i + 1]], centered, t)


def _k_ewm(f, x, alpha, seed, out):  # noqa: ANN001, ANN202
    i = cuda.grid(1)
    if i < out.size:
        _ewm_into(f[x[i]], alpha[i], seed[i], f[out[i]])


def _k_ewm_var(f, x, a, seed_offset, out):  # noqa: ANN001, ANN202
    i = cuda.grid(1)
    if i < out.size:
        _ewm_var_into(f[x[i]], f[a[i]], seed_offset[i], f[out[i]])


def _k_laguerre_rsi(f, x, gamma, out):  # noqa: ANN001, ANN202
    i = cuda.grid(1)
    if i < out.size:
        _laguerre_rsi_into(f[x[i]], gamma[i], f[out[i]])


def _k_cum_sum(f, x, out):  # noqa: ANN001, ANN202
    i = cuda.grid(1)
    if i < out.size:
        _cum_sum_into(f[x[i]], f[out[i]])


def _k_forward_fill(f, x, out):  # noqa: ANN001, ANN202
    i = cuda.grid(1)
    if i < out.size:
        _forward_fill_into(f[x[i]], f[out[i]])


def _k_rolling_all(c, x, n, out):  # noqa: ANN001, ANN202
    i = cuda.grid(1)
    if i < out.size:
        _rolling_all_into(c[x[i]], n[i], c[out[i]])


def _k_arith(f, op, a, b, out):  # noqa: ANN001, ANN202
    i, t = _tile(cuda.grid(1), f.shape[1])
    if i < out.size:
        _arith_into(f[a[i], t:t + TILE], f[b[i], t:t + TILE], op, f[out[i], t:t + TILE])


def _k_compare(f, c, op, a, b, out):  # noqa: ANN001, ANN202
    i, t = _tile(cuda.grid(1), f.shape[1])
    if i < out.size:
        _compare_into(f[a[i], t:t + TILE], f[b[i], t:t + TILE], op, c[out[i], t:t + TILE])


def _k_logic(c, either, a, b, out):  # noqa: ANN001, ANN202
    i, t = _tile(cuda.grid(1), c.shape[1])
    if i < out.size:
        _logic_into(c[a[i], t:t + TILE], c[b[i], t:t + TILE], either, c[out[i], t:t + TILE])


def _k_where(f, c, cond, a, b, out):  # noqa: ANN001, ANN202
    i, t = _tile(cuda.grid(1), f.shape[1])
    if i < out.size:
        _where_into(c[cond[i], t:t + TILE], f[a[i], t:t + TILE], f[b[i], t:t + TILE], f[out[i], t:t + TILE])


def _k_valid_from(f, x, anchor, offset, out):  # noqa: ANN001, ANN202
    i = cuda.grid(1)
    if i < out.size:
        if x[i] == out[i]:  # x's row, handed to its only reader (`_Plan`)
            _missing_before(f[anchor[i]], offset[i], f[out[i]])
        else:
            _valid_from_into(f[x[i]], f[anchor[i]], offset[i], f[out[i]])


def _k_finite(f, rows):  # noqa: ANN001, ANN202
    i, t = _tile(cuda.grid(1), f.shape[1])
    if i < rows.size:
        _finite_inplace(f[rows[i], t:t + TILE])


def _k_lines(f, rows, c, flag_rows, node_terms, term_lines, code, left, right, threshold, for_days,  # noqa: ANN001, ANN202, PLR0913
             first, lookback, out, scratch):
    """Thread j: condition-list node i = j // tiles over the days of its tile (`gpubt.backends.lines`,
    the CPU's loop on a slice starting `lookback` days before the tile), scratch rows 3j … 3j + 2
    (TILE + the longest lookback days each)."""
    j = cuda.grid(1)
    days = out.shape[1]
    i, lo = _tile(j, days)
    if i < out.shape[0]:
        hi = lo + TILE if lo + TILE < days else days
        asked = first[i] if first[i] > lo else lo  # the tile's first day asked for
        for t in range(lo, asked if asked < hi else hi):
            out[i, t] = -1  # not asked for: Null
        if asked < hi:
            start = asked - lookback[i]
            start = start if start > 0 else 0
            acc = scratch[3 * j, : hi - start]
            _node_codes(i, f, rows, c, flag_rows, node_terms, term_lines, code, left, right, threshold, for_days,
                        start, acc, scratch[3 * j + 1], scratch[3 * j + 2])
            for t in range(asked, hi):
                v = acc[t - start]
                out[i, t] = (v >> 1) - (v & 1)  # 0 -> 0 (False), 1 -> -1 (Null), 2 -> 1 (True)


DEVICE_FUNCTIONS = (
    _complete, _rolling_std_at, _rolling_mad_at, _rolling_extreme_age_at, _peak_drawdown_at, _rolling_extreme_at,
    _window_at, _unit_sum_at, _rolling_dot_at, _tile,
    _shift_into, _wilder_into, _rolling_all_into, _ewm_into, _ewm_var_into, _laguerre_rsi_into, _cum_sum_into,
    _forward_fill_into,
    _arith_into, _compare_into, _logic_into, _where_into, _missing_before, _valid_from_into, _finite_inplace,
    _line_into, _node_codes,
)
KERNELS = (
    _k_window, _k_shift, _k_wilder, _k_unit_sums, _k_rolling_dot, _k_ewm, _k_ewm_var, _k_laguerre_rsi, _k_cum_sum,
    _k_forward_fill, _k_rolling_all, _k_arith, _k_compare, _k_logic, _k_where, _k_valid_from, _k_finite, _k_lines,
)

_F2 = types.float64[:, ::1]
_B2 = types.int8[:, ::1]
_F1 = types.float64[::1]
_I1 = types.int64[::1]
_INT = types.int64
_BOOL = types.boolean
# the argument types each kernel is launched with (C-contiguous arenas, row and parameter arrays)
SIGNATURES: dict[str, tuple[Any, ...]] = {
    "_k_window": (_F2, _I1, _I1, _INT, _I1),
    "_k_shift": (_F2, _I1, _I1, _I1),
    "_k_wilder": (_F2, _I1, _I1, _BOOL, _I1),
    "_k_unit_sums": (_F2, _I1, _I1, _F1, _I1),
    "_k_rolling_dot": (_F2, _I1, _I1, _F1, _BOOL, _I1),
    "_k_ewm": (_F2, _I1, _F1, _I1, _I1),
    "_k_ewm_var": (_F2, _I1, _I1, _I1, _I1),
    "_k_laguerre_rsi": (_F2, _I1, _F1, _I1),
    "_k_cum_sum": (_F2, _I1, _I1),
    "_k_forward_fill": (_F2, _I1, _I1),
    "_k_rolling_all": (_B2, _I1, _I1, _I1),
    "_k_arith": (_F2, _INT, _I1, _I1, _I1),
    "_k_compare": (_F2, _B2, _INT, _I1, _I1, _I1),
    "_k_logic": (_B2, _BOOL, _I1, _I1, _I1),
    "_k_where": (_F2, _B2, _I1, _I1, _I1, _I1),
    "_k_valid_from": (_F2, _I1, _I1, _I1, _I1),
    "_k_finite": (_F2, _I1),
    "_k_lines": (_F2, _I1, _B2, _I1, _I1, _I1, _I1, _I1, _I1, _F1, _I1, _I1, _I1, _B2, _B2),
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


__all__ = ["KERNELS", "SIGNATURES", "TILE", "WINDOWS", "compiled", "ptx"]
