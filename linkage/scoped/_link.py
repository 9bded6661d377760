"""Linking scoped encodings: token join, comparison inside shared scopes, Fellegi–Sunter, clusters.

    per pair of sources and key: hash join of tokens (pairs that agree on the key) ─▶ per (pair,
    key): comparison levels of every field inside that key's scope (fields the key fixes agree)
    ─▶ per pair: each field's best level over the scopes it shares ─▶ EM over the candidates'
    level patterns (no labels): m, u, prior ─▶ match probability ─▶ greedy clusters with at most
    one record per source ─▶ bands ``match`` and ``possible``

A source whose duplicates are sought (``duplicates``; a lone source always) is joined with itself
too: pairs of its own records that share a token (each pair once, never a record with itself) are
candidates, and several of its records may sit in one cluster. Its records share tokens only where
the encoding's frequency cap let them through (``token_cap`` of 2 or more).

Only pairs that share a token are ever compared: the coordinator has no similarity between two
records that agree on no key, so there is no all-pairs graph to attack and no candidate budget.
"""

from __future__ import annotations

import hmac
import itertools
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field

import numba
import numpy as np
import polars as pl

from linkage.errors import EncodingsError, LinkageError
from linkage.matching._engine import DEFAULT_ENGINE, Engine, ScopeSlots, engine_named
from linkage.matching._link import _cluster_table, _pairs_within_clusters, candidate_table, check_alike
from linkage.matching._scoring import N_LEVELS, MatchModel, level_frequencies, monotone
from linkage.matching._solve import greedy_clusters
from linkage.scoped._encodings import ScopedEncodings

# Match probabilities. The match threshold is below fs's 0.5: m of the identity columns is learned
# from the matches that share three keys or more, which agree more than matches as a whole, so a
# match with errors scores lower than its odds (``_identity_m``). Measured (benchmarks/quality.py):
# generated agencies of 5,000 and 30,000 people and FEBRL4 at 0.2 and 0.5 (README). Possible matches
# from 0.05: at 0.1 the demo's 1,500 people now and then left an agency none to review.
DEFAULT_MATCH_THRESHOLD, DEFAULT_REVIEW_THRESHOLD = 0.2, 0.05
EM_ITERATIONS = 200
# EM starts from the candidates that agree on given name, surname and date of birth (levels at or
# above these; a role the schema lacks is not asked for).
SEED_LEVELS = {"given": 4, "surname": 4, "dob": 5}
MIN_UNRELATED = 20  # pairs within sources below which u is fitted by EM instead
# m of the columns that identify a person comes from the candidates sharing this many keys or more
# (``_identity_m``), where there are at least MIN_IDENTITY_PAIRS of them.
IDENTITY_ROLES = ("given", "surname", "dob", "sex")
IDENTITY_KEYS = 3
MIN_IDENTITY_PAIRS = 20
# Two records compared (they share a scope) whose match probability is below this are never put in
# one cluster through a third record: a chain a–b, b–c does not join a with c when a and c differ.
# Not where duplicates are sought (``link_scoped``).
VETO_SCORE = 0.01


@dataclass(frozen=True, kw_only=True)
class ScopedLinkSettings:
    threshold: float = DEFAULT_MATCH_THRESHOLD  # match probability at or above which pairs may cluster
    review_threshold: float = DEFAULT_REVIEW_THRESHOLD  # possible matches for a person to review
    one_per_source: bool = True
    engine: str | Engine = DEFAULT_ENGINE  # what joins tokens and compares evidence (``linkage.matching``)
    duplicates: frozenset[str] = frozenset()  # sources whose own records are compared and may share a cluster

    def __post_init__(self) -> None:
        for name, value in (("threshold", self.threshold), ("review threshold", self.review_threshold)):
            if not 0.0 <= value <= 1.0:
                raise LinkageError(f"{name} must be between 0 and 1, not {value}")
        if self.review_threshold > self.threshold:
            raise LinkageError(f"review threshold {self.review_threshold} is above the match threshold {self.threshold}")


