"""HTTP API: `POST /api/backtest` and friends (spec §1, §7, §8). Needs the `[api]` extra."""

from gpubt.api.app import Settings, create_app

__all__ = ["Settings", "create_app"]
