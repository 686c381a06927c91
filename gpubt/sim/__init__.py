"""Portfolio simulation (spec §6)."""

from gpubt.sim.simulate import SimResult, equity_and_drawdown, period_returns, simulate

__all__ = ["SimResult", "equity_and_drawdown", "period_returns", "simulate"]
