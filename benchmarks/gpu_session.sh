#!/usr/bin/env bash
# The GPU checks of one lent device session, in one command (device time is scarce):
#   the sweep benchmark (numba, cupy and auto: the 65,536 and 1,048,576 grids and the batch of
#   1,000 strategies of 10 nodes, same machine, same run), the gpu-marked tests, the cupy
#   backend check (parity, scenario timings against numba, the device time kernel by kernel) and
#   the cupy parity suite, and a sweep on a dask-cuda worker (--local-gpus); each step has a time
#   limit (env *_S seconds).
# Packages the device image lacks (polars, pydantic, orjson, dask, dask-cuda) travel as wheels in
# .whl/ (benchmarks/gpu_wheels.sh fetches them; ../.library/device/README.md); logs and the
# updated RESULTS.md are written under $OUT.
#   run: bash benchmarks/gpu_session.sh            (carry: [".whl"])
#   STEPS="check tests" bash benchmarks/gpu_session.sh runs only those steps, in that order
#   (check, tests, parity, sweep, dist: --local-gpus on dask-cuda, profile: where a sweep of the
#   65,536 template spends its time and the kernel alone by block size, counters: ncu on that
#   kernel; the last two are not in the default list).
set -uo pipefail
OUT=${OUT:-/tmp/gpubt-gpu}
mkdir -p "$OUT"
if compgen -G ".whl/*.whl" >/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
    export PYTHONPATH=/tmp/site:$PWD
fi
export PYTHONUNBUFFERED=1 PYTHONPATH=${PYTHONPATH:-$PWD}
step() { echo "== $1 ($(date +%T))"; }

step device
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
  nproc
  python3 -c "import numpy, numba, numba_cuda, cupy, polars; print('numpy', numpy.__version__, 'numba', numba.__version__, 'numba-cuda', numba_cuda.__version__, 'cupy', cupy.__version__, 'polars', polars.__version__)"
} 2>&1 | tee "$OUT/device.txt"

sweep() {
    step "sweep benchmark"
    timeout "${SWEEP_S:-160}" python3 benchmarks/bench_sweep.py --backends numba,cupy,auto --local-workers 0 --huge --batch 2>&1 | tee "$OUT/bench_sweep.log" | tail -8
}

tests() {
    step "gpu tests"
    timeout "${GPU_TESTS_S:-150}" python3 -m pytest -q -p no:cacheprovider -rs -m gpu -k "not local_gpus" tests/test_sweep_device.py tests/test_cupy_backend.py 2>&1 | tee "$OUT/gpu_tests.log" | tail -25
}

check() {
    step "cupy backend check"
    timeout "${BACKEND_S:-180}" python3 benchmarks/cupy_backend_check.py --runs 3 --kernels 1000x1000,stress 2>&1 | tee "$OUT/cupy_backend.log" | grep -v -i warn | tail -60
}

dist() {
    step "sweep on a dask-cuda worker"
    timeout "${DIST_S:-120}" python3 -m pytest -q -p no:cacheprovider -rs -m gpu -k local_gpus tests/test_sweep_device.py 2>&1 | tee "$OUT/dist.log" | tail -5
}

parity() {
    step "parity on cupy"
    PARITY_EXAMPLES=${PARITY_EXAMPLES:-30} timeout "${PARITY_S:-60}" python3 -m pytest -q -p no:cacheprovider -x -k cupy tests/test_parity.py 2>&1 | tee "$OUT/parity.log" | tail -15
}

profile() {
    step "sweep profile"
    timeout "${PROFILE_S:-120}" python3 benchmarks/gpu_sweep_profile.py --grid full 2>&1 | tee "$OUT/profile.log" | grep -v -i warn
    timeout "${PROFILE_S:-120}" python3 benchmarks/gpu_sweep_profile.py --grid huge --sweeps 3 2>&1 | tee "$OUT/profile_huge.log" | grep -v -i warn
}

counters() {
    step "ncu on the sweep kernel"
    local ncu
    ncu=$(command -v ncu || ls /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | head -1)
    timeout "${COUNTERS_S:-150}" "$ncu" --clock-control none --kernel-name regex:_kernel --launch-skip 1 --launch-count 1 \
        --section SpeedOfLight --section Occupancy --section WarpStateStats --section LaunchStats \
        --section MemoryWorkloadAnalysis --section SchedulerStats \
        python3 benchmarks/gpu_sweep_profile.py --launch > "$OUT/ncu.txt" 2>&1
    grep -E "Duration|Registers Per Thread|Achieved Occupancy|DRAM Throughput|Issued Warp" "$OUT/ncu.txt"
}

for s in ${STEPS:-check tests parity sweep dist}; do "$s"; done

cp benchmarks/RESULTS.md "$OUT/RESULTS.md"
step done
