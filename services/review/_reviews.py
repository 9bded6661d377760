"""A steward's decisions on possible matches, in ``reviews.db`` (SQLite) in the node's data folder.

One row per job and record: the latest decision wins (a steward may change their mind). The
file never leaves the agency; ``export_labels`` writes the labels file (``linkage.matching._labels``).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import polars as pl

from linkage.errors import InputError
from linkage.matching._labels import DECISIONS, LABEL_COLUMNS

REVIEWS_FILE = "reviews.db"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS decisions (
    job TEXT NOT NULL, record_id TEXT NOT NULL, reference TEXT NOT NULL, score REAL NOT NULL,
    decision TEXT NOT NULL CHECK (decision IN ('same', 'different', 'unsure')),
    decided TEXT NOT NULL, reviewer TEXT NOT NULL,
    PRIMARY KEY (job, record_id)
)
"""
_LABEL_SCHEMA = {
    "job": pl.String, "record_id": pl.String, "reference": pl.String, "score": pl.Float64,
    "decision": pl.String, "decided": pl.String,
}  # fmt: skip


def _utc_now() -> datetime:
    return datetime.now(UTC)


class ReviewStore:
    """Decisions of one node's stewards. Reading an absent store gives no decisions and creates nothing."""

    def __init__(self, path: Path, *, now: Callable[[], datetime] = _utc_now) -> None:
        self._path = path
        self._now = now

    @property
    def path(self) -> Path:
        return self._path

    @contextmanager
    def _connection(self, *, writable: bool) -> Iterator[sqlite3.Connection]:
        try:
            if writable:
                conn = sqlite3.connect(self._path, timeout=30)
                conn.execute(_SCHEMA)
            else:
                conn = sqlite3.connect(self._path.resolve().as_uri() + "?mode=ro", uri=True, timeout=30)
        except sqlite3.Error as exc:
            raise InputError(f"{self._path}: cannot open the reviews file ({exc})") from None
        try:
            with conn:
                yield conn
        except sqlite3.Error as exc:
            raise InputError(f"{self._path}: reviews file unreadable or unwritable ({exc})") from None
        finally:
            conn.close()

    def decide(self, *, job: str, record_id: str, reference: str, score: float, decision: str, reviewer: str) -> None:
        if decision not in DECISIONS:
            raise InputError(f"decision must be one of {', '.join(DECISIONS)}")
        decided = self._now().astimezone(UTC).isoformat(timespec="seconds")
        with self._connection(writable=True) as conn:
            conn.execute(
                "INSERT INTO decisions VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (job, record_id) DO UPDATE SET"
                " reference = excluded.reference, score = excluded.score, decision = excluded.decision,"
                " decided = excluded.decided, reviewer = excluded.reviewer",
                (job, record_id, reference, float(score), decision, decided, reviewer),
            )

    def decisions(self, job: str | None = None) -> pl.DataFrame:
        """The labels columns (``LABEL_COLUMNS``), one row per reviewed record, by job and record."""
        if not self._path.is_file():
            return pl.DataFrame(schema=_LABEL_SCHEMA)
        where, params = (" WHERE job = ?", (job,)) if job is not None else ("", ())
        with self._connection(writable=False) as conn:
            rows = conn.execute(
                f"SELECT {', '.join(LABEL_COLUMNS)} FROM decisions{where} ORDER BY job, record_id", params
            ).fetchall()
        return pl.DataFrame(rows, schema=_LABEL_SCHEMA, orient="row")


def export_labels(data_dir: Path, out: Path, *, job: str | None = None) -> int:
    """Write the decisions kept in ``data_dir`` as a labels CSV file; returns how many rows."""
    labels = ReviewStore(data_dir / REVIEWS_FILE).decisions(job)
    out.parent.mkdir(parents=True, exist_ok=True)
    labels.write_csv(out)
    return labels.height
