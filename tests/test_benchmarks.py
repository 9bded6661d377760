"""Every benchmark script runs, at a small size, to its figures line: a benchmark that no longer runs
against the code (an argument renamed, a header limit too small) fails here, not months later."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

BENCHMARKS = Path(__file__).parent.parent / "benchmarks"

SMALL = {
    "encode": ["--records", "3000", "--repeat", "1"],
    "scale": ["--sizes", "2000"],
    "ceiling": ["--sizes", "2000"],
    "query": ["--records", "6000", "--queries", "20", "--fit", "1000"],
    "transfer": ["--records", "3000", "--agency-records", "2000"],
    "compare": ["--n", "500"],
    "quality": ["--people", "300", "--profiles", "match-keys"],
    "scoped": ["--only", "febrl"],
}


@pytest.mark.parametrize("name", sorted(SMALL))
def test_a_benchmark_runs_to_its_figures(name: str, tmp_path: Path) -> None:
    run = subprocess.run(
        [sys.executable, str(BENCHMARKS / f"{name}.py"), *SMALL[name]], capture_output=True, text=True, cwd=tmp_path, timeout=600
    )
    assert run.returncode == 0, run.stderr[-2000:]
    last = run.stdout.strip().splitlines()[-1]
    assert "Python 3" in last and "numba" in last, last  # each prints its machine line last


def test_every_benchmark_is_run_here_or_by_its_own_test() -> None:
    # privacy runs every attack on every profile: over a minute even at 300 people (tests/test_attacks.py
    # runs the attacks themselves).
    scripts = {p.stem for p in BENCHMARKS.glob("*.py") if not p.stem.startswith("_")}
    assert scripts - set(SMALL) == {"privacy"}


def test_the_ceiling_cuts_between_patterns_and_takes_one_partner_each() -> None:
    sys.path.insert(0, str(BENCHMARKS))
    from ceiling import best_f1, best_f1_one_to_one  # type: ignore[import-not-found]  # benchmarks/ is no package

    # three true pairs in all; a pattern with share 2/3 (pairs 0-2), one with share 1/2 (pairs 3-4)
    score = np.array([2 / 3, 2 / 3, 2 / 3, 0.5, 0.5])
    is_match = np.array([1, 1, 0, 1, 0])
    f1, precision, recall = best_f1(score, is_match, 3)
    # no cut-off splits a pattern: 2 of 3 taken (F1 2/3) or all five (3 of 5: F1 0.75)
    assert (f1, precision, recall) == pytest.approx((0.75, 0.6, 1.0))
    # one-to-one: pairs 2 and 4 (record 0 with 12, with 14) lose to pair 0 (record 0 with 10)
    left, right = np.array([0, 1, 0, 2, 0]), np.array([10, 11, 12, 13, 14])
    sources = np.array([0, 0, 0] + [1] * 12)
    f1, precision, recall = best_f1_one_to_one(score, is_match, 3, left, right, sources)
    assert (f1, precision, recall) == pytest.approx((1.0, 1.0, 1.0))
