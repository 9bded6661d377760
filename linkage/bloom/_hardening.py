"""Hardening of packed filters against a curious coordinator (Ranbaduge & Schnell's survey names them).

- balanced: append the complement, then a keyed permutation of all bits; every filter then has
  exactly half its bits set, which hides how many tokens a record has.
- xor_folded: XOR the two halves; one output bit mixes two input bits.
- blipped: randomised response (BLIP); each bit flips with a small probability, from a stream
  seeded per record by a key the coordinator lacks, so encodings stay reproducible by the owner.
Attribute salting happens earlier, when positions are derived (see the tokens module).
"""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(parallel=True, cache=True, nogil=True)
def _balanced(filters: np.ndarray, permutation: np.ndarray) -> np.ndarray:
    n, words = filters.shape
    bits = words * 64
    out = np.zeros((n, 2 * words), dtype=np.uint64)
    for r in numba.prange(n):
        for j in range(2 * bits):
            src = permutation[j]
            if src < bits:
                bit = (filters[r, src >> 6] >> np.uint64(src & 63)) & np.uint64(1)
            else:
                s = src - bits
                bit = ((filters[r, s >> 6] >> np.uint64(s & 63)) & np.uint64(1)) ^ np.uint64(1)
            out[r, j >> 6] |= bit << np.uint64(j & 63)
    return out


def balanced(filters: np.ndarray, permutation: np.ndarray) -> np.ndarray:
    """Filters of twice the length, exactly half their bits set. ``permutation``: of 2 × bits."""
    if filters.shape[0] == 0:
        return np.zeros((0, 2 * filters.shape[1]), dtype=np.uint64)
    return _balanced(np.ascontiguousarray(filters), permutation.astype(np.int64))


def keyed_permutation(key: bytes, size: int) -> np.ndarray:
    return np.random.Generator(np.random.PCG64(int.from_bytes(key, "little"))).permutation(size)


def xor_folded(filters: np.ndarray) -> np.ndarray:
    half = filters.shape[1] // 2
    return np.ascontiguousarray(filters[:, :half] ^ filters[:, half:])


@numba.njit(cache=True, inline="always")
def _splitmix64(state: np.uint64) -> tuple[np.uint64, np.uint64]:
    state = state + np.uint64(0x9E3779B97F4A7C15)
    z = state
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return state, z ^ (z >> np.uint64(31))


@numba.njit(parallel=True, cache=True, nogil=True)
def _blipped(filters: np.ndarray, seeds: np.ndarray, probability: float) -> np.ndarray:
    n, words = filters.shape
    bits = words * 64
    out = filters.copy()
    log_keep = np.log1p(-probability)
    for r in numba.prange(n):
        state = seeds[r]
        # Geometric gaps between flipped bits: ~probability × bits draws instead of one per bit.
        position = -1
        while True:
            state, draw = _splitmix64(state)
            u = (np.float64(draw >> np.uint64(11)) + 0.5) * (1.0 / 9007199254740992.0)
            position += 1 + int(np.floor(np.log(u) / log_keep))
            if position >= bits:
                break
            out[r, position >> 6] ^= np.uint64(1) << np.uint64(position & 63)
    return out


def blipped(filters: np.ndarray, seeds: np.ndarray, probability: float) -> np.ndarray:
    """Each bit flipped independently with ``probability``; ``seeds``: one uint64 per row."""
    if probability <= 0.0 or filters.shape[0] == 0:
        return filters
    return _blipped(np.ascontiguousarray(filters), seeds.astype(np.uint64), float(probability))
