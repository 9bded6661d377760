"""Scoped evidence: per record and match key, the fields the key does not fix, under keys that
belong to that key's value alone.

Layout of one scope (the same for every record of a key; ``EvidenceLayout`` says where):

    Bloom fields (names, addresses, towns, postcodes, text): a small filter of the value's
        q-grams, ``WORDS_BY_KIND`` words of 64 bits, ``HASHES`` positions per q-gram.
    Lanes (16 bits each, packed into the last words): dates as three lanes (year, month, day),
        sex and state as one. A lane of 0 is a missing value.

Every position and lane comes from SipHash-2-4 under the scope key (k0, k1), itself SipHash of the
key's value under a key derived from the project secret: evidence of one value in two scopes is
unrelated bits, and nothing the coordinator holds maps one scope's bits onto another's.
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np

from linkage.matching._scopes import BLOOM, DATE, EXACT, serial_twin
from linkage.scoped._prf import siphash_prefix, siphash_suffix, siphash_words2

WORDS_BY_KIND = {"name": 1, "address": 1, "city": 1, "postcode": 1, "text": 1}
LANES_BY_KIND = {"date": 3, "sex": 1, "state": 1}
HASHES = 2  # positions per q-gram; one SipHash output gives four 16-bit choices


@dataclass(frozen=True)
class Slot:
    """Where one field's evidence sits in a scope: ``offset`` is a word (Bloom) or a lane index."""

    field: str
    comparison: int  # BLOOM, DATE or EXACT
    offset: int
    width: int  # words (Bloom) or lanes

    def to_list(self) -> list[object]:
        return [self.field, self.comparison, self.offset, self.width]


@dataclass(frozen=True)
class ScopeLayout:
    """One key's scope: its slots, the fields it fixes (they agree by construction) and its width."""

    key: str
    slots: tuple[Slot, ...]
    fixed: tuple[str, ...]
    words: int
    lane_word: int  # first word holding lanes

    def to_dict(self) -> dict[str, object]:
        return {
            "key": self.key,
            "slots": [s.to_list() for s in self.slots],
            "fixed": list(self.fixed),
            "words": self.words,
            "lane_word": self.lane_word,
        }

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> ScopeLayout:
        """The layout ``to_dict`` wrote; a TypeError or ValueError when ``data`` is not one."""
        slots, fixed, words, lane_word = data["slots"], data["fixed"], data["words"], data["lane_word"]
        if not (isinstance(slots, list) and isinstance(fixed, list) and isinstance(words, int) and isinstance(lane_word, int)):
            raise TypeError("a scope layout holds lists of slots and fixed fields and integer word counts")
        return cls(
            str(data["key"]),
            tuple(Slot(str(f), int(c), int(o), int(w)) for f, c, o, w in slots),
            tuple(str(f) for f in fixed),
            words,
            lane_word,
        )


def scope_layout(key: str, fields: list[tuple[str, str]], fixed: frozenset[str]) -> ScopeLayout:
    """The layout of ``key``'s scope over ``fields`` ((name, kind) in schema order)."""
    slots, word, lanes = [], 0, []
    for name, kind in fields:
        if name in fixed:
            continue
        if kind in LANES_BY_KIND:
            lanes.append((name, kind))
            continue
        width = WORDS_BY_KIND[kind]
        slots.append(Slot(name, BLOOM, word, width))
        word += width
    lane = 0
    for name, kind in lanes:
        slots.append(Slot(name, DATE if kind == "date" else EXACT, lane, LANES_BY_KIND[kind]))
        lane += LANES_BY_KIND[kind]
    lane_word = word
    words = word + (lane + 3) // 4
    return ScopeLayout(key, tuple(slots), tuple(sorted(fixed)), words, lane_word)


@numba.njit(cache=True, nogil=True, parallel=True)
def fill_bloom(
    out: np.ndarray,
    word: int,
    words: int,
    k0: np.ndarray,
    k1: np.ndarray,
    has: np.ndarray,
    codes: np.ndarray,
    offsets: np.ndarray,
    token_ids: np.ndarray,
    token_keys: np.ndarray,
    tag: np.uint64,
) -> None:
    """Set each record's q-gram positions of one field in ``out[:, word:word + words]``."""
    bits = np.uint64(words * 64)
    for r in numba.prange(out.shape[0]):
        code = codes[r]
        if not has[r] or code < 0:
            continue
        v0, v1, v2, v3 = siphash_prefix(k0[r], k1[r], tag)  # = siphash_words2(k0[r], k1[r], tag, ·)
        for t in range(offsets[code], offsets[code + 1]):
            h = siphash_suffix(v0, v1, v2, v3, np.uint64(token_keys[token_ids[t]]))
            for c in range(HASHES):
                chunk = (h >> np.uint64(16 * c)) & np.uint64(0xFFFF)
                position = (chunk * bits) >> np.uint64(16)
                out[r, word + np.int64(position >> np.uint64(6))] |= np.uint64(1) << (position & np.uint64(63))


@numba.njit(cache=True, nogil=True, parallel=True)
def fill_lanes(
    out: np.ndarray,
    lane_word: int,
    lane: int,
    k0: np.ndarray,
    k1: np.ndarray,
    has: np.ndarray,
    codes: np.ndarray,
    offsets: np.ndarray,
    token_ids: np.ndarray,
    token_keys: np.ndarray,
    tag: np.uint64,
    by_part: bool,
) -> None:
    """Write each record's 16-bit lanes of one field: a date's parts (a token's tag says which part)
    or one whole value. A lane is never 0 unless the value (or part) is missing."""
    for r in numba.prange(out.shape[0]):
        code = codes[r]
        if not has[r] or code < 0:
            continue
        for t in range(offsets[code], offsets[code + 1]):
            key = token_keys[token_ids[t]]
            part = (key >> 40) if by_part else 0
            if by_part:
                # Month and day are hashed alike (tag + 2), so a swapped pair shows as crossed lanes.
                h = siphash_words2(k0[r], k1[r], tag + np.uint64(1 if part == 1 else 2), np.uint64(key & 0xFFFFFFFFFF))
            else:
                h = siphash_words2(k0[r], k1[r], tag, np.uint64(key))
            value = h & np.uint64(0xFFFF)
            if value == 0:
                value = np.uint64(1)
            at = lane + (part - 1 if by_part else 0)
            w = lane_word + at // 4
            out[r, w] |= value << np.uint64(16 * (at % 4))


fill_bloom_serial = serial_twin(fill_bloom, "fill_bloom_serial")
fill_lanes_serial = serial_twin(fill_lanes, "fill_lanes_serial")
