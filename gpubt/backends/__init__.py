"""Backends execute column-graph nodes over a market; each is one module behind `Backend`.

The registry maps a name to the module and class that implement it, imported only when used,
so a machine without CUDA never imports a GPU library. Adding a backend adds one line here
(and, if it should ever be picked automatically, one place in `AUTO_ORDER`).
"""

from __future__ import annotations

import logging
from importlib import import_module

from gpubt.backends.base import Backend

log = logging.getLogger(__name__)

REGISTRY: dict[str, tuple[str, str]] = {
    "polars": ("gpubt.backends.polars_cpu", "PolarsBackend"),
    "numba": ("gpubt.backends.numba_cpu", "NumbaBackend"),
}

# Fastest first: measured in benchmarks/RESULTS.md (numba ~15x polars on signals, bit-equal).
AUTO_ORDER = ("numba", "polars")


def usable(name: str) -> tuple[bool, str]:
    """Whether a registered backend can run here, and if not why (its import error)."""
    module, cls = REGISTRY[name]
    try:
        getattr(import_module(module), cls)
    except Exception as exc:  # an optional dependency missing or broken: report, never crash
        return False, f"{type(exc).__name__}: {exc}"
    return True, "ok"


def pick(name: str) -> tuple[str, str]:
    """The concrete backend for a name ("auto" resolves to the fastest usable one), and why."""
    if name != "auto":
        return name, "asked for"
    skipped = []
    for candidate in AUTO_ORDER:
        ok, why = usable(candidate)
        if ok:
            reason = "fastest usable backend" + (f" ({'; '.join(skipped)})" if skipped else "")
            return candidate, reason
        skipped.append(f"{candidate} unusable: {why}")
    raise RuntimeError("no usable backend: " + "; ".join(skipped))


def get_backend(name: str) -> Backend:
    resolved, reason = pick(name)
    if name == "auto":
        log.info("backend auto -> %s (%s)", resolved, reason)
    module, cls = REGISTRY[resolved]
    return getattr(import_module(module), cls)()


__all__ = ["AUTO_ORDER", "REGISTRY", "Backend", "get_backend", "pick", "usable"]
