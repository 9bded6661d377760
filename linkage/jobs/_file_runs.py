"""Encoding and linking files, as ``linkage encode`` and ``linkage link`` do on one machine.

    records file ─▶ ``encode_file`` ─▶ encodings file (+ rejects beside it) and an ``EncodedFile``
    encodings files ─▶ ``read_sources`` ─▶ ``link_sources`` ─▶ ``write_link_files`` (pairs, clusters,
                       candidates, the run's report as JSON)

Every file is written all at once (``write_atomically``). What the run decided — thresholds used,
rules tightened — comes back as data (``Linked.report``); the summaries are text made from it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from linkage._files import write_atomically
from linkage.bloom._encodings import Encodings
from linkage.bloom._keys import Secret
from linkage.errors import LinkageError
from linkage.jobs._profiles import AnyEncodings, Encoded, Linked, encode_records, read_any_encodings, write_any_encodings
from linkage.records._reading import read_records
from linkage.records._schema import Schema
from linkage.trust._ceremony import key_epoch_of

__all__ = [
    "PROGRESS_ABOVE_RECORDS",
    "EncodedFile",
    "encode_file",
    "read_sources",
    "rejects_path_for",
    "source_name",
    "write_link_files",
]

PROGRESS_ABOVE_RECORDS = 100_000  # runs this large report progress as they go


@dataclass(frozen=True, eq=False)
class EncodedFile:
    """One file encoded: the result, where it went and how long it took."""

    result: Encoded
    input: Path
    out: Path
    rejects: Path
    seconds: float

    def summary(self) -> str:
        enc, rejects, n, elapsed = self.result.encodings, self.result.rejects, len(self.result.encodings), self.seconds
        lines = [f"encoded {n:,} records from {self.input} in {elapsed:.2f} s ({n / max(elapsed, 1e-9):,.0f} records/s)"]
        if isinstance(enc, Encodings):
            lines += [
                f"  output   {self.out}: {enc.bits}-bit filters"
                + (f", group filters {', '.join(enc.group_names)}" if enc.group_filters is not None else "")
                + f", schema {enc.schema_fingerprint[:12]}",
                f"  fill     {mean_fill(enc):.1%} of bits set on average",
            ]
        else:
            held = enc.has_token.sum(axis=0)
            lines += [
                f"  output   {self.out}: {len(enc.keys)} match keys, {enc.bytes_per_record:.0f} bytes per record,"
                f" schema {enc.schema_fingerprint[:12]}",
                "  tokens   " + ", ".join(f"{key} {int(c):,}" for key, c in zip(enc.keys, held, strict=True)),
            ]
            for label, per_key, meaning in (
                ("refined", self.result.refined, "records hold a shared value: their token was made with the key's refine parts instead"),
                ("capped", self.result.capped, "records lost that key's token: its value is held by more than the schema's"
                 " token_cap records (the records stay)"),
            ):  # fmt: skip
                if any(per_key.values()):
                    lines.append(f"  {label:<8} " + ", ".join(f"{k} {v:,}" for k, v in per_key.items() if v) + f" {meaning}")
        lines.append("  missing  " + (", ".join(f"{k} {v:,}" for k, v in self.result.missing.items() if v) or "none"))
        if rejects.height:
            per_field = rejects.group_by("field", maintain_order=True).len()
            listed = ", ".join(f"{f} {c:,}" for f, c in per_field.iter_rows())
            records_hit = rejects.get_column("row").n_unique()
            lines.append(
                f"  rejects  {rejects.height:,} unusable values in {records_hit:,} records ({listed});"
                f" not used as given (see the reason per value in {self.rejects})"
            )
        else:
            lines.append(f"  rejects  none ({self.rejects} is empty)")
        return "\n".join(lines)


def rejects_path_for(out: Path) -> Path:
    return out.with_name(out.name.removesuffix(out.suffix) + ".rejects.csv")


def mean_fill(encodings: Encodings) -> float:
    if len(encodings) == 0:
        return 0.0
    return float(np.unpackbits(encodings.filters.view(np.uint8), axis=1).mean())


def encode_file(
    input_path: Path,
    out: Path,
    schema: Schema,
    secret: Secret,
    *,
    id_column: str,
    encoding: str = "utf-8",
    secret_path: Path | None = None,
    progress: Callable[[str], None] | None = None,
) -> EncodedFile:
    """Read, encode and write one file, its rejects beside it; ``progress`` hears of large runs."""
    started = time.perf_counter()
    records = read_records(input_path, id_column=id_column, columns=schema.columns, encoding=encoding)
    stages = None
    if progress is not None and records.height > PROGRESS_ABOVE_RECORDS:
        progress(f"encoding {records.height:,} records from {input_path}")
        stages = lambda stage: progress(f"  {stage} done ({time.perf_counter() - started:.1f} s)")  # noqa: E731
    epoch = key_epoch_of(secret_path) if secret_path else 0
    result = encode_records(records, schema, secret, key_epoch=epoch, progress=stages)
    write_atomically(out, lambda path: write_any_encodings(result.encodings, path))
    rejects = rejects_path_for(out)
    result.rejects.write_csv(rejects)
    return EncodedFile(result, input_path, out, rejects, time.perf_counter() - started)


def source_name(path: Path) -> str:
    """A source is named by its file's stem."""
    return path.name.removesuffix(path.suffix)


def read_sources(paths: Sequence[Path]) -> dict[str, AnyEncodings]:
    """Encodings files by source name; two files of one name are an error."""
    names = [source_name(p) for p in paths]
    duplicated = sorted({n for n in names if names.count(n) > 1})
    if duplicated:
        raise LinkageError(f"two files share the source name {duplicated[0]!r} (a source is named by its file's stem)")
    return {name: read_any_encodings(path) for name, path in zip(names, paths, strict=True)}


def write_link_files(
    linked: Linked,
    out: Path,
    *,
    clusters: Path | None = None,
    candidates: Path | None = None,
    report: Path | None = None,
) -> None:
    """The pairs file, and those of the clusters, the candidates and the report that are asked for."""
    write_atomically(out, lambda path: linked.pairs.write_csv(path))
    if clusters:
        write_atomically(clusters, lambda path: linked.clusters.write_csv(path))
    if candidates:
        write_atomically(candidates, lambda path: linked.result.candidate_pairs().write_csv(path))
    if report:
        text = json.dumps(linked.report(), indent=2, sort_keys=True)
        write_atomically(report, lambda path: path.write_text(text + "\n", encoding="utf-8"))
