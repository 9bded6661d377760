"""The coordinator's gRPC services: jobs (run and status), intake queries for nodes, and the audit
log for auditors.

Thin methods: check, convert, call the library or the job runner the process hands in, convert back.
The runner itself (fetch, link, deliver) lives in ``services.coordinator``.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from typing import Protocol, TypeVar

import grpc

from linkage.errors import JobError, LinkageError, QueryLimitError, RequestError
from linkage.jobs._config import CoordinatorConfig
from linkage.jobs._index import MAX_QUERY_RECORDS, IndexKeeper
from linkage.jobs._profiles import encodings_from_bytes
from linkage.jobs._store import Job, JobStore
from linkage.matching._link import Blocking, LinkSettings, Scoring
from linkage.protocol._auth import Policy, caller
from linkage.protocol._convert import check_job_id
from linkage.protocol.v1 import linkage_pb2 as pb
from linkage.protocol.v1 import linkage_pb2_grpc as pb_grpc
from linkage.trust._audit import AuditLog, entries_jsonl, load_public_key, parse_time, verify
from linkage.trust._pki import Identity

SCORINGS: tuple[Scoring, ...] = ("auto", "fs", "dice")
BLOCKINGS: tuple[Blocking, ...] = ("auto", "none", "lsh")
_Option = TypeVar("_Option", bound=str)


class RunJob(Protocol):
    def __call__(
        self, job_id: str, agencies: list[str], settings: LinkSettings, say: Callable[[str], None], *, actor: str
    ) -> str: ...


class ResumeJob(Protocol):
    def __call__(self, job_id: str, say: Callable[[str], None], *, actor: str) -> str: ...


def job_status(job: Job) -> pb.JobStatus:
    return pb.JobStatus(
        job_id=job.id, state=job.state, error=job.error or "", created=job.created, finished=job.finished or "",
        agencies=list(job.agencies), delivered=list(job.delivered), released=list(job.released), summary=job.summary or "",
    )  # fmt: skip


def coordinator_policy(config: CoordinatorConfig) -> Policy:
    def policy(method: str, identity: Identity) -> str | None:
        if method.startswith("/linkage.v1.Audit/"):
            return None if identity.role == "auditor" else f"role {identity.role} may not read the audit log; only an auditor may"
        if method.startswith("/linkage.v1.Index/"):
            if identity.role != "node":
                return f"role {identity.role} may not query the index; only agency nodes may"
            if identity.name not in config.agencies:
                return f"agency {identity.name} is not an agency of this project"
            return None
        if method.startswith("/linkage.v1.KeyRelay/"):
            return (
                None
                if identity.role == "node"
                else f"role {identity.role} takes no part in the key ceremony; only agency nodes do"
            )
        if identity.role != "coordinator" or identity.name != config.name:
            return f"only coordinator {config.name} may call {method}"
        return None

    return policy


class CoordinatorService(pb_grpc.CoordinatorServicer):
    def __init__(self, config: CoordinatorConfig, store: JobStore, run_job: RunJob, resume_job: ResumeJob | None = None) -> None:
        self._config, self._store, self._run_job, self._resume_job = config, store, run_job, resume_job
        self._running: set[str] = set()
        self._running_lock = threading.Lock()

    def _settings(self, request: pb.JobRequest) -> LinkSettings:
        defaults = self._config.job
        return LinkSettings(
            threshold=request.threshold if request.HasField("threshold") else defaults.threshold,
            review_threshold=request.review_threshold if request.HasField("review_threshold") else defaults.review_threshold,
            scoring=_choice("scoring", request.scoring or defaults.scoring, SCORINGS),
            blocking=_choice("blocking", request.blocking or defaults.blocking, BLOCKINGS),
        )

    def RunJob(self, request: pb.JobRequest, context: grpc.ServicerContext) -> Iterator[pb.JobEvent]:
        agencies = list(dict.fromkeys(request.agencies))
        unknown = [a for a in agencies if a not in self._config.agencies]
        if unknown:
            name = unknown[0] if len(unknown[0]) <= 64 else unknown[0][:64] + "…"
            raise RequestError(f"unknown agency {name!r} (this coordinator knows {', '.join(self._config.agencies)})")
        if len(agencies) < 2:
            raise RequestError("a job needs at least two agencies")
        settings = self._settings(request)
        try:
            settings.thresholds()  # refuse bad thresholds before a job exists
        except LinkageError as error:
            raise RequestError(str(error)) from None
        job_id = self._store.create(agencies, dict(settings.__dict__))
        actor = str(caller(context))
        yield from self._follow(job_id, f"job {job_id} started: {', '.join(agencies)}",
                                lambda say: self._run_job(job_id, agencies, settings, say, actor=actor), context)  # fmt: skip

    def ResumeJob(self, request: pb.GetJobRequest, context: grpc.ServicerContext) -> Iterator[pb.JobEvent]:
        job_id = check_job_id(request.job_id)
        job = self._store.get(job_id)
        if job is None:
            raise JobError(f"no job {job_id!r}")
        resume = self._resume_job
        if resume is None:
            raise JobError("this coordinator cannot resume jobs")
        actor = str(caller(context))
        yield from self._follow(
            job_id, f"job {job_id} resumed (it was {job.state})", lambda say: resume(job_id, say, actor=actor), context
        )

    def _follow(
        self, job_id: str, first: str, work: Callable[[Callable[[str], None]], str], context: grpc.ServicerContext
    ) -> Iterator[pb.JobEvent]:
        """Run ``work`` in its own thread (one at a time per job) and stream its events.

        The job goes on when the caller hangs up or the server stops; only the stream ends, so that no
        server thread waits for events nobody reads (and a stopping process is not held up by one).
        """
        with self._running_lock:
            if job_id in self._running:
                raise JobError(f"job {job_id} is already running")
            self._running.add(job_id)
        events: queue.Queue[pb.JobEvent | None] = queue.Queue()
        context.add_callback(lambda: events.put(None))  # the call ended: cancelled, hung up or stopped

        def run() -> None:
            try:
                summary = work(lambda line: events.put(pb.JobEvent(job_id=job_id, message=line)))
                events.put(pb.JobEvent(job_id=job_id, done=True, state="done", summary=summary))
            except LinkageError as error:
                events.put(pb.JobEvent(job_id=job_id, done=True, state="failed", summary=str(error)))
            except Exception as error:  # noqa: BLE001 - reported as a failed job, detail withheld
                events.put(
                    pb.JobEvent(job_id=job_id, done=True, state="failed", summary=f"internal error ({type(error).__name__})")
                )
            finally:
                with self._running_lock:
                    self._running.discard(job_id)

        threading.Thread(target=run, name=f"job {job_id}", daemon=True).start()
        yield pb.JobEvent(job_id=job_id, message=first)
        while True:
            event = events.get()
            if event is None:
                return
            yield event
            if event.done:
                return

    def GetJob(self, request: pb.GetJobRequest, context: grpc.ServicerContext) -> pb.JobStatus:
        job = self._store.get(check_job_id(request.job_id))
        if job is None:
            raise JobError(f"no job {request.job_id!r}")
        return job_status(job)

    def ListJobs(self, request: pb.ListJobsRequest, context: grpc.ServicerContext) -> pb.JobList:
        return pb.JobList(jobs=[job_status(job) for job in self._store.list()])


# A query's wire form: up to MAX_QUERY_RECORDS records of tokens and evidence, with room to spare.
MAX_QUERY_BYTES = 4 * 1024 * 1024


class IndexService(pb_grpc.IndexServicer):
    """Intake queries: the calling node's agency (from its certificate) asks about a few records."""

    def __init__(self, config: CoordinatorConfig, keeper: IndexKeeper) -> None:
        self._config, self._keeper = config, keeper

    def Query(self, request: pb.QueryRequest, context: grpc.ServicerContext) -> pb.QueryResponse:
        identity = caller(context)
        assert identity is not None  # the interceptor let only a node of the project through
        try:
            if len(request.packed) > MAX_QUERY_BYTES:
                raise QueryLimitError(
                    f"{identity.name}: a query of {len(request.packed):,} bytes; ask about at most {MAX_QUERY_RECORDS:,} records"
                )
            records = encodings_from_bytes(request.packed, peer=identity.name)
        except LinkageError as error:  # refused before it reached the index: logged all the same
            self._keeper.refused(identity.name, 0, error, actor=str(identity))
            raise
        disclosure = {name: entry.disclosure for name, entry in self._config.agencies.items()}
        answer = self._keeper.query(identity.name, records, disclosure, actor=str(identity))
        return pb.QueryResponse(
            answers=[
                pb.QueryAnswer(record_id=r["record_id"], band=r["band"], score=r["similarity"], shared_with=r["shared_with"])
                for r in answer.rows.iter_rows(named=True)
            ],
            job_id=answer.job, expires=answer.expires, remaining=answer.remaining,
        )  # fmt: skip


