"""What every backend implements: evaluate graph nodes over a market, answer host arrays.

Encoding at the boundary, the same for every backend: a float node ('f') comes back as float64
with NaN for missing; a condition node ('b') as int8 with TRUE, FALSE or NULL (three-valued).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

import numpy as np

from gpubt.data.market import Market
from gpubt.ir.nodes import Node

TRUE, FALSE, NULL = np.int8(1), np.int8(0), np.int8(-1)


class Backend(Protocol):
    name: str

    def evaluate(
        self,
        outputs: Sequence[Node],
        market: Market,
        branches: Mapping[tuple, np.ndarray],
        first: Mapping[Node, int] | None = None,
    ) -> dict[Node, np.ndarray]:
        """Values of `outputs` on the market's date axis. `branches` holds the equity series of
        every `branch` leaf the outputs read (keyed by the leaf's params[0]). `first`: for an
        output, the first day anything reads it; a backend may leave the days before missing
        (a condition Null) rather than compute them."""
        ...
