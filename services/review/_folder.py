"""What the review pages read from a data folder, and who may read it.

A coordinator's folder holds ``audit.db`` and ``jobs.db``; a node's holds ``node.toml``, ``audit.db``
and ``results/<job>.csv``. Auditor views read the audit log (and jobs.db read-only); every such read
appends one ``audit log read`` entry, signed with the folder's own ``audit.key``, after the entries
were read and verified. Steward views read the node's results and its own input file: nothing
of another agency is held there to show.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import polars as pl

from linkage.errors import AuditError, InputError, LinkageError
from linkage.jobs._config import NodeConfig, load_node_config
from linkage.records._reading import read_records
from linkage.records._schema import Schema
from linkage.trust._audit import (
    AUDIT_KEY_FILE,
    AUDIT_LOG_FILE,
    AUDIT_PUBLIC_KEY_FILE,
    KEYS_FOLDER,
    AuditKey,
    AuditLog,
    AuditPublicKey,
    Entry,
    VerifyReport,
    format_anchor,
    load_public_key,
    parse_anchor,
    parse_time,
    verify,
)
from services.review._chart import HistogramChart, histogram_chart
from services.review._reviews import REVIEWS_FILE, ReviewStore

Kind = Literal["coordinator", "node"]
READ_ACTION = "audit log read"
MAX_QUERY_TEXT = 100  # filter values are logged with each read, cut to this length


# -- the audit log ---------------------------------------------------------------------------------
@dataclass(frozen=True, kw_only=True)
class LogFilters:
    """The timeline's filters, as typed in the form (times as ISO 8601 text, UTC when no zone)."""

    job: str = ""
    actor: str = ""
    agency: str = ""
    action: str = ""
    since: str = ""
    until: str = ""
    reads: bool = False  # show the log's own "audit log read" entries too

    def query(self) -> dict[str, str]:
        """The filters in use, as logged with the read."""
        named = {"job": self.job, "actor": self.actor, "agency": self.agency, "action": self.action,
                 "since": self.since, "until": self.until}  # fmt: skip
        used = {k: v[:MAX_QUERY_TEXT] for k, v in named.items() if v}
        if self.reads:
            used["reads"] = "shown"
        return used


@dataclass(frozen=True, kw_only=True)
class CheckedEntry:
    """An entry with what verification says of it: verified, failed (with the reason) or unverified."""

    entry: Entry
    state: Literal["verified", "failed", "unverified"]
    reason: str


@dataclass(frozen=True, kw_only=True)
class LogRead:
    entries: list[CheckedEntry]
    report: VerifyReport
    anchor: str | None  # SEQ:HASH of the last verified entry, to note down
    hidden_reads: int
    choices: dict[str, list[str]] = field(default_factory=dict)  # jobs, actors, agencies, actions
    error: str | None = None  # the entries could not be listed (the verify report says why)


def _time_filter(text: str, name: str) -> datetime | None:
    if not text:
        return None
    value = text.strip()
    if "T" in value and len(value) in (16, 19):  # a datetime-local field: no zone, read as UTC
        value += "+00:00" if len(value) == 19 else ":00+00:00"
    try:
        return parse_time(value)
    except LinkageError:
        raise InputError(f"{name}: not a time (e.g. 2026-11-23T09:00 or 2026-11-23)") from None


def agencies_named(entry: Entry) -> set[str]:
    """The agencies an entry is about: a node actor's name, and the agency its details name."""
    role, _, name = entry.actor.partition("/")
    named = {name} if role == "node" and name else set()
    for key in ("agency", "recipient", "by"):
        value = entry.details.get(key)
        if isinstance(value, str) and value:
            named.add(value)
    return named


def _states(entries: list[Entry], report: VerifyReport) -> list[CheckedEntry]:
    checked = []
    for entry in entries:
        if report.first_bad is None or entry.seq < report.first_bad:
            checked.append(CheckedEntry(entry=entry, state="verified", reason="hash chain and signature verified"))
        elif entry.seq == report.first_bad:
            checked.append(CheckedEntry(entry=entry, state="failed", reason=report.reason))
        else:
            checked.append(CheckedEntry(entry=entry, state="unverified",
                                        reason=f"after the break at entry {report.first_bad}: cannot be trusted"))  # fmt: skip
    return checked


