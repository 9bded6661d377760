"""Linking encodings of several sources: candidates, scores, clusters and bands.

    per pair of sources: candidates (record filters, and names-and-birth-date filters, at or above
    a loose Dice, tightened where unrelated pairs would swamp the budget; all pairs compared, or
    Hamming LSH when there are many) ─▶ scores (Fellegi–Sunter match
    probability from per-group Dice, or record-level Dice) ─▶ all sources together: greedy clusters
    holding at most one record per source ─▶ bands: ``match`` (same cluster), ``possible`` (a
    scored pair at or above the review threshold left in different clusters)

Names-and-birth-date filters are a second way in because a record that lacks fields (victim services often hold no
address) has a record filter too sparse to reach a loose Dice with its match.
"""

from __future__ import annotations

import dataclasses
import itertools
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import polars as pl

from linkage.bloom._encodings import Encodings
from linkage.errors import EncodingsError, LinkageError
from linkage.matching._blocking import BandProgress, blocked_dice_pairs, plan_blocking
from linkage.matching._kernels import dice_of_pairs, dice_pairs, group_dice_of_pairs
from linkage.matching._scoring import IDENTITY_LEVELS, MatchModel, agreement_levels, fit_model
from linkage.matching._solve import greedy_clusters

Scoring = Literal["auto", "fs", "dice"]
Blocking = Literal["auto", "none", "lsh"]

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
RANDOM_PAIRS_PER_SOURCE_PAIR = 100_000
EM_SAMPLE = 500_000
COMPLETENESS_SAMPLE_ROWS = 2_000
# Candidate budget: a rule may keep about max(CANDIDATE_FLOOR, CANDIDATES_PER_RECORD × records) random
# pairs (shared between the rules), so scoring and memory grow with the records, not their product.
# A rule whose threshold would let more through is tightened; its rate is measured on RATE_SAMPLE
# random pairs. At 10,000 a side nothing is tightened.
CANDIDATE_FLOOR = 4_000_000
CANDIDATES_PER_RECORD = 20
RATE_SAMPLE = 1_000_000


@dataclass(frozen=True, kw_only=True)
class LinkSettings:
    threshold: float | None = None  # None: the default of the scoring
    review_threshold: float | None = None  # None: the default of the scoring (never above threshold)
    scoring: Scoring = "auto"  # fs when the encodings carry group filters, dice otherwise
    blocking: Blocking = "auto"
    candidate_dice: float = 0.70  # record filters this similar make a candidate pair
    candidate_name_dice: float = 0.60  # so do filters of names and date of birth this similar
    target_completeness: float = 0.99  # LSH: share of candidate pairs it should find
    one_per_source: bool = True
    duplicates: frozenset[str] = frozenset()  # sources whose own duplicates are sought (match-key encodings)
    seed: int = 0

    def resolved(self, has_group_filters: bool) -> LinkSettings:
        if self.scoring != "auto":
            return self
        return dataclasses.replace(self, scoring="fs" if has_group_filters else "dice")

    def thresholds(self) -> tuple[float, float]:
        match, review = DEFAULT_THRESHOLDS["fs" if self.scoring == "auto" else self.scoring]
        match = self.threshold if self.threshold is not None else match
        review = self.review_threshold if self.review_threshold is not None else min(review, match)
        for name, value in (("threshold", match), ("review threshold", review)):
            if not 0.0 <= value <= 1.0:
                raise LinkageError(f"{name} must be between 0 and 1, not {value}")
        if review > match:
            raise LinkageError(f"review threshold {review} is above the match threshold {match}")
        return match, review


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


