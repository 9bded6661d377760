"""Sparse similarity graphs and blockwise nearest neighbours: what the scalable attacks start from.

The older graph attack holds the full n × n Dice matrix; at 20,000 records that is 1.6 GB and at
100,000 it is out of reach. Here every all-pairs pass runs in row blocks and keeps only each row's
``k`` best partners, so memory grows with n × k:

- ``knn_graph``: the k-nearest-neighbour similarity graph of bit vectors (Dice, or the agreement of
  folded filters, which XOR keeps: see ``_xor``), symmetric, as a scipy CSR matrix;
- ``top_pairs``: the best-scoring partners of every row of ``left @ right.T`` (cosine of embeddings,
  correlation of predicted filters), blockwise, plus each column's best row — enough for mutual-best
  matching with margins, without the n × n score matrix.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from linkage._extras import require_extra

__all__ = ["TopPairs", "knn_graph", "mutual_best_pairs", "require_scipy", "top_pairs", "top_pairs_of"]

BLOCK_ROWS = 1024  # rows per block: 1024 × 100,000 float32 scores is 400 MB at most


def require_scipy() -> None:
    """The attacks need scipy (the ``attacks`` extra); say so in one line when it is missing."""
    require_extra("attacks", "the attack harness")


def knn_graph(bits: np.ndarray, k: int, *, metric: str = "dice") -> object:
    """Symmetric k-NN graph (scipy CSR, float32 weights) of unpacked bit rows (n, bits) of 0/1.

    ``metric``: "dice" (2|a∧b| / (|a|+|b|)) or "agreement" (share of equal bits, 1 − Hamming/bits),
    which is what survives XOR-folding: fold(a) ⊕ fold(b) = fold(a ⊕ b). An edge's weight is the
    larger of the two directions' (they are equal); a row keeps its ``k`` best other rows.
    """
    require_scipy()
    import scipy.sparse as sparse

    n, width = bits.shape
    dense = bits.astype(np.float32)
    counts = dense.sum(axis=1)

    def block_scores(rows: slice) -> np.ndarray:
        common = dense[rows] @ dense.T
        if metric == "dice":
            total = counts[rows, None] + counts[None, :]
            dice: np.ndarray = np.divide(2.0 * common, total, out=np.zeros_like(common), where=total > 0)
            return dice
        if metric == "agreement":
            differ = counts[rows, None] + counts[None, :] - 2.0 * common
            agreement: np.ndarray = 1.0 - differ / np.float32(width)
            return agreement
        raise ValueError(f"unknown metric {metric!r}")

    top = top_pairs_of(block_scores, n, n, k, exclude_diagonal=True)
    rows = np.repeat(np.arange(n), top.cols.shape[1])
    graph = sparse.csr_matrix((top.scores.ravel(), (rows, top.cols.ravel())), shape=(n, n), dtype=np.float32)
    return graph.maximum(graph.T).tocsr()


@dataclass(frozen=True, eq=False)
class TopPairs:
    cols: np.ndarray  # (n_left, k) int64: each row's best columns, best first
    scores: np.ndarray  # (n_left, k) float32: their scores
    col_best_row: np.ndarray  # (n_right,) int64: each column's best row
    col_best: np.ndarray  # (n_right,) float32: that score
    col_second: np.ndarray  # (n_right,) float32: the column's second-best score


def top_pairs(left: np.ndarray, right: np.ndarray, k: int) -> TopPairs:
    """The ``k`` best columns of every row of ``left @ right.T``, and every column's two best rows."""
    left = np.ascontiguousarray(left, dtype=np.float32)
    right = np.ascontiguousarray(right, dtype=np.float32)
    return top_pairs_of(lambda rows: left[rows] @ right.T, len(left), len(right), k)


def top_pairs_of(
    block_scores: Callable[[slice], np.ndarray], n_left: int, n_right: int, k: int, *, exclude_diagonal: bool = False
) -> TopPairs:
    """``top_pairs`` for scores given a block of rows at a time by ``block_scores``."""
    k = max(1, min(k, n_right - (1 if exclude_diagonal else 0)))
    cols = np.zeros((n_left, k), dtype=np.int64)
    scores = np.zeros((n_left, k), dtype=np.float32)
    col_best = np.full(n_right, -np.inf, dtype=np.float32)
    col_second = np.full(n_right, -np.inf, dtype=np.float32)
    col_best_row = np.full(n_right, -1, dtype=np.int64)
    for start in range(0, n_left, BLOCK_ROWS):
        rows = slice(start, min(start + BLOCK_ROWS, n_left))
        block = np.asarray(block_scores(rows), dtype=np.float32)
        if exclude_diagonal:
            index = np.arange(rows.start, rows.stop)
            block[index - rows.start, index] = -np.inf
        part = np.argpartition(-block, k - 1, axis=1)[:, :k] if k < n_right else np.tile(np.arange(n_right), (len(block), 1))
        part_scores = np.take_along_axis(block, part, axis=1)
        order = np.argsort(-part_scores, axis=1, kind="stable")
        cols[rows] = np.take_along_axis(part, order, axis=1)
        scores[rows] = np.take_along_axis(part_scores, order, axis=1)
        # Columns' two best rows, merged block by block.
        if len(block) >= 2:
            two = np.argpartition(-block, 1, axis=0)[:2]
            first_score = block[two[0], np.arange(n_right)]
            second_score = block[two[1], np.arange(n_right)]
            swap = second_score > first_score
            first_row = np.where(swap, two[1], two[0])
            first_score, second_score = np.maximum(first_score, second_score), np.minimum(first_score, second_score)
        else:
            first_row, first_score, second_score = (
                np.zeros(n_right, dtype=np.int64),
                block[0],
                np.full(n_right, -np.inf, dtype=np.float32),
            )
        better = first_score > col_best
        col_second = np.where(better, np.maximum(col_best, second_score), np.maximum(col_second, first_score))
        col_best_row = np.where(better, first_row + rows.start, col_best_row)
        col_best = np.where(better, first_score, col_best)
    return TopPairs(cols=cols, scores=scores, col_best_row=col_best_row, col_best=col_best, col_second=col_second)


def mutual_best_pairs(top: TopPairs) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(rows, cols, margins) of mutual-best pairs: each is the other's best; margin over the best rival."""
    n_left = len(top.cols)
    rows = np.arange(n_left)
    best = top.cols[:, 0]
    mutual = top.col_best_row[best] == rows
    row_second = top.scores[:, 1] if top.cols.shape[1] > 1 else np.full(n_left, -np.inf, dtype=np.float32)
    margin = top.scores[:, 0] - np.maximum(row_second, top.col_second[best])
    keep = mutual & (margin > 0)
    return rows[keep], best[keep], margin[keep].astype(np.float64)
