"""Scoped encodings in memory and on disk.

On disk: Parquet, one row per record: ``record_id``; per match key ``token_<key>`` (UInt64, null
where the record has no token for the key) and ``evidence_<key>`` (its scope's words as bytes,
little-endian). The file metadata carries the encoding version, schema fingerprint, project, key
epoch, the key-set fingerprint, the evidence layout and the secret check. Never a raw value.
"""

from __future__ import annotations

import hmac
import json
from dataclasses import dataclass
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
    return ScopedEncodings(
        record_ids=frame.get_column("record_id").cast(pl.String), fields=fields, kinds=kinds, roles=roles, layouts=layouts,
        tokens=tokens, has_token=has, evidence=tuple(evidence), schema_fingerprint=fingerprint, project=project,
        key_set_fingerprint=key_set, secret_check=check, key_epoch=key_epoch, encoding_version=version,
    )  # fmt: skip
