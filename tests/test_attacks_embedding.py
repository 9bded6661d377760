"""The scalable attacks: embedding graph matching, the XOR-linearity attack, and the attacks on
match-key tokens. Each must break what it should break (the controls), and find nothing where
there is nothing to find.

Data: synthetic people from linkage.testing._synthetic (seeded), one clean record each, on both lists
(100% overlap), 5% known pairs unless a test says otherwise; graphs and token columns built here.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import polars as pl
import pytest
import scipy.sparse as sparse

from linkage import HardeningSpec, Schema, Secret, encode
from linkage.attacks import (
    NO_TOKEN,
    PLACEHOLDER_KEYS,
    AttackScenario,
    EmbeddingAttackSettings,
    aligned_graph_matching,
    attack_scenario,
    embedding_attack,
    match_key_view,
    people_needed,
    scope_graph_attack,
    token_frequency_attack,
    token_graph_attack,
    view_filters,
    xor_linearity_attack,
)
from linkage.attacks._keyed import plaintext_match_keys, shared_token_pairs
from linkage.attacks._similarity import knn_graph, mutual_best_pairs, top_pairs
from linkage.testing._synthetic import generate_agencies

COLUMNS = ["given_name", "middle_name", "surname", "date_of_birth", "sex", "address", "city", "postcode"]
SECRET = Secret(bytes(range(32)))
SETTINGS = EmbeddingAttackSettings(neighbours=20, window=10, dimensions=64)


@pytest.fixture(scope="module")
def scenario() -> AttackScenario:
    rng = np.random.default_rng(11)
    people = generate_agencies(people_needed(800, 1.0), rng=rng).people
    return attack_scenario(people, COLUMNS, records=800, overlap=1.0, known_share=0.05, rng=rng)


def schema(*, fold: bool) -> Schema:
    return dataclasses.replace(Schema.for_columns(COLUMNS, project="embedding-test"), hardening=HardeningSpec(xor_fold=fold))


# -- building blocks ------------------------------------------------------------------------------


def test_blockwise_top_pairs_agree_with_the_dense_matrix():
    rng = np.random.default_rng(0)
    left, right = rng.standard_normal((50, 8)), rng.standard_normal((40, 8))
    dense = left @ right.T
    top = top_pairs(left, right, 3)
    assert np.array_equal(top.cols[:, 0], dense.argmax(axis=1))
    assert np.array_equal(top.col_best_row, dense.argmax(axis=0))
    assert np.allclose(top.col_second, np.sort(dense, axis=0)[-2], atol=1e-5)
    rows, cols, margins = mutual_best_pairs(top)
    assert np.all(dense.argmax(axis=0)[cols] == rows) and np.all(margins > 0)


def test_knn_graph_is_symmetric_and_keeps_the_nearest():
    bits = (np.random.default_rng(1).random((60, 128)) < 0.3).astype(np.uint8)
    bits[1] = bits[0]  # a twin: its nearest neighbour at Dice 1
    graph = knn_graph(bits, 3)
    assert (graph != graph.T).nnz == 0
    assert graph[0, 1] == pytest.approx(1.0)
    assert graph.diagonal().sum() == 0


def test_embedding_matching_recovers_a_planted_permutation():
    rng = np.random.default_rng(2)
    n = 400
    points = rng.random((n, 2))
    near = knn_graph((rng.random((n, 64)) < 0.2).astype(np.uint8), 2)  # some randomness
    distance = ((points[:, None] - points[None]) ** 2).sum(axis=2)
    np.fill_diagonal(distance, np.inf)
    neighbours = np.argsort(distance, axis=1)[:, :8]
    graph = sparse.csr_matrix((np.ones(n * 8), (np.repeat(np.arange(n), 8), neighbours.ravel())), shape=(n, n))
    graph = (graph.maximum(graph.T) + near.maximum(near.T)).tocsr()
    permutation = rng.permutation(n)  # node i of A is node permutation[i] of B
    inverse = np.argsort(permutation)
    permuted = graph[inverse][:, inverse].tocsr()
    known_rows = rng.choice(n, 20, replace=False)
    known = np.stack([known_rows, permutation[known_rows]], axis=1)
    match = aligned_graph_matching(graph, permuted, known, settings=SETTINGS, rng=np.random.default_rng(3))
    guessed = match.guesses >= 0
    assert (match.guesses[guessed] == permutation[guessed]).sum() >= 0.9 * n


# -- the embedding attack -------------------------------------------------------------------------


def test_embedding_attack_breaks_unhardened_filters_the_control(scenario):
    plain = schema(fold=False)
    filters = view_filters(encode(scenario.encoded, plain, SECRET).encodings, "record")
    result = embedding_attack(
        filters,
        scenario.plaintext,
        plain,
        known_pairs=scenario.known_pairs,
        rng=np.random.default_rng(1),
        truth=scenario.truth,
        settings=SETTINGS,
    )
    assert result.reidentified > 0.5 and result.precision > 0.9
    assert result.details["unrefined_correct"] <= result.correct  # refinement helps


def test_embedding_attack_guesses_before_it_sees_the_truth(scenario):
    plain = schema(fold=False)
    filters = view_filters(encode(scenario.encoded, plain, SECRET).encodings, "record")
    run = lambda truth: embedding_attack(  # noqa: E731
        filters,
        scenario.plaintext,
        plain,
        known_pairs=scenario.known_pairs,
        rng=np.random.default_rng(1),
        truth=truth,
        settings=SETTINGS,
    )
    shuffled = scenario.truth.copy()
    movable = np.setdiff1d(np.arange(len(shuffled)), scenario.known_pairs[:, 0])
    shuffled[movable] = np.random.default_rng(0).permutation(shuffled[movable])
    honest, blind = run(scenario.truth), run(shuffled)
    assert np.array_equal(honest.guesses, blind.guesses)
    assert honest.reidentified > 0.5 > 0.05 > blind.reidentified


# -- the XOR-linearity attack ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def well_known() -> AttackScenario:
    # A third of the people known: enough anchors to learn the keyed map at this small size.
    rng = np.random.default_rng(12)
    people = generate_agencies(people_needed(600, 1.0), rng=rng).people
    return attack_scenario(people, COLUMNS, records=600, overlap=1.0, known_share=0.3, rng=rng)


@pytest.mark.parametrize("fold", [False, True], ids=["unfolded-control", "folded"])
def test_xor_attack_learns_the_keyed_map_and_beats_chance(well_known, fold):
    chosen = schema(fold=fold)
    filters = view_filters(encode(well_known.encoded, chosen, SECRET).encodings, "record")
    result = xor_linearity_attack(
        filters,
        well_known.plaintext,
        chosen,
        known_pairs=well_known.known_pairs,
        rng=np.random.default_rng(0),
        truth=well_known.truth,
    )
    chance = (result.guessed or 0) / len(well_known.truth)  # a random guess is right 1 time in n
    assert result.correct is not None and result.correct >= 10 * max(chance, 1.0)
    assert result.precision > 0.5
    if not fold:
        assert result.reidentified > 0.9


# -- the match-key attacks ------------------------------------------------------------------------


def test_plaintext_match_keys_are_keyed_and_mark_missing_parts():
    frame = pl.DataFrame({"surname": ["Smith", "smith ", "", "Jones"], "date_of_birth": ["1990-01-02"] * 4})
    keys = {"surname+dob": ("surname", "date_of_birth")}
    ours = plaintext_match_keys(frame, keys, key=b"k" * 32)["surname+dob"]
    theirs = plaintext_match_keys(frame, keys, key=b"j" * 32)["surname+dob"]
    assert ours[0] == ours[1] != ours[3] and ours[2] == NO_TOKEN
    assert ours[0] != theirs[0]  # another key, other tokens
    pairs, counts = shared_token_pairs({"a": ours, "b": ours})
    assert pairs.tolist() == [[0, 1]] and counts.tolist() == [2.0]


def keyed(plain: dict[str, np.ndarray], rng: np.random.Generator) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """The coordinator's tokens for the attacker's values (another key: other numbers), shuffled; and
    the truth (encoded row i is plaintext row truth[i])."""
    truth = rng.permutation(len(next(iter(plain.values()))))
    return {k: (v * 7919 + 13)[truth] for k, v in plain.items()}, truth


def test_token_frequency_attack_reidentifies_unique_frequencies():
    # Key "group": households of 1, 1, 2, 3, 4 and 5 people (counts 2-5 unique, 1 tied).
    # Key "member": a person's place in the household, counts 6, 4, 3, 2, 1 (all unique; 1 too rare).
    sizes = [1, 1, 2, 3, 4, 5]
    group = np.repeat(np.arange(len(sizes)), sizes).astype(np.int64)
    member = np.concatenate([np.arange(s) for s in sizes]).astype(np.int64)
    encoded, truth = keyed({"group": group, "member": member}, np.random.default_rng(4))
    result = token_frequency_attack(encoded, {"group": group, "member": member}, truth=truth)
    # Re-identified: members 0-3 of the households of 2-5 (both keys aligned, one candidate left).
    assert (result.correct, result.guessed) == (2 + 3 + 4 + 4, 2 + 3 + 4 + 4)
    alone = token_frequency_attack({"group": encoded["group"]}, {"group": group}, truth=truth)
    assert alone.guessed == 0  # one key narrows each person to a household, not to one person


def test_token_frequency_attack_finds_nothing_when_tokens_are_uniform():
    pairs = np.repeat(np.arange(50), 2).astype(np.int64)  # every value held by two records
    encoded, truth = keyed({"k": pairs}, np.random.default_rng(5))
    assert token_frequency_attack(encoded, {"k": pairs}, truth=truth).guessed == 0
    unique = np.arange(100, dtype=np.int64)  # every value held by one record
    encoded, truth = keyed({"k": unique}, np.random.default_rng(6))
    assert token_frequency_attack(encoded, {"k": unique}, truth=truth).guessed == 0


def test_token_graph_attacks_break_coarse_keys_and_not_the_placeholder_keys(scenario):
    coarse = {"surname": ("surname",), "dob": ("date_of_birth",), "postcode": ("postcode",), "given": ("given_name",)}
    results = {}
    for label, keys in (("coarse", coarse), ("placeholder", PLACEHOLDER_KEYS)):
        encoded = match_key_view(scenario.encoded, keys, key=b"a" * 32)
        attacker = match_key_view(scenario.plaintext, keys, key=b"b" * 32)
        for attack in (token_graph_attack, scope_graph_attack):
            r = attack(encoded, attacker, known_pairs=scenario.known_pairs, rng=np.random.default_rng(1), truth=scenario.truth)
            results[label, r.attack] = r
    assert results["coarse", "token-graph"].reidentified > 0.8  # the control: single-field keys
    assert results["coarse", "scope-graph"].reidentified > 0.8
    assert results["placeholder", "token-graph"].reidentified < 0.05
    assert results["placeholder", "scope-graph"].reidentified < 0.05
