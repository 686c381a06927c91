"""The examples on the built-in market equal their stored golden results (spec §7 fields).

A difference here is a change of results: find out which side is wrong, and regenerate
(`python -m tests.golden`) only when the change is deliberate.
"""

from __future__ import annotations

import math

import pytest

from tests.golden import EXAMPLES, compute, golden_path, load

REL = 1e-9


def _close(a: object, b: object, where: str) -> None:
    if isinstance(a, dict) and isinstance(b, dict):
        assert a.keys() == b.keys(), where
        for key in a:
            _close(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, list) and isinstance(b, list):
        assert len(a) == len(b), f"{where}: {len(a)} != {len(b)} items"
        for i, (x, y) in enumerate(zip(a, b)):
            _close(x, y, f"{where}[{i}]")
    elif isinstance(a, float) and isinstance(b, (int, float)) and not isinstance(b, bool):
        assert math.isclose(a, b, rel_tol=REL, abs_tol=1e-12), f"{where}: {a} != {b}"
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.stem)
def test_example_matches_golden(example):
    assert golden_path(example).exists(), "missing golden file: run python -m tests.golden"
    result = compute(example)
    golden = load(example)
    _close(result, golden, example.stem)
    assert result["metrics"]["days"] > 3000
    assert result["allocations"], "an example that never holds anything tests nothing"


def test_there_are_five_examples():
    assert len(EXAMPLES) >= 5
