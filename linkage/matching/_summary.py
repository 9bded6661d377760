"""Human-readable summaries of linkage runs, shared by the CLI and the coordinator."""

from __future__ import annotations

from pathlib import Path

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
    lines.append(f"score distribution of candidate pairs ({'match probability' if result.scoring == 'fs' else 'Dice'}):")
    lines += histogram_lines(result.scores, result.threshold, result.review_threshold)
    suggestion = suggested_threshold(result.scores)
    if suggestion is not None:
        lines.append(
            f"suggested match threshold {suggestion:g} (where the score distribution is thinnest); in use {result.threshold:g}"
        )
    n_clusters = result.clusters.get_column("cluster_id").n_unique()
    matches = int((result.pairs.get_column("band") == "match").sum())
    where = f"wrote {out}: " if out else ""
    lines.append(
        f"{where}{matches:,} matching pairs in {n_clusters:,} clusters, {result.pairs.height - matches:,} possible matches for review"
    )
    if matches == 0:
        best = f"{float(result.scores.max()):.3g}" if len(result.scores) else "none"
        lines.append(
            f"note: no candidate pair reached the match threshold {result.threshold:g} (highest score {best}); heavy"
            " hardening (blip) can push true pairs below the candidate rules, and sources that share no one give none"
        )
    if clusters:
        lines.append(f"wrote {clusters}: {result.clusters.height:,} records in {n_clusters:,} clusters")
    lines.append(f"done in {elapsed:.2f} s")
    return "\n".join(lines)
