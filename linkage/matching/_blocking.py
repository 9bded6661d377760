"""Blocking: which pairs are worth comparing. Hamming LSH on the encodings themselves.

No blocking key is derived from the records: a coordinator holding only encodings learns nothing
from blocking that it could not learn from the filters, and there is no key to dictionary-attack.

Hamming LSH. A band samples r bit positions; two filters *collide* in the band when they agree on
all r bits. Candidates are the pairs that collide in at least one of ``bands`` bands.

Choosing r and bands (see ``lsh_parameters``). Take a pair exactly at the Dice threshold t with
popcounts c and d: its intersection is t·(c + d)/2, so its Hamming distance is

    D = c + d - 2·t·(c + d)/2 = (1 - t)·(c + d) = 2·f·L·(1 - t)      (fill f = (c + d) / 2L)

and a band drawing r of the L positions without replacement misses all D differing bits with

    P_band = Π_{k<r} (L - D - k) / (L - k)     (≈ p^r, p = 1 - 2·f·(1 - t) the per-bit agreement)

Bands draw their positions independently, so the pair is a candidate with probability
1 - (1 - P_band)^bands; ``bands`` is the least count that reaches the target completeness. f is
taken at the 90th percentile of the data's fill, so pairs of fuller-than-usual filters (which sit
further apart at the same Dice) are still covered. Unrelated filters agree on a bit with
probability q = f² + (1 - f)² (the mean fill), so a band makes about n_a·n_b·q^r random candidates.
r is the value that minimises the estimated work, bands × (row cost × (n_a + n_b) + pair cost ×
n_a·n_b·q^r), with both costs measured on this code (``_ROW_COST``, ``_PAIR_COST``). Matches
agree on bits more often than random pairs (p > q) exactly when t > f: at t = 0.8 and f = 0.5,
p = 0.8 against q = 0.5 and LSH pays off; as t falls towards f no r separates matches from noise,
``lsh_parameters`` refuses targets it cannot reach within ``MAX_BANDS``; ``plan_blocking`` keeps to
all pairs once LSH would be slower, and where all pairs would take too long it tightens the
threshold to one LSH can serve (and says so).

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

import functools
import itertools
import math
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Literal, NamedTuple

import numba
import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.core.base import BaseContext
from numba.core.typing.context import BaseContext as TypingContext
from numba.core.typing.templates import Signature
from numba.extending import intrinsic

from linkage.matching._kernels import (
    _checked_filters,
    _checked_threshold,
    _Codegen,
    _concatenated,
    _popcount,
    intersections_needed,
    partner_count_ranges,
    popcounts,
)

__all__ = [
    "BandProgress",
    "BlockingPlan",
    "LSHParameters",
    "blocked_dice_pairs",
    "lsh_candidates",
    "lsh_parameters",
    "pairs_completeness",
    "plan_blocking",
    "reduction_ratio",
]

# `auto` compares all pairs up to this many, under a second on two cores and exact. Measured with
# benchmarks/compare.py --crossover: all pairs 0.15 s / LSH 0.13 s at 1e8 pairs, 0.6 s / 0.3 s at
# 4e8, 2.7 s / 1.2 s at 1.6e9; LSH gains more from there on, all pairs misses nothing.
UNBLOCKED_PAIR_LIMIT = 500_000_000
# Beyond that, `auto` still compares all pairs if that takes at most AUTO_EXACT_SECONDS on one core
# (about 100,000 × 200,000 records) and LSH cannot do better at the threshold asked for; otherwise
# it tightens the threshold until LSH fits in AUTO_LSH_SECONDS (one core; two threads halve both).
AUTO_EXACT_SECONDS = 120.0
AUTO_LSH_SECONDS = 120.0
MAX_AUTO_THRESHOLD = 0.95
TRIAL_ROWS = 100_000  # rows a side on which a band's collisions are measured
TRIAL_BANDS = 3
MAX_BUCKET_PAIRS = 1 << 20
MAX_KEY_BITS = 32  # keys are uint32: enough for 10^9 rows a side
EXTRA_BITS = 16
MAX_BANDS = 4096
FILL_QUANTILE = 0.9
# Measured costs (seconds, one core of this AMD EPYC) of one row in one band (key, sort, walk) and
# of one candidate pair (two random rows read and scored); see benchmarks/compare.py --scale.
_ROW_COST = 52e-9
_PAIR_COST = 50e-9
_UNBLOCKED_RATE = 300e6  # comparisons a second, one core, all pairs at 50 % fill
_SLOTS_PER_ROW = 4
_PREFETCH_AHEAD = 8  # candidates: measured best of 4, 8, 16, 32
_CANDIDATE_BATCH = 4096

BlockingMode = Literal["none", "lsh", "auto"]


@dataclass(frozen=True)
class LSHParameters:
    """How many bits a band samples and how many bands, with what that choice predicts."""

    bits_per_band: int
    bands: int
    agreement_at_threshold: float  # p: per-bit agreement of a pair exactly at the threshold
    agreement_random: float  # q: per-bit agreement of two unrelated filters
    expected_completeness: float  # P(a pair at the threshold collides in some band)
    expected_candidates: float  # random collisions summed over bands
    estimated_seconds: float  # the cost model's work, on one core


@dataclass(frozen=True)
class BandProgress:
    band: int  # bands done
    bands: int
    candidates: int  # candidate pairs looked at so far, a pair once for each band it collides in
    pairs: int  # pairs at or above the threshold so far (candidates in lsh_candidates)
    split: int  # keys split on extra bits so far, their buckets being huge
    skipped: int  # pairs passed over so far, in buckets still huge after the split


# --------------------------------------------------------------------------------------------------
# Parameters


def _band_collision_probability(bits: int, distance: float, r: int) -> float:
    k = np.arange(r)
    terms = (bits - distance - k) / (bits - k)
    return float(np.prod(np.clip(terms, 0.0, 1.0)))


def lsh_parameters(
    threshold: float,
    *,
    bits: int,
    n_a: int,
    n_b: int,
    fill: float,
    high_fill: float | None = None,
    target_completeness: float = 0.99,
    collisions: Callable[[int], float] | None = None,
) -> LSHParameters:
    """(r, bands) for Dice ``threshold`` on ``bits``-bit filters; derivation in the module docstring.

    ``fill``: mean fraction of bits set; ``high_fill``: the fill that pairs should be covered up to
    (default ``fill``). ``collisions(r)``: pairs that collide in one band of r bits, as measured on
    the data (see ``_measured_collisions``); without it, n_a·n_b·q^r, which real records (common
    names, correlated bits) exceed many times over."""
    threshold = _checked_threshold(threshold)
    if not 0.0 < target_completeness < 1.0:
        raise ValueError("target_completeness: must lie strictly between 0 and 1")
    high_fill = fill if high_fill is None else high_fill
    distance = min(2.0 * high_fill * bits * (1.0 - threshold), float(bits))
    p = 1.0 - distance / bits
    q = fill * fill + (1.0 - fill) * (1.0 - fill)
    pairs = float(n_a) * float(n_b)
    best = None
    for r in range(1, min(MAX_KEY_BITS, bits) + 1):
        hit = _band_collision_probability(bits, distance, r)
        if hit <= 0.0:
            break
        bands = 1 if hit >= 1.0 else math.ceil(math.log1p(-target_completeness) / math.log1p(-hit))
        if bands > MAX_BANDS:
            continue
        per_band = pairs * q**r if collisions is None else collisions(r)
        cost = bands * (_ROW_COST * (n_a + n_b) + _PAIR_COST * per_band)
        if best is None or cost < best[0]:
            best = (cost, r, bands, hit, per_band)
    if best is None:
        raise ValueError(
            f"Hamming LSH cannot find {target_completeness:.0%} of pairs at Dice {threshold} within"
            f" {MAX_BANDS} bands (matches agree on a bit with probability {p:.2f}, random pairs"
            f" {q:.2f}): compare all pairs instead"
        )
    cost, r, bands, hit, per_band = best
    return LSHParameters(
        bits_per_band=r,
        bands=bands,
        agreement_at_threshold=p,
        agreement_random=q,
        expected_completeness=1.0 - (1.0 - hit) ** bands,
        expected_candidates=bands * per_band,
        estimated_seconds=cost,
    )


def _parameters_for(
    a: np.ndarray,
    b: np.ndarray,
    a_counts: np.ndarray,
    b_counts: np.ndarray,
    threshold: float,
    target_completeness: float,
    collisions: Callable[[int], float] | None = None,
) -> LSHParameters:
    bits = a.shape[1] * 64
    counts = np.concatenate([a_counts, b_counts]).astype(np.float64)
    return lsh_parameters(
        threshold,
        bits=bits,
        n_a=a.shape[0],
        n_b=b.shape[0],
        fill=float(counts.mean()) / bits if len(counts) else 0.5,
        high_fill=float(np.quantile(counts, FILL_QUANTILE)) / bits if len(counts) else 0.5,
        target_completeness=target_completeness,
        collisions=collisions if collisions is not None else _measured_collisions(a, b),
    )


def _measured_collisions(a: np.ndarray, b: np.ndarray) -> Callable[[int], float]:
    """r -> pairs colliding in one band of r bits, measured: keys of TRIAL_ROWS rows a side on
    TRIAL_BANDS random bands, colliding pairs counted exactly per key and scaled up to n_a × n_b.

    Unrelated records agree on a sampled bit far more often than independent bits would: common
    names and values set the same bits in many filters, and bits set by one q-gram go together. The
    independent-bit estimate undercounted a band's work thirty-fold on generated agencies, so the
    cost model asks the data. Seeded by the data's shape, so a rerun measures the same."""
    seeded = np.random.default_rng([a.shape[0], b.shape[0], a.shape[1], TRIAL_BANDS])
    sample_a = np.sort(seeded.choice(a.shape[0], min(TRIAL_ROWS, a.shape[0]), replace=False))
    sample_b = np.sort(seeded.choice(b.shape[0], min(TRIAL_ROWS, b.shape[0]), replace=False))
    scale = (a.shape[0] / max(len(sample_a), 1)) * (b.shape[0] / max(len(sample_b), 1))
    bits = a.shape[1] * 64

    @functools.cache
    def collisions(r: int) -> float:
        total = 0
        for _ in range(TRIAL_BANDS):
            positions = np.sort(seeded.choice(bits, r, replace=False)).astype(np.int64)
            keys_a = np.empty(len(sample_a), dtype=np.uint32)
            keys_b = np.empty(len(sample_b), dtype=np.uint32)
            _keys_into(a, sample_a, positions, keys_a, 0, len(sample_a))
            _keys_into(b, sample_b, positions, keys_b, 0, len(sample_b))
            values_a, count_a = np.unique(keys_a, return_counts=True)
            values_b, count_b = np.unique(keys_b, return_counts=True)
            _, in_a, in_b = np.intersect1d(values_a, values_b, assume_unique=True, return_indices=True)
            total += int((count_a[in_a].astype(np.int64) * count_b[in_b]).sum())
        estimate: float = total / TRIAL_BANDS * scale
        return estimate

    return collisions


