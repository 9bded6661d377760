"""A known-pair attack on the XOR-linearity of folded filters (after Armknecht & Schäfer, "Breaking
BAD? Better Call SAUL!", PoPETs 2026, which attacks the linearity of diffused filters; written here
for XOR-folding, which is the simplest such diffusion: out[j] = in[j] ⊕ in[j + bits/2]).

Folding is linear over GF(2): fold(a) ⊕ fold(b) = fold(a ⊕ b). A token's keyed bit positions
therefore act on the folded filter the same way in every record, whichever half a position fell
in: where a token sets unfolded bit j or j + bits/2, folded bit j becomes the complement of the
other half's bit, so its rate rises from 2p(1 − p) to 1 − p (p: the unfolded fill). The keyed map
from tokens to folded positions is hidden, but it is the same for every record, so an attacker
who knows a few true pairs can learn it:

1. **learn**: for every token of the schema (the attacker tokenises its own plaintext exactly as the
   agencies do) and every folded position, the lift of the position's rate among anchored records
   holding the token over those not holding it, shrunk towards 0 for tokens held by few anchors;
2. **predict** every plaintext record's folded filter as the sum of its tokens' lifts;
3. **match** each encoding to the plaintext record whose prediction correlates best with its bits
   (mutual best, blockwise: no n × n matrix);
4. **bootstrap**: the surest guesses join the anchors and the map is learnt again.

The attack needs no encoding of its own and no similarity graph: it reads the encodings' bits
directly, so it also measures unfolded filters (where a token's lift is 1 − p), the control.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import polars as pl

from linkage.attacks._matching import with_surest_share
from linkage.attacks._plaintext import plaintext_tokens, view_groups
from linkage.attacks._result import AttackResult, scored
from linkage.attacks._similarity import mutual_best_pairs, require_scipy, top_pairs
from linkage.attacks._views import RECORD, unpacked_bits, view_blocks
from linkage.records._schema import Schema

__all__ = ["XorAttackSettings", "xor_linearity_attack"]


@dataclass(frozen=True, kw_only=True)
class XorAttackSettings:
    rounds: int = 4  # learn-predict-match rounds; each after the first learns from the surest guesses too
    anchor_shares: tuple[float, ...] = (0.5, 0.7, 0.85)  # share of mutual-best guesses (surest first) added after round r
    shrinkage: float = 10.0  # a token's lift is scaled by holders / (holders + shrinkage)
    min_holders: int = 3  # tokens held by fewer anchored records are not learnt
    candidates: int = 4  # best partners kept per encoding while matching
    sparse: bool = True  # keep each token's h largest lifts only (h: its hash functions in the schema)


def xor_linearity_attack(
    filters: np.ndarray,
    plaintext: pl.DataFrame,
    schema: Schema,
    *,
    known_pairs: np.ndarray,
    rng: np.random.Generator,
    view: str = RECORD,
    truth: np.ndarray | None = None,
    settings: XorAttackSettings = XorAttackSettings(),
) -> AttackResult:
    """Re-identify ``filters`` (view ``view``; folded or not) from ``plaintext`` and ``known_pairs``
    (k, 2): (encoded row, plaintext row). ``rng`` is unused (the attack is deterministic) and kept
    for the harness's uniform call. ``truth`` only scores the guesses, after they are made."""
    require_scipy()
    del rng
    started = time.perf_counter()
    known = np.asarray(known_pairs, dtype=np.int64).reshape(-1, 2)
    blocks = view_blocks(filters)
    groups = view_groups(schema, view)
    if len(blocks) != len(groups):
        raise ValueError("filters do not match the view's field groups")
    bits = [unpacked_bits(block).astype(np.float32) for block in blocks]
    tokens = [plaintext_tokens(plaintext, schema, g) for g in groups]
    holds = [(t.holds.tocsr().astype(np.float32), t.hashes) for t in tokens]
    # Each encoding's bits, centred and scaled per position, then per row: correlation by dot product.
    centred = _unit_rows(np.hstack([b - b.mean(axis=0) for b in bits]))

    anchors = known
    n = len(centred)
    details: dict[str, float] = {"known": float(len(known))}
    rows = cols = np.zeros(0, dtype=np.int64)
    margins = np.zeros(0)
    for round_ in range(settings.rounds):
        predicted = np.hstack([_predicted(b, h, hashes, anchors, settings) for b, (h, hashes) in zip(bits, holds, strict=True)])
        top = top_pairs(centred, _unit_rows(predicted - predicted.mean(axis=0)), settings.candidates)
        rows, cols, margins = mutual_best_pairs(top)
        details[f"mutual_best_round{round_}"] = float(len(rows))
        if truth is not None and round_ == 0:
            counted = ~np.isin(rows, known[:, 0])
            details["unrefined_correct"] = float((cols[counted] == np.asarray(truth)[rows[counted]]).sum())
        if round_ < settings.rounds - 1:
            share = settings.anchor_shares[min(round_, len(settings.anchor_shares) - 1)]
            anchors = with_surest_share(known, rows, cols, margins, share)
    guesses = np.full(n, -1, dtype=np.int64)
    confidence = np.full(n, -np.inf)
    guesses[rows] = cols
    confidence[rows] = margins
    guesses[known[:, 0]] = known[:, 1]
    confidence[known[:, 0]] = np.inf
    details["anchors"] = float(len(anchors))
    return scored(
        "xor", view, guesses, confidence, truth=truth, known_pairs=known, seconds=time.perf_counter() - started, details=details
    )


def _predicted(
    bits: np.ndarray, holds: object, hashes: np.ndarray, anchors: np.ndarray, settings: XorAttackSettings
) -> np.ndarray:
    """Every plaintext record's predicted filter (n, bits): the sum of its tokens' learnt lifts, each
    token keeping only as many positions as the schema gives it hash functions (its largest lifts)."""
    import scipy.sparse as sparse

    matrix = sparse.csr_matrix(holds)
    anchored = matrix[anchors[:, 1]]  # (anchors, tokens)
    observed = bits[anchors[:, 0]]  # (anchors, bits)
    holders = np.asarray(anchored.sum(axis=0)).ravel()  # anchored records holding each token
    total = observed.sum(axis=0)
    with_token = np.asarray(anchored.T @ observed)  # (tokens, bits): bits set among holders
    others = np.maximum(len(anchors) - holders, 1.0)[:, None]
    rate_with = with_token / np.maximum(holders, 1.0)[:, None]
    rate_without = (total[None, :] - with_token) / others
    weight = np.where(holders >= settings.min_holders, holders / (holders + settings.shrinkage), 0.0)
    lift = ((rate_with - rate_without) * weight[:, None]).astype(np.float32)
    if settings.sparse:
        keep = np.minimum(hashes, lift.shape[1])
        threshold = -np.sort(-lift, axis=1)[np.arange(len(lift)), np.maximum(keep - 1, 0)]
        lift = np.where(lift >= threshold[:, None], lift, 0.0).astype(np.float32)
    return np.asarray(matrix @ lift, dtype=np.float32)


def _unit_rows(features: np.ndarray) -> np.ndarray:
    norm = np.linalg.norm(features, axis=1, keepdims=True)
    normalised: np.ndarray = np.divide(features, norm, out=np.zeros_like(features), where=norm > 1e-12).astype(np.float32)
    return normalised
