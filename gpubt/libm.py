"""log, exp, pow, log1p and expm1 as the C library computes them, for arrays, on every machine.

Python's `math` (the reference's scalar catalogue) and Polars (Rust) call the C library. NumPy
picks its own SIMD forms of `np.log`, `np.exp`, `np.power`, `np.log1p` and `np.expm1` on AVX-512
machines (X86_V4), which differ from it in the last bit for 0.1 % (log) to 5 % (exp, pow) of
inputs, so the built-in market,
the reference's custom formulas and the Numba backend would each change with the machine. These
ufuncs are Numba's, whose `math` functions and `**` are the C library's; IEEE semantics (no
exceptions: log(0) = −inf, log(−1) = NaN, 0 ** −1 = inf), NumPy's warnings under `np.errstate`.
"""

from __future__ import annotations

import math

import numba


@numba.vectorize(["float64(float64)"], cache=True)
def log(x: float) -> float:
    return math.log(x)


@numba.vectorize(["float64(float64)"], cache=True)
def exp(x: float) -> float:
    return math.exp(x)


@numba.vectorize(["float64(float64, float64)"], cache=True)
def power(x: float, y: float) -> float:
    return x**y


@numba.vectorize(["float64(float64)"], cache=True)
def log1p(x: float) -> float:
    return math.log1p(x)


@numba.vectorize(["float64(float64)"], cache=True)
def expm1(x: float) -> float:
    return math.expm1(x)


__all__ = ["exp", "expm1", "log", "log1p", "power"]
