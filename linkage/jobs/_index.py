"""The intake index: "does any partner hold this person?" answered from a finished job's encodings.

Kept only where the project's policy says so (``[index] keep = "30d"`` in the coordinator's config;
off by default). What it holds, in ``<data_dir>/index/<job>/`` (folder 0700, files 0600):

    index.json           the job, project, when it was built and when it expires, the job's fitted
                         Fellegi–Sunter parameters (m, u, prior) and thresholds, the agencies and
                         their record counts; after deletion only the job, times and reason remain
    <agency>.parquet     the agency's match-key encodings as the job received them: record id, per
                         key a token and the scoped evidence (the coordinator never holds more)

A query is one agency's record (or a small batch), encoded at its node under the project's secret.
Its candidates are the index records of *other* agencies that share a match-key token with it (a
sorted token array per agency and key: a binary search, not a join); each candidate is compared
inside the scopes it shares and scored by the job's model, exactly as the job scored its pairs, and
banded by the job's thresholds (``match``, ``possible``). What the asking agency learns is then
decided by ``agency_results``, the job's disclosure rule itself: the same rows, bands, scores and
names a job would deliver for a record with those pairs, and nothing about agencies it may not see.

A query is not a job: it does not re-run the job's clustering (at most one record per agency in a
cluster, matches joined through a third record) for one record, so each band is the pair's own.

Lifecycle, each step an audit entry: ``stage`` (after linking; the job's encodings are still in
memory) → ``activate`` when the job is done (``index built``; the index it replaces is deleted) →
``expire`` on schedule (at coordinator start and at each query and job: ``index deleted``). Every
query (``index queried``) and every refusal (``index query refused``) is logged with the agency and
counts, never a token or a record.
"""

from __future__ import annotations

import collections
import contextlib
import functools
import json
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from linkage._files import make_private, private_folder
from linkage.errors import IndexUnavailableError, LinkageError, QueryLimitError
from linkage.jobs._config import IndexSettings
from linkage.jobs._disclosure import agency_results
from linkage.matching._scopes import scope_levels_serial
from linkage.matching._scoring import MatchModel
from linkage.scoped._encodings import ScopedEncodings, read_scoped_encodings, write_scoped_encodings
from linkage.scoped._link import (
    ScopedLinkResult,
    check_scoped_compatible,
    comparison_columns,
    grouped_levels,
    pair_levels,
)
from linkage.trust._audit import AuditLog, utc_now

__all__ = ["MAX_QUERY_RECORDS", "Answer", "IndexKeeper", "IntakeIndex", "QueryLimit", "intake_index"]

INDEX_VERSION = 1
MAX_QUERY_RECORDS = 1000  # records in one query call: intake checks, not a batch job
ANSWER_COLUMNS = ("record_id", "band", "similarity", "shared_with")
_META = "index.json"
_QUERY_KEY = bytes(32)  # agency_results' reference tokens are dropped from answers: any key will do


@dataclass(frozen=True, eq=False)
class _AgencyTokens:
    """One agency's encodings with, per key, its tokens sorted (and the rows in that order)."""

    encodings: ScopedEncodings
    sorted_tokens: tuple[np.ndarray, ...]
    sorted_rows: tuple[np.ndarray, ...]

    @classmethod
    def of(cls, encodings: ScopedEncodings) -> _AgencyTokens:
        tokens, rows = [], []
        for k in range(len(encodings.layouts)):
            held = np.flatnonzero(encodings.has_token[:, k])
            order = np.argsort(encodings.tokens[held, k], kind="stable")
            rows.append(held[order].astype(np.int64))
            tokens.append(np.ascontiguousarray(encodings.tokens[held[order], k]))
        return cls(encodings, tuple(tokens), tuple(rows))

    @property
    def nbytes(self) -> int:
        e = self.encodings
        held = e.tokens.nbytes + e.has_token.nbytes + sum(x.nbytes for x in e.evidence)
        ids = int(e.record_ids.estimated_size())
        return held + ids + sum(t.nbytes for t in self.sorted_tokens) + sum(r.nbytes for r in self.sorted_rows)


