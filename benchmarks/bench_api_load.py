"""Load test of the HTTP API: `gpubt serve` in a subprocess on loopback, N concurrent asyncio
httpx clients posting a random mix of the examples for a fixed time.

Reports requests/s, p50/p99 latency, errors (target 0) and the server's RSS after warm-up and at
the end (target: growth < 10 %), prints a markdown table and appends it to RESULTS.md.

    python benchmarks/bench_api_load.py [--duration 30] [--clients 32] [--workers 1]
                                        [--backend NAME] [--start-date 2024-01-02]

Clients stop sending at the deadline; requests still in flight are awaited (up to --grace s) and
counted, and requests/s is completed requests over the time until the last one finished.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx  # noqa: E402

from benchmarks.common import record  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((ROOT / "examples").glob("*.json"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rss_bytes(pid: int) -> int:
    """RSS of a process and all its descendants (uvicorn workers are children)."""
    try:
        import psutil

        proc = psutil.Process(pid)
        return sum(p.memory_info().rss for p in [proc, *proc.children(recursive=True)])
    except ImportError:
        pass
    total, stack = 0, [pid]
    while stack:
        p = stack.pop()
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
            for task in Path(f"/proc/{p}/task").iterdir():
                children = (task / "children").read_text().split()
                stack.extend(int(c) for c in children)
        except (OSError, ValueError):
            continue
    return total


def _bodies(start_date: str | None) -> list[tuple[str, bytes]]:
    """Each example twice: payload double-encoded (as V1's front end sends it) and as an object."""
    out = []
    for path in EXAMPLES:
        body = json.loads(path.read_text())
        if start_date:
            body["startDate"] = start_date
        out.append((f"{path.stem}/object", json.dumps(body).encode()))
        body["payload"] = json.dumps(body["payload"])
        out.append((f"{path.stem}/string", json.dumps(body).encode()))
    return out


async def _client(
    client: httpx.AsyncClient, bodies: list, deadline: float, rng: random.Random,
    latencies: list[float], errors: list[str], done: list[float],
) -> None:
    while time.perf_counter() < deadline:
        name, body = rng.choice(bodies)
        t0 = time.perf_counter()
        try:
            r = await client.post("/api/backtest", content=body)
            await r.aread()
            if r.status_code != 200:
                errors.append(f"{name}: HTTP {r.status_code} {r.text[:120]}")
        except httpx.HTTPError as exc:
            errors.append(f"{name}: {type(exc).__name__} {exc}")
        t1 = time.perf_counter()
        latencies.append(t1 - t0)
        done.append(t1)


async def _load(url: str, bodies: list, clients: int, duration: float, grace: float, seed: int):
    latencies: list[float] = []
    errors: list[str] = []
    done: list[float] = []
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, timeout=duration + grace, limits=limits) as client:
        t0 = time.perf_counter()
        deadline = t0 + duration
        tasks = [
            asyncio.create_task(
                _client(client, bodies, deadline, random.Random(seed + i), latencies, errors, done)
            )
            for i in range(clients)
        ]
        _, pending = await asyncio.wait(tasks, timeout=duration + grace)
        for task in pending:
            task.cancel()
        if pending:
            errors.append(f"{len(pending)} clients still waiting after the {grace:g} s grace period")
        elapsed = (max(done) if done else time.perf_counter()) - t0
    return latencies, errors, elapsed


