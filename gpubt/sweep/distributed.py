"""Sweeps on Dask: one task per chunk, computed by a worker that loads the market itself.

The spec (a few lists and the base request) is sent to every worker once; a task carries only
its variant range. A worker builds the market through `sweep_market` from the same source as a
local run (the built-in market, or the same folder/file and tickers; a `Market` object given to
the Python API is scattered), and memoises it per process, so results equal a local run's.

A worker that dies mid-sweep (killed, out of memory, its machine gone) loses its running tasks;
the scheduler reschedules them on the remaining or restarted workers (up to its
``allowed-failures``), and tasks that raise are retried ``retries`` times. The driver dedupes
by variant index when merging, so every variant is in the result exactly once.

    dask scheduler                       # on one machine: tcp://HOST:8786
    dask worker tcp://HOST:8786          # on each worker machine (gpubt installed, data reachable)
    gpubt sweep spec.json --scheduler tcp://HOST:8786 --out results.parquet
    gpubt sweep spec.json --local-gpus 4 # one dask-cuda worker per GPU of this machine
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from gpubt.data.market import Market
from gpubt.errors import GpubtError
from gpubt.sweep.spec import SweepSpec

RETRIES = 3
# One chunk at a time per worker process, each single-threaded: N workers on N cores instead of
# N thread pools fighting over them (Dask already pins OpenMP/MKL/OpenBLAS to one thread).
WORKER_ENV = {"POLARS_MAX_THREADS": "1", "NUMBA_NUM_THREADS": "1"}

_MARKETS: dict[Any, Market] = {}  # per worker process: (source, tickers) -> market


def _import_distributed() -> Any:
    try:
        import distributed
    except ImportError:
        raise GpubtError(
            "distributed sweeps need Dask: pip install 'gpubt[dist]' (dask[distributed])",
            "scheduler",
        ) from None
    return distributed


@dataclass
class DaskSession:
    client: Any
    cluster: Any = None
    address: str = ""

    def describe(self) -> str:
        workers = len(self.client.scheduler_info(n_workers=-1).get("workers", {})) if self.client else 0
        kind = type(self.cluster).__name__ if self.cluster is not None else "scheduler"
        return f"dask {kind} {self.address} ({workers} workers)"


def _local_cuda_cluster(gpus: int) -> Any:
    """dask-cuda's LocalCUDACluster: one worker process per GPU, each seeing only its own device
    (CUDA_VISIBLE_DEVICES), so a worker's fused kernels run on its GPU."""
    try:
        from dask_cuda import LocalCUDACluster
    except ImportError:
        raise GpubtError(
            "--local-gpus needs dask-cuda on a machine with CUDA devices: pip install dask-cuda "
            "(or use --local-workers N for CPU worker processes)",
            "local_gpus",
        ) from None
    return LocalCUDACluster(
        n_workers=gpus, threads_per_worker=1, host="127.0.0.1", dashboard_address="127.0.0.1:0", env=WORKER_ENV,
    )


@contextlib.contextmanager
def dask_session(
    client: Any = None, scheduler: str | None = None, local_workers: int | None = None,
    local_gpus: int | None = None,
) -> Iterator[DaskSession]:
    """A client: the one given, one connected to ``scheduler``, a LocalCluster of
    ``local_workers`` single-threaded worker processes on 127.0.0.1, or a LocalCUDACluster of
    one worker per GPU for ``local_gpus`` (clusters made here are closed afterwards)."""
    if client is not None:
        yield DaskSession(client, None, str(getattr(client.scheduler, "address", "")))
        return
    distributed = _import_distributed()
    if scheduler:
        try:
            own = distributed.Client(scheduler, timeout="30s")
        except OSError as exc:
            raise GpubtError(f"cannot reach the Dask scheduler at {scheduler}: {exc}", "scheduler") from None
        try:
            yield DaskSession(own, None, scheduler)
        finally:
            own.close()
        return
    if local_gpus is not None:
        if isinstance(local_gpus, bool) or not isinstance(local_gpus, int) or local_gpus < 1:
            raise GpubtError(f"local GPUs must be a positive integer, got {local_gpus!r}", "local_gpus")
        cluster = _local_cuda_cluster(local_gpus)
    elif not local_workers or local_workers < 1:
        raise GpubtError(f"local workers must be a positive integer, got {local_workers!r}", "local_workers")
    else:
        cluster = distributed.LocalCluster(
            n_workers=local_workers, threads_per_worker=1, processes=True, host="127.0.0.1",
            dashboard_address="127.0.0.1:0", env=WORKER_ENV,
        )
    own = distributed.Client(cluster)
    try:
        yield DaskSession(own, cluster, cluster.scheduler_address)
    finally:
        own.close()
        cluster.close()


def chunk_task(spec: SweepSpec, lo: int, hi: int, source: Market | str | None, backend: str) -> pl.DataFrame:
    """What a worker runs for one chunk."""
    from gpubt.sweep.run import run_chunk

    return run_chunk(spec, lo, hi, worker_market(spec, source), backend)


def worker_market(spec: SweepSpec, source: Market | str | None) -> Market:
    """The sweep's market in this process, loaded once per source and ticker set."""
    from gpubt.sweep.run import sweep_market

    if isinstance(source, Market):
        return source
    key = (source, spec.tickers, spec.benchmarks)
    market = _MARKETS.get(key)
    if market is None:
        market = _MARKETS[key] = sweep_market(spec, source)
    return market


def run_chunks(
    client: Any,
    spec: SweepSpec,
    chunks: Sequence[tuple[int, int, int]],
    source: Market | str | Path | None,
    backend: str,
    retries: int = RETRIES,
) -> Iterator[tuple[int, pl.DataFrame]]:
    """Submit one task per (index, lo, hi) chunk and yield (index, table) as they finish."""
    distributed = _import_distributed()
    if not chunks:
        return
    if isinstance(source, Path):
        source = str(source)
    # The spec travels with each task (a few KB pickled: random samples are redrawn from their
    # seed), so a restarted worker never misses it; a Market object (Python API) is scattered to
    # every worker once (prefer a data path for clusters: each worker then loads it itself).
    source_ref = client.scatter(source, broadcast=True, hash=False) if isinstance(source, Market) else source
    token = uuid.uuid4().hex[:8]
    futures = {
        client.submit(
            chunk_task, spec, lo, hi, source_ref, backend,
            key=f"gpubt-sweep-{token}-{index}", retries=retries, pure=False,
        ): index
        for index, lo, hi in chunks
    }
    try:
        for future in distributed.as_completed(futures):
            index = futures[future]
            try:
                frame = future.result()
            except GpubtError:
                raise
            except distributed.KilledWorker as exc:
                raise GpubtError(
                    f"chunk {index} was lost with {RETRIES}+ workers that died running it "
                    f"(out of memory? lower --memory): {exc}"
                ) from None
            future.release()
            yield index, frame
    finally:  # stopped early (an error, Ctrl-C): nothing of this sweep keeps running
        pending = [f for f in futures if not f.done()]
        if pending:
            with contextlib.suppress(Exception):
                client.cancel(pending)
