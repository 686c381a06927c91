"""How metrics are shown to people (CLI tables, HTML report): label and format per key."""

from __future__ import annotations

from typing import Any

METRIC_ROWS: tuple[tuple[str, str, str], ...] = (
    ("startDate", "Start", "s"),
    ("endDate", "End", "s"),
    ("days", "Days", "d"),
    ("years", "Years", "f"),
    ("totalReturn", "Total return", "%"),
    ("cagr", "CAGR", "%"),
    ("vol", "Volatility", "%"),
    ("maxDrawdown", "Max drawdown", "%"),
    ("sharpe", "Sharpe", "f"),
    ("sortino", "Sortino", "f"),
    ("calmar", "Calmar", "f"),
    ("beta", "Beta", "f"),
    ("treynor", "Treynor", "f"),
    ("winRate", "Win rate", "%"),
    ("bestDay", "Best day", "%"),
    ("worstDay", "Worst day", "%"),
    ("avgTurnover", "Avg turnover", "%"),
    ("avgHoldings", "Avg holdings", "f"),
)

# Metrics where less is better: rankings by them put the lowest first (every other metric,
# drawdowns and worst days included, as they are negative, ranks the highest first).
LOWER_IS_BETTER = frozenset({"vol", "avgTurnover"})


def format_metric(value: Any, kind: str) -> str:
    """'%' as a percentage, 'f' with three decimals, anything else as text; null as a dash."""
    if value is None:
        return "—"
    if kind == "%":
        return f"{100 * value:,.2f}%"
    if kind == "f":
        return f"{value:,.3f}"
    return str(value)


def format_parameter(value: Any) -> str:
    """A swept parameter's value: numbers as short as they go, lists as "A,B", null as a dash."""
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, list):
        return ",".join(map(str, value))
    return "—" if value is None else str(value)