@dataclass(frozen=True, eq=False)
class ScopedLinkResult:
    pairs: pl.DataFrame  # source_a, id_a, source_b, id_b, similarity (null: same cluster, never compared), band, agreement
    clusters: pl.DataFrame  # cluster_id, source, record_id (clusters of two or more records)
    sources: dict[str, int]  # records per source
    candidates: int  # pairs that share at least one token
    key_pairs: dict[str, int]  # per key: pairs that share its token (a pair may count under several)
    unrelated: int  # pairs within a source that share a token: u is learned from them
    model: MatchModel
    threshold: float
    review_threshold: float
    scores: np.ndarray  # match probability of every candidate
    candidate_left: np.ndarray  # global record index (sources in order)
    candidate_right: np.ndarray
    record_ids: pl.Series  # all sources, in order
    seconds: dict[str, float] = field(default_factory=dict)
    within: dict[str, int] = field(default_factory=dict)  # per source whose duplicates were sought: its own candidate pairs

    def candidate_pairs(self) -> pl.DataFrame:
        """Every candidate pair: source_a, id_a, source_b, id_b, score."""
        return candidate_table(self.sources, self.record_ids, self.candidate_left, self.candidate_right, self.scores)


def check_scoped_compatible(sources: Mapping[str, ScopedEncodings]) -> None:
    """One line naming the file at fault when two sources cannot be linked."""

    def facts(enc: ScopedEncodings) -> tuple[tuple[str, object], ...]:
        return (
            ("project", enc.project), ("key epoch", enc.key_epoch), ("match-key set", enc.key_set_fingerprint),
            ("schema fingerprint", enc.schema_fingerprint),
        )  # fmt: skip

    def same_secret_and_layout(name: str, enc: ScopedEncodings, first_name: str, first: ScopedEncodings) -> None:
        if not hmac.compare_digest(enc.secret_check, first.secret_check):
            raise EncodingsError(
                f"{name} was encoded under a different secret than {first_name}; encode both with the project's secret"
            )
        if enc.layouts != first.layouts or enc.fields != first.fields:
            raise EncodingsError(f"{name}: evidence layout differs from {first_name}'s; encode both with one version of linkage")

    check_alike(sources, facts, "encode both with one schema and key set", same_secret_and_layout, at_least=1)


@numba.njit(cache=True)
def _best_levels(
    pair_id: np.ndarray, levels: np.ndarray, keys: np.ndarray, n_keys: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows sorted by pair id → one row per pair: each field's best level over its scopes, and a
    bit per key the pair shares."""
    n = pair_id.shape[0]
    starts = np.zeros(n + 1, dtype=np.int64)
    count = 0
    for r in range(n):
        if r == 0 or pair_id[r] != pair_id[r - 1]:
            starts[count] = r
            count += 1
    starts[count] = n
    out = np.full((count, levels.shape[1]), -1, dtype=np.int8)
    shared = np.zeros(count, dtype=np.int64)
    ids = np.empty(count, dtype=np.int64)
    for p in range(count):
        ids[p] = pair_id[starts[p]]
        for r in range(starts[p], starts[p + 1]):
            shared[p] |= np.int64(1) << keys[r]
            for f in range(levels.shape[1]):
                if levels[r, f] > out[p, f]:
                    out[p, f] = levels[r, f]
    return ids, out, shared


def own_pairs(
    a: ScopedEncodings, engine: str | Engine = DEFAULT_ENGINE
) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, int]]:
    """Candidates within one source: pairs (i < j) of its records sharing a token, each once."""
    return compared_pairs(a, a, engine, within=True)


def compared_pairs(
    a: ScopedEncodings, b: ScopedEncodings, engine: str | Engine = DEFAULT_ENGINE, *, within: bool = False
) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, int]]:
    """Candidates of two sources: (i, j), their (pairs, fields) best levels, and pairs per key.
    ``within``: ``b`` is ``a``, and only pairs i < j count (each pair once, no record with itself)."""
    engine = engine_named(engine)
    pair_ids, level_rows, key_rows, per_key = [], [], [], {}
    n_fields = len(a.fields)
    for k, layout in enumerate(a.layouts):
        i, j = engine.token_pairs(a.tokens[:, k], a.has_token[:, k], b.tokens[:, k], b.has_token[:, k])
        if within:
            i, j = i[i < j], j[i < j]
        per_key[layout.key] = len(i)
        if len(i) == 0:
            continue
        index = {name: f for f, name in enumerate(a.fields)}
        slots = layout.slots
        scope = ScopeSlots(
            field=np.array([index[s.field] for s in slots], dtype=np.int64),
            comparison=np.array([s.comparison for s in slots], dtype=np.int64),
            offset=np.array([s.offset for s in slots], dtype=np.int64),
            width=np.array([s.width for s in slots], dtype=np.int64),
            lane_word=layout.lane_word,
            fixed=np.array([index[f] for f in layout.fixed], dtype=np.int64),
            n_fields=n_fields,
        )
        levels = engine.scope_levels(a.evidence[k], b.evidence[k], i, j, scope)
        pair_ids.append(i * len(b) + j)
        level_rows.append(levels)
        key_rows.append(np.full(len(i), k, dtype=np.int64))
    return (*pair_levels(pair_ids, level_rows, key_rows, n_keys=len(a.layouts), n_fields=n_fields, n_b=len(b)), per_key)


def pair_levels(
    pair_ids: list[np.ndarray], level_rows: list[np.ndarray], key_rows: list[np.ndarray], *, n_keys: int, n_fields: int, n_b: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per (pair, key) comparisons (pair id ``i * n_b + j``) → (i, j, levels) one row per pair: each
    field's best level over the scopes it shares, then how many keys it shares."""
    if not pair_ids:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64), np.zeros((0, n_fields + 1), dtype=np.int8)
    pair_id = np.concatenate(pair_ids)
    order = np.argsort(pair_id, kind="stable")
    ids, best, shared = _best_levels(pair_id[order], np.concatenate(level_rows)[order], np.concatenate(key_rows)[order], n_keys)
    # How many keys a pair shares is evidence of its own: one coincidence rarely repeats.
    n_shared = np.zeros(len(shared), dtype=np.int64)
    for k in range(n_keys):
        n_shared += (shared >> k) & 1
    best = np.concatenate([best, np.minimum(n_shared, N_LEVELS - 1).astype(np.int8)[:, None]], axis=1)
    return ids // n_b, ids % n_b, best


