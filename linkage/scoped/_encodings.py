"""Scoped encodings in memory and on disk.

On disk: Parquet, one row per record: ``record_id``; per match key ``token_<key>`` (UInt64, null
where the record has no token for the key) and ``evidence_<key>`` (its scope's words as bytes,
little-endian). The file metadata carries the encoding version, schema fingerprint, project, key
epoch, the key-set fingerprint, the evidence layout and the secret check. Never a raw value.
"""

from __future__ import annotations

import hmac
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import numpy as np
import polars as pl

from linkage.bloom._keys import Secret
from linkage.errors import EncodingsError
from linkage.scoped._evidence import ScopeLayout

SCOPED_ENCODING_VERSION = 1
PROFILE = "match-keys"
_META = "linkage."
_SECRET_CHECK_LABEL = b"linkage/v1/match-keys/secret-check"


def secret_check(secret: Secret, project: str) -> str:
    """Equal for encodings made under one secret (and project); unrelated otherwise. Reveals
    nothing about the secret: an HMAC of a fixed label under a key of its own purpose."""
    key = secret.derive(project, "matchkey/secret-check")
    return hmac.new(key, _SECRET_CHECK_LABEL, "sha256").hexdigest()[:32]


@dataclass(frozen=True, eq=False)
class ScopedEncodings:
    """One agency's records under match keys."""

    record_ids: pl.Series
    fields: tuple[str, ...]  # every schema field, in order: the comparison levels' columns
    kinds: tuple[str, ...]  # each field's kind: address-like fields are scored as one
    roles: dict[str, str]  # role -> field (given, surname, dob, ...), for where EM starts
    layouts: tuple[ScopeLayout, ...]  # one per key, in key order
    tokens: np.ndarray  # (records, keys) uint64
    has_token: np.ndarray  # (records, keys) bool
    evidence: tuple[np.ndarray, ...]  # per key: (records, words) uint64
    schema_fingerprint: str
    project: str
    key_set_fingerprint: str
    secret_check: str
    key_epoch: int = 0
    encoding_version: int = SCOPED_ENCODING_VERSION
    # Pairs of this agency's own records that share a token before the cap: their comparison-level
    # patterns and how many pairs have each (an aggregate; no record is named). u is learned from them.
    decoy_patterns: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), dtype=np.int8))
    decoy_counts: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))

    def __len__(self) -> int:
        return len(self.record_ids)

    @property
    def keys(self) -> tuple[str, ...]:
        return tuple(layout.key for layout in self.layouts)

    @property
    def bytes_per_record(self) -> float:
        """Tokens and evidence on the wire, per record (record ids not counted)."""
        words = sum(layout.words for layout in self.layouts)
        return 8.0 * (len(self.layouts) + words)

    def metadata(self) -> dict[str, str]:
        return {
            f"{_META}profile": PROFILE,
            f"{_META}encoding_version": str(self.encoding_version),
            f"{_META}schema_fingerprint": self.schema_fingerprint,
            f"{_META}project": self.project,
            f"{_META}key_epoch": str(self.key_epoch),
            f"{_META}key_set_fingerprint": self.key_set_fingerprint,
            f"{_META}secret_check": self.secret_check,
            f"{_META}fields": json.dumps(list(self.fields)),
            f"{_META}kinds": json.dumps(list(self.kinds)),
            f"{_META}roles": json.dumps(self.roles, sort_keys=True),
            f"{_META}layouts": json.dumps([layout.to_dict() for layout in self.layouts]),
            f"{_META}bit_order": "uint64-little-endian",
            f"{_META}decoys": json.dumps(
                [[*map(int, p), int(c)] for p, c in zip(self.decoy_patterns, self.decoy_counts, strict=True)]
            ),
        }


def write_scoped_encodings(encodings: ScopedEncodings, path: str | Path | BinaryIO) -> None:
    columns = [encodings.record_ids.alias("record_id")]
    n = len(encodings)
    for k, layout in enumerate(encodings.layouts):
        token = pl.Series(f"token_{layout.key}", encodings.tokens[:, k], dtype=pl.UInt64)
        columns.append(token.set(pl.Series(~encodings.has_token[:, k]), None))
        words = np.ascontiguousarray(encodings.evidence[k])
        columns.append(pl.Series(f"evidence_{layout.key}", words.view(np.uint8).reshape(n, layout.words * 8)))
    pl.DataFrame(columns).write_parquet(path, compression="lz4", metadata=encodings.metadata(), statistics=False)


