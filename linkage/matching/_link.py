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
from typing import Any, Literal, cast

import numpy as np
import polars as pl

from linkage.bloom._encodings import Encodings
from linkage.errors import EncodingsError, LinkageError
from linkage.matching._candidates import SourcePairStats, source_pair_candidates
from linkage.matching._engine import DEFAULT_ENGINE, Engine, engine_named
from linkage.matching._scoring import MatchModel, agreement_levels, fit_model
from linkage.matching._solve import greedy_clusters
from linkage.matching._thresholds import DEFAULT_THRESHOLDS, scaled_dice_threshold

Scoring = Literal["auto", "fs", "dice"]
Blocking = Literal["auto", "none", "lsh"]

RANDOM_PAIRS_PER_SOURCE_PAIR = 100_000
EM_SAMPLE = 500_000


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
    engine: str | Engine = DEFAULT_ENGINE  # what compares filters (``linkage.matching._engine``)

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
    threshold_raised_from: float | None = None  # dice: the default match threshold, where the sources raised it

    @property
    def comparisons(self) -> int:
        return sum(s.comparisons for s in self.stats)

    def candidate_pairs(self) -> pl.DataFrame:
        """Every scored candidate pair: source_a, id_a, source_b, id_b, score (for blocking evaluation)."""
        return candidate_table(self.sources, self.record_ids, self.candidate_left, self.candidate_right, self.scores)


def candidate_table(
    sources: Mapping[str, int], record_ids: pl.Series, left: np.ndarray, right: np.ndarray, scores: np.ndarray
) -> pl.DataFrame:
    """Candidate pairs (global record indices, sources in order) as source_a, id_a, source_b, id_b, score."""
    names = np.array(list(sources))
    source_of = np.repeat(np.arange(len(names)), list(sources.values()))
    ids = record_ids.to_numpy()
    return pl.DataFrame({
        "source_a": names[source_of[left]], "id_a": ids[left], "source_b": names[source_of[right]], "id_b": ids[right],
        "score": np.round(scores.astype(np.float64), 4),
    }, schema={"source_a": pl.String, "id_a": pl.String, "source_b": pl.String, "id_b": pl.String, "score": pl.Float64})  # fmt: skip


def check_alike(
    sources: Mapping[str, Any],
    facts: Callable[[Any], tuple[tuple[str, object], ...]],
    advice: str,
    also: Callable[[str, Any, str, Any], None] = lambda *_: None,
    *,
    at_least: int = 2,
) -> None:
    """One line naming the source at fault where sources cannot be linked together: fewer than ``at_least``,
    one whose ``facts`` (what, value) differ from the first's (``advice`` says what to do), one that
    ``also`` refuses (name, encodings, first name, first encodings), or one that holds no records."""
    if len(sources) < at_least:
        raise LinkageError(f"linking needs at least {'two sources' if at_least == 2 else 'one source'}")
    (first_name, first), *rest = sources.items()
    expected = dict(facts(first))
    for name, enc in rest:
        for what, mine in facts(enc):
            if mine != expected[what]:
                raise EncodingsError(f"{name}: {what} {mine} differs from {first_name}'s {expected[what]}; {advice}")
        also(name, enc, first_name, first)
    for name, enc in sources.items():
        if len(enc) == 0:
            raise EncodingsError(f"{name}: holds no records")


def check_compatible(sources: Mapping[str, Encodings]) -> None:
    def facts(enc: Encodings) -> tuple[tuple[str, object], ...]:
        return (
            ("project", enc.project), ("key epoch", enc.key_epoch), ("schema fingerprint", enc.schema_fingerprint),
            ("filter length", enc.bits), ("field groups", enc.group_names),
        )  # fmt: skip

    check_alike(sources, facts, "encode both with one schema")


