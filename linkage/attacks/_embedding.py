"""Embedding-based graph matching (after Schäfer, Armknecht et al., "Revisiting Graph Matching
Attacks on Privacy-Preserving Record Linkage", ACSAC 2024; their code: github.com/SchaeferJ/graphMatching).

The paper's pipeline, read from the paper and its code and written here for numpy/scipy:

    encodings ─▶ similarity graph A ─▶ node embeddings A ─┐
                                                           ├─ Procrustes on the known pairs ─▶ cosine
    plaintext ─▶ own key ─▶ graph B ─▶ node embeddings B ─┘     ▲                          │
                                                                 └── refinement: the surest  ▼
                                                                     mutual-best pairs  ◀── matching

- **Graphs.** The paper keeps the top decile of all-pairs similarities; that is 2 × 10⁷ edges at
  20,000 records, so here each record keeps its ``neighbours`` most similar records (a k-NN graph,
  symmetrised), built blockwise (``_similarity``).
- **Embeddings.** The paper uses node2vec or NetMF. NetMF factorises log(max(M, 1)) for
  M = vol/(bT) D⁻¹ Σᵣ (D⁻¹A)ʳ, dense n × n. Here its spectral core, without the log: the top
  eigenvectors U, Λ of the normalised adjacency D^-½ A D^-½, scaled by the NetMF window filter
  f(λ) = (1/T) Σᵣ₌₁..T λʳ — sparse Lanczos, 20,000 nodes in seconds on two cores.
- **Alignment.** Orthogonal Procrustes (the paper's closed form, with unit rows) on the known pairs:
  W = U Vᵀ from the SVD of Xᵀ Y. Eigenvector signs, order and rotations inside near-degenerate
  eigenspaces are all orthogonal, so one W absorbs them.
- **Matching.** Cosine of aligned embeddings; a guess where the pair is the mutual best (the
  paper's "symmetric" matcher; its Hungarian matcher needs the dense n × n matrix).
- **Refinement.** Each round adds the surest mutual-best pairs as anchors and aligns again.

``aligned_graph_matching`` works on any two graphs (the shared-token graphs of ``_keyed`` too);
``embedding_attack`` builds the graphs from a filter view and the attacker's own encoding.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import polars as pl

from linkage.attacks._matching import with_surest_share
from linkage.attacks._result import AttackResult, scored
from linkage.attacks._similarity import knn_graph, mutual_best_pairs, require_scipy, top_pairs
from linkage.attacks._views import RECORD, unpacked_bits, view_blocks, view_filters
from linkage.bloom._encode import encode
from linkage.bloom._keys import Secret
from linkage.records._schema import Schema

__all__ = [
    "EmbeddingAttackSettings",
    "GraphMatch",
    "aligned_graph_matching",
    "embedding_attack",
    "filter_bits",
    "node_embeddings",
    "procrustes",
]


@dataclass(frozen=True, kw_only=True)
class EmbeddingAttackSettings:
    # Tuned on the default (folded) record filter at 20,000 records, 5% known (benchmarks/privacy.py).
    neighbours: int = 30  # k of the k-NN similarity graphs
    metric: str = "agreement"  # similarity of two filters: "agreement" (1 − Hamming/bits, which XOR-folding keeps) or "dice"
    dimensions: int = 128  # embedding dimensions (eigenvectors)
    window: int = 10  # NetMF context window T: eigenvalue filter (1/T) Σ λʳ, r = 1..T
    rounds: int = 4  # refinement rounds after the first alignment (0: the paper without refinement)
    refine_share: float = 0.25  # share of the mutual-best guesses, surest first, taken as anchors each round
    candidates: int = 4  # best partners kept per record while matching


@dataclass(frozen=True, eq=False)
class GraphMatch:
    guesses: np.ndarray  # int64 per node of graph A: the node of graph B guessed, -1 for none
    confidence: np.ndarray  # float64 per node of A: margin of the guess over its best rival
    unrefined: np.ndarray  # int64 per node of A: the guesses of the first alignment, before refinement
    details: dict[str, float] = field(default_factory=dict)


def node_embeddings(graph: object, dimensions: int, window: int, rng: np.random.Generator) -> np.ndarray:
    """Unit-length spectral (NetMF-core) embeddings (n, d) of a symmetric sparse graph."""
    require_scipy()
    import scipy.sparse as sparse
    from scipy.sparse.linalg import eigsh

    adjacency = sparse.csr_matrix(graph, dtype=np.float64)
    n = adjacency.shape[0]
    degree = np.asarray(adjacency.sum(axis=1)).ravel()
    scale = np.divide(1.0, np.sqrt(degree), out=np.zeros(n), where=degree > 0)
    normalised = sparse.diags(scale) @ adjacency @ sparse.diags(scale)
    d = max(1, min(dimensions, n - 2))
    if adjacency.nnz == 0:  # no edge at all (match keys under a cap of 1): every node looks alike
        return np.zeros((n, d), dtype=np.float32)
    if n <= 3 * d + 10:  # tiny graphs: dense is faster and eigsh refuses d >= n - 1
        values, vectors = np.linalg.eigh(normalised.toarray())
        values, vectors = values[-d:], vectors[:, -d:]
    else:
        values, vectors = eigsh(normalised, k=d, which="LA", v0=rng.standard_normal(n), tol=1e-4, maxiter=n * 10)
    powers = np.stack([values**r for r in range(1, window + 1)]).mean(axis=0)
    embedded = vectors * np.sqrt(np.clip(powers, 0.0, None))[None, :]
    return _unit_rows(embedded).astype(np.float32)


def procrustes(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """The orthogonal W minimising ‖source W − target‖ (rows of both: the same people)."""
    u, _, vt = np.linalg.svd(source.T.astype(np.float64) @ target.astype(np.float64))
    rotation: np.ndarray = (u @ vt).astype(np.float32)
    return rotation


def aligned_graph_matching(
    graph_a: object,
    graph_b: object,
    known_pairs: np.ndarray,
    *,
    settings: EmbeddingAttackSettings = EmbeddingAttackSettings(),
    rng: np.random.Generator,
    embeddings: tuple[np.ndarray, np.ndarray] | None = None,
) -> GraphMatch:
    """Match the nodes of ``graph_a`` to those of ``graph_b`` from ``known_pairs`` (k, 2) (a, b).

    ``embeddings``: precomputed (A, B) node embeddings, else spectral ones of each graph.
    """
    known = np.asarray(known_pairs, dtype=np.int64).reshape(-1, 2)
    if embeddings is None:
        embeddings = (
            node_embeddings(graph_a, settings.dimensions, settings.window, rng),
            node_embeddings(graph_b, settings.dimensions, settings.window, rng),
        )
    emb_a, emb_b = embeddings
    n = len(emb_a)
    anchors = known
    details: dict[str, float] = {"known": float(len(known))}
    rows = cols = np.zeros(0, dtype=np.int64)
    margins = np.zeros(0)
    unrefined = np.full(n, -1, dtype=np.int64)
    for round_ in range(settings.rounds + 1):
        if len(anchors) == 0:
            rotation = np.eye(emb_a.shape[1], dtype=np.float32)  # nothing to align on: embeddings as they are
        else:
            rotation = procrustes(emb_a[anchors[:, 0]], emb_b[anchors[:, 1]])
        top = top_pairs(emb_a @ rotation, emb_b, settings.candidates)
        rows, cols, margins = mutual_best_pairs(top)
        details[f"mutual_best_round{round_}"] = float(len(rows))
        if round_ == 0:
            unrefined[rows] = cols
        if round_ < settings.rounds:
            anchors = with_surest_share(known, rows, cols, margins, settings.refine_share)
    guesses = np.full(n, -1, dtype=np.int64)
    confidence = np.full(n, -np.inf)
    guesses[rows] = cols
    confidence[rows] = margins
    guesses[known[:, 0]] = known[:, 1]
    confidence[known[:, 0]] = np.inf
    return GraphMatch(guesses=guesses, confidence=confidence, unrefined=unrefined, details=details)


def unrefined_correct(match: GraphMatch, known: np.ndarray, truth: np.ndarray) -> float:
    """Correct guesses of the first alignment, known pairs aside (scored only after the attack)."""
    counted = np.ones(len(match.unrefined), dtype=bool)
    counted[known[:, 0]] = False
    return float((counted & (match.unrefined >= 0) & (match.unrefined == np.asarray(truth))).sum())


def filter_bits(filters: np.ndarray) -> np.ndarray:
    """A view's filters as one unpacked 0/1 matrix (n, bits): group filters side by side."""
    return np.hstack([unpacked_bits(block) for block in view_blocks(filters)])


