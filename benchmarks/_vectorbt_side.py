"""The vectorbt half of `bench_vectorbt.py`; run by that script with the python of its own venv
(vectorbt is not a gpubt dependency), never imported by gpubt.

    <venv>/bin/python benchmarks/_vectorbt_side.py WORKDIR

Reads WORKDIR/task.json and WORKDIR/close.npy (the closes the gpubt side simulated, written by
it from `load_market`), runs the SMA crossover grid as vectorbt users do (one `MA.run` per side
of the grid, `ma_above` for the state, `Portfolio.from_signals` at the close), and writes
WORKDIR/vectorbt.json plus WORKDIR/vectorbt_total_zero.npy (zero costs, the equality check) and
WORKDIR/vectorbt_total_cost.npy (the timed runs' costs), each total return in grid order (fast
window outer, slow window inner, like the sweep's grid). Only numpy, pandas, vectorbt and the
standard library (benchmarks/common.py) are imported here.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.common import median_time  # noqa: E402  (stdlib only)


def peak_rss_mib() -> float:
    """VmHWM of this process in MiB (ru_maxrss would carry the parent's peak across exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _engine() -> str:
    """vectorbt 1.2 runs on Rust kernels when `vectorbt-rust` is installed, else on Numba."""
    try:
        from vectorbt._engine import is_rust_available
    except ImportError:
        return "numba"
    return "rust" if is_rust_available() else "numba"


def main() -> None:
    work = Path(sys.argv[1])
    task = json.loads((work / "task.json").read_text())
    t_import = time.perf_counter()
    import numba
    import numpy as np
    import pandas as pd
    import vectorbt as vbt

    import_s = time.perf_counter() - t_import
    close_all = np.load(work / "close.npy")
    dates = pd.to_datetime(np.load(work / "dates.npy"))
    close = pd.Series(close_all, index=dates, name=task["ticker"])
    start = task["start"]  # first decision day (index into the full history)
    fast = np.asarray(task["fast"])
    slow = np.asarray(task["slow"])
    # the grid in the sweep's order: fast outer, slow inner (the last parameter varies fastest)
    fast_w = np.repeat(fast, slow.size)
    slow_w = np.tile(slow, fast.size)
    # gpubt charges costBps/10,000 x turnover, turnover = 1/2 sum|dw| = 0.5 for a cash <-> SPY
    # switch; vectorbt charges `fees` x traded value: the same charge per switch is half of it.
    fee_cost = task["cost_bps"] / 10_000.0 / 2.0
    held: dict[str, object] = {}

    def run(fees: float):
        # Indicators over the whole history (gpubt's indicators see the days before startDate
        # too), run_unique: 100 distinct windows per side computed once each, then tiled.
        fast_ma = vbt.MA.run(close, fast_w, short_name="fast", run_unique=True)
        slow_ma = vbt.MA.run(close, slow_w, short_name="slow", run_unique=True)
        state = fast_ma.ma_above(slow_ma).iloc[start:]  # long iff SMA(fast) > SMA(slow), decided at t
        entries = state.copy()
        exits = ~state
        # gpubt never trades on the last day (its period would end after the data): neither here
        entries.iloc[-1] = False
        exits.iloc[-1] = False
        pf = vbt.Portfolio.from_signals(close.iloc[start:], entries=entries, exits=exits,
                                        fees=fees, init_cash=1.0, freq="1D")
        total = pf.total_return().to_numpy()
        held["state"] = state
        held["total"] = total
        return total

    rss_setup = peak_rss_mib()
    # The equality check at zero costs; it also warms the JIT (untimed).
    t0 = time.perf_counter()
    total_zero = run(0.0).copy()
    first_s = time.perf_counter() - t0
    median_s, times = median_time(lambda: run(fee_cost), runs=task["runs"], warmup=1)
    peak = peak_rss_mib()
    total_cost = held["total"]
    np.save(work / "vectorbt_total_zero.npy", total_zero)
    np.save(work / "vectorbt_total_cost.npy", total_cost)

    # Not part of the measurement: spec §6 applied by hand to vectorbt's own signals, to check
    # gpubt's costs exactly (vectorbt's fee model is not the same formula, see the script).
    state = held["state"].to_numpy()
    c = close_all[start:]
    r = c[1:] / c[:-1] - 1.0
    spec_cost = np.empty(state.shape[1])
    for lo in range(0, state.shape[1], 500):
        w = state[:, lo:lo + 500].astype(np.float64)[:-1]  # decisions start .. T-2 are credited
        turnover = 0.5 * np.abs(np.diff(w, axis=0, prepend=0.0))
        net = w * r[:, None] - turnover * (task["cost_bps"] / 10_000.0)
        spec_cost[lo:lo + 500] = np.prod(1.0 + net, axis=0) - 1.0
    np.save(work / "spec_total_cost.npy", spec_cost)
    (work / "vectorbt.json").write_text(json.dumps({
        "median_s": median_s, "times": times, "first_s": first_s, "import_s": import_s,
        "peak_mib": peak, "setup_mib": rss_setup, "fees": fee_cost, "variants": int(fast_w.size),
        "days": int(len(c) - 1),
        "versions": {"vectorbt": vbt.__version__, "numba": numba.__version__, "numpy": np.__version__,
                     "pandas": pd.__version__, "python": sys.version.split()[0]},
        "engine": _engine(),
    }))


if __name__ == "__main__":
    main()
