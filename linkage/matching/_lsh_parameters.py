"""Hamming LSH parameters: how many bits a band samples and how many bands, from theory and a cost
model measured on the data.

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
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from linkage.matching._kernels import _checked_threshold
from linkage.matching._lsh_kernels import _keys_into

__all__ = ["LSHParameters", "lsh_parameters"]

TRIAL_ROWS = 100_000  # rows a side on which a band's collisions are measured
TRIAL_BANDS = 3
MAX_KEY_BITS = 32  # keys are uint32: enough for 10^9 rows a side
MAX_BANDS = 4096
FILL_QUANTILE = 0.9
# Measured costs (seconds, one core of this AMD EPYC) of one row in one band (key, sort, walk) and
# of one candidate pair (two random rows read and scored); see benchmarks/compare.py --scale.
_ROW_COST = 52e-9
_PAIR_COST = 50e-9


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
