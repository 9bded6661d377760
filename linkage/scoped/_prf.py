"""SipHash-2-4 (Aumasson & Bernstein), compiled: the keyed PRF behind tokens and scoped positions.

``siphash_bytes`` hashes byte strings (checked against the paper's test vectors in the tests);
``siphash_words`` hashes a message of 64-bit words, exactly as ``siphash_bytes`` hashes their
little-endian bytes, without building them. A key is two 64-bit words (k0, k1): the 16 key bytes
read little-endian.
"""

from __future__ import annotations

import numba
import numpy as np

_MASK = 0xFFFFFFFFFFFFFFFF


@numba.njit(cache=True, nogil=True, inline="always")
def _rotl(x: np.uint64, b: int) -> np.uint64:
    return (x << np.uint64(b)) | (x >> np.uint64(64 - b))


@numba.njit(cache=True, nogil=True, inline="always")
def _round(v0: np.uint64, v1: np.uint64, v2: np.uint64, v3: np.uint64) -> tuple[np.uint64, np.uint64, np.uint64, np.uint64]:
    v0 += v1
    v1 = _rotl(v1, 13)
    v1 ^= v0
    v0 = _rotl(v0, 32)
    v2 += v3
    v3 = _rotl(v3, 16)
    v3 ^= v2
    v0 += v3
    v3 = _rotl(v3, 21)
    v3 ^= v0
    v2 += v1
    v1 = _rotl(v1, 17)
    v1 ^= v2
    v2 = _rotl(v2, 32)
    return v0, v1, v2, v3


@numba.njit(cache=True, nogil=True, inline="always")
def _start(k0: np.uint64, k1: np.uint64) -> tuple[np.uint64, np.uint64, np.uint64, np.uint64]:
    return (
        k0 ^ np.uint64(0x736F6D6570736575),
        k1 ^ np.uint64(0x646F72616E646F6D),
        k0 ^ np.uint64(0x6C7967656E657261),
        k1 ^ np.uint64(0x7465646279746573),
    )


@numba.njit(cache=True, nogil=True, inline="always")
def _absorb(
    v0: np.uint64, v1: np.uint64, v2: np.uint64, v3: np.uint64, m: np.uint64
) -> tuple[np.uint64, np.uint64, np.uint64, np.uint64]:
    v3 ^= m
    v0, v1, v2, v3 = _round(v0, v1, v2, v3)
    v0, v1, v2, v3 = _round(v0, v1, v2, v3)
    v0 ^= m
    return v0, v1, v2, v3


@numba.njit(cache=True, nogil=True, inline="always")
def _finish(v0: np.uint64, v1: np.uint64, v2: np.uint64, v3: np.uint64) -> np.uint64:
    v2 ^= np.uint64(0xFF)
    for _ in range(4):
        v0, v1, v2, v3 = _round(v0, v1, v2, v3)
    return v0 ^ v1 ^ v2 ^ v3


@numba.njit(cache=True, nogil=True)
def siphash_bytes(k0: np.uint64, k1: np.uint64, data: np.ndarray, start: int, stop: int) -> np.uint64:
    """SipHash-2-4 of ``data[start:stop]`` (uint8)."""
    v0, v1, v2, v3 = _start(k0, k1)
    length = stop - start
    full = start + (length // 8) * 8
    for at in range(start, full, 8):
        m = np.uint64(0)
        for b in range(8):
            m |= np.uint64(data[at + b]) << np.uint64(8 * b)
        v0, v1, v2, v3 = _absorb(v0, v1, v2, v3, m)
    last = np.uint64(length & 0xFF) << np.uint64(56)
    for b in range(stop - full):
        last |= np.uint64(data[full + b]) << np.uint64(8 * b)
    v0, v1, v2, v3 = _absorb(v0, v1, v2, v3, last)
    return _finish(v0, v1, v2, v3)


@numba.njit(cache=True, nogil=True, inline="always")
def siphash_words2(k0: np.uint64, k1: np.uint64, m0: np.uint64, m1: np.uint64) -> np.uint64:
    """SipHash-2-4 of the 16 little-endian bytes of (m0, m1)."""
    v0, v1, v2, v3 = _start(k0, k1)
    v0, v1, v2, v3 = _absorb(v0, v1, v2, v3, m0)
    v0, v1, v2, v3 = _absorb(v0, v1, v2, v3, m1)
    v0, v1, v2, v3 = _absorb(v0, v1, v2, v3, np.uint64(16) << np.uint64(56))
    return _finish(v0, v1, v2, v3)


@numba.njit(cache=True, nogil=True, inline="always")
def siphash_prefix(k0: np.uint64, k1: np.uint64, m0: np.uint64) -> tuple[np.uint64, np.uint64, np.uint64, np.uint64]:
    """The state of ``siphash_words2(k0, k1, m0, ·)`` after its first word: hashing many second
    words under one key and first word (a record's scope and a field's tag) absorbs it once."""
    v0, v1, v2, v3 = _start(k0, k1)
    return _absorb(v0, v1, v2, v3, m0)


@numba.njit(cache=True, nogil=True, inline="always")
def siphash_suffix(v0: np.uint64, v1: np.uint64, v2: np.uint64, v3: np.uint64, m1: np.uint64) -> np.uint64:
    """``siphash_words2(k0, k1, m0, m1)`` from ``siphash_prefix(k0, k1, m0)``."""
    v0, v1, v2, v3 = _absorb(v0, v1, v2, v3, m1)
    v0, v1, v2, v3 = _absorb(v0, v1, v2, v3, np.uint64(16) << np.uint64(56))
    return _finish(v0, v1, v2, v3)


@numba.njit(cache=True, nogil=True)
def prefixed_siphash(k0: np.uint64, k1: np.uint64, m0: np.uint64, m1: np.ndarray) -> np.ndarray:
    """``siphash_words2(k0, k1, m0, m1[i])`` for each i, through the prefix (for tests)."""
    v0, v1, v2, v3 = siphash_prefix(k0, k1, m0)
    out = np.empty(m1.shape[0], dtype=np.uint64)
    for i in range(m1.shape[0]):
        out[i] = siphash_suffix(v0, v1, v2, v3, m1[i])
    return out


@numba.njit(cache=True, nogil=True)
def strings_siphash(k0: np.uint64, k1: np.uint64, data: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """SipHash-2-4 of each string ``data[offsets[i]:offsets[i + 1]]``."""
    n = offsets.shape[0] - 1
    out = np.empty(n, dtype=np.uint64)
    for i in range(n):
        out[i] = siphash_bytes(k0, k1, data, offsets[i], offsets[i + 1])
    return out


@numba.njit(cache=True, nogil=True)
def words_siphash(k0: np.uint64, k1: np.uint64, m0: np.ndarray, m1: np.ndarray) -> np.ndarray:
    """SipHash-2-4 of each pair of words (for tests and small tables)."""
    out = np.empty(m0.shape[0], dtype=np.uint64)
    for i in range(m0.shape[0]):
        out[i] = siphash_words2(k0, k1, m0[i], m1[i])
    return out


def key_words(key: bytes) -> tuple[np.uint64, np.uint64]:
    """A 16-byte SipHash key as (k0, k1)."""
    if len(key) < 16:
        raise ValueError("a SipHash key is 16 bytes")
    return np.uint64(int.from_bytes(key[:8], "little")), np.uint64(int.from_bytes(key[8:16], "little"))