def link(
    sources: Mapping[str, Encodings], settings: LinkSettings = LinkSettings(), *, progress: Callable[[str], None] | None = None
) -> LinkResult:
    """Link every pair of sources and cluster the result."""
    check_compatible(sources)
    names = list(sources)
    first = sources[names[0]]
    settings = settings.resolved(first.group_filters is not None)
    engine = engine_named(settings.engine)
    notes: list[str] = []
    raised_from = None
    if settings.scoring == "dice" and settings.threshold is None:
        asked = settings.thresholds()[0]
        settings, note = scaled_dice_threshold(sources, settings, engine)
        if note:
            notes.append(note)
            raised_from = asked
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
        i, j, pair_stats = source_pair_candidates(names[x], a, names[y], b, settings, rng, engine, say)
        found.append((x, y, i, j))
        stats.append(SourcePairStats(**{**pair_stats.__dict__, "seconds": time.perf_counter() - t0}))
    compared = time.perf_counter()

    # 2. scores
    model = None
    if scoring == "fs":
        levels = [
            agreement_levels(engine.group_dice_of_pairs(sources[names[x]].groups(), sources[names[y]].groups(), i, j))
            for x, y, i, j in found
        ]
        all_levels = np.concatenate(levels) if levels else np.zeros((0, len(first.group_names)), dtype=np.int8)
        random_levels = np.concatenate(
            [_random_pair_levels(sources[names[x]], sources[names[y]], rng, engine) for x, y, _, _ in found]
        )
        sample = all_levels if len(all_levels) <= EM_SAMPLE else all_levels[rng.choice(len(all_levels), EM_SAMPLE, replace=False)]
        population = sum(len(sources[names[x]]) * len(sources[names[y]]) for x, y, _, _ in found)
        model = fit_model(first.group_names, sample, random_levels, population=population, scored=len(all_levels))
        scores = [model.probabilities(lv).astype(np.float32) for lv in levels]
    else:
        scores = [engine.dice_of_pairs(sources[names[x]].filters, sources[names[y]].filters, i, j) for x, y, i, j in found]
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
    pairs = _banded_pairs(sources, names, offsets, labels, left, right, score, review_threshold, model, scoring, engine)
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
        threshold_raised_from=raised_from,
    )


def _count(counts: pl.DataFrame, a: str, b: str, band: str) -> int:
    hit = counts.filter(
        (((pl.col("source_a") == a) & (pl.col("source_b") == b)) | ((pl.col("source_a") == b) & (pl.col("source_b") == a)))
        & (pl.col("band") == band)
    )
    return int(hit.get_column("len").sum())


def _random_pair_levels(a: Encodings, b: Encodings, rng: np.random.Generator, engine: Engine) -> np.ndarray:
    k = min(RANDOM_PAIRS_PER_SOURCE_PAIR, len(a) * len(b))
    i = rng.integers(0, len(a), k)
    j = rng.integers(0, len(b), k)
    return agreement_levels(engine.group_dice_of_pairs(a.groups(), b.groups(), i, j))


def _banded_pairs(
    sources: Mapping[str, Encodings],
    names: list[str],
    offsets: np.ndarray,
    labels: np.ndarray,
    left: np.ndarray,
    right: np.ndarray,
    score: np.ndarray,
    review_threshold: float,
    model: MatchModel | None,
    scoring: Scoring,
    engine: Engine,
) -> pl.DataFrame:
    """Every cross-source pair within a cluster (``match``), and scored pairs at or above the review
    threshold that ended in different clusters (``possible``)."""
    source_of = np.repeat(np.arange(len(names)), np.diff(offsets))
    local = np.arange(offsets[-1]) - offsets[source_of]
    within_left, within_right = _pairs_within_clusters(labels)
    within_score = _scores_of(sources, names, source_of, local, within_left, within_right, model, scoring, engine)
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


def _scores_of(
    sources: Mapping[str, Encodings],
    names: list[str],
    source_of: np.ndarray,
    local: np.ndarray,
    left: np.ndarray,
    right: np.ndarray,
    model: MatchModel | None,
    scoring: Scoring,
    engine: Engine,
) -> np.ndarray:
    """Scores of arbitrary cross-source pairs (global indices), in the given order."""
    out = np.zeros(len(left), dtype=np.float32)
    for x, y in itertools.combinations(range(len(names)), 2):
        sel = (source_of[left] == x) & (source_of[right] == y)
        if not sel.any():
            continue
        a, b = sources[names[x]], sources[names[y]]
        i, j = local[left[sel]], local[right[sel]]
        if scoring == "fs":
            out[sel] = cast(MatchModel, model).probabilities(
                agreement_levels(engine.group_dice_of_pairs(a.groups(), b.groups(), i, j))
            )
        else:
            out[sel] = engine.dice_of_pairs(a.filters, b.filters, i, j)
    return out


def _cluster_table(names: list[str], record_ids: list[pl.Series], offsets: np.ndarray, labels: np.ndarray) -> pl.DataFrame:
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
