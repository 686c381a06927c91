"""Metric names of spec §4.1: canonical name, aliases, what data a metric needs, how far back it
looks. Both the reference interpreter and the compiler resolve names here and nowhere else."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class MetricInfo:
    name: str  # canonical name (spec §4.1, first spelling)
    aliases: tuple[str, ...]
    needs: str  # "c" (close), "hlc", "hlcv" or "ohlcv": the fields read
    doc: str

    def lookback(self, window: int) -> int:
        """First valid index counted from the ticker's first price (spec §4.1 column "first")."""
        p = max(1, window)
        return _FIRST[self.name](p)


def _first_hma(p: int) -> int:
    return p - 1 + max(1, int(p**0.5)) - 1


def _first_dema(p: int) -> int:
    return 2 * (p - 1)


def _first_tema(p: int) -> int:
    return 3 * (p - 1)


_FIRST = {
    "Current Price": lambda p: 0,
    "Simple Moving Average": lambda p: p - 1,
    "Exponential Moving Average": lambda p: p - 1,
    "Weighted Moving Average": lambda p: p - 1,
    "Hull Moving Average": _first_hma,
    "Wilder Moving Average": lambda p: p - 1,
    "DEMA": _first_dema,
    "TEMA": _first_tema,
    "KAMA": lambda p: p - 1,
    "Relative Strength Index": lambda p: p,
    "RSI (SMA)": lambda p: p,
    "RSI (EMA)": lambda p: p,
    "Stochastic RSI": lambda p: 2 * p - 1,
    "Laguerre RSI": lambda p: 0,
    "Momentum (Weighted)": lambda p: 252,
    "Momentum (Unweighted)": lambda p: 252,
    "Momentum (12-Month SMA)": lambda p: 263,
    "Rate of Change": lambda p: p,
    "Cumulative Return": lambda p: p,
    "Moving Average of Return": lambda p: p,
    "Standard Deviation": lambda p: p,
    "Standard Deviation of Return": lambda p: p,
    "Standard Deviation of Price": lambda p: p - 1,
    "Max Drawdown": lambda p: p - 1,
    "Drawdown": lambda p: p - 1,
    "Bollinger %B": lambda p: p - 1,
    "Bollinger Bandwidth": lambda p: p - 1,
    "Historical Volatility": lambda p: p,
    "Ulcer Index": lambda p: p - 1,
    "Trend Clarity": lambda p: p,
    "Linear Reg Slope": lambda p: p - 1,
    "Linear Reg Value": lambda p: p - 1,
    "Price vs SMA": lambda p: p - 1,
    "MACD Histogram": lambda p: 33,
    "PPO Histogram": lambda p: 33,
    "Aroon Up": lambda p: p,
    "Aroon Down": lambda p: p,
    "Aroon Oscillator": lambda p: p,
    "ATR": lambda p: p,
    "ATR %": lambda p: p,
    "Williams %R": lambda p: p - 1,
    "CCI": lambda p: p - 1,
    "Stochastic %K": lambda p: p - 1,
    "Stochastic %D": lambda p: p + 1,
    "ADX": lambda p: 2 * p - 1,
    "Money Flow Index": lambda p: p,
    "OBV Rate of Change": lambda p: p,
    "VWAP Ratio": lambda p: p - 1,
}

