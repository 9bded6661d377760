"""Solving: from scored pairs to clusters holding at most one record per source (or several, for a
source whose duplicates are sought).

Edges are taken best first (ties broken by record index, so the result is deterministic) and two
clusters merge when the edge joins them and, by default, the union holds no source twice. With two
sources that is one-to-one greedy matching. Because a lower threshold only appends edges after all
the ones a higher threshold sees, every merge made at a threshold is also made at any lower one:
lowering a threshold never undoes a match (anonlink's greedy solver lacks this property).
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
def _greedy(
    order: np.ndarray, left: np.ndarray, right: np.ndarray, masks: np.ndarray, unique: np.uint64
) -> tuple[np.ndarray, np.ndarray]:
    n = masks.shape[0]
    parent = np.arange(n)
    mask = masks.copy()
    accepted = np.zeros(order.shape[0], dtype=np.bool_)
    for k in range(order.shape[0]):
        e = order[k]
        a = _find(parent, left[e])
        b = _find(parent, right[e])
        if a == b:
            continue
        if (mask[a] & mask[b] & unique) != 0:
            continue
        parent[b] = a
        mask[a] |= mask[b]
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
) -> tuple[np.ndarray, np.ndarray]:
    """Cluster labels per record (0..k-1, in order of each cluster's first record) and the accepted edges.

    ``left``/``right`` index records (0..n-1), ``source[r]`` is record r's source (< 64 sources).
    With ``one_per_source``, a cluster holds at most one record of each source but those in
    ``shared_sources`` (sources whose several records may be one person: its duplicates).
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
    roots, accepted = _greedy(order, left.astype(np.int64), right.astype(np.int64), masks, unique)
    _, labels = np.unique(roots, return_inverse=True)
    return labels.astype(np.int64), accepted