@dataclass(frozen=True, eq=False)
class LinkResult:
    pairs: pl.DataFrame  # source_a, id_a, source_b, id_b, similarity, band
    clusters: pl.DataFrame  # cluster_id, source, record_id (clusters of two or more records)
    sources: dict[str, int]  # records per source
    stats: list[SourcePairStats]
    scores: np.ndarray  # score of every candidate pair
    threshold: float
    review_threshold: float
    scoring: Scoring
    model: MatchModel | None
    seconds: dict[str, float] = field(default_factory=dict)
    candidate_left: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))  # global record index
    candidate_right: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    record_ids: pl.Series = field(default_factory=lambda: pl.Series(dtype=pl.String))  # all sources, in order
    notes: tuple[str, ...] = ()  # defaults that the sources moved, to show the coordinator

    @property
    def comparisons(self) -> int:
        return sum(s.comparisons for s in self.stats)

    def candidate_pairs(self) -> pl.DataFrame:
        """Every scored candidate pair: source_a, id_a, source_b, id_b, score (for blocking evaluation)."""
        names = np.array(list(self.sources))
        source_of = np.repeat(np.arange(len(names)), list(self.sources.values()))
        ids = self.record_ids.to_numpy()
        left, right = self.candidate_left, self.candidate_right
        return pl.DataFrame({
            "source_a": names[source_of[left]], "id_a": ids[left], "source_b": names[source_of[right]], "id_b": ids[right],
            "score": np.round(self.scores.astype(np.float64), 4),
        }, schema={"source_a": pl.String, "id_a": pl.String, "source_b": pl.String, "id_b": pl.String, "score": pl.Float64})  # fmt: skip


def check_compatible(sources: Mapping[str, Encodings]) -> None:
    if len(sources) < 2:
        raise LinkageError("linking needs at least two sources")
    (first_name, first), *rest = sources.items()
    for name, enc in rest:
        for what, mine, theirs in (
            ("project", enc.project, first.project),
            ("key epoch", enc.key_epoch, first.key_epoch),
            ("schema fingerprint", enc.schema_fingerprint, first.schema_fingerprint),
            ("filter length", enc.bits, first.bits),
            ("field groups", enc.group_names, first.group_names),
        ):
            if mine != theirs:
                raise EncodingsError(f"{name}: {what} {mine} differs from {first_name}'s {theirs}; encode both with one schema")
    for name, enc in sources.items():
        if len(enc) == 0:
            raise EncodingsError(f"{name}: holds no records")


def link(
    sources: Mapping[str, Encodings], settings: LinkSettings = LinkSettings(), *, progress: Callable[[str], None] | None = None
) -> LinkResult:
    """Link every pair of sources and cluster the result."""
    check_compatible(sources)
    names = list(sources)
    first = sources[names[0]]
    settings = settings.resolved(first.group_filters is not None)
    notes: list[str] = []
    if settings.scoring == "dice" and settings.threshold is None:
        settings, note = _scaled_dice_threshold(sources, settings)
        notes += [note] if note else []
    match_threshold, review_threshold = settings.thresholds()
    say = progress or (lambda _: None)
    scoring: Scoring = settings.scoring
    if scoring == "fs" and first.group_filters is None:
        raise LinkageError("scoring 'fs' needs group filters: encode with output.group_filters = true, or use --scoring dice")
    rng = np.random.default_rng(settings.seed)
    offsets = np.cumsum([0] + [len(sources[n]) for n in names])
    started = time.perf_counter()

    # 1. candidates per pair of sources
    found: list[tuple[int, int, np.ndarray, np.ndarray]] = []
    stats: list[SourcePairStats] = []
    for x, y in itertools.combinations(range(len(names)), 2):
        a, b = sources[names[x]], sources[names[y]]
        say(f"comparing {names[x]} ({len(a):,}) with {names[y]} ({len(b):,})")
        t0 = time.perf_counter()
        i, j, pair_stats = _candidates(names[x], a, names[y], b, settings, rng, say)
        found.append((x, y, i, j))
        stats.append(SourcePairStats(**{**pair_stats.__dict__, "seconds": time.perf_counter() - t0}))
    compared = time.perf_counter()

    # 2. scores
    model = None
    if scoring == "fs":
        levels = [
            agreement_levels(group_dice_of_pairs(sources[names[x]].group_filters, sources[names[y]].group_filters, i, j))
            for x, y, i, j in found
        ]
        all_levels = np.concatenate(levels) if levels else np.zeros((0, len(first.group_names)), dtype=np.int8)
        random_levels = np.concatenate([_random_pair_levels(sources[names[x]], sources[names[y]], rng) for x, y, _, _ in found])
        sample = all_levels if len(all_levels) <= EM_SAMPLE else all_levels[rng.choice(len(all_levels), EM_SAMPLE, replace=False)]
        population = sum(len(sources[names[x]]) * len(sources[names[y]]) for x, y, _, _ in found)
        model = fit_model(first.group_names, sample, random_levels, population=population, scored=len(all_levels))
        scores = [model.probabilities(lv).astype(np.float32) for lv in levels]
    else:
        scores = [dice_of_pairs(sources[names[x]].filters, sources[names[y]].filters, i, j) for x, y, i, j in found]
    scored = time.perf_counter()

    # 3. clusters over all sources, from the pairs at or above the match threshold
    left = np.concatenate([i + offsets[x] for x, y, i, j in found])
    right = np.concatenate([j + offsets[y] for x, y, i, j in found])
    score = np.concatenate(scores) if scores else np.zeros(0, dtype=np.float32)
    source_of = np.repeat(np.arange(len(names)), np.diff(offsets))
    strong = score >= match_threshold
    labels, _ = greedy_clusters(left[strong], right[strong], score[strong], source_of, one_per_source=settings.one_per_source)

    # 4. bands
    record_ids = [sources[n].record_ids for n in names]
    pairs = _banded_pairs(sources, names, offsets, labels, left, right, score, review_threshold, model, scoring)
    clusters = _cluster_table(names, record_ids, offsets, labels)
    solved = time.perf_counter()

    counts = pairs.group_by("source_a", "source_b", "band").len()
    stats = [
        SourcePairStats(**{
            **s.__dict__,
            "matches": _count(counts, s.source_a, s.source_b, "match"),
            "possible": _count(counts, s.source_a, s.source_b, "possible"),
        })
        for s in stats
    ]  # fmt: skip
    return LinkResult(
        pairs=pairs,
        clusters=clusters,
        sources={n: len(sources[n]) for n in names},
        stats=stats,
        scores=score,
        threshold=match_threshold,
        review_threshold=review_threshold,
        scoring=scoring,
        model=model,
        seconds={"compare": compared - started, "score": scored - compared, "solve": solved - scored},
        candidate_left=left,
        candidate_right=right,
        record_ids=pl.concat(record_ids),
        notes=tuple(notes),
    )


