"""A self-contained HTML report of a sweep: a heatmap of one metric over two parameters, the
metric against each parameter, its spread over every variant, the best variants, and (when
asked) their equity curves.

A cell of the heatmap holds the median of the metric over the variants sharing its two values
(every combination of the other parameters): a region that stays good whatever the rest is
what a robust choice looks like, where a best-of would reward one lucky combination. The
hover shows the median, the best and how many variants the cell holds.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots
import polars as pl

from gpubt.errors import GpubtError
from gpubt.metrics.labels import LOWER_IS_BETTER, METRIC_ROWS, format_metric, format_parameter
from gpubt.report import figure_divs, html_page, layout
from gpubt.sweep.run import VARIANT, SweepResult

LABELS = {key: (label, kind) for key, label, kind in METRIC_ROWS}
TABLE_METRICS = ("sharpe", "cagr", "maxDrawdown", "sortino", "calmar", "vol", "totalReturn")
BINS = 60
MAX_MARGINALS = 9  # panels of the by-parameter figure


def heatmap_axes(result: SweepResult, axes: tuple[str, str] | None = None) -> tuple[str, ...]:
    """The parameters the heatmap spans: ``axes`` (checked), else the first two that take more
    than one value (one, or none, when the sweep has fewer)."""
    if axes is not None:
        unknown = [a for a in axes if a not in result.parameters]
        if unknown or len(set(axes)) != 2:
            raise GpubtError(f"heatmap axes must be two different parameters of the sweep, got {list(axes)}; "
                             f"parameters: {', '.join(result.parameters)}", "heatmap")
        return tuple(axes)
    return tuple(_varied(result)[:2])


def _varied(result: SweepResult) -> list[str]:
    """The parameter columns that take more than one value."""
    return [p.column for p in result.spec.parameters if len(set(map(repr, p.values))) > 1]


def _labels(column: pl.Series) -> pl.Series:
    """A parameter column as axis labels: numbers stay numbers, lists become "A,B"."""
    if column.dtype == pl.List(pl.String()):
        return column.list.join(",")
    return column


def _best(metric: str) -> pl.Expr:
    """The best value of a metric column: its lowest where less is better, else its highest."""
    return pl.col(metric).min() if metric in LOWER_IS_BETTER else pl.col(metric).max()


def _shown(metric: str) -> tuple[str, str, float]:
    """A metric's label, format kind and the factor its values are drawn with (100 for %)."""
    label, kind = LABELS.get(metric, (metric, "f"))
    return label, kind, 100.0 if kind == "%" else 1.0


def surface(table: pl.DataFrame, metric: str, x: str, y: str) -> pl.DataFrame:
    """Per (x, y): the median, the best and the count of the metric over the variants there."""
    return (table.select(_labels(table[x]).alias("x"), _labels(table[y]).alias("y"), metric)
            .group_by("x", "y")
            .agg(pl.col(metric).median().alias("median"), _best(metric).alias("best"), pl.len().alias("count"))
            .sort("y", "x"))


def heatmap_figure(table: pl.DataFrame, metric: str, x: str, y: str) -> go.Figure:
    cells = surface(table, metric, x, y)
    xs, ys = cells["x"].unique(maintain_order=False).sort(), cells["y"].unique().sort()
    col = {v: i for i, v in enumerate(xs.to_list())}
    row = {v: i for i, v in enumerate(ys.to_list())}
    z, best, count = (np.full((len(ys), len(xs)), np.nan) for _ in range(3))
    for cx, cy, median, top, n in cells.iter_rows():
        at = row[cy], col[cx]
        z[at] = np.nan if median is None else median
        best[at] = np.nan if top is None else top
        count[at] = n
    label, kind, scale = _shown(metric)
    others = table.height // max(1, len(cells))
    fig = go.Figure(go.Heatmap(
        z=scale * z, x=[str(v) for v in xs], y=[str(v) for v in ys],
        customdata=np.dstack([scale * best, count]),
        colorscale="RdYlGn_r" if metric in LOWER_IS_BETTER else "RdYlGn",
        colorbar=dict(title="%" if kind == "%" else label),
        hovertemplate=(f"{html.escape(x)}=%{{x}} · {html.escape(y)}=%{{y}}<br>median %{{z:.3f}}"
                       " · best %{customdata[0]:.3f} · %{customdata[1]} variants<extra></extra>"),
    ))
    fig.update_xaxes(title=x, type="category")
    fig.update_yaxes(title=y, type="category")
    title = f"{label} over {x} × {y}" + (f" (median of {others} variants a cell)" if others > 1 else "")
    return layout(fig, title, height=max(380, min(900, 22 * len(ys) + 160)))


