"""The coordinator: runs jobs (pull encodings, link, deliver each agency its own results).

A job runs in a thread of its own, so it finishes even when the client that asked for it goes away;
its progress lines stream to that client while it listens. Every job is kept in the job store.
Encodings live in memory for the job only and are dropped when it ends, unless the coordinator's
config retains them.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import polars as pl

from .. import __version__
from .._audit import AUDIT_PUBLIC_KEY_FILE, MAX_DETAIL_TEXT, AuditLog, entries_jsonl, load_public_key, parse_time, party_log, verify
from .._config import CoordinatorConfig
from .._disclosure import agency_results
from .._encodings import Encodings, write_encodings
from .._jobs import JobStore
from .._link import LinkResult, LinkSettings, check_compatible, link
from .._pki import Identity, TlsMaterial
from .._report import link_summary
from .._thresholds import score_histogram
from ..errors import JobError, LinkageError
from ._auth import caller
from ._convert import TransferError, encodings_from_chunks, result_chunks
from ._relay import KeyRelayService
from ._server import create_server, secure_channel
from .v1 import linkage_pb2 as pb
from .v1 import linkage_pb2_grpc as pb_grpc

CALL_TIMEOUT = 600.0
MAX_LOGGED_NOTES = 8  # audit details stay small (MAX_DETAILS_JSON)


def coordinator_policy(config: CoordinatorConfig):
    def policy(method: str, identity: Identity) -> str | None:
        if method.startswith("/linkage.v1.Audit/"):
            return None if identity.role == "auditor" else f"role {identity.role} may not read the audit log; only an auditor may"
        if method.startswith("/linkage.v1.KeyRelay/"):
            return None if identity.role == "node" else f"role {identity.role} takes no part in the key ceremony; only agency nodes do"
        if identity.role != "coordinator" or identity.name != config.name:
            return f"only coordinator {config.name} may call {method}"
        return None

    return policy


def _peer_error(agency: str, error: grpc.RpcError) -> str:
    code = error.code() if hasattr(error, "code") else None
    details = error.details() if hasattr(error, "details") else str(error)
    return f"{agency}: {code.name if code else 'error'}: {details}"


class JobRunner:
    """One job, from fetching to delivery. Network I/O only; the work is the library's."""

    def __init__(self, config: CoordinatorConfig, tls: TlsMaterial, store: JobStore, audit: AuditLog) -> None:
        self._config, self._tls, self._store, self._audit = config, tls, store, audit
        self._me = f"coordinator/{config.name}"

    def fetch(self, agency: str, job_id: str, say: Callable[[str], None]) -> Encodings:
        entry = self._config.agencies[agency]
        last = ""
        for attempt in range(1, self._config.fetch_attempts + 1):
            try:
                with secure_channel(entry.address, self._tls) as channel:
                    stub = pb_grpc.NodeStub(channel)
                    described = stub.Describe(pb.DescribeRequest(job_id=job_id), timeout=CALL_TIMEOUT)
                    if described.agency != agency:
                        raise JobError(f"{agency}: the node at {entry.address} says it is {described.agency!r}")
                    started = time.perf_counter()
                    encodings, digest = encodings_from_chunks(stub.FetchEncodings(pb.FetchEncodingsRequest(job_id=job_id), timeout=CALL_TIMEOUT), peer=agency)
                self._audit.append(self._me, "encodings received", project=encodings.project, job=job_id, details={
                    "agency": agency, "records": len(encodings), "excluded_by_agency": described.excluded,
                    "schema_fingerprint": encodings.schema_fingerprint, "bits": encodings.bits, "digest": digest,
                })  # fmt: skip
                say(
                    f"{agency}: received {len(encodings):,} encodings in {time.perf_counter() - started:.2f} s"
                    f" ({described.excluded:,} records excluded by the agency)"
                )
                return encodings
            except TransferError as error:
                last = str(error)
            except grpc.RpcError as error:
                last = _peer_error(agency, error)
            say(f"{agency}: transfer attempt {attempt} failed: {last}")
        raise JobError(f"{agency}: transfer failed after {self._config.fetch_attempts} attempts; last: {last}")

    def deliver(self, agency: str, job_id: str, results: pl.DataFrame) -> None:
        entry = self._config.agencies[agency]
        chunks = list(result_chunks(job_id, results))
        try:
            with secure_channel(entry.address, self._tls) as channel:
                receipt = pb_grpc.NodeStub(channel).DeliverResults(iter(chunks), timeout=CALL_TIMEOUT)
        except grpc.RpcError as error:
            raise JobError(f"delivery failed: {_peer_error(agency, error)}") from None
        if receipt.digest != chunks[-1].digest or receipt.rows != results.height:
            raise JobError(f"{agency}: the delivery receipt does not match what was sent")
        self._store.delivered(job_id, agency, results.height, receipt.digest)
        bands = results.get_column("band").value_counts().rows()
        self._audit.append(self._me, "results delivered", job=job_id, details={
            "agency": agency, "rows": results.height, "digest": receipt.digest, "bands": dict(sorted(bands)),
        })  # fmt: skip

    def run(self, job_id: str, agencies: list[str], settings: LinkSettings, say: Callable[[str], None], *, actor: str) -> str:
        store, config, audit = self._store, self._config, self._audit
        job_dir = config.data_dir / "jobs" / job_id
        # As asked (None: the scoring's default); "job linked" records what linking used.
        audit.append(actor, "job started", job=job_id, details={
            "agencies": agencies, "threshold": settings.threshold, "review_threshold": settings.review_threshold,
            "scoring": settings.scoring, "blocking": settings.blocking, "software": f"linkage {__version__}",
            "disclosure": {a: config.agencies[a].disclosure for a in agencies},
        })  # fmt: skip
        project = ""
        sources: dict[str, Encodings] = {}
        try:
            store.set_state(job_id, "fetching")
            for agency in agencies:
                sources[agency] = self.fetch(agency, job_id, say)
            check_compatible(sources)
            project = next(iter(sources.values())).project
            if config.retain_encodings:
                (job_dir / "encodings").mkdir(parents=True, exist_ok=True)
                for agency, enc in sources.items():
                    write_encodings(enc, job_dir / "encodings" / f"{agency}.parquet")
            store.set_state(job_id, "linking")
            started = time.perf_counter()
            result = link(sources, settings, progress=say)
            summary = link_summary(result, time.perf_counter() - started)
            self._forget(job_id, project, sources)
            bands = result.pairs.get_column("band").value_counts().rows()
            audit.append(self._me, "job linked", project=project, job=job_id, details={
                "scoring": result.scoring, "threshold": result.threshold, "review_threshold": result.review_threshold,
                "comparisons": result.comparisons, "candidates": int(len(result.scores)),
                "pairs": dict(sorted(bands)), "clusters": int(result.clusters.get_column("cluster_id").n_unique()),
                "records": result.sources, "score_histogram": score_histogram(result.scores).tolist(),
                "notes": _link_notes(result),
            })  # fmt: skip
            job_dir.mkdir(parents=True, exist_ok=True)
            result.pairs.write_csv(job_dir / "pairs.csv")
            result.clusters.write_csv(job_dir / "clusters.csv")
            store.set_state(job_id, "delivering")
            disclosure = {a: config.agencies[a].disclosure for a in agencies}
            per_agency = agency_results(result.pairs, disclosure, _job_key(job_dir))
            _write_references(job_dir, per_agency)
            for agency in agencies:
                self.deliver(agency, job_id, per_agency[agency])
                say(f"{agency}: delivered {per_agency[agency].height:,} results")
            store.set_state(job_id, "done", summary=summary)
            audit.append(self._me, "job finished", project=project, job=job_id, details={"state": "done", "delivered_to": agencies})
            return summary
        except Exception as error:
            reason = str(error) if isinstance(error, LinkageError) else f"internal error ({type(error).__name__})"
            self._forget(job_id, project, sources)
            store.set_state(job_id, "failed", error=reason)
            job = store.get(job_id)
            audit.append(self._me, "job finished", project=project, job=job_id, details={
                "state": "failed", "reason": reason[:400], "delivered_to": list(job.delivered) if job else [],
            })  # fmt: skip
            raise

    def _forget(self, job_id: str, project: str, sources: dict[str, Encodings]) -> None:
        """Encodings end with the job: dropped from memory (and never written, unless retained)."""
        if not sources:
            return
        agencies = sorted(sources)
        sources.clear()
        self._audit.append(self._me, "encodings deleted", project=project, job=job_id, details={
            "agencies": agencies, "retained_on_disk": self._config.retain_encodings,
        })  # fmt: skip


