"""Views of an encoding the coordinator holds, as bit matrices the attacks work on.

A view is the record filter (``"record"``), one field group's filter (``"name"``, ``"dob"`` ...) or
all group filters together (``"groups"``). Bits are unpacked to one uint8 per bit: bit b of a
filter is bit b % 64 of word b // 64, little-endian, as everywhere in linkage.
"""

from __future__ import annotations

import numpy as np

from linkage.bloom._encodings import Encodings

RECORD = "record"
ALL_GROUPS = "groups"


def view_filters(encodings: Encodings, view: str) -> np.ndarray:
    """The packed filters of ``view``: (n, words), or (n, groups, words) for ``"groups"``."""
    if view == RECORD:
        return encodings.filters
    if encodings.group_filters is None:
        raise ValueError(f"view {view!r} needs group filters, and these encodings have none")
    if view == ALL_GROUPS:
        return encodings.group_filters
    if view not in encodings.group_names:
        raise ValueError(f"no field group {view!r} (groups: {', '.join(encodings.group_names)})")
    return np.ascontiguousarray(encodings.group_filters[:, encodings.group_names.index(view)])


def view_blocks(filters: np.ndarray) -> list[np.ndarray]:
    """A view's filters as a list of (n, words) blocks: one block, or one per field group."""
    if filters.ndim == 2:
        return [np.ascontiguousarray(filters)]
    if filters.ndim == 3:
        return [np.ascontiguousarray(filters[:, g]) for g in range(filters.shape[1])]
    raise ValueError("filters must be (records, words) or (records, groups, words) uint64")


def unpacked_bits(filters: np.ndarray) -> np.ndarray:
    """(n, words) uint64 → (n, words × 64) uint8 of 0/1."""
    n = filters.shape[0]
    raw = np.ascontiguousarray(filters, dtype="<u8").view(np.uint8).reshape(n, -1)
    return np.unpackbits(raw, axis=1, bitorder="little")


def dice_matrix(bits: np.ndarray) -> np.ndarray:
    """All-pairs Dice of unpacked filters (n, bits) as float32 (n, n); 0 where both are empty."""
    dense = bits.astype(np.float32)
    common = dense @ dense.T
    counts = dense.sum(axis=1)
    total = counts[:, None] + counts[None, :]
    dice: np.ndarray = np.divide(2.0 * common, total, out=np.zeros_like(common), where=total > 0)
    return dice
