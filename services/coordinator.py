"""The coordinator process: the job runner (fetch every agency's encodings, link, deliver each
agency its own results as the disclosure policy allows) and the server that hosts it.

Encodings live in memory for the job only and are dropped when it ends, unless the coordinator's
config retains them. Every step that crosses a party boundary is an audit entry.
"""

from __future__ import annotations

import dataclasses
import json
import secrets
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TypeVar

import grpc
import polars as pl

from linkage import __version__
from linkage._files import make_private, private_folder, write_atomically
from linkage.bloom._encodings import Encodings
from linkage.errors import ConfigError, JobError, LinkageError, TransferError
from linkage.jobs._config import CoordinatorConfig
from linkage.jobs._disclosure import agency_results
from linkage.jobs._index import IndexKeeper
from linkage.jobs._profiles import AnyEncodings, check_sources, link_sources, write_any_encodings
from linkage.jobs._store import JobStore
from linkage.matching._link import LinkSettings
from linkage.protocol._clients import NothingPending, deliver_results, fetch_encodings, peer_error, release_results
from linkage.protocol._coordinator import AuditService, CoordinatorService, IndexService, coordinator_policy
from linkage.protocol._relay import KeyRelayService
from linkage.protocol._server import create_server, refusal_reporter
from linkage.protocol.v1 import linkage_pb2 as pb
from linkage.protocol.v1 import linkage_pb2_grpc as pb_grpc
from linkage.scoped import ScopedEncodings, ScopedLinkResult
from linkage.trust._audit import AUDIT_PUBLIC_KEY_FILE, AuditLog, party_log
from linkage.trust._pki import TlsMaterial
from services._lifecycle import Started

__all__ = ["JobRunner", "follow_job", "start_coordinator"]


_T = TypeVar("_T")


