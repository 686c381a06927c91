"""gpubt's parameter sweep side by side with vectorbt: an SMA fast/slow crossover grid.

    python benchmarks/bench_vectorbt.py [--grid 100] [--runs 3] [--cost-bps 10] [--days 6000]
                                        [--ticker SPY] [--data DIR] [--venv DIR] [--no-record]

**The grid.** Long `--ticker` when SMA(fast) > SMA(slow), else cash, over the last `--days`
credited days of the ticker's real history in ../shared/data/etf (relative to the repository
root; SPY: 8,222 days, 1993-01-29 .. 2025-09-26, so 6,000 days leave 2,221 earlier days for
the indicators, which both sides compute over the whole history). `--grid N` gives N fast
windows 2 .. N+1 and N slow windows N+2, N+4, .. 3N (100: fast 2..101, slow 102..300 step 2):
the two ranges are disjoint, so the full N x N grid is run and every pair has fast < slow (no
degenerate fast = slow or inverted variants). In gpubt it is one sweep over one base request,
mode CC, costBps `--cost-bps`, startDate = the first decision day::

    indicator "root": if SMA(SPY, window) > SMA(SPY, rightWindow)   (condition "x", expanded)
        then position [SPY] else position [] (empty = cash)
    gpubt.sweep(request, {"x.window": fast, "x.rightWindow": slow}, market=..., backend="numba")

and in vectorbt (1.2, Numba engine, in its own venv) the usual one: `vbt.MA.run` on each side of
the grid (windows tiled to the N x N columns, `run_unique=True` so each distinct window is
computed once), `fast.ma_above(slow)` for the state, `Portfolio.from_signals` at the close.

**Timing convention (one bar).** gpubt decides A_t from data up to day t's close and, in mode
CC, holds it from close t to close t+1, crediting r_{t+1} = c_{t+1}/c_t - 1 on day t+1; the
first decision is bought from all-cash at the start day's close, and the last day's decision is
never traded (its period would end after the data). vectorbt's `from_signals` fills a signal of
bar t at bar t's close (price = close, no shift), so entries = state_t, exits = not state_t,
both sliced to start at the first decision day, are the same trades with no shift; the signals
of the last bar are cleared so vectorbt does not trade there either. State Null (not enough
history) is cash in gpubt; the start day is after the longest window, so it never occurs.

**Costs.** gpubt charges cost_t = costBps/10,000 x turnover_t, turnover = 1/2 sum|A_t - A_{t-1}|
over tickers (0.5 for every cash <-> SPY switch), subtracted from the period's return:
net_{t+1} = A_t r_{t+1} - cost_t. vectorbt charges `fees` x traded value at the fill, out of the
cash, so an entry buys V/(1+f) of stock: (1+r)/(1+f) against gpubt's 1 + r - c/2. No constant
`fees` (nor slippage or fixed fees) makes these equal: they differ by about f x r per entry. So
the equality check is run at zero costs (both sides then compute prod(1 + state_t r_{t+1}); the
check is absolute, |gpubt - vectorbt| <= 1e-9 on every variant's total return), and the timed
runs use the same nonzero cost, fees = costBps/2/10,000 per traded value (the same charge per
switch as gpubt's, to first order). The table also gives, for the costed runs, the largest
difference from vectorbt (its fee model) and from spec §6 evaluated by hand in NumPy on
vectorbt's own signals (which must be ~1e-12: gpubt's costs exactly as specified).

**Measurement.** Each side runs in its own fresh process: one untimed run at zero costs (the
check; it also compiles Numba), then `median_time` (benchmarks/common.py) of `--runs` costed runs
after one more untimed warm-up. Peak memory = VmHWM of that process after its timed runs
(imports, data and every run included). gpubt gets a freshly loaded Market for every run
(loaded before the clock starts), so no run reuses indicator values that the sweep keeps per
Market from a previous one: warm JIT, cold data. The vectorbt venv (default
~/.cache/gpubt-bench/vectorbt-venv, outside the repository) is made once with `pip install
vectorbt` and reused. The two processes run one after the other, never at the same time.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DATA = ROOT.parent / "shared" / "data" / "etf"
VENV = Path(os.environ.get("GPUBT_BENCH_VENV", Path.home() / ".cache" / "gpubt-bench" / "vectorbt-venv"))
VECTORBT_SIDE = Path(__file__).with_name("_vectorbt_side.py")
TOLERANCE = 1e-9  # absolute, on each variant's total return
TARGET_RATIO = 50.0  # issue 6: gpubt >= 50x faster than vectorbt
TARGET_PEAK_MIB = 1024.0  # ... with <= 1 GB peak


# -- the experiment ------------------------------------------------------------------------------


def grid(n: int) -> tuple[list[int], list[int]]:
    """n fast windows 2..n+1 and n slow windows n+2, n+4, .., 3n: every pair has fast < slow."""
    return list(range(2, n + 2)), list(range(n + 2, 3 * n + 2, 2))


def request(ticker: str, start_date: str, cost_bps: float) -> dict:
    return {
        "mode": "CC", "costBps": cost_bps, "startDate": start_date, "benchmark": ticker,
        "payload": {
            "id": "root", "kind": "indicator",
            "conditions": [{"id": "x", "type": "if", "metric": "Simple Moving Average", "ticker": ticker,
                            "window": 10, "comparator": "gt", "expanded": True,
                            "rightMetric": "Simple Moving Average", "rightTicker": ticker, "rightWindow": 50}],
            "children": {"then": [{"id": "long", "kind": "position", "positions": [ticker]}],
                         "else": [{"id": "cash", "kind": "position", "positions": []}]},
        },
    }


def peak_rss_mib() -> float:
    """VmHWM of this process in MiB (ru_maxrss would carry the parent's peak across exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def gpubt_side(work: Path) -> None:
    """The gpubt half, in its own process: writes gpubt.json and the total returns."""
    import numpy as np

    import gpubt
    from benchmarks.common import median_time
    from gpubt.data.loaders import load_market

    task = json.loads((work / "task.json").read_text())
    fast, slow = task["fast"], task["slow"]
    parameters = {"x.window": fast, "x.rightWindow": slow}

    def market():
        return load_market(task["data"], tickers=[task["ticker"]])

    def sweep(cost_bps: float, m):
        return gpubt.sweep(request(task["ticker"], task["start_date"], cost_bps), parameters,
                           market=m, backend="numba")

    rss_setup = peak_rss_mib()
    # The equality check at zero costs; it also compiles Numba (untimed).
    t0 = time.perf_counter()
    first = sweep(0.0, market())
    first_s = time.perf_counter() - t0
    table = first.table.sort("variant")
    order_ok = (table["x.window"].to_list() == [f for f in fast for _ in slow]
                and table["x.rightWindow"].to_list() == [s for _ in fast for s in slow])
    np.save(work / "gpubt_total_zero.npy", table["totalReturn"].to_numpy())
    info = {"startDate": table["startDate"][0], "endDate": table["endDate"][0],
            "days": sorted(set(table["days"].to_list())), "order_ok": order_ok,
            "chunk": first.chunk_size}
    del first, table

    markets = [market() for _ in range(task["runs"] + 1)]  # a fresh Market per run: no reused values
    held = {}

    def timed():
        held["result"] = sweep(task["cost_bps"], markets.pop())

    median_s, times = median_time(timed, runs=task["runs"], warmup=1)
    peak = peak_rss_mib()
    costed = held["result"].table.sort("variant")
    np.save(work / "gpubt_total_cost.npy", costed["totalReturn"].to_numpy())
    (work / "gpubt.json").write_text(json.dumps({
        "median_s": median_s, "times": times, "first_s": first_s, "peak_mib": peak,
        "setup_mib": rss_setup, "variants": costed.height, **info,
    }))


# -- the driver ----------------------------------------------------------------------------------


def ensure_venv(venv: Path, requirement: str) -> Path:
    """The venv's python, with vectorbt importable: made once, reused afterwards."""
    python = venv / "bin" / "python"
    if python.exists() and subprocess.run([python, "-c", "import vectorbt"], capture_output=True).returncode == 0:
        return python
    print(f"setting up vectorbt in {venv} (once; reused afterwards) ...", file=sys.stderr, flush=True)
    if not python.exists():
        venv.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", requirement],
                   check=True)
    return python