@dataclass(frozen=True)
class BlockingPlan:
    """How one candidate rule is run: every pair compared, or LSH, and at which Dice threshold."""

    mode: Literal["none", "lsh"]
    threshold: float  # the threshold run; above ``requested`` when auto had to tighten it
    requested: float
    estimated_seconds: float  # one core: all pairs at _UNBLOCKED_RATE, or the LSH cost model

    @property
    def tightened(self) -> bool:
        return self.threshold > self.requested


def plan_blocking(
    a: np.ndarray,
    b: np.ndarray,
    threshold: float,
    mode: BlockingMode = "auto",
    *,
    target_completeness: float = 0.99,
) -> BlockingPlan:
    """How to find the pairs at or above Dice ``threshold`` between filters ``a`` and ``b``.

    ``none`` and ``lsh`` do as told (``lsh`` raises ValueError where it cannot reach the target).
    ``auto`` compares all pairs while there are at most UNBLOCKED_PAIR_LIMIT; up to AUTO_EXACT_SECONDS
    of all pairs it takes whichever of all pairs and LSH is quicker; beyond, LSH if it fits in
    AUTO_LSH_SECONDS, else LSH at the loosest threshold (in steps of 0.01) that does: at low
    thresholds matches and random pairs agree on bits almost equally often and no LSH is quick, so
    the rule is tightened rather than left to run for hours. Callers report a tightened plan."""
    threshold = _checked_threshold(threshold)
    a, b = _checked_filters(a, "a"), _checked_filters(b, "b")
    n_a, n_b = a.shape[0], b.shape[0]
    exact_seconds = n_a * n_b / _UNBLOCKED_RATE
    exact = BlockingPlan("none", threshold, threshold, exact_seconds)
    if mode == "none":
        return exact
    a_counts, b_counts = popcounts(a), popcounts(b)
    collisions = _measured_collisions(a, b)

    def lsh_at(t: float) -> BlockingPlan:
        parameters = _parameters_for(a, b, a_counts, b_counts, t, target_completeness, collisions)
        return BlockingPlan("lsh", t, threshold, parameters.estimated_seconds)

    if mode == "lsh":
        return lsh_at(threshold)
    if mode != "auto":
        raise ValueError(f"blocking mode: expected one of none, lsh, auto, not {mode!r}")
    if n_a * n_b <= UNBLOCKED_PAIR_LIMIT or n_a == 0 or n_b == 0:
        return exact
    try:
        lsh: BlockingPlan | None = lsh_at(threshold)
    except ValueError:
        lsh = None
    if exact_seconds <= AUTO_EXACT_SECONDS:
        return lsh if lsh is not None and lsh.estimated_seconds < exact_seconds else exact
    if lsh is not None and lsh.estimated_seconds <= AUTO_LSH_SECONDS:
        return lsh
    for step in range(1, round((MAX_AUTO_THRESHOLD - threshold) * 100) + 1):
        t = round(threshold + step / 100, 2)
        try:
            plan = lsh_at(t)
        except ValueError:
            continue
        if plan.estimated_seconds <= AUTO_LSH_SECONDS:
            return plan
    return exact