def marginals_figure(table: pl.DataFrame, metric: str, parameters: list[str]) -> go.Figure:
    """The metric against each varied parameter, one panel each: its median and best over the
    variants that share the value (every combination of the others)."""
    label, _, scale = _shown(metric)
    cols = min(3, len(parameters))
    rows = -(-len(parameters) // cols)
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=parameters, shared_yaxes=True,
                        horizontal_spacing=0.04, vertical_spacing=0.18 if rows > 1 else 0.1)
    for i, x in enumerate(parameters):
        cells = (table.select(_labels(table[x]).alias("x"), metric).group_by("x")
                 .agg(pl.col(metric).median().alias("median"), _best(metric).alias("best")).sort("x"))
        for name, color in (("median", "#1f77b4"), ("best", "#2ca02c")):
            fig.add_trace(go.Scatter(x=[str(v) for v in cells["x"]], y=scale * cells[name].to_numpy().astype(float),
                                     name=name, mode="lines+markers", line=dict(color=color),
                                     legendgroup=name, showlegend=i == 0),
                          row=i // cols + 1, col=i % cols + 1)
        fig.update_xaxes(type="category", row=i // cols + 1, col=i % cols + 1)
    return layout(fig, f"{label} by parameter (median and best over the others)", height=max(380, 300 * rows))


def spread_figure(table: pl.DataFrame, metric: str) -> go.Figure:
    """A histogram of the metric over every variant, binned here (a million variants stay a
    few kilobytes of page)."""
    values = table[metric].drop_nulls().to_numpy().astype(float)
    values = values[np.isfinite(values)]
    label, kind, scale = _shown(metric)
    counts, edges = np.histogram(scale * values, bins=BINS) if values.size else (np.zeros(0), np.zeros(1))
    fig = go.Figure(go.Bar(x=(edges[:-1] + edges[1:]) / 2, y=counts, width=np.diff(edges), name=label,
                           hovertemplate="%{x:.3f}: %{y} variants<extra></extra>"))
    fig.update_xaxes(title=label + (" (%)" if kind == "%" else ""))
    fig.update_yaxes(title="variants")
    return layout(fig, f"{label} over all {table.height:,} variants", height=320)


def curves_figure(curves: pl.DataFrame, benchmark: str) -> go.Figure:
    fig = go.Figure()
    first = None
    for (variant,), rows in curves.group_by(VARIANT, maintain_order=True):
        first = rows if first is None else first
        fig.add_trace(go.Scatter(x=rows["date"].cast(pl.String).to_list(), y=rows["equity"].to_numpy(),
                                 name=f"variant {variant}", mode="lines", line=dict(width=1.3)))
    if first is not None and first["benchmark"].null_count() < first.height:
        fig.add_trace(go.Scatter(x=first["date"].cast(pl.String).to_list(), y=first["benchmark"].to_numpy(),
                                 name=benchmark, mode="lines", line=dict(width=1.2, color="#888", dash="dot")))
    fig.update_yaxes(type="log", title="equity (log)")
    return layout(fig, "Equity of the best variants", height=420)


def top_table(best: pl.DataFrame, parameters: list[str]) -> str:
    metrics = [m for m in TABLE_METRICS if m in best.columns]
    head = "".join(f"<th>{html.escape(c)}</th>" for c in [VARIANT, *parameters, *(LABELS[m][0] for m in metrics)])
    rows = []
    for row in best.iter_rows(named=True):
        cells = [str(row[VARIANT]), *(format_parameter(row[p]) for p in parameters),
                 *(format_metric(row[m], LABELS[m][1]) for m in metrics)]
        rows.append("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>")
    return f'<table class="top"><tr>{head}</tr>{"".join(rows)}</table>'


def figures(result: SweepResult, by: str = "sharpe", axes: tuple[str, str] | None = None,
            curves: pl.DataFrame | None = None) -> dict[str, go.Figure]:
    """Every figure of the report, by name, in report order."""
    table = result.table
    found = heatmap_axes(result, axes)
    out: dict[str, go.Figure] = {}
    if len(found) == 2:
        out["heatmap"] = heatmap_figure(table, by, *found)
    varied = _varied(result)
    if varied:
        out["marginals"] = marginals_figure(table, by, varied[:MAX_MARGINALS])
    out["spread"] = spread_figure(table, by)
    if curves is not None:
        out["curves"] = curves_figure(curves, result.spec.base.get("benchmark") or "benchmark")
    return out


def render_sweep_html(result: SweepResult, by: str = "sharpe", top: int = 10,
                      axes: tuple[str, str] | None = None, curves: pl.DataFrame | None = None,
                      title: str = "Sweep report") -> str:
    """The whole report as one HTML document (plotly.js inlined once, nothing fetched)."""
    if by not in LABELS or by in ("startDate", "endDate"):
        raise GpubtError(f"unknown metric {by!r}; metrics: {', '.join(k for k in LABELS if 'Date' not in k)}", "by")
    best = result.top(top, by)
    label = LABELS[by][0]
    subtitle = (f"{result.spec.describe()} · {result.table.height:,} variants · backend {result.backend}"
                + (f" · {result.elapsed_s:.1f} s" if result.elapsed_s > 0 else ""))
    order = "lowest" if by in LOWER_IS_BETTER else "highest"
    body = (f"<h2>Best {best.height} by {html.escape(label)} ({order} first)</h2>"
            + top_table(best, result.parameters)
            + figure_divs(figures(result, by, axes, curves)))
    return html_page(title, subtitle, body)


def write_sweep_report(result: SweepResult, path: str | Path, **options: Any) -> Path:
    """`render_sweep_html` written to ``path``; options as there."""
    path = Path(path)
    path.write_text(render_sweep_html(result, **options), encoding="utf-8")
    return path