def read_scoped_encodings(source: str | Path | BinaryIO, *, name: str | None = None) -> ScopedEncodings:
    """Read a file (or a stream of its bytes, named ``name`` in errors: a peer, say)."""
    path = name if name is not None else Path(source) if isinstance(source, str | Path) else "stream"
    try:
        meta = pl.read_parquet_metadata(source)
        if not isinstance(source, str | Path):
            source.seek(0)
        frame = pl.read_parquet(source)
    except FileNotFoundError:
        raise EncodingsError(f"{path}: file not found") from None
    except (OSError, pl.exceptions.PolarsError):
        raise EncodingsError(f"{path}: not a readable Parquet file") from None
    if meta.get(f"{_META}profile") != PROFILE:
        raise EncodingsError(f"{path}: not a match-key encodings file")
    try:
        version = int(meta[f"{_META}encoding_version"])
        layouts = tuple(ScopeLayout.from_dict(d) for d in json.loads(meta[f"{_META}layouts"]))
        fields = tuple(json.loads(meta[f"{_META}fields"]))
        roles = dict(json.loads(meta[f"{_META}roles"]))
        kinds = tuple(json.loads(meta[f"{_META}kinds"]))
        fingerprint, project = meta[f"{_META}schema_fingerprint"], meta[f"{_META}project"]
        key_set, check = meta[f"{_META}key_set_fingerprint"], meta[f"{_META}secret_check"]
        key_epoch = int(meta.get(f"{_META}key_epoch", "0"))
    except (KeyError, ValueError, TypeError):
        raise EncodingsError(f"{path}: match-key metadata missing or malformed") from None
    if version != SCOPED_ENCODING_VERSION:
        raise EncodingsError(f"{path}: encoding version {version} is not supported (expected {SCOPED_ENCODING_VERSION})")
    n = frame.height
    tokens = np.zeros((n, len(layouts)), dtype=np.uint64)
    has = np.zeros((n, len(layouts)), dtype=bool)
    evidence = []
    for k, layout in enumerate(layouts):
        token_name, evidence_name = f"token_{layout.key}", f"evidence_{layout.key}"
        if token_name not in frame.columns or evidence_name not in frame.columns:
            raise EncodingsError(f"{path}: columns of match key {layout.key!r} missing")
        token = frame.get_column(token_name)
        has[:, k] = token.is_not_null().to_numpy()
        tokens[:, k] = token.fill_null(0).cast(pl.UInt64).to_numpy()
        column = frame.get_column(evidence_name)
        if column.dtype != pl.Array(pl.UInt8, layout.words * 8):
            raise EncodingsError(f"{path}: evidence of match key {layout.key!r} is not {layout.words} words wide")
        evidence.append(np.ascontiguousarray(column.to_numpy()).view(np.uint64).reshape(n, layout.words))
    decoy_patterns, decoy_counts = _decoys(meta, path)
    return ScopedEncodings(
        decoy_patterns=decoy_patterns, decoy_counts=decoy_counts,
        record_ids=frame.get_column("record_id").cast(pl.String), fields=fields, kinds=kinds, roles=roles, layouts=layouts,
        tokens=tokens, has_token=has, evidence=tuple(evidence), schema_fingerprint=fingerprint, project=project,
        key_set_fingerprint=key_set, secret_check=check, key_epoch=key_epoch, encoding_version=version,
    )  # fmt: skip


# -- the wire ------------------------------------------------------------------------------------------
# Parquet pays a length or repetition level per evidence value; on the wire the arrays go as they are:
#     u32 header length, header (JSON: the file metadata and the record count), record ids (UTF-8,
#     newline-separated, u32 length first), tokens (records x keys, u64 LE), token presence (packed
#     bits), evidence (per key: records x words, u64 LE)
_WIRE_MAGIC = b"LKMK1"
# The header's decoy histogram grows with the records (one row per level pattern seen among an
# agency's own records that share a token: 0.9 MB at 200,000 FEBRL-like records, 15 keys); the
# limit only bounds what a peer can make the coordinator parse as JSON.
MAX_WIRE_HEADER = 64 << 20


def pack_scoped(encodings: ScopedEncodings) -> bytes:
    """The compact wire form of ``encodings`` (never written to disk)."""
    header = json.dumps({"metadata": encodings.metadata(), "records": len(encodings)}, sort_keys=True).encode()
    ids = "\n".join(encodings.record_ids.to_list()).encode()
    parts = [
        _WIRE_MAGIC, len(header).to_bytes(4, "little"), header, len(ids).to_bytes(4, "little"), ids,
        np.ascontiguousarray(encodings.tokens, dtype="<u8").tobytes(), np.packbits(encodings.has_token, axis=None).tobytes(),
        *(np.ascontiguousarray(e, dtype="<u8").tobytes() for e in encodings.evidence),
    ]  # fmt: skip
    return b"".join(parts)


