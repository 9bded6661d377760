"""Filter assembly: compiled kernels that OR token positions into packed uint64 filters.

Bit b of a filter is bit b % 64 of word b // 64 (little-endian words). Value filters are built one
field at a time (fields run side by side on threads, so that kernel is serial); record filters are
parallel over records, and each record only ORs the ready-made filters of its values.
"""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(cache=True, nogil=True)
def fill_value_filters(out: np.ndarray, offsets: np.ndarray, token_ids: np.ndarray, positions: np.ndarray) -> None:
    """Writes the filter of each distinct value into ``out`` (values, words)."""
    n, words = out.shape
    hashes = positions.shape[1]
    for u in range(n):
        for w in range(words):
            out[u, w] = 0
    if words <= 2 * hashes:
        # Short filters: OR each token's ready-made filter, a word at a time (vectorised), rather
        # than setting its bits one by one.
        tokens = np.zeros((positions.shape[0], words), dtype=np.uint64)
        for t in range(positions.shape[0]):
            for h in range(hashes):
                p = positions[t, h]
                tokens[t, p >> 6] |= np.uint64(1) << np.uint64(p & 63)
        for u in range(n):
            for i in range(offsets[u], offsets[u + 1]):
                token = token_ids[i]
                for w in range(words):
                    out[u, w] |= tokens[token, w]
        return
    for u in range(n):
        for t in range(offsets[u], offsets[u + 1]):
            token = token_ids[t]
            for h in range(hashes):
                p = positions[token, h]
                out[u, p >> 6] |= np.uint64(1) << np.uint64(p & 63)


def record_filters(
    codes: np.ndarray, table: np.ndarray, field_group: np.ndarray, n_groups: int, with_groups: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per record: the record filter, the group filters and the mask of groups present.

    ``codes`` is (fields, records), indexing rows of ``table`` (all fields' value filters stacked),
    -1 for a missing value. ``field_group[f]`` is field f's group.
    """
    n, words = codes.shape[1], table.shape[1]
    # Allocated here rather than in the kernel: numpy asks for huge pages, so the first touch of
    # a large output costs far fewer page faults.
    record = np.empty((n, words), dtype=np.uint64)
    groups = np.empty((n if with_groups else 0, n_groups, words), dtype=np.uint64)
    present = np.empty(n, dtype=np.uint16)
    _fill_record_filters(codes, table, field_group, record, groups, present)
    return record, groups, present


@numba.njit(parallel=True, cache=True, nogil=True)
def _fill_record_filters(
    codes: np.ndarray,
    table: np.ndarray,
    field_group: np.ndarray,
    record: np.ndarray,
    groups: np.ndarray,
    present: np.ndarray,
) -> None:
    n_fields, n = codes.shape
    words = table.shape[1]
    with_groups = groups.shape[0] > 0
    for r in numba.prange(n):
        mask = 0
        if with_groups:
            # A record filter is the OR of its group filters.
            for g in range(groups.shape[1]):
                for w in range(words):
                    groups[r, g, w] = 0
            for f in range(n_fields):
                code = codes[f, r]
                if code >= 0:
                    g = field_group[f]
                    mask |= 1 << g
                    for w in range(words):
                        groups[r, g, w] |= table[code, w]
            for w in range(words):
                record[r, w] = 0
            for g in range(groups.shape[1]):
                for w in range(words):
                    record[r, w] |= groups[r, g, w]
        else:
            for w in range(words):
                record[r, w] = 0
            for f in range(n_fields):
                code = codes[f, r]
                if code >= 0:
                    mask |= 1 << field_group[f]
                    for w in range(words):
                        record[r, w] |= table[code, w]
        present[r] = mask
