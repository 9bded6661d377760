"""Human-readable summaries of linkage runs, shared by the CLI and the coordinator."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl

from linkage.matching._histogram import histogram_lines, suggested_threshold
from linkage.matching._link import LinkResult


def link_summary(result: LinkResult, elapsed: float, out: Path | None = None, clusters: Path | None = None) -> str:
    """The terminal summary of a linkage run."""
    lines = ["records  " + ", ".join(f"{name} {n:,}" for name, n in result.sources.items())]
    compare_seconds = result.seconds.get("compare", elapsed)
    lines.append(
        f"compared {result.comparisons:,} pairs in {compare_seconds:.2f} s"
        f" ({result.comparisons / max(compare_seconds, 1e-9) / 1e6:,.1f} M comparisons/s);"
        f" {len(result.scores):,} candidate pairs scored ({result.scoring})"
    )
    lines += [f"note: {note}" for note in result.notes]
    lines.append(f"  {'sources':<40} {'blocking':<8} {'candidates':>11} {'matches':>8} {'possible':>8}  pairs completeness")
    for s in result.stats:
        completeness = "1 (all pairs compared)" if s.blocking == "none" else f"{s.pairs_completeness:.4f} (estimated on a sample)"
        lines.append(
            f"  {s.source_a + ' ~ ' + s.source_b:<40} {s.blocking:<8} {s.candidates:>11,} {s.matches:>8,} {s.possible:>8,}  {completeness}"
        )
        lines += [f"    note: {note}" for note in s.notes]
    if result.model is not None:
        lines += result.model.describe()
    lines += outcome_lines(
        result.scores, result.threshold, result.review_threshold, result.pairs, result.clusters,
        scale="match probability" if result.scoring == "fs" else "Dice", elapsed=elapsed, out=out, clusters_path=clusters,
        no_match_hint="; heavy hardening (blip) can push true pairs below the candidate rules, and sources that share no one give none",
    )  # fmt: skip
    return "\n".join(lines)


def outcome_lines(
    scores: np.ndarray,
    threshold: float,
    review_threshold: float,
    pairs: pl.DataFrame,
    clusters: pl.DataFrame,
    *,
    scale: str,
    elapsed: float,
    out: Path | None = None,
    clusters_path: Path | None = None,
    no_match_hint: str = "",
) -> list[str]:
    """The end of every linkage summary: the score distribution, the suggested threshold, what was
    written and how long it took."""
    lines = [f"score distribution of candidate pairs ({scale}):"]
    lines += histogram_lines(scores, threshold, review_threshold)
    suggestion = suggested_threshold(scores)
    if suggestion is not None:
        lines.append(f"suggested match threshold {suggestion:g} (where the score distribution is thinnest); in use {threshold:g}")
    n_clusters = clusters.get_column("cluster_id").n_unique()
    matches = int((pairs.get_column("band") == "match").sum())
    where = f"wrote {out}: " if out else ""
    lines.append(
        f"{where}{matches:,} matching pairs in {n_clusters:,} clusters, {pairs.height - matches:,} possible matches for review"
    )
    if matches == 0:
        best = f"{float(scores.max()):.3g}" if len(scores) else "none"
        lines.append(f"note: no candidate pair reached the match threshold {threshold:g} (highest score {best}){no_match_hint}")
    if clusters_path:
        lines.append(f"wrote {clusters_path}: {clusters.height:,} records in {n_clusters:,} clusters")
    lines.append(f"done in {elapsed:.2f} s")
    return lines
