"""Hamming LSH blocking: completeness at the threshold, fewer candidates, exact scores.

Data: random 50 %-fill filters from seeded numpy generators; matches are copies with bits flipped,
as many as put their Dice just above the threshold (the hardest pairs to find). Nothing here comes
from real records.
"""

from __future__ import annotations

import numba
import numpy as np
import pytest

from linkage.matching import _blocking, _lsh, _lsh_parameters
from linkage.matching._blocking import (
    BandProgress,
    blocked_dice_pairs,
    lsh_candidates,
    lsh_parameters,
    pairs_completeness,
    plan_blocking,
    reduction_ratio,
)
from linkage.matching._kernels import dice_of_pairs, dice_pairs

THRESHOLD = 0.8


def packed(bits: np.ndarray) -> np.ndarray:
    return np.packbits(bits, axis=-1, bitorder="little").view(np.uint64).copy()


def linked_sets(seed: int, n: int, matches: int, words: int = 16, dice_low: float = 0.8, dice_high: float = 0.9):
    """(a, b): b[:matches] are a[:matches] with bits flipped so their Dice falls in [low, high]."""
    rng = np.random.default_rng(seed)
    bits = words * 64
    a_bits = rng.random((n, bits)) < 0.5
    b_bits = rng.random((n, bits)) < 0.5
    # Flipping k random bits of a 50 %-fill filter leaves Dice ≈ 1 - k / bits.
    flips = np.rint(bits * (1.0 - rng.uniform(dice_low, dice_high, matches))).astype(int)
    for r in range(matches):
        flipped = a_bits[r].copy()
        flipped[rng.choice(bits, flips[r], replace=False)] ^= True
        b_bits[r] = flipped
    return packed(a_bits), packed(b_bits)


def pair_set(pairs) -> set[tuple[int, int]]:
    return set(zip(pairs[0].tolist(), pairs[1].tolist()))


@pytest.fixture(scope="module")
def hard_sets():
    a, b = linked_sets(seed=11, n=1500, matches=600)
    truth = dice_pairs(a, b, THRESHOLD)
    assert len(truth[0]) > 450  # most planted pairs landed above the threshold
    return a, b, truth


def test_finds_pairs_near_the_threshold_at_the_target_rate(hard_sets):
    a, b, truth = hard_sets
    found = blocked_dice_pairs(a, b, THRESHOLD, target_completeness=0.95, rng=np.random.default_rng(1))
    # Every pair here sits within 0.1 of the threshold, where collisions are rarest: the design
    # promises >= 0.95 for a pair exactly at it, so the whole set must do at least that (less noise).
    assert pairs_completeness(found[:2], truth[:2]) >= 0.95 - 0.02


def test_blocking_spares_most_pairs(hard_sets):
    a, b, _ = hard_sets
    candidates = lsh_candidates(a, b, threshold=THRESHOLD, target_completeness=0.95, rng=np.random.default_rng(1))
    assert reduction_ratio(len(candidates[0]), len(a), len(b)) > 0.9


def test_pairs_are_exact_sorted_and_once(hard_sets):
    a, b, _ = hard_sets
    i, j, score = blocked_dice_pairs(a, b, THRESHOLD, rng=np.random.default_rng(2))
    assert len(i) and (score >= THRESHOLD).all()
    np.testing.assert_array_equal(score, dice_of_pairs(a, b, i, j))
    keys = i * len(b) + j
    assert (np.diff(keys) > 0).all()  # sorted by (i, j), no pair twice


def test_blocked_pairs_are_the_scored_candidates(hard_sets):
    a, b, _ = hard_sets
    candidates = lsh_candidates(a, b, threshold=THRESHOLD, rng=np.random.default_rng(3))
    via_candidates = dice_pairs(a, b, THRESHOLD, candidates=candidates)
    blocked = blocked_dice_pairs(a, b, THRESHOLD, rng=np.random.default_rng(3))
    for got, want in zip(blocked, via_candidates):
        np.testing.assert_array_equal(got, want)


