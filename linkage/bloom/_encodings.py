"""Encodings in memory and on disk.

On disk: Parquet, one row per record. Columns: ``record_id`` (string), ``clk`` (the record filter's
bytes), ``group_<name>`` (one filter per field group, when the schema asks for them) and
``present`` (bit g set when group g has a value). Filter bytes are the packed uint64 words in
little-endian order. The file metadata carries the encoding version, schema fingerprint, project,
key epoch, filter length and group names. Never a raw value.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
import polars as pl

from linkage.errors import EncodingsError
from linkage.records._schema import ENCODING_VERSION

_META_PREFIX = "linkage."


@dataclass(frozen=True, eq=False)
class Encodings:
    """One agency's encoded records."""

    record_ids: pl.Series
    filters: np.ndarray  # (records, words) uint64: the record-level filter (CLK)
    group_names: tuple[str, ...]
    group_filters: np.ndarray | None  # (records, groups, words) uint64, or None
    present: np.ndarray  # (records,) uint16: bit g set when group g has a value
    schema_fingerprint: str
    project: str
    encoding_version: int = ENCODING_VERSION
    key_epoch: int = 0  # epoch of the project secret used (0: a secret from `linkage keys new`)

    def __len__(self) -> int:
        return int(self.filters.shape[0])

    @property
    def bits(self) -> int:
        return int(self.filters.shape[1]) * 64

    def groups(self) -> np.ndarray:
        """The group filters, for what needs them (fs scoring, the name rule); an error names their absence."""
        if self.group_filters is None:
            raise EncodingsError(f"project {self.project}: encoded without group filters ([output] group_filters = false)")
        return self.group_filters

    def metadata(self) -> dict[str, str]:
        return {
            f"{_META_PREFIX}encoding_version": str(self.encoding_version),
            f"{_META_PREFIX}schema_fingerprint": self.schema_fingerprint,
            f"{_META_PREFIX}project": self.project,
            f"{_META_PREFIX}bits": str(self.bits),
            f"{_META_PREFIX}groups": ",".join(self.group_names),
            f"{_META_PREFIX}key_epoch": str(self.key_epoch),
            f"{_META_PREFIX}bit_order": "uint64-little-endian",
        }


def _bytes_column(name: str, filters: np.ndarray) -> pl.Series:
    n = filters.shape[0]
    return pl.Series(name, np.ascontiguousarray(filters).view(np.uint8).reshape(n, -1))


def write_encodings(encodings: Encodings, path: str | Path | BinaryIO) -> None:
    columns = [encodings.record_ids.alias("record_id"), _bytes_column("clk", encodings.filters)]
    if encodings.group_filters is not None:
        for g, name in enumerate(encodings.group_names):
            columns.append(_bytes_column(f"group_{name}", encodings.group_filters[:, g, :]))
    columns.append(pl.Series("present", encodings.present, dtype=pl.UInt16))
    # Filters look random to a compressor: LZ4 keeps writing fast and still shrinks the ids.
    pl.DataFrame(columns).write_parquet(path, compression="lz4", metadata=encodings.metadata(), statistics=False)


def _filters_column(frame: pl.DataFrame, name: str, words: int, path: Path) -> np.ndarray:
    column = frame.get_column(name)
    if column.dtype != pl.Array(pl.UInt8, words * 8):
        raise EncodingsError(f"{path}: column {name!r} is not a {words * 64}-bit filter")
    return np.ascontiguousarray(column.to_numpy()).view(np.uint64).reshape(len(frame), words)


def read_encodings(path: str | Path) -> Encodings:
    path = Path(path)
    try:
        meta = pl.read_parquet_metadata(path)
        frame = pl.read_parquet(path)
    except FileNotFoundError:
        raise EncodingsError(f"{path}: file not found") from None
    except (OSError, pl.exceptions.PolarsError):
        raise EncodingsError(f"{path}: not a readable Parquet file") from None
    try:
        version = int(meta[f"{_META_PREFIX}encoding_version"])
        bits = int(meta[f"{_META_PREFIX}bits"])
        groups = tuple(g for g in meta[f"{_META_PREFIX}groups"].split(",") if g)
        fingerprint = meta[f"{_META_PREFIX}schema_fingerprint"]
        project = meta[f"{_META_PREFIX}project"]
        key_epoch = int(meta.get(f"{_META_PREFIX}key_epoch", "0"))
    except (KeyError, ValueError):
        raise EncodingsError(f"{path}: not a linkage encodings file (metadata missing)") from None
    if version != ENCODING_VERSION:
        raise EncodingsError(f"{path}: encoding version {version} is not supported (expected {ENCODING_VERSION})")
    for column in ("record_id", "clk", "present"):
        if column not in frame.columns:
            raise EncodingsError(f"{path}: column {column!r} missing")
    words = bits // 64
    filters = _filters_column(frame, "clk", words, path)
    group_filters = None
    if all(f"group_{g}" in frame.columns for g in groups) and groups:
        group_filters = np.stack([_filters_column(frame, f"group_{g}", words, path) for g in groups], axis=1)
    return Encodings(
        record_ids=frame.get_column("record_id").cast(pl.String),
        filters=filters,
        group_names=groups,
        group_filters=group_filters,
        present=frame.get_column("present").cast(pl.UInt16).to_numpy(),
        schema_fingerprint=fingerprint,
        project=project,
        encoding_version=version,
        key_epoch=key_epoch,
    )
