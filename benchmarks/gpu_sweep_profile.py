"""Where a GPU sweep of the issue's template spends its time, in one process on a lent device.

Prints, for the template's grid (``--grid full``: 65,536 variants; ``huge``: 1,048,576; ``tiny``
for a smoke run in the CUDA simulator):

- warm sweeps (`run_sweep`, backend auto, prepared afresh each time): median, min and max wall
  time and each phase of `gpubt.sweep.run.PHASES` for the first three;
- the upload (`DeviceTemplate`: the packed tables and the device views);
- the kernel alone (`DeviceTemplate.run`, synchronised) for each block size of ``--threads``,
  in a round trip (each size twice) so drift shows;
- copies back of the (metrics × variants) table into a fresh array, a touched one and
  page-locked memory.

``--launch`` only launches the kernel twice (for `ncu --launch-skip 1 --launch-count 1`).
Session 21 ran an ad hoc version of this (benchmarks/RESULTS.md, "GPU session on a lent H100").

    python benchmarks/gpu_sweep_profile.py [--grid full|huge|tiny] [--sweeps 8] [--threads 64,128,256]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_sweep as bench  # noqa: E402


def median_ms(seconds: list[float]) -> str:
    ordered = sorted(seconds)
    return f"median {1e3 * ordered[len(ordered) // 2]:.2f} ms (min {1e3 * ordered[0]:.2f}, max {1e3 * ordered[-1]:.2f})"


def clock(fn, runs: int = 7) -> list[float]:  # type: ignore[no-untyped-def]
    from numba import cuda

    times = []
    for _ in range(runs):
        cuda.synchronize()
        began = time.perf_counter()
        fn()
        cuda.synchronize()
        times.append(time.perf_counter() - began)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--grid", default="full", choices=("full", "huge", "tiny"))
    parser.add_argument("--sweeps", type=int, default=8)
    parser.add_argument("--threads", default="64,128,256")
    parser.add_argument("--launch", action="store_true")
    args = parser.parse_args()

    import numpy as np
    from numba import cuda

    from gpubt.backends import get_backend
    from gpubt.metrics.core import N_KEYS
    from gpubt.sweep import device, make_spec, run_sweep
    from gpubt.sweep import run as runner
    from gpubt.sweep.fused import prepare

    market = bench.market()
    spec = make_spec(bench.template(), bench.parameters(args.grid))
    n = spec.n_variants
    template = prepare(spec, market, get_backend("numba"))
    memory = 2**30 if args.grid == "tiny" else None  # the CUDA simulator reports no free memory
    if args.launch:
        on_device = device.DeviceTemplate(template, memory)
        for _ in range(2):
            on_device.run(0, n)
        cuda.synchronize()
        print("launched twice:", {k: round(v * 1e3, 2) for k, v in on_device.seconds.items()}, "ms")
        return

    print(f"{args.grid}: {n:,} variants, {template.gross.shape[1]:,} days")
    if args.grid != "tiny":  # a sweep on the device needs CuPy and CUDA (auto)
        run_sweep(spec, market=market, backend="auto")
        walls = []
        for k in range(args.sweeps):
            runner._TEMPLATES.clear()
            runner.PHASES.clear()
            began = time.perf_counter()
            run_sweep(spec, market=market, backend="auto")
            walls.append(time.perf_counter() - began)
            if k < 3:
                print(f"  sweep {1e3 * walls[-1]:.1f} ms:", {p: round(v * 1e3, 2) for p, v in runner.PHASES.items()})
        rate = n / sorted(walls)[len(walls) // 2]
        print(f"warm sweeps: {median_ms(walls)} -> {rate:,.0f} strategies/s")

    print("upload (DeviceTemplate):", median_ms(clock(lambda: device.DeviceTemplate(template, memory))))
    on_device = device.DeviceTemplate(template, memory)
    on_device.run(0, n)  # compiles
    sizes = [int(t) for t in args.threads.split(",")]
    kept = device.THREADS
    for threads in sizes + sizes[::-1]:
        device.THREADS = threads
        print(f"kernel alone, blocks of {threads}:", median_ms(clock(lambda: on_device.run(0, n), 5)))
    device.THREADS = kept

    values = cuda.device_array((N_KEYS, n))
    pinned = cuda.pinned_array((N_KEYS, n))
    touched = np.ones((N_KEYS, n))
    print(f"copy back ({N_KEYS * n * 8 / 2**20:.1f} MiB): fresh array",
          median_ms(clock(lambda: values.copy_to_host(np.empty((N_KEYS, n))))),
          "| touched", median_ms(clock(lambda: values.copy_to_host(touched))),
          "| page-locked", median_ms(clock(lambda: values.copy_to_host(pinned))))


if __name__ == "__main__":
    main()
