"""Where an indicator reads its prices: a market ticker, a ratio of two, or a branch's equity."""

from __future__ import annotations

from dataclasses import dataclass

from gpubt.indicators._series import NAN, S
from gpubt.ir.nodes import Builder, Node

PRICE_FIELDS = ("open", "high", "low", "close")
SOURCE_FIELDS = (*PRICE_FIELDS, "volume")  # the order of `Source`'s fields


@dataclass(frozen=True)
class Source:
    """The five series an indicator may read, as graph nodes."""

    open: Node
    high: Node
    low: Node
    close: Node
    volume: Node

    def series(self, b: Builder) -> tuple[S, S, S, S, S]:
        """(o, h, l, c, v) wrapped for arithmetic."""
        return S(b, self.open), S(b, self.high), S(b, self.low), S(b, self.close), S(b, self.volume)


def ticker_source(b: Builder, ticker: str) -> Source:
    """A plain ticker's OHLCV, or a ratio `A/B` (each price field A's over B's; spec §4.2: no
    volume, so volume metrics of a ratio are missing)."""
    prices = {f: b.price(ticker, f) for f in PRICE_FIELDS}
    volume = b.const(NAN) if "/" in ticker else b.price(ticker, "volume")
    return Source(volume=volume, **prices)


def branch_source(b: Builder, key: object) -> Source:
    """A branch's equity series as open, high, low and close (no volume), spec §5."""
    equity = b.node("branch", (key,))
    return Source(equity, equity, equity, equity, b.const(NAN))
