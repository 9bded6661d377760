"""Hamming LSH, band after band: the sampled positions, the threads that share a band, the slots
each band writes into and the pairs it keeps (the kernels are in ``linkage.matching._lsh_kernels``,
the choice of r and bands in ``linkage.matching._lsh_parameters``).

Only the kept pairs are held between bands; huge buckets are split on ``EXTRA_BITS`` more bits
(at most ``MAX_BUCKET_PAIRS`` pairs a key), and what is still too big is skipped and counted.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import NamedTuple

import numba
import numpy as np

from linkage.matching._kernels import (
    _checked_filters,
    _checked_threshold,
    _concatenated,
    intersections_needed,
    partner_count_ranges,
    popcounts,
)
from linkage.matching._lsh_kernels import (
    _chunk_starts,
    _History,
    _join_chunk,
    _keys_into,
    _longest_run,
    _oversized_runs,
    _radix_sorted,
    _Sides,
)
from linkage.matching._lsh_parameters import _parameters_for

__all__ = ["BandProgress", "blocked_dice_pairs", "lsh_candidates"]

MAX_BUCKET_PAIRS = 1 << 20
EXTRA_BITS = 16
_SLOTS_PER_ROW = 4


@dataclass(frozen=True)
class BandProgress:
    band: int  # bands done
    bands: int
    candidates: int  # candidate pairs looked at so far, a pair once for each band it collides in
    pairs: int  # pairs at or above the threshold so far (candidates in lsh_candidates)
    split: int  # keys split on extra bits so far, their buckets being huge
    skipped: int  # pairs passed over so far, in buckets still huge after the split


def _band_positions(rng: np.random.Generator, bits: int, r: int, bands: int) -> tuple[np.ndarray, np.ndarray]:
    """(key positions (bands, r), extra positions (bands, EXTRA_BITS)): each band's r + extra
    positions drawn without replacement, bands independently, sorted so a row is read in order."""
    extra = min(EXTRA_BITS, bits - r)
    drawn = [rng.choice(bits, size=r + extra, replace=False) for _ in range(bands)]
    keys = np.array([np.sort(d[:r]) for d in drawn], dtype=np.int64).reshape(bands, r)
    extras = np.array([np.sort(d[r:]) for d in drawn], dtype=np.int64).reshape(bands, extra)
    return keys, extras


def _position_masks(positions: np.ndarray, words: int) -> np.ndarray:
    masks = np.zeros((positions.shape[0], words), dtype=np.uint64)
    for band, row in enumerate(positions):
        for p in row:
            masks[band, p >> 6] |= np.uint64(1) << np.uint64(p & 63)
    return masks


def _useful_rows(counts: np.ndarray, threshold: float, bits: int) -> np.ndarray:
    """Rows whose popcount leaves some partner popcount able to qualify (drops empties at t > 0)."""
    lowest, highest = partner_count_ranges(threshold, bits, counts)
    return np.flatnonzero(lowest[counts] <= highest[counts]).astype(np.int32)


def _linked_pairs(
    a: np.ndarray,
    b: np.ndarray,
    threshold: float,
    target_completeness: float,
    rng: np.random.Generator,
    progress: Callable[[BandProgress], None] | None,
    score: bool,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(i, j, score) over all bands: blocked_dice_pairs with ``score``, lsh_candidates without."""
    a = _checked_filters(a, "a")
    b = _checked_filters(b, "b")
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"a has {a.shape[1] * 64}-bit filters and b {b.shape[1] * 64}-bit ones")
    threshold = _checked_threshold(threshold)
    bits, words = a.shape[1] * 64, a.shape[1]
    a_counts = popcounts(a).astype(np.int64)
    b_counts = popcounts(b).astype(np.int64)
    params = _parameters_for(a, b, a_counts, b_counts, threshold, target_completeness)
    key_positions, extra_positions = _band_positions(rng, bits, params.bits_per_band, params.bands)
    history = _History(
        key_positions, extra_positions, _position_masks(key_positions, words),
        _position_masks(extra_positions, words), np.zeros(1, dtype=np.int64), np.empty(0, dtype=np.uint32),
        np.zeros(1, dtype=np.int64), np.empty(0, dtype=np.uint64),
    )  # fmt: skip
    need = intersections_needed(threshold, bits)
    a_rows = _useful_rows(a_counts, threshold, bits)
    b_rows = _useful_rows(b_counts, threshold, bits)
    slots = _Slots.for_rows(len(a_rows), _SLOTS_PER_ROW if score else 4 * _SLOTS_PER_ROW)
    pieces: list[list[np.ndarray]] = []  # (i, j, score) of each band
    looked = skipped = kept = 0
    # Threads: the kernels release the GIL, so a pool of numba's thread count shares each band.
    # No numba prange here: its OpenMP workers spin between the many short steps of a band and
    # starve the pool (measured), and a prange over the join compiled for ten seconds.
    threads = numba.get_num_threads()
    with ThreadPoolExecutor(max_workers=threads) as pool:
        for band in range(params.bands):
            sides = _band_sides(pool, a, b, a_rows, b_rows, key_positions[band], params.bits_per_band, 2 * threads)
            history = _with_oversized_runs(history, a, b, sides, band)
            join = functools.partial(_joined, pool, a, b, sides, need, score, band, history, 4 * threads)
            *found, band_looked = _band_pairs(join, sides, slots)
            pieces.append(found)
            looked, skipped, kept = looked + band_looked, skipped + history.skipped_pairs, kept + len(found[0])
            if progress is not None:
                split = len(history.split_keys)
                progress(BandProgress(band + 1, params.bands, looked, kept, split, skipped))
    return _sorted_by_pair(pieces, b.shape[0])


