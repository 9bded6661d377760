"""Client calls that cross a party boundary: the coordinator fetching from and delivering to nodes,
and `linkage job run` asking a coordinator for a job. Each call translates grpc errors into
``JobError`` naming the peer."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TypeVar

import grpc
import polars as pl

from linkage.errors import InputError, JobError, TransferError
from linkage.jobs._agency import NO_KEY, query_encodings
from linkage.jobs._config import NodeConfig
from linkage.jobs._profiles import AnyEncodings, encodings_to_bytes
from linkage.protocol._convert import encodings_budget, encodings_from_chunks, result_chunks
from linkage.protocol._server import secure_channel
from linkage.protocol.v1 import linkage_pb2 as pb
from linkage.protocol.v1 import linkage_pb2_grpc as pb_grpc
from linkage.scoped import ScopedEncodings
from linkage.trust._pki import TlsMaterial

CALL_TIMEOUT = 600.0

_Reply = TypeVar("_Reply")


@dataclass(frozen=True)
class Fetched:
    encodings: AnyEncodings
    digest: str
    excluded: int  # records the agency excluded before encoding (no consent, say)


@dataclass(frozen=True)
class Receipt:
    rows: int
    digest: str


MAX_PEER_DETAIL = 300  # a peer's error text is kept short: it reaches job state and the audit log


def peer_error(agency: str, error: grpc.RpcError) -> str:
    code = error.code() if hasattr(error, "code") else None
    details = (error.details() if hasattr(error, "details") else str(error)) or ""
    if "Custom verification check failed" in details and "Hostname" in details:
        return f"{agency}: UNAVAILABLE: the server did not present {agency}'s certificate; refusing to talk to it"
    details = details.replace("\n", " ")
    if len(details) > MAX_PEER_DETAIL:
        details = details[:MAX_PEER_DETAIL] + "…"
    return f"{agency}: {code.name if code else 'error'}: {details}"


def fetch_encodings(address: str, tls: TlsMaterial, agency: str, job_id: str) -> Fetched:
    """One attempt at pulling ``agency``'s encodings for ``job_id``; raises TransferError or grpc.RpcError."""
    with secure_channel(address, tls, peer=("node", agency)) as channel:
        stub = pb_grpc.NodeStub(channel)
        described = stub.Describe(pb.DescribeRequest(job_id=job_id), timeout=CALL_TIMEOUT)
        if described.agency != agency:
            raise JobError(f"{agency}: the node at {address} says it is {described.agency!r}")
        budget = encodings_budget(described.records, described.bits, len(described.groups), profile=described.profile)
        chunks = stub.FetchEncodings(pb.FetchEncodingsRequest(job_id=job_id), timeout=CALL_TIMEOUT)
        try:
            encodings, digest = encodings_from_chunks(chunks, peer=agency, max_bytes=budget)
        finally:
            chunks.cancel()  # a stream refused half-way is cut off, not drained
        if len(encodings) != described.records:
            raise TransferError(f"{agency}: sent {len(encodings):,} records after announcing {described.records:,}")
    return Fetched(encodings, digest, described.excluded)


def deliver_results(address: str, tls: TlsMaterial, agency: str, job_id: str, results: pl.DataFrame) -> Receipt:
    """Stream ``results`` to ``agency``; the receipt must match what was sent."""
    chunks = list(result_chunks(job_id, results))
    try:
        with secure_channel(address, tls, peer=("node", agency)) as channel:
            receipt = pb_grpc.NodeStub(channel).DeliverResults(iter(chunks), timeout=CALL_TIMEOUT)
    except grpc.RpcError as error:
        raise JobError(f"delivery failed: {peer_error(agency, error)}") from None
    if receipt.digest != chunks[-1].digest or receipt.rows != results.height:
        raise JobError(f"{agency}: the delivery receipt does not match what was sent")
    return Receipt(receipt.rows, receipt.digest)


class NothingPending(JobError):
    """The node holds no results of the job to release (never delivered, or discarded there after
    pending too long): deliver them again."""


def release_results(address: str, tls: TlsMaterial, agency: str, job_id: str, digest: str) -> None:
    """Tell ``agency`` that the job is finished: its pending results become its results."""
    try:
        with secure_channel(address, tls, peer=("node", agency)) as channel:
            pb_grpc.NodeStub(channel).ReleaseResults(pb.ReleaseRequest(job_id=job_id, digest=digest), timeout=60)
    except grpc.RpcError as error:
        kind = NothingPending if error.code() == grpc.StatusCode.NOT_FOUND else JobError
        raise kind(f"release failed: {peer_error(agency, error)}") from None