def _count(counts: pl.DataFrame, a: str, b: str, band: str) -> int:
    hit = counts.filter(
        (((pl.col("source_a") == a) & (pl.col("source_b") == b)) | ((pl.col("source_a") == b) & (pl.col("source_b") == a)))
        & (pl.col("band") == band)
    )
    return int(hit.get_column("len").sum())


def _rules(a: Encodings, b: Encodings, settings: LinkSettings) -> list[tuple[str, np.ndarray, np.ndarray, float]]:
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
        rules.append((label, _union(a.group_filters, groups), _union(b.group_filters, groups), settings.candidate_name_dice))
    return rules


def _union(group_filters: np.ndarray, groups: list[int]) -> np.ndarray:
    """The OR of some group filters: a filter of those fields alone."""
    return np.ascontiguousarray(np.bitwise_or.reduce(group_filters[:, groups], axis=1))


def _candidates(
    name_a: str,
    a: Encodings,
    name_b: str,
    b: Encodings,
    settings: LinkSettings,
    rng: np.random.Generator,
    say: Callable[[str], None] = lambda _: None,
) -> tuple[np.ndarray, np.ndarray, SourcePairStats]:
    """Candidate pairs by every rule. A rule that would let through more unrelated pairs than the
    budget is tightened; in ``auto``, so is one that all pairs would take hours over and LSH cannot
    serve quickly at its threshold. Each tightening is noted for the summary."""
    keys, comparisons, completeness, modes, notes = [], 0, [], set(), []
    rules = _rules(a, b, settings)
    budget = max(CANDIDATE_FLOOR, CANDIDATES_PER_RECORD * (len(a) + len(b))) / len(rules)
    for rule, fa, fb, asked in rules:
        threshold = _budgeted_threshold(fa, fb, asked, budget)
        if threshold > asked:
            notes.append(
                f"{rule} rule tightened from Dice >= {asked:g} to {threshold:g}: at {asked:g} about"
                f" {_random_rate(fa, fb, asked) * len(a) * len(b):,.0f} unrelated pairs would be candidates"
            )
        try:
            plan = plan_blocking(fa, fb, threshold, settings.blocking, target_completeness=settings.target_completeness)
        except ValueError as exc:
            raise LinkageError(f"{name_a} ~ {name_b}: {rule} rule at Dice {threshold:g}: {exc}") from None
        if plan.tightened:
            notes.append(
                f"{rule} rule tightened from Dice >= {threshold:g} to {plan.threshold:g} so that LSH stays quick; --blocking none compares all pairs"
            )
        modes.add(plan.mode)
        if plan.mode == "none":
            i, j, _ = dice_pairs(fa, fb, plan.threshold)
            comparisons += len(a) * len(b)
        else:
            reporter = _BandReporter(say, rule)
            i, j, _ = blocked_dice_pairs(
                fa, fb, plan.threshold, target_completeness=settings.target_completeness, rng=rng, progress=reporter
            )
            comparisons += reporter.compared
            completeness.append(_sampled_completeness(fa, fb, plan.threshold, i, j, rng))
        keys.append(i * len(b) + j)
    key = np.unique(np.concatenate(keys))
    stats = SourcePairStats(
        source_a=name_a, source_b=name_b, blocking="lsh" if "lsh" in modes else "none", comparisons=comparisons, candidates=len(key),
        seconds=0.0, pairs_completeness=min(completeness) if completeness else None, notes=tuple(notes),
    )  # fmt: skip
    return key // len(b), key % len(b), stats


