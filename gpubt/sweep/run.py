"""Chunked sweep execution: many variants of one template through one column graph.

One chunk (a range of variant indices) runs as:

1. parse every variant with `parse_request` (the sweep's own check, like any request);
2. group the variants by their market calendar (the days on which their tickers trade: two
   variants that hold different tickers may see different days) and build one market per group,
   the union of its variants' tickers, whose date axis is every member's own;
3. compile every variant of a group through ONE `Builder` (and one memo of market series), so an
   RSI(14) of SPY read by a thousand variants is one graph node; the Builder lives on in the
   process for the next chunks, with the values of the signals already computed;
4. evaluate every distinct signal of the group that no earlier chunk computed in ONE backend
   call (more only when branch series feed back into indicators: one call per stage, for all
   variants at once);
5. build each variant's allocation with its own `Allocator` on the shared value table, stacked
   into an (S, T, N) batch over the union of tickers;
6. one `simulate` call and one `compute_metrics` call per group of variants that share the
   backtest window, mode, costs and benchmark (normally the whole chunk).

Chunks are sized to a memory budget so peak memory is flat however large the sweep; the driver
writes each finished chunk to its own Parquet file, so an interrupted sweep resumes where it
stopped, and runs the chunks locally or on Dask (`gpubt.sweep.distributed`).
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
import logging
import os
import shutil
import threading
import time
import weakref
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numba
import numpy as np
import polars as pl

from gpubt.alloc.allocate import Allocator
from gpubt.backends import get_backend, gpu_sweeps
from gpubt.backends.base import Backend
from gpubt.collector import paused
from gpubt.compiler.compile import Compiler
from gpubt.compiler.execute import _branch_reads, _signals
from gpubt.compiler.plan import Program, Step
from gpubt.data.loaders import load_market
from gpubt.data.market import Market
from gpubt.data.synthetic import synthetic_market
from gpubt.engine import CHOICES, DEFAULT_BACKEND, run_backtest
from gpubt.errors import GpubtError
from gpubt.ir.nodes import Builder, Node
from gpubt.metrics.core import KEYS as METRIC_KEYS
from gpubt.metrics.core import compute_metrics
from gpubt.metrics.labels import LOWER_IS_BETTER
from gpubt.schema.models import FlowNode
from gpubt.schema.parse import Strategy
from gpubt.schema.response import MIN_WEIGHT
from gpubt.sim.period import LAG, backtest_window
from gpubt.sim.simulate import period_returns, simulate
from gpubt.sweep.spec import WINDOW_COLUMNS, SweepSpec, load_spec, make_spec, parse_memory
from gpubt.sweep.fused import NotFused, Template, prepare

METRIC_COLUMNS = (*WINDOW_COLUMNS, *METRIC_KEYS)
VARIANT = "variant"
DEFAULT_MEMORY = "2GB"
# Working set of one strategy in a chunk, in float64 cells per day: its (T, N) allocation in the
# batch, and the simulation's (D, N) temporaries (the turnover difference, its absolute value,
# the holdings mask) -> SAFETY · N; plus about a dozen (D,) rows (gross, turnover, cost, net,
# equity, peak, drawdown, holdings count, metric temporaries) -> SERIES.
SAFETY = 4
SERIES = 12
# Memory kept aside for the process itself (interpreter, Polars, Numba, the market, the signal
# table) before the chunk's working set; a budget below 4/3 of it still gets a quarter.
BASELINE = 384 * 2**20
# At most this many variants per chunk: measured fastest (128–256; bigger batches stream their
# (S, D, N) arrays through memory instead of cache), and progress and resume stay fine-grained.
MAX_CHUNK = 256
# Per process and calendar: values of signals kept across chunks (a grid's chunks share most of
# their indicators and conditions), and a bound on the shared graph (a sweep of a million
# distinct thresholds makes a million nodes: the graph starts afresh beyond this).
SIGNAL_CACHE_BYTES = 128 * 2**20
# Variants per chunk on the fused path (`gpubt.sweep.fused`): its memory does not grow with
# the chunk (one day series per thread), so chunks are sized for progress and resume only; on a
# GPU a chunk is one launch, which needs hundreds of thousands of threads to fill the device.
FUSED_CHUNK = 16_384
FUSED_CHUNK_DEVICE = 262_144
MAX_GRAPH_NODES = 200_000
MAX_GRAPHS = 8

MarketSource = Market | str | Path | None
log = logging.getLogger(__name__)

# Seconds spent in each phase of `run_chunk` in this process (parse, compile, evaluate, allocate,
# simulate, metrics, table; backtest for the reference, one whole run per variant), for
# profiling (benchmarks/bench_sweep.py); reset it at will.
PHASES: dict[str, float] = {}


class _phase:
    """Adds the time of a `with` block to PHASES[name]."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __enter__(self) -> None:
        self.t0 = time.perf_counter()

    def __exit__(self, *exc: object) -> None:
        PHASES[self.name] = PHASES.get(self.name, 0.0) + time.perf_counter() - self.t0


# -- chunk sizing ------------------------------------------------------------------------------


def bytes_per_strategy(n_days: int, n_tickers: int) -> int:
    return 8 * n_days * (SAFETY * n_tickers + SERIES)