def unpack_scoped(data: bytes, *, name: str) -> ScopedEncodings:
    """Inverse of ``pack_scoped``; every size is checked against the header (one line naming ``name``)."""
    view = memoryview(data)

    def take(at: int, size: int) -> tuple[memoryview, int]:
        if size < 0 or at + size > len(view):
            raise EncodingsError(f"{name}: match-key encodings are cut short or malformed")
        return view[at : at + size], at + size

    magic, at = take(0, len(_WIRE_MAGIC))
    if bytes(magic) != _WIRE_MAGIC:
        raise EncodingsError(f"{name}: not match-key encodings")
    size, at = take(at, 4)
    if int.from_bytes(size, "little") > MAX_WIRE_HEADER:
        raise EncodingsError(f"{name}: match-key encodings header too large")
    raw_header, at = take(at, int.from_bytes(size, "little"))
    try:
        header = json.loads(bytes(raw_header))
        meta, n = dict(header["metadata"]), int(header["records"])
        layouts = tuple(ScopeLayout.from_dict(d) for d in json.loads(meta[f"{_META}layouts"]))
        version = int(meta[f"{_META}encoding_version"])
    except (KeyError, ValueError, TypeError):
        raise EncodingsError(f"{name}: match-key metadata missing or malformed") from None
    if meta.get(f"{_META}profile") != PROFILE or version != SCOPED_ENCODING_VERSION or n < 0:
        raise EncodingsError(f"{name}: not match-key encodings of version {SCOPED_ENCODING_VERSION}")
    size, at = take(at, 4)
    raw_ids, at = take(at, int.from_bytes(size, "little"))
    ids = bytes(raw_ids).decode("utf-8", errors="strict").split("\n") if n else []
    if len(ids) != n:
        raise EncodingsError(f"{name}: {len(ids):,} record ids for {n:,} records")
    keys = len(layouts)
    raw, at = take(at, 8 * n * keys)
    tokens = np.frombuffer(raw, dtype="<u8").reshape(n, keys).astype(np.uint64)
    raw, at = take(at, (n * keys + 7) // 8)
    has = np.unpackbits(np.frombuffer(raw, dtype=np.uint8), count=n * keys).astype(bool).reshape(n, keys)
    evidence = []
    for layout in layouts:
        raw, at = take(at, 8 * n * layout.words)
        evidence.append(np.frombuffer(raw, dtype="<u8").reshape(n, layout.words).astype(np.uint64))
    if at != len(view):
        raise EncodingsError(f"{name}: match-key encodings have trailing bytes")
    decoy_patterns, decoy_counts = _decoys(meta, name)
    try:
        return ScopedEncodings(
            decoy_patterns=decoy_patterns, decoy_counts=decoy_counts,
            record_ids=pl.Series("record_id", ids, dtype=pl.String), fields=tuple(json.loads(meta[f"{_META}fields"])),
            kinds=tuple(json.loads(meta[f"{_META}kinds"])), roles=dict(json.loads(meta[f"{_META}roles"])), layouts=layouts, tokens=tokens, has_token=has, evidence=tuple(evidence),
            schema_fingerprint=meta[f"{_META}schema_fingerprint"], project=meta[f"{_META}project"],
            key_set_fingerprint=meta[f"{_META}key_set_fingerprint"], secret_check=meta[f"{_META}secret_check"],
            key_epoch=int(meta.get(f"{_META}key_epoch", "0")), encoding_version=version,
        )  # fmt: skip
    except (KeyError, ValueError, TypeError):
        raise EncodingsError(f"{name}: match-key metadata missing or malformed") from None


def _decoys(meta: dict[str, str], where: object) -> tuple[np.ndarray, np.ndarray]:
    try:
        rows = json.loads(meta.get(f"{_META}decoys", "[]"))
        fields = len(json.loads(meta[f"{_META}fields"]))
        patterns = np.array([r[:-1] for r in rows], dtype=np.int8).reshape(len(rows), fields + 1 if rows else 0)
        counts = np.array([r[-1] for r in rows], dtype=np.int64)
    except (KeyError, ValueError, TypeError):
        raise EncodingsError(f"{where}: match-key decoy statistics malformed") from None
    if (counts < 0).any() or (patterns < -1).any() or (patterns > 5).any():
        raise EncodingsError(f"{where}: match-key decoy statistics malformed")
    return patterns, counts
