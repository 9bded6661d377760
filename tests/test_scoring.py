"""EM recovers known parameters: levels are drawn from a model with known m, u and prior."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from linkage.matching._scoring import N_LEVELS, agreement_levels, fit_model, monotone


def draw_levels(rng, probabilities, n):
    return np.stack([rng.choice(N_LEVELS, size=n, p=p) for p in probabilities], axis=1).astype(np.int8)


def test_em_recovers_the_parameters_it_was_generated_with():
    rng = np.random.default_rng(3)
    m = np.array([[0.01, 0.01, 0.03, 0.05, 0.2, 0.7], [0.02, 0.02, 0.1, 0.06, 0.1, 0.7], [0.05, 0.05, 0.1, 0.2, 0.3, 0.3]])
    u = np.array(
        [[0.8, 0.12, 0.05, 0.02, 0.007, 0.003], [0.9, 0.05, 0.03, 0.01, 0.007, 0.003], [0.6, 0.2, 0.1, 0.05, 0.03, 0.02]]
    )
    population, matches, scored_non_matches = 10_000_000, 4_000, 20_000
    # The scored pairs: every match, and non-matches that were alike enough to be scored.
    non_matches = draw_levels(rng, u, 2_000_000)
    alike = non_matches[(non_matches >= 2).sum(axis=1) >= 1][:scored_non_matches]
    levels = np.concatenate([draw_levels(rng, m, matches), alike])
    model = fit_model(("a", "b", "c"), levels, draw_levels(rng, u, 200_000), population=population)
    assert np.abs(model.m - m).max() < 0.06
    assert model.prior == pytest.approx(matches / population, rel=0.25)
    truth = np.r_[np.ones(matches, bool), np.zeros(len(alike), bool)]
    predicted = model.probabilities(levels) >= 0.5
    # The bar: how well the true model itself separates these pairs.
    from linkage.matching._scoring import MatchModel

    best = MatchModel(("a", "b", "c"), m, u, matches / population, 0).probabilities(levels) >= 0.5
    assert (predicted == truth).mean() >= (best == truth).mean() - 0.01


@given(st.lists(st.floats(-20, 20), min_size=1, max_size=12), st.data())
def test_monotone_is_non_decreasing_and_keeps_the_weighted_mean(values, data):
    weights = np.array(data.draw(st.lists(st.floats(0.1, 10), min_size=len(values), max_size=len(values))))
    out = monotone(np.array(values), weights)
    assert np.all(np.diff(out) >= -1e-9)
    assert np.dot(out, weights) == pytest.approx(np.dot(values, weights), rel=1e-6, abs=1e-6)
    if np.all(np.diff(values) >= 0):
        assert np.allclose(out, values)


def test_missing_groups_are_neither_agreement_nor_disagreement():
    levels = agreement_levels(np.array([[1.0, np.nan], [0.0, 0.5]]))
    assert levels.tolist() == [[5, -1], [0, 1]]
    rng = np.random.default_rng(0)
    m = np.array([[0.02, 0.02, 0.06, 0.1, 0.2, 0.6]] * 2)
    u = np.array([[0.9, 0.05, 0.03, 0.01, 0.007, 0.003]] * 2)
    model = fit_model(("a", "b"), draw_levels(rng, m, 2000), draw_levels(rng, u, 50_000), population=1e6)
    full = model.weights(np.array([[5, 5]], dtype=np.int8))[0]
    half = model.weights(np.array([[5, -1]], dtype=np.int8))[0]
    disagree = model.weights(np.array([[5, 0]], dtype=np.int8))[0]
    assert disagree < half < full
    assert half == pytest.approx(model.weight_table()[0, 5])


def test_em_takes_people_not_households_for_matches():
    # Candidates where relatives (same surname and address, another given name and birthday)
    # outnumber the true pairs three to one, as they do once a loose record rule lets them in.
    rng = np.random.default_rng(5)
    groups = ("name", "dob", "sex", "address")
    match = [
        [0.0, 0.0, 0.02, 0.08, 0.2, 0.7],
        [0.0, 0.02, 0.05, 0.05, 0.08, 0.8],
        [0.05, 0, 0, 0, 0, 0.95],
        [0.5, 0.05, 0.05, 0.1, 0.1, 0.2],
    ]
    household = [
        [0.0, 0.1, 0.5, 0.3, 0.1, 0.0],
        [0.6, 0.3, 0.08, 0.01, 0.01, 0.0],
        [0.5, 0, 0, 0, 0, 0.5],
        [0.0, 0.0, 0.0, 0.02, 0.08, 0.9],
    ]
    unrelated = [[0.7, 0.25, 0.05, 0, 0, 0], [0.8, 0.15, 0.04, 0.01, 0, 0], [0.5, 0, 0, 0, 0, 0.5], [0.8, 0.15, 0.05, 0, 0, 0]]
    candidates = np.concatenate(
        [draw_levels(rng, match, 3_000), draw_levels(rng, household, 9_000), draw_levels(rng, unrelated, 20_000)]
    )
    model = fit_model(groups, candidates, draw_levels(rng, unrelated, 100_000), population=1e8)
    moved = model.probabilities(np.array([[5, 5, 5, 0]], dtype=np.int8))[0]
    relative = model.probabilities(np.array([[2, 0, 5, 5]], dtype=np.int8))[0]
    assert moved > 0.5 > relative
    assert model.weight_table()[0, 5] > model.weight_table()[3, 5]
