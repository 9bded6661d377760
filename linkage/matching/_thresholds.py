"""Default thresholds, and dice's match threshold raised where large sources would swamp it."""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np

from linkage.bloom._encodings import Encodings
from linkage.matching._engine import Engine

if TYPE_CHECKING:
    from linkage.matching._link import LinkSettings

# (match, review) thresholds per scoring: a match probability for "fs", a Dice for "dice".
# Random pairs of folded ~50%-full filters have median Dice 0.5 and reach 0.6 about 0.03% of the
# time; below that the review band fills with them, so by default dice's review band is the match
# threshold (possible = pairs at or above it that the one-per-source rule kept apart). Dice 0.62
# keeps FEBRL4 at F1 0.991 and gives generated agencies of 5,000 people 0.82 (0.60: 0.994, 0.80).
DEFAULT_THRESHOLDS: dict[str, tuple[float, float]] = {"fs": (0.5, 0.2), "dice": (0.62, 0.62)}
# Dice's default match threshold rises with the sources: the more pairs, the more pairs of unrelated
# people whose folded filters reach a given Dice. It is the lowest, from the default up in steps
# of 0.01, at which at most UNRELATED_PER_RECORD unrelated pairs per record of the smaller source
# would reach it, judged on random pairs within each source: nobody is in one source twice, so no
# true match swells that count the way it swells random pairs across sources (relatives within a
# source do: on the generated agencies it counts 2 to 4 times the unrelated pairs that cross
# sources, and UNRELATED_PER_RECORD is set against that estimate). Measured on the generated
# agencies: 5,000 people stay at 0.62 (F1 0.82); 30,000 go to 0.66 (F1 0.726 → 0.762); 100,000
# records a side (benchmarks/scale.py) to 0.65 (0.788 → 0.838).
UNRELATED_PER_RECORD = 0.75
RATE_SAMPLE = 1_000_000  # random pairs on which a share of unrelated pairs is measured


def scaled_dice_threshold(
    sources: Mapping[str, Encodings], settings: LinkSettings, engine: Engine
) -> tuple[LinkSettings, str | None]:
    """``settings`` with dice's match threshold raised where unrelated pairs would swamp it (see
    ``UNRELATED_PER_RECORD``), and a note saying so; the review threshold follows unless set."""
    asked = settings.thresholds()[0]
    grid = np.round(np.arange(asked, 0.995, 0.01), 2)
    within = {name: np.sort(within_dice(enc.filters, engine)) for name, enc in sources.items()}
    unrelated, allowed = np.zeros(len(grid)), 0.0
    for x, y in itertools.combinations(sources, 2):
        share = (_share_at_least(within[x], grid) + _share_at_least(within[y], grid)) / 2
        unrelated += share * len(sources[x]) * len(sources[y])
        allowed += UNRELATED_PER_RECORD * min(len(sources[x]), len(sources[y]))
    within_budget = unrelated <= allowed
    k = int(np.argmax(within_budget)) if within_budget.any() else len(grid) - 1
    if k == 0:
        return settings, None
    chosen = float(grid[k])
    review = settings.review_threshold if settings.review_threshold is not None else chosen
    note = (
        f"dice match threshold raised from {asked:g} to {chosen:g} for sources this large: at {asked:g} up to about"
        f" {unrelated[0]:,.0f} pairs of unrelated records would reach it, at {chosen:g} {unrelated[k]:,.0f}"
        " (judged on random pairs within each source); --threshold sets it"
    )
    return dataclasses.replace(settings, threshold=chosen, review_threshold=min(review, chosen)), note


def within_dice(filters: np.ndarray, engine: Engine) -> np.ndarray:
    """Dice of up to RATE_SAMPLE random pairs of different records of one source (seeded by its data)."""
    n = len(filters)
    if n < 2:
        return np.zeros(0, dtype=np.float32)
    seeded = np.random.default_rng([n, int(filters[0, 0] % (1 << 62))])
    k = min(RATE_SAMPLE, n * (n - 1))
    i = seeded.integers(0, n, k)
    j = (i + seeded.integers(1, n, k)) % n  # never i itself
    return engine.dice_of_pairs(filters, filters, i, j)


def _share_at_least(sorted_dice: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    if len(sorted_dice) == 0:
        return np.zeros(len(thresholds))
    return 1.0 - np.searchsorted(sorted_dice, thresholds, side="left") / len(sorted_dice)
