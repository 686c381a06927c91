"""Performance metrics (spec §7)."""

from gpubt.metrics.core import KEYS, PERIODS, compute_metrics

__all__ = ["KEYS", "PERIODS", "compute_metrics"]
