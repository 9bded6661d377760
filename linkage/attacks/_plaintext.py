"""The attacker's side of the schema: which tokens each plaintext record puts into a view.

The schema is shared, so the attacker tokenises its own list exactly as the agencies do (the same
normalisation, q-grams, date parts and salts) and knows how many bit positions each token gets.
Token identity is (token space, token key, salt): name fields share one space, as in the encoder.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np
import polars as pl
import scipy.sparse as sparse

from linkage.attacks._views import ALL_GROUPS, RECORD
from linkage.bloom._encode import token_space
from linkage.records._normalise import normalise
from linkage.records._schema import Schema
from linkage.records._tokens import QGRAM_KINDS, field_tokens, salt_values, salted


@dataclass(frozen=True, eq=False)
class PlaintextTokens:
    """Tokens of one view: ``holds[r, t]`` when plaintext record r holds token t."""

    holds: sparse.csr_matrix  # (records, tokens) bool
    hashes: np.ndarray  # int64 per token: bit positions the schema gives it
    labels: list[str]  # a readable name per token (for reports; plaintext is the attacker's own)

    @property
    def shares(self) -> np.ndarray:
        """Share of records holding each token."""
        n = self.holds.shape[0]
        shares: np.ndarray = np.asarray(self.holds.sum(axis=0)).ravel() / max(n, 1)
        return shares


def view_groups(schema: Schema, view: str) -> list[tuple[str, ...]]:
    """The field groups behind each block of ``view``: one block, or one per group for "groups"."""
    if view == RECORD:
        return [schema.groups]
    if view == ALL_GROUPS:
        return [(g,) for g in schema.groups]
    if view not in schema.groups:
        raise ValueError(f"no field group {view!r} in the schema")
    return [(view,)]


def plaintext_tokens(
    plaintext: pl.DataFrame, schema: Schema, groups: tuple[str, ...], *, today: dt.date | None = None
) -> PlaintextTokens:
    """The tokens each record of ``plaintext`` contributes to a filter of ``groups``' fields."""
    frame = plaintext.select(*(pl.col(c).cast(pl.String) for c in schema.columns))
    values, _, _ = normalise(frame, schema, today=today or dt.date.today())
    index: dict[tuple[str, int, bytes], int] = {}
    hashes: list[int] = []
    labels: list[str] = []
    rows, cols = [], []
    for spec in schema.fields:
        if spec.group not in groups:
            continue
        field = values[spec.name]
        tokens = field_tokens(field.codes, field.values, spec, schema.filter.qgram)
        if spec.salt_with:
            salt = values[spec.salt_with]
            tokens = salted(tokens, salt.codes, salt_values(salt.values, schema.field(spec.salt_with).kind))
        space = token_space(spec)
        h = schema.hashes_for(spec)
        local = np.empty(len(tokens.keys), dtype=np.int64)
        for t, (key, salt_bytes) in enumerate(zip(tokens.keys.tolist(), tokens.salts, strict=True)):
            ident = (space, key, salt_bytes)
            if ident not in index:
                index[ident] = len(hashes)
                hashes.append(h)
                labels.append(_label(spec.kind, space, key, salt_bytes))
            else:
                hashes[index[ident]] = max(hashes[index[ident]], h)
            local[t] = index[ident]
        present = np.flatnonzero(tokens.codes >= 0)
        codes = tokens.codes[present]
        lengths = tokens.offsets[codes + 1] - tokens.offsets[codes]
        starts = np.repeat(tokens.offsets[codes], lengths)
        within = np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        rows.append(np.repeat(present, lengths))
        cols.append(local[tokens.token_ids[starts + within]])
    n = plaintext.height
    row = np.concatenate(rows) if rows else np.zeros(0, dtype=np.int64)
    col = np.concatenate(cols) if cols else np.zeros(0, dtype=np.int64)
    holds = sparse.csr_matrix((np.ones(len(row), dtype=np.float32), (row, col)), shape=(n, len(hashes)))
    holds.sum_duplicates()
    holds.data[:] = 1.0
    return PlaintextTokens(holds=holds, hashes=np.array(hashes, dtype=np.int64), labels=labels)


def _label(kind: str, space: str, key: int, salt: bytes) -> str:
    if kind == "date":
        text = f"{('year', 'month', 'day')[(key >> 40) - 1]}={key & ((1 << 40) - 1)}"
    elif kind in QGRAM_KINDS:
        text = _qgram_text(key)
    else:
        text = f"#{key & 0xFFFF:04x}"  # a whole value's digest: its name is not needed
    suffix = f"|{salt.decode(errors='replace')}" if salt else ""
    return f"{space}:{text}{suffix}"


def _qgram_text(key: int) -> str:
    """A q-gram key back to its characters ("_" for padding)."""
    chars = []
    while key:
        cp = key & 0x1FFFFF
        chars.append("_" if cp == 0x1FFFFF else chr(cp) if cp < 0x110000 else "?")
        key >>= 21
    return "".join(reversed(chars))