class JobRunner:
    """One job, from fetching to delivery. Network I/O only; the work is the library's.

    Deliveries are pending at each node until every agency's is in (the job's commit point); then
    the coordinator releases them. A job that stops anywhere (a node down, the coordinator killed)
    is resumable: ``resume`` fetches and links again when the pairs were never written, and
    otherwise makes the deliveries and releases that are missing. ``hook(state, job_id)`` is called
    as the job enters each state (tests stop a party there).
    """

    def __init__(
        self, config: CoordinatorConfig, tls: TlsMaterial, store: JobStore, audit: AuditLog, *,
        hook: Callable[[str, str], None] | None = None, sleep: Callable[[float], None] = time.sleep,
        index: IndexKeeper | None = None,
    ) -> None:  # fmt: skip
        self._config, self._tls, self._store, self._audit = config, tls, store, audit
        self._index = index
        self._me = f"coordinator/{config.name}"
        self._hook = hook or (lambda _state, _job: None)
        self._sleep = sleep

    def _state(self, job_id: str, state: str, **kwargs: str) -> None:
        self._store.set_state(job_id, state, **kwargs)
        self._hook(state, job_id)

    def _backoff(self, attempt: int) -> float:
        delay: float = min(self._config.retry_backoff_s * 2 ** (attempt - 1), 30.0)
        return delay

    def _retrying(
        self, agency: str, what: str, attempts: int, call: Callable[[], _T], say: Callable[[str], None],
        errors: tuple[type[Exception], ...],
    ) -> _T:  # fmt: skip
        """``call()``, tried ``attempts`` times with backoff while it raises one of ``errors``; then a
        JobError naming the agency, ``what`` failed and the last error."""
        last = ""
        for attempt in range(1, attempts + 1):
            if attempt > 1:
                self._sleep(self._backoff(attempt - 1))
            try:
                return call()
            except errors as error:
                last = peer_error(agency, error) if isinstance(error, grpc.RpcError) else str(error)
            say(f"{agency}: {what} attempt {attempt} failed: {last}")
        raise JobError(f"{agency}: {what} failed after {attempts} attempts; last: {last}")

    def fetch(self, agency: str, job_id: str, say: Callable[[str], None]) -> AnyEncodings:
        entry = self._config.agencies[agency]

        def once() -> AnyEncodings:
            started = time.perf_counter()
            fetched = fetch_encodings(entry.address, self._tls, agency, job_id)
            encodings, digest, excluded = fetched.encodings, fetched.digest, fetched.excluded
            self._audit.append(self._me, "encodings received", project=encodings.project, job=job_id, details={
                "agency": agency, "records": len(encodings), "excluded_by_agency": excluded,
                "schema_fingerprint": encodings.schema_fingerprint, "digest": digest,
                **({"bits": encodings.bits} if isinstance(encodings, Encodings) else {"match_keys": list(encodings.keys)}),
            })  # fmt: skip
            say(
                f"{agency}: received {len(encodings):,} encodings in {time.perf_counter() - started:.2f} s"
                f" ({excluded:,} records excluded by the agency)"
            )
            return encodings

        return self._retrying(agency, "transfer", self._config.fetch_attempts, once, say, (TransferError, grpc.RpcError))

    def deliver(self, agency: str, job_id: str, results: pl.DataFrame, say: Callable[[str], None] = lambda _: None) -> None:
        """Deliver ``agency``'s results (pending at the node), retrying with backoff."""
        entry = self._config.agencies[agency]
        receipt = self._retrying(
            agency, "delivery", self._config.delivery_attempts,
            lambda: deliver_results(entry.address, self._tls, agency, job_id, results), say, (JobError,),
        )  # fmt: skip
        self._store.delivered(job_id, agency, results.height, receipt.digest)
        bands = results.get_column("band").value_counts().rows()
        self._audit.append(self._me, "results delivered", job=job_id, details={
            "agency": agency, "rows": results.height, "digest": receipt.digest, "bands": dict(sorted(bands)), "pending": True,
        })  # fmt: skip

    def release(self, agency: str, job_id: str, digest: str, say: Callable[[str], None]) -> bool:
        """Release ``agency``'s pending results, retrying with backoff; False when it holds none
        (it discarded them after they were pending too long: deliver them again)."""
        entry = self._config.agencies[agency]

        def once() -> bool:
            try:
                release_results(entry.address, self._tls, agency, job_id, digest)
            except NothingPending:
                return False
            return True

        if not self._retrying(agency, "release", self._config.delivery_attempts, once, say, (JobError,)):
            return False
        self._store.released(job_id, agency)
        self._audit.append(self._me, "results released", job=job_id, details={"agency": agency, "digest": digest})
        return True

    def run(self, job_id: str, agencies: list[str], settings: LinkSettings, say: Callable[[str], None], *, actor: str) -> str:
        config = self._config
        if self._index is not None:
            self._index.expire()
        # As asked (None: the scoring's default); "job linked" records what linking used.
        self._audit.append(actor, "job started", job=job_id, details={
            "agencies": agencies, "threshold": settings.threshold, "review_threshold": settings.review_threshold,
            "scoring": settings.scoring, "blocking": settings.blocking, "software": f"linkage {__version__}",
            "disclosure": {a: config.agencies[a].disclosure for a in agencies},
            "duplicates": {a: config.agencies[a].duplicates for a in agencies},
        })  # fmt: skip
        return self._guarded(job_id, lambda: self._link_and_deliver(job_id, agencies, settings, say))

    def resume(self, job_id: str, say: Callable[[str], None], *, actor: str) -> str:
        """Take an unfinished job up where it stopped; a finished one is left as it is."""
        job = self._store.get(job_id)
        if job is None:
            raise JobError(f"no job {job_id!r}")
        agencies = list(job.agencies)
        if job.state == "done" and set(job.released) >= set(agencies):
            return job.summary or "done"
        if job.state not in ("failed", "done"):
            raise JobError(f"job {job_id} is {job.state}: still running")
        self._audit.append(actor, "job resumed", job=job_id, details={
            "state": job.state, "delivered_to": list(job.delivered), "released_to": list(job.released),
        })  # fmt: skip
        settings = LinkSettings(
            **{k: v for k, v in job.settings.items() if k in ("threshold", "review_threshold", "scoring", "blocking")}
        )
        job_dir = self._config.data_dir / "jobs" / job_id
        if (job_dir / "pairs.csv").exists():
            say(f"job {job_id}: linked before; delivering what is missing")
            pairs = pl.read_csv(job_dir / "pairs.csv", schema_overrides={"id_a": pl.String, "id_b": pl.String})
            return self._guarded(job_id, lambda: self._deliver_all(job_id, agencies, pairs, job.summary or "", say))
        say(f"job {job_id}: fetching and linking again")
        return self._guarded(job_id, lambda: self._link_and_deliver(job_id, agencies, settings, say))

    def _guarded(self, job_id: str, work: Callable[[], str]) -> str:
        """Run ``work``; on failure the job is failed, resumable, with the reason and who holds what."""
        try:
            return work()
        except Exception as error:
            reason = str(error) if isinstance(error, LinkageError) else f"internal error ({type(error).__name__})"
            reason = f"{reason}; resume with `linkage job deliver --job {job_id}`"
            self._store.set_state(job_id, "failed", error=reason)
            job = self._store.get(job_id)
            self._audit.append(self._me, "job finished", job=job_id, details={
                "state": "failed", "reason": reason[:400], "delivered_to": list(job.delivered) if job else [],
                "released_to": list(job.released) if job else [],
            })  # fmt: skip
            if isinstance(error, LinkageError):
                raise JobError(reason) from None
            raise

    def _link_and_deliver(self, job_id: str, agencies: list[str], settings: LinkSettings, say: Callable[[str], None]) -> str:
        config = self._config
        job_dir = config.data_dir / "jobs" / job_id
        project = ""
        sources: dict[str, AnyEncodings] = {}
        try:
            self._state(job_id, "fetching")
            for agency in agencies:
                sources[agency] = self.fetch(agency, job_id, say)
            check_sources(sources)
            project = next(iter(sources.values())).project
            if config.retain_encodings:
                private_folder(job_dir / "encodings")
                for agency, enc in sources.items():
                    write_any_encodings(enc, job_dir / "encodings" / f"{agency}.parquet")
            self._state(job_id, "linking")
            started = time.perf_counter()
            # An agency whose policy allows duplicates may have several records in one cluster.
            allowed = frozenset(a for a in agencies if config.agencies[a].duplicates == "allow")
            scoped = all(isinstance(e, ScopedEncodings) for e in sources.values())
            result = link_sources(
                sources, dataclasses.replace(settings, duplicates=allowed if scoped else frozenset()), progress=say
            )
            summary = result.summary(time.perf_counter() - started)
            if self._index is not None and self._index.enabled and isinstance(result.result, ScopedLinkResult):
                # the intake index: the job's encodings set aside before they are dropped; kept once the job is done
                self._index.stage(job_id, {a: e for a, e in sources.items() if isinstance(e, ScopedEncodings)}, result.result)
        finally:
            self._forget(job_id, project, sources)
        self._audit.append(self._me, "job linked", project=project, job=job_id, details=result.audit_details())
        private_folder(job_dir)
        result.clusters.write_csv(job_dir / "clusters.csv")
        (job_dir / "thresholds.json").write_text(
            json.dumps({"threshold": result.threshold, "review_threshold": result.review_threshold})
        )
        # pairs.csv last, all at once: its presence says linking finished (resume delivers from it)
        make_private(job_dir / "clusters.csv", job_dir / "thresholds.json")
        write_atomically(job_dir / "pairs.csv", result.pairs.write_csv)
        self._store.set_state(job_id, "linking", summary=summary)
        return self._deliver_all(job_id, agencies, result.pairs, summary, say)

    def _deliver_all(
        self, job_id: str, agencies: list[str], pairs: pl.DataFrame, summary: str, say: Callable[[str], None]
    ) -> str:
        config = self._config
        job_dir = config.data_dir / "jobs" / job_id
        self._state(job_id, "delivering")
        disclosure = {a: config.agencies[a].disclosure for a in agencies}
        per_agency = agency_results(pairs, disclosure, _job_key(job_dir), thresholds=_thresholds(job_dir))
        _write_references(job_dir, per_agency)
        done = self._store.get(job_id)
        for agency in agencies:
            if done is not None and agency in done.delivered:
                continue
            self.deliver(agency, job_id, per_agency[agency], say)
            say(f"{agency}: delivered {per_agency[agency].height:,} results (pending until every agency has its own)")
        # Every delivery is in: the job is finished; now each agency may hold its results.
        self._state(job_id, "releasing")
        job = self._store.get(job_id)
        for agency in agencies:
            if job is not None and agency not in job.released and not self.release(agency, job_id, job.digest_of(agency), say):
                say(f"{agency}: holds no pending results of the job (discarded there after too long); delivering them again")
                self.deliver(agency, job_id, per_agency[agency], say)
                again = self._store.get(job_id)
                if again is None or not self.release(agency, job_id, again.digest_of(agency), say):
                    raise JobError(f"{agency}: results delivered again, and still none pending there to release")
        self._state(job_id, "done", summary=summary)
        self._audit.append(self._me, "job finished", job=job_id, details={"state": "done", "delivered_to": agencies})
        if self._index is not None:
            self._index.expire()
            if self._index.activate(job_id):
                say(f"intake index of job {job_id} kept for {self._config.index.keep}")
                self._index.load_in_background()
        return summary

    def _forget(self, job_id: str, project: str, sources: dict[str, AnyEncodings]) -> None:
        """Encodings end with the job: dropped from memory (and never written, unless retained)."""
        if not sources:
            return
        agencies = sorted(sources)
        sources.clear()
        self._audit.append(self._me, "encodings deleted", project=project, job=job_id, details={
            "agencies": agencies, "retained_on_disk": self._config.retain_encodings, "kept_in_index": self._config.index.enabled,
        })  # fmt: skip


