"""gpubt: compile FlowNode strategy trees into columnar computations and backtest them."""

from gpubt.errors import GpubtError

__version__ = "0.1.0"

__all__ = ["GpubtError", "__version__"]
