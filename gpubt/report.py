"""A self-contained HTML report of one backtest response (spec §7).

`figures(response)` builds the Plotly figures (equity vs benchmark on a log axis, drawdown,
monthly returns heatmap, rolling 126-day Sharpe of the net return, allocation over time as a
stacked area); `render_html` lays them out with the metrics table and the warnings, with the
plotly.js bundle inlined once, so the file opens offline and loads nothing from the network.
"""

from __future__ import annotations

import html
import math
from pathlib import Path
from typing import Any

import numpy as np
import plotly.graph_objects as go

from gpubt.metrics.labels import METRIC_ROWS, format_metric

ROLLING_DAYS = 126  # 6 months of trading days
PERIODS = 252

_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")

def _num(values: list[Any]) -> np.ndarray:
    """JSON numbers (nulls included) as float64 with NaN for null."""
    return np.array([np.nan if v is None else float(v) for v in values], dtype=np.float64)


def layout(fig: go.Figure, title: str, height: int = 380) -> go.Figure:
    fig.update_layout(
        title=title,
        height=height,
        margin=dict(l=60, r=20, t=50, b=40),
        template="plotly_white",
        hovermode="x unified",
        legend=dict(orientation="h", yanchor="bottom", y=1.0, xanchor="right", x=1.0),
    )
    return fig


def equity_figure(response: dict[str, Any], benchmark: str = "benchmark") -> go.Figure:
    curve = response.get("equityCurve") or []
    bench = response.get("benchmarkCurve") or []
    fig = go.Figure()
    fig.add_trace(
        go.Scatter(
            x=[p["date"] for p in curve], y=_num([p["equity"] for p in curve]),
            name="strategy", mode="lines", line=dict(width=1.6),
        )
    )
    if bench:
        fig.add_trace(
            go.Scatter(
                x=[p["date"] for p in bench], y=_num([p["equity"] for p in bench]),
                name=benchmark, mode="lines", line=dict(width=1.2, color="#888"),
            )
        )
    fig.update_yaxes(type="log", title="equity (log)")
    return layout(fig, "Equity vs benchmark")


def drawdown_figure(response: dict[str, Any]) -> go.Figure:
    points = response.get("drawdownPoints") or []
    fig = go.Figure(
        go.Scatter(
            x=[p["date"] for p in points], y=100.0 * _num([p["equity"] for p in points]),
            name="drawdown", mode="lines", fill="tozeroy", line=dict(width=1, color="#c0392b"),
        )
    )
    fig.update_yaxes(title="drawdown (%)", ticksuffix="%")
    return layout(fig, "Drawdown", height=300)


def monthly_figure(response: dict[str, Any]) -> go.Figure:
    monthly = response.get("monthly") or []
    years = sorted({m["year"] for m in monthly})
    row = {y: i for i, y in enumerate(years)}
    z = np.full((len(years), 12), np.nan)
    for m in monthly:
        if m["value"] is not None:
            z[row[m["year"]], m["month"] - 1] = 100.0 * m["value"]
    text = [["" if math.isnan(v) else f"{v:.1f}" for v in r] for r in z]
    limit = float(np.nanmax(np.abs(z))) if np.isfinite(z).any() else 1.0
    fig = go.Figure(
        go.Heatmap(
            z=z, x=list(_MONTHS), y=[str(y) for y in years], name="monthly return",
            text=text, texttemplate="%{text}", colorscale="RdYlGn", zmid=0.0,
            zmin=-limit, zmax=limit, colorbar=dict(title="%"),
            hovertemplate="%{y} %{x}: %{z:.2f}%<extra></extra>",
        )
    )
    fig.update_yaxes(autorange="reversed", type="category")
    return layout(fig, "Monthly returns (%)", height=max(300, 24 * len(years) + 120))