def run_side(argv: list[str | Path], name: str) -> None:
    t0 = time.perf_counter()
    print(f"running the {name} side ...", file=sys.stderr, flush=True)
    done = subprocess.run([str(a) for a in argv], cwd=ROOT, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        sys.exit(f"the {name} side failed (exit {done.returncode}):\n{done.stderr[-4000:]}")
    print(f"  {name} side done in {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)


def code_state() -> str:
    """The gpubt code measured: HEAD, and whether gpubt/ had uncommitted changes then."""
    def git(*argv: str) -> str:
        done = subprocess.run(["git", "-C", str(ROOT), *argv], capture_output=True, text=True, check=False)
        return done.stdout.strip() if done.returncode == 0 else ""

    head = git("rev-parse", "--short", "HEAD")
    if not head:
        return "not a git checkout"
    dirty = git("status", "--porcelain", "--", "gpubt")
    return f"commit {head}" + (" + uncommitted changes in gpubt/" if dirty else "")


def seconds(median: float, times: list[float]) -> str:
    return f"{median:.2f} ({min(times):.2f}–{max(times):.2f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--grid", type=int, default=100, help="N fast x N slow windows (default 100)")
    parser.add_argument("--runs", type=int, default=3, help="timed runs per side (median; default 3)")
    parser.add_argument("--cost-bps", type=float, default=10.0, help="gpubt costBps of the timed runs")
    parser.add_argument("--days", type=int, default=6000, help="credited days of the backtest")
    parser.add_argument("--ticker", default="SPY")
    parser.add_argument("--data", type=Path, default=DATA, help="folder of <TICKER>.parquet (default ../shared/data/etf)")
    parser.add_argument("--venv", type=Path, default=VENV, help="where vectorbt's venv is made once")
    parser.add_argument("--vectorbt", default="vectorbt", help="pip requirement for the venv")
    parser.add_argument("--no-record", action="store_true", help="print the table only")
    parser.add_argument("--side", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.side:
        gpubt_side(Path(args.side[1]))
        return
    if args.grid < 1 or args.runs < 1:
        parser.error("--grid and --runs must be at least 1")
    data = args.data.resolve()
    if not (data / f"{args.ticker}.parquet").exists() and not (data / f"{args.ticker}.csv").exists():
        sys.exit(f"no price data: {data / (args.ticker + '.parquet')} is absent. This benchmark reads real "
                 f"daily prices from ../shared/data/etf next to the repository (see its SOURCES.md); "
                 f"point --data at a folder of <TICKER>.parquet files.")

    import numpy as np

    from gpubt.data.loaders import load_market

    market = load_market(data, tickers=[args.ticker])
    close = market.close[:, 0]
    known = np.flatnonzero(np.isfinite(close))
    first, T = int(known[0]), close.size
    fast, slow = grid(args.grid)
    start = T - args.days - 1  # decisions start .. T-2 are credited: `days` returns
    if start - first < max(slow) - 1 or start - first < 50:
        sys.exit(f"{args.ticker} has {T - first:,} days in {data}; {args.days:,} credited days plus "
                 f"{max(max(slow) - 1, 50)} days of warm-up need {args.days + 1 + max(max(slow) - 1, 50):,}")
    start_date = str(market.dates[start])

    python = ensure_venv(args.venv.expanduser(), args.vectorbt)
    load_before = os.getloadavg()[0]
    state = code_state()
    with tempfile.TemporaryDirectory(prefix="gpubt-bench-vbt-") as tmp:
        work = Path(tmp)
        np.save(work / "close.npy", close)
        np.save(work / "dates.npy", market.dates.astype("datetime64[ns]"))
        (work / "task.json").write_text(json.dumps({
            "data": str(data), "ticker": args.ticker, "start": start, "start_date": start_date,
            "fast": fast, "slow": slow, "cost_bps": args.cost_bps, "runs": args.runs,
        }))
        run_side([sys.executable, Path(__file__).resolve(), "--side", "gpubt", work], "gpubt")
        run_side([python, VECTORBT_SIDE, work], "vectorbt")
        g = json.loads((work / "gpubt.json").read_text())
        v = json.loads((work / "vectorbt.json").read_text())
        g_zero, v_zero = np.load(work / "gpubt_total_zero.npy"), np.load(work / "vectorbt_total_zero.npy")
        g_cost, v_cost = np.load(work / "gpubt_total_cost.npy"), np.load(work / "vectorbt_total_cost.npy")
        spec_cost = np.load(work / "spec_total_cost.npy")
    load_after = os.getloadavg()[0]

    n = len(fast) * len(slow)
    if not g["order_ok"] or g["variants"] != n or v["variants"] != n:
        sys.exit(f"variant order or count differs: gpubt {g['variants']} (order ok: {g['order_ok']}), "
                 f"vectorbt {v['variants']}, grid {n}")
    if g["days"] != [args.days] or v["days"] != args.days:
        sys.exit(f"backtest length differs: gpubt {g['days']}, vectorbt {v['days']}, asked {args.days}")
    delta = np.abs(g_zero - v_zero)
    worst = int(np.argmax(delta))
    agree = bool(delta.max() <= TOLERANCE)
    delta_fees = np.abs(g_cost - v_cost)
    delta_spec = np.abs(g_cost - spec_cost)
    ratio = v["median_s"] / g["median_s"]

    header = ["ticker", "days", "variants", "gpubt s", "vectorbt s", "vectorbt / gpubt", "vs 50× target",
              "gpubt peak MiB", "vectorbt peak MiB", "max |Δ total return|, 0 bps", "≤ 1e-9 abs",
              f"max |Δ| vs spec §6, {args.cost_bps:g} bps", f"max |Δ| vs vectorbt fees, {args.cost_bps:g} bps"]
    row = [
        args.ticker, f"{args.days:,}", f"{n:,}", seconds(g["median_s"], g["times"]), seconds(v["median_s"], v["times"]),
        f"{ratio:.2f}×", f"{'✓' if ratio >= TARGET_RATIO else '✗'} {ratio / TARGET_RATIO:.1%}",
        f"{g['peak_mib']:,.0f}" + (" ✓" if g["peak_mib"] <= TARGET_PEAK_MIB else " ✗"), f"{v['peak_mib']:,.0f}",
        f"{delta.max():.1e}", "✓" if agree else f"✗ ({fast[worst // len(slow)]}, {slow[worst % len(slow)]})",
        f"{delta_spec.max():.1e}", f"{delta_fees.max():.1e}",
    ]
    vv = v["versions"]
    notes = (
        f"SMA crossover, long {args.ticker} when SMA(fast) > SMA(slow) else cash; fast {fast[0]}..{fast[-1]} × slow "
        f"{slow[0]}..{slow[-1]} step 2 (full grid, every pair fast < slow); real {args.ticker} (adjusted close, "
        f"{data.name}/), {g['startDate']} .. {g['endDate']}, indicators over all {T - first:,} days; mode CC, "
        f"costBps {args.cost_bps:g} in the timed runs (vectorbt fees {v['fees']:g} per traded value = the same charge "
        f"per cash ↔ {args.ticker} switch); gpubt ({state}): `gpubt.sweep` backend numba, chunk {g['chunk']}, a fresh Market per "
        f"run, full metrics per variant; vectorbt {vv['vectorbt']} ({v['engine']} engine; numba {vv['numba']}, numpy "
        f"{vv['numpy']}, pandas {vv['pandas']}, own venv): MA.run(run_unique) ×2, ma_above, Portfolio.from_signals at "
        f"the close, total_return; seconds = median of {args.runs} warm runs (min–max) after an untimed zero-cost "
        f"run (the check) and one untimed warm-up, each side in its own process, one after the other; peak = VmHWM "
        f"of that process; Δ: absolute, on each variant's total return; targets (issue 6): ≥ 50× faster, ≤ 1 GB; "
        f"1-min load average {load_before:.1f} before, {load_after:.1f} after (2 cores shared with other work)"
    )
    after = (
        "**Convention.** Both sides decide on day t's close and hold close t → close t+1 (gpubt mode CC; vectorbt "
        "fills a bar's signal at that bar's close, no shift), first decision bought from cash, last day's decision "
        "not traded. At zero costs both compute ∏(1 + state_t·r_{t+1}) and must agree to 1e-9 (absolute). With "
        f"costs they differ by design: gpubt subtracts costBps/10⁴ · ½Σ|Δw| from the period's return, vectorbt pays "
        f"fees out of the cash at the fill (an entry earns (1+r)/(1+f), not 1+r−f), so their totals part by ~f·r per "
        f"entry (last column); gpubt's costed totals equal spec §6 evaluated by hand on vectorbt's own signals "
        f"(the column before). Extra: first (cold, compiling) run gpubt {g['first_s']:.1f} s, vectorbt "
        f"{v['first_s']:.1f} s; peak RSS after imports and data, before any run: gpubt {g['setup_mib']:,.0f} MiB, "
        f"vectorbt {v['setup_mib']:,.0f} MiB."
    )
    if args.no_record:
        print(notes, "", " | ".join(header), " | ".join(row), "", after, sep="\n")
    else:
        from benchmarks.common import record

        record("gpubt vs vectorbt (bench_vectorbt.py)", header, [row], notes,
               ("numpy", "polars", "numba", "gpubt"), after=after)
    if not agree:
        order = np.argsort(-delta)[:5]
        for i in order:
            print(f"variant {i} fast {fast[i // len(slow)]} slow {slow[i % len(slow)]}: gpubt {g_zero[i]!r} "
                  f"vectorbt {v_zero[i]!r} |Δ| {delta[i]:.3e}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
