"""Tokens: normalised values to integer token keys, one token list per distinct value.

Values repeat heavily (first names, years, suburbs), so tokens are drawn once per distinct value of
a field and records refer to their value by code. Each token is a non-negative int64 key:
  - q-grams of names, addresses and text: the q padded code points packed 21 bits each;
  - dates: one token per part (year, month, day), so one wrong part keeps two of three;
  - sex and state: the whole value, as 63 bits of its BLAKE2b digest.
Keys are stable across machines and library versions, so every agency gets the same tokens.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numba
import numpy as np
import polars as pl

from linkage.records._schema import FieldSpec

_PAD = 0x1FFFFF  # not a Unicode code point: marks the padding of q-grams
_DATE_PART_TAG = 1 << 40  # keeps year 12, month 12 and day 12 apart

QGRAM_KINDS = frozenset({"name", "address", "city", "postcode", "text"})
WHOLE_VALUE_KINDS = frozenset({"sex", "state"})


@dataclass(frozen=True)
class FieldTokens:
    """Tokens of one field: record codes into its distinct values, and each value's token ids.

    ``codes[r]`` is the distinct value of record r (-1 where the value is missing);
    distinct value u holds tokens ``token_ids[offsets[u]:offsets[u + 1]]``, which index ``keys``
    (the token keys) and ``salts`` (the salt of each token, b"" when the field is not salted).
    """

    codes: np.ndarray  # int64[n]
    offsets: np.ndarray  # int64[values + 1]
    token_ids: np.ndarray  # int64[tokens drawn]
    keys: np.ndarray  # int64[distinct tokens]
    salts: list[bytes]  # per distinct token

    @property
    def n_values(self) -> int:
        return len(self.offsets) - 1


@numba.njit(cache=True, nogil=True)
def _qgram_keys(code_points: np.ndarray, lengths: np.ndarray, q: int) -> tuple[np.ndarray, np.ndarray]:
    n = lengths.shape[0]
    offsets = np.empty(n + 1, dtype=np.int64)
    offsets[0] = 0
    for u in range(n):
        offsets[u + 1] = offsets[u] + lengths[u] + q - 1
    keys = np.empty(offsets[n], dtype=np.int64)
    start = 0
    for u in range(n):
        length = lengths[u]
        out = offsets[u]
        for g in range(length + q - 1):
            key = 0
            for c in range(q):
                pos = g - (q - 1) + c
                cp = code_points[start + pos] if 0 <= pos < length else _PAD
                key = (key << 21) | cp
            keys[out + g] = key
        start += length
    return offsets, keys


@numba.njit(cache=True, nogil=True, inline="always")
def _slot(key: int, bits: int) -> np.int64:
    return np.int64((np.uint64(key) * np.uint64(0x9E3779B97F4A7C15)) >> np.uint64(64 - bits))


@numba.njit(cache=True, nogil=True)
def _distinct_ids(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Dense ids of int64 keys in first-seen order, the distinct keys and where each first occurs.

    An open-addressing hash table: one pass, faster than sorting. It starts at most 2^16 slots
    and doubles when half full, so that few distinct keys among many stay in cache. Key -1
    marks an empty slot: it gets id -1 and is never counted.
    """
    n = keys.shape[0]
    bits = 4
    while bits < 16 and (1 << bits) < 2 * n:
        bits += 1
    slots = np.full((1 << bits, 2), -1, dtype=np.int64)  # (key, id): one cache line per probe
    ids = np.empty(n, dtype=np.int64)
    distinct = np.empty(n, dtype=np.int64)
    first = np.empty(n, dtype=np.int64)
    count = 0
    for i in range(n):
        key = keys[i]
        s = _slot(key, bits)
        while True:
            if slots[s, 0] == key:
                ids[i] = slots[s, 1]
                break
            if slots[s, 0] == -1:
                slots[s, 0] = key
                slots[s, 1] = count
                distinct[count] = key
                first[count] = i
                ids[i] = count
                count += 1
                if 2 * count > 1 << bits:  # half full: double and re-insert
                    bits += 1
                    slots = np.full((1 << bits, 2), -1, dtype=np.int64)
                    for d in range(count):
                        t = _slot(distinct[d], bits)
                        while slots[t, 0] != -1:
                            t = (t + 1) & ((1 << bits) - 1)
                        slots[t, 0] = distinct[d]
                        slots[t, 1] = d
                break
            s = (s + 1) & ((1 << bits) - 1)
    return ids, distinct[:count], first[:count]