def _band_sides(
    pool: ThreadPoolExecutor,
    a: np.ndarray,
    b: np.ndarray,
    a_rows: np.ndarray,
    b_rows: np.ndarray,
    positions: np.ndarray,
    key_bits: int,
    chunks: int,
) -> _Sides:
    """Both sides' keys for one band, sorted; the work shared out on the pool's threads."""
    a_keys = np.empty(len(a_rows), dtype=np.uint32)
    b_keys = np.empty(len(b_rows), dtype=np.uint32)
    work = [
        pool.submit(_keys_into, filters, rows, positions, keys, lo, hi)
        for filters, rows, keys in ((a, a_rows, a_keys), (b, b_rows, b_keys))
        for lo, hi in _even_ranges(len(rows), chunks)
    ]
    for done in work:
        done.result()
    sorting_a = pool.submit(_radix_sorted, a_keys, key_bits)
    sorting_b = pool.submit(_radix_sorted, b_keys, key_bits)
    (a_sorted, a_order), (b_sorted, b_order) = sorting_a.result(), sorting_b.result()
    return _Sides(a_rows[a_order], a_sorted, b_rows[b_order], b_sorted)


def _even_ranges(n: int, parts: int) -> list[tuple[int, int]]:
    cuts = [(k * n) // parts for k in range(parts + 1)]
    return [(lo, hi) for lo, hi in itertools.pairwise(cuts) if hi > lo]


class _Slots(NamedTuple):
    """Where each a entry of a band writes what it keeps: at most caps[x] pairs from offsets[x]."""

    caps: np.ndarray
    offsets: np.ndarray
    out_j: np.ndarray
    out_score: np.ndarray

    @classmethod
    def for_rows(cls, rows: int, slots: int) -> _Slots:
        return cls.exact(np.full(rows, slots, dtype=np.int64))

    @classmethod
    def exact(cls, caps: np.ndarray) -> _Slots:
        offsets = np.concatenate([[0], np.cumsum(caps)[:-1]]).astype(np.int64)
        total = int(caps.sum())
        return cls(caps, offsets, np.empty(total, dtype=np.int64), np.empty(total, dtype=np.float32))


def _joined(
    pool: ThreadPoolExecutor,
    a: np.ndarray,
    b: np.ndarray,
    sides: _Sides,
    need: np.ndarray,
    score: bool,
    band: int,
    history: _History,
    chunks: int,
    slots: _Slots,
) -> tuple[np.ndarray, int]:
    """(kept per a entry, candidates looked at): ``_join_chunk`` over chunks of whole runs."""
    starts = _chunk_starts(sides.a_keys, chunks)
    kept = np.zeros(len(sides.a_keys), dtype=np.int64)
    work = [
        pool.submit(_join_chunk, a, b, sides, starts[c], starts[c + 1], need, score, band, history, *slots, kept)
        for c in range(len(starts) - 1)
    ]
    return kept, sum(chunk.result() for chunk in work)


def _band_pairs(
    join: Callable[[_Slots], tuple[np.ndarray, int]], sides: _Sides, slots: _Slots
) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """(i, j, score, candidates looked at) kept in one band. The slots are reused band after
    band; a band where an entry keeps more than its slots hold is joined again, exactly sized."""
    kept, looked = join(slots)
    if (kept > slots.caps).any():
        slots = _Slots.exact(kept)
        join(slots)
    entries = np.flatnonzero(kept)
    used = _used_slots(slots.offsets[entries], kept[entries])
    i = np.repeat(sides.a_rows[entries].astype(np.int64), kept[entries])
    return i, slots.out_j[used], slots.out_score[used], looked


def _with_oversized_runs(history: _History, a: np.ndarray, b: np.ndarray, sides: _Sides, band: int) -> _History:
    """The history with this band's split and skipped keys appended."""
    if _longest_run(sides.a_keys) * _longest_run(sides.b_keys) <= MAX_BUCKET_PAIRS:
        # The usual case, found in a quick scan: no key can make too many pairs.
        return history._replace(
            split_ptr=np.append(history.split_ptr, history.split_ptr[-1]),
            skipped_ptr=np.append(history.skipped_ptr, history.skipped_ptr[-1]),
            skipped_pairs=0,
        )
    split = np.empty(len(sides.a_keys), dtype=np.uint32)
    skipped = np.empty(len(sides.a_keys), dtype=np.uint64)
    n_split, n_skipped, pairs = _oversized_runs(a, b, sides, history.extra_positions[band], MAX_BUCKET_PAIRS, split, skipped)
    return history._replace(
        split_ptr=np.append(history.split_ptr, history.split_ptr[-1] + n_split),
        split_keys=np.concatenate([history.split_keys, split[:n_split]]),
        skipped_ptr=np.append(history.skipped_ptr, history.skipped_ptr[-1] + n_skipped),
        skipped_keys=np.concatenate([history.skipped_keys, skipped[:n_skipped]]),
        skipped_pairs=pairs,
    )


def _used_slots(offsets: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """offsets[k] + 0 .. counts[k] - 1 for each k, in order."""
    starts = np.repeat(offsets - np.concatenate([[0], np.cumsum(counts)[:-1]]), counts)
    return starts + np.arange(int(counts.sum()))


def _sorted_by_pair(pieces: Sequence[Sequence[np.ndarray]], n_b: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    i, j, score = _concatenated(*zip(*pieces)) if pieces else _concatenated([], [], [])
    order = np.argsort(i * np.int64(max(n_b, 1)) + j, kind="stable")
    return i[order], j[order], score[order]


def blocked_dice_pairs(
    a: np.ndarray,
    b: np.ndarray,
    threshold: float,
    *,
    target_completeness: float = 0.99,
    rng: np.random.Generator,
    progress: Callable[[BandProgress], None] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pairs with Dice >= threshold among LSH candidates: (i int64, j int64, score float32), sorted.

    Streams band by band (module docstring); ``rng`` draws the sampled bit positions, so a seeded
    generator gives the same result every run, whatever the thread count. ``progress`` is called
    after each band."""
    return _linked_pairs(a, b, threshold, target_completeness, rng, progress, score=True)


def lsh_candidates(
    a: np.ndarray,
    b: np.ndarray,
    *,
    threshold: float,
    target_completeness: float = 0.99,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """Candidate pairs (i, j) of Hamming LSH, deduplicated and sorted; nothing is scored.

    With the same rng state, ``dice_pairs(a, b, t, candidates=lsh_candidates(...))`` equals
    ``blocked_dice_pairs(a, b, t, ...)``. Holds every candidate in memory: for evaluation and
    modest sizes; ``blocked_dice_pairs`` is the streaming path."""
    i, j, _ = _linked_pairs(a, b, threshold, target_completeness, rng, None, score=False)
    return i, j