def _link_notes(result: LinkResult) -> list[str]:
    """What linking changed on its own (rules tightened, defaults moved) and why, fit for the audit log."""
    notes = [*result.notes, *(f"{s.source_a} ~ {s.source_b}: {note}" for s in result.stats for note in s.notes)]
    return [note[:MAX_DETAIL_TEXT] for note in notes[:MAX_LOGGED_NOTES]]


def _job_key(job_dir: Path) -> bytes:
    """A random key per job, kept by the coordinator, behind every reference token of the job."""
    import secrets

    job_dir.mkdir(parents=True, exist_ok=True)
    path = job_dir / "reference.key"
    if not path.exists():
        path.write_bytes(secrets.token_bytes(32))
        path.chmod(0o600)
    return path.read_bytes()


def _write_references(job_dir: Path, per_agency: dict[str, pl.DataFrame]) -> None:
    """reference -> (agency, record id): lets the coordinator answer questions about a token."""
    frames = [frame.select("reference", pl.lit(agency).alias("agency"), "record_id") for agency, frame in per_agency.items()]
    pl.concat(frames).write_csv(job_dir / "references.csv")


class CoordinatorService(pb_grpc.CoordinatorServicer):
    def __init__(self, config: CoordinatorConfig, tls: TlsMaterial, store: JobStore, audit: AuditLog) -> None:
        self._config, self._store = config, store
        self._runner = JobRunner(config, tls, store, audit)

    def _settings(self, request: pb.JobRequest) -> LinkSettings:
        defaults = self._config.job
        return LinkSettings(
            threshold=request.threshold if request.HasField("threshold") else defaults.threshold,
            review_threshold=request.review_threshold if request.HasField("review_threshold") else defaults.review_threshold,
            scoring=request.scoring or defaults.scoring,
            blocking=request.blocking or defaults.blocking,
        )

    def RunJob(self, request: pb.JobRequest, context: grpc.ServicerContext) -> Iterator[pb.JobEvent]:
        agencies = list(dict.fromkeys(request.agencies))
        unknown = [a for a in agencies if a not in self._config.agencies]
        if unknown:
            raise JobError(f"unknown agency {unknown[0]!r} (this coordinator knows {', '.join(self._config.agencies)})")
        if len(agencies) < 2:
            raise JobError("a job needs at least two agencies")
        settings = self._settings(request)
        settings.thresholds()  # refuse bad thresholds before a job exists
        job_id = self._store.create(agencies, {k: v for k, v in settings.__dict__.items()})
        events: queue.Queue[pb.JobEvent] = queue.Queue()
        actor = str(caller(context))

        def work() -> None:
            try:
                summary = self._runner.run(job_id, agencies, settings, lambda line: events.put(pb.JobEvent(job_id=job_id, message=line)), actor=actor)
                events.put(pb.JobEvent(job_id=job_id, done=True, state="done", summary=summary))
            except LinkageError as error:
                events.put(pb.JobEvent(job_id=job_id, done=True, state="failed", summary=str(error)))
            except Exception as error:  # noqa: BLE001 - reported as a failed job, detail withheld
                events.put(pb.JobEvent(job_id=job_id, done=True, state="failed", summary=f"internal error ({type(error).__name__})"))

        threading.Thread(target=work, name=f"job {job_id}", daemon=True).start()
        yield pb.JobEvent(job_id=job_id, message=f"job {job_id} started: {', '.join(agencies)}")
        while True:
            event = events.get()
            yield event
            if event.done:
                return

    def GetJob(self, request: pb.GetJobRequest, context: grpc.ServicerContext) -> pb.JobStatus:
        job = self._store.get(request.job_id)
        if job is None:
            raise JobError(f"no job {request.job_id!r}")
        return pb.JobStatus(
            job_id=job.id, state=job.state, error=job.error or "", created=job.created, finished=job.finished or "", agencies=list(job.agencies)
        )


