"""`gpubt` command line: run a backtest or a parameter sweep, serve the API, make or check market data."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from gpubt import __version__
from gpubt.errors import GpubtError
from gpubt.metrics.labels import METRIC_ROWS, format_metric, format_parameter

console = Console()
err_console = Console(stderr=True)

def _read_strategy(args: argparse.Namespace):
    """The strategy file (a request or a bare tree) with the command-line overrides applied."""
    from gpubt.schema.parse import parse_strategy_file

    body = json.loads(Path(args.strategy).read_text())
    if isinstance(body, dict) and "payload" not in body and "kind" in body:
        body = {"payload": body}
    if isinstance(body, dict):
        for flag, field in (("mode", "mode"), ("cost_bps", "costBps"), ("start", "startDate"),
                            ("end", "endDate"), ("benchmark", "benchmark")):
            value = getattr(args, flag, None)
            if value is not None:
                body[field] = value
                if field == "costBps":
                    body.pop("cost_bps", None)
    return parse_strategy_file(json.dumps(body))


def _cuda_device() -> str:
    """The CUDA device CuPy sees, or why there is none (CuPy is only in the [gpu] extra)."""
    try:
        import cupy

        count = cupy.cuda.runtime.getDeviceCount()
        name = cupy.cuda.runtime.getDeviceProperties(0)["name"].decode()
        return f"{name} ({count} device(s))"
    except Exception as exc:  # no CuPy, no driver, no device: all mean "no GPU here"
        return f"none ({type(exc).__name__}: {exc})"


def _cmd_info(args: argparse.Namespace) -> int:
    import importlib.metadata as md
    import platform

    import numba

    from gpubt.backends import AUTO_GPU_MIN_VARIANTS, REGISTRY, gpu_sweeps, pick, usable

    table = Table(title=f"gpubt {__version__}")
    table.add_column("item")
    table.add_column("value")
    table.add_row("python", platform.python_version())
    for package in ("polars", "numpy", "numba", "numba-cuda", "pyarrow", "pydantic", "cupy-cuda12x", "cupy-cuda13x",
                    "cudf-polars-cu12"):
        try:
            table.add_row(package, md.version(package))
        except md.PackageNotFoundError:
            table.add_row(package, "not installed")
    table.add_row("CUDA device", _cuda_device())
    table.add_row("backend reference", "usable (always)")
    for name in REGISTRY:
        ok, why = usable(name)
        table.add_row(f"backend {name}", "usable" if ok else escape(f"unusable: {why}"))
    chosen, reason = pick("auto")
    table.add_row("backend auto", escape(f"{chosen} ({reason})"))
    table.add_row("fused sweeps (auto)", f"GPU kernel, one thread per variant (from {AUTO_GPU_MIN_VARIANTS:,} "
                  "variants; CPU kernel below)" if gpu_sweeps("auto") else "CPU kernel (Numba, all cores)")
    table.add_row("numba threads", f"{numba.get_num_threads()} ({numba.threading_layer()} layer; "
                  "NUMBA_NUM_THREADS sets them)")
    console.print(table)
    return 0


def _cmd_explain(args: argparse.Namespace) -> int:
    from gpubt.compiler.compile import Compiler
    from gpubt.engine import market_for
    from gpubt.sim.period import prepare_market

    strategy = _read_strategy(args)
    market = prepare_market(strategy, market_for(strategy, args.data))
    compiler = Compiler(strategy, market)
    console.print(compiler.explain(compiler.program()))
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    from gpubt.engine import market_for, run_backtest

    strategy = _read_strategy(args)
    t0 = time.perf_counter()
    market = market_for(strategy, args.data)
    t1 = time.perf_counter()
    result = run_backtest(strategy, market, args.backend)
    t2 = time.perf_counter()
    if args.out:
        Path(args.out).write_bytes(result.to_json())
    if args.report:
        from gpubt.report import write_report

        write_report(result.to_dict(), args.report, title=f"{Path(args.strategy).name} · {strategy.request.mode}",
                     benchmark=strategy.request.benchmark)
    table = Table(title=f"{Path(args.strategy).name} · {strategy.request.mode} · {args.backend}")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, label, kind in METRIC_ROWS:
        table.add_row(label, format_metric(result.metrics.get(key), kind))
    console.print(table)
    for warning in result.warnings:
        err_console.print(f"[yellow]warning[/]: {escape(warning['message'])}")
    source = "built-in synthetic market" if args.data is None else str(args.data)
    console.print(
        f"data: {source} · load {1000 * (t1 - t0):.0f} ms · backtest {1000 * (t2 - t1):.0f} ms"
        + (f" · wrote {args.out}" if args.out else "")
        + (f" · report {args.report}" if args.report else "")
    )
    return 0


_SWEEP_COLUMNS = (
    ("sharpe", "Sharpe", "f"),
    ("cagr", "CAGR", "%"),
    ("maxDrawdown", "Max DD", "%"),
    ("sortino", "Sortino", "f"),
    ("totalReturn", "Total", "%"),
)


def _cmd_sweep(args: argparse.Namespace) -> int:
    from gpubt.engine import DEFAULT_BACKEND
    from gpubt.sweep.run import DEFAULT_MEMORY, _RichProgress, run_sweep
    from gpubt.sweep.spec import load_spec

    spec = load_spec(args.spec)
    settings = spec.settings
    data = args.data if args.data is not None else settings.get("data")
    backend = args.backend or settings.get("backend") or DEFAULT_BACKEND
    memory = args.memory or settings.get("memory") or DEFAULT_MEMORY
    out = args.out or settings.get("out")
    top = args.top if args.top is not None else int(settings.get("top", 10))
    by, axes, curves_path = _sweep_outputs(args, spec, out, top)
    console.print(f"[bold]{Path(args.spec).name}[/]: {spec.describe()} · backend {backend}"
                  + (f" · data {data}" if data else " · built-in market"))
    reporter = _RichProgress(console=err_console)

    def on_start(total: int, done: int, chunk_size: int) -> None:
        if done:
            console.print(f"resuming: {done:,} of {total:,} variants already done")
        reporter.start(total, done, chunk_size)

    try:
        result = run_sweep(
            spec, data=data, backend=backend, memory=memory,
            chunk_size=args.chunk_size or settings.get("chunkSize"), out=out, resume=args.resume,
            local_workers=args.local_workers, local_gpus=args.local_gpus, scheduler=args.scheduler,
            progress=reporter.advance, on_start=on_start,
        )
    except KeyboardInterrupt:
        reporter.stop()  # before the message, so the bar does not redraw over it
        err_console.print("[yellow]interrupted[/]"
                          + (": finished chunks are kept; run again with --resume to continue" if out else ""))
        return 130
    finally:
        reporter.stop()
    best = result.top(top, by=by) if top > 0 else None
    if best is not None and best.height:
        shown = [c for c in _SWEEP_COLUMNS if c[0] != by]
        shown.insert(0, next(c for c in (*_SWEEP_COLUMNS, *METRIC_ROWS) if c[0] == by))
        table = Table(title=f"best {best.height} of {result.table.height:,} variants by {shown[0][1]}")
        table.add_column("variant", justify="right")
        for name in result.parameters:
            table.add_column(name, justify="right")
        for _, label, _ in shown:
            table.add_column(label, justify="right")
        for row in best.iter_rows(named=True):
            cells = [str(row["variant"])] + [format_parameter(row[name]) for name in result.parameters]
            cells += [format_metric(row[key], kind) for key, _, kind in shown]
            table.add_row(*cells)
        console.print(table)
    curves = result.curves(top, by) if args.curves else None
    if curves is not None and curves_path is not None:
        curves.write_parquet(curves_path)
        console.print(f"curves of the best {top} written to {curves_path}")
    if args.report:
        from gpubt.sweep.report import write_sweep_report

        write_sweep_report(result, args.report, by=by, top=top, axes=axes, curves=curves,
                           title=f"{Path(args.spec).name} · sweep")
        console.print(f"report written to {args.report}")
    rate = result.table.height / result.elapsed_s if result.elapsed_s > 0 else float("nan")
    console.print(
        f"{result.table.height:,} variants · {result.elapsed_s:.1f} s this run"
        + (f" ({rate:,.0f} strategies/s)" if result.elapsed_s > 0 else "")
        + f" · {result.path} · chunks of {result.chunk_size:,} · {result.workers}"
        + (f" · wrote {out}" if out else "")
    )
    return 0


def _sweep_outputs(args: argparse.Namespace, spec: Any, out: str | None,
                   top: int) -> tuple[str, tuple[str, str] | None, Path | None]:
    """--by, --heatmap and --curves checked before any variant runs: (metric, heatmap axes,
    where the curves go)."""
    from gpubt.metrics.core import KEYS

    if args.by not in KEYS:
        raise GpubtError(f"--by {args.by!r} is not a metric; metrics: {', '.join(KEYS)}", "by")
    axes = None
    if args.heatmap:
        columns = {name: p.column for p in spec.parameters for name in (p.name, p.column)}
        names = [a.strip() for a in args.heatmap.split(",")]
        if len(names) != 2 or len(set(names)) != 2 or not all(n in columns for n in names):
            raise GpubtError(f"--heatmap takes two different parameters X,Y of the sweep, got {args.heatmap!r}; "
                             f"parameters: {', '.join(p.name for p in spec.parameters)}", "heatmap")
        axes = (columns[names[0]], columns[names[1]])
    if args.report and not Path(args.report).resolve().parent.is_dir():
        raise GpubtError(f"--report {args.report}: its folder does not exist", "report")
    curves_path = None
    if args.curves:
        if top < 1 or not (out or args.report):
            raise GpubtError("--curves needs --top K ≥ 1 and --out or --report to put the curves in", "curves")
        if out:
            curves_path = Path(out).with_suffix(".curves.parquet")
    return args.by, axes, curves_path


def _cmd_serve(args: argparse.Namespace) -> int:
    import os

    import uvicorn

    from gpubt.api.app import SETTINGS_ENV, Settings, configure_logging, create_app

    settings = Settings(
        host=args.host, port=args.port, data=args.data, backend=args.backend,
        request_timeout_s=args.timeout, max_days=args.max_days or None,
        **({"max_concurrent": args.threads} if args.threads else {}),
    )
    configure_logging()
    if args.workers > 1:
        # Each worker process builds its own app (and loads the market) from the settings.
        os.environ[SETTINGS_ENV] = settings.to_json()
        uvicorn.run("gpubt.api.app:app_from_env", factory=True, host=args.host, port=args.port,
                    workers=args.workers, log_level=args.log_level)
    else:
        app = create_app(settings)
        uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level)
    return 0


def _cmd_data_synth(args: argparse.Namespace) -> int:
    from gpubt.data.synthetic import write_synthetic

    paths = write_synthetic(Path(args.out), seed=args.seed)
    console.print(f"wrote {len(paths)} tickers to {args.out} (seed {args.seed})")
    return 0


def _cmd_data_check(args: argparse.Namespace) -> int:
    from gpubt.data.loaders import check_folder

    rows = check_folder(Path(args.path))
    table = Table(title=f"{args.path}: {len(rows)} tickers, all valid")
    for column in ("ticker", "rows", "first", "last", "has_adj_close", "gaps"):
        table.add_column(column)
    for row in rows:
        table.add_row(*(str(row[c]) for c in ("ticker", "rows", "first", "last", "has_adj_close", "gaps")))
    console.print(table)
    return 0


def build_parser() -> argparse.ArgumentParser:
    from gpubt.data.synthetic import DEFAULT_SEED
    from gpubt.engine import CHOICES, DEFAULT_BACKEND

    parser = argparse.ArgumentParser(prog="gpubt", description="Backtest FlowNode strategy trees.")
    parser.add_argument("--version", action="version", version=f"gpubt {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="backtest one strategy file and print its metrics")
    run.add_argument("strategy", help="a request JSON (with payload) or a bare FlowNode tree")
    run.add_argument("--data", help="folder of <TICKER>.parquet|csv or one long-format file "
                                    "(default: the built-in synthetic market)")
    run.add_argument("--mode", choices=("CC", "OO", "OC", "CO"), help="trade timing (overrides the file)")
    run.add_argument("--cost-bps", type=float, dest="cost_bps", help="cost per one-way turnover, bps")
    run.add_argument("--start", help="first reported date, YYYY-MM-DD")
    run.add_argument("--end", help="last reported date, YYYY-MM-DD")
    run.add_argument("--benchmark", help="benchmark ticker (default SPY)")
    run.add_argument("--backend", choices=CHOICES, default=DEFAULT_BACKEND)
    run.add_argument("--out", help="write the full JSON response here")
    run.add_argument("--report", help="write a self-contained HTML report here")
    run.set_defaults(func=_cmd_run)

    info = sub.add_parser("info", help="versions, CUDA device, and which backends are usable")
    info.set_defaults(func=_cmd_info)

    explain = sub.add_parser("explain", help="compile a strategy and print its column graph in numbers")
    explain.add_argument("strategy")
    explain.add_argument("--data", help="data folder or file (default: the built-in market)")
    explain.set_defaults(func=_cmd_explain)

    sweep = sub.add_parser("sweep", help="backtest every variant of a parameter sweep spec")
    sweep.add_argument("spec", help="sweep spec (JSON or YAML): strategy, parameters, combine")
    sweep.add_argument("--data", help="folder of <TICKER>.parquet|csv or one long-format file "
                                      "(default: the spec's, else the built-in synthetic market)")
    sweep.add_argument("--backend", choices=CHOICES, help=f"default: the spec's, else {DEFAULT_BACKEND}")
    sweep.add_argument("--out", help="write the results table here (Parquet); finished chunks are kept "
                                     "in <out>.chunks/ until the merge")
    sweep.add_argument("--top", type=int, help="show the best K variants by --by (default 10)")
    sweep.add_argument("--by", metavar="METRIC", default="sharpe",
                       help="the metric that ranks variants, colours the heatmap and picks the curves "
                            "(default sharpe; vol and avgTurnover rank lowest first)")
    sweep.add_argument("--curves", action="store_true",
                       help="backtest the best K again whole: daily equity, drawdown and benchmark to "
                            "<out>.curves.parquet and the --report")
    sweep.add_argument("--report", help="write a self-contained HTML report here: a heatmap of --by over two "
                                        "parameters, its spread over all variants, the best K (and --curves)")
    sweep.add_argument("--heatmap", metavar="X,Y",
                       help="the two parameters the heatmap spans (default: the first two that vary)")
    sweep.add_argument("--memory", help="memory budget per process for one chunk, e.g. 2GB (default 2GB)")
    sweep.add_argument("--chunk-size", type=int, dest="chunk_size",
                       help="variants per chunk (default: from --memory)")
    sweep.add_argument("--resume", action="store_true",
                       help="continue an interrupted sweep with the same --out: finished chunks are skipped")
    where = sweep.add_mutually_exclusive_group()
    where.add_argument("--local-workers", type=int, dest="local_workers", metavar="N",
                       help="run chunks on a Dask LocalCluster of N worker processes (127.0.0.1)")
    where.add_argument("--local-gpus", type=int, dest="local_gpus", metavar="N",
                       help="run chunks on a dask-cuda LocalCUDACluster: one worker per GPU of this machine")
    where.add_argument("--scheduler", metavar="ADDRESS",
                       help="run chunks on a Dask cluster, e.g. tcp://host:8786")
    sweep.set_defaults(func=_cmd_sweep)

    serve = sub.add_parser("serve", help="serve the HTTP API (needs the [api] extra)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=3030)
    serve.add_argument("--data", help="folder of <TICKER>.parquet|csv or one long-format file, "
                                      "loaded whole at startup (default: the built-in synthetic market)")
    serve.add_argument("--backend", choices=CHOICES, default=DEFAULT_BACKEND)
    serve.add_argument("--workers", type=int, default=1, help="worker processes (each loads the market)")
    serve.add_argument("--threads", type=int, help="backtests computing at once per worker "
                                                   "(default: the CPU count, 2 to 8)")
    serve.add_argument("--timeout", type=float, default=120.0, help="seconds one request may compute (503 after)")
    serve.add_argument("--max-days", type=int, default=20_000, dest="max_days",
                       help="most days one backtest may span (0: no limit)")
    serve.add_argument("--log-level", default="info", dest="log_level")
    serve.set_defaults(func=_cmd_serve)

    data = sub.add_parser("data", help="make or check market data")
    data_sub = data.add_subparsers(dest="data_command", required=True)
    synth = data_sub.add_parser("synth", help="write the built-in synthetic market as Parquet")
    synth.add_argument("--out", required=True, help="folder to write <TICKER>.parquet into")
    synth.add_argument("--seed", type=int, default=DEFAULT_SEED)
    synth.set_defaults(func=_cmd_data_synth)
    check = data_sub.add_parser("check", help="validate a data folder and summarise it")
    check.add_argument("path")
    check.set_defaults(func=_cmd_data_check)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except GpubtError as exc:
        where = f" at {exc.path}" if exc.path else ""
        err_console.print(f"[red]error[/]{escape(where)}: {escape(exc.message)}")
        return 2
    except (OSError, json.JSONDecodeError) as exc:
        err_console.print(f"[red]error[/]: {escape(str(exc))}")
        return 2


if __name__ == "__main__":
    sys.exit(main())
