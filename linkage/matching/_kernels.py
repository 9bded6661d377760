"""Dice similarity of packed Bloom filters: compiled kernels, parallel over rows.

Filters are ``uint64`` arrays shaped ``(n, words)``; bit ``b`` is bit ``b % 64`` of word ``b // 64``.
Dice(x, y) = 2·|x ∧ y| / (|x| + |y|), and 0 when both are empty. A pair *qualifies* at threshold t
when ``2·|x ∧ y| / (|x| + |y|) >= t`` in float64; scores come back as float32 of that quotient.

How the all-pairs kernel avoids work (each step is exact: it never drops a qualifying pair):

1. Length filter. Dice ≤ 2·min(|x|, |y|) / (|x| + |y|), so for each popcount of ``a`` only a
   contiguous range of ``b`` popcounts can qualify. ``b`` is sorted by popcount once and each row
   of ``a`` scans only its range.
2. Prefix bound. After the first ``h`` words the intersection can grow by at most
   min(rest of x, rest of y) bits; pairs that cannot reach the threshold stop there. ``h`` is picked
   per call from a small sample (about half the words at threshold 0.8 and 50 % fill). This is what
   keeps the kernel fast on balanced filters, whose popcounts are all equal.
3. Lanes. Sorted ``b`` is stored interleaved in blocks of four rows, so one 256-bit AND and one
   vector popcount serve four pairs (``llvm.ctpop.v4i64``: LLVM lowers it to the best instruction
   the CPU has: nibble lookups on AVX2, VPOPCNTQ on AVX-512, CNT on NEON).

There is no fastmath anywhere: the kernels are integer, and the one division must round exactly as
the reference does so that a pair sits on the same side of the threshold.

Results come back sorted by (i, j), whatever the thread count. Memory grows with the number of
results, not with n × m: rows are scanned in chunks, each row writes into a few slots, and a
chunk whose rows overflow is scanned again into buffers of the exact size.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import NamedTuple

import numba
import numpy as np
from llvmlite import ir
from numba import prange, types
from numba.core import cgutils
from numba.core.base import BaseContext
from numba.core.typing.context import BaseContext as TypingContext
from numba.core.typing.templates import Signature
from numba.extending import intrinsic

__all__ = ["dice_of_pairs", "dice_pairs", "group_dice_of_pairs", "popcounts"]

LANES = 4  # b rows per vector block: 4 × 64 bits is one AVX2 register
_IMPOSSIBLE = np.int64(1 << 40)  # an intersection no pair reaches
_CHUNK_COMPARISONS = 1 << 26  # all-pairs work per chunk: ~0.1 s, so thread start-up is noise
_SLOTS_PER_ROW = 8  # results a row may write before its chunk is rescanned with exact buffers
TILE_ROWS = 16  # rows of a that share each tile of b (per thread)
TILE_BLOCKS = 256  # blocks of b per tile: 256 × 4 rows × 128 bytes = 128 KiB of 1024-bit filters
_MAX_SLOT_ENTRIES = 1 << 24  # bound on rows × slots held at once (~200 MB)
# A block that survives the prefix bound costs, beyond its remaining words, about as much as 16
# more words (a mispredicted branch, four lanes checked): measured on this machine (AMD EPYC, AVX2).
_SURVIVOR_OVERHEAD_WORDS = 16

_I64 = ir.IntType(64)
_I32 = ir.IntType(32)
_V4 = ir.VectorType(_I64, LANES)

# An intrinsic's code generator: (target context, IR builder, signature, argument values) -> its value.
_Codegen = Callable[[BaseContext, ir.IRBuilder, Signature, Sequence[ir.Value]], ir.Value]


# --------------------------------------------------------------------------------------------------
# LLVM building blocks


@intrinsic
def _popcount(typingctx: TypingContext, word: types.Type) -> tuple[Signature, _Codegen]:
    """Bits set in one uint64 (llvm.ctpop: a single POPCNT where the CPU has it)."""
    sig = types.int64(types.uint64)

    def codegen(context: BaseContext, builder: ir.IRBuilder, signature: Signature, args: Sequence[ir.Value]) -> ir.Value:
        return builder.ctpop(args[0])

    return sig, codegen


def _element_pointer(
    context: BaseContext, builder: ir.IRBuilder, array_type: types.Array, array: ir.Value, indices: Sequence[ir.Value]
) -> ir.Value:
    arr = context.make_array(array_type)(context, builder, array)
    shape = cgutils.unpack_tuple(builder, arr.shape)
    strides = cgutils.unpack_tuple(builder, arr.strides)
    return cgutils.get_item_pointer2(context, builder, arr.data, shape, strides, array_type.layout, indices, wraparound=False)


def _load_v4(builder: ir.IRBuilder, pointer: ir.Value) -> ir.Value:
    return builder.load(builder.bitcast(pointer, _V4.as_pointer()), align=8)


def _lane_intersections_ir(
    context: BaseContext,
    builder: ir.IRBuilder,
    row_type: types.Array,
    row: ir.Value,
    lanes_type: types.Array,
    lanes: ir.Value,
    block: ir.Value,
    start: ir.Value,
    stop: ir.Value,
) -> ir.Value:
    """<4 x i64>: popcount(row[t] & lanes[block, t, l]) summed over start <= t < stop, per lane l.

    ``row`` is one filter broadcast to shape (words, 4) so that both operands are plain loads; the
    last axis of both must be contiguous (the kernels only pass arrays built here)."""
    ctpop = cgutils.get_or_insert_function(builder.module, ir.FunctionType(_V4, [_V4]), "llvm.ctpop.v4i64")
    zero = ir.Constant(_I64, 0)
    total = cgutils.alloca_once_value(builder, ir.Constant(_V4, None))
    with cgutils.for_range_slice(builder, start, stop, ir.Constant(_I64, 1), inc=True) as (t, _):
        x = _load_v4(builder, _element_pointer(context, builder, row_type, row, [t, zero]))
        y = _load_v4(builder, _element_pointer(context, builder, lanes_type, lanes, [block, t, zero]))
        builder.store(builder.add(builder.load(total), builder.call(ctpop, [builder.and_(x, y)])), total)
    return builder.load(total)


def _splat(builder: ir.IRBuilder, value: ir.Value) -> ir.Value:
    one = builder.insert_element(ir.Constant(_V4, ir.Undefined), value, ir.Constant(_I32, 0))
    zeros = ir.Constant(ir.VectorType(_I32, LANES), [0] * LANES)
    return builder.shuffle_vector(one, ir.Constant(_V4, ir.Undefined), zeros)


@intrinsic
def _block_prefix(
    typingctx: TypingContext,
    row: types.Array,
    lanes: types.Array,
    block: types.Integer,
    prefix_words: types.Integer,
    p: types.Integer,
    q: types.Integer,
    lane_x: types.Array,
    lane_y: types.Array,
) -> tuple[Signature, _Codegen]:
    """(survivor mask, s0, s1, s2, s3): s_l = prefix intersection with lane l, and bit l of the mask
    set when s_l >= p + lane_x[block, l] and s_l >= q + lane_y[block, l] (the prefix bound)."""
    sig = types.UniTuple(types.int64, 1 + LANES)(row, lanes, block, prefix_words, p, q, lane_x, lane_y)

    def codegen(context: BaseContext, builder: ir.IRBuilder, signature: Signature, args: Sequence[ir.Value]) -> ir.Value:
        row_t, lanes_t, _, _, _, _, x_t, y_t = signature.args
        row_v, lanes_v, block_v, h_v, p_v, q_v, x_v, y_v = args
        zero = ir.Constant(_I64, 0)
        s = _lane_intersections_ir(context, builder, row_t, row_v, lanes_t, lanes_v, block_v, zero, h_v)
        x = _load_v4(builder, _element_pointer(context, builder, x_t, x_v, [block_v, zero]))
        y = _load_v4(builder, _element_pointer(context, builder, y_t, y_v, [block_v, zero]))
        alive = builder.and_(
            builder.icmp_signed(">=", s, builder.add(_splat(builder, p_v), x)),
            builder.icmp_signed(">=", s, builder.add(_splat(builder, q_v), y)),
        )
        mask = builder.zext(builder.bitcast(alive, ir.IntType(LANES)), _I64)
        parts = [mask] + [builder.extract_element(s, ir.Constant(_I32, lane)) for lane in range(LANES)]
        return context.make_tuple(builder, signature.return_type, parts)

    return sig, codegen


@intrinsic
def _block_intersections(
    typingctx: TypingContext,
    row: types.Array,
    lanes: types.Array,
    block: types.Integer,
    start: types.Integer,
    stop: types.Integer,
) -> tuple[Signature, _Codegen]:
    """(s0, s1, s2, s3): intersections with the four lanes of ``block`` over words [start, stop)."""
    sig = types.UniTuple(types.int64, LANES)(row, lanes, block, start, stop)

    def codegen(context: BaseContext, builder: ir.IRBuilder, signature: Signature, args: Sequence[ir.Value]) -> ir.Value:
        row_t, lanes_t, _, _, _ = signature.args
        row_v, lanes_v, block_v, start_v, stop_v = args
        s = _lane_intersections_ir(context, builder, row_t, row_v, lanes_t, lanes_v, block_v, start_v, stop_v)
        parts = [builder.extract_element(s, ir.Constant(_I32, lane)) for lane in range(LANES)]
        return context.make_tuple(builder, signature.return_type, parts)

    return sig, codegen


# --------------------------------------------------------------------------------------------------
# Small kernels


@numba.njit(parallel=True, cache=True, nogil=True)
def _parallel_prefix_popcounts(filters: np.ndarray, words: int) -> np.ndarray:
    n = filters.shape[0]
    out = np.empty(n, dtype=np.int32)
    for r in prange(n):
        c = 0
        for t in range(words):
            c += _popcount(filters[r, t])
        out[r] = c
    return out


def _prefix_popcounts(filters: np.ndarray, words: int) -> np.ndarray:
    """Bits set in the first ``words`` words of each row: int32."""
    if filters.shape[0] * words < 1 << 16:  # small: waking numba's threads would cost more
        counts: np.ndarray = np.bitwise_count(filters[:, :words]).sum(axis=1, dtype=np.int32)
        return counts
    return _parallel_prefix_popcounts(filters, words)


def popcounts(filters: np.ndarray) -> np.ndarray:
    """Bits set in each filter: int32, one per row."""
    filters = _checked_filters(filters, "filters")
    return _prefix_popcounts(filters, filters.shape[1])


@numba.njit(cache=True, nogil=True)
def _dice_score(intersection: int | np.int64, total: int | np.int64) -> np.float32:
    if total == 0:
        return np.float32(0.0)
    return np.float32(2.0 * intersection / total)


@functools.lru_cache(maxsize=32)
def intersections_needed(threshold: float, bits: int) -> np.ndarray:
    """need[s]: the least intersection for which 2·k / s >= threshold (float64), s = |x| + |y|.

    Exact by construction: start from ceil(threshold·s / 2) and step over the rounding of the
    division in both directions. Where no k <= s / 2 qualifies the entry is impossible to meet."""
    totals = np.arange(2 * bits + 1, dtype=np.int64)
    need = np.ceil(threshold * totals / 2.0).astype(np.int64)
    need = np.clip(need, 0, bits + 1)
    safe = np.maximum(totals, 1).astype(np.float64)
    for _ in range(2):  # the division rounds by at most an ulp: one step each way is enough
        lower = need - 1
        step_down = (lower >= 0) & (2.0 * lower / safe >= threshold)
        need = np.where(step_down, lower, need)
        step_up = 2.0 * need / safe < threshold
        need = np.where(step_up, need + 1, need)
    need[0] = 0 if threshold <= 0.0 else _IMPOSSIBLE  # both empty: Dice is 0 by definition
    need[need > totals // 2] = _IMPOSSIBLE
    need.flags.writeable = False  # cached and shared
    needed: np.ndarray = need
    return needed


def partner_count_ranges(threshold: float, bits: int, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(lowest, highest) popcount of a partner that can qualify, indexed by popcount 0..bits and
    filled in for the popcounts in ``counts`` (others get the empty range).

    The length filter: Dice <= 2·min(c, d) / (c + d). Rows with no feasible partner get lowest >
    highest. Taking the extremes of the feasible set keeps it correct even if it had holes (it
    can: at high thresholds small odd totals cannot reach it)."""
    need = intersections_needed(threshold, bits)
    lowest = np.full(bits + 1, bits + 1, dtype=np.int64)
    highest = np.full(bits + 1, -1, dtype=np.int64)
    present = np.unique(counts)
    partners = np.arange(bits + 1)
    for start in range(0, len(present), 256):  # 256 rows of the table at a time
        c = present[start : start + 256, None]
        feasible = np.minimum(c, partners[None, :]) >= need[c + partners[None, :]]
        anywhere = feasible.any(axis=1)
        lowest[c[:, 0]] = np.where(anywhere, feasible.argmax(axis=1), bits + 1)
        highest[c[:, 0]] = np.where(anywhere, bits - feasible[:, ::-1].argmax(axis=1), -1)
    return lowest, highest


