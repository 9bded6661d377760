"""The recipe: records ─▶ normalise ─▶ per match key: a token and scoped evidence per record.

    per key: each record's key value (null if a part is missing) ─▶ distinct values ─▶ per value:
    token = SipHash(K_token, value), scope key = SipHash(K_scope0, value), SipHash(K_scope1, value)
    ─▶ values held by more than ``cap`` records lose their token (the records stay) ─▶ per record
    and key: the evidence of every field the key does not fix, positions drawn under the scope key

K_token, K_scope0 and K_scope1 are purpose-bound HKDF keys of the project secret, one set per key.
Hashing per distinct value is Python-free (numba); hashing per record and scope runs on all cores.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import time
from dataclasses import dataclass, field

import numpy as np
import polars as pl

from linkage.bloom._keys import Secret
from linkage.errors import SchemaError
from linkage.matching._scopes import BLOOM, DATE
from linkage.records._normalise import SERIAL_BELOW, normalise
from linkage.records._schema import Schema
from linkage.records._tokens import FieldTokens, factorised, field_tokens, utf8_bytes
from linkage.scoped._encodings import ScopedEncodings, secret_check
from linkage.scoped._evidence import (
    ScopeLayout,
    fill_bloom,
    fill_bloom_serial,
    fill_lanes,
    fill_lanes_serial,
    scope_layout,
)
from linkage.scoped._keys import (
    DEFAULT_MATCH_KEYS,
    LARGE_POPULATION_KEYS,
    LARGE_POPULATION_SHARE,
    MatchKey,
    check_keys,
    field_roles,
    fixed_fields,
    key_set_fingerprint,
    key_values,
    usable_keys,
)  # fmt: skip
from linkage.scoped._prf import key_words, strings_siphash

# A token value held by more records of one agency than this is dropped from them (the records
# stay, with their other keys): such a value is a household or a very common name, and sending it
# would tell the coordinator so.
DEFAULT_TOKEN_CAP = 1
# Groups of records sharing a key value up to this size are compared among themselves at the node
# for the decoy statistics, whatever the cap; larger groups are households or very common names.
DECOY_GROUP = 20
QGRAM = 2


@dataclass(frozen=True, eq=False)
class ScopedEncodeResult:
    encodings: ScopedEncodings
    rejects: pl.DataFrame  # row, record_id, field, reason (never the value)
    missing: dict[str, int]  # values missing per field
    capped: dict[str, int]  # per key: records whose token was dropped by the frequency cap
    without_key: dict[str, int]  # per key: records lacking a part of it
    seconds: dict[str, float] = field(default_factory=dict)
    refined: dict[str, int] = field(default_factory=dict)  # per key: records whose token was refined, not dropped


@dataclass(frozen=True)
class _Plan:
    """What encoding under a schema and key set needs besides the records: worked out once per
    (schema, keys), since an intake query encodes one record at a time under the same ones."""

    keys: tuple[MatchKey, ...]
    layouts: tuple[ScopeLayout, ...]
    roles: dict[str, str]  # copied for each encoding
    schema_fingerprint: str
    key_set_fingerprint: str


@functools.lru_cache(maxsize=16)
def _plan(schema: Schema, keys: tuple[MatchKey, ...] | None) -> _Plan:
    keys = resolved_keys(schema, keys)
    fields = [(spec.name, spec.kind) for spec in schema.fields]
    return _Plan(
        keys=keys,
        layouts=tuple(scope_layout(key.name, fields, fixed_fields(key, schema)) for key in keys),
        roles=field_roles(schema),
        schema_fingerprint=schema.fingerprint,
        key_set_fingerprint=key_set_fingerprint(keys),
    )


def resolved_keys(schema: Schema, keys: tuple[MatchKey, ...] | None) -> tuple[MatchKey, ...]:
    """The keys to encode: those asked for (every part must be in the schema), or the default
    keys the schema can make (at least one)."""
    if keys is None:
        return usable_keys(DEFAULT_MATCH_KEYS, schema)
    check_keys(keys, schema)
    return keys


def default_keys_for(schema: Schema, sample: pl.DataFrame | None = None, *, today: dt.date | None = None) -> tuple[MatchKey, ...]:
    """The default keys the schema can make, and the large-population keys too where ``sample`` (an
    agency's records) shows a large population: more than ``LARGE_POPULATION_SHARE`` of its records
    share their value of the first default key with another record."""
    keys = usable_keys(DEFAULT_MATCH_KEYS, schema)
    if sample is None or sample.height == 0 or keys[0].name != DEFAULT_MATCH_KEYS[0].name:
        return keys
    first = key_frequencies(sample, schema, keys=keys[:1], shared_by_more_than=0, today=today).row(0, named=True)
    if first["share_common"] <= LARGE_POPULATION_SHARE:
        return keys
    try:
        return keys + usable_keys(LARGE_POPULATION_KEYS, schema)
    except SchemaError:  # the schema can make none of them
        return keys


def encode_scoped(
    records: pl.DataFrame,
    schema: Schema,
    secret: Secret,
    *,
    keys: tuple[MatchKey, ...] | None = None,
    cap: int = DEFAULT_TOKEN_CAP,
    today: dt.date | None = None,
    key_epoch: int = 0,
) -> ScopedEncodeResult:
    """Encode ``records`` (``record_id`` plus one string column per schema field) under match keys."""
    if cap < 1:
        raise SchemaError("match keys: the frequency cap must be at least 1")
    plan = _plan(schema, None if keys is None else tuple(keys))
    keys = plan.keys
    today = today or dt.date.today()
    seconds: dict[str, float] = {}
    started = time.perf_counter()
    values, rejects, missing = normalise(records, schema, today=today)
    seconds["normalise"] = time.perf_counter() - started

    started = time.perf_counter()
    n = records.height
    tokens_by_field = {
        spec.name: field_tokens(values[spec.name].codes, values[spec.name].values, spec, QGRAM) for spec in schema.fields
    }
    tokens = np.zeros((n, len(keys)), dtype=np.uint64)
    has = np.zeros((n, len(keys)), dtype=bool)
    evidence, layouts = [], []
    capped, without = {}, {}
    sent = np.zeros((n, len(keys)), dtype=bool)
    grouped = np.zeros((n, len(keys)), dtype=bool)  # in a group of 2 to DECOY_GROUP records: the decoys
    sent_tokens = np.zeros((n, len(keys)), dtype=np.uint64)
    refills: list[list[tuple[np.ndarray, np.ndarray]]] = []  # per key: (rows, their evidence one level down)
    refined: dict[str, int] = {}
    parts: dict[str, pl.Series] = {}  # each field's value (or phonetic code) per record, shared by the keys
    key_value = key_values(keys, schema, values, parts)
    for k, key in enumerate(keys):
        token_key = key_words(secret.derive(schema.project, f"matchkey/token/{key.name}", 16))
        scope_key = secret.derive(schema.project, f"matchkey/scope/{key.name}", 32)
        value = key_value.get_column(str(k))
        present, group, value_token, k0, k1 = _hashed(value, None, token_key, scope_key)
        kept = present & (group <= cap)
        # Evidence is filled for the records of small groups too, so that the node can compare them
        # among themselves (the decoys) before the cap takes their tokens away.
        compared = present & (group <= max(cap, DECOY_GROUP))
        without[key.name] = int((~present).sum())
        tokens[:, k] = np.where(compared, value_token, 0)
        has[:, k] = compared
        grouped[:, k] = compared & (group >= 2)
        layout = plan.layouts[k]
        out = np.zeros((n, layout.words), dtype=np.uint64)
        _fill(out, layout, schema, tokens_by_field, None, compared, k0, k1)
        sent_tokens[:, k] = np.where(kept, value_token, 0)
        # Values shared beyond the cap: one refine part more at a time, among the records still shared.
        refills.append([])
        todo = present & ~kept
        for depth in range(1, len(key.refine) + 1):
            if not todo.any():
                break
            level = key_values([key.level(depth)], schema, values, parts).get_column("0")
            deeper = pl.select(pl.lit(f"{_LEVEL}{depth}{_LEVEL}") + level).to_series()
            found, group, value_token, k0, k1 = _hashed(deeper, todo, token_key, scope_key)
            rows = np.flatnonzero(found & (group <= cap))
            sent_tokens[rows, k] = value_token[rows]
            words = np.zeros((len(rows), layout.words), dtype=np.uint64)
            _fill(words, layout, schema, tokens_by_field, rows, np.ones(len(rows), dtype=bool), k0[rows], k1[rows])
            refills[-1].append((rows, words))
            todo[rows] = False
        sent[:, k] = present & ~todo
        refined[key.name] = int((sent[:, k] & ~kept).sum())
        capped[key.name] = int(todo.sum())
        evidence.append(out)
        layouts.append(layout)
    seconds["keys"] = time.perf_counter() - started

    record_ids = records.get_column("record_id")
    record_id = record_ids.gather(rejects.get_column("row") - 1)
    rejects = rejects.select("row", pl.lit(record_id).alias("record_id"), "field", "reason")
    encodings = ScopedEncodings(
        record_ids=record_ids, fields=schema.columns, kinds=tuple(spec.kind for spec in schema.fields), roles=dict(plan.roles), layouts=tuple(layouts), tokens=tokens,
        has_token=has, evidence=tuple(evidence), schema_fingerprint=plan.schema_fingerprint, project=schema.project,
        key_set_fingerprint=plan.key_set_fingerprint, secret_check=secret_check(secret, schema.project), key_epoch=key_epoch,
    )  # fmt: skip
    started = time.perf_counter()
    encodings = with_decoys_then_capped(encodings, sent, grouped, sent_tokens, refills)
    seconds["decoys"] = time.perf_counter() - started
    return ScopedEncodeResult(encodings, rejects, missing, capped, without, seconds, refined)


_LEVEL = "\x1e"  # marks a refined value: no value of the key itself can equal it


def _hashed(
    value: pl.Series, among: np.ndarray | None, token_key: tuple[np.uint64, np.uint64], scope_key: bytes
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per record: whether it holds a value (of those ``among``), how many records hold that value,
    its token and its scope key (k0, k1); 0 where it holds none."""
    if among is not None:
        value = value.set(pl.Series(~among), None)
    codes, distinct = factorised(value)
    data, offsets = utf8_bytes(distinct)
    value_token = strings_siphash(*token_key, data, offsets)
    value_k0 = strings_siphash(*key_words(scope_key[:16]), data, offsets)
    value_k1 = strings_siphash(*key_words(scope_key[16:]), data, offsets)
    present = codes >= 0
    counts = np.bincount(codes[present], minlength=len(distinct))
    group = counts[np.maximum(codes, 0)] if len(counts) else np.zeros(len(codes), dtype=np.int64)
    # A missing value points one past the distinct values (a zero there): a key no record holds works too.
    safe = np.where(present, codes, len(distinct))
    value_token, value_k0, value_k1 = (np.append(v, np.uint64(0))[safe] for v in (value_token, value_k0, value_k1))
    return present, np.where(present, group, 0), value_token, value_k0, value_k1


def _fill(
    out: np.ndarray, layout: ScopeLayout, schema: Schema, tokens_by_field: dict[str, FieldTokens], rows: np.ndarray | None,
    mask: np.ndarray, k0: np.ndarray, k1: np.ndarray,
) -> None:  # fmt: skip
    """Each slot's evidence of the records ``rows`` (all when None) into ``out``, under scope keys (k0, k1)."""
    for slot in layout.slots:
        ft = tokens_by_field[slot.field]
        tag = np.uint64((schema.columns.index(slot.field) + 1) << 8)
        codes = ft.codes if rows is None else np.ascontiguousarray(ft.codes[rows])
        args = (k0, k1, mask, codes, ft.offsets, ft.token_ids, ft.keys, tag)
        few = out.shape[0] <= SERIAL_BELOW  # a parallel region costs more than a few records' work
        if slot.comparison == BLOOM:
            (fill_bloom_serial if few else fill_bloom)(out, slot.offset, slot.width, *args)
        else:
            (fill_lanes_serial if few else fill_lanes)(out, layout.lane_word, slot.offset, *args, slot.comparison == DATE)


def with_decoys_then_capped(
    encodings: ScopedEncodings,
    sent: np.ndarray,
    grouped: np.ndarray | None = None,
    sent_tokens: np.ndarray | None = None,
    refills: list[list[tuple[np.ndarray, np.ndarray]]] | None = None,
) -> ScopedEncodings:
    """Compare the agency's own records that share a token (groups of up to ``DECOY_GROUP``) and keep
    only the histogram of their level patterns; then drop every token (and its evidence) the cap
    takes: what is sent shows no two of the agency's records sharing a token unless the cap allows.

    ``grouped`` marks, per key, the records whose token another record holds too: only they can
    make a pair, so the self-join skips every record alone with its value (nearly all of them).
    ``sent_tokens`` and ``refills`` (per key: rows and their evidence) are the tokens and scopes of
    records whose value was refined (``MatchKey.refine``); they replace those rows' before sending."""
    from linkage.scoped._link import compared_pairs

    pairing = encodings if grouped is None else dataclasses.replace(encodings, has_token=grouped)
    i, j, levels, _ = compared_pairs(pairing, pairing)
    patterns, counts = _distinct_rows(levels[i < j])
    tokens = np.where(sent, encodings.tokens if sent_tokens is None else sent_tokens, np.uint64(0))
    evidence = tuple(np.where(sent[:, k : k + 1], words, np.uint64(0)) for k, words in enumerate(encodings.evidence))
    for k, deeper in enumerate(refills or []):
        for rows, words in deeper:
            evidence[k][rows] = words
    return dataclasses.replace(
        encodings, tokens=tokens, has_token=sent.copy(), evidence=evidence,
        decoy_patterns=patterns.astype(np.int8).reshape(len(patterns), levels.shape[1]), decoy_counts=counts.astype(np.int64),
    )  # fmt: skip


def _distinct_rows(levels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``np.unique(levels, axis=0, return_counts=True)`` for levels in -1..6, through one int64 per
    row (three bits a column, the first most significant: the same rows in the same order)."""
    width = levels.shape[1]
    if width > 21 or (len(levels) and (levels.min() < -1 or levels.max() > 6)):
        return np.unique(levels, axis=0, return_counts=True)
    weights = np.int64(8) ** np.arange(width - 1, -1, -1, dtype=np.int64)
    codes, counts = np.unique((levels.astype(np.int64) + 1) @ weights, return_counts=True)
    patterns = ((codes[:, None] // weights[None, :]) % 8 - 1).astype(levels.dtype)
    return patterns.reshape(len(codes), width), counts


def key_frequencies(
    records: pl.DataFrame,
    schema: Schema,
    *,
    keys: tuple[MatchKey, ...] | None = None,
    shared_by_more_than: int = DEFAULT_TOKEN_CAP,
    today: dt.date | None = None,
) -> pl.DataFrame:
    """Per key: records holding it, distinct values, the largest group, and the share of records
    whose value is held by more than ``shared_by_more_than`` others (what the cap would drop)."""
    keys = resolved_keys(schema, keys)
    values, _, _ = normalise(records, schema, today=today or dt.date.today())
    rows = []
    for key, value in zip(keys, key_values(keys, schema, values), strict=True):
        codes, distinct = factorised(value)
        present = codes >= 0
        counts = np.bincount(codes[present], minlength=len(distinct))
        held = int(present.sum())
        common = int(counts[codes[present]].__gt__(shared_by_more_than + 1).sum()) if held else 0
        rows.append({
            "key": key.name, "records": held, "distinct": len(distinct), "largest": int(counts.max()) if held else 0,
            "share_common": common / held if held else 0.0,
        })  # fmt: skip
    return pl.DataFrame(
        rows,
        schema={"key": pl.String, "records": pl.Int64, "distinct": pl.Int64, "largest": pl.Int64, "share_common": pl.Float64},
    )
