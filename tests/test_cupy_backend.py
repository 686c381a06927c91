"""The CUDA (`cupy`) backend: equal to the CPU Numba backend, checked three ways.

* Numba's CUDA simulator, on this CPU: each test runs in a subprocess with NUMBA_ENABLE_CUDASIM=1
  (the switch must be set before Numba's CUDA target is imported), where the backend's array
  module is NumPy and its kernels run thread by thread in Python: every primitive of `PRIMITIVES`
  (the CPU backend's own primitive graph, with gaps, zeros, constants and NaN constants) equal
  to the Numba backend as on a device (below), also in halves under a tiny memory budget, and
  every example end to end.
* PTX for sm_90 (an H100) of every kernel, compiled on this CPU with libNVVM: catches constructs
  the CUDA target refuses and the simulator accepts, and checks that no FMA is contracted.
* On a real device only (`gpu` mark): primitives and the indicator catalogue on the synthetic
  market, and the examples, against the Numba backend. Bit-equal, except nodes computed through
  pow, log or exp, which CUDA's libm may round differently by an ulp (1e-12 relative there).
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from functools import cache
from pathlib import Path

import numpy as np
import pytest

from gpubt.backends import AUTO_GPU_MIN_VARIANTS, AUTO_ORDER, GPU_BACKENDS, REGISTRY, gpu_sweeps, kernels, pick, usable
from gpubt.ir.nodes import Node, topological

ROOT = Path(__file__).resolve().parents[1]
USABLE, WHY = usable("cupy")
LIBM = frozenset({"pow", "log", "exp"})  # CUDA's libm is not the CPU's: last-ulp differences


def simulate(code: str, **env: str) -> str:
    """Run `code` in a fresh interpreter under Numba's CUDA simulator; its stdout."""
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=ROOT,
        env={**os.environ, "NUMBA_ENABLE_CUDASIM": "1", "PYTHONPATH": str(ROOT), **env},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-6000:]
    return done.stdout


# -- registry ---------------------------------------------------------------------------------------


def test_registered_and_never_picked_by_auto_for_one_backtest() -> None:
    """numba's signals beat cupy's at every scenario on an H200 and an H100 (benchmarks/RESULTS.md):
    auto says so."""
    assert REGISTRY["cupy"] == ("gpubt.backends.cupy_gpu", "CupyBackend")
    assert "cupy" not in AUTO_ORDER and "cupy" in GPU_BACKENDS
    name, why = pick("auto")
    assert name == "numba"
    assert gpu_sweeps("cupy") and not gpu_sweeps("numba") and gpu_sweeps("auto") == USABLE
    # a sweep too small to fill a device runs on the CPU kernel under auto, never under cupy
    assert not gpu_sweeps("auto", AUTO_GPU_MIN_VARIANTS - 1) and gpu_sweeps("cupy", 10)
    assert gpu_sweeps("auto", AUTO_GPU_MIN_VARIANTS) == USABLE


def test_asking_for_cupy_without_a_device_says_why() -> None:
    if USABLE:
        pytest.skip("cupy is usable here")
    from gpubt.backends import get_backend
    from gpubt.errors import GpubtError

    with pytest.raises(GpubtError, match=r"backend 'cupy' cannot run here \(.+\); use --backend auto"):
        get_backend("cupy")


def test_auto_under_the_simulator_picks_numba_and_sweeps_on_the_gpu() -> None:
    out = simulate("""
        from gpubt.backends import get_backend, gpu_sweeps, pick
        name, why = pick("auto")
        print(name, get_backend("auto").name, gpu_sweeps("auto"), gpu_sweeps("auto", 1000), why)
    """)
    assert out.split()[:4] == ["numba", "numba", "True", "False"]
    assert "cupy usable but slower for one backtest's signals" in out


# -- the simulator ----------------------------------------------------------------------------------


