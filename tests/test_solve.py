import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from linkage.matching._solve import greedy_clusters


@st.composite
def scored_graphs(draw):
    n_sources = draw(st.integers(2, 4))
    per_source = draw(st.integers(1, 6))
    source = np.repeat(np.arange(n_sources), per_source)
    n = len(source)
    edges = draw(st.lists(st.tuples(st.integers(0, n - 1), st.integers(0, n - 1), st.floats(0, 1, width=32)), max_size=40))
    edges = [(a, b, s) for a, b, s in edges if source[a] != source[b]]
    left = np.array([e[0] for e in edges], dtype=np.int64)
    right = np.array([e[1] for e in edges], dtype=np.int64)
    score = np.array([e[2] for e in edges], dtype=np.float32)
    return left, right, score, source


def together(labels):
    return {(p, q) for p in range(len(labels)) for q in range(p + 1, len(labels)) if labels[p] == labels[q]}


@given(scored_graphs(), st.floats(0, 1), st.floats(0, 1))
def test_lowering_the_threshold_never_undoes_a_match(graph, t1, t2):
    left, right, score, source = graph
    high, low = max(t1, t2), min(t1, t2)
    keep_high, keep_low = score >= high, score >= low
    labels_high, _ = greedy_clusters(left[keep_high], right[keep_high], score[keep_high], source)
    labels_low, _ = greedy_clusters(left[keep_low], right[keep_low], score[keep_low], source)
    assert together(labels_high) <= together(labels_low)


@given(scored_graphs())
def test_clusters_hold_at_most_one_record_per_source(graph):
    left, right, score, source = graph
    labels, accepted = greedy_clusters(left, right, score, source)
    for label in np.unique(labels):
        members = source[labels == label]
        assert len(members) == len(set(members.tolist()))
    assert accepted.sum() == len(source) - len(np.unique(labels))  # a forest: one accepted edge per merge


def test_two_sources_are_matched_one_to_one_best_first():
    source = np.array([0, 0, 1, 1])
    left, right = np.array([0, 0, 1]), np.array([2, 3, 2])
    score = np.array([0.9, 0.8, 0.95], dtype=np.float32)
    labels, accepted = greedy_clusters(left, right, score, source)
    assert labels[1] == labels[2] and labels[0] == labels[3]  # 1-2 (0.95) first, then 0-3 (0.8)
    assert accepted.tolist() == [False, True, True]


def test_many_per_source_allows_a_source_twice():
    source = np.array([0, 0, 1])
    labels, _ = greedy_clusters(np.array([0, 1]), np.array([2, 2]), np.array([0.9, 0.8]), source, one_per_source=False)
    assert len(set(labels.tolist())) == 1


def test_a_vetoed_pair_is_never_joined_through_a_third_record():
    # a (source 0) - b (source 1) - c (source 2): a chain; a and c were compared and differ.
    source = np.array([0, 1, 2])
    left, right, score = np.array([0, 1]), np.array([1, 2]), np.array([0.9, 0.8], dtype=np.float32)
    chained, _ = greedy_clusters(left, right, score, source)
    assert len(set(chained.tolist())) == 1
    labels, accepted = greedy_clusters(left, right, score, source, veto_left=np.array([2]), veto_right=np.array([0]))
    assert labels[0] == labels[1] != labels[2] and accepted.tolist() == [True, False]


@given(scored_graphs(), st.floats(0, 1), st.floats(0, 1), st.integers(0, 2**32 - 1))
def test_vetoes_are_kept_and_lowering_the_threshold_still_never_undoes_a_match(graph, t1, t2, seed):
    left, right, score, source = graph
    rng = np.random.default_rng(seed)
    vetoed = rng.random(len(left)) < 0.3
    veto_left, veto_right = left[vetoed], right[vetoed]
    high, low = max(t1, t2), min(t1, t2)
    found = []
    for t in (high, low):
        keep = (score >= t) & ~vetoed
        labels, _ = greedy_clusters(left[keep], right[keep], score[keep], source, veto_left=veto_left, veto_right=veto_right)
        assert not (labels[veto_left] == labels[veto_right]).any()
        found.append(together(labels))
    assert found[0] <= found[1]
