"""`gpubt.libm`: the C library's log, exp, pow, log1p and expm1 on arrays, whatever NumPy would
pick on the machine (its own SIMD forms on AVX-512 differ from `math` in the last bit)."""

from __future__ import annotations

import math

import numpy as np

from gpubt import libm
from gpubt.schema.formula import elementwise


def _inputs() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(5)
    return np.exp(rng.normal(0, 3, 5000)), rng.normal(0, 2, 5000), rng.normal(0, 0.05, 5000)


def test_each_function_is_maths_to_the_bit() -> None:
    x, y, small = _inputs()
    assert libm.log(x).tolist() == [math.log(v) for v in x]
    assert libm.exp(y).tolist() == [math.exp(v) for v in y]
    assert libm.power(x, y).tolist() == [math.pow(a, b) for a, b in zip(x, y)]
    assert libm.log1p(small).tolist() == [math.log1p(v) for v in small]
    assert libm.expm1(small).tolist() == [math.expm1(v) for v in small]


def test_ieee_results_instead_of_exceptions() -> None:
    with np.errstate(all="ignore"):
        assert libm.log(0.0) == -math.inf and math.isnan(libm.log(-1.0))
        assert libm.power(0.0, -1.0) == math.inf and math.isnan(libm.power(-8.0, 1 / 3))
        assert libm.exp(1000.0) == math.inf
        assert libm.power(1.0, math.nan) == 1.0 and libm.power(math.nan, 0.0) == 1.0  # IEEE


def test_custom_formulas_compute_with_it() -> None:
    """The reference's formula arithmetic (and window-argument folding) goes through `elementwise`."""
    x, y, _ = _inputs()
    assert elementwise("log", x).tolist() == [math.log(v) for v in x]
    assert elementwise("exp", y).tolist() == [math.exp(v) if math.exp(v) < math.inf else math.nan for v in y]
    assert elementwise("^", x, y).tolist() == [
        p if math.isfinite(p := math.pow(a, b)) else math.nan for a, b in zip(x, y)]
