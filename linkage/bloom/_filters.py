"""Filter assembly: compiled kernels that OR token positions into packed uint64 filters.

Bit b of a filter is bit b % 64 of word b // 64 (little-endian words). Work is parallel over
distinct values, then over records; each record only ORs the ready-made filters of its values.
"""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(parallel=True, cache=True, nogil=True)
def value_filters(offsets: np.ndarray, token_ids: np.ndarray, positions: np.ndarray, words: int) -> np.ndarray:
    """The filter of each distinct value: (values, words) uint64."""
    n = offsets.shape[0] - 1
    out = np.zeros((n, words), dtype=np.uint64)
    hashes = positions.shape[1]
    for u in numba.prange(n):
        for t in range(offsets[u], offsets[u + 1]):
            token = token_ids[t]
            for h in range(hashes):
                p = positions[token, h]
                out[u, p >> 6] |= np.uint64(1) << np.uint64(p & 63)
    return out


@numba.njit(parallel=True, cache=True, nogil=True)
def record_filters(
    codes: np.ndarray, table: np.ndarray, field_group: np.ndarray, n_groups: int, with_groups: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per record: the record filter, the group filters and the mask of groups present.

    ``codes`` is (records, fields), indexing rows of ``table`` (all fields' value filters stacked),
    -1 for a missing value. ``field_group[f]`` is field f's group.
    """
    n, n_fields = codes.shape
    words = table.shape[1]
    record = np.zeros((n, words), dtype=np.uint64)
    groups = np.zeros((n if with_groups else 0, n_groups, words), dtype=np.uint64)
    present = np.zeros(n, dtype=np.uint16)
    for r in numba.prange(n):
        for f in range(n_fields):
            code = codes[r, f]
            if code < 0:
                continue
            g = field_group[f]
            present[r] |= np.uint16(1 << g)
            for w in range(words):
                record[r, w] |= table[code, w]
            if with_groups:
                for w in range(words):
                    groups[r, g, w] |= table[code, w]
    return record, groups, present
