"""Frequency and pattern-mining attack on bit positions (after Christen, Ranbaduge, Vatsalan &
Schnell, PAKDD 2018 / TKDE 2019), ending in a re-identification of whole records.

A token (a bigram, a year, a sex) sets the same h bit positions in every filter that holds it. So in
the coordinator's bit matrix, the columns of one frequent token all contain one and the same set of
records — a large all-ones block (a bicluster) that random columns do not make. The attacker:

1. **mines** such blocks: start from the most correlated pair of columns, grow the column set
   greedily by the enriched column that keeps the most records, and close it with every column
   holding (almost) all of the block's records. BLIP's flips and XOR-folding's cancellations act as
   lost bits at a rate the shared schema (and the folded fill) gives away; under balancing, the
   complement of each bit is set aside;
2. **labels** each block with a token of its own plaintext list, by the share of records it covers
   and by how it co-occurs with the blocks labelled before (largest first, then a few
   ``linear_sum_assignment`` sweeps); blocks that fit no token, or no token clearly, stay unlabelled;
3. **re-identifies**: every plaintext record predicts which bits its labelled tokens set; each
   encoding is scored against each plaintext record by the log-likelihood ratio of its bits under
   that prediction versus chance, summed over the views attacked; mutual-best pairs are guesses;
4. **bootstraps**: the surest assignments (plus any known pairs) reveal, for every token held by
   enough of them, which bits it sets (Bayes over the anchored records, then explaining away); the
   richer predictions are scored again. Stage 3 alone is the classic attack; ``rounds`` > 1 is
   the stronger one, and the result reports both: ``details["initial_correct"]`` counts what
   mining alone re-identified (when the truth is given).

Known pairs, when given, are anchors from the start; the classic attack has none.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass

import numpy as np
import polars as pl

from linkage.attacks._matching import mutual_best, surest
from linkage.attacks._plaintext import PlaintextTokens, plaintext_tokens, view_groups
from linkage.attacks._result import AttackResult, scored
from linkage.attacks._views import RECORD, unpacked_bits, view_blocks
from linkage.records._schema import Schema

__all__ = ["FrequencyAttackSettings", "frequency_attack"]


@dataclass(frozen=True, kw_only=True)
class FrequencyAttackSettings:
    min_share: float = 0.02  # tokens and blocks covering fewer records than this are not mined
    max_blocks: int = 120  # blocks mined per view
    max_attempts: int = 600  # start pairs tried per view
    mining_rows: int = 2000  # blocks are mined on a sample of this many encodings (members: on all)
    start_z: float = 4.0  # a start pair must correlate this many null standard deviations
    candidate_factor: int = 3  # labels are chosen among this many × blocks most frequent tokens
    rounds: int = 6  # 1: mined tokens only; more: bootstrap from the surest assignments
    anchor_shares: tuple[float, ...] = (0.1, 0.3, 0.5, 0.7, 0.8)  # share of records taken as anchors after round r
    error_floor: float = 0.02  # least probability that a predicted bit disagrees (mislabels, collisions)
    explaining_rounds: int = 3  # passes of explaining away (each learnt token can unlock another)
    anchor_error: float = 0.0  # share of anchors assumed wrong when counting which bits a token sets
    least_belief: float = 0.3  # beliefs below this count as none (many faint ones would blur every prediction)


_ENRICHED_Z = 4.0  # a column joins a block only if it is this enriched among the block's records
_MISFIT_CAP = 16.0  # labels: most one co-occurrence may count against a token, in squared z
_LABEL_GAP = 6.0  # labels: a block keeps its label only if the runner-up token costs this much more
_LEADERS = 3  # labels: the largest blocks whose first labels are searched jointly ...
_LEADER_OPTIONS = 3  # ... among this many likeliest tokens each
_ANCHORS_OVERRULE = 5  # anchored records holding a token that overrule its mined bits
_MISFIT_DROPPED = 4.0  # labels: blocks whose mean misfit per labelled block exceeds this are dropped
_CORE_KEPT = 0.85  # ... and keeps this share of the block's records beyond chance members
_COMPLEMENT_SLACK = 0.6  # columns this close to correlation -1 are a bit and its complement (BLIP blurs it)
_GROWTH_FLOOR = 3  # fewest records a growing block may keep


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
    blocks = [unpacked_bits(b) for b in view_blocks(filters)]
    if schema.hardening.balance and not schema.hardening.xor_fold:
        blocks = [bits[:, _originals(bits)] for bits in blocks]
    tokens = [plaintext_tokens(plaintext, schema, groups) for groups in view_groups(schema, view)]
    if len(blocks) != len(tokens):
        raise ValueError(f"view {view!r}: {len(blocks)} filter blocks but {len(tokens)} field-group blocks in the schema")
    n = blocks[0].shape[0]

    # 1-2. mine blocks of co-set bits and label them with tokens: each view's first beliefs.
    beliefs, mined, labelled = [], 0, 0
    flips = [_loss_rate(bits, schema) for bits in blocks]
    for bits, toks, flip in zip(blocks, tokens, flips, strict=True):
        sample = np.sort(rng.choice(n, settings.mining_rows, replace=False)) if n > settings.mining_rows else np.arange(n)
        found = _mined_blocks(bits[sample], flip, int(toks.hashes.min()) if len(toks.hashes) else 1, settings)
        found = [_on_all_records(blk, bits, flip) for blk in found]
        labels = _labels(found, toks, n, settings, balanced=schema.hardening.balance and not schema.hardening.xor_fold)
        belief = _beliefs_from_blocks(found, labels, toks, bits.shape[1])
        if len(known):
            belief = np.maximum(belief, _beliefs_from_anchors(bits, toks, known, flip, settings))
        beliefs.append(belief)
        mined += len(found)
        labelled += int((labels >= 0).sum())

    # 3-4. score, guess, learn from the surest guesses, repeat.
    mined_beliefs = beliefs
    details: dict[str, float] = {"blocks": float(mined), "labelled": float(labelled)}
    anchors = known
    guesses = np.full(n, -1, dtype=np.int64)
    margin = np.full(n, -np.inf)
    for round_ in range(max(settings.rounds, 1)):
        if round_ > 0:
            beliefs = [
                _merged(first, _beliefs_from_anchors(bits, toks, anchors, flip, settings), toks, anchors)
                for bits, toks, flip, first in zip(blocks, tokens, flips, mined_beliefs, strict=True)
            ]
        score = sum(
            (
                _log_likelihoods(bits, toks, belief, flip, settings)
                for bits, toks, belief, flip in zip(blocks, tokens, beliefs, flips, strict=True)
            ),
            start=np.zeros((n, tokens[0].holds.shape[0])),
        )
        rows, cols, margins = mutual_best(score)
        guesses = np.full(n, -1, dtype=np.int64)
        guesses[rows] = cols
        margin = np.full(n, -np.inf)
        margin[rows] = margins
        if truth is not None and round_ == 0:
            details["initial_correct"] = float((guesses[rows] == np.asarray(truth)[rows]).sum())
        if round_ < settings.rounds - 1:
            share = settings.anchor_shares[min(round_, len(settings.anchor_shares) - 1)]
            anchors = surest(known, rows, cols, margins, int(share * n))

    guesses[known[:, 0]] = known[:, 1]
    margin[known[:, 0]] = np.inf
    return scored(
        "frequency", view, guesses, margin, truth=truth, known_pairs=known, seconds=time.perf_counter() - started, details=details
    )


def _loss_rate(bits: np.ndarray, schema: Schema) -> float:
    """How often a token's bit reads 0 in a record that holds the token, as the schema implies.

    BLIP flips each bit with its probability. XOR-folding clears a token's bit whenever the bit it
    is folded onto is set too: as often as the unfolded fill q, which the folded fill 2q(1 - q)
    gives away. Both act on the attack like a loss of bits.
    """
    loss = 0.0
    if schema.hardening.xor_fold:
        folded = float(bits.mean())
        loss = (1.0 - np.sqrt(max(1.0 - 2.0 * folded, 0.0))) / 2.0
    blip = schema.hardening.blip
    return min(loss + blip - 2 * loss * blip, 0.45)


def _originals(bits: np.ndarray) -> np.ndarray:
    """Columns to keep of a balanced filter: the sparser of each bit-and-complement pair.

    Balancing appends every bit's complement (and permutes). A complement is set where its bit is
    not, so it holds "records without these tokens", which no token explains; the sparser column of
    a pair is the original for all but the densest bits. Pairs are the most anti-correlated columns
    (exactly -1 without BLIP).
    """
    dense = bits.astype(np.float32)
    fill = dense.mean(axis=0)
    spread = np.sqrt(fill * (1 - fill))
    corr = ((dense.T @ dense) / len(bits) - np.outer(fill, fill)) / np.maximum(np.outer(spread, spread), 1e-9)
    np.fill_diagonal(corr, np.inf)
    m = bits.shape[1]
    partner = np.argmin(corr, axis=1)
    paired = (partner[partner] == np.arange(m)) & (corr[np.arange(m), partner] < -1.0 + _COMPLEMENT_SLACK)
    denser = paired & ((fill > fill[partner]) | ((fill == fill[partner]) & (np.arange(m) > partner)))
    return np.flatnonzero(~denser)


# -- 1. mining --------------------------------------------------------------------------------------


def _mined_blocks(bits: np.ndarray, flip: float, fewest_hashes: int, settings: FrequencyAttackSettings) -> list[_Block]:
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
    usable = fill >= settings.min_share
    min_chosen = max(3, int(0.6 * fewest_hashes))
    found: list[_Block] = []
    columns = bits.astype(bool)
    for _ in range(settings.max_attempts):
        if len(found) >= settings.max_blocks:
            break
        a, b = divmod(int(np.argmax(corr)), m)
        if corr[a, b] < floor:
            break
        corr[a, b] = corr[b, a] = -np.inf
        block = _grown(columns, usable, a, b, flip, min_support, min_chosen, fill.astype(np.float64))
        if block is None:
            continue
        # Bits are shared by many tokens, so a column may serve several blocks; pairs within a
        # block are not tried again, and a block that repeats an earlier one is dropped.
        corr[np.ix_(block.positions, block.positions)] = -np.inf
        if any(_repeats(block, other) for other in found):
            continue
        found.append(block)
    return found


def _repeats(block: _Block, other: _Block) -> bool:
    """Whether ``block`` is (a fragment of) ``other``: mostly its records, mostly its columns."""
    shared_records = int((block.records & other.records).sum())
    smaller = max(min(int(block.records.sum()), int(other.records.sum())), 1)
    shared_columns = len(np.intersect1d(block.positions, other.positions))
    return shared_records / smaller > 0.8 and shared_columns / max(min(len(block.positions), len(other.positions)), 1) > 0.5


def _grown(
    columns: np.ndarray, usable: np.ndarray, a: int, b: int, flip: float, min_support: int, min_chosen: int, fill: np.ndarray
) -> _Block | None:
    """Grow the block started by columns a and b; None when it does not hold together.

    Growth: each step adds, among the columns enriched in the block's records (their count against
    what their overall fill predicts, in standard deviations), the one the most of them hold — a
    column of the same token keeps every true member (but BLIP's flips) and about half the chance
    ones. When the best column would lose more of the block's core than that, the token is used
    up. Members are records holding every chosen column, a clean if (under BLIP) partial sample.
    Closure: the columns that (nearly) all those members hold are the block; its members are then
    the records whose bits on it are likelier under "holds the token" than under chance.
    """
    chosen = [a, b]
    members = columns[:, a] & columns[:, b]
    candidates = usable.copy()
    candidates[[a, b]] = False
    while candidates.any():
        current = int(members.sum())
        support = columns[members].sum(axis=0).astype(np.float64)
        z = (support - current * fill) / np.sqrt(np.maximum(current * fill * (1 - fill), 1e-9))
        support[~candidates | (z < _ENRICHED_Z)] = -1.0
        best = int(np.argmax(support))
        # Records that hold the chosen columns by chance: fewer with every column added.
        chance = len(columns) * float(np.prod(fill[chosen]))
        floor = max(_GROWTH_FLOOR, min_support * (1 - flip) ** len(chosen))
        if support[best] < max(floor, _CORE_KEPT * (1 - flip) * (current - chance)):
            break
        chosen.append(best)
        candidates[best] = False
        members &= columns[:, best]
    # A token's columns keep its records together for as many columns as it has; what falls apart
    # sooner is no token (under balancing: the complements of a frequent token's bits).
    if len(chosen) < min_chosen or members.sum() < _GROWTH_FLOOR:
        return None
    positions = np.array(chosen)
    for _ in range(3):
        held = columns[members].mean(axis=0)
        spread = np.sqrt(flip * (1 - flip) / max(int(members.sum()), 1))
        count = int(members.sum())
        z = (held - fill) * np.sqrt(count / np.maximum(fill * (1 - fill), 1e-9))
        keep = usable & (held >= 1.0 - flip - 3 * spread - 0.02) & (z >= _ENRICHED_Z)
        keep[positions] = True
        positions = np.flatnonzero(keep)
        members = _members(columns[:, positions], fill[positions], flip, float(members.mean()))
        if members.sum() < min_support:
            return None
    return _Block(records=members, positions=positions)


def _on_all_records(block: _Block, bits: np.ndarray, flip: float) -> _Block:
    """A block mined on a sample, with its members among all the encodings."""
    columns = bits[:, block.positions]
    return _Block(records=_members(columns, columns.mean(axis=0), flip, float(block.records.mean())), positions=block.positions)


def _members(bits: np.ndarray, fill: np.ndarray, flip: float, share: float) -> np.ndarray:
    """Records whose bits on a block are likelier under "holds its token" (each bit set but for
    BLIP's flips) than under chance (each bit set at its column's fill), at the block's prior."""
    keep = 1.0 - max(flip, 1e-4)
    fill = np.clip(fill, 1e-3, 1 - 1e-3)
    gain_set = np.log(keep / fill)
    gain_clear = np.log((1 - keep) / (1 - fill))
    x = bits.astype(np.float64)
    score = x @ gain_set + (1 - x) @ gain_clear
    share = min(max(share, 1e-3), 0.999)
    holds: np.ndarray = score > np.log((1 - share) / share)
    return holds


# -- 2. labels --------------------------------------------------------------------------------------


def _labels(
    found: list[_Block], tokens: PlaintextTokens, n: int, settings: FrequencyAttackSettings, *, balanced: bool = False
) -> np.ndarray:
    """Token index per block (-1: none), by share and by co-occurrence with blocks labelled before.

    Blocks are labelled largest first (large shares are the least ambiguous); each later block's
    co-occurrence with the labelled ones is a fingerprint that the right token reproduces. The
    first few labels are searched jointly (the labelling that fits best overall wins), a few sweeps
    then relabel every block given all the others, keeping labels one-to-one, and blocks that fit
    no token, or none clearly, are left unlabelled.
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
        variance: np.ndarray = p * (1 - p) * (1 / n + 1 / n_plain) + (0.1 * p) ** 2 + 1e-6
        return variance

    base = (block_share[:, None] - token_share[None, :]) ** 2 / variance(token_share)[None, :]
    # A block with far fewer positions than the token gets cannot be that token (under balancing,
    # the token's denser bits were set aside as complements: a block may show only a few).
    least = (0.2 if balanced else 0.7) * tokens.hashes[candidates]
    base += np.where(sizes[:, None] < least[None, :], 50.0, 0.0)

    def costs(blocks: np.ndarray, labelled: np.ndarray, chosen: np.ndarray) -> np.ndarray:
        """(blocks, candidates): share misfit plus co-occurrence misfit with the labelled blocks.

        Each labelled block's term is capped, so that one wrong label cannot outvote the rest.
        """
        table: np.ndarray = base[blocks].copy()
        if len(labelled) == 0:
            return table
        expected = token_joint[:, chosen[labelled]]  # (candidates, labelled)
        observed = block_joint[np.ix_(blocks, labelled)]  # (blocks, labelled)
        misfit = (observed[:, None, :] - expected[None, :, :]) ** 2 / variance(expected)[None, :, :]
        misfit = np.minimum(misfit, _MISFIT_CAP)
        itself = blocks[:, None] == labelled[None, :]  # a block says nothing about itself
        fitted: np.ndarray = table + np.where(itself[:, None, :], 0.0, misfit).sum(axis=2)
        return fitted

    def greedy(active: np.ndarray, forced: dict[int, int]) -> np.ndarray:
        # Largest blocks first: their shares are the least ambiguous, and they fingerprint the rest.
        chosen = np.full(len(found), -1, dtype=np.int64)
        used = np.zeros(len(candidates), dtype=bool)
        for k in active[np.argsort(-block_share[active], kind="stable")]:
            if k in forced:
                token = forced[k]
            else:
                table = costs(np.array([k]), np.flatnonzero(chosen >= 0), chosen)[0]
                table[used] = np.inf
                token = int(np.argmin(table))
                if not np.isfinite(table[token]):
                    continue
            chosen[k] = token
            used[token] = True
        return chosen

    def total(chosen: np.ndarray) -> float:
        labelled = np.flatnonzero(chosen >= 0)
        if len(labelled) == 0:
            return np.inf
        return float(costs(labelled, labelled, chosen)[np.arange(len(labelled)), chosen[labelled]].sum())

    def labelled_within(active: np.ndarray) -> np.ndarray:
        # The first labels have nothing but their shares to go by, and one early mistake shifts all
        # later ones: try the likeliest few tokens for each of the largest blocks and keep the
        # labelling whose co-occurrences fit best overall.
        leaders = active[np.argsort(-block_share[active], kind="stable")][:_LEADERS]
        options = [np.argsort(base[k], kind="stable")[:_LEADER_OPTIONS] for k in leaders]
        best, best_cost = None, np.inf
        for combo in itertools.product(*options):
            if len(set(combo)) < len(combo):
                continue
            chosen = greedy(active, dict(zip(leaders.tolist(), (int(c) for c in combo), strict=True)))
            cost = total(chosen)
            if cost < best_cost:
                best, best_cost = chosen, cost
        chosen = best if best is not None else greedy(active, {})
        for _ in range(3):
            labelled = np.flatnonzero(chosen >= 0)
            rows, cols = linear_sum_assignment(costs(active, labelled, chosen))
            updated = np.full(len(found), -1, dtype=np.int64)
            updated[active[rows]] = cols
            if np.array_equal(updated, chosen):
                break
            chosen = updated
        return chosen

    # Blocks that fit no token (complements under balancing, mixtures) would mislead the others'
    # labels: drop the worst-fitting ones, by their mean misfit per labelled block, and relabel.
    active = np.arange(len(found))
    chosen = labelled_within(active)
    for _ in range(3):
        labelled = np.flatnonzero(chosen >= 0)
        if len(labelled) == 0:
            break
        fit = costs(labelled, labelled, chosen)[np.arange(len(labelled)), chosen[labelled]] / len(labelled)
        misfit = labelled[fit > _MISFIT_DROPPED]
        if len(misfit) == 0:
            break
        active = np.setdiff1d(active, misfit)
        chosen = labelled_within(active)
    # Keep the labels that clearly beat every other token: a doubtful label misleads round one.
    labelled = np.flatnonzero(chosen >= 0)
    if len(labelled):
        table = costs(labelled, labelled, chosen)
        mine = table[np.arange(len(labelled)), chosen[labelled]]
        table[np.arange(len(labelled)), chosen[labelled]] = np.inf
        doubtful = labelled[table.min(axis=1) - mine < _LABEL_GAP]
        chosen[doubtful] = -1
    return np.where(chosen >= 0, candidates[np.maximum(chosen, 0)], -1)


def _beliefs_from_blocks(found: list[_Block], labels: np.ndarray, tokens: PlaintextTokens, m: int) -> np.ndarray:
    """(tokens, bits) probability that a token sets a bit: 1 on its block's columns, else unknown (0)."""
    belief = np.zeros((len(tokens.hashes), m), dtype=np.float32)
    for blk, label in zip(found, labels, strict=True):
        if label >= 0:
            belief[label, blk.positions] = 1.0
    return belief


# -- 3. scores --------------------------------------------------------------------------------------


def _log_likelihoods(
    bits: np.ndarray, tokens: PlaintextTokens, belief: np.ndarray, flip: float, settings: FrequencyAttackSettings
) -> np.ndarray:
    """(encoded, plaintext) log-likelihood ratio: same person versus chance, from one view's bits."""
    fill = np.clip(bits.mean(axis=0), 1e-3, 1 - 1e-3).astype(np.float64)
    holds = tokens.holds
    # P(bit not set by the record's believed tokens) = Π (1 - belief): a sum of logs, one product.
    log_clear = np.log1p(-np.clip(belief, 0.0, 1 - 1e-6)).astype(np.float64)
    covered = 1.0 - np.exp(np.asarray(holds @ log_clear))  # (plaintext, bits)
    floor = max(settings.error_floor, flip)
    # A bit no learnt token of the record explains is set only by its unlearnt tokens (each sets
    # h bits, of which the learnt share is known) or a flip: that rate, per plaintext record.
    m = bits.shape[1]
    learnt = np.clip(belief.sum(axis=1) / tokens.hashes, 0.0, 1.0)
    log_unexplained = (1.0 - learnt) * np.log1p(-tokens.hashes / m)
    residual = 1.0 - (1.0 - floor) * np.exp(np.asarray(holds @ log_unexplained).ravel())  # (plaintext,)
    set_if_same = covered * (1.0 - floor) + (1.0 - covered) * residual[:, None]
    gain_set = np.log(set_if_same / fill[None, :])
    gain_clear = np.log((1.0 - set_if_same) / (1.0 - fill[None, :]))
    # Σ_b x·set + (1 - x)·clear = x·(set - clear) + Σ_b clear: one product, in float32.
    x = bits.astype(np.float32)
    gains: np.ndarray = x @ (gain_set - gain_clear).astype(np.float32).T + gain_clear.sum(axis=1).astype(np.float32)[None, :]
    return gains


def _beliefs_from_anchors(
    bits: np.ndarray, tokens: PlaintextTokens, anchors: np.ndarray, flip: float, settings: FrequencyAttackSettings
) -> np.ndarray:
    """Posterior that each token sets each bit, from the anchored (encoding, plaintext) pairs.

    First by counting: a bit of the token is set in every anchored record that holds it (but for
    the loss rate), other bits at their column's fill. Then by explaining away, for tokens too rare
    to count: in an anchored record whose every other token is learnt, the set bits those tokens do
    not explain are the remaining token's (one record can be enough).
    """
    m = bits.shape[1]
    if len(anchors) == 0:
        return np.zeros((len(tokens.hashes), m), dtype=np.float32)
    x = bits[anchors[:, 0]].astype(np.float32)
    holds = tokens.holds[anchors[:, 1]]
    held = np.asarray(holds.sum(axis=0)).ravel()  # anchored records holding each token
    both = np.asarray(holds.T @ x)  # (tokens, bits): of those, how many have the bit set
    fill = np.clip(bits.mean(axis=0), 1e-3, 1 - 1e-3)
    # An anchor may be wrong (a share anchor_error of them): its bit is then set at chance.
    keep = (1.0 - max(flip, settings.error_floor / 2)) * (1 - settings.anchor_error) + settings.anchor_error * fill
    prior = 1.0 - (1.0 - 1.0 / m) ** tokens.hashes.astype(np.float64)
    prior_odds = np.log(prior / (1 - prior))[:, None]
    log_odds = (
        prior_odds + both * np.log(keep / fill)[None, :] + (held[:, None] - both) * np.log((1 - keep) / (1 - fill))[None, :]
    )
    belief = _sigmoid(log_odds)

    lost = max(flip, settings.error_floor / 4)
    for _ in range(settings.explaining_rounds):
        learnt = (belief >= 0.5).sum(axis=1) >= 0.5 * tokens.hashes
        unknown = (~learnt).astype(np.float32)
        lone = np.flatnonzero(np.asarray(holds @ unknown).ravel() == 1)  # anchors with one token unlearnt
        if len(lone) == 0:
            break
        log_clear = np.log1p(-np.clip(belief * learnt[:, None], 0.0, 1 - 1e-6))
        uncovered = (np.asarray(holds[lone] @ log_clear) > np.log(0.5)).astype(np.float32)  # (lone, bits)
        which = holds[lone].multiply(unknown[None, :]).tocsr()  # (lone, tokens): the one unlearnt token
        seen = np.asarray(which.T @ uncovered)  # (tokens, bits): lone anchors where the bit is visible
        set_ = np.asarray(which.T @ (uncovered * x[lone]))  # ... and set
        # A visible bit outside the token is set only by a flip (or an unlearnt collision).
        chance = max(flip, settings.error_floor / 2)
        odds = prior_odds + set_ * np.log((1 - lost) / chance) + (seen - set_) * np.log(lost / (1 - chance))
        fresh = (~learnt) & (np.asarray(which.sum(axis=0)).ravel() > 0)
        if not fresh.any():
            break
        belief[fresh] = _sigmoid(odds[fresh])
    return np.where(belief >= settings.least_belief, belief, 0.0).astype(np.float32)


def _merged(mined: np.ndarray, learnt: np.ndarray, tokens: PlaintextTokens, anchors: np.ndarray) -> np.ndarray:
    """What the anchors teach, and what mining found for tokens too few anchors hold to tell."""
    held = np.asarray(tokens.holds[anchors[:, 1]].sum(axis=0)).ravel() if len(anchors) else np.zeros(len(tokens.hashes))
    enough = held >= _ANCHORS_OVERRULE
    return np.where(enough[:, None], learnt, np.maximum(mined, learnt))


def _sigmoid(log_odds: np.ndarray) -> np.ndarray:
    probability: np.ndarray = 1.0 / (1.0 + np.exp(-np.clip(log_odds, -50, 50)))
    return probability
