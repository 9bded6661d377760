"""Choosing thresholds: a text histogram of scores and a suggestion from their distribution."""

from __future__ import annotations

import numpy as np

BINS = 20


def suggested_threshold(scores: np.ndarray, *, low: float = 0.05, high: float = 0.95) -> float | None:
    """The score in (low, high) where the distribution is thinnest between its two humps.

    Scores of candidate pairs pile up near the bottom (non-matches) and the top (matches); the
    emptiest bin between the two tallest is where a match threshold loses least either way.
    None when there are too few scores to say.
    """
    inside = scores[(scores > low) & (scores < high)]
    if len(scores) < 50:
        return None
    edges = np.linspace(low, high, BINS + 1)
    counts, _ = np.histogram(inside, bins=edges)
    lower = np.histogram(scores, bins=[0.0, low])[0][0]
    upper = np.histogram(scores, bins=[high, 1.0 + 1e-9])[0][0]
    if lower == 0 or upper == 0:
        return None
    # Smooth over three bins, then take the emptiest, preferring the higher score on ties.
    smooth = np.convolve(counts, np.ones(3), mode="same")
    best = len(smooth) - 1 - int(np.argmin(smooth[::-1]))
    return float(round((edges[best] + edges[best + 1]) / 2, 3))


def score_histogram(scores: np.ndarray, *, bins: int = BINS) -> np.ndarray:
    """How many scores fall in each of ``bins`` equal bins over [0, 1] (the last bin holds 1.0)."""
    counts, _ = np.histogram(np.clip(scores, 0.0, 1.0), bins=np.linspace(0.0, 1.0, bins + 1))
    return counts.astype(np.int64)


def histogram_lines(scores: np.ndarray, match: float, review: float, *, width: int = 40) -> list[str]:
    """Bars of how many candidate pairs score in each twentieth, with the thresholds marked."""
    edges = np.linspace(0.0, 1.0, BINS + 1)
    counts = score_histogram(scores)
    top = max(int(counts.max()) if len(counts) else 0, 1)
    lines = []
    for k in range(BINS - 1, -1, -1):
        lo, hi = edges[k], edges[k + 1]
        bar = "#" * int(np.ceil(width * np.log1p(counts[k]) / np.log1p(top))) if counts[k] else ""
        marks = []
        if lo <= match < hi or (k == BINS - 1 and match == 1.0):
            marks.append(f"<- match threshold {match:g}")
        if lo <= review < hi and review != match:
            marks.append(f"<- review threshold {review:g}")
        lines.append(f"  {lo:4.2f}-{hi:4.2f} {counts[k]:>10,} {bar:<{width}} {' '.join(marks)}".rstrip())
    return lines
