"""Candidate pairs of two sources: the rules (record filters, names and date of birth), the budget
that tightens a rule where unrelated pairs would swamp it, all pairs or LSH, and each rule as it ran."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from linkage.bloom._encodings import Encodings
from linkage.errors import LinkageError
from linkage.matching._blocking import plan_blocking
from linkage.matching._engine import Engine
from linkage.matching._lsh import BandProgress
from linkage.matching._scoring import IDENTITY_LEVELS
from linkage.matching._thresholds import RATE_SAMPLE

if TYPE_CHECKING:
    from linkage.matching._link import LinkSettings

COMPLETENESS_SAMPLE_ROWS = 2_000
# Candidate budget: a rule may keep about max(CANDIDATE_FLOOR, CANDIDATES_PER_RECORD × records) random
# pairs (shared between the rules), so scoring and memory grow with the records, not their product.
# A rule whose threshold would let more through is tightened; its rate is measured on RATE_SAMPLE
# random pairs. At 10,000 a side nothing is tightened.
CANDIDATE_FLOOR = 4_000_000
CANDIDATES_PER_RECORD = 20


@dataclass(frozen=True)
class RuleRun:
    """One candidate rule as it ran on a pair of sources: the Dice asked for, the Dice the candidate
    budget allowed, and the Dice run (above where ``auto`` blocking tightened it for LSH)."""

    rule: str  # "record", or the group filters OR-ed together (e.g. "name+dob")
    asked: float
    budgeted: float  # above ``asked`` where unrelated pairs would have swamped the budget
    threshold: float  # the Dice run
    blocking: str  # "none" or "lsh"
    unrelated_at_asked: float | None = None  # estimated unrelated candidates at ``asked``, when budgeted

    def notes(self) -> list[str]:
        """What the coordinator is told about a tightened rule."""
        lines = []
        if self.budgeted > self.asked:
            lines.append(
                f"{self.rule} rule tightened from Dice >= {self.asked:g} to {self.budgeted:g}: at {self.asked:g} about"
                f" {self.unrelated_at_asked or 0:,.0f} unrelated pairs would be candidates"
            )
        if self.threshold > self.budgeted:
            lines.append(
                f"{self.rule} rule tightened from Dice >= {self.budgeted:g} to {self.threshold:g} so that LSH stays quick;"
                " --blocking none compares all pairs"
            )
        return lines


@dataclass(frozen=True)
class SourcePairStats:
    source_a: str
    source_b: str
    blocking: str
    comparisons: int
    candidates: int
    seconds: float
    pairs_completeness: float | None = None  # LSH: against an exact run on a sample
    matches: int = 0
    possible: int = 0
    notes: tuple[str, ...] = ()  # rules auto tightened or left out, to show the coordinator
    rules: tuple[RuleRun, ...] = ()  # each candidate rule as it ran


def candidate_rules(a: Encodings, b: Encodings, settings: LinkSettings) -> list[tuple[str, np.ndarray, np.ndarray, float]]:
    record_threshold = settings.candidate_dice
    if settings.scoring == "dice":  # the score is this Dice: every pair down to the review threshold counts
        record_threshold = min(record_threshold, settings.thresholds()[1])
    rules = [("record", a.filters, b.filters, record_threshold)]
    if a.group_filters is not None and "name" in a.group_names:
        # Names with the date of birth where there is one: at an equal share of unrelated pairs let
        # through, it holds more true pairs than names alone (measured on generated agencies:
        # 83 % against 53 % at about 1 in 10,000 random pairs).
        groups = [a.group_names.index(g) for g in IDENTITY_LEVELS if g in a.group_names]
        label = "+".join(a.group_names[g] for g in groups)
        rules.append((label, _union(a.groups(), groups), _union(b.groups(), groups), settings.candidate_name_dice))
    return rules


def _union(group_filters: np.ndarray, groups: list[int]) -> np.ndarray:
    """The OR of some group filters: a filter of those fields alone."""
    return np.ascontiguousarray(np.bitwise_or.reduce(group_filters[:, groups], axis=1))


def source_pair_candidates(
    name_a: str,
    a: Encodings,
    name_b: str,
    b: Encodings,
    settings: LinkSettings,
    rng: np.random.Generator,
    engine: Engine,
    say: Callable[[str], None] = lambda _: None,
) -> tuple[np.ndarray, np.ndarray, SourcePairStats]:
    """Candidate pairs by every rule. A rule that would let through more unrelated pairs than the
    budget is tightened; in ``auto``, so is one that all pairs would take hours over and LSH cannot
    serve quickly at its threshold. Each tightening is noted for the summary."""
    keys, comparisons, completeness, runs = [], 0, [], []
    rules = candidate_rules(a, b, settings)
    budget = max(CANDIDATE_FLOOR, CANDIDATES_PER_RECORD * (len(a) + len(b))) / len(rules)
    for rule, fa, fb, asked in rules:
        threshold = _budgeted_threshold(fa, fb, asked, budget, engine)
        unrelated = _random_rate(fa, fb, asked, engine) * len(a) * len(b) if threshold > asked else None
        try:
            plan = plan_blocking(fa, fb, threshold, settings.blocking, target_completeness=settings.target_completeness)
        except ValueError as exc:
            raise LinkageError(f"{name_a} ~ {name_b}: {rule} rule at Dice {threshold:g}: {exc}") from None
        runs.append(RuleRun(rule, asked, threshold, plan.threshold, plan.mode, unrelated))
        if plan.mode == "none":
            i, j, _ = engine.dice_pairs(fa, fb, plan.threshold)
            comparisons += len(a) * len(b)
        else:
            reporter = _BandReporter(say, rule)
            i, j, _ = engine.blocked_dice_pairs(
                fa, fb, plan.threshold, target_completeness=settings.target_completeness, rng=rng, progress=reporter
            )
            comparisons += reporter.compared
            completeness.append(_sampled_completeness(fa, fb, plan.threshold, i, j, rng, engine))
        keys.append(i * len(b) + j)
    key = np.unique(np.concatenate(keys))
    stats = SourcePairStats(
        source_a=name_a, source_b=name_b, blocking="lsh" if any(r.blocking == "lsh" for r in runs) else "none", comparisons=comparisons, candidates=len(key),
        seconds=0.0, pairs_completeness=min(completeness) if completeness else None,
        notes=tuple(note for run in runs for note in run.notes()), rules=tuple(runs),
    )  # fmt: skip
    return key // len(b), key % len(b), stats


def _random_rate(fa: np.ndarray, fb: np.ndarray, threshold: float, engine: Engine) -> float:
    return float(np.mean(_random_dice(fa, fb, engine) >= threshold))


def _random_dice(fa: np.ndarray, fb: np.ndarray, engine: Engine) -> np.ndarray:
    """Dice of RATE_SAMPLE random pairs (seeded by the rule's data, so a rerun picks the same)."""
    k = min(RATE_SAMPLE, len(fa) * len(fb))
    seeded = np.random.default_rng([len(fa), len(fb), int(fa[0, 0] % (1 << 62)), int(fb[0, 0] % (1 << 62))])
    return engine.dice_of_pairs(fa, fb, seeded.integers(0, len(fa), k), seeded.integers(0, len(fb), k))


def _budgeted_threshold(fa: np.ndarray, fb: np.ndarray, threshold: float, budget: float, engine: Engine) -> float:
    """The loosest threshold (``threshold`` or above, in steps of 0.01) at which unrelated pairs
    would make at most ``budget`` candidates, judged on random pairs."""
    pairs = len(fa) * len(fb)
    if pairs <= budget:
        return threshold
    dice = np.sort(_random_dice(fa, fb, engine))
    allowed = budget / pairs
    t = threshold
    while t < 0.99 and (len(dice) - np.searchsorted(dice, t, side="left")) / len(dice) > allowed:
        t = round(t + 0.01, 2)
    return t


class _BandReporter:
    """Progress about ten times a rule, not once a band (there can be thousands); keeps the count
    of pairs the bands compared."""

    def __init__(self, say: Callable[[str], None], rule: str) -> None:
        self.say, self.rule, self.compared = say, rule, 0

    def __call__(self, p: BandProgress) -> None:
        self.compared = p.candidates
        if p.band == p.bands or p.band % max(1, p.bands // 10) == 0:
            self.say(f"  {self.rule} rule: LSH band {p.band:,} of {p.bands:,}, {p.pairs:,} pairs kept")


def _sampled_completeness(
    fa: np.ndarray, fb: np.ndarray, threshold: float, i: np.ndarray, j: np.ndarray, rng: np.random.Generator, engine: Engine
) -> float:
    """Share of the pairs an exact comparison finds, for a sample of rows, that blocking found too."""
    rows = np.sort(rng.choice(len(fa), min(COMPLETENESS_SAMPLE_ROWS, len(fa)), replace=False))
    ei, ej, _ = engine.dice_pairs(np.ascontiguousarray(fa[rows]), fb, threshold)
    if len(ei) == 0:
        return 1.0
    exact = rows[ei] * len(fb) + ej
    in_sample = np.isin(i, rows)
    return float(np.isin(exact, i[in_sample] * len(fb) + j[in_sample]).mean())