def _prefix_need_floor(threshold: float, counts: np.ndarray, slack: int) -> np.ndarray:
    """floor(threshold·c / 2) - slack. For the prefix bound: with slack 1 on one side and 0 on the
    other, the sum for counts c and d never exceeds need[c + d].

    Why one is enough: need[s] >= ceil(t·s/2) - 1 (a smaller k is below t by 2/s, far more than the
    division's rounding), and each float floor exceeds t·c/2 by less than one, so the two floors sum
    to at most need[s] + 1."""
    t = min(max(threshold, 0.0), 1.0)
    return np.floor(t * counts.astype(np.float64) / 2.0).astype(np.int64) - slack


# --------------------------------------------------------------------------------------------------
# All pairs


class _SortedLanes(NamedTuple):
    """``b`` sorted by popcount and interleaved four rows to a block, with what the scan needs."""

    lanes: np.ndarray  # (blocks, words, 4) uint64
    rows: np.ndarray  # (blocks·4,) original row of each lane; -1 for padding
    counts: np.ndarray  # (blocks·4,) popcount of each lane
    x: np.ndarray  # (blocks, 4) prefix-bound term: floor(t·|y|/2)
    y: np.ndarray  # (blocks, 4) prefix-bound term: x - (|y| - |y[:h]|)
    first_block: np.ndarray  # per popcount c of a row of a: first block that may hold a partner
    stop_block: np.ndarray  # per popcount c of a row of a: one past the last such block


