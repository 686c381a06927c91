"""Market data: the aligned `Market`, file loaders and the built-in synthetic market."""

from gpubt.data.loaders import load_market
from gpubt.data.market import Bars, Market

__all__ = ["Bars", "Market", "load_market"]
