#!/usr/bin/env bash
# The wheels a lent GPU machine lacks, downloaded into .whl/ to travel with `carry: [".whl"]`
# (../.library/device/README.md; keep .whl/ in .git/info/exclude). Its image has CuPy,
# numba-cuda, NumPy, pyarrow, rich, pandas, pytest and hypothesis, but not Polars, pydantic,
# orjson, nor Dask: dask-cuda 26.10 (for --local-gpus) pins dask and distributed 2026.7.1 through
# its rapids-dask-dependency meta-package, left out (`--no-deps`, names given one by one).
# About 59 MiB in all, of the 64 MiB a call may carry (Polars' runtime is 52 MiB of it).
#   run: bash benchmarks/gpu_wheels.sh        then: bash benchmarks/gpu_session.sh on the device
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .whl
platforms=(--platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64)
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp "${platforms[@]}" \
    -d .whl polars==2.1.0 polars-runtime-32==2.1.0 pydantic==2.14.4 pydantic-core==2.50.5 annotated-types \
    typing-inspection typing-extensions orjson dask==2026.7.1 distributed==2026.7.1 dask-cuda==26.10.0 tornado \
    partd locket tblib zict
du -sh .whl
