"""Reviewed pairs as labels, and the match threshold they suggest.

A data steward decides, for each possible match of a job, whether the two records are the same
person (``same``), not (``different``) or cannot tell (``unsure``); the review pages export those
decisions as a labels file, one row per reviewed record:

    job,record_id,reference,score,decision,decided

Only ``score`` and ``decision`` are needed to suggest a threshold; the other columns stay with the
agency. Labels suggest a threshold for the scoring that produced their scores (a Dice threshold
from a dice job, a match probability from an fs job): mixing them means nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from linkage.errors import InputError
from linkage.matching._evaluate import read_csv_table

DECISIONS = ("same", "different", "unsure")
LABEL_COLUMNS = ("job", "record_id", "reference", "score", "decision", "decided")


@dataclass(frozen=True, kw_only=True)
class LabelledThreshold:
    """A match threshold chosen from reviewed pairs, and what it gets wrong on them."""

    threshold: float
    same: int  # reviewed pairs judged the same person
    different: int  # reviewed pairs judged different people
    misplaced: int  # reviewed pairs on the wrong side of the threshold

    def line(self) -> str:
        return (
            f"match threshold {self.threshold:g} suggested by {self.same + self.different:,} reviewed pairs"
            f" ({self.same:,} same person, {self.different:,} not); {self.misplaced:,} of them on the wrong side"
        )


def threshold_from_labels(scores: np.ndarray, same: np.ndarray) -> LabelledThreshold | None:
    """The threshold that puts the fewest reviewed pairs on the wrong side of it.

    ``scores`` and ``same`` (booleans) describe reviewed pairs; unsure ones are left out by the
    caller. A pair at or above the threshold counts as a match. Among the cuts that misplace fewest,
    the one in the widest gap between neighbouring scores wins, and the threshold sits in the middle
    of that gap. None without at least one pair of each kind.
    """
    scores = np.asarray(scores, dtype=np.float64)
    same = np.asarray(same, dtype=bool)
    if scores.shape != same.shape or scores.ndim != 1:
        raise InputError("labels: scores and decisions must be two columns of one length")
    if not np.all(np.isfinite(scores)):
        raise InputError("labels: a score is not a finite number")
    n_same, n_different = int(same.sum()), int((~same).sum())
    if n_same == 0 or n_different == 0:
        return None
    values = np.unique(scores)  # sorted; a cut k puts values[k:] at or above the threshold
    same_below = np.concatenate([[0], np.cumsum(np.bincount(np.searchsorted(values, scores[same]), minlength=len(values)))])
    different_below = np.concatenate([[0], np.cumsum(np.bincount(np.searchsorted(values, scores[~same]), minlength=len(values)))])
    misplaced = same_below + (n_different - different_below)  # cut k: same pairs below it, different ones at or above
    lower = np.concatenate([[max(0.0, values[0] - 0.05)], values])  # the gap each cut sits in
    upper = np.concatenate([values, [min(1.0, values[-1] + 0.05)]])
    best = misplaced == misplaced.min()
    gaps = np.where(best, upper - lower, -1.0)
    cut = int(np.argmax(gaps))
    threshold = float(np.clip(round((lower[cut] + upper[cut]) / 2, 6), 0.0, 1.0))
    return LabelledThreshold(threshold=threshold, same=n_same, different=n_different, misplaced=int(misplaced[cut]))


def read_labels(path: str | Path) -> pl.DataFrame:
    """A labels file as ``score`` (Float64) and ``decision`` columns, every decision checked."""
    frame = read_csv_table(path, ("score", "decision"), "labels", expected=LABEL_COLUMNS)
    scores = frame.get_column("score").cast(pl.Float64, strict=False)
    bad_score = (scores.is_null() | scores.is_nan() | (scores < 0) | (scores > 1)).arg_true()
    if len(bad_score):
        raise InputError(f"{path}: row {bad_score[0] + 1}: score must be a number between 0 and 1")
    bad_decision = (~frame.get_column("decision").is_in(DECISIONS)).arg_true()
    if len(bad_decision):
        raise InputError(f"{path}: row {bad_decision[0] + 1}: decision must be one of {', '.join(DECISIONS)}")
    return pl.DataFrame({"score": scores, "decision": frame.get_column("decision")})


def threshold_from_labels_file(path: str | Path) -> LabelledThreshold | None:
    """``threshold_from_labels`` over a labels file, unsure decisions left out."""
    labels = read_labels(path).filter(pl.col("decision") != "unsure")
    return threshold_from_labels(labels.get_column("score").to_numpy(), (labels.get_column("decision") == "same").to_numpy())