class AuditService(pb_grpc.AuditServicer):
    """Read access to the coordinator's audit log, for auditors; each read is itself an entry."""

    def __init__(self, audit: AuditLog, public_pem: bytes) -> None:
        self._audit, self._public_pem = audit, public_pem

    def ListEntries(self, request: pb.AuditQuery, context: grpc.ServicerContext) -> Iterator[pb.AuditRecord]:
        query = {k: v for k, v in (("job", request.job), ("actor", request.actor), ("action", request.action),
                 ("since", request.since), ("until", request.until)) if v}  # fmt: skip
        if request.seq:
            query["seq"] = request.seq
        entries = [self._audit.entry(request.seq)] if request.seq else self._audit.entries(**_entry_filters(query))
        self._audit.append(str(caller(context)), "audit log read", details={"query": {k: str(v) for k, v in query.items()}, "entries": len(entries)})
        for entry in entries:
            yield pb.AuditRecord(json=entries_jsonl([entry]))

    def Verify(self, request: pb.AuditVerifyRequest, context: grpc.ServicerContext) -> pb.AuditVerifyResponse:
        report = verify(self._audit.path, load_public_key(self._public_pem))
        self._audit.append(str(caller(context)), "audit log read", details={"query": {"verify": "all"}, "entries": report.checked})
        return pb.AuditVerifyResponse(
            ok=report.ok, checked=report.checked, first_bad=report.first_bad or 0, reason=report.reason, public_key_pem=self._public_pem.decode()
        )