@dataclass(frozen=True, eq=False)
class IntakeIndex:
    """A built index in memory: per agency its encodings and sorted tokens; the job's model and thresholds."""

    job: str
    project: str
    model: MatchModel
    threshold: float
    review_threshold: float
    agencies: dict[str, _AgencyTokens]

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in self.agencies.values())

    def pairs(self, agency: str, query: ScopedEncodings) -> pl.DataFrame:
        """Banded pairs of the query records (as ``agency``'s) with other agencies' index records:
        source_a, id_a, source_b, id_b, similarity, band — the job's pairs frame for these records."""
        first = next(iter(self.agencies.values())).encodings
        check_scoped_compatible({"index": first, agency: query})
        frames = []
        for other, held in self.agencies.items():
            if other == agency:
                continue  # an agency's own records are not a partner's
            i, j, levels = _candidate_levels(query, held)
            if len(i) == 0:
                continue
            columns, column_of = comparison_columns(first.fields, first.kinds)
            grouped = np.concatenate([grouped_levels(levels[:, :-1], column_of, len(columns)), levels[:, -1:]], axis=1)
            # As the job scored: float32 probabilities, banded by its thresholds, shown to 4 places.
            score = self.model.probabilities(grouped).astype(np.float32)
            band = np.where(score >= self.threshold, "match", np.where(score >= self.review_threshold, "possible", ""))
            keep = band != ""
            frames.append(
                pl.DataFrame(
                    {
                        "source_a": agency,
                        "id_a": query.record_ids.gather(i[keep]),
                        "source_b": other,
                        "id_b": held.encodings.record_ids.gather(j[keep]),
                        "similarity": np.round(score[keep].astype(np.float64), 4),
                        "band": band[keep],
                    },
                    schema=_PAIRS_SCHEMA,
                )
            )
        return pl.concat(frames) if frames else pl.DataFrame(schema=_PAIRS_SCHEMA)

    def answer(self, agency: str, query: ScopedEncodings, disclosure: Mapping[str, str]) -> pl.DataFrame:
        """What ``agency`` may learn about its query records: record_id, band, similarity, shared_with.

        ``disclosure``: the project's policy now, per agency (the asking one included). The rule is
        the job's (``agency_results``); records with nothing to disclose have no row."""
        if agency not in disclosure:
            raise LinkageError(f"{agency}: not an agency of this project")
        policy = {a: p for a, p in disclosure.items() if a in self.agencies or a == agency}
        pairs = self.pairs(agency, query)
        if pairs.is_empty():  # most intake queries: the rule would find nothing, so skip its dozens of steps
            return _no_answer()
        return agency_results(pairs, policy, _QUERY_KEY, only=agency)[agency].select(ANSWER_COLUMNS)


@functools.cache
def _no_answer() -> pl.DataFrame:
    """The answer to a query that has no pair with any partner's record: the rule's rows, none."""
    nothing = pl.DataFrame(schema=_PAIRS_SCHEMA)
    return agency_results(nothing, {"asking": "full"}, _QUERY_KEY)["asking"].select(ANSWER_COLUMNS)


_PAIRS_SCHEMA = {
    "source_a": pl.String,
    "id_a": pl.String,
    "source_b": pl.String,
    "id_b": pl.String,
    "similarity": pl.Float64,
    "band": pl.String,
}