class AuditReader:
    """Reads, verifies and logs reads of the audit log in a party's folder.

    The public key is ``audit.pub`` beside the log unless the auditor brings their own; the signing
    key ``keys/audit.key`` must be there, since every read is logged (a copy of a log without its keeper's
    key is read with ``linkage audit``, which logs nothing).
    """

    def __init__(self, data_dir: Path, *, public_key: Path | None = None) -> None:
        self._path = data_dir / AUDIT_LOG_FILE
        # The signing key lives apart from the log (``keys/``); an older folder kept it beside the log.
        kept = data_dir / KEYS_FOLDER / AUDIT_KEY_FILE
        self._key_path = kept if kept.is_file() else data_dir / AUDIT_KEY_FILE
        if not self._path.is_file():
            raise AuditError(f"{data_dir}: no audit log ({AUDIT_LOG_FILE}) here")
        if not self._key_path.is_file():
            raise AuditError(
                f"{data_dir}: no {AUDIT_KEY_FILE}; the review pages log every read of the audit log and run where the"
                " log is kept (read a copy with `linkage audit list`)"
            )
        self._public: AuditPublicKey = load_public_key(public_key or data_dir / AUDIT_PUBLIC_KEY_FILE)
        AuditLog(self._path, None)  # refuse a file that is not an audit log now, not at the first page

    @property
    def path(self) -> Path:
        return self._path

    def _log(self) -> AuditLog:
        return AuditLog(self._path, AuditKey.load(self._key_path))

    def read(self, actor: str, filters: LogFilters, *, expected_last: str = "", what: str = "timeline") -> LogRead:
        """Verify the log, list the entries the filters select, then log this read."""
        anchor_given = parse_anchor(expected_last) if expected_last.strip() else None
        log = self._log()
        report = verify(self._path, self._public, expected_last=anchor_given)
        since, until = _time_filter(filters.since, "since"), _time_filter(filters.until, "until")
        error, hidden, checked, choices = None, 0, [], {}
        try:
            everything = log.entries()
            selected = log.entries(
                job=filters.job or None, actor=filters.actor or None, action=filters.action or None, since=since, until=until
            )
        except AuditError as exc:
            error, everything, selected = str(exc), [], []
        if filters.agency:
            selected = [e for e in selected if filters.agency in agencies_named(e)]
        if not filters.reads and filters.action != READ_ACTION:
            hidden = sum(e.action == READ_ACTION for e in selected)
            selected = [e for e in selected if e.action != READ_ACTION]
        checked = _states(selected, report)
        choices = {
            "jobs": sorted({e.job for e in everything if e.job}),
            "actors": sorted({e.actor for e in everything}),
            "agencies": sorted(set().union(*(agencies_named(e) for e in everything))) if everything else [],
            "actions": sorted({e.action for e in everything}),
        }
        query = {**filters.query(), "view": what}
        if anchor_given:
            query["expected_last"] = format_anchor(anchor_given)
        log.append(actor, READ_ACTION, job=filters.job[:MAX_QUERY_TEXT], details={
            "query": query, "entries": len(checked), "verified": report.ok, "via": "review pages",
        })  # fmt: skip
        anchor = format_anchor(report.last_verified) if report.last_verified else None
        return LogRead(entries=checked, report=report, anchor=anchor, hidden_reads=hidden, choices=choices, error=error)


# -- jobs ------------------------------------------------------------------------------------------
@dataclass(frozen=True, kw_only=True)
class JobRecord:
    """A job as the coordinator's jobs.db holds it."""

    id: str
    created: str
    finished: str | None
    state: str
    agencies: tuple[str, ...]
    error: str | None
    summary: str | None


def read_jobs(path: Path) -> list[JobRecord]:
    """Every job in a coordinator's jobs.db, newest first, opened read-only."""
    if not path.is_file():
        return []
    try:
        conn = sqlite3.connect(path.resolve().as_uri() + "?mode=ro", uri=True, timeout=30)
        try:
            rows = conn.execute(
                "SELECT id, created, finished, state, agencies, error, summary FROM jobs ORDER BY created DESC, id DESC"
            ).fetchall()
        finally:
            conn.close()
    except sqlite3.Error as exc:
        raise InputError(f"{path}: not a readable jobs database ({exc})") from None
    return [JobRecord(id=r[0], created=r[1], finished=r[2], state=r[3], agencies=tuple(json.loads(r[4])), error=r[5], summary=r[6])
            for r in rows]  # fmt: skip


@dataclass(frozen=True, kw_only=True)
class JobView:
    """One job for an auditor: its steps, what linking recorded, and what each agency received."""

    id: str
    record: JobRecord | None
    read: LogRead
    linked: dict[str, Any] | None  # details of "job linked"
    delivered: list[tuple[str, dict[str, Any]]]  # (agency, details of "results delivered")
    chart: HistogramChart | None
    notes: list[str]


