"""Linkage quality against known truth: precision, recall, F1, F* and blocking quality.

Truth is a table ``record_id, source, entity_id``; the true pairs are every cross-source pair of
records that share an entity, and the true duplicates every pair of one source's records that share
one (judged apart: ``duplicate_quality``). Pairs are compared as unordered (source, record_id) pairs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from linkage.errors import InputError

TRUTH_COLUMNS = ("record_id", "source", "entity_id")
PAIR_COLUMNS = ("source_a", "id_a", "source_b", "id_b")


@dataclass(frozen=True)
class Quality:
    true_positives: int
    false_positives: int
    false_negatives: int

    @property
    def precision(self) -> float:
        found = self.true_positives + self.false_positives
        return self.true_positives / found if found else 1.0

    @property
    def recall(self) -> float:
        real = self.true_positives + self.false_negatives
        return self.true_positives / real if real else 1.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0

    @property
    def f_star(self) -> float:
        """Hand & Christen's F*: TP / (TP + FP + FN), a monotone transform of F1 that reads as a share."""
        total = self.true_positives + self.false_positives + self.false_negatives
        return self.true_positives / total if total else 1.0

    def line(self) -> str:
        return (
            f"precision {self.precision:.4f}  recall {self.recall:.4f}  F1 {self.f1:.4f}  F* {self.f_star:.4f}"
            f"  (TP {self.true_positives:,}, FP {self.false_positives:,}, FN {self.false_negatives:,})"
        )


def canonical_pairs(pairs: pl.DataFrame) -> pl.DataFrame:
    """Pairs with their ends ordered, so (a, b) and (b, a) compare equal; duplicates dropped."""
    swap = (pl.col("source_a") > pl.col("source_b")) | (
        (pl.col("source_a") == pl.col("source_b")) & (pl.col("id_a") > pl.col("id_b"))
    )
    return pairs.select(
        pl.when(swap).then(pl.col("source_b")).otherwise(pl.col("source_a")).alias("source_a"),
        pl.when(swap).then(pl.col("id_b")).otherwise(pl.col("id_a")).alias("id_a"),
        pl.when(swap).then(pl.col("source_a")).otherwise(pl.col("source_b")).alias("source_b"),
        pl.when(swap).then(pl.col("id_a")).otherwise(pl.col("id_b")).alias("id_b"),
    ).unique()


def true_pairs(truth: pl.DataFrame) -> pl.DataFrame:
    """Every cross-source pair of records sharing an entity, canonically ordered."""
    left = truth.select(pl.col("entity_id"), source_a="source", id_a="record_id")
    right = truth.select(pl.col("entity_id"), source_b="source", id_b="record_id")
    joined = left.join(right, on="entity_id").filter(pl.col("source_a") != pl.col("source_b"))
    return canonical_pairs(joined.select(PAIR_COLUMNS))


def true_duplicates(truth: pl.DataFrame) -> pl.DataFrame:
    """Every pair of two records of one source sharing an entity (its duplicates), canonically ordered."""
    left = truth.select(pl.col("entity_id"), source_a="source", id_a="record_id")
    right = truth.select(pl.col("entity_id"), source_b="source", id_b="record_id")
    joined = left.join(right, on="entity_id").filter(
        (pl.col("source_a") == pl.col("source_b")) & (pl.col("id_a") < pl.col("id_b"))
    )
    return canonical_pairs(joined.select(PAIR_COLUMNS))


def duplicate_quality(found: pl.DataFrame, truth: pl.DataFrame, sources: list[str] | None = None) -> Quality:
    """Quality of the pairs of ``found`` within one source against the true duplicates (of ``sources``, or all)."""
    found = canonical_pairs(found.select(PAIR_COLUMNS).cast(pl.String)).filter(pl.col("source_a") == pl.col("source_b"))
    real = true_duplicates(truth.cast(pl.String))
    if sources is not None:
        found = found.filter(pl.col("source_a").is_in(sources))
        real = real.filter(pl.col("source_a").is_in(sources))
    tp = found.join(real, on=list(PAIR_COLUMNS), how="semi").height
    return Quality(tp, found.height - tp, real.height - tp)


