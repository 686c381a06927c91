"""Market data: the aligned `Market`, file loaders and the built-in synthetic market."""

from gpubt.data.market import Bars, Market

__all__ = ["Bars", "Market"]