# Kinds scored together: a move changes street, town and postcode at once, and Fellegi–Sunter
# takes its fields for independent evidence (EM then splits "same address" from "moved" instead
# of matches from non-matches).
PLACE_KINDS = frozenset({"address", "city", "state", "postcode"})


def comparison_columns(fields: tuple[str, ...], kinds: tuple[str, ...]) -> tuple[tuple[str, ...], np.ndarray]:
    """The model's columns (each non-place field, then one ``place``) and each field's column."""
    columns: list[str] = []
    column_of = np.empty(len(fields), dtype=np.int64)
    for f, (name, kind) in enumerate(zip(fields, kinds, strict=True)):
        if kind in PLACE_KINDS:
            continue
        column_of[f] = len(columns)
        columns.append(name)
    if any(kind in PLACE_KINDS for kind in kinds):
        column_of[[f for f, kind in enumerate(kinds) if kind in PLACE_KINDS]] = len(columns)
        columns.append("place")
    return tuple(columns), column_of


def grouped_levels(levels: np.ndarray, column_of: np.ndarray, n_columns: int) -> np.ndarray:
    """Per column: a lone field's level, or the rounded mean of a group's present levels."""
    out = np.full((levels.shape[0], n_columns), -1, dtype=np.int8)
    for c in range(n_columns):
        members = np.flatnonzero(column_of == c)
        block = levels[:, members].astype(np.float64)
        present = block >= 0
        count = present.sum(axis=1)
        total = np.where(present, block, 0.0).sum(axis=1)
        out[:, c] = np.where(count > 0, np.floor(total / np.maximum(count, 1) + 0.5), -1).astype(np.int8)
    return out


def _seed_patterns(patterns: np.ndarray, fields: tuple[str, ...], roles: dict[str, str]) -> np.ndarray:
    """Patterns that agree on names and date of birth (``SEED_LEVELS``): where EM starts matches."""
    seed = np.ones(len(patterns), dtype=bool)
    asked = False
    for role, level in SEED_LEVELS.items():
        if role in roles and roles[role] in fields:
            seed &= patterns[:, fields.index(roles[role])] >= level
            asked = True
    if not asked:
        present = patterns >= 0
        seed = np.all((patterns >= 4) | ~present, axis=1) & (present.sum(axis=1) >= 2)
    return seed


