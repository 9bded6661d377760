"""The coordinator's jobs, in SQLite in its data folder, so that they outlive a restart.

A job moves created → fetching → linking → delivering → releasing → done, or to failed with a
reason. Deliveries are pending at the nodes until every agency's is in; only then are they released,
so no agency holds results of a job that is not finished. A coordinator that starts and finds a job
in an unfinished state marks it failed, naming the state it was in; a failed job can be resumed
(``linkage job deliver --job J``): fetched and linked again, or its missing deliveries made.
"""

from __future__ import annotations

import builtins
import datetime as dt
import json
import secrets
import sqlite3
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

FINAL_STATES = ("done", "failed")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY, created TEXT NOT NULL, finished TEXT, state TEXT NOT NULL,
    agencies TEXT NOT NULL, settings TEXT NOT NULL, error TEXT, summary TEXT
);
CREATE TABLE IF NOT EXISTS deliveries (
    job TEXT NOT NULL, agency TEXT NOT NULL, rows INTEGER NOT NULL, digest TEXT NOT NULL, delivered TEXT NOT NULL,
    PRIMARY KEY (job, agency)
);
"""
_RELEASED = "ALTER TABLE deliveries ADD COLUMN released TEXT"


@dataclass(frozen=True)
class Job:
    id: str
    created: str
    finished: str | None
    state: str
    agencies: tuple[str, ...]
    settings: dict[str, Any]
    error: str | None
    summary: str | None
    delivered: tuple[str, ...]
    released: tuple[str, ...] = ()
    digests: tuple[tuple[str, str], ...] = ()  # (agency, digest) of each delivery

    def digest_of(self, agency: str) -> str:
        return dict(self.digests).get(agency, "")


class JobStore:
    def __init__(self, path: Path, *, now: Callable[[], dt.datetime] | None = None) -> None:
        self._path = path
        self._now = now or (lambda: dt.datetime.now(dt.UTC))
        self._lock = threading.Lock()
        path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as db:
            db.executescript(_SCHEMA)
            if "released" not in {row[1] for row in db.execute("PRAGMA table_info(deliveries)")}:
                db.execute(_RELEASED)

    def _connect(self) -> sqlite3.Connection:
        return sqlite3.connect(self._path, timeout=30)

    def _time(self) -> str:
        return self._now().isoformat(timespec="seconds")

    def create(self, agencies: list[str], settings: dict[str, Any]) -> str:
        job_id = f"job-{self._now().strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}"
        with self._lock, self._connect() as db:
            db.execute(
                "INSERT INTO jobs (id, created, state, agencies, settings) VALUES (?, ?, 'created', ?, ?)",
                (job_id, self._time(), json.dumps(agencies), json.dumps(settings, sort_keys=True, default=sorted)),
            )
        return job_id

    def set_state(self, job_id: str, state: str, *, error: str | None = None, summary: str | None = None) -> None:
        finished = self._time() if state in FINAL_STATES else None
        with self._lock, self._connect() as db:
            db.execute(
                "UPDATE jobs SET state = ?, error = COALESCE(?, error), summary = COALESCE(?, summary),"
                " finished = COALESCE(?, finished) WHERE id = ?",
                (state, error, summary, finished, job_id),
            )

    def delivered(self, job_id: str, agency: str, rows: int, digest: str) -> None:
        with self._lock, self._connect() as db:
            db.execute(
                "INSERT OR REPLACE INTO deliveries (job, agency, rows, digest, delivered, released) VALUES (?, ?, ?, ?, ?, NULL)",
                (job_id, agency, rows, digest, self._time()),
            )

    def released(self, job_id: str, agency: str) -> None:
        with self._lock, self._connect() as db:
            db.execute("UPDATE deliveries SET released = ? WHERE job = ? AND agency = ?", (self._time(), job_id, agency))

    def list(self, limit: int = 200) -> list[Job]:
        with self._connect() as db:
            ids = [i for (i,) in db.execute("SELECT id FROM jobs ORDER BY created DESC, id DESC LIMIT ?", (limit,))]
        return [job for job in map(self.get, ids) if job is not None]

    def get(self, job_id: str) -> Job | None:
        with self._connect() as db:
            row = db.execute(
                "SELECT id, created, finished, state, agencies, settings, error, summary FROM jobs WHERE id = ?", (job_id,)
            ).fetchone()
            if row is None:
                return None
            deliveries = db.execute(
                "SELECT agency, digest, released FROM deliveries WHERE job = ? ORDER BY agency", (job_id,)
            ).fetchall()
        delivered = tuple(a for a, _, _ in deliveries)
        released = tuple(a for a, _, r in deliveries if r)
        digests = tuple((a, d) for a, d, _ in deliveries)
        return Job(
            row[0],
            row[1],
            row[2],
            row[3],
            tuple(json.loads(row[4])),
            json.loads(row[5]),
            row[6],
            row[7],
            delivered,
            released,
            digests,
        )

    def unfinished(self) -> builtins.list[Job]:
        with self._connect() as db:
            ids = [i for (i,) in db.execute("SELECT id FROM jobs WHERE state NOT IN ('done', 'failed') ORDER BY created")]
        return [job for job in map(self.get, ids) if job is not None]

    def fail_interrupted(self) -> builtins.list[Job]:
        """Mark every unfinished job failed: the coordinator stopped while it ran."""
        interrupted = self.unfinished()
        for job in interrupted:
            got = f"; results had reached {', '.join(job.delivered)}" if job.delivered else "; no agency had received results"
            self.set_state(
                job.id,
                "failed",
                error=f"coordinator stopped while the job was {job.state}{got}; resume it with `linkage job deliver --job {job.id}`",
            )
        return interrupted
