"""Solving: from scored pairs to clusters holding at most one record per source (or several, for a
source whose duplicates are sought).

Edges are taken best first (ties broken by record index, so the result is deterministic) and two
clusters merge when the edge joins them and, by default, the union holds no source twice. With two
sources that is one-to-one greedy matching. Because a lower threshold only appends edges after all
the ones a higher threshold sees, every merge made at a threshold is also made at any lower one:
lowering a threshold never undoes a match (anonlink's greedy solver lacks this property).

A merge may also be vetoed: ``veto_left``/``veto_right`` name pairs of records that were compared
and found not to be one person (a score near zero). Two clusters holding such a pair between them
are never merged, so a chain a–b, b–c does not put a with c when a and c were compared and differ.
The vetoes do not depend on the threshold, so the property above still holds.
"""

from __future__ import annotations

from collections.abc import Collection

import numba
import numpy as np


@numba.njit(cache=True)
def _find(parent: np.ndarray, x: int) -> int:
    root = x
    while parent[root] != root:
        root = parent[root]
    while parent[x] != root:  # path compression
        nxt = parent[x]
        parent[x] = root
        x = nxt
    return root


@numba.njit(cache=True)
def _vetoed(
    parent: np.ndarray, head: np.ndarray, after: np.ndarray, start: np.ndarray, partner: np.ndarray, a: int, b: int
) -> bool:
    """Whether a member of cluster ``a`` has a veto partner in cluster ``b``."""
    x = head[a]
    while x >= 0:
        for v in range(start[x], start[x + 1]):
            if _find(parent, partner[v]) == b:
                return True
        x = after[x]
    return False


@numba.njit(cache=True)
def _greedy(
    order: np.ndarray,
    left: np.ndarray,
    right: np.ndarray,
    masks: np.ndarray,
    unique: np.uint64,
    start: np.ndarray,
    partner: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    n = masks.shape[0]
    parent = np.arange(n)
    mask = masks.copy()
    accepted = np.zeros(order.shape[0], dtype=np.bool_)
    # Members of each cluster as a linked list (head at the root, ``after`` the next), walked from
    # the smaller side when vetoes are asked about.
    head = np.arange(n)
    tail = np.arange(n)
    after = np.full(n, -1, dtype=np.int64)
    size = np.ones(n, dtype=np.int64)
    vetoes = partner.shape[0] > 0
    for k in range(order.shape[0]):
        e = order[k]
        a = _find(parent, left[e])
        b = _find(parent, right[e])
        if a == b:
            continue
        if (mask[a] & mask[b] & unique) != 0:
            continue
        if vetoes:
            small, large = (a, b) if size[a] <= size[b] else (b, a)
            if _vetoed(parent, head, after, start, partner, small, large):
                continue
        parent[b] = a
        mask[a] |= mask[b]
        after[tail[a]] = head[b]
        tail[a] = tail[b]
        size[a] += size[b]
        accepted[e] = True
    roots = np.empty(n, dtype=np.int64)
    for x in range(n):
        roots[x] = _find(parent, x)
    return roots, accepted


def greedy_clusters(
    left: np.ndarray,
    right: np.ndarray,
    score: np.ndarray,
    source: np.ndarray,
    *,
    one_per_source: bool = True,
    shared_sources: Collection[int] = (),
    veto_left: np.ndarray | None = None,
    veto_right: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Cluster labels per record (0..k-1, in order of each cluster's first record) and the accepted edges.

    ``left``/``right`` index records (0..n-1), ``source[r]`` is record r's source (< 64 sources).
    With ``one_per_source``, a cluster holds at most one record of each source but those in
    ``shared_sources`` (sources whose several records may be one person: its duplicates).
    ``veto_left``/``veto_right``: pairs of records never to be put in one cluster (see the module).
    """
    if source.size and source.max() >= 64:
        raise ValueError("at most 64 sources")
    order = np.lexsort((right, left, -score.astype(np.float64)))
    masks = (np.uint64(1) << source.astype(np.uint64)).astype(np.uint64)
    unique = np.uint64(0)
    if one_per_source:
        unique = ~np.uint64(0)
        for s in shared_sources:
            unique &= ~(np.uint64(1) << np.uint64(s))
    start, partner = _adjacency(source.shape[0], veto_left, veto_right)
    roots, accepted = _greedy(order, left.astype(np.int64), right.astype(np.int64), masks, unique, start, partner)
    _, labels = np.unique(roots, return_inverse=True)
    return labels.astype(np.int64), accepted


def _adjacency(n: int, left: np.ndarray | None, right: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Pairs as adjacency lists, both ways: record x's partners are ``partner[start[x]:start[x + 1]]``."""
    if left is None or right is None or len(left) == 0:
        return np.zeros(n + 1, dtype=np.int64), np.zeros(0, dtype=np.int64)
    ends = np.concatenate([left, right]).astype(np.int64)
    others = np.concatenate([right, left]).astype(np.int64)
    order = np.argsort(ends, kind="stable")
    start = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.bincount(ends, minlength=n), out=start[1:])
    return start, others[order]