def test_every_primitive_equals_numba_bit_for_bit_in_the_simulator() -> None:
    """The CPU backend's primitive graph (1,343 nodes over 260 days: every primitive, missing values,
    constants, NaN constants, windows 1–21) whole, then a node of each primitive whole and in halves
    under a budget of a few rows (the simulator runs a Python call per thread: the halves are
    checked on the smaller graph). pow, log and exp are the device's own (NumPy's in the
    simulator) against the C library's on the CPU: what reads them is equal within 1e-12
    (`_assert_equal`), as on an H100."""
    out = simulate("""
        import os
        import numpy as np
        from gpubt.backends.cupy_gpu import CupyBackend
        from gpubt.backends.numba_cpu import NumbaBackend
        from gpubt.ir.nodes import PRIMITIVES
        from tests.test_cupy_backend import _assert_equal
        from tests.test_numba_backend import _primitive_graph, _random_setup

        market, branches, _, _ = _random_setup()
        cases = _primitive_graph()
        assert set(cases) == set(PRIMITIVES) and all(cases.values())
        nodes = list(dict.fromkeys(n for ns in cases.values() for n in ns))
        few = list(dict.fromkeys(ns[-1] for ns in cases.values()))
        want = NumbaBackend().evaluate(nodes, market, branches)
        for graph, budget in ((nodes, None), (few, None), (few, "20000")):
            if budget:
                os.environ["GPUBT_GPU_MEMORY"] = budget  # a few rows per launch
            backend = CupyBackend()
            got = backend.evaluate(graph, market, branches)
            for n in graph:
                _assert_equal(got[n], want[n], n)
            print(backend.launches)
    """)
    whole, few, halves = map(int, out.split())
    assert whole < 120 and halves > few  # a launch per group of the plan: far fewer than 1,343 nodes


def test_condition_lists_across_day_tiles_equal_numba_in_the_simulator() -> None:
    """`lines` nodes (every line code, forDays up to 10, crosses, date ranges, NaN thresholds) over
    600 days, three tiles of 256 (the last partial), asked for from days inside and on the edges
    of tiles: each tile's thread reads the days before its tile as the CPU's one pass does. Last,
    under a budget of a few rows, so the nodes run in halves, each half with its own inputs."""
    out = simulate("""
        import os
        import numpy as np
        from gpubt.backends.cupy_gpu import CupyBackend
        from gpubt.backends.numba_cpu import NumbaBackend
        from tests.test_numba_backend import _line_lists, _random_setup

        market, branches, s, b = _random_setup(600)
        fused = _line_lists(b, s)
        for first, budget in ((None, None), (1, None), (250, None), (256, None), (300, None), (599, None),
                              (600, None), (300, "40000")):
            if budget:
                os.environ["GPUBT_GPU_MEMORY"] = budget
            asked = None if first is None else dict.fromkeys(fused, first)
            backend = CupyBackend()
            got = backend.evaluate([*fused, s["g"]], market, branches, asked)
            want = NumbaBackend().evaluate([*fused, s["g"]], market, branches, asked)
            for node in [*fused, s["g"]]:
                np.testing.assert_array_equal(got[node], want[node], err_msg=f"{first}: {node.params}")
            print(backend.launches)
    """)
    launches = list(map(int, out.split()))
    assert launches[-1] > launches[0]  # the budget split the graph


def test_examples_end_to_end_equal_numba_in_the_simulator() -> None:
    """Every example, the whole pipeline (signals on the simulated device), on the short synthetic
    market: the same response as the Numba backend, to the character."""
    out = simulate("""
        from gpubt.engine import run_backtest
        from gpubt.schema.parse import parse_request
        from tests.golden import EXAMPLES
        from tests.test_parity import short_market

        market = short_market()
        for example in EXAMPLES:
            got = run_backtest(parse_request(example.read_text()), market, "cupy")
            want = run_backtest(parse_request(example.read_text()), market, "numba")
            assert got.to_json() == want.to_json(), example.stem
            print(example.stem)
    """)
    assert len(out.split()) >= 5