async def _warm_up(url: str, bodies: list, burst: int) -> None:
    """One request per example, then `burst` concurrent ones: the server's caches, imports and
    allocator reach their working size before the start RSS is read."""
    async with httpx.AsyncClient(base_url=url, timeout=600) as client:
        for _, body in bodies[::2]:
            (await client.post("/api/backtest", content=body)).raise_for_status()
        answers = await asyncio.gather(
            *(client.post("/api/backtest", content=bodies[i % len(bodies)][1]) for i in range(burst))
        )
        for answer in answers:
            answer.raise_for_status()


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=30.0, help="seconds of load")
    parser.add_argument("--clients", type=int, default=32, help="concurrent clients")
    parser.add_argument("--workers", type=int, default=1, help="server worker processes")
    parser.add_argument("--backend", help="server backend (default: the engine's default)")
    parser.add_argument("--threads", type=int, help="server backtest threads per worker (default: its own)")
    parser.add_argument("--start-date", dest="start_date", help="set startDate on every example")
    parser.add_argument("--grace", type=float, default=300.0, help="seconds to await in-flight requests")
    parser.add_argument("--warmup", type=int, default=8, help="concurrent requests before the start RSS")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--no-record", action="store_true", help="print only, do not append to RESULTS.md")
    args = parser.parse_args(argv)

    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    cmd = [sys.executable, "-m", "gpubt.cli", "serve", "--host", "127.0.0.1", "--port", str(port),
           "--workers", str(args.workers), "--timeout", str(args.duration + args.grace),
           "--log-level", "warning"]
    if args.backend:
        cmd += ["--backend", args.backend]
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    log_path = Path(os.environ.get("TMPDIR", "/tmp")) / f"gpubt-bench-api-{port}.log"
    with log_path.open("w") as log:
        server = subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    try:
        health = None
        t_start = time.perf_counter()
        while time.perf_counter() - t_start < 120:
            if server.poll() is not None:
                raise SystemExit(f"server exited with {server.returncode}; see {log_path}")
            try:
                health = httpx.get(f"{url}/health", timeout=1).json()
                break
            except httpx.HTTPError:
                time.sleep(0.1)
        if health is None:
            raise SystemExit(f"server did not start; see {log_path}")
        bodies = _bodies(args.start_date)
        asyncio.run(_warm_up(url, bodies, args.warmup))
        rss_start = _rss_bytes(server.pid)
        latencies, errors, elapsed = asyncio.run(
            _load(url, bodies, args.clients, args.duration, args.grace, args.seed)
        )
        time.sleep(0.5)
        rss_end = _rss_bytes(server.pid)
        alive = httpx.get(f"{url}/health", timeout=10).status_code == 200
    finally:
        server.terminate()
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()

    n = len(latencies)
    growth = (rss_end / rss_start - 1.0) if rss_start else float("nan")
    rows = [[
        health["backend"], str(args.workers), str(args.threads or "default"), str(args.clients), f"{args.duration:g}",
        args.start_date or "full history", str(n), f"{n / elapsed:.2f}",
        f"{1000 * _pct(latencies, 0.5):,.0f}", f"{1000 * _pct(latencies, 0.99):,.0f}",
        f"{1000 * statistics.fmean(latencies):,.0f}" if latencies else "—",
        str(len(errors)), f"{rss_start / 2**20:,.0f}", f"{rss_end / 2**20:,.0f}", f"{100 * growth:+.1f}%",
        "yes" if alive else "NO",
    ]]
    header = ["backend", "workers", "threads", "clients", "duration s", "period", "requests", "req/s",
              "p50 ms", "p99 ms", "mean ms", "errors", "RSS start MiB", "RSS end MiB", "RSS growth",
              "healthy after"]
    notes = ("POST /api/backtest over loopback, a random mix of the 5 examples (payload as a string "
             "and as an object), built-in market; RSS (server and its workers) after a warm-up "
             f"(one request per example, then {args.warmup} concurrent) and after the load; "
             f"{os.cpu_count()} CPUs shared by client and server")
    if args.no_record:
        print(" | ".join(header))
        print(" | ".join(rows[0]))
    else:
        record("API load (bench_api_load.py)", header, rows, notes, ("fastapi", "uvicorn", "httpx"))
    for line in errors[:10]:
        print("error:", line)
    return 0 if not errors else 1


if __name__ == "__main__":
    sys.exit(main())
