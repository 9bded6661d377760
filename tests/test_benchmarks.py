"""Every benchmark script runs, at a small size, to its figures line: a benchmark that no longer runs
against the code (an argument renamed, a header limit too small) fails here, not months later."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).parent.parent / "benchmarks"

SMALL = {
    "encode": ["--records", "3000", "--repeat", "1"],
    "scale": ["--sizes", "2000"],
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
