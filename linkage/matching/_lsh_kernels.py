"""The numba kernels of one LSH band: keys, radix sort, the walk through both sorted sides, the
check against earlier bands and the split of huge buckets (``linkage.matching._lsh`` runs them).

Streaming. Bands run one after another. A band reads its r bits of each row into a uint32 key,
radix-sorts both sides by key (one side a thread), and walks the two sorted lists together; pairs
of rows sharing a key are queued and scored a few thousand at a time, the rows of later pairs
prefetched while earlier ones are scored, and kept if they reach the threshold. Between bands only
the kept pairs are held, so memory is the inputs, one band's keys and the results.

Each pair is kept once: when a band keeps a pair it first checks, from the positions of the
earlier bands alone (``_History``), whether an earlier band compared it. That check runs on kept
pairs only, with both rows already in cache, so it costs little; no set of seen pairs is stored.

Huge buckets. A key whose rows would make more than ``MAX_BUCKET_PAIRS`` pairs in one band (empty
or duplicated records, bits that never vary) is split on ``EXTRA_BITS`` more sampled bits: only
rows that also share those are paired. A split run that is still too big is skipped whole, and its
pairs are counted in ``BandProgress.skipped``, never dropped silently. Both decisions depend only
on the band's keys, so the history can replay them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numba
import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.core.base import BaseContext
from numba.core.typing.context import BaseContext as TypingContext
from numba.core.typing.templates import Signature
from numba.extending import intrinsic

from linkage.matching._kernels import _Codegen, _popcount

_PREFETCH_AHEAD = 8  # candidates: measured best of 4, 8, 16, 32
_CANDIDATE_BATCH = 4096


@intrinsic
def _prefetch_row(typingctx: TypingContext, filters: types.Array, row: types.Integer) -> tuple[Signature, _Codegen]:
    """Ask the CPU to start loading a row (its first two cache lines): random rows otherwise
    cost a full memory latency each, one after another."""
    sig = types.void(filters, row)

    def codegen(context: BaseContext, builder: ir.IRBuilder, signature: Signature, args: Sequence[ir.Value]) -> ir.Value:
        array_type = signature.args[0]
        arr = context.make_array(array_type)(context, builder, args[0])
        zero = ir.Constant(ir.IntType(64), 0)
        row = context.cast(builder, args[1], signature.args[1], types.intp)
        pointer = cgutils.get_item_pointer2(
            context, builder, arr.data, cgutils.unpack_tuple(builder, arr.shape),
            cgutils.unpack_tuple(builder, arr.strides), array_type.layout, [row, zero], wraparound=False,
        )  # fmt: skip
        i8p = ir.IntType(8).as_pointer()
        prefetch = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(ir.VoidType(), [i8p] + [ir.IntType(32)] * 3), "llvm.prefetch.p0"
        )
        base = builder.bitcast(pointer, i8p)
        # llvm.prefetch(address, read (0), keep in every cache level (3), data not code (1))
        flags = [ir.Constant(ir.IntType(32), value) for value in (0, 3, 1)]
        for line in (0, 64):
            builder.call(prefetch, [builder.gep(base, [ir.Constant(ir.IntType(64), line)]), *flags])
        return context.get_dummy_value()

    return sig, codegen


@numba.njit(cache=True, nogil=True, boundscheck=False)
def _key_of(filters: np.ndarray, row: int, positions: np.ndarray) -> np.uint32:
    """Bit k of the key is the filter's bit at positions[k] (at most 32 positions)."""
    value = np.uint64(0)
    for k in range(len(positions)):
        p = positions[k]
        value |= ((filters[row, p >> 6] >> np.uint64(p & 63)) & np.uint64(1)) << np.uint64(k)
    return np.uint32(value)


@numba.njit(cache=True, nogil=True, boundscheck=False)
def _keys_into(filters: np.ndarray, rows: np.ndarray, positions: np.ndarray, keys: np.ndarray, lo: int, hi: int) -> None:
    """keys[r] = the key of rows[r] for lo <= r < hi: ``_key_of`` written out, which measured 30 %
    faster than calling it once a row."""
    for r in range(lo, hi):
        row = rows[r]
        value = np.uint64(0)
        for k in range(len(positions)):
            p = positions[k]
            value |= ((filters[row, p >> 6] >> np.uint64(p & 63)) & np.uint64(1)) << np.uint64(k)
        keys[r] = np.uint32(value)


