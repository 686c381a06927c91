"""Shared benchmark plumbing: timing medians and appending a table to RESULTS.md."""

from __future__ import annotations

import datetime as dt
import os
import platform
import shutil
import statistics
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

RESULTS = Path(__file__).with_name("RESULTS.md")


def median_time(fn: Callable[[], object], runs: int = 5, warmup: int = 1) -> tuple[float, list[float]]:
    """Median wall time of `runs` calls after `warmup` untimed calls (JIT, caches)."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), times


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores, {platform.system()} {platform.release()}{gpu_name()}"


def gpu_name() -> str:
    """", GPU: <name>, driver <version>" where nvidia-smi answers, else ""."""
    if shutil.which("nvidia-smi") is None:
        return ""
    done = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version", "--format=csv,noheader"],
                          capture_output=True, text=True, check=False)
    first = done.stdout.strip().splitlines()[:1]
    return f", GPU: {first[0].replace(', ', ', driver ')}" if done.returncode == 0 and first else ""


def code() -> str:
    """The commit the numbers were measured on, "+ uncommitted changes" when the code differs
    from it (RESULTS.md aside; a device copy of the working tree has no git: "not a git
    checkout")."""
    root = Path(__file__).resolve().parents[1]
    head = subprocess.run(["git", "-C", str(root), "rev-parse", "--short", "HEAD"],
                          capture_output=True, text=True, check=False)
    if head.returncode != 0:
        return "not a git checkout"
    dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no",
                            "--", ".", ":!benchmarks/RESULTS.md"],
                           capture_output=True, text=True, check=False).stdout.strip()
    return f"commit {head.stdout.strip()}" + (" + uncommitted changes" if dirty else "")


def versions(*modules: str) -> str:
    out = [f"python {platform.python_version()}"]
    for name in modules:
        try:
            module = __import__(name)
            out.append(f"{name} {module.__version__}")
        except ImportError:
            out.append(f"{name} absent")
    return ", ".join(out)


def record(
    title: str,
    header: list[str],
    rows: list[list[str]],
    notes: str,
    modules: tuple[str, ...],
    after: str = "",
) -> str:
    """Print a markdown table and append it, with machine, versions and date, to RESULTS.md;
    `after`, when given, is a paragraph (markdown) placed under the table."""
    lines = [
        f"## {title}",
        "",
        f"- date: {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC",
        f"- machine: {machine()}",
        f"- code: {code()}",
        f"- versions: {versions(*modules)}",
        f"- {notes}",
        "",
        "| " + " | ".join(header) + " |",
        "| " + " | ".join("---" for _ in header) + " |",
        *("| " + " | ".join(row) + " |" for row in rows),
        "",
        *([after, ""] if after else []),
    ]
    text = "\n".join(lines)
    print(text)
    with RESULTS.open("a") as fh:
        fh.write(text + "\n")
    return text