def job_view(job_id: str, read: LogRead, record: JobRecord | None) -> JobView:
    linked = next((c.entry.details for c in reversed(read.entries) if c.entry.action == "job linked"), None)
    delivered = [
        (str(c.entry.details.get("agency", "")), c.entry.details) for c in read.entries if c.entry.action == "results delivered"
    ]
    chart, notes = None, []
    if linked is not None:
        counts = linked.get("score_histogram")
        threshold, review = linked.get("threshold"), linked.get("review_threshold")
        if isinstance(counts, list) and counts and all(isinstance(c, int) for c in counts) and isinstance(threshold, int | float) \
                and isinstance(review, int | float):  # fmt: skip
            chart = histogram_chart(counts, float(threshold), float(review))
        notes = [n for n in linked.get("notes", []) if isinstance(n, str)]
    return JobView(id=job_id, record=record, read=read, linked=linked, delivered=delivered, chart=chart, notes=notes)


# -- a node's results ------------------------------------------------------------------------------
@dataclass(frozen=True, kw_only=True)
class ResultsSummary:
    job: str
    rows: int
    bands: dict[str, int]
    reviewed: int  # possible matches with a decision


class Stewardship:
    """A node's results per job, its possible matches in review order, and its own records."""

    def __init__(self, config: NodeConfig) -> None:
        self._config = config
        self.store = ReviewStore(config.data_dir / REVIEWS_FILE)

    @property
    def agency(self) -> str:
        return self._config.agency

    def _results_dir(self) -> Path:
        return self._config.data_dir / "results"

    def jobs(self) -> list[str]:
        """Jobs with results here, newest first (job ids begin with their time)."""
        folder = self._results_dir()
        return sorted((p.stem for p in folder.glob("*.csv")), reverse=True) if folder.is_dir() else []

    def results(self, job: str) -> pl.DataFrame:
        """record_id, band, similarity, reference, shared_with, same_person_as, agreement: possible
        matches first, best score first."""
        if job not in self.jobs():  # the job id comes from a URL: only a results file here may be named
            raise KeyError(job)
        frame = pl.read_csv(self._results_dir() / f"{job}.csv", infer_schema=False)
        for column in ("agreement", "same_person_as"):  # results delivered before these were carried
            if column not in frame.columns:
                frame = frame.with_columns(pl.lit(None, dtype=pl.String).alias(column))
        frame = frame.with_columns(
            pl.col("similarity").cast(pl.Float64), pl.col("shared_with").fill_null(""), pl.col("same_person_as").fill_null("")
        )
        return frame.sort(["band", "similarity", "record_id"], descending=[True, True, False])

    def possible(self, job: str) -> pl.DataFrame:
        return self.results(job).filter(pl.col("band") == "possible")

    def summary(self, job: str) -> ResultsSummary:
        frame = self.results(job)
        bands = dict(sorted(frame.group_by("band").len().iter_rows()))
        decided = self.store.decisions(job).get_column("record_id")
        reviewed = int(frame.filter((pl.col("band") == "possible") & pl.col("record_id").is_in(decided.implode())).height)
        return ResultsSummary(job=job, rows=frame.height, bands=bands, reviewed=reviewed)

    def own_record(self, record_id: str) -> dict[str, str]:
        """This agency's own record: the schema's columns, as its input file holds them."""
        columns = Schema.load(self._config.schema).columns
        records = read_records(
            self._config.input, id_column=self._config.id_column, columns=columns, encoding=self._config.encoding
        )
        row = records.filter(pl.col("record_id") == record_id)
        if row.height != 1:
            raise InputError(f"{self._config.input}: the record of this result is not in the input file (changed since the job?)")
        values = row.row(0, named=True)
        return {c: values[c] or "" for c in columns}


# -- the folder ------------------------------------------------------------------------------------
@dataclass(frozen=True, kw_only=True)
class ReviewSite:
    """A data folder opened for review: its kind, its audit log and, on a node, its results."""

    data_dir: Path
    kind: Kind
    agency: str | None
    audit: AuditReader
    stewardship: Stewardship | None

    @classmethod
    def open(cls, data_dir: Path, *, public_key: Path | None = None) -> ReviewSite:
        """A node's folder when it holds node.toml, a coordinator's otherwise (it must hold an audit log)."""
        data_dir = Path(data_dir)
        if not data_dir.is_dir():
            raise InputError(f"{data_dir}: not a folder")
        node_toml = data_dir / "node.toml"
        if node_toml.is_file():
            config = load_node_config(node_toml)
            if config.data_dir.resolve() != data_dir.resolve():
                raise InputError(f"{node_toml}: node.data_dir is another folder; serve that folder")
            return cls(data_dir=data_dir, kind="node", agency=config.agency,
                       audit=AuditReader(data_dir, public_key=public_key), stewardship=Stewardship(config))  # fmt: skip
        return cls(
            data_dir=data_dir,
            kind="coordinator",
            agency=None,
            audit=AuditReader(data_dir, public_key=public_key),
            stewardship=None,
        )

    def jobs(self) -> list[JobRecord]:
        return read_jobs(self.data_dir / "jobs.db")

    def job(self, job_id: str) -> JobRecord | None:
        return next((j for j in self.jobs() if j.id == job_id), None)