def _random_rate(fa: np.ndarray, fb: np.ndarray, threshold: float) -> float:
    return float(np.mean(_random_dice(fa, fb) >= threshold))


def _random_dice(fa: np.ndarray, fb: np.ndarray) -> np.ndarray:
    """Dice of RATE_SAMPLE random pairs (seeded by the rule's data, so a rerun picks the same)."""
    k = min(RATE_SAMPLE, len(fa) * len(fb))
    seeded = np.random.default_rng([len(fa), len(fb), int(fa[0, 0] % (1 << 62)), int(fb[0, 0] % (1 << 62))])
    return dice_of_pairs(fa, fb, seeded.integers(0, len(fa), k), seeded.integers(0, len(fb), k))


def _scaled_dice_threshold(sources: Mapping[str, Encodings], settings: LinkSettings) -> tuple[LinkSettings, str | None]:
    """``settings`` with dice's match threshold raised where unrelated pairs would swamp it (see
    ``UNRELATED_PER_RECORD``), and a note saying so; the review threshold follows unless set."""
    asked = settings.thresholds()[0]
    grid = np.round(np.arange(asked, 0.995, 0.01), 2)
    within = {name: np.sort(_within_dice(enc.filters)) for name, enc in sources.items()}
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


def _within_dice(filters: np.ndarray) -> np.ndarray:
    """Dice of up to RATE_SAMPLE random pairs of different records of one source (seeded by its data)."""
    n = len(filters)
    if n < 2:
        return np.zeros(0, dtype=np.float32)
    seeded = np.random.default_rng([n, int(filters[0, 0] % (1 << 62))])
    k = min(RATE_SAMPLE, n * (n - 1))
    i = seeded.integers(0, n, k)
    j = (i + seeded.integers(1, n, k)) % n  # never i itself
    return dice_of_pairs(filters, filters, i, j)


def _share_at_least(sorted_dice: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    if len(sorted_dice) == 0:
        return np.zeros(len(thresholds))
    return 1.0 - np.searchsorted(sorted_dice, thresholds, side="left") / len(sorted_dice)


def _budgeted_threshold(fa: np.ndarray, fb: np.ndarray, threshold: float, budget: float) -> float:
    """The loosest threshold (``threshold`` or above, in steps of 0.01) at which unrelated pairs
    would make at most ``budget`` candidates, judged on random pairs."""
    pairs = len(fa) * len(fb)
    if pairs <= budget:
        return threshold
    dice = np.sort(_random_dice(fa, fb))
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
    fa: np.ndarray, fb: np.ndarray, threshold: float, i: np.ndarray, j: np.ndarray, rng: np.random.Generator
) -> float:
    """Share of the pairs an exact comparison finds, for a sample of rows, that blocking found too."""
    rows = np.sort(rng.choice(len(fa), min(COMPLETENESS_SAMPLE_ROWS, len(fa)), replace=False))
    ei, ej, _ = dice_pairs(np.ascontiguousarray(fa[rows]), fb, threshold)
    if len(ei) == 0:
        return 1.0
    exact = rows[ei] * len(fb) + ej
    in_sample = np.isin(i, rows)
    return float(np.isin(exact, i[in_sample] * len(fb) + j[in_sample]).mean())


