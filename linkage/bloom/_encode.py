"""Keyed Bloom-filter encoding: the recipe ``encode`` and nothing that asks for choices.

    records (strings) ─▶ normalise ─▶ tokens per distinct value ─▶ keyed positions per distinct
    token ─▶ value filters ─▶ record filters (+ group filters, presence) ─▶ hardening

Positions are derived once per (token space, token, salt) and reused by every record that holds
the token: that is where the speed comes from. Names share one token space, so a record with
given name and surname swapped gets the same name bits.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import polars as pl

from linkage.bloom._encodings import Encodings
from linkage.bloom._filters import fill_value_filters, record_filters
from linkage.bloom._hardening import balanced, blipped, keyed_permutation, xor_folded
from linkage.bloom._hashing import token_positions
from linkage.bloom._keys import Secret
from linkage.records._normalise import map_concurrently, normalise
from linkage.records._schema import FieldSpec, Schema
from linkage.records._tokens import FieldTokens, field_tokens, salt_values, salted

__all__ = ["EncodeResult", "encode"]


@dataclass(frozen=True, eq=False)
class EncodeResult:
    encodings: Encodings
    rejects: pl.DataFrame  # row, record_id, field, reason (never the value)
    missing: dict[str, int]  # values missing per field
    seconds: dict[str, float] = field(default_factory=dict)  # wall time per stage


def token_space(spec: FieldSpec) -> str:
    # All name fields share one space: swapped given name and surname set the same bits.
    return "name" if spec.kind == "name" else f"field:{spec.name}"


def encode(
    records: pl.DataFrame,
    schema: Schema,
    secret: Secret,
    *,
    today: dt.date | None = None,
    key_epoch: int = 0,
    progress: Callable[[str], None] | None = None,
) -> EncodeResult:
    """Encode ``records`` (a ``record_id`` column plus one string column per schema field).

    ``key_epoch`` is stamped on the encodings: encodings of different epochs are never compared.
    """
    today = today or dt.date.today()
    clock = _Clock(progress)
    values, rejects, missing = normalise(records, schema, today=today)
    clock.lap("normalise")

    bits, words = schema.filter.bits, schema.filter.bits // 64
    groups = schema.groups

    def positioned_tokens(spec: FieldSpec) -> tuple[FieldTokens, np.ndarray]:
        normalised = values[spec.name]
        tokens = field_tokens(normalised.codes, normalised.values, spec, schema.filter.qgram)
        if spec.salt_with:
            salt = values[spec.salt_with]
            tokens = salted(tokens, salt.codes, salt_values(salt.values, schema.field(spec.salt_with).kind))
        key = secret.derive(schema.project, f"tokens/{token_space(spec)}")
        return tokens, token_positions(key, tokens.keys, tokens.salts, schema.hashes_for(spec), bits)

    fields = map_concurrently(positioned_tokens, schema.fields)
    # All fields' value filters in one table: field f's values start at row starts[f].
    starts = np.cumsum([0] + [tokens.n_values for tokens, _ in fields])
    table = np.empty((starts[-1], words), dtype=np.uint64)
    codes = np.empty((len(fields), records.height), dtype=np.int64)

    def fill_field(f: int) -> None:
        tokens, positions = fields[f]
        fill_value_filters(table[starts[f] : starts[f + 1]], tokens.offsets, tokens.token_ids, positions)
        codes[f] = np.where(tokens.codes >= 0, tokens.codes + starts[f], -1)

    map_concurrently(fill_field, range(len(fields)))
    clock.lap("tokens")

    field_group = np.array([groups.index(spec.group) for spec in schema.fields], dtype=np.int64)
    record, group_filters, present = record_filters(codes, table, field_group, len(groups), schema.group_filters)
    clock.lap("filters")

    record_ids = records.get_column("record_id")
    record = _hardened(record, schema, secret, record_ids, 0)
    hardening = schema.hardening
    if schema.group_filters and (hardening.balance or hardening.xor_fold or hardening.blip > 0):
        group_filters = np.stack(
            [_hardened(group_filters[:, g, :], schema, secret, record_ids, g + 1) for g in range(len(groups))], axis=1
        )
    clock.lap("hardening")

    record_id = record_ids.gather(rejects.get_column("row") - 1)  # row 1 is the first record
    rejects = rejects.select("row", pl.lit(record_id).alias("record_id"), "field", "reason")
    encodings = Encodings(
        record_ids=record_ids,
        filters=record,
        group_names=groups,
        group_filters=group_filters if schema.group_filters else None,
        present=present,
        schema_fingerprint=schema.fingerprint,
        project=schema.project,
        key_epoch=key_epoch,
    )
    return EncodeResult(encodings=encodings, rejects=rejects, missing=missing, seconds=clock.seconds)


def _hardened(filters: np.ndarray, schema: Schema, secret: Secret, record_ids: pl.Series, stream: int) -> np.ndarray:
    hardening = schema.hardening
    if hardening.balance:
        permutation = keyed_permutation(secret.derive(schema.project, "hardening/permutation"), 2 * filters.shape[1] * 64)
        filters = balanced(filters, permutation)
    if hardening.xor_fold:
        filters = xor_folded(filters)
    if hardening.blip > 0:
        filters = blipped(
            filters, _record_seeds(secret.derive(schema.project, "hardening/blip"), record_ids, stream), hardening.blip
        )
    return filters


def _record_seeds(key: bytes, record_ids: pl.Series, stream: int) -> np.ndarray:
    """One seed per record and stream, keyed: reproducible by the owner, unpredictable to others."""
    person = stream.to_bytes(2, "little")
    digests = b"".join(
        hashlib.blake2b(rid.encode(), key=key, digest_size=8, person=person).digest() for rid in record_ids.to_list()
    )
    return np.frombuffer(digests, dtype="<u8").copy()


class _Clock:
    def __init__(self, progress: Callable[[str], None] | None) -> None:
        self._progress = progress
        self._last = time.perf_counter()
        self.seconds: dict[str, float] = {}

    def lap(self, stage: str) -> None:
        now = time.perf_counter()
        self.seconds[stage] = now - self._last
        self._last = now
        if self._progress:
            self._progress(stage)
