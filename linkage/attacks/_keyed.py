"""Attacks on keyed match keys: what a coordinator that holds only tokens and scoped evidence can do.

Under the match-key design (issue 13) the coordinator holds, per record and match key, a 64-bit
keyed token of the key's value, and can compare two records only inside a scope they share (a
token both carry). Its view, column by column (``MatchKeyView``):

    tokens          key name → int64 token per record, ``NO_TOKEN`` where the record has none
    scope_edges     (m, 2) int64: record pairs that share a token (i < j), with
    scope_scores    (m,) float: the within-scope evidence similarity of each pair

Three attacks, each against the attacker's own view of its plaintext list (the same key names,
tokens under a key of its own; ``plaintext_match_keys`` and ``scope_similarities`` build it):

- ``token_frequency_attack``: per key, the frequency of each token against the frequency of each
  plaintext value; values whose count is unique on both sides are aligned by rank, and a record is
  re-identified where the aligned keys it carries leave exactly one plaintext record;
- ``token_graph_attack``: records as nodes, an edge where two records share a token, weighted by how
  many keys they share; matched to the attacker's graph with the embedding attack (``_embedding``)
  from the known pairs;
- ``scope_graph_attack``: the same on the graph whose edges are within-scope similarities.

The key functions here are placeholders for the real key set (the encoder lives in
``linkage.scoped``); the attacks take only the columns above, so they plug into it unchanged.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import polars as pl

from linkage.attacks._embedding import EmbeddingAttackSettings, aligned_graph_matching, unrefined_correct
from linkage.attacks._result import AttackResult, scored
from linkage.attacks._similarity import require_scipy

if TYPE_CHECKING:
    from scipy.sparse import csr_matrix

__all__ = [
    "NO_TOKEN",
    "PLACEHOLDER_KEYS",
    "MatchKeyView",
    "match_key_view",
    "plaintext_match_keys",
    "scope_graph_attack",
    "scope_similarities",
    "shared_token_graph",
    "token_frequency_attack",
    "token_graph_attack",
]

NO_TOKEN = np.int64(-1)  # a record without a value for the key (uint64 0xFFFF…FFFF)
TOKENS = "tokens"  # the view these attacks report
# A coarse key set for tests and the harness (the default is linkage.scoped's): a key is its parts.
PLACEHOLDER_KEYS: dict[str, tuple[str, ...]] = {
    "surname+dob": ("surname", "date_of_birth"),
    "given+dob": ("given_name", "date_of_birth"),
    "names+postcode": ("given_name", "surname", "postcode"),
}


@dataclass(frozen=True, eq=False)
class MatchKeyView:
    tokens: dict[str, np.ndarray]  # key name → int64 token per record, NO_TOKEN where none
    scope_edges: np.ndarray  # (m, 2) int64 record pairs (i < j) sharing at least one token
    scope_scores: np.ndarray  # (m,) float64 within-scope similarity of each pair

    @property
    def records(self) -> int:
        return len(next(iter(self.tokens.values()))) if self.tokens else 0


def plaintext_match_keys(frame: pl.DataFrame, keys: Mapping[str, Sequence[str]], *, key: bytes) -> dict[str, np.ndarray]:
    """Tokens of ``frame`` (string columns) per match key: a keyed 64-bit hash of the key's parts,
    lower-cased and trimmed; ``NO_TOKEN`` where any part is empty."""
    out: dict[str, np.ndarray] = {}
    for name, parts in keys.items():
        cleaned = [pl.col(p).cast(pl.String).fill_null("").str.strip_chars().str.to_lowercase() for p in parts]
        values = frame.select(
            pl.concat_str(cleaned, separator="\x1f").alias("v"),
            pl.all_horizontal([c.str.len_chars() > 0 for c in cleaned]).alias("ok"),
        )
        distinct, codes = np.unique(values.get_column("v").to_numpy().astype(str), return_inverse=True)
        person = name.encode()[:16]
        digests = np.array(
            [
                int.from_bytes(hashlib.blake2b(v.encode(), key=key, digest_size=8, person=person).digest(), "little") >> 1
                for v in distinct
            ],
            dtype=np.int64,
        )  # 63 bits: never the sentinel
        out[name] = np.where(values.get_column("ok").to_numpy(), digests[codes.ravel()], NO_TOKEN)
    return out


def shared_token_pairs(tokens: Mapping[str, np.ndarray], *, max_group: int = 50) -> tuple[np.ndarray, np.ndarray]:
    """((m, 2) record pairs i < j sharing a token, (m,) number of keys they share). Groups larger
    than ``max_group`` are left out, as nodes cap how many records may share a token value."""
    found = []
    for column in tokens.values():
        column = np.asarray(column, dtype=np.int64)
        carried = np.flatnonzero(column != NO_TOKEN)
        order = carried[np.argsort(column[carried], kind="stable")]
        values = column[order]
        starts = np.flatnonzero(np.r_[True, values[1:] != values[:-1]])
        sizes = np.diff(np.r_[starts, len(values)])
        for size in np.unique(sizes[(sizes >= 2) & (sizes <= max_group)]):
            members = order[starts[sizes == size][:, None] + np.arange(size)[None, :]]  # (groups, size)
            a, b = np.triu_indices(size, 1)
            left, right = members[:, a].ravel(), members[:, b].ravel()
            found.append(np.stack([np.minimum(left, right), np.maximum(left, right)], axis=1))
    if not found:
        return np.zeros((0, 2), dtype=np.int64), np.zeros(0)
    pairs, counts = np.unique(np.concatenate(found), axis=0, return_counts=True)
    return pairs.astype(np.int64), counts.astype(np.float64)


def scope_similarities(frame: pl.DataFrame, pairs: np.ndarray, columns: Sequence[str], *, q: int = 2) -> np.ndarray:
    """Dice of the q-gram sets of ``columns`` (joined) for each pair: a stand-in for within-scope
    evidence similarity (keyed field filters compare as their q-grams do)."""
    require_scipy()
    import scipy.sparse as sparse

    text = frame.select(
        pl.concat_str([pl.col(c).cast(pl.String).fill_null("").str.to_lowercase() for c in columns], separator=" ")
    ).to_series()
    rows, cols = [], []
    vocabulary: dict[str, int] = {}
    for r, value in enumerate(text.to_list()):
        padded = f"_{value}_"
        for gram in {padded[i : i + q] for i in range(len(padded) - q + 1)}:
            rows.append(r)
            cols.append(vocabulary.setdefault(gram, len(vocabulary)))
    grams = sparse.csr_matrix((np.ones(len(rows), dtype=np.float32), (rows, cols)), shape=(frame.height, max(len(vocabulary), 1)))
    sizes = np.asarray(grams.sum(axis=1)).ravel()
    if len(pairs) == 0:
        return np.zeros(0)
    common = np.asarray(grams[pairs[:, 0]].multiply(grams[pairs[:, 1]]).sum(axis=1)).ravel()
    total = sizes[pairs[:, 0]] + sizes[pairs[:, 1]]
    dice: np.ndarray = np.divide(2.0 * common, total, out=np.zeros(len(pairs)), where=total > 0)
    return dice


def match_key_view(
    frame: pl.DataFrame, keys: Mapping[str, Sequence[str]], *, key: bytes, evidence_columns: Sequence[str] | None = None
) -> MatchKeyView:
    """The coordinator's view of ``frame`` under ``keys`` (tokens under ``key``; scope scores from
    ``evidence_columns``, default every column a key uses). The attacker builds its own the same way."""
    tokens = plaintext_match_keys(frame, keys, key=key)
    pairs, _ = shared_token_pairs(tokens)
    columns = (
        list(evidence_columns)
        if evidence_columns is not None
        else list(dict.fromkeys(c for parts in keys.values() for c in parts))
    )
    return MatchKeyView(tokens=tokens, scope_edges=pairs, scope_scores=scope_similarities(frame, pairs, columns))


def token_frequency_attack(
    encoded: Mapping[str, np.ndarray],
    attacker: Mapping[str, np.ndarray],
    *,
    truth: np.ndarray | None = None,
    known_pairs: np.ndarray | None = None,
    min_count: int = 2,
) -> AttackResult:
    """Align each key's token frequencies with the plaintext value frequencies (counts unique on
    both sides, by rank) and re-identify records left with one candidate."""
    started = time.perf_counter()
    known = np.zeros((0, 2), dtype=np.int64) if known_pairs is None else np.asarray(known_pairs, dtype=np.int64).reshape(-1, 2)
    n = len(next(iter(encoded.values())))
    n_plain = len(next(iter(attacker.values())))
    candidates: list[tuple[np.ndarray, np.ndarray]] = []  # per key: (encoded group id per record, plaintext group id per record)
    aligned_values = 0
    for name, column in encoded.items():
        enc_group, plain_group, count = _aligned_groups(
            np.asarray(column, dtype=np.int64), np.asarray(attacker[name], dtype=np.int64), min_count
        )
        aligned_values += count
        candidates.append((enc_group, plain_group))
    guesses = _single_candidates(candidates, n, n_plain)
    confidence = np.where(guesses >= 0, 1.0, -np.inf)
    details = {"aligned_values": float(aligned_values), "keys": float(len(encoded))}
    return scored(
        "token-frequency",
        TOKENS,
        guesses,
        confidence,
        truth=truth,
        known_pairs=known,
        seconds=time.perf_counter() - started,
        details=details,
    )


def _aligned_groups(encoded: np.ndarray, plain: np.ndarray, min_count: int) -> tuple[np.ndarray, np.ndarray, int]:
    """Per record of each side, the id of its aligned value (−1: none); and how many were aligned."""
    enc_values, enc_codes, enc_counts = _value_counts(encoded)
    plain_values, plain_codes, plain_counts = _value_counts(plain)
    enc_unique = _unique_count_values(enc_counts, min_count)
    plain_unique = _unique_count_values(plain_counts, min_count)
    # Rank alignment: the r-th most frequent distinctive value on one side is the r-th on the other.
    pairs = min(len(enc_unique), len(plain_unique))
    enc_id = np.full(len(enc_values), -1, dtype=np.int64)
    plain_id = np.full(len(plain_values), -1, dtype=np.int64)
    enc_id[enc_unique[:pairs]] = np.arange(pairs)
    plain_id[plain_unique[:pairs]] = np.arange(pairs)
    enc_group = np.where(enc_codes >= 0, enc_id[np.maximum(enc_codes, 0)], -1)
    plain_group = np.where(plain_codes >= 0, plain_id[np.maximum(plain_codes, 0)], -1)
    return enc_group, plain_group, pairs


def _value_counts(column: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    carried = column != NO_TOKEN
    values, inverse, counts = np.unique(column[carried], return_inverse=True, return_counts=True)
    codes = np.full(len(column), -1, dtype=np.int64)
    codes[carried] = inverse.ravel()
    return values, codes, counts


def _unique_count_values(counts: np.ndarray, min_count: int) -> np.ndarray:
    """Indices of values whose count no other value shares (and ≥ min_count), most frequent first."""
    distinct, how_many = np.unique(counts, return_counts=True)
    singular = set(distinct[(how_many == 1) & (distinct >= min_count)].tolist())
    chosen = np.array([i for i in np.argsort(-counts, kind="stable") if counts[i] in singular], dtype=np.int64)
    return chosen


def _single_candidates(candidates: list[tuple[np.ndarray, np.ndarray]], n: int, n_plain: int) -> np.ndarray:
    """For each encoded record, the one plaintext record carrying all its aligned values, else −1."""
    frames = []
    for k, (enc_group, plain_group) in enumerate(candidates):
        frames.append(
            (
                pl.DataFrame({"e": np.arange(n), "g": enc_group, "k": np.full(n, k)}).filter(pl.col("g") >= 0),
                pl.DataFrame({"p": np.arange(n_plain), "g": plain_group, "k": np.full(n_plain, k)}).filter(pl.col("g") >= 0),
            )
        )
    guesses = np.full(n, -1, dtype=np.int64)
    if not frames:
        return guesses
    enc = pl.concat([f[0] for f in frames])
    plain = pl.concat([f[1] for f in frames])
    needed = enc.group_by("e").agg(pl.len().alias("need"))
    # Plaintext records carrying every aligned value of the encoded record: joined, then counted.
    hits = enc.join(plain, on=["k", "g"]).group_by(["e", "p"]).agg(pl.len().alias("have")).join(needed, on="e")
    full = hits.filter(pl.col("have") == pl.col("need")).group_by("e").agg(pl.col("p").first(), pl.len().alias("options"))
    single = full.filter(pl.col("options") == 1)
    guesses[single.get_column("e").to_numpy()] = single.get_column("p").to_numpy()
    return guesses


def shared_token_graph(tokens: Mapping[str, np.ndarray], *, max_group: int = 50) -> object:
    """The graph of shared tokens (scipy CSR): an edge where two records share a token, weighted by
    how many keys they share."""
    pairs, counts = shared_token_pairs(tokens, max_group=max_group)
    return _graph(pairs, counts, len(next(iter(tokens.values()))))


def _graph(pairs: np.ndarray, weights: np.ndarray, n: int) -> csr_matrix:
    require_scipy()
    import scipy.sparse as sparse

    rows = np.concatenate([pairs[:, 0], pairs[:, 1]])
    cols = np.concatenate([pairs[:, 1], pairs[:, 0]])
    data = np.concatenate([weights, weights]).astype(np.float64)
    return sparse.csr_matrix((data, (rows, cols)), shape=(n, n))


def token_graph_attack(
    encoded: MatchKeyView,
    attacker: MatchKeyView,
    *,
    known_pairs: np.ndarray,
    rng: np.random.Generator,
    truth: np.ndarray | None = None,
    settings: EmbeddingAttackSettings = EmbeddingAttackSettings(dimensions=32),
) -> AttackResult:
    """Graph matching on the graphs of shared tokens, from the known pairs (embedding attack)."""
    return _graph_attack(
        "token-graph", shared_token_graph(encoded.tokens), shared_token_graph(attacker.tokens), known_pairs, rng, truth, settings
    )


def scope_graph_attack(
    encoded: MatchKeyView,
    attacker: MatchKeyView,
    *,
    known_pairs: np.ndarray,
    rng: np.random.Generator,
    truth: np.ndarray | None = None,
    settings: EmbeddingAttackSettings = EmbeddingAttackSettings(dimensions=32),
) -> AttackResult:
    """Graph matching on the graphs of within-scope similarities, from the known pairs."""
    graph_a = _graph(encoded.scope_edges, encoded.scope_scores, encoded.records)
    graph_b = _graph(attacker.scope_edges, attacker.scope_scores, attacker.records)
    return _graph_attack("scope-graph", graph_a, graph_b, known_pairs, rng, truth, settings)


def _graph_attack(
    attack: str,
    graph_a: csr_matrix,
    graph_b: csr_matrix,
    known_pairs: np.ndarray,
    rng: np.random.Generator,
    truth: np.ndarray | None,
    settings: EmbeddingAttackSettings,
) -> AttackResult:
    started = time.perf_counter()
    known = np.asarray(known_pairs, dtype=np.int64).reshape(-1, 2)
    match = aligned_graph_matching(graph_a, graph_b, known, settings=settings, rng=rng)
    details = dict(match.details)
    details["edges"] = float(graph_a.nnz // 2)
    if truth is not None:
        details["unrefined_correct"] = unrefined_correct(match, known, truth)
    return scored(
        attack,
        TOKENS,
        match.guesses,
        match.confidence,
        truth=truth,
        known_pairs=known,
        seconds=time.perf_counter() - started,
        details=details,
    )
