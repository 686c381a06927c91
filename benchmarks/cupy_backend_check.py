"""GPU check of the `cupy` backend: parity with `numba`, then numba vs cupy timings. Run on a CUDA box.

1. Parity, node by node: the CPU backend's primitive graph (every primitive, gaps, constants) and
   the indicator catalogue (48 metrics × windows 2/14/50/200 × SPY, TQQQ, QQQ/SPY, BIL, with two
   thresholds each) on the synthetic market: how many nodes are bit-equal, within 1e-12 relative,
   or worse (printed, and the exit status is 1 if any is worse or a NaN mask differs).
2. The benchmark scenarios of `benchmarks/bench_scenarios.py` (the same generated trees, whole
   synthetic market with `startDate`): each backtest's response on cupy against numba
   (`tests.test_parity.differences`), then 1 warm-up and `--runs` timed runs per backend; the table
   gives medians of the signal stage and of the whole backtest, and cupy's transfer time (upload
   + copy back, summed over the run's evaluate calls) apart.
3. `--kernels`: for the named scenarios, one more backtest on cupy with every launch
   synchronised and timed, printed per kernel (launches, device ms, threads): where the device
   time of the signal stage goes.

    python benchmarks/cupy_backend_check.py [--runs 5] [--scenarios 10x10,100x100,1000x1000,1000x10000,stress]
                                            [--kernels 1000x1000,stress]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.bench_scenarios import SCENARIOS, bench_market, build_tree  # noqa: E402
from gpubt.backends import get_backend  # noqa: E402
from gpubt.compiler.execute import run_compiled  # noqa: E402
from gpubt.ir.nodes import Node, topological  # noqa: E402
from gpubt.schema.parse import parse_request  # noqa: E402

LIBM = frozenset({"pow", "log", "exp"})


def compare(nodes: list[Node], market, branches: dict, label: str) -> int:
    """Nodes bit-equal / within 1e-12 / worse between cupy and numba; the number worse."""
    numba, cupy = get_backend("numba"), get_backend("cupy")
    cupy.evaluate(nodes[:1], market, branches)  # compile what the first node needs
    t0 = time.perf_counter()
    got = cupy.evaluate(nodes, market, branches)
    t_gpu = time.perf_counter() - t0
    t0 = time.perf_counter()
    want = numba.evaluate(nodes, market, branches)
    t_cpu = time.perf_counter() - t0
    equal = close = 0
    worse: list[str] = []
    for node in nodes:
        g, w = got[node], want[node]
        if g.dtype != w.dtype or g.shape != w.shape:
            worse.append(f"{node!r}: {g.dtype}{g.shape} != {w.dtype}{w.shape}")
        elif np.array_equal(g, w, equal_nan=True):
            equal += 1
        elif g.dtype != np.int8 and np.array_equal(np.isnan(g), np.isnan(w)) and np.allclose(
                g, w, rtol=1e-12, atol=1e-15, equal_nan=True):
            close += 1
            if not any(n.op in LIBM for n in topological([node])):
                print(f"  note: {node!r} differs by rounding without pow/log/exp")
        else:
            worse.append(f"{node!r}: max abs diff {np.nanmax(np.abs(g - w)) if g.dtype != np.int8 else 'int8'}")
    print(f"{label}: {len(nodes)} nodes, {equal} bit-equal, {close} within 1e-12, {len(worse)} worse; "
          f"evaluate numba {1000 * t_cpu:.1f} ms, cupy {1000 * t_gpu:.1f} ms ({cupy.launches} launches)")
    for line in worse[:20]:
        print("  WORSE", line)
    return len(worse)


def parity() -> int:
    from tests.test_cupy_backend import _synthetic_graph
    from tests.test_numba_backend import _primitive_graph, _random_setup

    market, branches, _, _ = _random_setup()
    bad = compare(list(dict.fromkeys(n for ns in _primitive_graph().values() for n in ns)), market, branches,
                  "primitives (260 days)")
    market, nodes = _synthetic_graph()
    bad += compare(nodes, market, {}, f"catalogue ({market.n_days} days)")
    return bad


def scenarios(names: list[str], runs: int) -> int:
    from tests.test_parity import differences

    market, start_date = bench_market("startdate")
    start = int(np.searchsorted(market.dates, np.datetime64(start_date, "D")))
    rows = []
    bad = 0
    for name in names:
        body = build_tree(SCENARIOS[name], market, start_date, start, per_node=5)
        backends = {"numba": get_backend("numba"), "cupy": get_backend("cupy")}
        answers = {k: run_compiled(parse_request(body), market, be).to_dict() for k, be in backends.items()}  # warm-up
        diffs = differences(answers["numba"], answers["cupy"])
        bad += bool(diffs)
        result = {}
        for key, backend in backends.items():
            signals, totals, transfers, hosts = [], [], [], []
            for _ in range(runs):
                if key == "cupy":
                    backend.transfer = {"upload": 0.0, "download": 0.0}
                    backend.host = {"plan": 0.0, "launch": 0.0, "wait": 0.0}
                timings: dict[str, float] = {}
                t0 = time.perf_counter()
                run_compiled(parse_request(body), market, backend, timings)
                totals.append(time.perf_counter() - t0)
                signals.append(timings["signals"])
                if key == "cupy":
                    transfers.append(sum(backend.transfer.values()))
                    hosts.append(dict(backend.host, launches=backend.launches))
            result[key] = (statistics.median(signals), statistics.median(totals),
                           statistics.median(transfers) if transfers else 0.0,
                           {k: statistics.median(h[k] for h in hosts) for k in hosts[0]} if hosts else {})
        rows.append((SCENARIOS[name].label, result, "ok" if not diffs else f"{len(diffs)} diffs: {diffs[0]}"))
    from benchmarks.common import record

    header = ["scenario", "numba signals ms", "cupy signals ms", "cupy transfer ms", "cupy plan ms",
              "cupy launch ms", "cupy wait ms", "cupy launches", "numba total ms", "cupy total ms",
              "cupy vs numba (signals)", "cupy vs numba (total)", "parity"]
    table = [[label, f"{1000 * r['numba'][0]:.1f}", f"{1000 * r['cupy'][0]:.1f}", f"{1000 * r['cupy'][2]:.1f}",
              *(f"{1000 * r['cupy'][3][k]:.1f}" for k in ("plan", "launch", "wait")), f"{r['cupy'][3]['launches']:.0f}",
              f"{1000 * r['numba'][1]:.1f}", f"{1000 * r['cupy'][1]:.1f}", f"{r['numba'][0] / r['cupy'][0]:.2f}×",
              f"{r['numba'][1] / r['cupy'][1]:.2f}×", ok]
             for label, r, ok in rows]
    record("cupy backend vs numba (cupy_backend_check.py)", header, table,
           f"the scenarios of bench_scenarios.py (same trees, whole synthetic market, startDate), each backend "
           f"warm, median of {runs} whole backtests (`run_compiled`: compile, signals, allocation, simulation, "
           "response) in one process on one machine; cupy transfer = upload + copy back within its evaluate calls "
           "(in its signals time); cupy plan / launch / wait = host time planning the graph and packing its arrays, "
           "issuing the launches, and waiting for the device (`CupyBackend.host`); parity = the cupy response against numba's (tests.test_parity.differences)",
           ("numpy", "numba", "cupy", "polars"))
    return bad


def kernels(names: list[str]) -> None:
    """Per-kernel device time of one cupy backtest per scenario (launches synchronised)."""
    import collections

    import cupy

    from gpubt.backends import cupy_gpu

    market, start_date = bench_market("startdate")
    start = int(np.searchsorted(market.dates, np.datetime64(start_date, "D")))
    launch = cupy_gpu._launch
    stats: dict[str, list[float]] = collections.defaultdict(lambda: [0, 0.0, 0])

    def timed(name: str, threads: int, *args: object) -> None:
        cupy.cuda.Device().synchronize()
        t0 = time.perf_counter()
        launch(name, threads, *args)
        cupy.cuda.Device().synchronize()
        entry = stats[name]
        entry[0] += 1
        entry[1] += time.perf_counter() - t0
        entry[2] += threads

    cupy_gpu._launch = timed
    try:
        for name in names:
            body = build_tree(SCENARIOS[name], market, start_date, start, per_node=5)
            backend = get_backend("cupy")
            run_compiled(parse_request(body), market, backend)  # compiled and warm
            stats.clear()
            run_compiled(parse_request(body), market, backend)
            print(f"kernels, {SCENARIOS[name].label} (synchronised launches):")
            for kernel, (n, seconds, threads) in sorted(stats.items(), key=lambda kv: -kv[1][1]):
                print(f"  {kernel:26s} {n:4.0f} launches {1000 * seconds:9.2f} ms {threads:12,.0f} threads")
    finally:
        cupy_gpu._launch = launch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--scenarios", default=",".join(SCENARIOS))
    parser.add_argument("--skip-parity", action="store_true")
    parser.add_argument("--kernels", default="", help="scenarios to time kernel by kernel (after the table)")
    args = parser.parse_args()
    import cupy

    props = cupy.cuda.runtime.getDeviceProperties(0)
    print(f"device: {props['name'].decode()}, cupy {cupy.__version__}")
    bad = 0 if args.skip_parity else parity()
    bad += scenarios([s for s in args.scenarios.split(",") if s], args.runs)
    kernels([s for s in args.kernels.split(",") if s])
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