def fit_scoped_model(
    fields: tuple[str, ...],
    roles: dict[str, str],
    levels: np.ndarray,
    unrelated: np.ndarray | None = None,
    unrelated_counts: np.ndarray | None = None,
    *,
    with_duplicates: np.ndarray | None = None,
    iterations: int = EM_ITERATIONS,
    tolerance: float = 1e-7,
) -> MatchModel:
    """Fellegi–Sunter over the candidates' levels, learned by EM without labels.

    Only candidates can be compared: the prior is the share of matches among them, and the score
    the probability that a *candidate* is a match. u comes from ``unrelated``: pairs of one source
    that share a token (nobody is in one source twice, so they are namesakes and relatives, the
    non-matches a key lets through); EM fits m and the prior. Without them (or with too few) EM
    fits u too, which fails where nearly every candidate is a match (it then splits the matches).
    EM starts from the candidates that agree on names and date of birth (``SEED_LEVELS``); weights
    are kept non-decreasing in the level; m of names, date of birth and sex is then taken from the
    candidates that share several keys (``_identity_m``). ``with_duplicates`` marks the rows of ``unrelated`` from
    sources said to hold duplicate case files: those are a mixture, which EM separates."""
    weights = None if unrelated is None else np.ones(len(unrelated)) if unrelated_counts is None else unrelated_counts
    fixed_u = unrelated is not None and weights is not None and weights.sum() >= MIN_UNRELATED
    patterns, counts = np.unique(levels, axis=0, return_counts=True)
    counts = counts.astype(np.float64)
    seed = _seed_patterns(patterns, fields, roles)
    if 0 < counts[seed].sum() < counts.sum():
        m = level_frequencies(patterns, seed * counts)
        u = level_frequencies(patterns, ~seed * counts)
        prior = float(counts[seed].sum() / counts.sum())
    else:
        m = np.tile(np.linspace(0.02, 1.0, N_LEVELS) ** 3, (len(fields), 1))
        m /= m.sum(axis=1, keepdims=True)
        u = level_frequencies(patterns, counts)
        prior = 0.5
    # The decoys of a source that holds duplicate case files (one person, several records) are not
    # all unrelated: its duplicates agree like matches. u then comes from those decoys less the
    # ones that agree on names and date of birth, and once more (a second fit) less those the first
    # model takes for one person. (Letting EM re-estimate u every step drifts, on small data, to a
    # model that tells nothing apart; taking every source's decoys for mixtures costs precision:
    # relatives and twins then pass for duplicates.)
    mixed = fixed_u and with_duplicates is not None and bool(with_duplicates.any())
    if fixed_u:
        assert unrelated is not None and weights is not None
        own_seed = _seed_patterns(unrelated, fields, roles) & (with_duplicates if mixed else False)
        u = level_frequencies(unrelated, np.where(own_seed, 0.0, weights) if own_seed.any() and not own_seed.all() else weights)
    start = (m, prior)
    done = 0
    for fit in range(2 if mixed else 1):
        if fit == 1:
            assert unrelated is not None and weights is not None and with_duplicates is not None
            share = float(np.clip(weights[own_seed].sum() / max(weights[with_duplicates].sum(), 1.0), 0.01, 0.5))
            own = np.where(with_duplicates, MatchModel(fields, m, u, share, done).probabilities(unrelated), 0.0)
            if (own < 0.5).any():
                u = level_frequencies(unrelated, np.where(own >= 0.5, 0.0, weights))
            m, prior = start
        for done in range(1, iterations + 1):
            posterior = MatchModel(fields, m, u, prior, done).probabilities(patterns)
            new_prior = float(np.clip((posterior * counts).sum() / counts.sum(), 1e-9, 1 - 1e-9))
            m = level_frequencies(patterns, posterior * counts)
            if not fixed_u:
                u = level_frequencies(patterns, (1.0 - posterior) * counts)
            shift, prior = abs(new_prior - prior), new_prior
            if shift < tolerance:
                break
    m, prior, done = _identity_m(fields, roles, patterns, counts, m, u, prior, done, iterations)
    for f in range(len(fields)):
        present = patterns[:, f] >= 0
        level_counts = np.bincount(patterns[present, f], weights=counts[present], minlength=N_LEVELS)
        weight = np.log2(m[f]) - np.log2(u[f])
        m[f] = u[f] * np.exp2(monotone(weight, level_counts + 1.0))
    return MatchModel(fields, m, u, prior, done)