def chunk_size_for(memory: str | int, n_days: int, n_tickers: int) -> int:
    """Variants per chunk so that a chunk's working set (T·N·8 bytes per strategy times a
    safety factor, plus its day series) fits the budget left after the process baseline."""
    budget = parse_memory(memory)
    usable = max(budget - BASELINE, budget // 4)
    return int(max(1, min(MAX_CHUNK, usable // bytes_per_strategy(n_days, max(1, n_tickers)))))


def chunks_of(n_variants: int, chunk_size: int) -> list[tuple[int, int, int]]:
    """(chunk index, first variant, end) for every chunk."""
    return [(k, lo, min(lo + chunk_size, n_variants)) for k, lo in enumerate(range(0, n_variants, chunk_size))]


# -- market ------------------------------------------------------------------------------------


def sweep_market(spec: SweepSpec, source: MarketSource) -> Market:
    """The market of a sweep: a given `Market`, the built-in one (None), or the sweep's tickers
    (and benchmarks, when the source has them) read from a folder or file. Every process that
    runs chunks (a Dask worker too) loads it through here, so all see the same data."""
    if isinstance(source, Market):
        market = source
    elif source is None:
        market = synthetic_market()
    else:
        wanted = list(dict.fromkeys([*spec.tickers, *spec.benchmarks]))
        try:
            market = load_market(source, tickers=wanted)
        except GpubtError as exc:
            absent = [b for b in spec.benchmarks if b not in spec.tickers and b in exc.message]
            if not absent:
                raise
            market = load_market(source, tickers=[t for t in wanted if t not in absent])
    market.require(spec.tickers)
    return market


# -- signals of many programs --------------------------------------------------------------------


def evaluate_programs(
    programs: Sequence[Program],
    allocators: Sequence[Allocator],
    market: Market,
    backend: Backend,
    cache: SignalCache | None = None,
) -> dict[Node, np.ndarray]:
    """`evaluate_signals` for many programs compiled through one Builder: every distinct signal
    of all of them in one backend call per stage (one call when no branch series feeds an
    indicator), into one value table that every allocator reads. Branch keys must be unique
    across the programs (`Compiler.branch_counter` shared with the Builder). With a ``cache`` (of the same Builder and
    calendar), signals computed for earlier chunks are reused and new ones kept; a signal that
    reads a branch series belongs to one program and is never cached."""
    values: dict[Node, np.ndarray] = {}
    for allocator in allocators:
        allocator.values = values
    signals = list(dict.fromkeys(n for program in programs for n in program.walked[1]))
    reads = _branch_reads(signals)
    if cache is not None:
        values.update(cache.get_many(n for n in signals if not reads[n]))
    owners = {key: (k, step) for k, p in enumerate(programs) for key, step in p.branches.items()}
    needs = {key: _signals(step) for key, (_, step) in owners.items()}
    branches: dict[str, np.ndarray] = {}
    pending = set(signals) - values.keys()
    while pending:
        ready = [n for n in signals if n in pending and reads[n] <= branches.keys()]
        if ready:
            computed = backend.evaluate(ready, market, branches)
            values.update(computed)
            if cache is not None:
                cache.put_many((n, v) for n, v in computed.items() if n in reads and not reads[n])
            pending.difference_update(ready)
            continue
        built = False
        for key, (k, step) in owners.items():
            if key not in branches and all(n in values for n in needs[key]):
                branches[key] = allocators[k].branch_series(step)[0]
                built = True
        if not built:
            raise GpubtError("a branch series depends on itself", path="payload")
    return values


class SignalCache:
    """Signal values by graph node, least recently used dropped first beyond ``max_bytes``."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.bytes = 0
        self._values: OrderedDict[Node, np.ndarray] = OrderedDict()

    def get_many(self, nodes: Iterator[Node]) -> dict[Node, np.ndarray]:
        out = {}
        for node in nodes:
            value = self._values.get(node)
            if value is not None:
                self._values.move_to_end(node)
                out[node] = value
        return out

    def put_many(self, items: Iterator[tuple[Node, np.ndarray]]) -> None:
        for node, value in items:
            if node not in self._values:
                self._values[node] = value
                self.bytes += value.nbytes
        while self.bytes > self.max_bytes and self._values:
            _, dropped = self._values.popitem(last=False)
            self.bytes -= dropped.nbytes


@dataclass
class _Graph:
    """What the chunks of one process share on one calendar of one market: the Builder (so an
    indicator or condition is the same node in every chunk), the compiler's memo of market
    series, the branch key counter (keys never repeat across chunks) and the values of the
    signals already computed."""

    builder: Builder = field(default_factory=Builder)
    series: dict[Any, Any] = field(default_factory=dict)
    counter: Iterator[int] = field(default_factory=itertools.count)
    values: SignalCache = field(default_factory=lambda: SignalCache(SIGNAL_CACHE_BYTES))


# market -> {(thread, digest of backend, calendar and custom indicators): _Graph}; dies with the
# market. A group market (the union of a chunk's tickers) is a new object per chunk, but every
# node's value depends only on the tickers it reads and the calendar, so the graph is keyed by
# the sweep's market and the calendar.
_GRAPHS: weakref.WeakKeyDictionary[Market, dict[tuple[int, bytes], _Graph]] = weakref.WeakKeyDictionary()
_GRAPHS_LOCK = threading.Lock()


def _graph(market: Market, calendar: np.ndarray, spec: SweepSpec, backend: str) -> _Graph:
    """The shared graph of this thread for the backend (whose values it keeps), the market's
    calendar and the sweep's custom indicators (a metric name means what the request's
    customIndicators say it means)."""
    digest = hashlib.blake2b(backend.encode(), digest_size=16)
    digest.update(np.packbits(calendar).tobytes())
    digest.update(json.dumps(spec.base.get("customIndicators"), sort_keys=True, default=str).encode())
    key = (threading.get_ident(), digest.digest())
    with _GRAPHS_LOCK:
        graphs = _GRAPHS.setdefault(market, {})
        graph = graphs.get(key)
        if graph is None or len(graph.builder) > MAX_GRAPH_NODES:
            if len(graphs) >= MAX_GRAPHS:  # a sweep over many calendars: keep the latest
                graphs.pop(next(iter(graphs)))
            graph = graphs[key] = _Graph()
        return graph


class _Allocators:
    """The `Allocator` of each variant of a group (its own start, for altExit states), made by
    copying a prototype built once per market (a new Allocator would recompute the market's
    return matrix every time; the position matrices are shared as they are never modified in
    place). All of them share one memo of every other kind: the group's programs are compiled
    with interned steps (`Compiler.interned`), so a sub-tree that several variants agree on is
    one step, allocated once for all of them. A memo entry is dropped when the last variant
    reading its step is done (`done`), so the group never holds more than the variants to come
    need."""

    def __init__(self, market: Market, programs: Sequence[Program]) -> None:
        self.proto = Allocator(market, {}, 0)
        self.memos = [value for name, value in vars(self.proto).items()
                      if isinstance(value, dict) and name.startswith("_") and name != "_holds"]
        reads: Counter[int] = Counter()
        self.users: Counter[int] = Counter()
        for program in programs:
            parents = program.walked[0]
            reads.update(parents)
            self.users.update(parents.keys())
        # worth memoising: read twice anywhere in the group, or a branch series' step
        self.keep = {k for k, n in reads.items() if n > 1}
        self.keep.update(id(s) for program in programs for s in program.branches.values())

    def __call__(self, start: int) -> Allocator:
        allocator = copy.copy(self.proto)
        allocator.values, allocator.start, allocator.keep = {}, start, self.keep
        return allocator

    def done(self, program: Program) -> None:
        """The variant of ``program`` is allocated: drop what no later variant reads."""
        for k in program.walked[0]:
            self.users[k] -= 1
            if not self.users[k]:
                for memo in self.memos:
                    memo.pop(k, None)


# -- one chunk ---------------------------------------------------------------------------------


def run_chunk(
    spec: SweepSpec, lo: int, hi: int, market: Market, backend: str = DEFAULT_BACKEND
) -> pl.DataFrame:
    """The result rows of variants lo..hi-1: parameters and every §7 metric, one row each."""
    if backend not in CHOICES:
        raise GpubtError(f"unknown backend {backend!r}; available: {', '.join(CHOICES)}", "backend")
    template = fused_template(spec, market, backend)
    if template is not None:
        windows, window = list(zip(template.start_dates, template.end_dates)), template.start_of[lo:hi]
        head: list[pl.Series] = []  # on the GPU, built while the kernel runs
        with _phase("fused"):
            values = _fused_values(template, lo, hi, backend,
                                   lambda: head.extend(_head(spec, lo, hi, windows, window)))
        with _phase("table"):
            return _frame(spec, lo, hi, _Metrics(dict(zip(METRIC_KEYS, values)), windows, window), head or None)
    with paused():  # parsed requests, plan steps and graph nodes by the thousand, no cycles
        metrics = _general(spec, lo, hi, market, backend)
    with _phase("table"):
        return _frame(spec, lo, hi, metrics)


def _general(spec: SweepSpec, lo: int, hi: int, market: Market, backend: str) -> _Metrics:
    """The metrics of variants lo..hi-1, each parsed and compiled (`run_chunk` without a fused
    plan)."""
    indices = list(range(lo, hi))
    metrics = _Metrics.empty(hi - lo)
    with _phase("parse"):
        strategies = [spec.strategy(i) for i in indices]
    if backend == "reference":  # the oracle has no batch form: one full backtest per variant
        for k, strategy in enumerate(strategies):
            with _phase("backtest"):
                row = _checked(spec, indices[k], lambda s=strategy: run_backtest(s, market, backend)).metrics
            metrics.set([k], {key: np.array([np.nan if row[key] is None else row[key]]) for key in METRIC_KEYS},
                        row["startDate"], row["endDate"])
    else:
        engine = get_backend(backend)
        for members, group_market, calendar in _calendar_groups(spec, indices, strategies, market):
            graph = _graph(market, calendar, spec, backend)
            _run_group(spec, indices, strategies, members, group_market, engine, metrics, graph)
    return metrics


# market -> {(spec fingerprint, backend): the fused plan, or why the sweep takes the general
# path}: prepared once per process, used by every chunk of the sweep that runs there.
_TEMPLATES: weakref.WeakKeyDictionary[Market, dict[tuple[str, str], Template | str]] = weakref.WeakKeyDictionary()


def fused_plan(spec: SweepSpec, market: Market, backend: str) -> Template | str:
    """The fused plan of the sweep (`gpubt.sweep.fused`), or why its variants take the
    general path."""
    if backend == "reference":
        return "the reference backend runs every variant whole"
    key = (spec.fingerprint(), backend)
    with _GRAPHS_LOCK:
        templates = _TEMPLATES.setdefault(market, {})
        if key not in templates:
            with _phase("prepare"), paused():
                try:
                    templates[key] = prepare(spec, market, get_backend(backend))
                except NotFused as why:
                    templates[key] = str(why)
        return templates[key]


def fused_template(spec: SweepSpec, market: Market, backend: str) -> Template | None:
    """The fused plan of the sweep when its variants allow one."""
    plan = fused_plan(spec, market, backend)
    return plan if isinstance(plan, Template) else None


def sweep_path(spec: SweepSpec, market: Market, backend: str) -> str:
    """Which path runs the sweep, in words (and why not the fused one)."""
    plan = fused_plan(spec, market, backend)
    if isinstance(plan, str):
        return f"general path: {plan}"
    return "fused path, " + ("GPU kernel" if gpu_sweeps(backend, spec.n_variants) else "CPU kernel")


# Template -> its tables on the GPU (`gpubt.sweep.device.DeviceTemplate`), made on first use.
_ON_DEVICE: weakref.WeakKeyDictionary[Template, Any] = weakref.WeakKeyDictionary()


def _fused_values(template: Template, lo: int, hi: int, backend: str,
                  meanwhile: Callable[[], None] | None = None) -> np.ndarray:
    """The fused kernel's metrics of variants lo..hi-1, on the GPU where `gpu_sweeps` (for the
    sweep's whole size), running ``meanwhile`` on the host while the device computes. A CUDA
    failure runs the same variants on the CPU kernel (the same source, so the same numbers)
    with a warning; nothing partial is ever returned."""
    if gpu_sweeps(backend, len(template.rows)):
        try:
            with _GRAPHS_LOCK:
                device = _ON_DEVICE.get(template)
                if device is None:
                    from gpubt.sweep.device import DeviceTemplate

                    with _phase("to_device"):
                        device = _ON_DEVICE[template] = DeviceTemplate(template)
            before = dict(device.seconds)
            values = device.run(lo, hi, meanwhile)
            for key, seconds in device.seconds.items():
                PHASES[f"gpu {key}"] = PHASES.get(f"gpu {key}", 0.0) + seconds - before[key]
            return values
        except Exception as exc:  # a CUDA error: never a wrong number, the CPU kernel answers
            log.warning("GPU sweep kernel failed for variants %d..%d (%s: %s); running them on the CPU",
                        lo, hi - 1, type(exc).__name__, exc)
    return template.run(lo, hi)


def _checked(spec: SweepSpec, i: int, fn: Callable[[], Any]) -> Any:
    try:
        return fn()
    except GpubtError as exc:
        raise GpubtError(f"variant {i} ({spec.label(i)}): {exc.message}", exc.path, exc.status) from None


def _calendar_groups(
    spec: SweepSpec, indices: list[int], strategies: list[Strategy], market: Market
) -> list[tuple[list[int], Market, np.ndarray]]:
    """Variants grouped by the date axis their own backtest would use (`prepare_market`: the days
    on which any of their tickers or their benchmark traded), each with one market holding the
    union of the group's tickers on that axis."""
    calendars: list[np.ndarray] = []
    by_tickers: dict[tuple[str, ...], int] = {}
    groups: dict[int, list[int]] = {}
    columns: dict[int, dict[str, None]] = {}
    for k, strategy in enumerate(strategies):
        _checked(spec, indices[k], lambda s=strategy: market.require(s.tickers))
        benchmark = strategy.request.benchmark
        key = tuple(dict.fromkeys([*strategy.tickers, *([benchmark] if market.has(benchmark) else [])]))
        cid = by_tickers.get(key)
        if cid is None:
            rows = market.observed[:, [market.column(t) for t in key]].any(axis=1)
            cid = next((c for c, cal in enumerate(calendars) if np.array_equal(cal, rows)), len(calendars))
            if cid == len(calendars):
                calendars.append(rows)
            by_tickers[key] = cid
        groups.setdefault(cid, []).append(k)
        columns.setdefault(cid, {}).update(dict.fromkeys(key))
    out = []
    for cid, members in groups.items():
        group_market = market.select(list(columns[cid]))
        if group_market.n_days != int(calendars[cid].sum()):  # the union of equal calendars
            raise AssertionError("calendar group market does not match its members' calendar")
        out.append((members, group_market, calendars[cid]))
    return out


def _run_group(
    spec: SweepSpec,
    indices: list[int],
    strategies: list[Strategy],
    members: list[int],
    market: Market,
    engine: Backend,
    metrics: _Metrics,
    graph: _Graph,
) -> None:
    builder, series, counter = graph.builder, graph.series, graph.counter
    programs: list[Program] = []
    windows: list[tuple[int, int]] = []
    interned: dict[tuple[Any, ...], Step] = {}
    reused: dict[int, tuple[FlowNode, Step]] = {}
    with _phase("compile"):
        for k in members:
            strategy = strategies[k]

            def compile_one(s: Strategy = strategy) -> tuple[Program, tuple[int, int, Any]]:
                program = Compiler(
                    s, market, builder, _series=series, branch_counter=counter, interned=interned, reused=reused
                ).program()
                return program, backtest_window(s, market.dates, program.warmup)

            program, (start, end, _) = _checked(spec, indices[k], compile_one)
            programs.append(program)
            windows.append((start, end))
        fresh = _Allocators(market, programs)
        allocators = [fresh(start) for start, _ in windows]
    with _phase("evaluate"):
        evaluate_programs(programs, allocators, market, engine, graph.values)

    batches: dict[tuple[Any, ...], list[int]] = {}
    for pos, k in enumerate(members):
        request = strategies[k].request
        key = (*windows[pos], request.mode, request.cost_bps, request.benchmark)
        batches.setdefault(key, []).append(pos)
    for (start, end, mode, cost_bps, benchmark), positions in batches.items():
        # Only the days the backtest trades on matter: decisions start .. start+D-1 read prices up
        # to start+D-1+lag, so the batch spans those rows alone (T' = D + lag instead of T).
        lag = LAG[mode]
        n_decisions = max(0, min(end, market.n_days - 1) - lag + 1 - start)
        rows = slice(start, start + n_decisions + lag)
        with _phase("allocate"):
            batch = np.zeros((len(positions), rows.stop - start, len(market.tickers)))
            held = np.empty((len(positions), n_decisions))
            for r, pos in enumerate(positions):
                # the root's weights on its own tickers, placed in the batch without a days ×
                # market matrix of their own; positions counted as the response counts them
                # (|w| ≥ 1e-12), over those tickers alone
                weights = allocators[pos].weights(programs[pos].root)
                _place(weights.w, weights.cols, start, batch[r], held[r])
                fresh.done(programs[pos])
        with _phase("simulate"):
            sim = simulate(batch, market.open[rows], market.close[rows], mode, cost_bps, 0, rows.stop - 1 - start)
        del batch
        with _phase("metrics"):
            credited = sim.credited + start
            bench = None
            if benchmark in market.tickers:
                j = market.tickers.index(benchmark)
                _, days, returns = period_returns(market.open[:, j : j + 1], market.close[:, j : j + 1], mode)
                bench = returns[np.isin(days, credited), 0]
            values = compute_metrics(sim.net, sim.turnover, held, bench)
            del sim
            metrics.set([members[pos] for pos in positions], values, str(market.dates[start]),
                        str(market.dates[credited[-1]]) if credited.size else None)


@numba.njit(cache=True, nogil=True)
def _place(w: np.ndarray, cols: np.ndarray, first: int, out: np.ndarray, held: np.ndarray) -> None:
    """A variant's weights (its own tickers ``cols`` × days) from day ``first`` on into its
    (zeroed) days × market tickers batch rows ``out``, and on the first ``held.size`` of those
    days the positions counted as the response counts them (|w| ≥ 1e-12): one pass, without a
    days × market matrix of its own."""
    for d in range(out.shape[0]):
        count = 0
        for i in range(cols.size):
            x = w[i, first + d]
            out[d, cols[i]] = x
            count += abs(x) >= MIN_WEIGHT
        if d < held.size:
            held[d] = count


# -- result table ------------------------------------------------------------------------------


def _dtype(values: Sequence[Any]) -> pl.DataType:
    present = [v for v in values if v is not None]
    if present and all(isinstance(v, bool) for v in present):
        return pl.Boolean()
    if present and all(isinstance(v, int) and not isinstance(v, bool) for v in present):
        return pl.Int64()
    if present and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in present):
        return pl.Float64()
    if present and all(isinstance(v, (list, tuple)) and all(isinstance(x, str) for x in v) for v in present):
        return pl.List(pl.String())
    return pl.String()


def _converter(dtype: pl.DataType) -> Callable[[Any], Any]:
    """How a parameter value becomes a cell of its column (chosen once per column)."""
    if dtype == pl.Float64:
        return lambda v: None if v is None else float(v)
    if dtype == pl.List(pl.String()):
        return lambda v: None if v is None else list(v)
    if dtype == pl.String:
        return lambda v: v if v is None or isinstance(v, str) else json.dumps(v, sort_keys=True)
    return lambda v: v


def table_schema(spec: SweepSpec) -> dict[str, pl.DataType]:
    schema: dict[str, pl.DataType] = {VARIANT: pl.Int64()}
    for p in spec.parameters:
        schema[p.column] = _dtype(p.values)
    for key in METRIC_COLUMNS:
        schema[key] = pl.String() if key in WINDOW_COLUMNS else pl.Int64() if key == "days" else pl.Float64()
    return schema


@dataclass
class _Metrics:
    """The metric columns of one chunk, filled group by group; each row's backtest window (start
    and end dates) is an index into the distinct windows, so a million rows are not a million
    date strings until the table gathers them."""

    values: dict[str, np.ndarray]
    windows: list[tuple[str | None, str | None]]
    window: np.ndarray

    @classmethod
    def empty(cls, n: int) -> _Metrics:
        return cls({key: np.full(n, np.nan) for key in METRIC_KEYS}, [(None, None)], np.zeros(n, dtype=np.int64))

    def set(self, rows: Sequence[int] | np.ndarray, values: Mapping[str, np.ndarray], start: str | None,
            end: str | None) -> None:
        for key in METRIC_KEYS:
            self.values[key][rows] = values[key]
        self.window[rows] = len(self.windows)
        self.windows.append((start, end))


def _head(spec: SweepSpec, lo: int, hi: int, windows: list[tuple[str | None, str | None]],
          window: np.ndarray) -> list[pl.Series]:
    """The columns of variants lo..hi-1 that need no metric: index, parameters, window dates."""
    schema = table_schema(spec)
    series = [pl.Series(VARIANT, np.arange(lo, hi, dtype=np.int64))]
    at = spec.value_indices(lo, hi)
    for j, p in enumerate(spec.parameters):
        cell = _converter(schema[p.column])
        values = pl.Series(p.column, [cell(v) for v in p.values], dtype=schema[p.column])
        series.append(values.gather(at[:, j]))
    for name, dates in zip(WINDOW_COLUMNS, zip(*windows)):
        series.append(pl.Series(name, dates, dtype=pl.String).gather(window))
    return series


def _frame(spec: SweepSpec, lo: int, hi: int, metrics: _Metrics,
           head: list[pl.Series] | None = None) -> pl.DataFrame:
    """The result rows of variants lo..hi-1 (``head``: their `_head` columns, if built already)."""
    schema = table_schema(spec)
    series = head if head is not None else _head(spec, lo, hi, metrics.windows, metrics.window)
    for key in METRIC_KEYS:
        # non-finite metrics are missing, as `null` in the JSON response
        values = metrics.values[key]
        values[~np.isfinite(values)] = np.nan
        column = pl.Series(key, values, dtype=pl.Float64, nan_to_null=True)
        series.append(column.cast(pl.Int64) if schema[key] == pl.Int64 else column)
    return pl.DataFrame(series).select(list(schema))


# -- the result object ---------------------------------------------------------------------------


@dataclass
class SweepResult:
    """A finished sweep: ``table`` has one row per variant (``variant`` index, one column per
    parameter, every metric of spec §7), ordered by variant; ``market`` is the one it ran on
    (for `curves`)."""

    table: pl.DataFrame
    spec: SweepSpec
    backend: str = DEFAULT_BACKEND
    elapsed_s: float = 0.0
    chunk_size: int = 0
    workers: str = "local"
    market: Market | None = field(default=None, repr=False, compare=False)
    path: str = ""  # `sweep_path`: fused or general, and why

    @property
    def parameters(self) -> list[str]:
        """The table's parameter columns, in spec order."""
        return [p.column for p in self.spec.parameters]

    @property
    def strategies_per_s(self) -> float:
        return self.table.height / self.elapsed_s if self.elapsed_s > 0 else float("nan")

    def top(self, k: int = 10, by: str = "sharpe", descending: bool | None = None) -> pl.DataFrame:
        """The best ``k`` variants by a metric or any column (missing values last): the highest
        first, or the lowest for metrics where less is better (vol, avgTurnover) unless
        ``descending`` says."""
        if by not in self.table.columns:
            raise GpubtError(f"unknown column {by!r}; metrics: {', '.join(METRIC_COLUMNS)}", "by")
        if descending is None:
            descending = by not in LOWER_IS_BETTER
        return self.table.sort(by, descending=descending, nulls_last=True).head(k)

    def curves(self, k: int = 10, by: str = "sharpe", descending: bool | None = None) -> pl.DataFrame:
        """The daily curves of the `top` ``k`` variants, each backtested again whole (the same
        numbers as `gpubt run` of that variant): one row per variant and day, the start day
        first (equity 1, drawdown 0), with the benchmark's equity on the same days (null
        without benchmark data)."""
        if self.market is None:
            raise GpubtError("this result holds no market to backtest its variants on", "curves")
        frames = []
        for i in self.top(k, by, descending)[VARIANT].to_list():
            response = run_backtest(self.spec.strategy(i), self.market, self.backend)
            bench = response.bench_equity
            frames.append(pl.DataFrame({
                VARIANT: np.full(len(response.when) + 1, i, dtype=np.int64),
                "date": pl.Series([response.start_date, *response.when]).str.to_date(),
                "equity": np.concatenate([[1.0], response.equity]),
                "drawdown": np.concatenate([[0.0], response.drawdown]),
                "benchmark": pl.Series(None if bench is None else np.concatenate([[1.0], bench]),
                                       dtype=pl.Float64),
            }, schema_overrides={"benchmark": pl.Float64}))
        if not frames:
            return pl.DataFrame(schema={VARIANT: pl.Int64, "date": pl.Date, "equity": pl.Float64,
                                        "drawdown": pl.Float64, "benchmark": pl.Float64})
        return pl.concat(frames)

    def report(self, path: str | Path, by: str = "sharpe", top: int = 10, axes: tuple[str, str] | None = None,
               curves: bool = False, title: str = "Sweep report") -> Path:
        """Write the HTML report (`gpubt.sweep.report`): a heatmap of ``by`` over ``axes`` (two
        parameter columns; default the first two that vary), its spread, the best ``top``,
        and with ``curves`` their equity curves."""
        from gpubt.sweep.report import write_sweep_report

        return write_sweep_report(self, path, by=by, top=top, axes=axes, title=title,
                                  curves=self.curves(top, by) if curves else None)

    def __repr__(self) -> str:
        return f"SweepResult({self.spec.describe()}, backend={self.backend!r}, {self.elapsed_s:.2f} s)"


# -- the driver ----------------------------------------------------------------------------------


ProgressFn = Callable[[int], None]


def _source_name(source: MarketSource) -> str:
    if isinstance(source, Market):
        return f"market:{source.source}:{source.n_days}x{len(source.tickers)}"
    return "builtin" if source is None else str(Path(source).resolve())


class ChunkStore:
    """Finished chunks as ``chunk-<k>.parquet`` files in a folder next to the output, with a
    manifest that ties them to one sweep (spec, chunking, backend, data): a resumed run only
    skips chunks of the same sweep, and a new run never silently mixes with an old one."""

    def __init__(self, out: Path, spec: SweepSpec, chunk_size: int, backend: str, source: str, resume: bool):
        self.out = out
        self.folder = out.with_name(out.name.removesuffix(".parquet") + ".chunks")
        self.manifest = self.folder / "sweep.json"
        wanted = {
            "fingerprint": spec.fingerprint(),
            "variants": spec.n_variants,
            "chunkSize": chunk_size,
            "backend": backend,
            "data": source,
        }
        if self.manifest.exists():
            old = json.loads(self.manifest.read_text())
            if not resume:
                raise GpubtError(
                    f"{self.folder} holds chunks of an unfinished sweep: pass --resume to continue it "
                    "(or remove the folder to start over)", str(self.folder),
                )
            for key in ("fingerprint", "variants", "backend", "data"):
                if old.get(key) != wanted[key]:
                    raise GpubtError(
                        f"cannot resume: the unfinished sweep in {self.folder} differs in {key} "
                        f"({old.get(key)!r}, now {wanted[key]!r}); remove the folder to start over",
                        str(self.folder),
                    )
            wanted["chunkSize"] = old["chunkSize"]  # the boundaries of the finished chunks
        else:
            self.folder.mkdir(parents=True, exist_ok=True)
            _atomic_write(self.manifest, json.dumps(wanted, indent=1).encode())
        self.chunk_size = int(wanted["chunkSize"])

    def path(self, index: int) -> Path:
        return self.folder / f"chunk-{index:06d}.parquet"

    def done(self, index: int) -> bool:
        return self.path(index).exists()

    def write(self, index: int, frame: pl.DataFrame) -> None:
        tmp = self.folder / f".chunk-{index:06d}.{os.getpid()}.tmp"
        frame.write_parquet(tmp)
        os.replace(tmp, self.path(index))  # a chunk file is whole or absent, never partial

    def merge(self, spec: SweepSpec) -> pl.DataFrame:
        files = sorted(self.folder.glob("chunk-*.parquet"))
        schema = table_schema(spec)
        frames = [pl.read_parquet(f).cast(schema) for f in files]  # type: ignore[arg-type]
        table = merge_frames(frames, spec)
        tmp = self.out.with_name(f".{self.out.name}.{os.getpid()}.tmp")
        table.write_parquet(tmp)
        os.replace(tmp, self.out)
        shutil.rmtree(self.folder)
        return table


def merge_frames(frames: Sequence[pl.DataFrame], spec: SweepSpec) -> pl.DataFrame:
    """Chunk tables as one, each variant exactly once (a retried chunk may arrive twice)."""
    frames = sorted(frames, key=lambda frame: frame[VARIANT][0] if frame.height else -1)
    table = pl.concat(frames) if frames else pl.DataFrame(schema=table_schema(spec))
    variants = table[VARIANT].to_numpy()
    if not (variants[1:] > variants[:-1]).all():  # a chunk twice, or out of order: dedupe and sort
        table = table.unique(VARIANT, keep="first", maintain_order=True).sort(VARIANT)
    if table.height != spec.n_variants:
        missing = sorted(set(range(spec.n_variants)) - set(table[VARIANT].to_list()))
        raise GpubtError(
            f"the sweep is incomplete: {len(missing)} of {spec.n_variants} variants have no result "
            f"(first missing: {missing[:5]})"
        )
    return table


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def run_sweep(
    spec: SweepSpec,
    *,
    market: Market | None = None,
    data: str | Path | None = None,
    backend: str = DEFAULT_BACKEND,
    memory: str | int = DEFAULT_MEMORY,
    chunk_size: int | None = None,
    out: str | Path | None = None,
    resume: bool = False,
    local_workers: int | None = None,
    local_gpus: int | None = None,
    scheduler: str | None = None,
    client: Any = None,
    progress: ProgressFn | None = None,
    on_start: Callable[[int, int, int], None] | None = None,
) -> SweepResult:
    """Run every variant of ``spec``: chunks locally, or on Dask (a ``client``, a ``scheduler``
    address, ``local_workers`` processes on this machine, or one dask-cuda worker per GPU of
    this machine for ``local_gpus``). With ``out`` each finished chunk
    is written at once and merged into ``out`` at the end; ``resume`` skips the chunks a previous
    interrupted run finished. ``progress(n)`` is told of every n variants done; ``on_start(total,
    already_done, chunk_size)`` once before the first chunk runs."""
    if backend not in CHOICES:
        raise GpubtError(f"unknown backend {backend!r}; available: {', '.join(CHOICES)}", "backend")
    if market is not None and data is not None:
        raise GpubtError("give market or data, not both", "data")
    source: MarketSource = market if market is not None else data
    local_market = sweep_market(spec, source)  # refuses missing tickers before anything runs
    n_tickers = len(set(spec.tickers) | {b for b in spec.benchmarks if local_market.has(b)})
    path = sweep_path(spec, local_market, backend)
    if chunk_size is None:
        fused = fused_template(spec, local_market, backend) is not None
        if not fused:
            chunk_size = chunk_size_for(memory, local_market.n_days, n_tickers)
        else:
            chunk_size = FUSED_CHUNK_DEVICE if gpu_sweeps(backend, spec.n_variants) else FUSED_CHUNK
    elif isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise GpubtError(f"chunk size must be a positive integer, got {chunk_size!r}", "chunkSize")
    if resume and out is None:
        raise GpubtError("--resume needs --out: finished chunks are kept next to the output file", "resume")

    store = None
    if out is not None:
        store = ChunkStore(Path(out), spec, chunk_size, backend, _source_name(source), resume)
        chunk_size = store.chunk_size
    chunks = chunks_of(spec.n_variants, chunk_size)
    todo = [c for c in chunks if store is None or not store.done(c[0])]
    done_variants = sum(hi - lo for k, lo, hi in chunks if (k, lo, hi) not in todo)
    if on_start is not None:
        on_start(spec.n_variants, done_variants, chunk_size)
    frames: list[pl.DataFrame] = []
    t0 = time.perf_counter()

    def finished(index: int, frame: pl.DataFrame) -> None:
        if store is not None:
            store.write(index, frame)
        else:
            frames.append(frame)
        if progress is not None:
            progress(frame.height)

    where = "local"
    if client is not None or scheduler is not None or local_workers or local_gpus is not None:
        from gpubt.sweep.distributed import dask_session, run_chunks

        with dask_session(client=client, scheduler=scheduler, local_workers=local_workers,
                          local_gpus=local_gpus) as session:
            where = session.describe()
            for index, frame in run_chunks(session.client, spec, todo, market if market is not None else data, backend):
                finished(index, frame)
    else:
        for index, lo, hi in todo:
            finished(index, run_chunk(spec, lo, hi, local_market, backend))
    elapsed = time.perf_counter() - t0
    if store is not None:
        table = store.merge(spec)
    else:
        table = merge_frames(frames, spec)
    return SweepResult(table, spec, backend, elapsed, chunk_size, where, local_market, path)


def sweep(
    strategy: str | Path | Mapping[str, Any] | SweepSpec,
    parameters: Mapping[str, Any] | None = None,
    *,
    combine: str | Mapping[str, Any] = "grid",
    samples: int | None = None,
    seed: int | None = None,
    market: Market | None = None,
    data: str | Path | None = None,
    backend: str | None = None,
    memory: str | int | None = None,
    chunk_size: int | None = None,
    out: str | Path | None = None,
    resume: bool = False,
    local_workers: int | None = None,
    local_gpus: int | None = None,
    scheduler: str | None = None,
    client: Any = None,
    progress: bool = False,
) -> SweepResult:
    """Backtest every variant of a strategy and return a `SweepResult`.

    ``strategy`` is a request or bare tree (path, dict or JSON text) with ``parameters`` as
    ``{"<id>.<field>": values}``; or, without parameters, a sweep spec file (JSON/YAML) or a
    `SweepSpec`. Values are lists (a ``range`` works), ``{"values": [...]}`` or ``{"start",
    "stop", "step"}``; ``combine`` is ``"grid"``, ``"zip"`` or ``{"mode": "random", "samples":
    N, "seed": S}``::

        res = gpubt.sweep("examples/tqqq_rsi.json",
                          {"c1.window": range(5, 21), "c1.threshold": range(70, 86)})
        res.top(10, by="sharpe")
    """
    settings: dict[str, Any] = {}
    if isinstance(strategy, SweepSpec):
        spec = strategy
    elif parameters is None and isinstance(strategy, (str, Path)) and _is_spec_file(strategy):
        spec = load_spec(strategy)
    else:
        spec = make_spec(strategy, parameters, combine, samples, seed)
    settings = spec.settings
    if data is None and market is None:
        data = settings.get("data")
    reporter = _RichProgress() if progress else None
    try:
        return run_sweep(
            spec, market=market, data=data,
            backend=backend or settings.get("backend", DEFAULT_BACKEND),
            memory=memory or settings.get("memory", DEFAULT_MEMORY),
            chunk_size=chunk_size or settings.get("chunkSize"), out=out, resume=resume,
            local_workers=local_workers, local_gpus=local_gpus, scheduler=scheduler, client=client,
            progress=reporter.advance if reporter else None,
            on_start=reporter.start if reporter else None,
        )
    finally:
        if reporter is not None:
            reporter.stop()


def _is_spec_file(path: str | Path) -> bool:
    """A file with "parameters" at its top level is a sweep spec; anything else a strategy."""
    text = str(path)
    if text.lstrip().startswith("{"):
        return False
    file = Path(text)
    if file.suffix.lower() in (".yaml", ".yml"):
        return True
    try:
        doc = json.loads(file.read_text())
    except (OSError, json.JSONDecodeError):
        return False
    return isinstance(doc, dict) and "parameters" in doc and "strategy" in doc


class _RichProgress:
    """A rich progress bar in strategies, with strategies/s and the time remaining."""

    def __init__(self, console: Any = None) -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            ProgressColumn,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )
        from rich.console import Console
        from rich.text import Text

        console = console if console is not None else Console(stderr=True)

        class Rate(ProgressColumn):
            """Strategies per second of this run (a resumed run's earlier chunks excluded)."""

            def render(self, task: Any) -> Text:
                elapsed = task.finished_time if task.finished else task.elapsed
                done = task.completed - task.fields.get("initial", 0)
                if not elapsed or done <= 0:
                    return Text("… strategies/s", style="cyan")
                return Text(f"{done / elapsed:,.0f} strategies/s", style="cyan")

        self.progress = Progress(
            TextColumn("[bold]sweep"), BarColumn(), MofNCompleteColumn(), Rate(),
            TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
            console=console, transient=False,
            disable=not console.is_terminal,  # a log file or pipe gets the summary, not a redrawn bar
        )
        self.task = None

    def start(self, total: int, done: int, chunk_size: int) -> None:
        self.progress.start()
        self.task = self.progress.add_task("sweep", total=total, completed=done, initial=done)

    def advance(self, n: int) -> None:
        if self.task is not None:
            self.progress.advance(self.task, n)

    def stop(self) -> None:
        self.progress.stop()