def _entry_filters(query: dict) -> dict:
    out = dict(query)
    for key in ("since", "until"):
        if key in out:
            out[key] = parse_time(out[key])
    return out


def start_coordinator(config: CoordinatorConfig, tls: TlsMaterial):
    """A started coordinator server: (server, port, health servicer). Unfinished jobs are marked failed."""
    store = JobStore(config.data_dir / "jobs.db")
    audit = party_log(config.data_dir)
    for job in store.fail_interrupted():
        audit.append(f"coordinator/{config.name}", "job finished", job=job.id, details={
            "state": "failed", "reason": "coordinator stopped while the job ran", "delivered_to": list(job.delivered),
        })  # fmt: skip
    service = CoordinatorService(config, tls, store, audit)
    audit_service = AuditService(audit, (config.data_dir / AUDIT_PUBLIC_KEY_FILE).read_bytes())

    relay = KeyRelayService(config.data_dir / "keys.db", audit)

    def register(server: grpc.Server) -> None:
        pb_grpc.add_CoordinatorServicer_to_server(service, server)
        pb_grpc.add_AuditServicer_to_server(audit_service, server)
        pb_grpc.add_KeyRelayServicer_to_server(relay, server)

    return create_server(config.listen, tls, coordinator_policy(config), register)


def run_job_remotely(address: str, tls: TlsMaterial, request: pb.JobRequest) -> Iterator[pb.JobEvent]:
    """`linkage job run`'s side: ask the coordinator at ``address`` to run a job, yield its events."""
    with secure_channel(address, tls) as channel:
        try:
            yield from pb_grpc.CoordinatorStub(channel).RunJob(request, timeout=24 * 3600)
        except grpc.RpcError as error:
            raise JobError(_peer_error("coordinator", error)) from None