def _identity_m(
    fields: tuple[str, ...],
    roles: dict[str, str],
    patterns: np.ndarray,
    counts: np.ndarray,
    m: np.ndarray,
    u: np.ndarray,
    prior: float,
    done: int,
    iterations: int,
) -> tuple[np.ndarray, float, int]:
    """m of the identity columns (``IDENTITY_ROLES``) from the candidates that share at least
    ``IDENTITY_KEYS`` keys; then EM again over the other columns' m and the prior, those held.

    Why: u comes from the decoys, pairs within one agency at the unrefined key values, which are
    mostly namesakes; the non-matches among candidates across agencies are mostly people who share
    a date of birth and an initial (the refined tokens keep namesakes apart). EM's match class then
    absorbs the pairs u explains worst, and m learns that names that differ are no evidence against
    a match (generated agencies of 30,000 people: weights +0.2 and +0.3 for given name and surname
    that differ; pairs that agree on nothing but a birthday scored 0.89). Pairs sharing three keys
    or more, weighted by the first fit's match probability, are nearly all matches (there, 99%), and
    agree on names and birth dates the way matches do. They agree more than matches found through one key, so probabilities from this model
    understate matches with errors: the default threshold is lower (``DEFAULT_MATCH_THRESHOLD``)."""
    if fields[-1] != "keys shared":
        return m, prior, done
    columns = [fields.index(roles[r]) for r in IDENTITY_ROLES if r in roles and roles[r] in fields]
    multi = patterns[:, -1] >= IDENTITY_KEYS
    if not columns or counts[multi].sum() < MIN_IDENTITY_PAIRS:
        return m, prior, done
    m = m.copy()
    before = MatchModel(fields, m, u, prior, done).probabilities(patterns)
    m[columns] = level_frequencies(patterns, multi * counts * before)[columns]
    others = [c for c in range(len(fields)) if c not in columns]
    first = done + 1
    for done in range(first, first + iterations):
        posterior = MatchModel(fields, m, u, prior, done).probabilities(patterns)
        new_prior = float(np.clip((posterior * counts).sum() / counts.sum(), 1e-9, 1 - 1e-9))
        m[others] = level_frequencies(patterns, posterior * counts)[others]
        shift, prior = abs(new_prior - prior), new_prior
        if shift < 1e-9:
            break
    return m, prior, done