# --------------------------------------------------------------------------------------------------
# One band


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
def _sorted_contains(values: np.ndarray, lo: int, hi: int, target: np.uint32 | np.uint64) -> bool:
    """Whether values[lo:hi] (sorted) holds target."""
    end = hi
    while lo < hi:
        mid = (lo + hi) >> 1
        if values[mid] < target:
            lo = mid + 1
        else:
            hi = mid
    return lo < end and values[lo] == target


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
    lo, hi = 0, len(keys)
    while lo < hi:
        mid = (lo + hi) >> 1
        if keys[mid] < target:
            lo = mid + 1
        else:
            hi = mid
    return lo


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


# --------------------------------------------------------------------------------------------------
# All bands


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


# --------------------------------------------------------------------------------------------------
# Quality of a blocking, on index pairs (``linkage.matching._evaluate`` does the same on record ids)


def pairs_completeness(found: tuple[np.ndarray, np.ndarray], truth: tuple[np.ndarray, np.ndarray]) -> float:
    """Share of the true pairs (i, j) that are among the found pairs; 1.0 when there are none."""
    true_keys = np.unique(_pair_keys(truth))
    if len(true_keys) == 0:
        return 1.0
    return float(np.isin(true_keys, _pair_keys(found)).mean())


def reduction_ratio(candidates: int, n_a: int, n_b: int) -> float:
    """1 - candidates / (n_a·n_b): the share of all pairs that blocking spared."""
    return 1.0 - candidates / (n_a * n_b) if n_a * n_b else 0.0


def _pair_keys(pairs: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    i = np.asarray(pairs[0], dtype=np.int64)
    j = np.asarray(pairs[1], dtype=np.int64)
    return (i << np.int64(32)) | j
