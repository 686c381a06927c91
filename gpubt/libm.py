"""log, exp, pow, log1p and expm1 as the C library computes them, for arrays, on every machine.

Python's `math` (the reference's scalar catalogue) and Polars (Rust) call the C library. NumPy
picks its own SIMD forms of `np.log`, `np.exp`, `np.power`, `np.log1p` and `np.expm1` on AVX-512
machines (X86_V4), which differ from it in the last bit for 0.1 % (log) to 5 % (exp, pow) of
inputs, so the built-in market, the reference's custom formulas and the Numba backend would each
change with the machine. Numba's `math` functions and `**` are the C library's. IEEE results, no
exceptions: log(0) = −inf, log(−1) = NaN, 0 ** −1 = inf. Plain cached kernels rather than
`numba.vectorize`, whose ufunc wrapper is compiled afresh in every process (~0.35 s).
"""

from __future__ import annotations

import math
from typing import Any

import numba
import numpy as np

_LOG, _EXP, _LOG1P, _EXPM1 = range(4)


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _unary(op: int, x: np.ndarray, out: np.ndarray) -> None:
    for i in range(x.size):
        v = x[i]
        if op == _LOG:
            out[i] = math.log(v)
        elif op == _EXP:
            out[i] = math.exp(v)
        elif op == _LOG1P:
            out[i] = math.log1p(v)
        else:
            out[i] = math.expm1(v)


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _power(x: np.ndarray, y: np.ndarray, out: np.ndarray) -> None:
    for i in range(x.size):
        out[i] = x[i] ** y[i]


def _apply(op: int, x: Any) -> Any:
    a = np.asarray(x, dtype=np.float64)
    out = np.empty(a.shape)
    _unary(op, np.ascontiguousarray(a).reshape(-1), out.reshape(-1))
    return out if out.ndim else out[()]


def log(x: Any) -> Any:
    return _apply(_LOG, x)


def exp(x: Any) -> Any:
    return _apply(_EXP, x)


def log1p(x: Any) -> Any:
    return _apply(_LOG1P, x)


def expm1(x: Any) -> Any:
    return _apply(_EXPM1, x)


def power(x: Any, y: Any) -> Any:
    a, b = np.broadcast_arrays(np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64))
    out = np.empty(a.shape)
    _power(np.ascontiguousarray(a).reshape(-1), np.ascontiguousarray(b).reshape(-1), out.reshape(-1))
    return out if out.ndim else out[()]


__all__ = ["exp", "expm1", "log", "log1p", "power"]
