"""Blocking: which pairs are worth comparing. Hamming LSH on the encodings themselves.

No blocking key is derived from the records: a coordinator holding only encodings learns nothing
from blocking that it could not learn from the filters, and there is no key to dictionary-attack.

This module is the policy (``plan_blocking``: all pairs, LSH, or LSH at a tightened threshold) and
the blocking names in one place; the parts live beside it:

    ``_lsh_parameters``  the theory and cost model that choose r and bands (``lsh_parameters``)
    ``_lsh``             the bands run one after another (``blocked_dice_pairs``, ``lsh_candidates``)
    ``_lsh_kernels``     the numba kernels of one band
    ``_evaluate``        blocking quality on index pairs (``pairs_completeness``, ``reduction_ratio``)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from linkage.matching._evaluate import pairs_completeness, reduction_ratio
from linkage.matching._kernels import _checked_filters, _checked_threshold, popcounts
from linkage.matching._lsh import BandProgress, blocked_dice_pairs, lsh_candidates
from linkage.matching._lsh_parameters import LSHParameters, _measured_collisions, _parameters_for, lsh_parameters

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
_UNBLOCKED_RATE = 300e6  # comparisons a second, one core, all pairs at 50 % fill

BlockingMode = Literal["none", "lsh", "auto"]


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