def test_small_graph_boundary_encoding_in_the_simulator() -> None:
    """Outputs that are constants, leaves, date ranges and unread intermediates; a node twice."""
    simulate("""
        import math
        import numpy as np
        from gpubt.backends.cupy_gpu import CupyBackend
        from gpubt.ir.nodes import Builder
        from tests.conftest import make_market

        m = make_market({"A": [1, 2, 4, 3, 5], "B": [None, 2, 2, 1, 2]})
        b = Builder()
        x, y = b.price("A"), b.price("B")
        three = b.node("add", (), (b.const(1.0), b.const(2.0)))
        nodes = [x, b.const(2.5), three, b.node("add", (), (x, y)), b.node("gt", (), (y, b.const(1.5))),
                 b.node("const", (math.inf,)), b.node("date_between", (1, 5, 1, 6)), x]
        got = CupyBackend().evaluate(nodes, m, {})
        assert got[nodes[0]].tolist() == [1, 2, 4, 3, 5] and got[nodes[0]].flags.writeable
        assert got[nodes[1]].tolist() == [2.5] * 5 and got[nodes[2]].tolist() == [3.0] * 5
        assert np.isnan(got[nodes[3]][0]) and got[nodes[3]][1:].tolist() == [4, 6, 4, 7]
        assert got[nodes[4]].dtype == np.int8 and got[nodes[4]].tolist() == [-1, 1, 1, 0, 1]
        assert np.isnan(got[nodes[5]]).all()
        assert got[nodes[6]].tolist() == [0, 1, 1, 0, 0]
        assert CupyBackend().evaluate([], m, {}) == {}
    """)


# -- the CPU loops the GPU runs ---------------------------------------------------------------------


@pytest.mark.parametrize("n", [1, 3, 35, 600, 2000])
def test_plain_sum_loops_equal_the_blocked_cpu_kernels(n: int) -> None:
    """The GPU's per-row sums are the plain loops the CPU's vectorised kernels are blocked from."""
    rng = np.random.default_rng(n)
    x = np.exp(rng.normal(0, 6, 1500)) * rng.choice([-1.0, 1.0], 1500)
    x[rng.random(1500) < 0.01] = np.nan
    weights = rng.normal(size=n)
    out = np.empty(x.size)
    for divisor, blocked in ((1.0, kernels.rolling_sum), (float(n), kernels.rolling_mean)):
        kernels._unit_sums_into(x, n, divisor, out)
        np.testing.assert_array_equal(out, blocked(x, n))
    kernels._rolling_dot_into(x, weights, False, out)
    np.testing.assert_array_equal(out, kernels.rolling_dot(x, weights))
    x[200:260] = 3.25
    kernels._rolling_std_into(x, n, out)
    np.testing.assert_array_equal(out, kernels.rolling_std(x, n))


# -- PTX for the real device ------------------------------------------------------------------------


@pytest.mark.usefixtures("stand_in_hopper")
def test_every_kernel_compiles_to_ptx_for_sm90_without_fma() -> None:
    from gpubt.backends import cuda_kernels

    assert {k.__name__ for k in cuda_kernels.KERNELS} == set(cuda_kernels.SIGNATURES)
    for name in cuda_kernels.SIGNATURES:
        code = cuda_kernels.ptx(name, cc=(9, 0))
        assert ".target sm_90" in code, name
        assert "fma.rn" not in code, f"{name}: a contracted multiply-add rounds unlike the CPU"


# -- a real device ----------------------------------------------------------------------------------

needs_device = pytest.mark.skipif(not USABLE, reason=f"cupy backend unusable: {WHY}")


def _libm(node: Node) -> bool:
    return any(n.op in LIBM for n in topological([node]))


def _assert_equal(got: np.ndarray, want: np.ndarray, node: Node) -> None:
    assert got.dtype == want.dtype and got.shape == want.shape, node
    if got.dtype == np.int8 or not _libm(node):
        np.testing.assert_array_equal(got, want, err_msg=repr(node))
    else:
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-15, err_msg=repr(node))