def _candidate_levels(query: ScopedEncodings, held: _AgencyTokens) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(query row, index row) of every pair sharing a token, with the pair's best level per field over
    the scopes it shares and, last, how many keys it shares (as ``linkage.scoped`` compares a pair)."""
    b = held.encodings
    n_fields = len(b.fields)
    index = {name: f for f, name in enumerate(b.fields)}
    pair_ids, level_rows, key_rows = [], [], []
    for k, layout in enumerate(b.layouts):
        rows = np.flatnonzero(query.has_token[:, k])
        if len(rows) == 0 or len(held.sorted_tokens[k]) == 0:
            continue
        tokens = query.tokens[rows, k]
        lo = np.searchsorted(held.sorted_tokens[k], tokens, side="left")
        hi = np.searchsorted(held.sorted_tokens[k], tokens, side="right")
        counts = hi - lo
        if counts.sum() == 0:
            continue
        i = np.repeat(rows, counts).astype(np.int64)
        starts = np.repeat(lo - np.concatenate([[0], np.cumsum(counts)[:-1]]), counts)
        j = held.sorted_rows[k][starts + np.arange(counts.sum())]
        slots = layout.slots
        levels = scope_levels_serial(
            query.evidence[k], b.evidence[k], i, j,
            np.array([index[s.field] for s in slots], dtype=np.int64), np.array([s.comparison for s in slots], dtype=np.int64),
            np.array([s.offset for s in slots], dtype=np.int64), np.array([s.width for s in slots], dtype=np.int64),
            layout.lane_word, np.array([index[f] for f in layout.fixed], dtype=np.int64), n_fields,
        )  # fmt: skip
        pair_ids.append(i * len(b) + j)
        level_rows.append(levels)
        key_rows.append(np.full(len(i), k, dtype=np.int64))
    return pair_levels(pair_ids, level_rows, key_rows, n_keys=len(b.layouts), n_fields=n_fields, n_b=len(b))


def intake_index(
    job: str, sources: Mapping[str, ScopedEncodings], model: MatchModel, threshold: float, review_threshold: float
) -> IntakeIndex:
    """An index over ``sources`` (the job's encodings) scoring with the job's model and thresholds."""
    if not sources:
        raise LinkageError("an index needs at least one agency's encodings")
    if len(sources) > 1:
        check_scoped_compatible(sources)
    first = next(iter(sources.values()))
    return IntakeIndex(
        job=job,
        project=first.project,
        model=model,
        threshold=float(threshold),
        review_threshold=float(review_threshold),
        agencies={name: _AgencyTokens.of(enc) for name, enc in sources.items()},
    )


# -- the rate limit -------------------------------------------------------------------------------


class QueryLimit:
    """Records each agency may ask about in any sliding hour; ``clock`` (seconds) is injected."""

    def __init__(self, per_hour: int, *, clock: Callable[[], float] = time.monotonic, window_s: float = 3600.0) -> None:
        self._per_hour, self._clock, self._window = per_hour, clock, window_s
        self._asked: dict[str, collections.deque[tuple[float, int]]] = {}
        self._lock = threading.Lock()

    @property
    def window_s(self) -> float:
        return self._window

    def used(self, agency: str) -> int:
        with self._lock:
            return self._used(agency, self._clock())

    def _used(self, agency: str, now: float) -> int:
        asked = self._asked.setdefault(agency, collections.deque())
        while asked and now - asked[0][0] >= self._window:
            asked.popleft()
        return sum(n for _, n in asked)

    def seed(self, agency: str, records: int, age_s: float) -> None:
        """Count ``records`` asked ``age_s`` seconds ago (queries answered before a restart)."""
        if 0 <= age_s < self._window and records > 0:
            with self._lock:
                self._asked.setdefault(agency, collections.deque()).append((self._clock() - age_s, records))

    def take(self, agency: str, records: int) -> int:
        """Count ``records`` against ``agency``'s hour and return what is left; past the limit, refuse."""
        with self._lock:
            now = self._clock()
            used = self._used(agency, now)
            if used + records > self._per_hour:
                raise QueryLimitError(
                    f"{agency}: query limit reached ({used:,} of {self._per_hour:,} records asked about in the last hour; "
                    f"this query asks {records:,}); try again later"
                )
            self._asked[agency].append((now, records))
            return self._per_hour - used - records


# -- the keeper: the index on disk, its lifecycle, the audit entries --------------------------------


class IndexKeeper:
    """The coordinator's intake index: staged after linking, active once its job is done, deleted at
    expiry. ``now`` (an aware datetime) and ``clock`` (the rate limit's seconds) are injected."""

    def __init__(
        self,
        folder: Path,
        settings: IndexSettings,
        audit: AuditLog,
        me: str,
        *,
        source: str = "coordinator config",
        now: Callable[[], datetime] = utc_now,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._folder, self._settings, self._audit, self._me, self._source = folder, settings, audit, me, source
        self._now = now
        self.limit = QueryLimit(settings.queries_per_hour, clock=clock)
        self._count_the_last_hour()
        self._lock = threading.RLock()
        self._loaded: tuple[IntakeIndex, dict[str, Any]] | None = None
        self._known: dict[str, dict[str, Any]] | None = None  # index.json of each job, as last read or written

    @property
    def enabled(self) -> bool:
        return self._settings.enabled

    def _count_the_last_hour(self) -> None:
        """The queries the log holds from the last hour count against the limit: a restarted
        coordinator does not hand each agency a fresh hour (the log is the record of what was asked)."""
        if not self.enabled:
            return
        now = self._now()
        since = now - timedelta(seconds=self.limit.window_s)
        for entry in sorted(self._audit.entries(action="index queried", since=since), key=lambda e: e.time):
            agency, records = entry.details.get("agency"), entry.details.get("records")
            if isinstance(agency, str) and isinstance(records, int):
                self.limit.seed(agency, records, (now - entry.time).total_seconds())

    # on disk -------------------------------------------------------------------------------------
    def _metas(self) -> dict[str, dict[str, Any]]:
        """Each job's index.json: read from disk once, then kept as this keeper (the only writer) writes it."""
        if self._known is not None:
            return {job: dict(meta) for job, meta in self._known.items()}
        out = {}
        if self._folder.is_dir():
            for path in sorted(self._folder.glob(f"*/{_META}")):
                try:
                    out[path.parent.name] = json.loads(path.read_text(encoding="utf-8"))
                except (OSError, ValueError):
                    continue
        self._known = out
        return {job: dict(meta) for job, meta in out.items()}

    def _write_meta(self, job: str, meta: dict[str, Any]) -> None:
        path = self._folder / job / _META
        temp = path.with_name(".index.json")
        temp.write_text(json.dumps(meta, sort_keys=True), encoding="utf-8")
        make_private(temp)
        temp.replace(path)
        if self._known is not None:
            self._known[job] = dict(meta)

    def stage(self, job: str, sources: Mapping[str, ScopedEncodings], result: ScopedLinkResult) -> None:
        """Write the job's encodings, model and thresholds aside; the index is active once the job is done."""
        if not self.enabled:
            return
        check_scoped_compatible(sources)
        folder = private_folder(self._folder / job)
        for name, enc in sources.items():
            write_scoped_encodings(enc, folder / f"{name}.parquet")
            make_private(folder / f"{name}.parquet")
        model = result.model
        first = next(iter(sources.values()))
        self._write_meta(job, {
            "version": INDEX_VERSION, "state": "staged", "job": job, "project": first.project,
            "staged": self._now().isoformat(), "agencies": {n: len(e) for n, e in sources.items()},
            "threshold": result.threshold, "review_threshold": result.review_threshold,
            "model": {"groups": list(model.groups), "m": model.m.tolist(), "u": model.u.tolist(),
                      "prior": model.prior, "iterations": model.iterations},
        })  # fmt: skip

    def activate(self, job: str) -> bool:
        """The job is done: its staged index becomes the project's; the one it replaces is deleted."""
        if not self.enabled:
            return False
        with self._lock:
            metas = self._metas()
            meta = metas.get(job)
            if meta is None or meta.get("state") != "staged":
                return False
            for other, old in metas.items():
                if other != job and old.get("state") == "active":
                    self._delete(other, old, f"replaced by the index of job {job}")
            built = self._now()
            assert self._settings.keep is not None
            meta.update(state="active", built=built.isoformat(), expires=(built + self._settings.keep).isoformat())
            self._write_meta(job, meta)
            self._loaded = None
            self._audit.append(self._me, "index built", project=meta["project"], job=job, details={
                "agencies": meta["agencies"], "expires": meta["expires"], "threshold": meta["threshold"],
                "review_threshold": meta["review_threshold"], "queries_per_hour": self._settings.queries_per_hour,
            })  # fmt: skip
            return True

    def _delete(self, job: str, meta: dict[str, Any], reason: str) -> None:
        folder = self._folder / job
        for path in folder.glob("*.parquet"):
            path.unlink(missing_ok=True)
        kept: dict[str, Any] = {k: meta[k] for k in ("version", "job", "project", "staged", "built", "expires") if k in meta}
        self._write_meta(job, {**kept, "state": "deleted", "deleted": self._now().isoformat(), "reason": reason})
        if self._loaded is not None and self._loaded[0].job == job:
            self._loaded = None
        self._audit.append(self._me, "index deleted", project=meta.get("project", ""), job=job, details={"reason": reason})

    def expire(self) -> list[str]:
        """Delete every index past its expiry (and staged ones older than the policy keeps an index,
        or any at all when the policy no longer keeps one); returns the jobs deleted."""
        now = self._now()
        deleted = []
        with self._lock:
            for job, meta in self._metas().items():
                state = meta.get("state")
                if state == "deleted":
                    continue
                if not self.enabled:
                    self._delete(job, meta, "the project's policy keeps no index")
                elif state == "active" and datetime.fromisoformat(meta["expires"]) <= now:
                    self._delete(job, meta, f"expired at {meta['expires']}")
                elif state == "staged" and datetime.fromisoformat(meta["staged"]) + self._settings.keep <= now:  # type: ignore[operator]
                    self._delete(job, meta, "its job never finished")
                else:
                    continue
                deleted.append(job)
        return deleted

    def _active(self) -> tuple[IntakeIndex, dict[str, Any]]:
        with self._lock:
            metas = self._metas()
            active = [(job, m) for job, m in metas.items() if m.get("state") == "active"]
            if not active:
                raise IndexUnavailableError(self._why_none(metas))
            job, meta = active[-1]
            if self._loaded is None or self._loaded[0].job != job:
                model = meta["model"]
                sources = {name: read_scoped_encodings(self._folder / job / f"{name}.parquet") for name in meta["agencies"]}
                index = intake_index(
                    job, sources,
                    MatchModel(tuple(model["groups"]), np.array(model["m"]), np.array(model["u"]), float(model["prior"]), int(model["iterations"])),
                    meta["threshold"], meta["review_threshold"],
                )  # fmt: skip
                self._loaded = (index, meta)
            return self._loaded

    def _why_none(self, metas: dict[str, dict[str, Any]]) -> str:
        if not self.enabled:
            return f"this project keeps no intake index ([index] keep is not set in {self._source}); queries are refused"
        expired = [m for m in metas.values() if m.get("state") == "deleted" and str(m.get("reason", "")).startswith("expired")]
        if expired:
            last = max(expired, key=lambda m: m.get("deleted", ""))
            return (
                f"the intake index of job {last['job']} expired at {last['expires']} and was deleted; "
                "run a job to build a new one"
            )
        return "no intake index yet: it is built when a job finishes; run a job first"

    def load(self) -> IntakeIndex:
        """The active index, loaded (or an ``IndexUnavailableError`` saying why there is none)."""
        self.expire()
        return self._active()[0]

    def load_in_background(self) -> None:
        """Load the active index in a daemon thread, so that the first query does not wait for it."""

        def load() -> None:
            with contextlib.suppress(LinkageError):
                self.load()

        if self.enabled:
            threading.Thread(target=load, name="intake index", daemon=True).start()

    # queries -------------------------------------------------------------------------------------
    def refused(self, agency: str, records: int, error: LinkageError, *, actor: str) -> None:
        """Log a query refused before it reached the index (a malformed or oversized request)."""
        self._audit.append(actor, "index query refused", details={
            "agency": agency, "records": records, "reason": str(error)[:400],
        })  # fmt: skip

    def query(self, agency: str, query: ScopedEncodings, disclosure: Mapping[str, str], *, actor: str) -> Answer:
        """Answer ``agency``'s query, rate-limited; the query, or its refusal, is an audit entry."""
        records = len(query)
        try:
            if records == 0 or records > MAX_QUERY_RECORDS:
                raise QueryLimitError(f"{agency}: a query asks about 1 to {MAX_QUERY_RECORDS:,} records, not {records:,}")
            self.expire()
            index, meta = self._active()
            remaining = self.limit.take(agency, records)
        except LinkageError as error:
            self.refused(agency, records, error, actor=actor)
            raise
        try:
            rows = index.answer(agency, query, disclosure)
        except LinkageError as error:
            self._audit.append(actor, "index query refused", project=index.project, job=index.job, details={
                "agency": agency, "records": records, "reason": str(error)[:400],
            })  # fmt: skip
            raise
        bands = dict(sorted(rows.get_column("band").value_counts().rows())) if rows.height else {}
        self._audit.append(actor, "index queried", project=index.project, job=index.job, details={
            "agency": agency, "records": records, "answered": rows.height, "bands": bands, "left_this_hour": remaining,
        })  # fmt: skip
        return Answer(rows=rows, job=index.job, expires=str(meta.get("expires", "")), remaining=remaining)


@dataclass(frozen=True, eq=False)
class Answer:
    rows: pl.DataFrame  # record_id, band, similarity, shared_with: only records with something to disclose
    job: str  # the job whose index answered
    expires: str  # when that index is deleted (ISO)
    remaining: int  # records the agency may still ask about this hour
