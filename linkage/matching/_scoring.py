"""Scores that survive messy data: Fellegi–Sunter weights learned without labels.

Each candidate pair is compared group by group (names, date of birth, sex, address): the Dice of
the two group filters falls into an agreement level, or is *missing* when either record has no
value in that group. A missing group contributes nothing, neither agreement nor disagreement; so
a victim-services record without an address is judged on what it has.

The model: m[g, l] = P(level l in group g | match), u[g, l] = P(level l | non-match), λ = share of
matches among all cross-source pairs (see ``fit_model``). The score of a pair is its match
probability, so thresholds read as probabilities.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Dice at or above each edge moves a pair up one level: 0 (< 0.40) ... 5 (>= 0.95).
LEVEL_EDGES = np.array([0.40, 0.60, 0.75, 0.85, 0.95])
N_LEVELS = len(LEVEL_EDGES) + 1
MISSING = -1


def agreement_levels(group_dice: np.ndarray) -> np.ndarray:
    """(pairs, groups) Dice with NaN for missing → int8 levels, -1 where missing."""
    levels: np.ndarray = np.searchsorted(LEVEL_EDGES, np.nan_to_num(group_dice, nan=0.0), side="right").astype(np.int8)
    levels[np.isnan(group_dice)] = MISSING
    return levels


@dataclass(frozen=True)
class MatchModel:
    groups: tuple[str, ...]
    m: np.ndarray  # (groups, levels)
    u: np.ndarray  # (groups, levels)
    prior: float  # λ: share of matches among the pairs it was fitted on
    iterations: int

    def weight_table(self) -> np.ndarray:
        """(groups, levels) log2(m / u): evidence for a match of each agreement level."""
        table: np.ndarray = np.log2(self.m) - np.log2(self.u)
        return table

    def weights(self, levels: np.ndarray) -> np.ndarray:
        """log2 Bayes factor of each pair: Σ over present groups of log2(m / u)."""
        table = self.weight_table()
        out = np.zeros(levels.shape[0])
        for g in range(levels.shape[1]):
            present = levels[:, g] >= 0
            out[present] += table[g, levels[present, g]]
        return out

    def probabilities(self, levels: np.ndarray) -> np.ndarray:
        log_odds = self.weights(levels) + np.log2(self.prior / (1 - self.prior))
        probabilities: np.ndarray = 1.0 / (1.0 + np.exp2(-np.clip(log_odds, -60, 60)))
        return probabilities

    def describe(self) -> list[str]:
        table = self.weight_table()
        lines = [
            f"match weights (log2 m/u) by Dice level {'  '.join(_level_names())}; prior {self.prior:.3g} (share of matches among all cross-source pairs)"
        ]
        for g, name in enumerate(self.groups):
            lines.append(f"  {name:<10}" + " ".join(f"{w:+7.2f}" for w in table[g]))
        return lines


def _level_names() -> list[str]:
    edges = ["0"] + [f"{e:.2f}" for e in LEVEL_EDGES]
    return [f"≥{e}" for e in edges]


def level_frequencies(levels: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """(groups, levels) share of each level among pairs where the group is present."""
    n_groups = levels.shape[1]
    out = np.zeros((n_groups, N_LEVELS))
    w = np.ones(levels.shape[0]) if weights is None else weights
    for g in range(n_groups):
        present = levels[:, g] >= 0
        counts = np.bincount(levels[present, g], weights=w[present], minlength=N_LEVELS)
        out[g] = (counts + 0.5) / (counts.sum() + 0.5 * N_LEVELS)  # smoothed: no level is impossible
    return out


def monotone(values: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """The non-decreasing sequence nearest ``values`` in weighted least squares (pool adjacent violators)."""
    blocks: list[list[float]] = []  # [mean, weight, length]
    for v, w in zip(values.tolist(), np.maximum(weights, 1e-12).tolist(), strict=True):
        blocks.append([v, w, 1])
        while len(blocks) > 1 and blocks[-2][0] > blocks[-1][0]:
            v2, w2, n2 = blocks.pop()
            v1, w1, n1 = blocks.pop()
            blocks.append([(v1 * w1 + v2 * w2) / (w1 + w2), w1 + w2, n1 + n2])
    return np.concatenate([np.full(n, v) for v, _, n in blocks])


def fit_model(
    groups: tuple[str, ...],
    levels: np.ndarray,
    random_levels: np.ndarray,
    *,
    population: float,
    scored: int | None = None,
    iterations: int = 200,
    tolerance: float = 1e-7,
) -> MatchModel:
    """A model for every possible pair, learned without labels.

    1. EM over the scored pairs (``levels``, perhaps a sample of ``scored`` pairs) separates them
       into matches and non-matches: it gives m and the expected number of matches. It starts from
       the pairs that agree on what identifies a person (see ``identity_seed``): started blind, EM
       can settle on another split of the candidates (on 100,000 generated records a side it took
       relatives who share an address for the matches, and found 42% of true pairs instead of 81%).
    2. u comes from random pairs, which stand for all ``population`` pairs: nearly all are
       non-matches. u fitted on the scored pairs alone would learn how they were selected
       (they all look alike) and make disagreement look like weak evidence.
    3. The prior is the expected number of matches over the population.
    Weights are then kept non-decreasing in the Dice level: more agreement is never evidence
    against a match.
    """
    scored = levels.shape[0] if scored is None else scored
    # EM needs each distinct agreement pattern once, with its count: at most 7^groups rows.
    patterns, counts = np.unique(levels, axis=0, return_counts=True)
    counts = counts.astype(np.float64)
    u = level_frequencies(random_levels)
    seed = identity_seed(groups, patterns)
    seeded = float(counts[seed].sum())
    if 0 < seeded < counts.sum():
        m = level_frequencies(patterns, seed * counts)
        u_scored = level_frequencies(patterns, ~seed * counts)
        prior = seeded / float(counts.sum())
    else:  # nothing (or everything) looks like the same person: a neutral start
        m = np.tile(np.linspace(0.02, 1.0, N_LEVELS) ** 3, (len(groups), 1))
        m /= m.sum(axis=1, keepdims=True)
        u_scored = u
        prior = 0.1
    done = 0
    for done in range(1, iterations + 1):
        posterior = MatchModel(groups, m, u_scored, prior, done).probabilities(patterns)
        new_prior = float(np.clip((posterior * counts).sum() / counts.sum(), 1e-9, 1 - 1e-6))
        m = level_frequencies(patterns, posterior * counts)
        u_scored = level_frequencies(patterns, (1.0 - posterior) * counts)
        shift = abs(new_prior - prior)
        prior = new_prior
        if shift < tolerance:
            break
    expected_matches = prior * scored
    population_prior = float(np.clip(expected_matches / max(population, 1.0), 1e-12, 0.5))
    return _with_monotone_weights(MatchModel(groups, m, u, population_prior, done), patterns, counts)


# The groups that identify a person (the names+dob candidate rule ORs them too), and where EM
# starts: pairs whose names agree at Dice >= 0.85 and birth dates at >= 0.95 (levels 4 and 5)
# are taken for matches. Relatives share a surname and an address, rarely a given name and a birthday.
IDENTITY_LEVELS = {"name": 4, "dob": 5, "date": 5}


def identity_seed(groups: tuple[str, ...], patterns: np.ndarray) -> np.ndarray:
    """Patterns that agree on every identifying group the schema has (names, date of birth): both
    present and at or above ``IDENTITY_LEVELS``. A schema with neither asks every present group for
    level 4 instead, with at least two groups present."""
    identifying = [(g, IDENTITY_LEVELS[name]) for g, name in enumerate(groups) if name in IDENTITY_LEVELS]
    if identifying:
        seed: np.ndarray = np.logical_and.reduce([patterns[:, g] >= level for g, level in identifying])
        return seed
    present = patterns >= 0
    seed = np.all((patterns >= 4) | ~present, axis=1) & (present.sum(axis=1) >= 2)
    return seed


def _with_monotone_weights(model: MatchModel, patterns: np.ndarray, pattern_counts: np.ndarray) -> MatchModel:
    m = model.m.copy()
    for g in range(len(model.groups)):
        present = patterns[:, g] >= 0
        counts = np.bincount(patterns[present, g], weights=pattern_counts[present], minlength=N_LEVELS)
        weight = np.log2(m[g]) - np.log2(model.u[g])
        m[g] = model.u[g] * np.exp2(monotone(weight, counts + 1.0))
    return MatchModel(model.groups, m, model.u, model.prior, model.iterations)