def _random_pair_levels(a: Encodings, b: Encodings, rng: np.random.Generator) -> np.ndarray:
    k = min(RANDOM_PAIRS_PER_SOURCE_PAIR, len(a) * len(b))
    i = rng.integers(0, len(a), k)
    j = rng.integers(0, len(b), k)
    return agreement_levels(group_dice_of_pairs(a.group_filters, b.group_filters, i, j))


def _banded_pairs(sources, names, offsets, labels, left, right, score, review_threshold, model, scoring) -> pl.DataFrame:
    """Every cross-source pair within a cluster (``match``), and scored pairs at or above the review
    threshold that ended in different clusters (``possible``)."""
    source_of = np.repeat(np.arange(len(names)), np.diff(offsets))
    local = np.arange(offsets[-1]) - offsets[source_of]
    within_left, within_right = _pairs_within_clusters(labels)
    within_score = _scores_of(sources, names, source_of, local, within_left, within_right, model, scoring)
    possible = (score >= review_threshold) & (labels[left] != labels[right])
    all_left = np.concatenate([within_left, left[possible]])
    all_right = np.concatenate([within_right, right[possible]])
    bands = np.array(["match"] * len(within_left) + ["possible"] * int(possible.sum()))
    similarity = np.concatenate([within_score, score[possible]])
    ids = pl.concat([sources[n].record_ids for n in names]).to_numpy()
    names_arr = np.array(names)
    frame = pl.DataFrame({
        "source_a": names_arr[source_of[all_left]], "id_a": ids[all_left],
        "source_b": names_arr[source_of[all_right]], "id_b": ids[all_right],
        "similarity": np.round(similarity.astype(np.float64), 4), "band": bands,
    }, schema={"source_a": pl.String, "id_a": pl.String, "source_b": pl.String, "id_b": pl.String, "similarity": pl.Float64, "band": pl.String})  # fmt: skip
    return frame.sort(
        ["band", "similarity", "source_a", "id_a", "source_b", "id_b"], descending=[False, True, False, False, False, False]
    )


def _pairs_within_clusters(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every pair (p < q) of records sharing a cluster label; records of a cluster sit together once
    sorted by label, so a member d places ahead is a partner exactly when its label is the same."""
    order = np.argsort(labels, kind="stable")
    sorted_labels = labels[order]
    largest = int(np.bincount(labels).max()) if len(labels) else 0
    left, right = [], []
    for d in range(1, largest):
        same = sorted_labels[:-d] == sorted_labels[d:]
        left.append(order[:-d][same])
        right.append(order[d:][same])
    if not left:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    left_all, right_all = np.concatenate(left), np.concatenate(right)
    return np.minimum(left_all, right_all), np.maximum(left_all, right_all)


def _scores_of(sources, names, source_of, local, left, right, model, scoring) -> np.ndarray:
    """Scores of arbitrary cross-source pairs (global indices), in the given order."""
    out = np.zeros(len(left), dtype=np.float32)
    for x, y in itertools.combinations(range(len(names)), 2):
        sel = (source_of[left] == x) & (source_of[right] == y)
        if not sel.any():
            continue
        a, b = sources[names[x]], sources[names[y]]
        i, j = local[left[sel]], local[right[sel]]
        if scoring == "fs":
            out[sel] = model.probabilities(agreement_levels(group_dice_of_pairs(a.group_filters, b.group_filters, i, j)))
        else:
            out[sel] = dice_of_pairs(a.filters, b.filters, i, j)
    return out


def _cluster_table(names, record_ids, offsets, labels) -> pl.DataFrame:
    sizes = np.bincount(labels)
    keep = sizes[labels] > 1
    # Number clusters 1.. in order of their first record.
    firsts = np.unique(labels[keep], return_index=True)
    order = np.argsort(firsts[1])
    renumber = np.zeros(len(sizes), dtype=np.int64)
    renumber[firsts[0][order]] = np.arange(1, len(order) + 1)
    source_of = np.repeat(np.arange(len(names)), np.diff(offsets))
    ids = pl.concat(record_ids).to_numpy()
    frame = pl.DataFrame({
        "cluster_id": renumber[labels[keep]], "source": np.array(names)[source_of[keep]], "record_id": ids[keep],
    }, schema={"cluster_id": pl.Int64, "source": pl.String, "record_id": pl.String})  # fmt: skip
    return frame.sort("cluster_id", "source")