def coordinator_call(
    address: str, tls: TlsMaterial, call: Callable[[pb_grpc.CoordinatorStub], _Reply], *, coordinator: str
) -> _Reply:
    """One unary call on the Coordinator service of ``coordinator`` (its certificate's identity is
    checked in the handshake), its errors as ``JobError``."""
    with secure_channel(address, tls, peer=("coordinator", coordinator)) as channel:
        try:
            return call(pb_grpc.CoordinatorStub(channel))
        except grpc.RpcError as error:
            raise JobError(peer_error("coordinator", error)) from None


def resume_job_remotely(address: str, tls: TlsMaterial, job_id: str, *, coordinator: str) -> Iterator[pb.JobEvent]:
    """`linkage job deliver`'s side: take a job up where it stopped, yield its events."""
    with secure_channel(address, tls, peer=("coordinator", coordinator)) as channel:
        try:
            yield from pb_grpc.CoordinatorStub(channel).ResumeJob(pb.GetJobRequest(job_id=job_id), timeout=24 * 3600)
        except grpc.RpcError as error:
            raise JobError(peer_error("coordinator", error)) from None


def run_job_remotely(address: str, tls: TlsMaterial, request: pb.JobRequest, *, coordinator: str) -> Iterator[pb.JobEvent]:
    """`linkage job run`'s side: ask ``coordinator`` at ``address`` (its certificate's identity is
    checked) to run a job, yield its events."""
    with secure_channel(address, tls, peer=("coordinator", coordinator)) as channel:
        try:
            yield from pb_grpc.CoordinatorStub(channel).RunJob(request, timeout=24 * 3600)
        except grpc.RpcError as error:
            raise JobError(peer_error("coordinator", error)) from None


def job_request(agencies: list[str], *, threshold: float | None = None, review_threshold: float | None = None) -> pb.JobRequest:
    """A request to link ``agencies``; thresholds left out take the coordinator's defaults."""
    request = pb.JobRequest(agencies=agencies)
    if threshold is not None:
        request.threshold = threshold
    if review_threshold is not None:
        request.review_threshold = review_threshold
    return request


def list_jobs(address: str, tls: TlsMaterial, *, coordinator: str) -> list[pb.JobStatus]:
    """The coordinator's jobs, newest first."""
    reply = coordinator_call(address, tls, lambda stub: stub.ListJobs(pb.ListJobsRequest(), timeout=30), coordinator=coordinator)
    return list(reply.jobs)


def job_status(address: str, tls: TlsMaterial, job_id: str, *, coordinator: str) -> pb.JobStatus:
    status: pb.JobStatus = coordinator_call(
        address, tls, lambda stub: stub.GetJob(pb.GetJobRequest(job_id=job_id), timeout=30), coordinator=coordinator
    )
    return status


def query_index(address: str, tls: TlsMaterial, encodings: ScopedEncodings, *, coordinator: str) -> pb.QueryResponse:
    """`linkage query`'s side: ask the index of ``coordinator`` (its certificate is checked) about
    ``encodings``, whose record ids are already row numbers. A refusal is a ``JobError`` with its status."""
    with secure_channel(address, tls, peer=("coordinator", coordinator)) as channel:
        try:
            response: pb.QueryResponse = pb_grpc.IndexStub(channel).Query(
                pb.QueryRequest(packed=encodings_to_bytes(encodings)), timeout=60
            )
            return response
        except grpc.RpcError as error:
            raise JobError(peer_error(coordinator, error)) from None


def ask_index(
    config: NodeConfig, tls: TlsMaterial, address: str, records: pl.DataFrame, *, coordinator: str | None = None
) -> list[str]:
    """A node's intake query, as `linkage query` prints it: encode ``records`` (``record_id`` and the
    schema's columns), ask the index, and say per record what may be disclosed, then which index answered."""
    encodings, ids, notes = query_encodings(config, records)
    if not encodings.has_token.any():  # asking would only spend a query of the hour's limit
        unused = sorted({n for row_notes in notes.values() for n in row_notes if n != NO_KEY})
        said = f" ({'; '.join(unused)})" if unused else ""
        raise InputError(
            f"no match key could be made from {'the record' if len(ids) == 1 else 'any record'}{said}: nothing to ask;"
            " a match key needs every one of its parts (`linkage schema show` lists them)"
        )
    response = query_index(address, tls, encodings, coordinator=config.coordinator(coordinator))
    answers = {a.record_id: a for a in response.answers}
    lines = []
    for row, record_id in enumerate(ids, start=1):
        answer = answers.get(str(row))
        if answer is None:
            lines.append(f"{record_id}: nothing to disclose")
        else:
            named = ", ".join(answer.shared_with) if answer.shared_with else "no agency may be named to you"
            lines.append(f"{record_id}: {answer.band} (score {answer.score:.4f}): {named}")
        if row in notes:
            lines[-1] += f" ({'; '.join(notes[row])})"
    lines.append(f"index of job {response.job_id}, kept until {response.expires}; {response.remaining:,} queries left this hour")
    return lines
