"""The command line as a user runs it: real subprocesses, real files."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import polars as pl

ROOT = Path(__file__).resolve().parents[1]


def gpubt(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "gpubt.cli", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)


def test_run_prints_metrics_and_writes_json(tmp_path):
    out = tmp_path / "result.json"
    done = gpubt("run", "examples/tqqq_rsi.json", "--out", str(out), "--cost-bps", "10")
    assert done.returncode == 0, done.stderr
    assert "Sharpe" in done.stdout and "CAGR" in done.stdout
    result = json.loads(out.read_text())
    assert result["metrics"]["days"] == len(result["days"]) > 3000
    assert result["days"][0]["cost"] > 0  # the first day buys from cash at 10 bps


def test_synth_then_check_an_empty_folder_then_run_on_it(tmp_path):
    folder = tmp_path / "market"
    folder.mkdir()
    made = gpubt("data", "synth", "--out", str(folder))
    assert made.returncode == 0, made.stderr
    assert (folder / "SPY.parquet").exists() and (folder / "TQQQ.parquet").exists()
    checked = gpubt("data", "check", str(folder))
    assert checked.returncode == 0, checked.stderr
    assert "SPY" in checked.stdout and "all valid" in checked.stdout
    assert pl.read_parquet(folder / "SPY.parquet").columns[0] == "date"
    from_files, builtin = tmp_path / "files.json", tmp_path / "builtin.json"
    assert gpubt("run", "examples/tqqq_rsi.json", "--data", str(folder), "--out", str(from_files)).returncode == 0
    assert gpubt("run", "examples/tqqq_rsi.json", "--out", str(builtin)).returncode == 0
    # the files hold the built-in market, so the results are the same
    assert json.loads(from_files.read_text())["metrics"] == json.loads(builtin.read_text())["metrics"]


def test_bad_strategy_exits_2_naming_the_path(tmp_path):
    tree = json.loads((ROOT / "examples/tqqq_rsi.json").read_text())
    tree["payload"]["children"]["then"][0]["conditions"][0]["window"] = -1
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(tree))
    done = gpubt("run", str(bad))
    assert done.returncode == 2
    assert "payload.children.then[0].conditions[0].window" in done.stderr


def test_unknown_ticker_in_a_data_folder(tmp_path):
    done = gpubt("run", "examples/tqqq_rsi.json", "--data", str(tmp_path))
    assert done.returncode == 2
    assert "TQQQ" in done.stderr


def test_explain_counts_the_graph():
    done = gpubt("explain", "examples/momentum_rotation.json")
    assert done.returncode == 0, done.stderr
    assert "indicators" in done.stdout and "duplicates" in done.stdout


def test_info_lists_backends_and_the_auto_pick():
    done = gpubt("info")
    assert done.returncode == 0, done.stderr
    assert "backend numba" in done.stdout and "backend auto" in done.stdout
    assert "CUDA device" in done.stdout
    from gpubt.backends import gpu_sweeps

    assert ("GPU kernel" if gpu_sweeps("auto") else "CPU kernel (Numba") in done.stdout
    import numba

    threads = next(line for line in done.stdout.splitlines() if "numba threads" in line)
    assert f" {numba.get_num_threads()} (" in threads and "layer" in threads


def test_auto_picks_a_usable_backend():
    from gpubt.backends import pick

    chosen, reason = pick("auto")
    assert chosen in ("numba", "polars") and reason