def link_scoped(
    sources: Mapping[str, ScopedEncodings],
    settings: ScopedLinkSettings = ScopedLinkSettings(),
    *,
    progress: Callable[[str], None] | None = None,
) -> ScopedLinkResult:
    """Link every pair of sources on their shared match keys, and each source in
    ``settings.duplicates`` with itself, and cluster the result."""
    check_scoped_compatible(sources)
    say = progress or (lambda _: None)
    names = list(sources)
    unknown = sorted(settings.duplicates - set(names))
    if unknown:
        raise LinkageError(f"duplicates sought in {unknown[0]!r}, which is not among the sources ({', '.join(names)})")
    if len(names) == 1 and names[0] not in settings.duplicates:
        raise LinkageError("linking needs at least two sources, or one whose duplicates are sought")
    first = sources[names[0]]
    offsets = np.cumsum([0] + [len(sources[n]) for n in names])
    engine = engine_named(settings.engine)
    started = time.perf_counter()
    found, per_key = [], dict.fromkeys(first.keys, 0)
    for x, y in itertools.combinations(range(len(names)), 2):
        say(f"joining {names[x]} ({len(sources[names[x]]):,}) with {names[y]} ({len(sources[names[y]]):,})")
        i, j, levels, counts = compared_pairs(sources[names[x]], sources[names[y]], engine)
        found.append((i + offsets[x], j + offsets[y], levels))
        for key, c in counts.items():
            per_key[key] += c
    within = {}
    for x, name in enumerate(names):
        if name not in settings.duplicates:
            continue
        say(f"joining {name} ({len(sources[name]):,}) with itself: its duplicates")
        i, j, levels, counts = own_pairs(sources[name], engine)
        found.append((i + offsets[x], j + offsets[x], levels))
        within[name] = len(i)
        for key, c in counts.items():
            per_key[key] += c
    left = np.concatenate([f[0] for f in found])
    right = np.concatenate([f[1] for f in found])
    levels = np.concatenate([f[2] for f in found])
    compared = time.perf_counter()
    if len(levels) == 0:
        if len(names) == 1:
            raise LinkageError(
                f"{names[0]}: no two of its records share a match-key token: nothing to link (the frequency cap drops"
                " every token records of one source share; encode with `--token-cap 20` to find duplicates)"
            )
        raise LinkageError("no two records share a match-key token: nothing to link (are these the right sources?)")
    columns, column_of = comparison_columns(first.fields, first.kinds)
    # u comes from the decoys: pairs of one agency's own records that shared a token before the
    # cap, compared and counted at the node (unrelated but for the agency's duplicate case files).
    unrelated = np.concatenate([sources[n].decoy_patterns.reshape(-1, levels.shape[1]) for n in names])
    decoy_counts = np.concatenate([sources[n].decoy_counts for n in names]).astype(np.float64)
    with_duplicates = np.concatenate([np.full(len(sources[n].decoy_counts), n in settings.duplicates) for n in names])

    def grouped(lv: np.ndarray) -> np.ndarray:
        return np.concatenate([grouped_levels(lv[:, :-1], column_of, len(columns)), lv[:, -1:]], axis=1)

    levels, unrelated = grouped(levels), grouped(unrelated)
    columns = (*columns, "keys shared")
    model = fit_scoped_model(columns, first.roles, levels, unrelated, decoy_counts, with_duplicates=with_duplicates)
    score = model.probabilities(levels).astype(np.float32)
    source_of = np.repeat(np.arange(len(names)), np.diff(offsets))
    shared = [x for x, n in enumerate(names) if n in settings.duplicates]
    if settings.one_per_source and decoy_counts.sum() >= MIN_UNRELATED:
        # Each record has at most one match in another source: its other candidates there, those
        # that score below its best, are non-matches across sources, the kind the decoys (pairs
        # within an agency: households and namesakes) stand in for. u is fitted again from both.
        out = ruled_out(left, right, score, source_of, shared=shared)
        if out.any():
            model = fit_scoped_model(
                columns, first.roles, levels, np.concatenate([unrelated, levels[out]]),
                np.concatenate([decoy_counts, np.ones(int(out.sum()))]),
                with_duplicates=np.concatenate([with_duplicates, np.zeros(int(out.sum()), dtype=bool)]),
            )  # fmt: skip
            score = model.probabilities(levels).astype(np.float32)
    scored = time.perf_counter()
    strong = score >= settings.threshold
    # Where duplicates are sought, nothing is vetoed: a messy case file compared with another of the
    # same person's would keep them apart (5,000 people, a job allowing duplicates: recall of
    # duplicates 0.688 → 0.653 with vetoes).
    vetoed = score < (0.0 if shared else VETO_SCORE)
    labels, _ = greedy_clusters(
        left[strong], right[strong], score[strong], source_of, one_per_source=settings.one_per_source, shared_sources=shared,
        veto_left=left[vetoed], veto_right=right[vetoed],
    )  # fmt: skip
    record_ids = pl.concat([sources[n].record_ids for n in names])
    agreement = agreement_text(columns, levels)
    pairs = _banded_pairs(names, offsets, record_ids, labels, left, right, score, settings.review_threshold, agreement, shared)
    clusters = _cluster_table(names, [sources[n].record_ids for n in names], offsets, labels)
    solved = time.perf_counter()
    return ScopedLinkResult(
        pairs=pairs, clusters=clusters, sources={n: len(sources[n]) for n in names}, candidates=len(left), key_pairs=per_key, unrelated=int(decoy_counts.sum()),
        within=within,
        model=model, threshold=settings.threshold, review_threshold=settings.review_threshold, scores=score,
        candidate_left=left, candidate_right=right, record_ids=record_ids,
        seconds={"compare": compared - started, "score": scored - compared, "solve": solved - scored},
    )  # fmt: skip


def ruled_out(
    left: np.ndarray, right: np.ndarray, score: np.ndarray, source_of: np.ndarray, *, shared: Collection[int] = ()
) -> np.ndarray:
    """Candidates across sources that a record's better candidate in the same other source rules
    out: one end has another candidate there with a strictly higher score (sources in ``shared``,
    whose records may be one person, rule nothing out)."""
    n_sources = int(source_of.max()) + 1 if len(source_of) else 1
    out = np.zeros(len(score), dtype=bool)
    open_ = source_of[left] != source_of[right]
    if len(shared):
        open_ &= ~np.isin(source_of[left], np.asarray(shared)) & ~np.isin(source_of[right], np.asarray(shared))
    for end, other in ((left, right), (right, left)):
        group = end * n_sources + source_of[other]
        best = np.full(int(group.max()) + 1 if len(group) else 0, -np.inf)
        np.maximum.at(best, group[open_], score[open_].astype(np.float64))
        out |= open_ & (score < best[group])
    return out