def test_candidates_are_exactly_the_pairs_that_share_a_band_key():
    # Brute force from the same positions: catches a join or a deduplication that loses pairs.
    a, b = linked_sets(seed=12, n=300, matches=100, words=2)
    candidates = lsh_candidates(a, b, threshold=0.7, rng=np.random.default_rng(4))
    params = _lsh_parameters._parameters_for(a, b, *[_popcount_rows(x) for x in (a, b)], 0.7, 0.99)
    positions, _ = _lsh._band_positions(np.random.default_rng(4), 128, params.bits_per_band, params.bands)
    bits_a = np.unpackbits(a.view(np.uint8), axis=1, bitorder="little")
    bits_b = np.unpackbits(b.view(np.uint8), axis=1, bitorder="little")
    expected = set()
    for band in positions:
        same = (bits_a[:, None, band] == bits_b[None, :, band]).all(axis=2)
        expected |= set(zip(*(x.tolist() for x in np.nonzero(same))))
    assert pair_set(candidates) == expected


def _popcount_rows(filters: np.ndarray) -> np.ndarray:
    return np.unpackbits(filters.view(np.uint8), axis=1).sum(1)


def test_same_seed_same_pairs_whatever_the_threads(hard_sets):
    a, b, _ = hard_sets
    before = numba.get_num_threads()
    try:
        runs = []
        for threads in sorted({1, min(2, numba.config.NUMBA_NUM_THREADS)}):
            numba.set_num_threads(threads)
            runs.append(blocked_dice_pairs(a, b, THRESHOLD, rng=np.random.default_rng(5)))
    finally:
        numba.set_num_threads(before)
    runs.append(blocked_dice_pairs(a, b, THRESHOLD, rng=np.random.default_rng(5)))
    for other in runs[1:]:
        for x, y in zip(runs[0], other):
            np.testing.assert_array_equal(x, y)


def test_huge_buckets_are_split_then_skipped_and_counted(monkeypatch):
    monkeypatch.setattr(_lsh, "MAX_BUCKET_PAIRS", 400)
    rng = np.random.default_rng(6)
    a, b = linked_sets(seed=13, n=400, matches=200, words=4)
    duplicate = a[399].copy()
    a[300:] = duplicate  # 100 identical rows each side: 10,000 pairs in every band, never splittable
    b[300:] = duplicate
    reports: list[BandProgress] = []
    i, j, _ = blocked_dice_pairs(a, b, THRESHOLD, rng=rng, progress=reports.append)
    assert reports[-1].band == reports[-1].bands and reports[-1].skipped >= 10_000
    found = pair_set((i, j))
    assert not any(x >= 300 and y >= 300 for x, y in found)  # the skipped run, never half-linked
    truth = pair_set(dice_pairs(a[:300], b[:300], THRESHOLD))
    assert len(truth & found) >= 0.95 * len(truth)  # the rest is linked as usual


def test_split_buckets_still_link_rows_that_differ_beyond_the_key(monkeypatch):
    # Every filter shares one 32-bit half, so any key drawn mostly from it makes a huge bucket;
    # the extra bits split it, and the planted near-copies (which agree almost everywhere) are
    # still linked there rather than skipped.
    monkeypatch.setattr(_lsh, "MAX_BUCKET_PAIRS", 100)
    a, b = linked_sets(seed=14, n=150, matches=150, words=1, dice_low=0.97, dice_high=1.0)
    a[:, 0] = (a[:, 0] & np.uint64(0xFFFFFFFF00000000)) | np.uint64(0x12345678)
    b[:, 0] = (b[:, 0] & np.uint64(0xFFFFFFFF00000000)) | np.uint64(0x12345678)
    reports: list[BandProgress] = []
    i, j, _ = blocked_dice_pairs(a, b, THRESHOLD, rng=np.random.default_rng(7), progress=reports.append)
    assert reports[-1].split > 0
    planted = {(r, r) for r in range(150)}
    assert len(planted & pair_set((i, j))) >= 0.95 * len(planted)


