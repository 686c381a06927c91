"""Backends execute column-graph nodes over a market; each is one module behind `Backend`.

The registry maps a name to the module and class that implement it, imported only when used,
so a machine without CUDA never imports a GPU library. Adding a backend adds one line here.
"""

from __future__ import annotations

from importlib import import_module

from gpubt.backends.base import Backend

REGISTRY: dict[str, tuple[str, str]] = {
    "polars": ("gpubt.backends.polars_cpu", "PolarsBackend"),
    "numba": ("gpubt.backends.numba_cpu", "NumbaBackend"),
}


def get_backend(name: str) -> Backend:
    module, cls = REGISTRY[name]
    return getattr(import_module(module), cls)()


__all__ = ["REGISTRY", "Backend", "get_backend"]