@cache
def _synthetic_graph() -> tuple[object, list[Node]]:
    from gpubt.data.synthetic import synthetic_market
    from gpubt.indicators import expand, ticker_source
    from gpubt.ir.nodes import Builder
    from gpubt.schema.catalogue import METRICS

    market = synthetic_market()
    b = Builder()
    nodes = []
    for ticker in ("SPY", "TQQQ", "QQQ/SPY", "BIL"):
        src = ticker_source(b, ticker)
        for metric in METRICS:
            for window in (2, 14, 50, 200):
                node = expand(b, metric.name, src, window)
                nodes += [node, b.node("gt", (), (node, b.const(0.5))), b.node("lt", (), (b.const(-1.0), node))]
    return market, list(dict.fromkeys(nodes))


@pytest.mark.gpu
@needs_device
def test_device_primitives_equal_numba() -> None:
    from gpubt.backends.cupy_gpu import CupyBackend
    from gpubt.backends.numba_cpu import NumbaBackend
    from tests.test_numba_backend import _primitive_graph, _random_setup

    market, branches, _, _ = _random_setup()
    nodes = list(dict.fromkeys(n for ns in _primitive_graph().values() for n in ns))
    got = CupyBackend().evaluate(nodes, market, branches)
    want = NumbaBackend().evaluate(nodes, market, branches)
    for node in nodes:
        _assert_equal(got[node], want[node], node)


@pytest.mark.gpu
@needs_device
def test_device_catalogue_on_the_synthetic_market_equals_numba() -> None:
    from gpubt.backends.cupy_gpu import CupyBackend
    from gpubt.backends.numba_cpu import NumbaBackend

    market, nodes = _synthetic_graph()
    got = CupyBackend().evaluate(nodes, market, {})
    want = NumbaBackend().evaluate(nodes, market, {})
    for node in nodes:
        _assert_equal(got[node], want[node], node)


def _examples() -> list[Path]:
    from tests.golden import EXAMPLES

    return EXAMPLES


@pytest.mark.gpu
@needs_device
@pytest.mark.parametrize("example", _examples(), ids=lambda p: p.stem)
def test_device_examples_equal_numba(example: Path) -> None:
    from gpubt.data.synthetic import synthetic_market
    from gpubt.engine import run_backtest
    from gpubt.schema.parse import parse_request
    from tests.test_parity import differences

    market = synthetic_market()
    got = run_backtest(parse_request(example.read_text()), market, "cupy")
    want = run_backtest(parse_request(example.read_text()), market, "numba")
    assert differences(want.to_dict(), got.to_dict()) == []


# -- a CUDA failure at run time ---------------------------------------------------------------------


class _FailingDevice:
    """A GPU backend whose device fails mid-run (as a launch failure or an out-of-memory would)."""

    name = "cupy"

    def evaluate(self, outputs, market, branches, first=None):  # noqa: ANN001, ANN201
        raise RuntimeError("cudaErrorLaunchFailure: unspecified launch failure")


def test_a_cuda_failure_falls_back_to_the_cpu_with_a_warning(monkeypatch, caplog) -> None:
    from gpubt import engine
    from gpubt.data.synthetic import synthetic_market
    from gpubt.schema.parse import parse_request

    strategy = parse_request((ROOT / "examples" / "tqqq_rsi.json").read_text())
    market = synthetic_market()
    expected = engine.run_backtest(strategy, market, "numba")
    real = engine.get_backend
    monkeypatch.setattr(engine, "get_backend", lambda name: _FailingDevice() if name == "cupy" else real(name))
    with caplog.at_level("WARNING", logger="gpubt.engine"):
        got = engine.run_backtest(strategy, market, "cupy")
    assert got.to_json() == expected.to_json()
    assert "backend cupy failed (RuntimeError: cudaErrorLaunchFailure" in caplog.text
    assert "running on numba" in caplog.text