METRICS: tuple[MetricInfo, ...] = (
    MetricInfo("Current Price", (), "c", "close"),
    MetricInfo("Simple Moving Average", ("SMA", "Moving Average of Price", "Simple Moving Average of Price"), "c", "mean of the last p closes"),
    MetricInfo("Exponential Moving Average", ("EMA", "Exponential Moving Average of Price"), "c", "EMA k=2/(p+1), SMA-seeded"),
    MetricInfo("Weighted Moving Average", ("WMA",), "c", "linear weights 1..p"),
    MetricInfo("Hull Moving Average", ("HMA",), "c", "WMA(2·WMA(p/2) − WMA(p), √p)"),
    MetricInfo("Wilder Moving Average", ("Wilders MA",), "c", "SMA-seeded, smoothing 1/p"),
    MetricInfo("DEMA", (), "c", "2·EMA − EMA(EMA)"),
    MetricInfo("TEMA", (), "c", "3·E1 − 3·E2 + E3"),
    MetricInfo("KAMA", (), "c", "Kaufman adaptive moving average (2/30 constants)"),
    MetricInfo("Relative Strength Index", ("RSI",), "c", "Wilder RSI"),
    MetricInfo("RSI (SMA)", (), "c", "RSI with SMA averages"),
    MetricInfo("RSI (EMA)", (), "c", "RSI with SMA-seeded EMA averages"),
    MetricInfo("Stochastic RSI", (), "c", "stochastic of RSI(p) over p values"),
    MetricInfo("Laguerre RSI", (), "c", "Ehlers Laguerre RSI, gamma 0.8"),
    MetricInfo("Momentum (Weighted)", ("13612W",), "c", "12/4/2/1-weighted 1/3/6/12-month returns"),
    MetricInfo("Momentum (Unweighted)", ("13612U",), "c", "mean of 1/3/6/12-month returns"),
    MetricInfo("Momentum (12-Month SMA)", ("SMA12",), "c", "SMA(12) today over SMA(12) 252 days ago"),
    MetricInfo("Rate of Change", ("ROC",), "c", "percent change over p days"),
    MetricInfo("Cumulative Return", (), "c", "percent change over p days"),
    MetricInfo("Moving Average of Return", ("SMA of Returns",), "c", "mean daily return over p, percent"),
    MetricInfo("Standard Deviation", (), "c", "population std of daily returns over p"),
    MetricInfo("Standard Deviation of Return", (), "c", "100 × std of daily returns over p"),
    MetricInfo("Standard Deviation of Price", (), "c", "population std of closes over p"),
    MetricInfo("Max Drawdown", (), "c", "largest drawdown inside the last p closes, percent"),
    MetricInfo("Drawdown", (), "c", "percent below the max of the last p closes"),
    MetricInfo("Bollinger %B", (), "c", "position inside 2σ Bollinger bands"),
    MetricInfo("Bollinger Bandwidth", (), "c", "100·4σ/SMA"),
    MetricInfo("Historical Volatility", (), "c", "annualised std of log returns, percent"),
    MetricInfo("Ulcer Index", (), "c", "root mean square drawdown within the window"),
    MetricInfo("Trend Clarity", (), "c", "net move over path length"),
    MetricInfo("Linear Reg Slope", (), "c", "OLS slope over mean, percent"),
    MetricInfo("Linear Reg Value", (), "c", "OLS fitted value at the last point"),
    MetricInfo("Price vs SMA", (), "c", "percent above SMA(p)"),
    MetricInfo("MACD Histogram", (), "c", "MACD(12,26) − signal(9); window ignored"),
    MetricInfo("PPO Histogram", (), "c", "PPO(12,26) − signal(9); window ignored"),
    MetricInfo("Aroon Up", (), "hlc", "TA-Lib Aroon up"),
    MetricInfo("Aroon Down", (), "hlc", "TA-Lib Aroon down"),
    MetricInfo("Aroon Oscillator", (), "hlc", "Aroon up − down"),
    MetricInfo("ATR", (), "hlc", "Wilder average true range"),
    MetricInfo("ATR %", (), "hlc", "100·ATR/close"),
    MetricInfo("Williams %R", (), "hlc", "−100(HH − c)/(HH − LL)"),
    MetricInfo("CCI", (), "hlc", "commodity channel index"),
    MetricInfo("Stochastic %K", (), "hlc", "100(c − LL)/(HH − LL)"),
    MetricInfo("Stochastic %D", (), "hlc", "SMA(%K, 3)"),
    MetricInfo("ADX", (), "hlc", "Wilder ADX"),
    MetricInfo("Money Flow Index", ("MFI",), "hlcv", "volume-weighted RSI of typical price"),
    MetricInfo("OBV Rate of Change", (), "hlcv", "percent change of on-balance volume over p"),
    MetricInfo("VWAP Ratio", (), "hlcv", "close over rolling VWAP of typical price"),
)

DATE_METRIC = "Date"

_BY_NAME: dict[str, MetricInfo] = {}
for _m in METRICS:
    for _n in (_m.name, *_m.aliases):
        _BY_NAME[_n] = _m
_BY_FOLDED = {k.casefold(): v for k, v in _BY_NAME.items()}


def is_catalogue_name(name: str) -> bool:
    """A catalogue metric's name or alias, spelt exactly."""
    return name in _BY_NAME


def resolve_metric(name: str) -> MetricInfo | None:
    """The catalogue entry for a name or alias (exact spelling first, then ignoring case)."""
    return _BY_NAME.get(name) or _BY_FOLDED.get(name.strip().casefold())
