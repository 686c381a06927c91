"""Cold start of `gpubt run`: what a user waits for when the command runs in a fresh process.

Each measurement is a fresh interpreter: `import gpubt.cli` alone; `gpubt run` on an example with
Numba's on-disk kernel cache warm (the usual case after the first run) per backend; and once with
an empty cache directory (`NUMBA_CACHE_DIR`), the first run after installing, which compiles every
kernel it touches, then again on that same directory (the cache at work). The CLI's own
"load · backtest" figures split the run into the market (the built-in market is synthesised) and
the backtest (with the first call's kernel loading).

    python benchmarks/bench_cold_start.py [--runs 5] [--example examples/tqqq_rsi.json] [--no-record]
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.common import record  # noqa: E402

STAGES = re.compile(r"load (\d+) ms · backtest (\d+) ms")


def timed(args: list[str], env: dict[str, str] | None = None) -> tuple[float, str]:
    """(wall seconds, stdout) of one fresh process."""
    t0 = time.perf_counter()
    done = subprocess.run(args, cwd=ROOT, env={**os.environ, **(env or {})}, capture_output=True, text=True,
                          check=False)
    elapsed = time.perf_counter() - t0
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed:\n{done.stdout[-2000:]}{done.stderr[-4000:]}")
    return elapsed, done.stdout


def run_command(example: str, backend: str, out: Path) -> list[str]:
    return [sys.executable, "-m", "gpubt.cli", "run", example, "--backend", backend, "--out", str(out)]


def stages(stdout: str) -> tuple[int, int] | None:
    found = STAGES.search(" ".join(stdout.split()))
    return (int(found.group(1)), int(found.group(2))) if found else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--example", default="examples/tqqq_rsi.json")
    parser.add_argument("--no-record", action="store_true")
    args = parser.parse_args()

    rows: list[list[str]] = []
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "result.json"
        imports = [timed([sys.executable, "-c", "import gpubt.cli"])[0] for _ in range(args.runs)]
        rows.append(["`import gpubt.cli`", "-", "warm", f"{statistics.median(imports):.2f}",
                     f"{min(imports):.2f}–{max(imports):.2f}", "-", "-"])
        for backend in ("numba", "polars"):
            timed(run_command(args.example, backend, out))  # the cache holds this backend's kernels
            runs = [timed(run_command(args.example, backend, out)) for _ in range(args.runs)]
            walls = [w for w, _ in runs]
            split = [s for _, text in runs if (s := stages(text)) is not None]
            load = statistics.median(s[0] for s in split) if split else float("nan")
            backtest = statistics.median(s[1] for s in split) if split else float("nan")
            rows.append([f"`gpubt run {Path(args.example).name}`", backend, "warm", f"{statistics.median(walls):.2f}",
                         f"{min(walls):.2f}–{max(walls):.2f}", f"{load:.0f}", f"{backtest:.0f}"])
        cache = Path(tmp) / "numba-cache"
        for label in ("empty (first run)", "the one just filled"):
            wall, text = timed(run_command(args.example, "numba", out), {"NUMBA_CACHE_DIR": str(cache)})
            load, backtest = stages(text) or (float("nan"), float("nan"))
            rows.append([f"`gpubt run {Path(args.example).name}`", "numba", label, f"{wall:.2f}", "1 run",
                         f"{load:.0f}", f"{backtest:.0f}"])
    header = ["command", "backend", "Numba cache", "wall s (median)", "range s", "market load ms",
              "backtest ms"]
    notes = (f"fresh process per measurement, {args.runs} runs each (the empty-cache rows: one); the "
             "market is the built-in synthetic one (no --data); 'backtest' includes loading (or "
             "compiling) the Numba kernels it calls")
    if args.no_record:
        for row in [header, *rows]:
            print(" | ".join(row))
        return
    record("Cold start of `gpubt run` (bench_cold_start.py)", header, rows, notes, ("numpy", "polars", "numba"))


if __name__ == "__main__":
    main()