def _job_key(job_dir: Path) -> bytes:
    """A random key per job, kept by the coordinator, behind every reference token of the job."""
    private_folder(job_dir)
    path = job_dir / "reference.key"
    if not path.exists():
        path.write_bytes(secrets.token_bytes(32))
        path.chmod(0o600)
    return path.read_bytes()


def _thresholds(job_dir: Path) -> tuple[float, float] | None:
    """The match and review thresholds linking used (None for a job linked before they were kept)."""
    try:
        kept = json.loads((job_dir / "thresholds.json").read_text())
        return float(kept["threshold"]), float(kept["review_threshold"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _write_references(job_dir: Path, per_agency: dict[str, pl.DataFrame]) -> None:
    """reference -> (agency, record id): lets the coordinator answer questions about a token."""
    frames = [frame.select("reference", pl.lit(agency).alias("agency"), "record_id") for agency, frame in per_agency.items()]
    pl.concat(frames).write_csv(job_dir / "references.csv")
    make_private(job_dir / "references.csv")


def start_coordinator(
    config: CoordinatorConfig,
    tls: TlsMaterial,
    *,
    hook: Callable[[str, str], None] | None = None,
    interceptors: Sequence[grpc.ServerInterceptor] = (),
) -> Started:
    """A started coordinator server: (server, port, health servicer). Unfinished jobs are marked failed,
    resumable. ``hook(state, job_id)``: called as a job enters each state (tests stop parties there)."""
    identity = tls.identity
    if (identity.role, identity.name) != ("coordinator", config.name):
        raise ConfigError(
            f"{config.source or 'coordinator config'}: coordinator.name is {config.name!r} but the certificate is {identity}"
        )
    private_folder(config.data_dir)
    private_folder(config.data_dir / "jobs")
    store = JobStore(config.data_dir / "jobs.db")
    audit = party_log(config.data_dir)
    for job in store.fail_interrupted():
        audit.append(f"coordinator/{config.name}", "job finished", job=job.id, details={
            "state": "failed", "reason": "coordinator stopped while the job ran", "delivered_to": list(job.delivered),
            "released_to": list(job.released),
        })  # fmt: skip
    index = IndexKeeper(
        config.data_dir / "index",
        config.index,
        audit,
        f"coordinator/{config.name}",
        source=str(config.source or "coordinator config"),
    )
    index.expire()  # on schedule: at start, and at each query and job
    index.load_in_background()
    runner = JobRunner(config, tls, store, audit, hook=hook, index=index)
    service = CoordinatorService(config, store, runner.run, runner.resume)
    index_service = IndexService(config, index)
    audit_service = AuditService(audit, (config.data_dir / AUDIT_PUBLIC_KEY_FILE).read_bytes())

    relay = KeyRelayService(config.data_dir / "keys.db", audit)
    make_private(config.data_dir / "jobs.db", config.data_dir / "keys.db")

    def register(server: grpc.Server) -> None:
        pb_grpc.add_CoordinatorServicer_to_server(service, server)
        pb_grpc.add_AuditServicer_to_server(audit_service, server)
        pb_grpc.add_IndexServicer_to_server(index_service, server)
        pb_grpc.add_KeyRelayServicer_to_server(relay, server)

    return create_server(
        config.listen,
        tls,
        coordinator_policy(config),
        register,
        on_refusal=refusal_reporter(audit, f"coordinator/{config.name}"),
        interceptors=interceptors,
    )


def follow_job(events: Iterator[pb.JobEvent], say: Callable[[str], None], progress: Callable[[str], None]) -> str:
    """Relay a job's events as it runs (``progress``) and its outcome (``say``); returns its final state."""
    state = "failed"
    for event in events:
        if event.done:
            state = event.state
            say(event.summary if state == "done" else f"job {event.job_id} failed: {event.summary}")
        else:
            progress(event.message)
    return state
