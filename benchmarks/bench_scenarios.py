"""The seed's scenarios: 10, 100 and 1,000 indicators (× 10 conditions) and 10,000 conditions,
end to end (parse → compile → signals → allocations → simulation → response) on the built-in
market, per backend. V1 (the Rust tree walker) needed 75 ms, 550 ms, 65 s and ~10 min.

    python benchmarks/bench_scenarios.py [--backends polars,reference] [--runs 5]
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import median_time, record  # noqa: E402
from gpubt.data.synthetic import synthetic_market  # noqa: E402
from gpubt.engine import run_backtest  # noqa: E402
from gpubt.schema.parse import parse_request  # noqa: E402

TICKERS = ("SPY", "QQQ", "IWM", "TLT", "GLD", "EFA", "EEM", "IEF", "DBC", "VNQ")
METRICS = (
    ("Relative Strength Index", 30.0, 70.0),
    ("Price vs SMA", -5.0, 5.0),
    ("Rate of Change", -8.0, 8.0),
    ("Standard Deviation of Return", 0.5, 2.0),
    ("Exponential Moving Average", None, None),
)


def scenario(n_indicators: int, conditions_each: int) -> dict:
    """A basic root over groups of indicator nodes; node i tests indicator i with
    `conditions_each` thresholds (if/and/or lines), so there are n × k conditions."""
    combos = itertools.product(range(2, 400), METRICS, TICKERS)
    nodes = []
    for i, (window, (metric, lo, hi), ticker) in zip(range(n_indicators), combos):
        lines = []
        for k in range(conditions_each):
            line = {"id": f"c{i}-{k}", "type": ("if", "and", "or")[k % 3], "metric": metric,
                    "window": window, "ticker": ticker, "comparator": "gt" if k % 2 else "lt"}
            if lo is None:  # EMA: compare with the price (ticker-vs-ticker)
                line.update(metric="Current Price", expanded=True, rightMetric=metric, rightWindow=window)
            else:
                line["threshold"] = lo + (hi - lo) * k / max(1, conditions_each - 1)
            lines.append(line)
        nodes.append({"id": f"n{i}", "kind": "indicator", "conditions": lines, "children": {
            "then": [{"id": f"n{i}-t", "kind": "position", "positions": [ticker]}],
            "else": [{"id": f"n{i}-e", "kind": "position", "positions": ["SHY"]}]}})
    groups = [{"id": f"g{g}", "kind": "basic", "children": {"next": nodes[g : g + 50]}}
              for g in range(0, len(nodes), 50)]
    return {"payload": {"id": "root", "kind": "basic", "children": {"next": groups}}}


SCENARIOS = {
    "10 indicators": (10, 1),
    "100 indicators": (100, 1),
    "1,000 indicators × 10 conditions": (1000, 10),
    "10,000 conditions (2,000 × 5)": (2000, 5),
}
V1 = {"10 indicators": "75 ms", "100 indicators": "550 ms",
      "1,000 indicators × 10 conditions": "65 s", "10,000 conditions (2,000 × 5)": "~10 min"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--backends", default="polars")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--reference-max", type=int, default=100,
                        help="run the reference only on scenarios with at most this many indicators")
    args = parser.parse_args()
    market = synthetic_market()
    rows = []
    for name, (n, k) in SCENARIOS.items():
        body = json.dumps(scenario(n, k))
        for backend in args.backends.split(","):
            if backend == "reference" and n > args.reference_max:
                continue
            runs = 1 if backend == "reference" else args.runs
            median, times = median_time(
                lambda: run_backtest(parse_request(body), market, backend), runs=runs,
                warmup=0 if backend == "reference" else 1)
            rows.append([name, backend, f"{n * k:,}", f"{1000 * median:,.0f} ms",
                         f"{1000 * min(times):,.0f}–{1000 * max(times):,.0f} ms", V1[name]])
            print(rows[-1], flush=True)
    record(
        "Seed scenarios, end to end",
        ["scenario", "backend", "conditions", "median", "range", "V1 (seed)"],
        rows,
        f"built-in synthetic market ({market.n_days} days); median of {args.runs} warm runs "
        "(reference: 1 run); includes parsing, compiling, signals, allocations, simulation and the "
        "full JSON response",
        ("polars", "numpy", "numba"),
    )


if __name__ == "__main__":
    main()