@numba.njit(cache=True, nogil=True, boundscheck=False)
def _radix_sorted(keys: np.ndarray, key_bits: int) -> tuple[np.ndarray, np.ndarray]:
    """(keys sorted, order): a stable LSD radix sort, 11 bits a pass, so 2 passes for 20-bit keys."""
    n = len(keys)
    digit_bits = 11
    passes = max(1, (key_bits + digit_bits - 1) // digit_bits)
    radix = 1 << digit_bits
    mask = np.uint32(radix - 1)
    k0 = keys.copy()
    i0 = np.arange(n).astype(np.int32)
    k1 = np.empty(n, dtype=np.uint32)
    i1 = np.empty(n, dtype=np.int32)
    for step in range(passes):
        shift = np.uint32(step * digit_bits)
        count = np.zeros(radix + 1, dtype=np.int64)
        for u in range(n):
            count[np.int64((k0[u] >> shift) & mask) + 1] += 1
        for d in range(radix):
            count[d + 1] += count[d]
        for u in range(n):
            digit = np.int64((k0[u] >> shift) & mask)
            k1[count[digit]] = k0[u]
            i1[count[digit]] = i0[u]
            count[digit] += 1
        k0, k1 = k1, k0
        i0, i1 = i1, i0
    return k0, i0


class _Sides(NamedTuple):
    """One band's rows of a and b sorted by key: row numbers and keys in key order."""

    a_rows: np.ndarray
    a_keys: np.ndarray
    b_rows: np.ndarray
    b_keys: np.ndarray


class _History(NamedTuple):
    """What decides whether a pair was compared in a band, for every band so far.

    A pair is compared in band e when it agrees on the band's key bits, unless its key is one of
    the band's split keys: then it must also agree on the extra bits, and its full key must not
    be one of the band's skipped (still oversized) runs."""

    key_positions: np.ndarray  # (bands, r)
    extra_positions: np.ndarray  # (bands, EXTRA_BITS)
    key_masks: np.ndarray  # (bands, words): the key positions as a filter
    extra_masks: np.ndarray  # (bands, words)
    split_ptr: np.ndarray  # (bands + 1,) into split_keys
    split_keys: np.ndarray  # uint32, sorted within each band
    skipped_ptr: np.ndarray  # (bands + 1,) into skipped_keys
    skipped_keys: np.ndarray  # uint64 key << 32 | extra key, sorted within each band
    skipped_pairs: int = 0  # in the latest band


@numba.njit(cache=True, nogil=True, boundscheck=False)
def _lower_bound(values: np.ndarray, lo: int, hi: int, target: int | np.uint32 | np.uint64) -> int:
    """The first place in values[lo:hi] (sorted) holding target or more; hi if none does."""
    while lo < hi:
        mid = (lo + hi) >> 1
        if values[mid] < target:
            lo = mid + 1
        else:
            hi = mid
    return lo


@numba.njit(cache=True, nogil=True, boundscheck=False)
def _sorted_contains(values: np.ndarray, lo: int, hi: int, target: np.uint32 | np.uint64) -> bool:
    """Whether values[lo:hi] (sorted) holds target."""
    at = _lower_bound(values, lo, hi, target)
    return at < hi and values[at] == target


@numba.njit(cache=True, nogil=True, boundscheck=False)
def _agree_on(a: np.ndarray, i: int, b: np.ndarray, j: int, mask: np.ndarray, e: int) -> bool:
    for t in range(a.shape[1]):
        if (a[i, t] ^ b[j, t]) & mask[e, t]:
            return False
    return True


@numba.njit(cache=True, nogil=True, boundscheck=False)
def _compared_before(a: np.ndarray, i: int, b: np.ndarray, j: int, band: int, history: _History) -> bool:
    """Whether the pair was compared in an earlier band (and so already kept or rejected there)."""
    for e in range(band):
        if not _agree_on(a, i, b, j, history.key_masks, e):
            continue
        lo, hi = history.split_ptr[e], history.split_ptr[e + 1]
        if lo == hi:
            return True
        key = _key_of(a, i, history.key_positions[e])
        if not _sorted_contains(history.split_keys, lo, hi, key):
            return True
        if not _agree_on(a, i, b, j, history.extra_masks, e):
            continue
        full = (np.uint64(key) << np.uint64(32)) | np.uint64(_key_of(a, i, history.extra_positions[e]))
        if not _sorted_contains(history.skipped_keys, history.skipped_ptr[e], history.skipped_ptr[e + 1], full):
            return True
    return False


@numba.njit(cache=True, nogil=True, boundscheck=False)
def _longest_run(keys: np.ndarray) -> int:
    """The most rows sharing one key (keys sorted)."""
    longest = run = min(len(keys), 1)
    for u in range(1, len(keys)):
        run = run + 1 if keys[u] == keys[u - 1] else 1
        longest = max(longest, run)
    return longest


@numba.njit(cache=True, nogil=True, boundscheck=False)
def _run_end(keys: np.ndarray, start: int) -> int:
    u = start + 1
    while u < len(keys) and keys[u] == keys[start]:
        u += 1
    return u


@numba.njit(cache=True, nogil=True, boundscheck=False)
def _first_at_least(keys: np.ndarray, target: int) -> int:
    return _lower_bound(keys, 0, len(keys), target)


@numba.njit(cache=True, nogil=True, boundscheck=False)
def _sorted_extra_keys(filters: np.ndarray, rows: np.ndarray, lo: int, hi: int, positions: np.ndarray) -> np.ndarray:
    """The extra keys of rows[lo:hi], sorted (shell sort: rare, small, and quick to compile)."""
    keys = np.empty(hi - lo, dtype=np.uint32)
    for u in range(lo, hi):
        keys[u - lo] = _key_of(filters, rows[u], positions)
    gap = len(keys) // 2
    while gap > 0:
        for u in range(gap, len(keys)):
            value = keys[u]
            v = u
            while v >= gap and keys[v - gap] > value:
                keys[v] = keys[v - gap]
                v -= gap
            keys[v] = value
        gap //= 2
    return keys


@numba.njit(cache=True, nogil=True, boundscheck=False)
def _oversized_runs(
    a: np.ndarray,
    b: np.ndarray,
    sides: _Sides,
    extra_positions: np.ndarray,
    max_pairs: int,
    split_keys: np.ndarray,
    skipped_keys: np.ndarray,
) -> tuple[int, int, int]:
    """Fill this band's split keys and skipped full keys (ascending); returns (split, skipped, pairs
    skipped).

    A key whose rows of a and b would make more than ``max_pairs`` pairs is split on the extra
    bits; a split run that still would is skipped whole. The output arrays need room for one key
    per distinct key of a."""
    n_split = n_skipped = skipped_pairs = 0
    u = lo = 0
    n_b = len(sides.b_keys)
    a_keys, b_keys = sides.a_keys, sides.b_keys
    n_a = len(a_keys)
    while u < n_a:
        key = a_keys[u]
        end = u + 1
        while end < n_a and a_keys[end] == key:
            end += 1
        while lo < n_b and b_keys[lo] < key:
            lo += 1
        hi = lo
        while hi < n_b and b_keys[hi] == key:
            hi += 1
        if (end - u) * (hi - lo) > max_pairs:
            split_keys[n_split] = key
            n_split += 1
            a_extra = _sorted_extra_keys(a, sides.a_rows, u, end, extra_positions)
            b_extra = _sorted_extra_keys(b, sides.b_rows, lo, hi, extra_positions)
            x = y = 0
            while x < len(a_extra):
                x_end = _run_end(a_extra, x)
                while y < len(b_extra) and b_extra[y] < a_extra[x]:
                    y += 1
                y_end = y
                while y_end < len(b_extra) and b_extra[y_end] == a_extra[x]:
                    y_end += 1
                if (x_end - x) * (y_end - y) > max_pairs:
                    # keys ascend, and extra keys within a key: full keys come out sorted
                    skipped_keys[n_skipped] = (np.uint64(key) << np.uint64(32)) | np.uint64(a_extra[x])
                    n_skipped += 1
                    skipped_pairs += (x_end - x) * (y_end - y)
                x = x_end
        lo = hi
        u = end
    return n_split, n_skipped, skipped_pairs


@numba.njit(cache=True, nogil=True, boundscheck=False)
def _scored_candidates(
    a: np.ndarray,
    b: np.ndarray,
    pending: np.ndarray,
    count: int,
    need: np.ndarray,
    score: bool,
    band: int,
    history: _History,
    caps: np.ndarray,
    offsets: np.ndarray,
    out_j: np.ndarray,
    out_score: np.ndarray,
    kept: np.ndarray,
) -> None:
    """Score the ``count`` candidates in ``pending`` (rows (entry x, i, j)) and keep those that
    qualify, in order. The rows of the candidate ``_PREFETCH_AHEAD`` places on are requested
    before each pair is scored, so several random rows are on their way from memory at once.

    With ``score`` a pair is kept when its Dice reaches the threshold (``need`` by popcount
    total), else every candidate is kept with score 0. Either way a pair that an earlier band
    compared is not kept again; that check runs on kept pairs only."""
    words = a.shape[1]
    for p in range(count):
        if p + _PREFETCH_AHEAD < count:
            _prefetch_row(a, pending[p + _PREFETCH_AHEAD, 1])
            _prefetch_row(b, pending[p + _PREFETCH_AHEAD, 2])
        x, i, j = pending[p, 0], pending[p, 1], pending[p, 2]
        value = np.float32(0.0)
        if score:
            # Popcounts from the rows themselves: cheaper than two more random reads.
            inter = total = 0
            for t in range(words):
                u, v = a[i, t], b[j, t]
                inter += _popcount(u & v)
                total += _popcount(u) + _popcount(v)
            if inter < need[total]:
                continue
            value = np.float32(2.0 * inter / total) if total > 0 else np.float32(0.0)
        if _compared_before(a, i, b, j, band, history):
            continue
        if kept[x] < caps[x]:
            out_j[offsets[x] + kept[x]] = j
            out_score[offsets[x] + kept[x]] = value
        kept[x] += 1


@numba.njit(cache=True, nogil=True, boundscheck=False)
def _join_chunk(
    a: np.ndarray,
    b: np.ndarray,
    sides: _Sides,
    u: int,
    stop: int,
    need: np.ndarray,
    score: bool,
    band: int,
    history: _History,
    caps: np.ndarray,
    offsets: np.ndarray,
    out_j: np.ndarray,
    out_score: np.ndarray,
    kept: np.ndarray,
) -> int:
    """Pairs of rows that share this band's key, for the a entries u..stop (whole runs); returns
    the candidates looked at. Entry x writes at most caps[x] results from offsets[x] and counts
    them in kept[x]. Chunks of whole runs touch disjoint entries, so threads can share a band.

    The walk through both sorted sides reads no filter (unless a key was split); candidates are
    queued and scored a batch at a time by ``_scored_candidates``."""
    looked = 0
    a_rows, a_keys, b_rows, b_keys = sides.a_rows, sides.a_keys, sides.b_rows, sides.b_keys
    n_a, n_b = len(a_keys), len(b_keys)
    split_lo, split_hi = history.split_ptr[band], history.split_ptr[band + 1]
    skip_lo, skip_hi = history.skipped_ptr[band], history.skipped_ptr[band + 1]
    extra_positions = history.extra_positions[band]
    pending = np.empty((_CANDIDATE_BATCH, 3), dtype=np.int64)
    count = 0
    hi = _first_at_least(b_keys, a_keys[u]) if u < stop else 0
    while u < stop:
        key = a_keys[u]
        end = u + 1
        while end < n_a and a_keys[end] == key:
            end += 1
        lo = hi  # both sides ascend: the walk through b only moves forward
        while lo < n_b and b_keys[lo] < key:
            lo += 1
        hi = lo
        while hi < n_b and b_keys[hi] == key:
            hi += 1
        if hi == lo:
            u = end
            continue
        split = split_hi > split_lo and _sorted_contains(history.split_keys, split_lo, split_hi, key)
        for x in range(u, end):
            i = a_rows[x]
            mine = _key_of(a, i, extra_positions) if split else np.uint32(0)
            if split:
                full = (np.uint64(key) << np.uint64(32)) | np.uint64(mine)
                if _sorted_contains(history.skipped_keys, skip_lo, skip_hi, full):
                    continue
            for y in range(lo, hi):
                j = b_rows[y]
                if split and _key_of(b, j, extra_positions) != mine:
                    continue  # a split key pairs only rows that also share the extra bits
                pending[count, 0], pending[count, 1], pending[count, 2] = x, i, j
                count += 1
                if count == _CANDIDATE_BATCH:
                    _scored_candidates(a, b, pending, count, need, score, band, history, caps, offsets, out_j, out_score, kept)
                    looked += count
                    count = 0
        u = end
    _scored_candidates(a, b, pending, count, need, score, band, history, caps, offsets, out_j, out_score, kept)
    return looked + count


def _chunk_starts(keys: np.ndarray, chunks: int) -> np.ndarray:
    """Up to ``chunks`` + 1 boundaries in sorted keys, each moved to the start of its run."""
    n = len(keys)
    cuts: np.ndarray | list[int] = np.searchsorted(keys, keys[(np.arange(1, chunks) * n) // chunks], side="left") if n else []
    return np.unique(np.concatenate([[0], cuts, [n]])).astype(np.int64)
