"""Messages ↔ arrays: encodings and results as chunked streams with a count and a digest.

The sender hashes every chunk it sends; the last chunk carries the total and the SHA-256 digest.
The receiver recomputes both and refuses the transfer when either disagrees, so a broken or
altered stream is never half-used. Nothing here touches a socket.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Iterator

import numpy as np
import polars as pl

from linkage.bloom._encodings import Encodings
from linkage.errors import EncodingsError, RequestError, TransferError
from linkage.jobs._agency import RESULT_COLUMNS
from linkage.jobs._profiles import AnyEncodings, encodings_from_bytes, encodings_to_bytes
from linkage.protocol.v1 import linkage_pb2 as pb
from linkage.scoped import ScopedEncodings

PACKED_CHUNK_BYTES = 1 << 20


def _ids_bytes(ids: list[str]) -> bytes:
    return "\n".join(ids).encode() + b"\x00"


def encoding_chunks(encodings: AnyEncodings, chunk_records: int) -> Iterator[pb.EncodingChunk]:
    if isinstance(encodings, ScopedEncodings):
        yield from _scoped_chunks(encodings)
        return
    digest = hashlib.sha256()
    n = len(encodings)
    ids = encodings.record_ids.to_list()
    groups = encodings.group_filters
    for start in range(0, max(n, 1), chunk_records):
        stop = min(start + chunk_records, n)
        chunk_ids = ids[start:stop]
        filters = encodings.filters[start:stop].tobytes()
        group_bytes = groups[start:stop].tobytes() if groups is not None else b""
        present = encodings.present[start:stop].astype("<u2").tobytes()
        for part in (_ids_bytes(chunk_ids), filters, group_bytes, present):
            digest.update(part)
        yield pb.EncodingChunk(record_ids=chunk_ids, filters=filters, group_filters=group_bytes, present=present)
    yield pb.EncodingChunk(
        last=True, total_records=n, digest=digest.hexdigest(), project=encodings.project,
        schema_fingerprint=encodings.schema_fingerprint, bits=encodings.bits, groups=list(encodings.group_names),
        key_epoch=encodings.key_epoch,
    )  # fmt: skip


def _scoped_chunks(encodings: ScopedEncodings) -> Iterator[pb.EncodingChunk]:
    data = encodings_to_bytes(encodings)
    for start in range(0, len(data), PACKED_CHUNK_BYTES):
        yield pb.EncodingChunk(packed=data[start : start + PACKED_CHUNK_BYTES])
    yield pb.EncodingChunk(
        last=True, total_records=len(encodings), digest=hashlib.sha256(data).hexdigest(), project=encodings.project,
        schema_fingerprint=encodings.schema_fingerprint, key_epoch=encodings.key_epoch, profile="match-keys",
    )  # fmt: skip


MAX_RECORD_ID_CHARS = 256
MAX_RECORDS = 50_000_000  # per agency and job: far beyond any task force, short of exhausting memory
MAX_GROUPS = 64
MAX_SCOPED_BYTES = 8192  # tokens and evidence of one record under match keys (about 1 KB in practice)
_JOB_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9-]{0,79}$")


def check_job_id(job_id: str, *, allow_empty: bool = False) -> str:
    """A job id fit for a file name and the audit log: letters, digits and '-', at most 80."""
    if (allow_empty and job_id == "") or _JOB_ID_RE.match(job_id):
        return job_id
    raise RequestError(f"malformed job id ({len(job_id)} characters; letters, digits and '-', at most 80)")


def encodings_budget(records: int, bits: int, groups: int, *, profile: str = "") -> int:
    """The most bytes an honest stream of ``records`` encodings can take: the cap on what a peer may send."""
    if profile == "match-keys":  # tokens and evidence: at most MAX_SCOPED_BYTES a record
        if not 0 <= records <= MAX_RECORDS:
            raise TransferError(f"announced {records:,} records: beyond this coordinator's limits")
        return 1_000_000 + records * (MAX_SCOPED_BYTES + MAX_RECORD_ID_CHARS + 1)
    if not 0 <= records <= MAX_RECORDS or bits <= 0 or bits % 64 or bits > 65536 or not 0 <= groups <= MAX_GROUPS:
        raise TransferError(f"announced {records:,} records of {bits} bits and {groups} groups: beyond this coordinator's limits")
    per_record = bits // 8 * (1 + groups) + 2 + MAX_RECORD_ID_CHARS + 1
    return 1_000_000 + records * per_record


def encodings_from_chunks(
    chunks: Iterable[pb.EncodingChunk], *, peer: str, max_bytes: int | None = None
) -> tuple[AnyEncodings, str]:
    """Reassemble and verify; returns the encodings and the stream's digest. ``peer`` names the sender.

    ``max_bytes`` (from the record count the peer announced, ``encodings_budget``): the stream is cut
    off, and refused, as soon as it holds more than an honest one could.
    """
    digest = hashlib.sha256()
    received = 0
    ids: list[str] = []
    filters, groups, present, packed = [], [], [], []
    trailer = None
    for chunk in chunks:
        if chunk.last:
            trailer = chunk
            break
        received += chunk.ByteSize()
        if max_bytes is not None and received > max_bytes:
            raise TransferError(f"{peer}: sent more than {max_bytes:,} bytes, more than the records it announced can take")
        if chunk.packed:
            digest.update(chunk.packed)
            packed.append(chunk.packed)
            continue
        chunk_ids = list(chunk.record_ids)
        if any(len(i) > MAX_RECORD_ID_CHARS for i in chunk_ids):
            raise TransferError(f"{peer}: a record id longer than {MAX_RECORD_ID_CHARS} characters")
        for part in (_ids_bytes(chunk_ids), chunk.filters, chunk.group_filters, chunk.present):
            digest.update(part)
        ids += chunk_ids
        filters.append(chunk.filters)
        groups.append(chunk.group_filters)
        present.append(chunk.present)
    if trailer is None:
        raise TransferError(f"{peer}: encodings stream ended before its last chunk")
    if trailer.profile == "match-keys" or packed:
        return _scoped_from(trailer, packed, digest.hexdigest(), ids, peer), trailer.digest
    if trailer.total_records != len(ids):
        raise TransferError(f"{peer}: received {len(ids):,} records, the sender counted {trailer.total_records:,}")
    if trailer.digest != digest.hexdigest():
        raise TransferError(f"{peer}: encodings digest does not match: the transfer was altered or broken")
    if trailer.bits == 0 or trailer.bits % 64:
        raise TransferError(f"{peer}: bad filter length {trailer.bits}")
    n, words = len(ids), trailer.bits // 64
    group_names = tuple(trailer.groups)
    raw = b"".join(filters)
    raw_groups = b"".join(groups)
    raw_present = b"".join(present)
    if len(raw) != n * words * 8 or len(raw_present) != 2 * n or len(raw_groups) not in (0, n * len(group_names) * words * 8):
        raise TransferError(f"{peer}: encodings have the wrong size for {n:,} records of {trailer.bits} bits")
    return Encodings(
        record_ids=pl.Series("record_id", ids, dtype=pl.String),
        filters=np.frombuffer(raw, dtype="<u8").reshape(n, words).copy(),
        group_names=group_names,
        group_filters=np.frombuffer(raw_groups, dtype="<u8").reshape(n, len(group_names), words).copy() if raw_groups else None,
        present=np.frombuffer(raw_present, dtype="<u2").astype(np.uint16),
        schema_fingerprint=trailer.schema_fingerprint,
        project=trailer.project,
        key_epoch=trailer.key_epoch,
    ), trailer.digest


def _scoped_from(trailer: pb.EncodingChunk, packed: list[bytes], digest: str, ids: list[str], peer: str) -> ScopedEncodings:
    if trailer.profile != "match-keys" or ids:
        raise TransferError(f"{peer}: encodings stream mixes match-key and record-filter chunks")
    if trailer.digest != digest:
        raise TransferError(f"{peer}: encodings digest does not match: the transfer was altered or broken")
    try:
        encodings = encodings_from_bytes(b"".join(packed), peer=peer)
    except EncodingsError as error:
        raise TransferError(str(error)) from None
    if len(encodings) != trailer.total_records:
        raise TransferError(f"{peer}: received {len(encodings):,} records, the sender counted {trailer.total_records:,}")
    if (encodings.project, encodings.schema_fingerprint, encodings.key_epoch) != (
        trailer.project,
        trailer.schema_fingerprint,
        trailer.key_epoch,
    ):
        raise TransferError(f"{peer}: the encodings' metadata disagrees with the stream's")
    return encodings


def _row_bytes(row: pb.ResultRow) -> bytes:
    serialized: bytes = row.SerializeToString(deterministic=True)
    return serialized


def result_chunks(job_id: str, results: pl.DataFrame, chunk_rows: int = 4096) -> Iterator[pb.ResultChunk]:
    digest = hashlib.sha256()
    if "same_person_as" not in results.columns:  # results of a job that sought no duplicates
        results = results.with_columns(same_person_as=pl.lit([], dtype=pl.List(pl.String)))
    if "agreement" not in results.columns:  # a profile without comparison levels
        results = results.with_columns(agreement=pl.lit(None, dtype=pl.String))
    rows = [
        pb.ResultRow(
            record_id=r, band=b, similarity=s, reference=ref, shared_with=list(w), same_person_as=list(same), agreement=a or ""
        )
        for r, b, s, ref, w, same, a in results.select(RESULT_COLUMNS).iter_rows()
    ]
    for start in range(0, len(rows), chunk_rows):
        part = rows[start : start + chunk_rows]
        for row in part:
            digest.update(_row_bytes(row))
        yield pb.ResultChunk(job_id=job_id, rows=part)
    yield pb.ResultChunk(job_id=job_id, last=True, total_rows=len(rows), digest=digest.hexdigest())


MAX_NAMES_PER_ROW = 64
MAX_SAME_PERSON_PER_ROW = 10_000  # an agency's own records of one person
MAX_REFERENCE_CHARS = 64
MAX_AGREEMENT_CHARS = 1024


def results_from_chunks(
    chunks: Iterable[pb.ResultChunk], *, peer: str, max_rows: int = MAX_RECORDS
) -> tuple[str, pl.DataFrame, str]:
    """(job id, results, digest), verified: every row of one job, count and digest as sent.

    ``max_rows``: the receiver's own record count (a row per record at most); more is refused at once.
    """
    digest = hashlib.sha256()
    rows: list[pb.ResultRow] = []
    job_id = None
    trailer = None
    for chunk in chunks:
        if job_id is None:
            job_id = check_job_id(chunk.job_id)
        elif chunk.job_id != job_id:
            raise TransferError(f"{peer}: results of two jobs in one stream")
        if chunk.last:
            trailer = chunk
            break
        for row in chunk.rows:
            if row.band not in ("match", "possible"):
                raise TransferError(f"{peer}: result row {len(rows) + 1}: unknown band")
            if (len(row.record_id) > MAX_RECORD_ID_CHARS or len(row.reference) > MAX_REFERENCE_CHARS
                    or len(row.shared_with) > MAX_NAMES_PER_ROW or any(len(n) > 64 for n in row.shared_with)
                    or len(row.same_person_as) > MAX_SAME_PERSON_PER_ROW
                    or any(len(n) > MAX_RECORD_ID_CHARS for n in row.same_person_as)
                    or len(row.agreement) > MAX_AGREEMENT_CHARS):  # fmt: skip
                raise TransferError(f"{peer}: result row {len(rows) + 1}: a field beyond its limit")
            if len(rows) >= max_rows:
                raise TransferError(f"{peer}: more result rows than this agency has records ({max_rows:,})")
            digest.update(_row_bytes(row))
            rows.append(row)
    if trailer is None or not job_id:
        raise TransferError(f"{peer}: results stream ended before its last chunk")
    if trailer.total_rows != len(rows) or trailer.digest != digest.hexdigest():
        raise TransferError(f"{peer}: results count or digest does not match: the transfer was altered or broken")
    frame = pl.DataFrame(
        {
            "record_id": [r.record_id for r in rows],
            "band": [r.band for r in rows],
            "similarity": [r.similarity for r in rows],
            "reference": [r.reference for r in rows],
            "shared_with": [list(r.shared_with) for r in rows],
            "same_person_as": [list(r.same_person_as) for r in rows],
            "agreement": [r.agreement or None for r in rows],
        },
        schema={
            "record_id": pl.String,
            "band": pl.String,
            "similarity": pl.Float64,
            "reference": pl.String,
            "shared_with": pl.List(pl.String),
            "same_person_as": pl.List(pl.String),
            "agreement": pl.String,
        },
    )
    return job_id, frame, trailer.digest