class AuditService(pb_grpc.AuditServicer):
    """Read access to the coordinator's audit log, for auditors; each read is itself an entry."""

    def __init__(self, audit: AuditLog, public_pem: bytes) -> None:
        self._audit, self._public_pem = audit, public_pem

    def ListEntries(self, request: pb.AuditQuery, context: grpc.ServicerContext) -> Iterator[pb.AuditRecord]:
        query: dict[str, str | int] = {k: v for k, v in (("job", request.job), ("actor", request.actor), ("action", request.action),
                 ("since", request.since), ("until", request.until)) if v}  # fmt: skip
        if request.seq:
            query["seq"] = request.seq
        entries = (
            [self._audit.entry(request.seq)]
            if request.seq
            else self._audit.entries(
                job=request.job or None,
                actor=request.actor or None,
                action=request.action or None,
                since=parse_time(request.since) if request.since else None,
                until=parse_time(request.until) if request.until else None,
            )
        )
        self._audit.append(
            str(caller(context)),
            "audit log read",
            details={"query": {k: str(v) for k, v in query.items()}, "entries": len(entries)},
        )
        for entry in entries:
            yield pb.AuditRecord(json=entries_jsonl([entry]))

    def Verify(self, request: pb.AuditVerifyRequest, context: grpc.ServicerContext) -> pb.AuditVerifyResponse:
        report = verify(self._audit.path, load_public_key(self._public_pem))
        self._audit.append(
            str(caller(context)), "audit log read", details={"query": {"verify": "all"}, "entries": report.checked}
        )
        return pb.AuditVerifyResponse(
            ok=report.ok,
            checked=report.checked,
            first_bad=report.first_bad or 0,
            reason=report.reason,
            public_key_pem=self._public_pem.decode(),
        )


def _choice(what: str, value: str, options: tuple[_Option, ...]) -> _Option:
    """``value`` as one of ``options``; a RequestError naming them otherwise."""
    for option in options:
        if value == option:
            return option
    raise RequestError(f"{what}: one of {', '.join(options)}")
