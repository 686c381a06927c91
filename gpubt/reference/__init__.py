"""The reference interpreter: a per-day tree walk that every compiled backend must equal."""

from gpubt.reference.backtest import run_reference

__all__ = ["run_reference"]
