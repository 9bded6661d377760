"""Dice kernels against a plain numpy reference.

Data: random filters from seeded numpy generators and hypothesis; near-duplicates are made by
flipping a few bits of a copy. Nothing here comes from real records.
"""

from __future__ import annotations

import numba
import numpy as np
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from linkage.matching import _kernels as _compare
from linkage.matching._kernels import (
    dice_of_pairs,
    dice_pairs,
    group_dice_of_pairs,
    intersections_needed,
    popcounts,
)


def packed(bits: np.ndarray) -> np.ndarray:
    """Boolean (n, L) → uint64 (n, L / 64), bit b in word b // 64 at position b % 64."""
    return np.packbits(bits, axis=-1, bitorder="little").view(np.uint64).copy()


def unpacked(filters: np.ndarray) -> np.ndarray:
    return np.unpackbits(filters.view(np.uint8), axis=-1, bitorder="little").astype(np.int64)


def reference_dice(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    ua, ub = unpacked(a), unpacked(b)
    inter = ua @ ub.T
    total = ua.sum(1)[:, None] + ub.sum(1)[None, :]
    return np.where(total > 0, 2.0 * inter / np.maximum(total, 1), 0.0)


def reference_pairs(a: np.ndarray, b: np.ndarray, threshold: float):
    dice = reference_dice(a, b)
    i, j = np.nonzero(dice >= threshold)
    return i, j, dice[i, j].astype(np.float32)


def assert_same_pairs(got, expected) -> None:
    i, j, s = got
    assert i.dtype == np.int64 and j.dtype == np.int64 and s.dtype == np.float32
    np.testing.assert_array_equal(i, expected[0])
    np.testing.assert_array_equal(j, expected[1])
    np.testing.assert_array_equal(s, expected[2])


def random_filters(rng: np.random.Generator, n: int, words: int, fills: np.ndarray | float) -> np.ndarray:
    fills = np.broadcast_to(np.asarray(fills, dtype=float), (n,))[:, None]
    return packed(rng.random((n, words * 64)) < fills)


def near_duplicates(rng: np.random.Generator, filters: np.ndarray, flip: float) -> np.ndarray:
    noise = packed(rng.random((filters.shape[0], filters.shape[1] * 64)) < flip)
    return filters ^ noise


@st.composite
def filter_sets(draw):
    """(a, b): up to 12 × 15 filters of 1, 2, 3 or 16 words, fills from empty to full, with some
    rows of b near-duplicates of rows of a."""
    words = draw(st.sampled_from([1, 2, 3, 16]))
    n = draw(st.integers(0, 12))
    m = draw(st.integers(0, 15))
    fill_choices = st.sampled_from([0.0, 0.03, 0.3, 0.5, 0.7, 0.97, 1.0])
    a_fills = np.array(draw(st.lists(fill_choices, min_size=n, max_size=n)))
    b_fills = np.array(draw(st.lists(fill_choices, min_size=m, max_size=m)))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    a = random_filters(rng, n, words, a_fills)
    b = random_filters(rng, m, words, b_fills)
    copies = min(n, m, draw(st.integers(0, 6)))
    if copies:
        b[:copies] = near_duplicates(rng, a[:copies], draw(st.sampled_from([0.0, 0.02, 0.1])))
    return a, b


@given(filters=filter_sets(), data=st.data())
def test_dice_pairs_equal_the_reference(filters, data):
    a, b = filters
    dice = reference_dice(a, b)
    # Thresholds on the edges, anywhere, and exactly on a score that occurs (the tie must qualify).
    choices = [st.sampled_from([0.0, 1.0, 0.5, 0.8]), st.floats(0.0, 1.0)]
    if dice.size:
        choices.append(st.sampled_from(sorted(set(dice.ravel().tolist()))))
    threshold = data.draw(st.one_of(*choices))
    assert_same_pairs(dice_pairs(a, b, threshold), reference_pairs(a, b, threshold))


@given(filters=filter_sets(), threshold=st.floats(0.0, 1.0), data=st.data())
def test_candidates_are_scored_alone_and_once(filters, threshold, data):
    a, b = filters
    if len(a) == 0 or len(b) == 0:
        return
    count = data.draw(st.integers(0, 40))
    i = np.array(data.draw(st.lists(st.integers(0, len(a) - 1), min_size=count, max_size=count)), dtype=np.int64)
    j = np.array(data.draw(st.lists(st.integers(0, len(b) - 1), min_size=count, max_size=count)), dtype=np.int64)
    dice = reference_dice(a, b)
    wanted = sorted({(x, y) for x, y in zip(i.tolist(), j.tolist()) if dice[x, y] >= threshold})
    got = dice_pairs(a, b, threshold, candidates=(i, j))
    assert list(zip(got[0].tolist(), got[1].tolist())) == wanted
    np.testing.assert_array_equal(got[2], np.array([dice[x, y] for x, y in wanted], dtype=np.float32))


def test_length_filter_keeps_a_pair_on_its_boundary():
    # |x| = 20 inside |y| = 30: Dice = 40 / 50 = 0.8 exactly, the most unequal pair that qualifies.
    y = np.zeros((1, 1024), dtype=bool)
    y[0, :30] = True
    x = y.copy()
    x[0, 20:] = False
    smaller = x.copy()
    smaller[0, 19] = False  # 38 / 49 < 0.8
    a, b = packed(np.vstack([x, smaller])), packed(y)
    i, j, s = dice_pairs(a, b, 0.8)
    assert i.tolist() == [0] and j.tolist() == [0] and s.tolist() == [np.float32(0.8)]


def test_prefix_bound_keeps_pairs_that_agree_only_late():
    # First half disjoint, second half equal: Dice = 2·40 / (10 + 10 + 2·40) = 0.8 exactly, so
    # the bound after the first half must be exact to keep it.
    rng = np.random.default_rng(3)
    a_bits = np.zeros((64, 1024), dtype=bool)
    b_bits = np.zeros((64, 1024), dtype=bool)
    for r in range(64):
        head = rng.permutation(512)
        a_bits[r, head[:10]] = True
        b_bits[r, head[10:20]] = True
        tail = 512 + rng.permutation(512)[:40]
        a_bits[r, tail] = b_bits[r, tail] = True
    a, b = packed(a_bits), packed(b_bits)
    i, j, _ = dice_pairs(a, b, 0.8)
    assert np.array_equal(i, np.arange(64)) and np.array_equal(j, np.arange(64))
    assert_same_pairs(dice_pairs(a, b, 0.8), reference_pairs(a, b, 0.8))


def test_pruning_holds_on_equal_popcounts_at_scale():
    # Balanced filters (every popcount 512) defeat the length filter; the prefix bound does the work.
    rng = np.random.default_rng(4)
    bits = np.zeros((300, 1024), dtype=bool)
    bits[np.arange(300)[:, None], np.argsort(rng.random((300, 1024)), axis=1)[:, :512]] = True
    a = packed(bits)
    b = near_duplicates(rng, a, 0.05)
    b[150:] = packed(bits[::-1][150:])  # half of b unrelated
    for threshold in (0.6, 0.8, 0.9):
        assert_same_pairs(dice_pairs(a, b, threshold), reference_pairs(a, b, threshold))


@pytest.mark.parametrize("threshold", [0.2, 0.8])
def test_chunks_overflow_and_threads_do_not_change_results(monkeypatch, threshold):
    # Tiny chunks force many chunk boundaries; at 0.2 every row overflows its slots and is rescanned.
    rng = np.random.default_rng(5)
    a = random_filters(rng, 150, 4, rng.uniform(0.2, 0.8, 150))
    b = random_filters(rng, 400, 4, rng.uniform(0.2, 0.8, 400))
    b[:100] = near_duplicates(rng, a[:100], 0.03)
    expected = reference_pairs(a, b, threshold)
    monkeypatch.setattr(_compare, "_CHUNK_COMPARISONS", 1)
    threads_before = numba.get_num_threads()
    try:
        for threads in sorted({1, min(2, numba.config.NUMBA_NUM_THREADS)}):
            numba.set_num_threads(threads)
            assert_same_pairs(dice_pairs(a, b, threshold), expected)
    finally:
        numba.set_num_threads(threads_before)


def test_counts_given_by_the_caller_are_used():
    rng = np.random.default_rng(6)
    a = random_filters(rng, 20, 2, 0.5)
    b = near_duplicates(rng, a, 0.05)
    got = dice_pairs(a, b, 0.7, a_counts=popcounts(a), b_counts=popcounts(b).astype(np.int64))
    assert_same_pairs(got, reference_pairs(a, b, 0.7))


@given(filters=filter_sets())
def test_dice_of_pairs_equals_the_reference(filters):
    a, b = filters
    if len(a) == 0 or len(b) == 0:
        return
    i, j = np.meshgrid(np.arange(len(a)), np.arange(len(b)), indexing="ij")
    got = dice_of_pairs(a, b, i.ravel(), j.ravel())
    np.testing.assert_array_equal(got, reference_dice(a, b).ravel().astype(np.float32))


def test_popcounts_count_bits():
    rng = np.random.default_rng(7)
    filters = random_filters(rng, 50, 3, rng.uniform(0, 1, 50))
    np.testing.assert_array_equal(popcounts(filters), unpacked(filters).sum(1))
    assert popcounts(filters).dtype == np.int32


def test_group_dice_is_nan_where_either_group_is_empty():
    rng = np.random.default_rng(8)
    a = random_filters(rng, 12, 2, 0.4).reshape(4, 3, 2)
    b = near_duplicates(rng, a.reshape(12, 2), 0.1).reshape(4, 3, 2)
    a[1, 0] = 0  # record 1 of a has no value in group 0
    b[2, 2] = 0
    a[3, 1] = b[3, 1] = 0  # both missing: still missing, not Dice 0
    i = np.array([0, 1, 2, 3, 1])
    j = np.array([0, 1, 2, 3, 2])
    got = group_dice_of_pairs(a, b, i, j)
    assert got.shape == (5, 3) and got.dtype == np.float32
    missing = np.zeros((5, 3), dtype=bool)
    missing[1, 0] = missing[2, 2] = missing[3, 1] = missing[4, 0] = missing[4, 2] = True
    np.testing.assert_array_equal(np.isnan(got), missing)
    for p in range(5):
        for g in range(3):
            if not missing[p, g]:
                want = reference_dice(a[i[p], g][None], b[j[p], g][None])[0, 0]
                assert got[p, g] == np.float32(want)


@given(threshold=st.floats(0.0, 1.0))
@example(threshold=0.56)  # 14 / 25 rounds to exactly 0.56 while 0.56·25/2 rounds above 7
@example(threshold=0.28)
@example(threshold=0.8)
def test_intersections_needed_match_the_division(threshold):
    bits = 64
    need = intersections_needed(threshold, bits)
    for total in range(2 * bits + 1):
        for inter in range(total // 2 + 1):
            dice = 2.0 * inter / total if total else 0.0
            assert (inter >= need[total]) == (dice >= threshold), (total, inter)


@given(threshold=st.floats(0.0, 1.0))
@example(threshold=0.8)
@example(threshold=0.7)
def test_prefix_bound_terms_never_exceed_the_need(threshold):
    bits = 128
    need = intersections_needed(threshold, bits)
    counts = np.arange(bits + 1)
    a_term = _compare._prefix_need_floor(threshold, counts, slack=1)
    b_term = _compare._prefix_need_floor(threshold, counts, slack=0)
    assert (a_term[:, None] + b_term[None, :] <= need[counts[:, None] + counts[None, :]]).all()


@pytest.mark.parametrize(
    "call",
    [
        lambda a, b: dice_pairs(a.astype(np.int64), b, 0.5),
        lambda a, b: dice_pairs(a, b[:, :1], 0.5),
        lambda a, b: dice_pairs(a, b, 1.5),
        lambda a, b: dice_pairs(a, b, float("nan")),
        lambda a, b: dice_pairs(a, b, 0.5, candidates=(np.array([0]), np.array([99]))),
        lambda a, b: dice_pairs(a, b, 0.5, a_counts=np.zeros(3)),
        lambda a, b: dice_of_pairs(a, b, np.array([0, 1]), np.array([0])),
        lambda a, b: group_dice_of_pairs(a, b, np.array([0]), np.array([0])),
    ],
)
def test_misuse_is_a_value_error(call):
    a = np.zeros((4, 2), dtype=np.uint64)
    b = np.zeros((5, 2), dtype=np.uint64)
    with pytest.raises(ValueError):
        call(a, b)