# What each comparison level of a field means, for people reading results (evidence levels 0..5).
LEVEL_WORDS = ("missing", "differs", "weak", "partial", "similar", "close", "exact")


def agreement_text(columns: tuple[str, ...], levels: np.ndarray) -> Callable[[np.ndarray], pl.Series]:
    """A function from candidate indexes (-1: never compared) to text such as ``given_name exact,
    surname close, …; 2 keys shared``: which fields agreed at which level, never a value."""
    words = np.array(LEVEL_WORDS)

    def text(index: np.ndarray) -> pl.Series:
        rows = levels[np.maximum(index, 0)].astype(np.int64)
        frame = pl.DataFrame({f"c{c}": words[rows[:, c] + 1] for c in range(len(columns) - 1)} | {"keys": rows[:, -1]})
        said = pl.concat_str([pl.lit(f"{name} ") + pl.col(f"c{c}") for c, name in enumerate(columns[:-1])], separator=", ")
        shared = pl.lit("; ") + pl.col("keys").cast(pl.String) + pl.lit(" keys shared")
        compared = pl.Series(index >= 0)
        return frame.select(pl.when(compared).then(said + shared).otherwise(None).alias("agreement")).to_series()

    return text


def _banded_pairs(
    names: Sequence[str],
    offsets: np.ndarray,
    record_ids: pl.Series,
    labels: np.ndarray,
    left: np.ndarray,
    right: np.ndarray,
    score: np.ndarray,
    review_threshold: float,
    agreement: Callable[[np.ndarray], pl.Series],
    shared: Collection[int] = (),
) -> pl.DataFrame:
    """Every cross-source pair within a cluster, and every pair of one source in ``shared`` (whose
    duplicates are sought) within a cluster (``match``; similarity and agreement null where the two
    were never compared, joined through a third record), and candidates at or above the review
    threshold left in different clusters (``possible``)."""
    source_of = np.repeat(np.arange(len(names)), np.diff(offsets))
    within_left, within_right = _pairs_within_clusters(labels)
    cross = (source_of[within_left] != source_of[within_right]) | np.isin(
        source_of[within_left], np.asarray(shared, dtype=np.int64)
    )
    within_left, within_right = within_left[cross], within_right[cross]
    n = int(offsets[-1])
    key = np.minimum(left, right) * n + np.maximum(left, right)
    order = np.argsort(key)
    wanted = within_left * n + within_right
    at = np.clip(np.searchsorted(key[order], wanted), 0, max(len(key) - 1, 0))
    hit = (len(key) > 0) & (key[order][at] == wanted) if len(key) else np.zeros(len(wanted), dtype=bool)
    within_score = np.where(hit, score[order][at] if len(key) else 0.0, np.nan)
    within_candidate = np.where(hit, order[at] if len(key) else -1, -1)
    possible = (score >= review_threshold) & (labels[left] != labels[right])
    all_left = np.concatenate([within_left, left[possible]])
    all_right = np.concatenate([within_right, right[possible]])
    bands = np.array(["match"] * len(within_left) + ["possible"] * int(possible.sum()))
    similarity = np.concatenate([within_score, score[possible]]).astype(np.float64)
    ids = record_ids.to_numpy()
    names_arr = np.array(names)
    frame = pl.DataFrame({
        "source_a": names_arr[source_of[all_left]], "id_a": ids[all_left],
        "source_b": names_arr[source_of[all_right]], "id_b": ids[all_right],
        "similarity": np.round(similarity, 4), "band": bands,
        "agreement": agreement(np.concatenate([within_candidate, np.flatnonzero(possible)])),
    }, schema={"source_a": pl.String, "id_a": pl.String, "source_b": pl.String, "id_b": pl.String, "similarity": pl.Float64, "band": pl.String, "agreement": pl.String})  # fmt: skip
    frame = frame.with_columns(pl.col("similarity").fill_nan(None))
    return frame.sort(
        ["band", "similarity", "source_a", "id_a", "source_b", "id_b"],
        descending=[False, True, False, False, False, False],
        nulls_last=True,
    )