def pair_quality(found: pl.DataFrame, truth: pl.DataFrame) -> Quality:
    """Quality of ``found`` cross-source pairs (source_a, id_a, source_b, id_b) against ``truth``."""
    found = canonical_pairs(found.select(PAIR_COLUMNS).cast(pl.String)).filter(pl.col("source_a") != pl.col("source_b"))
    real = true_pairs(truth.cast(pl.String))
    tp = found.join(real, on=list(PAIR_COLUMNS), how="semi").height
    return Quality(tp, found.height - tp, real.height - tp)


@dataclass(frozen=True)
class BlockingQuality:
    candidates: int
    possible: int  # all cross-source pairs
    true_found: int
    true_total: int

    @property
    def pairs_completeness(self) -> float:
        return self.true_found / self.true_total if self.true_total else 1.0

    @property
    def reduction_ratio(self) -> float:
        return 1.0 - self.candidates / self.possible if self.possible else 0.0


def blocking_quality(candidates: pl.DataFrame, truth: pl.DataFrame) -> BlockingQuality:
    """How many true pairs the candidate pairs hold, and how few of all cross-source pairs they are."""
    found = canonical_pairs(candidates.select(PAIR_COLUMNS).cast(pl.String))
    real = true_pairs(truth.cast(pl.String))
    sizes = truth.group_by("source").len().get_column("len").to_list()
    possible = sum(sizes[x] * sizes[y] for x in range(len(sizes)) for y in range(x + 1, len(sizes)))
    hit = real.join(found, on=list(PAIR_COLUMNS), how="semi").height
    return BlockingQuality(candidates=found.height, possible=possible, true_found=hit, true_total=real.height)


def read_candidates(path: str | Path) -> pl.DataFrame:
    return _read_table(path, PAIR_COLUMNS, "candidates")


def read_truth(path: str | Path) -> pl.DataFrame:
    return _read_table(path, TRUTH_COLUMNS, "truth")


def read_pairs(path: str | Path) -> pl.DataFrame:
    return _read_table(path, (*PAIR_COLUMNS, "band"), "pairs")


def read_csv_table(path: str | Path, columns: tuple[str, ...], what: str, *, expected: tuple[str, ...] = ()) -> pl.DataFrame:
    """A CSV file as strings, holding at least ``columns``; errors name the file and ``what`` it
    should be, and the columns ``expected`` (default: ``columns``)."""
    path = Path(path)
    try:
        frame = pl.read_csv(path, infer_schema=False)
    except FileNotFoundError:
        raise InputError(f"{path}: {what} file not found") from None
    except (OSError, pl.exceptions.PolarsError):
        raise InputError(f"{path}: not a readable CSV {what} file") from None
    absent = [c for c in columns if c not in frame.columns]
    if absent:
        raise InputError(f"{path}: {what} file lacks column(s) {', '.join(absent)} (expected {','.join(expected or columns)})")
    return frame


def _read_table(path: str | Path, columns: tuple[str, ...], what: str) -> pl.DataFrame:
    frame = read_csv_table(path, columns, what)
    empty = frame.select(pl.any_horizontal(pl.col(c).is_null() for c in columns)).to_series().arg_true()
    if len(empty):
        raise InputError(f"{path}: row {empty[0] + 1}: empty value in a required column")
    return frame


# --------------------------------------------------------------------------------------------------
# Quality of a blocking on index pairs (``blocking_quality`` above does the same on record ids)


def pairs_completeness(found: tuple[np.ndarray, np.ndarray], truth: tuple[np.ndarray, np.ndarray]) -> float:
    """Share of the true pairs (i, j) that are among the found pairs; 1.0 when there are none."""
    true_keys = np.unique(_pair_keys(truth))
    if len(true_keys) == 0:
        return 1.0
    return float(np.isin(true_keys, _pair_keys(found)).mean())


def reduction_ratio(candidates: int, n_a: int, n_b: int) -> float:
    """1 - candidates / (n_a·n_b): the share of all pairs that blocking spared."""
    return 1.0 - candidates / (n_a * n_b) if n_a * n_b else 0.0


def _pair_keys(pairs: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    i = np.asarray(pairs[0], dtype=np.int64)
    j = np.asarray(pairs[1], dtype=np.int64)
    return (i << np.int64(32)) | j
