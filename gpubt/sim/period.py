"""The backtest period, shared by every engine: which market, which days, which warnings.

Both the reference and the compiled engines compute the warm-up themselves (independently); this
module only turns a warm-up into the start day and the reported window (spec §1 dates, §6), so
the two never differ on clipping or on the wording of a message.
"""

from __future__ import annotations

import numpy as np

from gpubt.data.market import Market
from gpubt.errors import GpubtError
from gpubt.schema.parse import Strategy

MIN_HISTORY = 50  # spec §6: at least 50 days of history before the first decision
LAG = {"CC": 1, "CO": 1, "OC": 1, "OO": 2}  # days from the decision to the credited day

Warnings = list[tuple[int | None, str]]


def prepare_market(strategy: Strategy, market: Market) -> Market:
    """The strategy's tickers on their own calendar. Every ticker the tree reads must have data
    (spec §8); a benchmark without data only loses beta/treynor (the response warns)."""
    market.require(strategy.tickers)
    tickers = list(strategy.tickers)
    if market.has(strategy.request.benchmark):
        tickers.append(strategy.request.benchmark)
    return market.select(tickers)


def backtest_window(strategy: Strategy, dates: np.ndarray, warmup: int) -> tuple[int, int, Warnings]:
    """(start decision day, last credited day, warnings) from the warm-up and start/end dates."""
    request = strategy.request
    lag = LAG[request.mode]
    warnings: Warnings = []
    start = max(MIN_HISTORY, warmup)
    if request.start_date is not None:
        wanted = int(np.searchsorted(dates, np.datetime64(request.start_date, "D")))
        if wanted < start < len(dates):
            warnings.append(
                (start, f"startDate {request.start_date} is inside the warm-up; "
                        f"the backtest starts {dates[start]}")
            )
        start = max(start, wanted)
    end = len(dates) - 1
    if request.end_date is not None:
        end = int(np.searchsorted(dates, np.datetime64(request.end_date, "D"), side="right")) - 1
    if start + lag > end:
        needed = max(MIN_HISTORY, warmup) + lag + 1
        raise GpubtError(
            f"not enough data: the strategy needs at least {needed} days of history for its "
            f"warm-up (indicator lookbacks, at least {MIN_HISTORY} days) and one {request.mode} "
            f"period, but {len(dates)} days are available"
            + (" in the requested date range" if request.start_date or request.end_date else ""),
            path="payload",
        )
    return start, end, warnings


def missing_price_warnings(missing: dict[str, list[int]], dates: np.ndarray) -> Warnings:
    """One warning per ticker that was held over periods without a price (they earned 0)."""
    return [
        (days[0], f"{ticker} had no price for {len(days)} held period(s) from "
                  f"{dates[days[0]]}; those periods earned 0")
        for ticker, days in missing.items()
    ]