def test_parameters_follow_the_derivation():
    params = lsh_parameters(0.8, bits=1024, n_a=10**6, n_b=10**6, fill=0.5)
    assert params.agreement_at_threshold == pytest.approx(0.8)
    assert params.agreement_random == pytest.approx(0.5)
    assert params.expected_completeness >= 0.99
    hit = _lsh_parameters._band_collision_probability(1024, 0.2 * 1024, params.bits_per_band)
    assert 1 - (1 - hit) ** (params.bands - 1) < 0.99  # the least number of bands that suffices
    stricter = lsh_parameters(0.9, bits=1024, n_a=10**6, n_b=10**6, fill=0.5)
    assert stricter.bands < params.bands  # closer pairs need fewer bands
    bigger = lsh_parameters(0.8, bits=1024, n_a=10**7, n_b=10**7, fill=0.5)
    assert bigger.bits_per_band > params.bits_per_band  # more records: more bits keep noise down


def half_full(n: int, seed: int = 0) -> np.ndarray:
    """n random 1024-bit filters, every bit set with probability 1/2."""
    return np.random.default_rng(seed).integers(0, 2**64, size=(n, 16), dtype=np.uint64)


def test_plan_blocking_modes():
    assert plan_blocking(half_full(20_000), half_full(20_000, 1), 0.8).mode == "none"  # few pairs: exact
    big = plan_blocking(half_full(1_000_000), half_full(1_000_000, 1), 0.8)
    assert (big.mode, big.threshold, big.tightened) == ("lsh", 0.8, False)
    assert plan_blocking(half_full(10), half_full(10, 1), 0.8, "lsh").mode == "lsh"
    assert plan_blocking(half_full(10), half_full(10, 1), 0.8, "none").mode == "none"
    with pytest.raises(ValueError):
        plan_blocking(half_full(10), half_full(10, 1), 0.8, "sorted-neighbourhood")  # type: ignore[arg-type]


def test_plan_blocking_auto_keeps_all_pairs_while_they_are_quick():
    # 150k x 150k at Dice 0.55: LSH cannot separate matches from noise, all pairs take ~75 s a core.
    plan = plan_blocking(half_full(150_000), half_full(150_000, 1), 0.55)
    assert (plan.mode, plan.threshold) == ("none", 0.55)


def test_plan_blocking_auto_tightens_where_all_pairs_would_take_hours():
    a, b = half_full(1_000_000), half_full(1_000_000, 1)
    plan = plan_blocking(a, b, 0.55)
    assert plan.mode == "lsh" and plan.tightened and plan.requested == 0.55
    assert 0.55 < plan.threshold <= _blocking.MAX_AUTO_THRESHOLD
    assert plan.estimated_seconds <= _blocking.AUTO_LSH_SECONDS
    looser = plan_blocking(a, b, round(plan.threshold - 0.01, 2), "lsh")
    assert looser.estimated_seconds > _blocking.AUTO_LSH_SECONDS  # the loosest threshold that fits, not any


def test_measured_collisions_see_what_independent_bits_miss():
    # Half the rows of each side are copies of one filter (a very common name): a band's keys
    # collide for all of those pairs, which n_a·n_b·q^r misses.
    a, b = half_full(200_000), half_full(200_000, 1)
    a[::2] = a[0]
    b[::2] = a[0]
    measured = _lsh_parameters._measured_collisions(a, b)(20)
    assert measured >= 0.9 * 100_000 * 100_000
    assert _lsh_parameters._measured_collisions(half_full(200_000), half_full(200_000, 1))(20) < 1e5  # random: ~4e4


def test_quality_measures():
    truth = (np.array([0, 1, 2, 3]), np.array([0, 1, 2, 3]))
    found = (np.array([0, 1, 5]), np.array([0, 1, 5]))
    assert pairs_completeness(found, truth) == 0.5
    assert pairs_completeness(found, (np.array([], int), np.array([], int))) == 1.0
    assert reduction_ratio(25, 10, 10) == 0.75


@pytest.mark.parametrize("target", [0.0, 1.0, 1.5])
def test_targets_outside_zero_one_are_refused(target):
    a = np.zeros((3, 2), dtype=np.uint64)
    with pytest.raises(ValueError):
        blocked_dice_pairs(a, a, 0.8, target_completeness=target, rng=np.random.default_rng(0))
