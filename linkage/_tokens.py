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

from ._schema import FieldSpec

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


def factorised(columns: pl.DataFrame) -> tuple[np.ndarray, pl.DataFrame]:
    """Codes of each row's distinct value (-1 where the first column is null), and the distinct rows."""
    first = columns.columns[0]
    distinct = columns.filter(pl.col(first).is_not_null()).unique(maintain_order=False).with_row_index("_code")
    codes = (
        columns.join(distinct, on=columns.columns, how="left", nulls_equal=True, maintain_order="left")
        .get_column("_code")
        .fill_null(-1)
        .cast(pl.Int64)
        .to_numpy()
    )
    return codes, distinct.drop("_code")


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


@numba.njit(cache=True, nogil=True)
def _distinct_ids(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Dense ids of int64 keys in first-seen order (an open-addressing table; faster than sorting)."""
    size = 1
    while size < 2 * keys.shape[0] + 16:
        size <<= 1
    mask = size - 1
    slot_key = np.full(size, -1, dtype=np.int64)
    slot_id = np.empty(size, dtype=np.int64)
    ids = np.empty(keys.shape[0], dtype=np.int64)
    distinct = np.empty(keys.shape[0], dtype=np.int64)
    count = 0
    for i in range(keys.shape[0]):
        key = keys[i]
        h = (np.uint64(key) * np.uint64(0x9E3779B97F4A7C15)) >> np.uint64(20)
        s = np.int64(h) & mask
        while True:
            if slot_key[s] == key:
                ids[i] = slot_id[s]
                break
            if slot_key[s] == -1:
                slot_key[s] = key
                slot_id[s] = count
                distinct[count] = key
                ids[i] = count
                count += 1
                break
            s = (s + 1) & mask
    return ids, distinct[:count]


def distinct_ids(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return _distinct_ids(np.ascontiguousarray(keys, dtype=np.int64))


def _value_keys(spec: FieldSpec, values: pl.Series, qgram: int) -> tuple[np.ndarray, np.ndarray]:
    """(offsets, keys): the token keys of each distinct value."""
    if spec.kind in QGRAM_KINDS:
        lengths = values.str.len_chars().to_numpy().astype(np.int64)
        code_points = np.frombuffer("".join(values.to_list()).encode("utf-32-le"), dtype=np.uint32)
        return _qgram_keys(code_points.astype(np.int64), lengths, qgram)
    if spec.kind == "date":
        # "YYYY-MM-DD", a part unknown as "??": one token per known part.
        parts = pl.DataFrame({"d": values}).select(
            (pl.col("d").str.slice(0, 4).cast(pl.Int64, strict=False) + _DATE_PART_TAG).alias("year"),
            (pl.col("d").str.slice(5, 2).cast(pl.Int64, strict=False) + 2 * _DATE_PART_TAG).alias("month"),
            (pl.col("d").str.slice(8, 2).cast(pl.Int64, strict=False) + 3 * _DATE_PART_TAG).alias("day"),
        )
        keys = np.ascontiguousarray(parts.to_numpy()).reshape(-1)
        known = parts.select(pl.all().is_not_null()).to_numpy().reshape(-1)
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


def salt_text(values: pl.Series, kind: str) -> pl.Series:
    """The salt a field's values give: a date salts with its year, anything else with its value."""
    if kind == "date":
        year = values.str.slice(0, 4)
        return pl.select(pl.when(year.str.contains(r"^\d{4}$")).then(year)).to_series()
    return values


def field_tokens(
    spec: FieldSpec, values: pl.Series, qgram: int, salt: pl.Series | None = None, salt_kind: str = "text"
) -> FieldTokens:
    """The tokens of one normalised field (``salt``: attribute salting by another field's value)."""
    columns = pl.DataFrame({"value": values})
    if salt is not None:
        columns = columns.with_columns(salt=salt_text(salt, salt_kind).fill_null(""))
    codes, distinct = factorised(columns)
    offsets, keys = _value_keys(spec, distinct.get_column("value"), qgram)
    token_ids, distinct_keys = distinct_ids(keys)
    if salt is None:
        return FieldTokens(codes, offsets, token_ids, distinct_keys, [b""] * len(distinct_keys))
    # Salted: a token is the pair (key, salt). Pair ids come from the same table over packed pairs.
    salt_codes, salt_values = factorised(distinct.select("salt"))
    salt_of_token = np.repeat(salt_codes, np.diff(offsets))
    pair_ids, pairs = distinct_ids(token_ids * len(salt_values) + salt_of_token)
    salt_bytes = [s.encode() for s in salt_values.get_column("salt").to_list()]
    return FieldTokens(
        codes,
        offsets,
        pair_ids,
        distinct_keys[pairs // len(salt_values)],
        [salt_bytes[i] for i in (pairs % len(salt_values)).tolist()],
    )
