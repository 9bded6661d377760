"""Similarity-graph matching (after Vidanage, Christen, Ranbaduge & Schnell, CIKM 2020).

The coordinator can compare every encoding with every other: that is the similarity graph of the
encoded list. An attacker who knows the schema encodes its own plaintext list under a key of its
own and gets a graph of the same shape, because Dice similarity depends on the tokens two records
share, not on the key. Matching the two graphs' nodes re-identifies the encodings.

    encodings ─▶ Dice graph A ┐
                              ├─▶ node profiles ─▶ score matrix ─▶ linear_sum_assignment ─▶ guesses
    plaintext ─▶ own key ─▶ Dice graph B ┘              ▲                     │
                                                         └── anchors: known pairs, then the
                                                             surest guesses of the last round

A node's profile is its similarity to every anchor (a person known on both sides), each column
standardised within its own graph so that the two keys' slightly different collision rates cancel;
two nodes are scored by the correlation of their profiles. Without anchors, structural features
stand in (degree at several thresholds, the top neighbour similarities, the mean neighbour degree),
weak on their own but enough to seed the propagation in small, structured graphs.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl

from linkage.attacks._matching import assignment, surest
from linkage.attacks._result import AttackResult, scored
from linkage.attacks._views import RECORD, dice_matrix, unpacked_bits, view_blocks, view_filters
from linkage.bloom._encode import encode
from linkage.bloom._keys import Secret
from linkage.records._schema import Schema

__all__ = ["GraphAttackSettings", "graph_matching_attack"]


@dataclass(frozen=True, kw_only=True)
class GraphAttackSettings:
    rounds: int = 4  # assignment rounds; each adds the surest guesses of the last as anchors
    anchor_shares: tuple[float, ...] = (0.15, 0.35, 0.6)  # share of records taken as anchors after round r
    max_anchors: int = 600  # profile length cap (the score matrix costs n × anchors × n)
    structural_weight: float = 0.25  # weight of structural features next to anchor profiles
    top_neighbours: int = 10  # structural features: this many highest similarities per node


def graph_matching_attack(
    filters: np.ndarray,
    plaintext: pl.DataFrame,
    schema: Schema,
    *,
    known_pairs: np.ndarray,
    rng: np.random.Generator,
    view: str = RECORD,
    truth: np.ndarray | None = None,
    settings: GraphAttackSettings = GraphAttackSettings(),
) -> AttackResult:
    """Re-identify ``filters`` (the coordinator's view ``view`` of an encoded list) from ``plaintext``.

    ``known_pairs``: (k, 2) rows (encoded row, plaintext row) the attacker knows. ``truth`` is used
    only to score the guesses, after they are made.
    """
    started = time.perf_counter()
    known = np.asarray(known_pairs, dtype=np.int64).reshape(-1, 2)
    own = encode(_with_record_ids(plaintext), schema, Secret(rng.bytes(32))).encodings
    graphs_a = [dice_matrix(unpacked_bits(block)) for block in view_blocks(filters)]
    graphs_b = [dice_matrix(unpacked_bits(block)) for block in view_blocks(view_filters(own, view))]
    structure_a = _standardised_columns(np.hstack([_structural_features(g, settings.top_neighbours) for g in graphs_a]))
    structure_b = _standardised_columns(np.hstack([_structural_features(g, settings.top_neighbours) for g in graphs_b]))

    anchors = known
    n = len(graphs_a[0])
    for round_ in range(settings.rounds):
        score = _scores(graphs_a, graphs_b, structure_a, structure_b, anchors, settings.structural_weight)
        rows, cols, margins = assignment(score)
        if round_ < settings.rounds - 1:
            share = settings.anchor_shares[min(round_, len(settings.anchor_shares) - 1)]
            anchors = surest(known, rows, cols, margins, min(int(share * n), settings.max_anchors - len(known)))

    assigned = np.full(n, -1, dtype=np.int64)
    assigned[rows] = cols
    margin = np.full(n, -np.inf)
    margin[rows] = margins
    assigned[known[:, 0]] = known[:, 1]
    margin[known[:, 0]] = np.inf
    guesses = np.where(margin > 0, assigned, -1)  # mutual best: the pair beats every rival in its row and column
    details = {"anchors": float(len(anchors)), "rounds": float(settings.rounds)}
    if truth is not None:
        counted = np.ones(n, dtype=bool)
        counted[known[:, 0]] = False
        details["assigned_correct"] = float((counted & (assigned == np.asarray(truth))).sum())
    return scored(
        "graph", view, guesses, margin, truth=truth, known_pairs=known, seconds=time.perf_counter() - started, details=details
    )


def _with_record_ids(plaintext: pl.DataFrame) -> pl.DataFrame:
    if "record_id" in plaintext.columns:
        return plaintext.with_columns(pl.col("record_id").cast(pl.String))
    return plaintext.insert_column(0, pl.Series("record_id", [str(i) for i in range(plaintext.height)]))


def _standardised_columns(features: np.ndarray) -> np.ndarray:
    centred = features - features.mean(axis=0)
    spread = centred.std(axis=0)
    standardised: np.ndarray = np.divide(centred, spread, out=np.zeros_like(centred), where=spread > 1e-9)
    return standardised


def _standardised_rows(features: np.ndarray) -> np.ndarray:
    centred = features - features.mean(axis=1, keepdims=True)
    norm = np.linalg.norm(centred, axis=1, keepdims=True)
    normalised: np.ndarray = np.divide(centred, norm, out=np.zeros_like(centred), where=norm > 1e-9)
    return normalised


def _structural_features(graph: np.ndarray, top: int) -> np.ndarray:
    """Per node: top similarities, degree at several thresholds, mean neighbour degree."""
    others = graph.copy()
    np.fill_diagonal(others, -1.0)
    k = min(top, len(graph) - 1)
    if k <= 0:
        return np.zeros((len(graph), 1), dtype=np.float32)
    highest = -np.sort(-np.partition(others, -k, axis=1)[:, -k:], axis=1)
    # Thresholds from the graph's own similarity distribution, so both keys give comparable degrees.
    upper = others[np.triu_indices(len(graph), 1)]
    thresholds = np.quantile(upper, [0.9, 0.99, 0.999]) if len(upper) else np.zeros(3)
    degrees = np.stack([(others >= t).sum(axis=1) for t in thresholds], axis=1).astype(np.float32)
    adjacency = (others >= thresholds[1]).astype(np.float32)
    neighbour_degree = np.divide(
        adjacency @ degrees[:, 1], degrees[:, 1], out=np.zeros(len(graph), dtype=np.float32), where=degrees[:, 1] > 0
    )
    mean = others.mean(axis=1)
    return np.column_stack([highest, np.log1p(degrees), np.log1p(neighbour_degree), mean]).astype(np.float32)


def _scores(
    graphs_a: Sequence[np.ndarray],
    graphs_b: Sequence[np.ndarray],
    structure_a: np.ndarray,
    structure_b: np.ndarray,
    anchors: np.ndarray,
    structural_weight: float,
) -> np.ndarray:
    """Score of every (encoded, plaintext) pair: profile correlation plus structural closeness."""
    structural: np.ndarray = _standardised_rows(structure_a) @ _standardised_rows(structure_b).T
    if len(anchors) < 2:
        return structural
    profile_a = _standardised_rows(np.hstack([_standardised_columns(g[:, anchors[:, 0]]) for g in graphs_a]))
    profile_b = _standardised_rows(np.hstack([_standardised_columns(g[:, anchors[:, 1]]) for g in graphs_b]))
    similarity: np.ndarray = profile_a @ profile_b.T + structural_weight * structural
    return similarity
