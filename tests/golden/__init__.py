"""Golden results: every example backtested by the reference interpreter on the built-in market.

Regenerate only on purpose, after a deliberate change of results: ``python -m tests.golden``.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "examples").glob("*.json"))
HERE = Path(__file__).resolve().parent

# What a golden file keeps: everything but `days`, which repeats allocations and the curves.
KEPT = ("equityCurve", "benchmarkCurve", "drawdownPoints", "allocations", "monthly", "markers",
        "warnings", "metrics")


def golden_path(example: Path) -> Path:
    return HERE / f"{example.stem}.json.gz"


def compute(example: Path) -> dict:
    from gpubt.engine import backtest

    result = backtest(example.read_text(), backend="reference")
    return {key: result[key] for key in KEPT}


def load(example: Path) -> dict:
    with gzip.open(golden_path(example), "rt") as fh:
        return json.load(fh)


def regenerate() -> None:
    for example in EXAMPLES:
        data = json.dumps(compute(example), allow_nan=False, sort_keys=True)
        with gzip.GzipFile(golden_path(example), "wb", mtime=0) as fh:
            fh.write(data.encode())
        print(f"wrote {golden_path(example).relative_to(ROOT)}")
