"""Shared test helpers.

`make_market` builds a small `Market` from per-ticker close (and optionally open) lists on
consecutive business days. It is a plain function, importable as ``from tests.conftest import
make_market`` (pytest 9 registers this file as ``tests.conftest``; older pytest versions as
``conftest``), and also served by the ``make_market`` fixture for tests that prefer fixtures.

Hypothesis profiles (used by tests that do not fix `max_examples` themselves, e.g. the random
parity suite): "default" (and "ci", its derandomized twin) run 300 examples without a deadline,
derandomized when the environment sets ``CI``; "thorough" runs 3,000 — select it with
``pytest --hypothesis-profile=thorough``. Registering "default" changes the active profile in
place, so an explicit ``--hypothesis-profile`` still wins whichever is loaded first.

`backend_params(names)` turns backend names into pytest params for a parametrization over
`gpubt.engine.BACKENDS`: a GPU backend is marked `gpu` and skipped, with the reason
`gpubt.backends.usable` gives, where it cannot run.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

import numpy as np
import polars as pl
import pytest
from hypothesis import HealthCheck, settings

from gpubt.data.market import Market

_CI = bool(os.environ.get("CI"))
_PROFILE = {
    "deadline": None,
    "print_blob": True,
    "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large],
}
settings.register_profile("default", max_examples=300, derandomize=_CI, **_PROFILE)
settings.register_profile("ci", max_examples=300, derandomize=True, **_PROFILE)
settings.register_profile("thorough", max_examples=3000, derandomize=_CI, **_PROFILE)


@pytest.fixture
def stand_in_hopper(monkeypatch: pytest.MonkeyPatch) -> None:
    """Compile CUDA kernels to PTX for sm_90 without a GPU: skips where libNVVM is missing, and
    answers the current-device question a kernel that calls device functions asks."""
    import types

    try:
        from numba.cuda.cudadrv import nvvm

        missing = None if nvvm.is_available() else "libNVVM is not installed"
    except Exception as exc:  # a broken toolkit: nothing to compile with
        missing = f"{type(exc).__name__}: {exc}"
    if missing is not None:
        pytest.skip(f"no PTX compiler: {missing}")
    monkeypatch.setattr("numba.cuda.dispatcher.get_current_device",
                        lambda: types.SimpleNamespace(compute_capability=(9, 0)))


def backend_params(names: Sequence[str]) -> list:
    """One pytest param per backend name; GPU backends marked `gpu` and skipped where unusable."""
    from gpubt.backends import GPU_BACKENDS, usable

    params = []
    for name in names:
        if name in GPU_BACKENDS:
            ok, why = usable(name)
            marks = [pytest.mark.gpu, pytest.mark.skipif(not ok, reason=f"{name} backend unusable: {why}")]
            params.append(pytest.param(name, marks=marks))
        else:
            params.append(pytest.param(name))
    return params


def business_days(n: int, start: str = "2021-01-04") -> np.ndarray:
    """n consecutive business days (Mon–Fri, no holidays) from `start` (rolled forward)."""
    return np.busday_offset(np.datetime64(start, "D"), np.arange(n), roll="forward")


def make_market(
    closes: Mapping[str, Sequence[float | None]],
    opens: Mapping[str, Sequence[float | None]] | None = None,
    start: str = "2021-01-04",
    source: str = "test",
) -> Market:
    """A `Market` via `Market.from_frames`: every list is one value per day on the same business-day
    axis; a `None` (or NaN) close drops that ticker's row (a missing price: leading/trailing
    gaps stay missing, interior ones are forward-filled by the market). Opens default to the close.
    """
    lengths = {len(v) for v in closes.values()}
    if len(lengths) != 1:
        raise ValueError(f"close lists differ in length: {lengths}")
    (n,) = lengths
    days = business_days(n, start)
    frames: dict[str, pl.DataFrame] = {}
    for ticker, values in closes.items():
        close = [np.nan if v is None else float(v) for v in values]
        columns: dict[str, object] = {"date": days, "close": close}
        if opens is not None and ticker in opens:
            if len(opens[ticker]) != n:
                raise ValueError(f"opens of {ticker} have {len(opens[ticker])} values, not {n}")
            columns["open"] = [np.nan if v is None else float(v) for v in opens[ticker]]
        frame = pl.DataFrame(columns).with_columns(pl.col("date").cast(pl.Date))
        keep = np.isfinite(np.asarray(close))
        frames[ticker] = frame.filter(pl.Series(keep))
    return Market.from_frames(frames, source=source)


@pytest.fixture(name="make_market")
def _make_market_fixture():
    """The `make_market` function itself."""
    return make_market
