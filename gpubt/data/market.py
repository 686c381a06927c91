"""The aligned market: one date axis, days × tickers float64 matrices (spec §4, §4.2)."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple, TypeVar

import numpy as np
import polars as pl

from gpubt.errors import GpubtError

FIELDS = ("open", "high", "low", "close", "volume")
_SELECTIONS_KEPT = 8  # per market, by ticker list (`Market.select`)
T = TypeVar("T")


class Bars(NamedTuple):
    """One ticker's (or one ratio's) series on the market's date axis."""

    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray


def _ffill_inside(values: np.ndarray, first: int, last: int) -> np.ndarray:
    """Forward-fill NaNs between a ticker's first and last price; NaN outside that span."""
    out = np.full(values.shape, np.nan)
    if first > last:
        return out
    seg = values[first : last + 1]
    idx = np.where(np.isnan(seg), 0, np.arange(seg.size))
    np.maximum.accumulate(idx, out=idx)
    filled = seg[idx]
    out[first : last + 1] = filled
    return out


@dataclass(frozen=True, eq=False)
class Market:
    """Prices of many tickers on one date axis.

    Matrices are days × tickers float64. A ticker is missing (NaN) before its first price and after
    its last; gaps between are forward-filled. When the source has an adjusted close, `close` is the
    adjusted close and open/high/low are scaled by adjusted close / close (spec §4). `observed`
    marks the cells that had a real price row (not filled), which `select` uses to build the axis.
    """

    dates: np.ndarray  # datetime64[D], shape (T,)
    tickers: tuple[str, ...]
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray
    observed: np.ndarray  # bool, shape (T, N)
    source: str

    @classmethod
    def from_frames(cls, frames: Mapping[str, pl.DataFrame], source: str) -> Market:
        """Align per-ticker frames with columns ``date`` (Date) and ``close``, and optionally
        ``open``, ``high``, ``low``, ``volume``, ``adj_close``. Dates must be strictly increasing
        (loaders check this and name the file and row)."""
        if not frames:
            raise GpubtError(f"no tickers in {source}", path=source)
        tickers = tuple(frames)
        axis = np.unique(
            np.concatenate([f["date"].to_numpy().astype("datetime64[D]") for f in frames.values()])
        )
        T, N = axis.size, len(tickers)
        mats = {name: np.full((T, N), np.nan) for name in FIELDS}
        observed = np.zeros((T, N), dtype=bool)
        for j, ticker in enumerate(tickers):
            frame = frames[ticker]
            rows = np.searchsorted(axis, frame["date"].to_numpy().astype("datetime64[D]"))
            close = _column(frame, "close")
            factor = np.ones_like(close)
            if "adj_close" in frame.columns:
                adj = _column(frame, "adj_close")
                with np.errstate(divide="ignore", invalid="ignore"):
                    ratio = adj / close
                known = np.isfinite(ratio)
                if known.any():
                    # A row without an adjusted close keeps the last known factor (1 before any).
                    pos = np.where(known, np.arange(ratio.size), -1)
                    np.maximum.accumulate(pos, out=pos)
                    factor = np.where(pos >= 0, ratio[np.maximum(pos, 0)], 1.0)
            has_close = np.isfinite(close)
            observed[rows[has_close], j] = True
            fields = {
                "close": close * factor,
                "open": _column(frame, "open", close) * factor,
                "high": _column(frame, "high", close) * factor,
                "low": _column(frame, "low", close) * factor,
                "volume": _column(frame, "volume", np.full_like(close, np.nan)),
            }
            real = np.flatnonzero(has_close)
            first, last = (rows[real[0]], rows[real[-1]]) if real.size else (T, -1)
            for name, values in fields.items():
                col = np.full(T, np.nan)
                col[rows] = np.where(has_close, values, np.nan)
                mats[name][:, j] = _ffill_inside(col, first, last)
        return cls(axis, tickers, observed=observed, source=source, **mats)

    # -- lookups -------------------------------------------------------------------------------

    @property
    def n_days(self) -> int:
        return int(self.dates.size)

    def has(self, ticker: str) -> bool:
        if "/" in ticker:
            a, _, b = ticker.partition("/")
            return a in self._index and b in self._index
        return ticker in self._index

    @property
    def _index(self) -> dict[str, int]:
        index = self.__dict__.get("_index_cache")
        if index is None:
            index = {t: j for j, t in enumerate(self.tickers)}
            object.__setattr__(self, "_index_cache", index)
        return index

    def column(self, ticker: str) -> int:
        try:
            return self._index[ticker]
        except KeyError:
            raise GpubtError(
                f"ticker {ticker!r} has no data in {self.source}", path=ticker
            ) from None

    def require(self, tickers: Iterable[str]) -> None:
        """Refuse tickers without data, naming all of them and the source (spec §8)."""
        missing = sorted({t for t in tickers if t and t not in self._index})
        if missing:
            raise GpubtError(
                f"no data for ticker(s) {', '.join(missing)} in {self.source}; "
                f"available: {', '.join(self.tickers[:40])}{' …' if len(self.tickers) > 40 else ''}",
                path="tickers",
            )

    def bars(self, ticker: str) -> Bars:
        """OHLCV of a plain ticker, or of a ratio ``A/B`` (spec §4.2: each field the ratio of
        A's to B's; missing where either is missing or B's is 0; volume missing)."""
        if "/" in ticker:
            a, _, b = ticker.partition("/")
            ja, jb = self.column(a), self.column(b)
            ratios = []
            for name in ("open", "high", "low", "close"):
                mat = getattr(self, name)
                num, den = mat[:, ja], mat[:, jb]
                with np.errstate(divide="ignore", invalid="ignore"):
                    ratios.append(np.where(den != 0, num / den, np.nan))
            return Bars(*ratios, np.full(self.n_days, np.nan))
        j = self.column(ticker)
        return Bars(*(getattr(self, name)[:, j].copy() for name in FIELDS))

    def derived(self, key: Hashable, make: Callable[[], T]) -> T:
        """A value computed from this market alone (`make()`), made once: markets never change,
        and every request reads the same few (first days, dates as text, a backend's columns)."""
        cache: dict[Hashable, Any] = self.__dict__.setdefault("_derived", {})
        try:
            return cache[key]
        except KeyError:
            value = cache[key] = make()
            return value

    def first_index(self, ticker: str) -> int:
        """Index of the first day with a close (``n_days`` when there is none)."""

        def make() -> int:
            close = self.bars(ticker).close if "/" in ticker else self.close[:, self.column(ticker)]
            valid = np.flatnonzero(np.isfinite(close))
            return int(valid[0]) if valid.size else self.n_days

        return self.derived(("first_index", ticker), make)

    @property
    def iso_dates(self) -> np.ndarray:
        """Each day as YYYY-MM-DD (what responses write), an object array of `str`."""

        def make() -> np.ndarray:  # Polars formats dates twice as fast as NumPy
            text = pl.Series(self.dates.astype("datetime64[D]")).cast(pl.String).to_list()
            return np.array(text, dtype=object)

        return self.derived("iso_dates", make)

    def select(self, tickers: Iterable[str]) -> Market:
        """The market restricted to some tickers, on the days where at least one of them traded,
        so another ticker's calendar never adds flat days to a backtest. The last few selections
        are kept (markets never change): a web app's requests mostly read the same tickers."""
        names = tuple(dict.fromkeys(tickers))
        cache: OrderedDict[tuple[str, ...], Market] = self.__dict__.setdefault("_select_cache", OrderedDict())
        found = cache.get(names)
        if found is None:
            found = cache[names] = self._select(names)
            while len(cache) > _SELECTIONS_KEPT:
                cache.popitem(last=False)
        else:
            cache.move_to_end(names)
        return found

    def _select(self, tickers: tuple[str, ...]) -> Market:
        cols = [self.column(t) for t in tickers]
        rows = np.flatnonzero(self.observed[:, cols].any(axis=1))
        if not cols:
            rows = np.arange(0)
        take = np.ix_(rows, cols)
        sub = {name: getattr(self, name)[take] for name in FIELDS}
        observed = self.observed[take]
        for k in range(len(cols)):
            obs = np.flatnonzero(observed[:, k])
            first, last = (obs[0], obs[-1]) if obs.size else (rows.size, -1)
            for name in FIELDS:
                sub[name][:, k] = _ffill_inside(sub[name][:, k], first, last)
        for array in (*sub.values(), observed):
            array.flags.writeable = False  # shared by every caller of the same selection
        return Market(
            self.dates[rows],
            tuple(self.tickers[c] for c in cols),
            observed=observed,
            source=self.source,
            **sub,
        )


def _column(frame: pl.DataFrame, name: str, default: np.ndarray | None = None) -> np.ndarray:
    if name in frame.columns:
        return frame[name].cast(pl.Float64).fill_null(np.nan).to_numpy().astype(np.float64)
    if default is None:
        raise GpubtError(f"column {name!r} is missing", path=name)
    return default.copy()