def rolling_sharpe(net: np.ndarray, window: int = ROLLING_DAYS) -> np.ndarray:
    """Annualised Sharpe of the last `window` net returns (ddof 1); NaN before a full window
    or where the returns do not vary."""
    out = np.full(net.shape, np.nan)
    if net.size < window or window < 2:
        return out
    windows = np.lib.stride_tricks.sliding_window_view(net, window)
    mean = windows.mean(axis=1)
    std = windows.std(axis=1, ddof=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        sharpe = np.where(std > 0, mean / std * math.sqrt(PERIODS), np.nan)
    out[window - 1 :] = sharpe
    return out


def rolling_sharpe_figure(response: dict[str, Any]) -> go.Figure:
    days = response.get("days") or []
    net = _num([d["netReturn"] for d in days])
    fig = go.Figure(
        go.Scatter(
            x=[d["date"] for d in days], y=rolling_sharpe(net),
            name=f"rolling {ROLLING_DAYS}-day Sharpe", mode="lines", line=dict(width=1.2),
        )
    )
    fig.add_hline(y=0, line=dict(color="#888", width=1, dash="dot"))
    fig.update_yaxes(title="Sharpe (annualised)")
    return layout(fig, f"Rolling 6-month ({ROLLING_DAYS}-day) Sharpe of the net return", height=300)


def allocation_figure(response: dict[str, Any]) -> go.Figure:
    allocations = response.get("allocations") or []
    dates = [a["date"] for a in allocations]
    order: dict[str, float] = {}
    for a in allocations:
        for e in a["entries"]:
            order[e["ticker"]] = order.get(e["ticker"], 0.0) + (e["weight"] or 0.0)
    tickers = sorted(order, key=lambda t: (-order[t], t))  # most held first, at the bottom
    col = {t: j for j, t in enumerate(tickers)}
    weights = np.zeros((len(allocations), len(tickers)))
    for i, a in enumerate(allocations):
        for e in a["entries"]:
            weights[i, col[e["ticker"]]] = e["weight"] or 0.0
    fig = go.Figure()
    for j, ticker in enumerate(tickers):
        fig.add_trace(
            go.Scatter(
                x=dates, y=100.0 * weights[:, j], name=ticker, mode="lines",
                stackgroup="allocation", line=dict(width=0.5),
                hovertemplate=f"{html.escape(ticker)}: %{{y:.1f}}%<extra></extra>",
            )
        )
    fig.update_yaxes(title="weight (%)", ticksuffix="%", range=[0, 100])
    return layout(fig, "Allocation over time", height=360)


def figures(response: dict[str, Any], benchmark: str = "benchmark") -> dict[str, go.Figure]:
    """Every figure of the report, by name, in report order."""
    return {
        "equity": equity_figure(response, benchmark),
        "drawdown": drawdown_figure(response),
        "monthly": monthly_figure(response),
        "rollingSharpe": rolling_sharpe_figure(response),
        "allocation": allocation_figure(response),
    }


def metrics_table(metrics: dict[str, Any]) -> str:
    rows = []
    for key, label, kind in METRIC_ROWS:
        if key in metrics:
            rows.append(f"<tr><th>{html.escape(label)}</th><td>{html.escape(format_metric(metrics[key], kind))}</td></tr>")
    return '<table class="metrics">' + "".join(rows) + "</table>"


def warnings_list(warnings: list[dict[str, Any]]) -> str:
    if not warnings:
        return '<p class="none">No warnings.</p>'
    items = "".join(
        f"<li><b>{html.escape(str(w.get('date') or ''))}</b> {html.escape(str(w.get('message', '')))}</li>"
        for w in warnings
    )
    return f'<ul class="warnings">{items}</ul>'


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px auto;max-width:1200px;color:#222}
h1{font-size:1.4em;margin-bottom:4px} h2{font-size:1.1em;margin-top:28px}
.sub{color:#666;margin-top:0}
table.metrics{border-collapse:collapse;font-variant-numeric:tabular-nums}
table.metrics th{text-align:left;font-weight:500;padding:3px 18px 3px 0;color:#444}
table.metrics td{text-align:right;padding:3px 0}
table.metrics tr{border-bottom:1px solid #eee}
table.top{border-collapse:collapse;font-variant-numeric:tabular-nums;font-size:.92em}
table.top th,table.top td{padding:3px 10px;text-align:right;border-bottom:1px solid #eee}
table.top th{font-weight:500;color:#444}
ul.warnings li{color:#8a5a00;margin:2px 0}
.figure{margin-top:12px}
"""


def figure_divs(figs: dict[str, go.Figure]) -> str:
    """The figures as divs (``fig-<name>`` inside ``section-<name>``), plotly.js inlined once,
    in the first: never a CDN link, so a page opens offline."""
    parts = []
    for i, (name, fig) in enumerate(figs.items()):
        div = fig.to_html(
            full_html=False,
            include_plotlyjs=(i == 0),
            div_id=f"fig-{name}",
            config={"displaylogo": False, "responsive": True},
        )
        parts.append(f'<div class="figure" id="section-{name}">{div}</div>')
    return "".join(parts)


def html_page(title: str, subtitle: str, body: str) -> str:
    """One HTML document: the title, a line under it (both escaped here) and ``body``."""
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>"
        f"<h1>{html.escape(title)}</h1><p class=\"sub\">{html.escape(subtitle)}</p>"
        + body
        + "</body></html>\n"
    )


def render_html(
    response: dict[str, Any], title: str = "Backtest report", benchmark: str = "benchmark"
) -> str:
    """The whole report as one HTML document; plotly.js is inlined once, nothing is fetched."""
    metrics = response.get("metrics") or {}
    period = f"{metrics.get('startDate', '?')} → {metrics.get('endDate', '?')}"
    markers = response.get("markers") or []
    return html_page(
        title,
        f"{period} · {len(response.get('days') or [])} days · {len(markers)} markers",
        f"<h2>Metrics</h2>{metrics_table(metrics)}"
        f"<h2>Warnings</h2>{warnings_list(response.get('warnings') or [])}"
        + figure_divs(figures(response, benchmark)),
    )


def write_report(
    response: dict[str, Any], path: str | Path, title: str = "Backtest report", benchmark: str = "benchmark"
) -> Path:
    path = Path(path)
    path.write_text(render_html(response, title=title, benchmark=benchmark), encoding="utf-8")
    return path
