"""Pausing Python's cyclic garbage collector around bursts of acyclic allocations.

Parsing a request, compiling its tree, walking the column graph and building a response each
create tens of thousands of small objects (pydantic models, graph nodes, per-day dicts) and no
reference cycles. Every 700 allocations the collector scans the young objects, and now and then
the whole heap (100–250 ms with big trees and Numba loaded, measured): work that frees nothing
here. Paused, those passes wait until the burst is over; the previous state is restored after,
so nested pauses and threads that each pause for one request compose.

Pause around the whole job (a backtest, an API request) rather than each stage: when the
collector resumes, the first pass scans every object made during the pause that is still alive.
After a whole backtest little is (its graph and plan are gone), after a stage everything is: one
pause around `run_compiled` took it from 1,485 to 1,195 ms on the 1,000 × 10,000 scenario (one
A/B on this 2-core machine, whose timings drift by ±15 % between runs).
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def paused() -> Iterator[None]:
    """The collector off for the ``with`` block (or the decorated call), then as it was."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
