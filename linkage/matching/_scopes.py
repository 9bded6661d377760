"""Comparing inside match-key scopes: the token join (which records share a key's token) and the
comparison levels of two records' evidence inside one scope. ``linkage.scoped`` lays the evidence
out (``ScopeLayout``) and links; the numba engine (``linkage.matching._engine``) runs these.
"""

from __future__ import annotations

import types
from typing import Any

import numba
import numpy as np
import polars as pl

__all__ = ["BLOOM", "DATE", "EXACT", "TOP", "scope_levels", "token_pairs"]

BLOOM, DATE, EXACT = 0, 1, 2  # how a slot of evidence compares: Bloom Dice, date parts, exact lane


def token_pairs(ta: np.ndarray, ha: np.ndarray, tb: np.ndarray, hb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows (i, j) whose tokens are equal: a sort-merge join, linear after the sorts."""
    ia, ib = np.flatnonzero(ha), np.flatnonzero(hb)
    if len(ia) == 0 or len(ib) == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    a = pl.DataFrame({"t": ta[ia], "i": ia})
    b = pl.DataFrame({"t": tb[ib], "j": ib})
    joined = a.join(b, on="t", how="inner")
    return joined.get_column("i").to_numpy().astype(np.int64), joined.get_column("j").to_numpy().astype(np.int64)


# Dice at or above each edge moves a Bloom field up one level: 0 (< 0.40) ... 5 (>= 0.95).
_EDGES = np.array([0.40, 0.60, 0.75, 0.85, 0.95])
TOP = 5


def serial_twin(kernel: Any, name: str) -> Any:
    """``kernel`` (a parallel numba function) compiled to run on the calling thread, for a few
    records (an intake query): starting a parallel region costs more than such work. A distinct
    name keeps numba's on-disk cache of the two apart."""
    py_func = kernel.py_func
    twin = types.FunctionType(py_func.__code__, py_func.__globals__, name, py_func.__defaults__, py_func.__closure__)
    twin.__qualname__ = name
    return numba.njit(cache=True, nogil=True)(twin)


@numba.njit(cache=True, nogil=True, inline="always")
def _popcount(x: np.uint64) -> int:
    x = x - ((x >> np.uint64(1)) & np.uint64(0x5555555555555555))
    x = (x & np.uint64(0x3333333333333333)) + ((x >> np.uint64(2)) & np.uint64(0x3333333333333333))
    x = (x + (x >> np.uint64(4))) & np.uint64(0x0F0F0F0F0F0F0F0F)
    return int((x * np.uint64(0x0101010101010101)) >> np.uint64(56))


@numba.njit(cache=True, nogil=True, inline="always")
def _lane(row: np.ndarray, lane_word: int, at: int) -> np.uint64:
    lane: np.uint64 = (row[lane_word + at // 4] >> np.uint64(16 * (at % 4))) & np.uint64(0xFFFF)
    return lane


@numba.njit(cache=True, nogil=True, parallel=True)
def scope_levels(
    ea: np.ndarray,
    eb: np.ndarray,
    i: np.ndarray,
    j: np.ndarray,
    slot_field: np.ndarray,
    slot_kind: np.ndarray,
    slot_offset: np.ndarray,
    slot_width: np.ndarray,
    lane_word: int,
    fixed: np.ndarray,
    n_fields: int,
) -> np.ndarray:
    """(pairs, fields) comparison levels inside one scope: -1 missing, 0..5 agreement; fields the
    key fixes agree at the top level."""
    n = i.shape[0]
    out = np.full((n, n_fields), -1, dtype=np.int8)
    for p in numba.prange(n):
        a, b = ea[i[p]], eb[j[p]]
        for f in range(fixed.shape[0]):
            out[p, fixed[f]] = TOP
        for s in range(slot_field.shape[0]):
            f, off, width = slot_field[s], slot_offset[s], slot_width[s]
            if slot_kind[s] == BLOOM:
                ca = cb = both = 0
                for w in range(off, off + width):
                    ca += _popcount(a[w])
                    cb += _popcount(b[w])
                    both += _popcount(a[w] & b[w])
                if ca == 0 or cb == 0:
                    continue
                dice = 2.0 * both / (ca + cb)
                level = 0
                for e in range(_EDGES.shape[0]):
                    if dice >= _EDGES[e]:
                        level += 1
                out[p, f] = level
            elif slot_kind[s] == DATE:
                ya, ma, da = _lane(a, lane_word, off), _lane(a, lane_word, off + 1), _lane(a, lane_word, off + 2)
                yb, mb, db = _lane(b, lane_word, off), _lane(b, lane_word, off + 1), _lane(b, lane_word, off + 2)
                known = int(ya != 0 and yb != 0) + int(ma != 0 and mb != 0) + int(da != 0 and db != 0)
                if known == 0:
                    continue
                agree = int(ya != 0 and ya == yb) + int(ma != 0 and ma == mb) + int(da != 0 and da == db)
                swapped = ma != 0 and da != 0 and ma != da and ma == db and da == mb
                if known == 3:
                    if agree == 3:
                        out[p, f] = 5
                    elif swapped and ya == yb:
                        out[p, f] = 4
                    elif agree == 2:
                        out[p, f] = 3
                    elif agree == 1 or swapped:
                        out[p, f] = 1
                    else:
                        out[p, f] = 0
                else:
                    out[p, f] = 4 if agree == known else (2 if agree > 0 else 0)
            else:
                va, vb = _lane(a, lane_word, off), _lane(b, lane_word, off)
                if va == 0 or vb == 0:
                    continue
                out[p, f] = 5 if va == vb else 0
    return out


scope_levels_serial = serial_twin(scope_levels, "scope_levels_serial")
