"""Frequency and pattern-mining attack on bit positions (after Christen, Ranbaduge, Vatsalan &
Schnell, PAKDD 2018 / TKDE 2019), ending in a re-identification of whole records.

A token (a bigram, a year, a sex) sets the same h bit positions in every filter that holds it. So in
the coordinator's bit matrix, the columns of one frequent token all contain one and the same set of
records — a large all-ones block (a bicluster) that random columns do not make. The attacker:

1. **mines** such blocks: start from the most correlated pair of free columns, grow the column set
   greedily by the column that keeps the most records (allowing for BLIP's flips, whose rate the
   shared schema tells), and close it with every column holding (almost) all of the block's records;
2. **labels** each block with a token of its own plaintext list, by the share of records it covers
   and by how it co-occurs with the other blocks (``linear_sum_assignment``, refined a few times);
3. **re-identifies**: every plaintext record predicts which bits its labelled tokens set; each
   encoding is scored against each plaintext record by the log-likelihood ratio of its bits under
   that prediction versus chance, summed over the views attacked, and records are assigned 1-to-1;
4. **bootstraps**: the surest assignments (plus any known pairs) reveal, for every token held by
   enough of them, which bits it sets (Bayes over the anchored records); the richer predictions
   are scored again. Stage 3 alone is the classic attack; ``rounds`` > 1 is the stronger one.

The result reports both: ``details["initial_correct"]`` counts what mining alone re-identified.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import polars as pl

from .._schema import Schema
from ._result import AttackResult, scored
from ._tokens import PlaintextTokens, plaintext_tokens, view_groups
from ._views import RECORD, unpacked_bits, view_blocks

__all__ = ["FrequencyAttackSettings", "frequency_attack"]


@dataclass(frozen=True, kw_only=True)
class FrequencyAttackSettings:
    min_share: float = 0.02  # tokens and blocks covering fewer records than this are not mined
    max_blocks: int = 120  # blocks mined per view
    max_attempts: int = 600  # start pairs tried per view
    start_z: float = 4.0  # a start pair must correlate this many null standard deviations
    candidate_factor: int = 3  # labels are chosen among this many × blocks most frequent tokens
    rounds: int = 4  # 1: mined tokens only; more: bootstrap from the surest assignments
    anchor_shares: tuple[float, ...] = (0.1, 0.3, 0.6)  # share of records taken as anchors after round r
    error_floor: float = 0.02  # least probability that a predicted bit disagrees (mislabels, collisions)


@dataclass(frozen=True, eq=False)
class _Block:
    records: np.ndarray  # bool per encoded record
    positions: np.ndarray  # int64 columns


def frequency_attack(
    filters: np.ndarray,
    plaintext: pl.DataFrame,
    schema: Schema,
    *,
    rng: np.random.Generator,
    view: str = RECORD,
    known_pairs: np.ndarray | None = None,
    truth: np.ndarray | None = None,
    settings: FrequencyAttackSettings = FrequencyAttackSettings(),
) -> AttackResult:
    """Re-identify ``filters`` (the coordinator's view ``view``) from the plaintext list's tokens.

    Known pairs are optional: the classic attack uses none. ``truth`` only scores the guesses.
    """
    started = time.perf_counter()
    known = np.zeros((0, 2), dtype=np.int64) if known_pairs is None else np.asarray(known_pairs, dtype=np.int64).reshape(-1, 2)
    flip = schema.hardening.blip
    blocks = [unpacked_bits(b) for b in view_blocks(filters)]
    tokens = [plaintext_tokens(plaintext, schema, groups) for groups in view_groups(schema, view)]
    if len(blocks) != len(tokens):
        raise ValueError(f"view {view!r}: {len(blocks)} filter blocks but {len(tokens)} field-group blocks in the schema")
    n, n_plain = blocks[0].shape[0], plaintext.height

    # 1-2. mine blocks of co-set bits and label them with tokens: each view's first beliefs.
    beliefs, mined, labelled = [], 0, 0
    for bits, toks in zip(blocks, tokens, strict=True):
        found = _mined_blocks(bits, flip, settings, rng)
        labels = _labels(found, toks, n, settings)
        beliefs.append(_beliefs_from_blocks(found, labels, toks, bits.shape[1]))
        mined += len(found)
        labelled += int((labels >= 0).sum())

    # 3-4. score, assign, learn from the surest pairs, repeat.
    details: dict[str, float] = {"blocks": float(mined), "labelled": float(labelled)}
    assignment = np.full(n, -1, dtype=np.int64)
    margin = np.full(n, -np.inf)
    anchors = known
    for round_ in range(max(settings.rounds, 1)):
        if round_ > 0:
            beliefs = [_beliefs_from_anchors(bits, toks, anchors, flip, settings) for bits, toks in zip(blocks, tokens, strict=True)]
        score = sum(_log_likelihoods(bits, toks, belief, flip, settings) for bits, toks, belief in zip(blocks, tokens, beliefs, strict=True))
        rows, cols = _assigned(score)
        assignment = np.full(n, -1, dtype=np.int64)
        assignment[rows] = cols
        margin = np.full(n, -np.inf)
        margin[rows] = _margins(score, rows, cols)
        if truth is not None and round_ == 0:
            sure = margin > 0
            details["initial_correct"] = float((sure & (assignment == truth)).sum())
        if round_ < settings.rounds - 1:
            share = settings.anchor_shares[min(round_, len(settings.anchor_shares) - 1)]
            anchors = _next_anchors(known, rows, cols, margin[rows], share, n)
    del n_plain

    assignment[known[:, 0]] = known[:, 1]
    margin[known[:, 0]] = np.inf
    guesses = np.where(margin > 0, assignment, -1)
    return scored(
        "frequency", view, guesses, margin, truth=truth, known_pairs=known, seconds=time.perf_counter() - started, details=details
    )


# -- 1. mining --------------------------------------------------------------------------------------


def _allowed_misses(k: int, flip: float) -> int:
    """Positions of a true block a member may lack after BLIP (99.9% of members keep within this)."""
    if flip <= 0:
        return 0
    from scipy.stats import binom

    return int(binom.ppf(0.999, k, flip))


def _mined_blocks(bits: np.ndarray, flip: float, settings: FrequencyAttackSettings, rng: np.random.Generator) -> list[_Block]:
    n, m = bits.shape
    min_support = max(5, int(settings.min_share * n))
    dense = bits.astype(np.float32)
    fill = dense.mean(axis=0)
    spread = np.sqrt(fill * (1 - fill))
    cov = (dense.T @ dense) / n - np.outer(fill, fill)
    corr = np.divide(cov, np.outer(spread, spread), out=np.zeros_like(cov), where=np.outer(spread, spread) > 0)
    np.fill_diagonal(corr, -np.inf)
    corr[fill < settings.min_share] = -np.inf
    corr[:, fill < settings.min_share] = -np.inf
    floor = settings.start_z / np.sqrt(n)
    free = np.ones(m, dtype=bool)
    found: list[_Block] = []
    columns = bits.astype(bool)
    for _ in range(settings.max_attempts):
        if len(found) >= settings.max_blocks:
            break
        flat = int(np.argmax(corr))
        a, b = divmod(flat, m)
        if corr[a, b] < floor:
            break
        corr[a, b] = corr[b, a] = -np.inf
        block = _grown(columns, free, a, b, flip, min_support)
        if block is None:
            continue
        found.append(block)
        free[block.positions] = False
        corr[block.positions] = -np.inf
        corr[:, block.positions] = -np.inf
    del rng
    return found


def _grown(columns: np.ndarray, free: np.ndarray, a: int, b: int, flip: float, min_support: int) -> _Block | None:
    """Grow the block started by columns a and b; None when it does not hold together."""
    chosen = [a, b]
    count = columns[:, a].astype(np.int32) + columns[:, b]
    candidates = free.copy()
    candidates[[a, b]] = False
    # Grow until chance members are gone: about log2(n) positions at half fill, more under BLIP.
    target = int(np.ceil(np.log2(len(columns)))) + 2 + 3 * _allowed_misses(20, flip)
    while len(chosen) < target and candidates.any():
        k = len(chosen) + 1
        need = k - _allowed_misses(k, flip)
        already = int((count >= need).sum())
        edge = count == need - 1
        support = already + columns[edge].sum(axis=0)
        support[~candidates] = -1
        best = int(np.argmax(support))
        if support[best] < min_support:
            return None
        chosen.append(best)
        candidates[best] = False
        count += columns[:, best]
    members = count >= len(chosen) - _allowed_misses(len(chosen), flip)
    if members.sum() < min_support:
        return None
    # Closure: every free column that (nearly) all members hold, then members of the closed set.
    held = columns[members].mean(axis=0)
    keep = free & (held >= 1.0 - 2 * flip - 0.02)
    positions = np.flatnonzero(keep)
    if len(positions) < len(chosen):
        positions = np.unique(np.array(chosen))
    k = len(positions)
    members = columns[:, positions].sum(axis=1) >= k - _allowed_misses(k, flip)
    if members.sum() < min_support:
        return None
    return _Block(records=members, positions=positions)


# -- 2. labels --------------------------------------------------------------------------------------


def _labels(found: list[_Block], tokens: PlaintextTokens, n: int, settings: FrequencyAttackSettings) -> np.ndarray:
    """Token index per block (-1: none), by share and by co-occurrence with blocks labelled before.

    Blocks are labelled largest first (large shares are the least ambiguous); each later block's
    co-occurrence with the labelled ones is a fingerprint that the right token reproduces. A few
    sweeps then relabel every block given all the others, keeping labels one-to-one.
    """
    if not found:
        return np.zeros(0, dtype=np.int64)
    from scipy.optimize import linear_sum_assignment

    shares = tokens.shares
    order = np.argsort(-shares, kind="stable")
    candidates = order[shares[order] >= settings.min_share / 2][: settings.candidate_factor * len(found)]
    if len(candidates) == 0:
        return np.full(len(found), -1, dtype=np.int64)
    holds = tokens.holds[:, candidates].toarray().astype(np.float32)
    n_plain = holds.shape[0]
    token_share = holds.mean(axis=0)
    token_joint = holds.T @ holds / n_plain
    members = np.stack([blk.records for blk in found], axis=1).astype(np.float32)
    block_share = members.mean(axis=0)
    block_joint = members.T @ members / n
    sizes = np.array([len(blk.positions) for blk in found])

    def variance(p: np.ndarray) -> np.ndarray:
        return p * (1 - p) * (1 / n + 1 / n_plain) + (0.05 * p) ** 2 + 1e-6

    base = (block_share[:, None] - token_share[None, :]) ** 2 / variance(token_share)[None, :]
    # A block with far fewer positions than the token gets cannot be that token.
    base += np.where(sizes[:, None] < 0.5 * tokens.hashes[candidates][None, :], 50.0, 0.0)

    def cost(k: int, labelled: np.ndarray, chosen: np.ndarray) -> np.ndarray:
        others = labelled[labelled != k]
        if len(others) == 0:
            return base[k]
        expected = token_joint[:, chosen[others]]  # (candidates, others)
        observed = block_joint[k, others][None, :]
        return base[k] + ((observed - expected) ** 2 / variance(expected)).sum(axis=1)

    chosen = np.full(len(found), -1, dtype=np.int64)
    used = np.zeros(len(candidates), dtype=bool)
    for k in np.argsort(-block_share, kind="stable"):
        c = cost(k, np.flatnonzero(chosen >= 0), chosen)
        c[used] = np.inf
        best = int(np.argmin(c))
        if np.isfinite(c[best]):
            chosen[k] = best
            used[best] = True
    for _ in range(3):
        labelled = np.flatnonzero(chosen >= 0)
        table = np.stack([cost(k, labelled, chosen) for k in range(len(found))])
        rows, cols = linear_sum_assignment(table)
        updated = np.full(len(found), -1, dtype=np.int64)
        updated[rows] = cols
        if np.array_equal(updated, chosen):
            break
        chosen = updated
    return np.where(chosen >= 0, candidates[np.maximum(chosen, 0)], -1)


def _beliefs_from_blocks(found: list[_Block], labels: np.ndarray, tokens: PlaintextTokens, m: int) -> np.ndarray:
    """(tokens, bits) probability that a token sets a bit: 1 on its block's columns, else unknown (0)."""
    belief = np.zeros((len(tokens.hashes), m), dtype=np.float32)
    for blk, label in zip(found, labels, strict=True):
        if label >= 0:
            belief[label, blk.positions] = 1.0
    return belief


# -- 3. scores --------------------------------------------------------------------------------------


def _log_likelihoods(bits: np.ndarray, tokens: PlaintextTokens, belief: np.ndarray, flip: float, settings: FrequencyAttackSettings) -> np.ndarray:
    """(encoded, plaintext) log-likelihood ratio: same person versus chance, from one view's bits."""
    fill = np.clip(bits.mean(axis=0), 1e-3, 1 - 1e-3).astype(np.float64)
    holds = tokens.holds
    # P(bit not set by the record's believed tokens) = Π (1 - belief): a sum of logs, one product.
    log_clear = np.log1p(-np.clip(belief, 0.0, 1 - 1e-6)).astype(np.float64)
    covered = 1.0 - np.exp(np.asarray(holds @ log_clear))  # (plaintext, bits)
    floor = max(settings.error_floor, flip)
    set_if_same = covered * (1.0 - floor) + (1.0 - covered) * fill[None, :]
    gain_set = np.log(set_if_same / fill[None, :])
    gain_clear = np.log((1.0 - set_if_same) / (1.0 - fill[None, :]))
    x = bits.astype(np.float64)
    return x @ gain_set.T + (1.0 - x) @ gain_clear.T


def _beliefs_from_anchors(bits: np.ndarray, tokens: PlaintextTokens, anchors: np.ndarray, flip: float, settings: FrequencyAttackSettings) -> np.ndarray:
    """Posterior that each token sets each bit, from the anchored (encoding, plaintext) pairs."""
    m = bits.shape[1]
    if len(anchors) == 0:
        return np.zeros((len(tokens.hashes), m), dtype=np.float32)
    x = bits[anchors[:, 0]].astype(np.float32)
    holds = tokens.holds[anchors[:, 1]]
    held = np.asarray(holds.sum(axis=0)).ravel()  # anchored records holding each token
    both = np.asarray((holds.T @ x))  # (tokens, bits): of those, how many have the bit set
    fill = np.clip(bits.mean(axis=0), 1e-3, 1 - 1e-3)
    keep = 1.0 - max(flip, settings.error_floor / 2)
    prior = 1.0 - (1.0 - 1.0 / m) ** tokens.hashes.astype(np.float64)
    log_odds = (
        np.log(prior / (1 - prior))[:, None]
        + both * np.log(keep / fill)[None, :]
        + (held[:, None] - both) * np.log((1 - keep) / (1 - fill))[None, :]
    )
    return (1.0 / (1.0 + np.exp(-np.clip(log_odds, -50, 50)))).astype(np.float32)


# -- 4. assignment ----------------------------------------------------------------------------------


def _assigned(score: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    from scipy.optimize import linear_sum_assignment

    return linear_sum_assignment(score, maximize=True)


def _margins(score: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    chosen = score[rows, cols]
    row_rival = score[rows].copy()
    row_rival[np.arange(len(rows)), cols] = -np.inf
    col_rival = score[:, cols].T.copy()
    col_rival[np.arange(len(rows)), rows] = -np.inf
    return chosen - np.maximum(row_rival.max(axis=1), col_rival.max(axis=1))


def _next_anchors(known, rows, cols, margins, share, n) -> np.ndarray:
    is_known = np.zeros(n, dtype=bool)
    is_known[known[:, 0]] = True
    order = np.argsort(-margins)
    order = order[(margins[order] > 0) & ~is_known[rows[order]]][: int(share * n)]
    return np.concatenate([known, np.stack([rows[order], cols[order]], axis=1)]).astype(np.int64)
