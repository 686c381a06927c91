"""gpubt: compile FlowNode strategy trees into columnar computations and backtest them."""

from gpubt.errors import GpubtError

__version__ = "0.1.0"


def __getattr__(name: str):  # noqa: ANN202 - PEP 562, imports the sweep package on first use
    """`gpubt.sweep` is the sweep package, which is callable: ``gpubt.sweep(strategy, params)``
    runs `gpubt.sweep.run.sweep`. Imported on first use so ``import gpubt`` stays light."""
    if name == "sweep":
        import importlib

        return importlib.import_module("gpubt.sweep")
    raise AttributeError(f"module 'gpubt' has no attribute {name!r}")


__all__ = ["GpubtError", "__version__", "sweep"]
