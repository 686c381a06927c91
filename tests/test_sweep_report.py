"""Sweep outputs beyond the table: the best variants' curves, the HTML report, their CLI flags."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest

from gpubt.cli import main
from gpubt.data.synthetic import synthetic_market
from gpubt.engine import run_backtest
from gpubt.errors import GpubtError
from gpubt.sweep import make_spec, run_sweep
from gpubt.sweep.report import figures, heatmap_axes, render_sweep_html, surface
from gpubt.sweep.run import SweepResult
from tests.test_sweep import TQQQ, market_slice

ROOT = Path(__file__).resolve().parents[1]
SPEC = ROOT / "examples" / "sweeps" / "sweep_tqqq_rsi.json"
REMOTE = re.compile(r"<(script|link|img)[^>]*\b(src|href)\s*=\s*[\"']?\s*(https?:)?//", re.I)


@pytest.fixture(scope="module")
def result() -> SweepResult:
    market = market_slice(synthetic_market(), "2010-01-04", "2014-12-31")
    spec = make_spec(TQQQ, {"c1.window": [6, 10, 14], "c1.threshold": [74, 80], "c2.threshold": [25, 31],
                            "hedge.positions": [["UVXY"], ["TLT", "GLD"]]})
    return run_sweep(spec, market=market)


def test_curves_are_the_best_variants_single_runs(result: SweepResult) -> None:
    curves = result.curves(3, by="calmar")
    best = result.top(3, by="calmar")["variant"].to_list()
    assert curves["variant"].unique(maintain_order=True).to_list() == best
    assert curves.schema == {"variant": pl.Int64, "date": pl.Date, "equity": pl.Float64,
                             "drawdown": pl.Float64, "benchmark": pl.Float64}
    for i in best:
        response = run_backtest(result.spec.strategy(i), result.market, result.backend).to_dict()
        rows = curves.filter(pl.col("variant") == i)
        assert rows["date"].cast(pl.String).to_list() == [p["date"] for p in response["equityCurve"]]
        assert rows["equity"].to_list() == [p["equity"] for p in response["equityCurve"]]
        assert rows["drawdown"].to_list() == [p["equity"] for p in response["drawdownPoints"]]
        assert rows["benchmark"].to_list() == [p["equity"] for p in response["benchmarkCurve"]]
        assert rows["equity"][-1] == pytest.approx(1 + result.table.row(i, named=True)["totalReturn"], rel=1e-9)


def test_top_ranks_lower_is_better_metrics_lowest_first(result: SweepResult) -> None:
    assert result.top(3, by="vol")["vol"].to_list() == sorted(result.table["vol"].to_list())[:3]
    assert result.top(3, by="maxDrawdown")["maxDrawdown"].to_list() == sorted(result.table["maxDrawdown"])[::-1][:3]
    assert result.top(2, by="vol", descending=True)["vol"][0] == result.table["vol"].max()
    with pytest.raises(GpubtError, match="unknown column 'sharp'"):
        result.top(3, by="sharp")


def test_heatmap_cells_are_medians_over_the_other_parameters(result: SweepResult) -> None:
    assert heatmap_axes(result) == ("c1.window", "c1.threshold")
    table = result.table
    cells = surface(table, "sharpe", "c1.window", "c1.threshold")
    assert cells.height == 6 and cells["count"].to_list() == [4] * 6  # 2 × 2 others a cell
    for x, y, median, best, _ in cells.iter_rows():
        values = table.filter((pl.col("c1.window") == x) & (pl.col("c1.threshold") == y))["sharpe"].to_numpy()
        assert median == pytest.approx(np.median(values), rel=1e-12) and best == values.max()
    (heat,) = figures(result)["heatmap"].data
    z = np.asarray(heat.z, dtype=float)
    assert z.shape == (2, 3) and list(heat.x) == ["6", "10", "14"] and list(heat.y) == ["74", "80"]
    assert z[1, 2] == pytest.approx(cells.filter((pl.col("x") == 14) & (pl.col("y") == 80))["median"][0])
    listed = figures(result, axes=("hedge.positions", "c2.threshold"))["heatmap"].data[0]
    assert sorted(listed.x) == ["TLT,GLD", "UVXY"]
    with pytest.raises(GpubtError, match="two different parameters"):
        heatmap_axes(result, ("c1.window", "nope"))


def test_each_parameter_has_a_panel_of_median_and_best(result: SweepResult) -> None:
    panels = figures(result, by="sortino")["marginals"]
    assert [a.text for a in panels.layout.annotations] == result.parameters  # one titled panel each
    traces = {(t.name, t.xaxis): t for t in panels.data}
    assert len(traces) == 2 * 4
    table = result.table
    for k, column in enumerate(result.parameters):
        axis = "x" if k == 0 else f"x{k + 1}"
        median, best = traces["median", axis], traces["best", axis]
        labels = table[column].list.join(",") if table[column].dtype == pl.List(pl.String()) else table[column]
        for x, m, b in zip(median.x, median.y, best.y):
            values = table.filter(labels.cast(pl.String) == x)["sortino"].to_numpy()
            assert m == pytest.approx(np.median(values), rel=1e-12) and b == values.max()


def test_fewer_parameters_give_a_line_or_no_chart() -> None:
    market = market_slice(synthetic_market(), "2012-01-03", "2013-12-31")
    one = run_sweep(make_spec(TQQQ, {"c1.window": [6, 10, 14], "c2.threshold": [25]}), market=market)
    assert list(figures(one, by="cagr")) == ["marginals", "spread"]  # no heatmap over one parameter
    line = figures(one, by="cagr")["marginals"]
    assert [t.name for t in line.data] == ["median", "best"] and list(line.data[0].x) == ["6", "10", "14"]
    assert line.data[0].y[1] == pytest.approx(100 * one.table["cagr"][1])
    single = run_sweep(make_spec(TQQQ, {"c1.window": [10]}), market=market)
    assert list(figures(single)) == ["spread"]


def test_report_is_one_self_contained_page(result: SweepResult) -> None:
    curves = result.curves(2)
    text = render_sweep_html(result, by="sortino", top=4, curves=curves, title="sweep <x>")
    assert text.startswith("<!DOCTYPE html>") and "sweep &lt;x&gt;" in text
    assert not REMOTE.search(text)
    assert text.count("<script") >= 3 and text.count("plotly.js v") <= 2  # one inlined bundle
    for name in ("heatmap", "marginals", "spread", "curves"):
        assert f'id="fig-{name}"' in text
    assert "Best 4 by Sortino (highest first)" in text
    top_rows = re.search(r'<table class="top">(.*?)</table>', text, re.S).group(1)
    assert top_rows.count("<tr>") == 5  # a header and four variants
    spread = figures(result, by="sortino")["spread"].data[0]
    assert int(sum(spread.y)) == result.table["sortino"].is_not_null().sum()
    assert "UVXY" in top_rows or "TLT,GLD" in top_rows
    with pytest.raises(GpubtError, match="unknown metric"):
        render_sweep_html(result, by="startDate")


def test_result_writes_its_report(result: SweepResult, tmp_path: Path) -> None:
    path = result.report(tmp_path / "r.html", by="calmar", top=3, axes=("c2.threshold", "c1.window"), curves=True)
    text = path.read_text()
    assert 'id="fig-curves"' in text and "Calmar over c2.threshold × c1.window" in text
    assert "Best 3 by Calmar" in text


def test_cli_writes_table_curves_and_report(tmp_path: Path) -> None:
    out, report = tmp_path / "res.parquet", tmp_path / "sweep.html"
    assert main(["sweep", str(SPEC), "--out", str(out), "--top", "3", "--curves", "--report", str(report),
                 "--by", "calmar", "--heatmap", "c1.threshold,c2.threshold"]) == 0
    table = pl.read_parquet(out)
    curves = pl.read_parquet(tmp_path / "res.curves.parquet")
    best = table.sort("calmar", descending=True, nulls_last=True).head(3)["variant"].to_list()
    assert curves["variant"].unique(maintain_order=True).to_list() == best
    text = report.read_text()
    assert 'id="fig-curves"' in text and "Calmar over c1.threshold × c2.threshold" in text


@pytest.mark.parametrize("flags, message", [
    (["--out", "{tmp}/res.parquet", "--by", "sharp"], "is not a metric"),
    (["--out", "{tmp}/res.parquet", "--heatmap", "c1.window"], "two different parameters"),
    (["--out", "{tmp}/res.parquet", "--heatmap", "c1.window,c1.window"], "two different parameters"),
    (["--curves"], "--curves needs"),  # nowhere to put them
    (["--out", "{tmp}/res.parquet", "--curves", "--top", "0"], "--curves needs"),
    (["--out", "{tmp}/res.parquet", "--report", "{tmp}/missing/r.html"], "folder does not exist"),
])
def test_cli_refuses_bad_output_flags_before_running(tmp_path: Path, capsys: Any, flags: list[str],
                                                     message: str) -> None:
    assert main(["sweep", str(SPEC), *(f.replace("{tmp}", str(tmp_path)) for f in flags)]) == 2
    assert message in " ".join(capsys.readouterr().err.split())
    assert list(tmp_path.iterdir()) == []  # nothing ran, nothing written
