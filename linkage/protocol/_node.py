"""The agency node's gRPC service: thin methods over the library, auth in the interceptor."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc

from linkage.bloom._encodings import Encodings
from linkage.errors import JobError
from linkage.jobs._agency import (
    AgencyEncodings,
    agency_encodings,
    check_own_results,
    discard_stale_pending,
    release_results,
    write_results,
)  # fmt: skip
from linkage.jobs._config import NodeConfig
from linkage.protocol._auth import Policy, caller
from linkage.protocol._convert import check_job_id, encoding_chunks, results_from_chunks
from linkage.protocol.v1 import linkage_pb2 as pb
from linkage.protocol.v1 import linkage_pb2_grpc as pb_grpc
from linkage.trust._audit import AuditLog, party_log, utc_now
from linkage.trust._pki import Identity


class NoPendingResults(JobError):
    grpc_status = "NOT_FOUND"


def node_policy(config: NodeConfig) -> Policy:
    def policy(method: str, identity: Identity) -> str | None:
        if identity.role != "coordinator":
            return f"role {identity.role} may not call {method}; only a coordinator may"
        if identity.name not in config.coordinators:
            return f"coordinator {identity.name} is not one this node answers ({', '.join(config.coordinators)})"
        return None

    return policy


class NodeService(pb_grpc.NodeServicer):
    def __init__(self, config: NodeConfig, *, on_results: Callable[[str, Path], None] | None = None) -> None:
        self._config = config
        self._lock = threading.Lock()
        self._cached: tuple[tuple[int | None, ...], AgencyEncodings] | None = None
        self._on_results = on_results  # called with (job_id, path) after results are stored
        self._audit = party_log(config.data_dir)
        self._me = f"node/{config.agency}"
        for job_id, days in discard_stale_pending(config.data_dir, config.pending_keep, utc_now()):
            self._audit.append(self._me, "pending results discarded", job=job_id, details={
                "age_days": days, "keep_days": config.pending_keep.total_seconds() / 86400,
            })  # fmt: skip

    @property
    def audit(self) -> AuditLog:
        return self._audit

    def _encodings(self) -> AgencyEncodings:
        """Encode once per version of the input, schema and secret files."""
        config = self._config
        stamp = tuple(p.stat().st_mtime_ns if p.exists() else None for p in (config.input, config.schema, config.secret))
        with self._lock:
            if self._cached is None or self._cached[0] != stamp:
                self._cached = (stamp, agency_encodings(config))
            return self._cached[1]

    def Describe(self, request: pb.DescribeRequest, context: grpc.ServicerContext) -> pb.DescribeResponse:
        check_job_id(request.job_id, allow_empty=True)
        held = self._encodings()
        enc = held.encodings
        described = pb.DescribeResponse(
            agency=self._config.agency, project=enc.project, schema_fingerprint=enc.schema_fingerprint, records=len(enc),
            excluded=held.excluded, rejected_values=held.rejected_values, key_epoch=enc.key_epoch,
        )  # fmt: skip
        if isinstance(enc, Encodings):
            described.bits, described.profile = enc.bits, "field-scoring" if enc.group_filters is not None else "record-filter"
            described.groups.extend(enc.group_names)
        else:
            described.profile = "match-keys"
        return described

    def FetchEncodings(self, request: pb.FetchEncodingsRequest, context: grpc.ServicerContext) -> Iterator[pb.EncodingChunk]:
        check_job_id(request.job_id, allow_empty=True)
        chunk = request.chunk_records or self._config.chunk_records
        held = self._encodings()
        chunks = encoding_chunks(held.encodings, min(chunk, 100_000))
        pending = next(chunks)
        for following in chunks:
            yield pending
            pending = following
        # The entry is written before the last chunk (the one with the digest) leaves: the coordinator
        # cannot hold a whole transfer, let alone finish the job, before the node has recorded it.
        self._audit.append(self._me, "encodings sent", project=held.encodings.project, job=request.job_id, details={
            "to": str(caller(context)), "records": len(held.encodings), "excluded": held.excluded,
            "schema_fingerprint": held.encodings.schema_fingerprint, "digest": pending.digest,
        })  # fmt: skip
        yield pending

    def DeliverResults(self, request_iterator: Iterator[pb.ResultChunk], context: grpc.ServicerContext) -> pb.DeliveryReceipt:
        # a row per record at most: more is refused as it arrives, never held
        sent = self._encodings().encodings
        job_id, results, digest = results_from_chunks(request_iterator, peer="coordinator", max_rows=len(sent))
        check_own_results(results, sent.record_ids, peer=str(caller(context) or "coordinator"))
        # Pending until the coordinator releases them: no agency holds results of an unfinished job.
        write_results(self._config.data_dir, job_id, results, folder_name="pending")
        self._audit.append(self._me, "results received", job=job_id, details={
            "from": str(caller(context)), "rows": results.height, "digest": digest, "pending": True,
        })  # fmt: skip
        return pb.DeliveryReceipt(job_id=job_id, rows=results.height, digest=digest)

    def ReleaseResults(self, request: pb.ReleaseRequest, context: grpc.ServicerContext) -> pb.DeliveryReceipt:
        job_id = check_job_id(request.job_id)
        with self._lock:
            already = (self._config.data_dir / "results" / f"{job_id}.csv").exists()
            path = release_results(self._config.data_dir, job_id)
        if path is None:
            raise NoPendingResults(f"no results of job {job_id} here; deliver them first")
        if not already:
            self._audit.append(
                self._me, "results released", job=job_id, details={"by": str(caller(context)), "digest": request.digest[:64]}
            )
            if self._on_results:
                self._on_results(job_id, path)
        return pb.DeliveryReceipt(job_id=job_id, digest=request.digest)
