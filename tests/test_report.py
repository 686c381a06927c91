"""The HTML report: figures built from a spec §7 response, one self-contained file."""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("plotly")

from gpubt import engine  # noqa: E402
from gpubt.cli import main  # noqa: E402
from gpubt.data.synthetic import synthetic_market  # noqa: E402
from gpubt.report import ROLLING_DAYS, figures, render_html, rolling_sharpe, write_report  # noqa: E402
from gpubt.schema.parse import parse_request  # noqa: E402

EXAMPLES = sorted((Path(__file__).resolve().parents[1] / "examples").glob("*.json"))
FIGURES = ("equity", "drawdown", "monthly", "rollingSharpe", "allocation")
REMOTE_SCRIPT = re.compile(r"<script[^>]*\bsrc\s*=\s*[\"']?\s*(https?:)?//", re.I)
ANY_SRC = re.compile(r"<(script|link|img)[^>]*\b(src|href)\s*=", re.I)


@pytest.fixture(scope="module")
def responses() -> dict[str, tuple[dict[str, Any], str]]:
    market = synthetic_market()
    out = {}
    for path in EXAMPLES:
        strategy = parse_request(path.read_bytes())
        out[path.stem] = (engine.run_backtest(strategy, market).to_dict(), strategy.request.benchmark)
    return out


@pytest.mark.parametrize("name", [p.stem for p in EXAMPLES])
def test_figures_match_the_response(responses: dict[str, Any], name: str) -> None:
    response, benchmark = responses[name]
    figs = figures(response, benchmark)
    assert list(figs) == list(FIGURES)

    equity = figs["equity"]
    assert [t.name for t in equity.data] == ["strategy", benchmark]
    assert equity.layout.yaxis.type == "log"
    for trace, curve in zip(equity.data, (response["equityCurve"], response["benchmarkCurve"]), strict=True):
        assert len(trace.x) == len(trace.y) == len(curve)
        assert trace.x[0] == curve[0]["date"] and trace.x[-1] == curve[-1]["date"]
        assert trace.y[-1] == pytest.approx(curve[-1]["equity"])

    (dd,) = figs["drawdown"].data
    points = response["drawdownPoints"]
    assert len(dd.x) == len(dd.y) == len(points)
    assert dd.x[0] == points[0]["date"] and dd.x[-1] == points[-1]["date"]
    assert np.nanmin(dd.y) == pytest.approx(100 * response["metrics"]["maxDrawdown"])

    (heat,) = figs["monthly"].data
    years = sorted({m["year"] for m in response["monthly"]})
    z = np.asarray(heat.z, dtype=float)
    assert z.shape == (len(years), 12)
    assert list(heat.y) == [str(y) for y in years]
    for m in response["monthly"]:
        assert z[years.index(m["year"]), m["month"] - 1] == pytest.approx(100 * m["value"])
    assert np.isfinite(z).sum() == len(response["monthly"])

    (sharpe,) = figs["rollingSharpe"].data
    days = response["days"]
    assert len(sharpe.x) == len(sharpe.y) == len(days)
    assert sharpe.x[0] == days[0]["date"] and sharpe.x[-1] == days[-1]["date"]
    y = np.asarray(sharpe.y, dtype=float)
    assert np.isnan(y[: ROLLING_DAYS - 1]).all()
    net = np.array([d["netReturn"] for d in days[-ROLLING_DAYS:]])
    assert y[-1] == pytest.approx(net.mean() / net.std(ddof=1) * math.sqrt(252))

    alloc = figs["allocation"].data
    held = {e["ticker"] for a in response["allocations"] for e in a["entries"]}
    assert {t.name for t in alloc} == held and len(alloc) == len(held)
    assert all(t.stackgroup == "allocation" and len(t.x) == len(response["allocations"]) for t in alloc)
    totals = np.sum([np.asarray(t.y) for t in alloc], axis=0)
    expected = [100 * sum(e["weight"] for e in a["entries"]) for a in response["allocations"]]
    np.testing.assert_allclose(totals, expected, atol=1e-9)


@pytest.mark.parametrize("name", [p.stem for p in EXAMPLES])
def test_html_is_self_contained(responses: dict[str, Any], name: str) -> None:
    response, benchmark = responses[name]
    text = render_html(response, title=f"{name} <report>", benchmark=benchmark)
    assert text.startswith("<!DOCTYPE html>")
    for fig in FIGURES:
        assert f'id="fig-{fig}"' in text
        assert re.search(rf'Plotly\.newPlot\(\s*"fig-{fig}"', text)
    assert text.count("Plotly.newPlot(") >= len(FIGURES)
    assert not REMOTE_SCRIPT.search(text)
    assert not ANY_SRC.search(text), "everything is inlined: no src/href to load"
    assert '"name":"strategy"' in text.replace(" ", "")
    assert "&lt;report&gt;" in text and "<report>" not in text
    assert "Total return" in text and "Sharpe" in text
    assert response["metrics"]["startDate"] in text


def test_warnings_are_listed_and_escaped(responses: dict[str, Any]) -> None:
    response, benchmark = responses["tqqq_rsi"]
    response = dict(response)
    response["warnings"] = [{"time": 0, "date": "2020-01-02", "message": "X had <no> price & earned 0"}]
    text = render_html(response, benchmark=benchmark)
    assert "X had &lt;no&gt; price &amp; earned 0" in text
    assert "No warnings." not in text
    assert "No warnings." in render_html(responses["tqqq_rsi"][0])


def test_rolling_sharpe() -> None:
    rng = np.random.default_rng(1)
    net = rng.normal(0.0005, 0.01, 300)
    out = rolling_sharpe(net)
    assert np.isnan(out[:125]).all() and np.isfinite(out[125:]).all()
    w = net[10 : 10 + 126]
    assert out[135] == pytest.approx(w.mean() / w.std(ddof=1) * math.sqrt(252))
    assert np.isnan(rolling_sharpe(np.zeros(200))).all()  # no variation: undefined
    assert np.isnan(rolling_sharpe(net[:50])).all()


def test_empty_parts_do_not_break(responses: dict[str, Any]) -> None:
    response, _ = responses["tqqq_rsi"]
    trimmed = {**response, "benchmarkCurve": [], "allocations": [], "monthly": [], "days": response["days"][:10]}
    figs = figures(trimmed)
    assert [t.name for t in figs["equity"].data] == ["strategy"]
    assert len(figs["allocation"].data) == 0
    assert "fig-monthly" in render_html(trimmed)


def test_cli_run_writes_the_report(tmp_path: Path) -> None:
    out = tmp_path / "report.html"
    strategy = Path(__file__).resolve().parents[1] / "examples" / "tqqq_rsi.json"
    assert main(["run", str(strategy), "--start", "2024-01-02", "--report", str(out)]) == 0
    text = out.read_text()
    assert 'id="fig-equity"' in text and "2024-01-02" in text
    assert not REMOTE_SCRIPT.search(text)
    written = write_report({"equityCurve": [], "days": [], "metrics": {}}, tmp_path / "empty.html")
    assert written.read_text().startswith("<!DOCTYPE html>")
