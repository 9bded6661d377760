"""Turning a score matrix (encoded × plaintext, higher: likelier the same person) into guesses.

Both attacks guess only where a pair is the mutual best: the encoding's best plaintext record has
that encoding as its own best. The margin — how far the pair beats the best rival in its row and
in its column — orders the guesses by how sure they are.
"""

from __future__ import annotations

import numpy as np


def mutual_best(score: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(rows, cols, margins) of every mutual-best pair, margins > 0 (ties are no guess)."""
    if score.size == 0:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, np.zeros(0)
    best_col = np.argmax(score, axis=1)
    best_row = np.argmax(score, axis=0)
    rows = np.flatnonzero(best_row[best_col] == np.arange(score.shape[0]))
    cols = best_col[rows]
    margins = pair_margins(score, rows, cols)
    keep = margins > 0
    return rows[keep], cols[keep], margins[keep]


def assignment(score: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(rows, cols, margins) of the one-to-one assignment of highest total score."""
    from scipy.optimize import linear_sum_assignment

    rows, cols = linear_sum_assignment(score.astype(np.float64), maximize=True)
    return rows, cols, pair_margins(score, rows, cols)


def pair_margins(score: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """How far each pair beats the best rival in its row and in its column (> 0: mutual best)."""
    if len(rows) == 0:
        return np.zeros(0)
    chosen = score[rows, cols].astype(np.float64)
    row_rival = np.partition(score[rows], -2, axis=1)[:, -2:] if score.shape[1] > 1 else np.full((len(rows), 2), -np.inf)
    col_rival = np.partition(score[:, cols].T, -2, axis=1)[:, -2:] if score.shape[0] > 1 else np.full((len(rows), 2), -np.inf)
    # The best other entry: the top one unless it is the pair itself, else the runner-up.
    row_other = np.where(
        row_rival[:, 1] > chosen, row_rival[:, 1], np.where(row_rival[:, 1] == chosen, row_rival[:, 0], row_rival[:, 1])
    )
    col_other = np.where(
        col_rival[:, 1] > chosen, col_rival[:, 1], np.where(col_rival[:, 1] == chosen, col_rival[:, 0], col_rival[:, 1])
    )
    margin: np.ndarray = chosen - np.maximum(row_other, col_other)
    return margin


def surest(known: np.ndarray, rows: np.ndarray, cols: np.ndarray, margins: np.ndarray, count: int) -> np.ndarray:
    """Known pairs plus the ``count`` surest guessed pairs (margin > 0) not already known."""
    is_known = np.zeros(max(int(rows.max(initial=-1)), int(known[:, 0].max(initial=-1))) + 1, dtype=bool)
    is_known[known[:, 0]] = True
    order = np.argsort(-margins, kind="stable")
    order = order[(margins[order] > 0) & ~is_known[rows[order]]][: max(count, 0)]
    return np.concatenate([known, np.stack([rows[order], cols[order]], axis=1)]).astype(np.int64).reshape(-1, 2)


def with_surest_share(known: np.ndarray, rows: np.ndarray, cols: np.ndarray, margins: np.ndarray, share: float) -> np.ndarray:
    """Known pairs plus the surest ``share`` of the guessed pairs that touch no known record on either side."""
    fresh = ~np.isin(rows, known[:, 0]) & ~np.isin(cols, known[:, 1])
    rows, cols, margins = rows[fresh], cols[fresh], margins[fresh]
    order = np.argsort(-margins, kind="stable")[: int(share * len(rows))]
    return np.concatenate([known, np.stack([rows[order], cols[order]], axis=1)]).astype(np.int64).reshape(-1, 2)