def embedding_attack(
    filters: np.ndarray,
    plaintext: pl.DataFrame,
    schema: Schema,
    *,
    known_pairs: np.ndarray,
    rng: np.random.Generator,
    view: str = RECORD,
    truth: np.ndarray | None = None,
    settings: EmbeddingAttackSettings = EmbeddingAttackSettings(),
    attack: str = "embedding",
) -> AttackResult:
    """Re-identify ``filters`` (the coordinator's view ``view``) from ``plaintext``, which the attacker
    encodes under ``schema`` with a key of its own; ``known_pairs`` (k, 2): (encoded row, plaintext
    row). ``truth`` only scores the guesses, after they are made."""
    require_scipy()
    started = time.perf_counter()
    known = np.asarray(known_pairs, dtype=np.int64).reshape(-1, 2)
    own = encode(_with_record_ids(plaintext), schema, Secret(rng.bytes(32))).encodings
    graph_a = knn_graph(filter_bits(filters), settings.neighbours, metric=settings.metric)
    graph_b = knn_graph(filter_bits(view_filters(own, view)), settings.neighbours, metric=settings.metric)
    match = aligned_graph_matching(graph_a, graph_b, known, settings=settings, rng=rng)
    details = dict(match.details)
    if truth is not None:
        details["unrefined_correct"] = unrefined_correct(match, known, truth)
    return scored(
        attack,
        view,
        match.guesses,
        match.confidence,
        truth=truth,
        known_pairs=known,
        seconds=time.perf_counter() - started,
        details=details,
    )


def _with_record_ids(plaintext: pl.DataFrame) -> pl.DataFrame:
    if "record_id" in plaintext.columns:
        return plaintext.with_columns(pl.col("record_id").cast(pl.String))
    return plaintext.insert_column(0, pl.Series("record_id", [str(i) for i in range(plaintext.height)]))


def _unit_rows(features: np.ndarray) -> np.ndarray:
    norm = np.linalg.norm(features, axis=1, keepdims=True)
    normalised: np.ndarray = np.divide(features, norm, out=np.zeros_like(features), where=norm > 1e-12)
    return normalised
