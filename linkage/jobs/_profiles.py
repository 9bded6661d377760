"""One front for the encoding profiles, so that the CLI and the processes need not tell them apart.

    schema.profile ─▶ ``match-keys`` (the default: ``linkage.scoped``; records compared only inside
                      the scope of a key they agree on)
                   ─▶ ``record-filter`` / ``field-scoring`` (``linkage.bloom`` + ``linkage.matching``:
                      Bloom filters any two of which compare)

``encode_records`` encodes, ``read_any_encodings``/``write_any_encodings`` move either kind to and from
Parquet, and ``link_sources`` links sources of one kind and returns what every caller prints or logs
(``Linked``): pairs, clusters, scores, thresholds, notes and the audit details, as data.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import polars as pl

from linkage.bloom._encode import encode
from linkage.bloom._encodings import Encodings, read_encodings, write_encodings
from linkage.bloom._keys import Secret
from linkage.errors import EncodingsError, LinkageError
from linkage.matching._histogram import score_histogram
from linkage.matching._link import LinkResult, LinkSettings, check_compatible, link
from linkage.matching._summary import link_summary, outcome_lines
from linkage.records._schema import Schema
from linkage.scoped import MatchKey as ScopedMatchKey
from linkage.scoped import (
    ScopedEncodings,
    ScopedLinkResult,
    ScopedLinkSettings,
    check_scoped_compatible,
    encode_scoped,
    link_scoped,
    read_scoped_encodings,
    write_scoped_encodings,
)
from linkage.scoped._encodings import pack_scoped, unpack_scoped
from linkage.scoped._link import DEFAULT_MATCH_THRESHOLD, DEFAULT_REVIEW_THRESHOLD

__all__ = [
    "AnyEncodings",
    "Encoded",
    "Linked",
    "check_sources",
    "encode_records",
    "encodings_from_bytes",
    "encodings_to_bytes",
    "is_scoped_file",
    "link_sources",
    "read_any_encodings",
    "write_any_encodings",
]

AnyEncodings = Encodings | ScopedEncodings
MAX_AUDIT_NOTES = 8
_PROFILE_KEY = "linkage.profile"


@dataclass(frozen=True, eq=False)
class Encoded:
    encodings: AnyEncodings
    rejects: pl.DataFrame  # row, record_id, field, reason (never the value)
    missing: dict[str, int]  # values missing per field
    capped: dict[str, int] = field(default_factory=dict)  # per match key: records whose token the cap dropped
    seconds: dict[str, float] = field(default_factory=dict)
    refined: dict[str, int] = field(default_factory=dict)  # per match key: records whose shared value was refined


def scoped_keys(schema: Schema) -> tuple[ScopedMatchKey, ...]:
    return tuple(ScopedMatchKey(name=k.name, parts=k.parts, refine=k.refine) for k in schema.match_keys)


def encode_records(
    records: pl.DataFrame,
    schema: Schema,
    secret: Secret,
    *,
    today: dt.date | None = None,
    key_epoch: int = 0,
    progress: Callable[[str], None] | None = None,
) -> Encoded:
    """Encode ``records`` (``record_id`` plus the schema's columns) as the schema's profile says."""
    if schema.match_keys:
        result = encode_scoped(
            records, schema, secret, keys=scoped_keys(schema), cap=schema.token_cap, today=today, key_epoch=key_epoch
        )
        if progress:
            progress("encoded under match keys")
        return Encoded(
            result.encodings, result.rejects, result.missing, capped=dict(result.capped), seconds=dict(result.seconds),
            refined=dict(result.refined),
        )  # fmt: skip
    plain = encode(records, schema, secret, today=today, key_epoch=key_epoch, progress=progress)
    return Encoded(plain.encodings, plain.rejects, plain.missing, {}, dict(plain.seconds))


def is_scoped_file(source: str | Path | BinaryIO) -> bool:
    try:
        meta = pl.read_parquet_metadata(source)
    except FileNotFoundError:
        raise EncodingsError(f"{source}: file not found") from None
    except (OSError, pl.exceptions.PolarsError):
        raise EncodingsError(f"{source}: not a readable Parquet file") from None
    finally:
        if not isinstance(source, str | Path):
            source.seek(0)
    return meta.get(_PROFILE_KEY) == "match-keys"


def read_any_encodings(path: str | Path) -> AnyEncodings:
    return read_scoped_encodings(path) if is_scoped_file(path) else read_encodings(path)


def write_any_encodings(encodings: AnyEncodings, path: str | Path | BinaryIO) -> None:
    if isinstance(encodings, ScopedEncodings):
        write_scoped_encodings(encodings, path)
    else:
        write_encodings(encodings, path)


def encodings_to_bytes(encodings: ScopedEncodings) -> bytes:
    """The compact wire form of match-key encodings (never written to disk)."""
    return pack_scoped(encodings)


def encodings_from_bytes(data: bytes, *, peer: str) -> ScopedEncodings:
    return unpack_scoped(data, name=peer)


# -- linking --------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Linked:
    """A linkage run's outcome, whatever the profile: what the CLI prints and the audit log records."""

    profile: str
    scoring: str  # "fs" (match probability) or "dice"
    pairs: pl.DataFrame  # source_a, id_a, source_b, id_b, similarity, band
    clusters: pl.DataFrame  # cluster_id, source, record_id
    scores: np.ndarray  # every candidate pair's score
    threshold: float
    review_threshold: float
    sources: dict[str, int]
    candidates: int
    notes: list[str]  # rules tightened, defaults moved, and why
    details: dict[str, Any]  # for the audit log: counts, thresholds, per-key figures; never a record
    result: LinkResult | ScopedLinkResult

    def summary(self, elapsed: float, out: Path | None = None, clusters: Path | None = None) -> str:
        if isinstance(self.result, LinkResult):
            return link_summary(self.result, elapsed, out, clusters)
        return _scoped_summary(self, elapsed, out, clusters)

    def report(self) -> dict[str, Any]:
        """The run as data, ready for JSON: the thresholds used (and the default a large run raised),
        per pair of sources its blocking, counts and each candidate rule as it ran (the Dice asked,
        the Dice the candidate budget allowed, the Dice run), or per match key its candidate pairs.
        Scripts and benchmarks read this, not the summary."""
        report: dict[str, Any] = {
            "profile": self.profile, "scoring": self.scoring, "threshold": self.threshold,
            "review_threshold": self.review_threshold, "sources": dict(self.sources), "candidates": self.candidates,
            "notes": list(self.notes),
        }  # fmt: skip
        if isinstance(self.result, LinkResult):
            report["threshold_raised_from"] = self.result.threshold_raised_from
            report["run_notes"] = list(self.result.notes)  # ``notes`` less those of a pair of sources
            report["source_pairs"] = [dataclasses.asdict(s) for s in self.result.stats]
        else:
            report["pairs_per_key"] = dict(self.result.key_pairs)
        return report

    def audit_details(self) -> dict[str, Any]:
        bands = dict(sorted(self.pairs.get_column("band").value_counts().rows()))
        return {
            "profile": self.profile, "scoring": self.scoring, "threshold": self.threshold,
            "review_threshold": self.review_threshold, "candidates": self.candidates, "pairs": bands,
            "clusters": int(self.clusters.get_column("cluster_id").n_unique()), "records": self.sources,
            "score_histogram": score_histogram(self.scores).tolist(), "notes": self.notes[:MAX_AUDIT_NOTES],
            **self.details,
        }  # fmt: skip


def check_sources(sources: Mapping[str, AnyEncodings]) -> None:
    """Sources that can be linked together: one profile, project, schema, key epoch (and secret, for
    match keys); otherwise one line naming the source at fault."""
    kinds = {name: isinstance(enc, ScopedEncodings) for name, enc in sources.items()}
    first = next(iter(kinds), None)
    odd = [name for name, scoped in kinds.items() if scoped != kinds[first]] if first else []
    if odd:
        raise EncodingsError(f"{odd[0]}: encoded under another profile than {first}; encode every source with one schema")
    if first is not None and kinds[first]:
        check_scoped_compatible({n: e for n, e in sources.items() if isinstance(e, ScopedEncodings)})
    else:
        check_compatible({n: e for n, e in sources.items() if isinstance(e, Encodings)})


def link_sources(
    sources: Mapping[str, AnyEncodings], settings: LinkSettings = LinkSettings(), *, progress: Callable[[str], None] | None = None
) -> Linked:
    """Link sources of one profile; a mix of profiles is refused naming the odd source. A lone source
    is linked with itself: its duplicates (as for every source in ``settings.duplicates``)."""
    if len(sources) == 1:
        settings = dataclasses.replace(settings, duplicates=frozenset(sources))
    scoped = bool(sources) and all(isinstance(e, ScopedEncodings) for e in sources.values())
    if settings.duplicates and not scoped:
        name = next((n for n, e in sources.items() if not isinstance(e, ScopedEncodings)), "")
        raise LinkageError(
            f"{name}: duplicates within a source are found in match-key encodings only (encode with the default schema)"
        )
    check_sources(sources)
    if scoped:
        return _link_scoped({n: e for n, e in sources.items() if isinstance(e, ScopedEncodings)}, settings, progress)
    plain = {n: e for n, e in sources.items() if isinstance(e, Encodings)}
    result = link(plain, settings, progress=progress)
    notes = [*result.notes, *(f"{s.source_a} ~ {s.source_b}: {note}" for s in result.stats for note in s.notes)]
    profile = "field-scoring" if next(iter(plain.values())).group_filters is not None else "record-filter"
    return Linked(
        profile=profile, scoring=result.scoring, pairs=result.pairs, clusters=result.clusters, scores=result.scores,
        threshold=result.threshold, review_threshold=result.review_threshold, sources=dict(result.sources),
        candidates=len(result.scores), notes=notes, details={"comparisons": result.comparisons}, result=result,
    )  # fmt: skip


def _link_scoped(
    sources: Mapping[str, ScopedEncodings], settings: LinkSettings, progress: Callable[[str], None] | None
) -> Linked:
    if settings.scoring == "dice":
        raise LinkageError("match-key encodings are scored by Fellegi–Sunter (fs); dice needs record-filter encodings")
    threshold = DEFAULT_MATCH_THRESHOLD if settings.threshold is None else settings.threshold
    review = DEFAULT_REVIEW_THRESHOLD if settings.review_threshold is None else settings.review_threshold
    if review > threshold:
        if settings.review_threshold is not None:
            raise LinkageError(f"review threshold {review:g} is above the match threshold {threshold:g}")
        review = threshold
    result = link_scoped(
        sources,
        ScopedLinkSettings(
            threshold=threshold,
            review_threshold=review,
            one_per_source=settings.one_per_source,
            engine=settings.engine,
            duplicates=settings.duplicates,
        ),
        progress=progress,
    )
    return Linked(
        profile="match-keys", scoring="fs", pairs=result.pairs, clusters=result.clusters, scores=result.scores,
        threshold=result.threshold, review_threshold=result.review_threshold, sources=dict(result.sources),
        candidates=result.candidates, notes=[], details={"pairs_per_key": dict(result.key_pairs), **({"own_candidates": dict(result.within)} if result.within else {})}, result=result,
    )  # fmt: skip


def _scoped_summary(linked: Linked, elapsed: float, out: Path | None, clusters: Path | None) -> str:
    result = linked.result
    assert isinstance(result, ScopedLinkResult)
    lines = ["records  " + ", ".join(f"{name} {n:,}" for name, n in linked.sources.items())]
    lines.append(f"{linked.candidates:,} candidate pairs share a match-key token (pairs that share none are never compared)")
    if result.within:
        lines.append(
            "  of them within one source (its duplicates sought): " + ", ".join(f"{n} {c:,}" for n, c in result.within.items())
        )
    lines.append("  pairs per key: " + ", ".join(f"{key} {n:,}" for key, n in result.key_pairs.items()))
    lines += result.model.describe()
    lines += outcome_lines(
        linked.scores, linked.threshold, linked.review_threshold, linked.pairs, linked.clusters,
        scale="match probability", elapsed=elapsed, out=out, clusters_path=clusters,
    )  # fmt: skip
    return "\n".join(lines)


def with_default_match_keys(schema: Schema, sample: pl.DataFrame | None = None) -> Schema:
    """``schema`` with the default match keys its fields can make (``schema init``'s default); with
    the large-population keys too where ``sample`` (an agency's records) shows a large population."""
    from linkage.records._schema import MatchKey
    from linkage.scoped._encode import default_keys_for

    keys = default_keys_for(schema, sample)
    return dataclasses.replace(schema, match_keys=tuple(MatchKey(name=k.name, parts=k.parts, refine=k.refine) for k in keys))


# A key whose values are this common in an agency's own records is refused at ``schema init``: most of
# its records would hold a value shared by more than DECOY_GROUP others (households, very common
# names), so it would carry little; above WARN_SHARE_COMMON it is flagged.
REFUSE_SHARE_COMMON = 0.5
WARN_SHARE_COMMON = 0.05


def checked_match_keys(schema: Schema) -> tuple[ScopedMatchKey, ...]:
    """The schema's match keys, each part checked against its fields (one-line SchemaError)."""
    from linkage.scoped import check_keys

    keys = scoped_keys(schema)
    check_keys(keys, schema)
    return keys


def key_frequency_lines(records: pl.DataFrame, schema: Schema, where: str | Path) -> tuple[list[str], str | None]:
    """Lines measuring each match key's value frequencies on a sample, and the reason to refuse, if any."""
    from linkage.scoped import key_frequencies
    from linkage.scoped._encode import DECOY_GROUP

    keys = checked_match_keys(schema)
    capped = key_frequencies(records, schema, keys=keys, shared_by_more_than=schema.token_cap - 1)
    common = key_frequencies(records, schema, keys=keys, shared_by_more_than=DECOY_GROUP - 1).get_column("share_common")
    lines = [
        f"match-key value frequencies in {where} ({records.height:,} records): 'lose the token' = held by more than the"
        f" token cap ({schema.token_cap}); 'common' = held by more than {DECOY_GROUP}"
    ]
    refused = None
    for (key, held, distinct, largest, share), share_common in zip(capped.iter_rows(), common.to_list(), strict=True):
        verdict = (
            "too common: refused"
            if share_common > REFUSE_SHARE_COMMON
            else "common: warn"
            if share_common > WARN_SHARE_COMMON
            else "ok"
        )
        lines.append(
            f"  {key:<26} {held:>9,} records {distinct:>9,} values  largest {largest:>6,}"
            f"  lose the token {share:6.1%}  common {share_common:6.1%}  {verdict}"
        )
        if share_common > REFUSE_SHARE_COMMON and refused is None:
            refused = f"match key {key!r}: {share_common:.1%} of records hold a value shared by more than {DECOY_GROUP}"
    return lines, refused
