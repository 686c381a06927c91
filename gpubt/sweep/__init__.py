"""Parameter sweeps: one template strategy, many variants, one deduplicated column graph.

`sweep()` is the Python entry point (also exported as `gpubt.sweep`); `gpubt sweep SPEC` the
command line. Specs are in `spec`, variants parsed from the base's parse in `variants`, chunked
execution and the result table in `run`, the fused path in `template` (on a GPU: `device`),
the Dask runner in `distributed`, the HTML report in `report`.
"""

import sys
import types
from typing import Any

from gpubt.sweep.run import SweepResult, run_chunk, run_sweep, sweep
from gpubt.sweep.spec import Parameter, SweepSpec, load_spec, make_spec, parse_memory

__all__ = [
    "Parameter",
    "SweepResult",
    "SweepSpec",
    "load_spec",
    "make_spec",
    "parse_memory",
    "run_chunk",
    "run_sweep",
    "sweep",
]


class _CallableModule(types.ModuleType):
    """``gpubt.sweep`` is this package (so ``gpubt.sweep.run`` and friends import as usual) and,
    called, is `sweep()`: ``gpubt.sweep("strategy.json", {"c1.window": range(5, 21)})``."""

    def __call__(self, *args: Any, **kwargs: Any) -> SweepResult:
        return sweep(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