def distinct_ids(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Dense ids of int64 keys (first-seen order) and the distinct keys."""
    ids, distinct, _ = _distinct_ids(np.ascontiguousarray(keys, dtype=np.int64))
    return ids, distinct


# Up to this many values, Python lists beat polars, whose every call costs tens of microseconds:
# the few records of an intake query take these paths, to the same results.
FEW = 64


def utf8_bytes(values: pl.Series) -> tuple[np.ndarray, np.ndarray]:
    """The UTF-8 bytes of (non-null) values end to end, and the n + 1 offsets where each starts."""
    offsets = np.zeros(len(values) + 1, dtype=np.int64)
    if len(values) <= FEW:
        encoded = [value.encode() for value in values.to_list()]
        np.cumsum(np.array([len(e) for e in encoded], dtype=np.int64), out=offsets[1:])
        return np.frombuffer(b"".join(encoded), dtype=np.uint8), offsets
    np.cumsum(values.str.len_bytes().to_numpy(), out=offsets[1:])
    return np.frombuffer(values.str.join("").item().encode(), dtype=np.uint8), offsets


def factorised(values: pl.Series) -> tuple[np.ndarray, pl.Series]:
    """Codes of each value into its distinct values (-1 for null), and the distinct values.

    Keys are polars' 64-bit hashes (fast, and only ever compared within this process); the codes
    are checked against the values, and a hash collision falls back to an exact join. A few
    strings go through a dict: the same codes, in the same first-seen order.
    """
    if len(values) <= FEW and values.dtype == pl.String:
        index: dict[str, int] = {}
        found = [-1 if value is None else index.setdefault(value, len(index)) for value in values.to_list()]
        return np.array(found, dtype=np.int64), pl.Series(values.name, list(index), dtype=pl.String)
    present = values.is_not_null().to_numpy()
    hashes = values.hash(seed=0x5EED).to_numpy().view(np.int64) & np.int64(0x7FFFFFFFFFFFFFFF)
    # Key -1 (absent) gets id -1 and is not counted: nulls are code -1 and no distinct value.
    codes, _, first = _distinct_ids(np.where(present, hashes, -1))
    distinct = values.gather(first)
    if not (distinct.gather(codes[present]) == values.filter(pl.Series(present))).all():
        return _factorised_exactly(values)
    return codes, distinct


def _factorised_exactly(values: pl.Series) -> tuple[np.ndarray, pl.Series]:
    distinct = values.drop_nulls().unique(maintain_order=True)
    table = distinct.to_frame("v").with_row_index("code")
    codes = values.to_frame("v").join(table, on="v", how="left", maintain_order="left").get_column("code")
    return codes.fill_null(-1).cast(pl.Int64).to_numpy(), distinct


def _value_keys(spec: FieldSpec, values: pl.Series, qgram: int) -> tuple[np.ndarray, np.ndarray]:
    """(offsets, keys): the token keys of each distinct value."""
    if spec.kind in QGRAM_KINDS:
        if len(values) <= FEW:
            texts = values.to_list()
            lengths = np.array([len(text) for text in texts], dtype=np.int64)
            code_points = np.frombuffer("".join(texts).encode("utf-32-le"), dtype=np.uint32)
        else:
            lengths = values.str.len_chars().to_numpy().astype(np.int64)
            code_points = np.frombuffer(values.str.join("").item().encode("utf-32-le"), dtype=np.uint32)
        return _qgram_keys(code_points, lengths, qgram)
    if spec.kind == "date":
        # "YYYY-MM-DD", a part unknown as "??": one token per known part.
        # An unknown part is -1 (every key is at least _DATE_PART_TAG): one polars query, not two.
        parts = pl.DataFrame({"d": values}).select(
            (pl.col("d").str.slice(0, 4).cast(pl.Int64, strict=False) + _DATE_PART_TAG).fill_null(-1).alias("year"),
            (pl.col("d").str.slice(5, 2).cast(pl.Int64, strict=False) + 2 * _DATE_PART_TAG).fill_null(-1).alias("month"),
            (pl.col("d").str.slice(8, 2).cast(pl.Int64, strict=False) + 3 * _DATE_PART_TAG).fill_null(-1).alias("day"),
        )
        keys = np.ascontiguousarray(parts.to_numpy()).reshape(-1)
        known = keys >= 0
        counts = known.reshape(-1, 3).sum(axis=1)
        offsets = np.zeros(len(counts) + 1, dtype=np.int64)
        np.cumsum(counts, out=offsets[1:])
        return offsets, keys[known].astype(np.int64)
    if spec.kind in WHOLE_VALUE_KINDS:
        keys = np.array([whole_value_key(v) for v in values.to_list()], dtype=np.int64)
        return np.arange(keys.shape[0] + 1, dtype=np.int64), keys
    raise AssertionError(spec.kind)


def whole_value_key(value: str) -> int:
    return int.from_bytes(hashlib.blake2b(value.encode(), digest_size=8).digest(), "little") >> 1


def field_tokens(codes: np.ndarray, values: pl.Series, spec: FieldSpec, qgram: int) -> FieldTokens:
    """The tokens of one field, given each record's code into the field's distinct values."""
    offsets, keys = _value_keys(spec, values, qgram)
    token_ids, distinct_keys = distinct_ids(keys)
    return FieldTokens(codes, offsets, token_ids, distinct_keys, [b""] * len(distinct_keys))


def salt_values(values: pl.Series, kind: str) -> pl.Series:
    """The salt each distinct value gives: a date salts with its year, anything else with itself."""
    if kind == "date":
        year = values.str.slice(0, 4)
        return pl.select(pl.when(year.str.contains(r"^\d{4}$")).then(year).otherwise(pl.lit(""))).to_series()
    return values


def salted(tokens: FieldTokens, salt_codes: np.ndarray, salts: pl.Series) -> FieldTokens:
    """Attribute salting: every token becomes the pair (token, salt of the record's salt field).

    ``salt_codes[r]`` indexes ``salts`` (the salt texts), -1 where the record has no salt value.
    """
    salt_texts, salt_of = factorised(
        pl.concat([salts, pl.Series([""])]).gather(np.where(salt_codes >= 0, salt_codes, len(salts)))
    )
    n_salts = len(salt_of)
    present = tokens.codes >= 0
    pair_codes, _, first = _distinct_ids(np.where(present, tokens.codes * n_salts + salt_texts, -1))
    # Pair p is (value of its first record, salt of its first record); -1 stays missing.
    first_record = first
    pair_value = tokens.codes[first_record]
    pair_salt = salt_texts[first_record]
    valid = pair_value >= 0
    lengths = np.where(valid, np.diff(tokens.offsets)[np.maximum(pair_value, 0)], 0)
    offsets = np.zeros(len(pair_value) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    starts = tokens.offsets[np.maximum(pair_value, 0)]
    drawn = np.repeat(starts - offsets[:-1], lengths) + np.arange(offsets[-1])
    token_of_draw = tokens.token_ids[drawn]
    salt_of_draw = np.repeat(pair_salt, lengths)
    ids, combos = distinct_ids(token_of_draw * n_salts + salt_of_draw)
    salt_bytes = [s.encode() for s in salt_of.to_list()]
    record_codes = np.where(present, pair_codes, -1)
    return FieldTokens(
        record_codes,
        offsets,
        ids,
        tokens.keys[combos // n_salts],
        [salt_bytes[i] for i in (combos % n_salts).tolist()],
    )