def _lane_blocks(sorted_filters: np.ndarray) -> np.ndarray:
    n, words = sorted_filters.shape
    blocks = -(-n // LANES)
    padded = np.zeros((blocks * LANES, words), dtype=np.uint64)
    padded[:n] = sorted_filters
    return np.ascontiguousarray(padded.reshape(blocks, LANES, words).transpose(0, 2, 1))


def _sorted_lanes(b: np.ndarray, b_counts: np.ndarray, threshold: float, a_counts: np.ndarray) -> _SortedLanes:
    """The lanes of b, with the prefix bound set for h = all words (``_with_prefix_bound`` sets h)."""
    bits = b.shape[1] * 64
    order = np.argsort(b_counts, kind="stable")
    counts = b_counts[order].astype(np.int64)
    blocks = -(-len(order) // LANES)
    pad = blocks * LANES - len(order)
    x = np.concatenate([_prefix_need_floor(threshold, counts, slack=0), np.full(pad, _IMPOSSIBLE)])
    lowest, highest = partner_count_ranges(threshold, bits, a_counts)
    first = np.searchsorted(counts, lowest, side="left") // LANES
    stop = -(-np.searchsorted(counts, highest, side="right") // LANES)
    return _SortedLanes(
        lanes=_lane_blocks(b[order]),
        rows=np.concatenate([order.astype(np.int64), np.full(pad, -1)]),
        counts=np.concatenate([counts, np.zeros(pad, dtype=np.int64)]),
        x=x.reshape(blocks, LANES),
        y=x.reshape(blocks, LANES),
        first_block=first.astype(np.int64),
        stop_block=np.maximum(stop, first).astype(np.int64),
    )


def _with_prefix_bound(sl: _SortedLanes, b: np.ndarray, prefix_words: int) -> _SortedLanes:
    """The lanes with y = x - (bits of the lane after its first ``prefix_words`` words)."""
    real = sl.rows >= 0
    rest = np.zeros(len(sl.rows), dtype=np.int64)
    rest[real] = sl.counts[real] - _prefix_popcounts(b, prefix_words)[sl.rows[real]]
    return sl._replace(y=sl.x - rest.reshape(sl.x.shape))


@numba.njit(cache=True, nogil=True, boundscheck=False)
def _scan_row(
    a: np.ndarray,
    i: int,
    a_count: int,
    a_head: int,
    a_floor: int,
    sl: _SortedLanes,
    need: np.ndarray,
    prefix_words: int,
    row: np.ndarray,
    offset: int,
    cap: int,
    out_j: np.ndarray,
    out_score: np.ndarray,
    tile_lo: int,
    tile_hi: int,
) -> int:
    """Qualifying partners of a[i] among the sorted lanes' blocks [tile_lo, tile_hi), written from
    offset (at most cap of them); returns how many qualify. ``row``: scratch (words + 1, 4): a[i]
    broadcast, then one row for the four intersections of a block.

    Everything stays in this one function: a helper taking arrays would pay a reference count per
    array per call, which made each block that survives the prefix bound several times dearer."""
    words = a.shape[1]
    first, stop = max(sl.first_block[a_count], tile_lo), min(sl.stop_block[a_count], tile_hi)
    if first >= stop:
        return 0
    for t in range(words):
        for lane in range(LANES):
            row[t, lane] = a[i, t]
    q = a_floor
    p = q - (a_count - a_head)
    lanes, x, y, rows, counts = sl.lanes, sl.x, sl.y, sl.rows, sl.counts
    found = 0
    for block in range(first, stop):
        mask, s0, s1, s2, s3 = _block_prefix(row, lanes, block, prefix_words, p, q, x, y)
        if mask == 0:
            continue
        if prefix_words < words:
            u0, u1, u2, u3 = _block_intersections(row, lanes, block, prefix_words, words)
            s0 += u0
            s1 += u1
            s2 += u2
            s3 += u3
        row[words, 0], row[words, 1], row[words, 2], row[words, 3] = s0, s1, s2, s3
        for lane in range(LANES):
            k = block * LANES + lane
            inter = np.int64(row[words, lane])
            total = a_count + counts[k]
            if rows[k] >= 0 and inter >= need[total]:
                if found < cap:
                    out_j[offset + found] = rows[k]
                    out_score[offset + found] = _dice_score(inter, total)
                found += 1
    return found


@numba.njit(parallel=True, cache=True, nogil=True)
def _scan_rows(
    a: np.ndarray,
    a_counts: np.ndarray,
    a_heads: np.ndarray,
    a_floor: np.ndarray,
    row_start: int,
    row_stop: int,
    sl: _SortedLanes,
    need: np.ndarray,
    prefix_words: int,
    offsets: np.ndarray,
    caps: np.ndarray,
    out_j: np.ndarray,
    out_score: np.ndarray,
    threads: int,
) -> np.ndarray:
    """``_scan_row`` for a[row_start:row_stop]; returns the count per row. Row r writes at most
    caps[r] results from offsets[r], in popcount order of the partners. Rows are dealt to threads
    round-robin so that sorted or clustered inputs still share the work.

    Tiled for the cache: a thread takes TILE_ROWS of its rows at a time and walks the lanes in
    tiles of TILE_BLOCKS blocks, every row of the group scanning a tile before the next is read.
    Scanning all of b once a row would stream it from memory for every row: at 100,000 rows a side
    b no longer fits in cache and the kernel ran at a third of its in-cache speed (measured)."""
    n_rows = row_stop - row_start
    found = np.zeros(n_rows, dtype=np.int64)
    broadcast = np.empty((threads, a.shape[1] + 1, LANES), dtype=np.uint64)
    n_blocks = sl.lanes.shape[0]
    # The parallel body stays small: numba's parfor compile time grows with the body.
    for thread in prange(threads):
        for group in range(thread, n_rows, threads * TILE_ROWS):
            last = min(group + threads * TILE_ROWS, n_rows)
            for tile in range(0, n_blocks, TILE_BLOCKS):
                for r in range(group, last, threads):
                    i = row_start + r
                    found[r] += _scan_row(
                        a, i, a_counts[i], a_heads[i], a_floor[i], sl, need, prefix_words, broadcast[thread],
                        offsets[r] + found[r], max(caps[r] - found[r], 0), out_j, out_score, tile, tile + TILE_BLOCKS,
                    )  # fmt: skip
    return found


def _chosen_prefix_words(a: np.ndarray, a_counts: np.ndarray, a_floor: np.ndarray, sl: _SortedLanes, words: int) -> int:
    """The h that minimises the work per block, h + P(block survives at h)·(words - h + overhead)
    in words, P estimated on up to 48 rows of a against 32 evenly spaced blocks of each one's range."""
    rows = np.unique(np.linspace(0, a.shape[0] - 1, min(48, a.shape[0])).astype(np.int64))
    first, stop = sl.first_block[a_counts[rows]], sl.stop_block[a_counts[rows]]
    rows, first, stop = rows[stop > first], first[stop > first], stop[stop > first]
    if words <= 1 or len(rows) == 0:
        return words
    blocks = first[:, None] + ((stop - 1 - first)[:, None] * np.arange(32)[None, :]) // 31  # (rows, 32)
    lanes = sl.lanes[blocks]  # (rows, 32, words, 4)
    row_words = a[rows][:, None, :, None]

    def cumulative(counts: np.ndarray) -> np.ndarray:  # over the word axis, starting from 0 words
        return np.concatenate([np.zeros_like(counts[:, :, :1]), np.cumsum(counts, axis=2)], axis=2)

    inter = cumulative(np.bitwise_count(lanes & row_words).astype(np.int64))  # (rows, 32, words + 1, 4)
    lane_prefix = cumulative(np.bitwise_count(lanes).astype(np.int64))
    a_prefix = cumulative(np.bitwise_count(row_words).astype(np.int64))
    a_rest = a_counts[rows][:, None, None, None] - a_prefix
    rest = np.minimum(a_rest, lane_prefix[:, :, -1:, :] - lane_prefix)
    alive = inter + rest >= (a_floor[rows][:, None, None, None] + sl.x[blocks][:, :, None, :])
    alive &= (sl.rows.reshape(-1, LANES)[blocks] >= 0)[:, :, None, :]
    survived = alive.any(axis=3).mean(axis=(0, 1))
    h = np.arange(words + 1)
    return int(np.argmin(h + (words - h + _SURVIVOR_OVERHEAD_WORDS) * survived))


def _row_chunk(m: int, threads: int) -> int:
    rows = max(_CHUNK_COMPARISONS // max(m, 1), 64 * threads)
    return int(min(rows, _MAX_SLOT_ENTRIES // _SLOTS_PER_ROW))


def _all_dice_pairs(
    a: np.ndarray, b: np.ndarray, threshold: float, a_counts: np.ndarray, b_counts: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    bits = a.shape[1] * 64
    words = a.shape[1]
    need = intersections_needed(threshold, bits)
    a_counts64 = a_counts.astype(np.int64)
    a_floor = _prefix_need_floor(threshold, a_counts64, slack=1)
    sl = _sorted_lanes(b, b_counts, threshold, a_counts)
    h = _chosen_prefix_words(a, a_counts64, a_floor, sl, words)
    sl = _with_prefix_bound(sl, b, h)
    a_heads = _prefix_popcounts(a, h).astype(np.int64)

    pieces_i, pieces_j, pieces_s = [], [], []
    threads = numba.get_num_threads()  # read here: inside a kernel it would defeat numba's cache
    chunk = _row_chunk(b.shape[0], threads)
    slots = _SLOTS_PER_ROW
    for start in range(0, a.shape[0], chunk):
        stop = min(start + chunk, a.shape[0])
        rows = stop - start
        offsets = np.arange(rows, dtype=np.int64) * slots
        caps = np.full(rows, slots, dtype=np.int64)
        out_j = np.empty(rows * slots, dtype=np.int64)
        out_s = np.empty(rows * slots, dtype=np.float32)
        scan = (a, a_counts64, a_heads, a_floor, start, stop, sl, need, h)
        found = _scan_rows(*scan, offsets, caps, out_j, out_s, threads)
        if found.max(initial=0) > slots:
            # Overflow: scan the chunk again into buffers of the exact size (found counts them all).
            offsets = np.concatenate([[0], np.cumsum(found)[:-1]]).astype(np.int64)
            out_j = np.empty(int(found.sum()), dtype=np.int64)
            out_s = np.empty(int(found.sum()), dtype=np.float32)
            _scan_rows(*scan, offsets, found, out_j, out_s, threads)
            keep: slice | np.ndarray = slice(None)
        else:
            keep = (np.arange(slots)[None, :] < found[:, None]).ravel()
        i = np.repeat(np.arange(start, stop, dtype=np.int64), found)
        j, score = out_j[keep], out_s[keep]
        order = np.argsort(i * np.int64(b.shape[0]) + j, kind="stable")  # rows come out in i order
        pieces_i.append(i[order])
        pieces_j.append(j[order])
        pieces_s.append(score[order])
    return _concatenated(pieces_i, pieces_j, pieces_s)


def _concatenated(
    pieces_i: Sequence[np.ndarray], pieces_j: Sequence[np.ndarray], pieces_s: Sequence[np.ndarray]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    if not pieces_i:
        return np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, np.float32)
    return np.concatenate(pieces_i), np.concatenate(pieces_j), np.concatenate(pieces_s)


# --------------------------------------------------------------------------------------------------
# Given pairs


@numba.njit(parallel=True, cache=True, nogil=True, boundscheck=False)
def _pair_counts(a: np.ndarray, b: np.ndarray, i: np.ndarray, j: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(|a[i] ∧ b[j]|, |a[i]|, |b[j]|) for each pair: int32 arrays."""
    inter = np.empty(len(i), dtype=np.int32)
    a_count = np.empty(len(i), dtype=np.int32)
    b_count = np.empty(len(i), dtype=np.int32)
    for p in prange(len(i)):
        x, y = i[p], j[p]
        s = ca = cb = 0
        for t in range(a.shape[1]):
            u, v = a[x, t], b[y, t]
            s += _popcount(u & v)
            ca += _popcount(u)
            cb += _popcount(v)
        inter[p], a_count[p], b_count[p] = s, ca, cb
    return inter, a_count, b_count


def _dice_scores(inter: np.ndarray, total: np.ndarray) -> np.ndarray:
    """float32 of 2·inter / total in float64 (as the kernels compute it); 0 where total is 0."""
    return np.where(total > 0, 2.0 * inter / np.maximum(total, 1), 0.0).astype(np.float32)


def _candidate_dice_pairs(
    a: np.ndarray, b: np.ndarray, threshold: float, i: np.ndarray, j: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    key, first = np.unique(i * np.int64(b.shape[0]) + j, return_index=True)  # sorted by (i, j), once
    i, j = i[first], j[first]
    inter, a_count, b_count = _pair_counts(a, b, i, j)
    total = a_count.astype(np.int64) + b_count
    keep = inter >= intersections_needed(threshold, a.shape[1] * 64)[total]
    return i[keep], j[keep], _dice_scores(inter[keep], total[keep])


# --------------------------------------------------------------------------------------------------
# Public functions


def dice_pairs(
    a: np.ndarray,
    b: np.ndarray,
    threshold: float,
    *,
    a_counts: np.ndarray | None = None,
    b_counts: np.ndarray | None = None,
    candidates: tuple[np.ndarray, np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every pair (i, j) with Dice(a[i], b[j]) >= threshold: (i int64, j int64, score float32).

    Without ``candidates`` all n × m pairs are compared; with ``candidates = (i, j)`` (from
    blocking, say) only those, duplicates counted once. Either way the result is sorted by (i, j).
    ``a_counts``/``b_counts`` (popcounts, for the all-pairs scan) may be passed when the caller
    already has them.
    Threads: numba's, as set by ``numba.set_num_threads``."""
    a = _checked_filters(a, "a")
    b = _checked_filters(b, "b")
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"a has {a.shape[1] * 64}-bit filters and b {b.shape[1] * 64}-bit ones")
    threshold = _checked_threshold(threshold)
    if candidates is not None:
        i, j = _checked_pairs(candidates, a.shape[0], b.shape[0])
        return _candidate_dice_pairs(a, b, threshold, i, j)
    a_counts = popcounts(a) if a_counts is None else _checked_counts(a_counts, a, "a_counts")
    b_counts = popcounts(b) if b_counts is None else _checked_counts(b_counts, b, "b_counts")
    if a.shape[0] == 0 or b.shape[0] == 0:
        return _concatenated([], [], [])
    return _all_dice_pairs(a, b, threshold, a_counts, b_counts)


def dice_of_pairs(a: np.ndarray, b: np.ndarray, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """Dice(a[i[p]], b[j[p]]) for each given pair, in the given order: float32."""
    a = _checked_filters(a, "a")
    b = _checked_filters(b, "b")
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"a has {a.shape[1] * 64}-bit filters and b {b.shape[1] * 64}-bit ones")
    i, j = _checked_pairs((i, j), a.shape[0], b.shape[0])
    inter, a_count, b_count = _pair_counts(a, b, i, j)
    return _dice_scores(inter, a_count.astype(np.int64) + b_count)


def group_dice_of_pairs(a_groups: np.ndarray, b_groups: np.ndarray, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """Per-group Dice of each given pair: float32 (pairs, groups), NaN where either filter is empty.

    ``a_groups``/``b_groups``: uint64 (n, groups, words), one filter per field group."""
    a_groups = _checked_groups(a_groups, "a_groups")
    b_groups = _checked_groups(b_groups, "b_groups")
    if a_groups.shape[1:] != b_groups.shape[1:]:
        raise ValueError(f"group filters differ in shape: {a_groups.shape[1:]} and {b_groups.shape[1:]}")
    i, j = _checked_pairs((i, j), a_groups.shape[0], b_groups.shape[0])
    groups, words = a_groups.shape[1], a_groups.shape[2]
    # Each group filter as a row of its own: pair p, group g compares rows i·groups + g, j·groups + g.
    g = np.arange(groups, dtype=np.int64)
    inter, a_count, b_count = _pair_counts(
        a_groups.reshape(-1, words), b_groups.reshape(-1, words),
        (i[:, None] * groups + g).ravel(), (j[:, None] * groups + g).ravel(),
    )  # fmt: skip
    dice = _dice_scores(inter, a_count.astype(np.int64) + b_count)
    # An empty group filter means the field is missing: neither agreement nor disagreement.
    dice[(a_count == 0) | (b_count == 0)] = np.nan
    return dice.reshape(len(i), groups)


# --------------------------------------------------------------------------------------------------
# Argument checks: misuse by a caller is a bug, so these raise ValueError, not a LinkageError.


def _checked_filters(filters: np.ndarray, name: str) -> np.ndarray:
    if not isinstance(filters, np.ndarray) or filters.dtype != np.uint64 or filters.ndim != 2:
        raise ValueError(f"{name}: expected a uint64 array shaped (rows, words)")
    if filters.shape[1] == 0:
        raise ValueError(f"{name}: filters must have at least one 64-bit word")
    return np.ascontiguousarray(filters)


def _checked_groups(groups: np.ndarray, name: str) -> np.ndarray:
    if not isinstance(groups, np.ndarray) or groups.dtype != np.uint64 or groups.ndim != 3:
        raise ValueError(f"{name}: expected a uint64 array shaped (rows, groups, words)")
    return np.ascontiguousarray(groups)


def _checked_threshold(threshold: float) -> float:
    threshold = float(threshold)
    if not 0.0 <= threshold <= 1.0:  # also rejects NaN
        raise ValueError("threshold: must be a Dice value in [0, 1]")
    return threshold


def _checked_counts(counts: np.ndarray, filters: np.ndarray, name: str) -> np.ndarray:
    counts = np.asarray(counts)
    if counts.shape != (filters.shape[0],) or counts.dtype.kind not in "iu":
        raise ValueError(f"{name}: expected one integer popcount per row")
    if len(counts) and (counts.min() < 0 or counts.max() > filters.shape[1] * 64):
        raise ValueError(f"{name}: popcounts out of range for {filters.shape[1] * 64}-bit filters")
    return counts


def _checked_pairs(pairs: tuple[np.ndarray, np.ndarray], n_a: int, n_b: int) -> tuple[np.ndarray, np.ndarray]:
    i = np.ascontiguousarray(pairs[0], dtype=np.int64)
    j = np.ascontiguousarray(pairs[1], dtype=np.int64)
    if i.ndim != 1 or i.shape != j.shape:
        raise ValueError("pairs: i and j must be 1-d integer arrays of one length")
    if len(i) and (i.min() < 0 or i.max() >= n_a or j.min() < 0 or j.max() >= n_b):
        raise ValueError("pairs: row index out of range")
    return i, j
