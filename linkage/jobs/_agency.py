"""An agency node's side of a job: its encodings, and the results it receives."""

from __future__ import annotations

import dataclasses
import os
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import numba
import numpy as np
import polars as pl

from linkage._files import write_atomically
from linkage.bloom._keys import Secret
from linkage.errors import InputError, LinkageError, RequestError
from linkage.jobs._config import NodeConfig
from linkage.jobs._profiles import AnyEncodings, encode_records
from linkage.records._reading import read_records
from linkage.records._schema import Schema
from linkage.scoped import ScopedEncodings
from linkage.trust._ceremony import key_epoch_of

_EXCLUDED = ("1", "true", "yes", "y", "x", "excluded", "no consent")
RESULT_COLUMNS = ("record_id", "band", "similarity", "reference", "shared_with", "same_person_as", "agreement")


@dataclass(frozen=True, eq=False)
class AgencyEncodings:
    encodings: AnyEncodings
    excluded: int  # records held back by the exclusion column
    rejected_values: int


def agency_encodings(config: NodeConfig) -> AgencyEncodings:
    """Read, filter and encode the node's records; write its rejects report into its data folder."""
    schema = Schema.load(config.schema)
    secret = Secret.from_file(config.secret)
    columns = list(schema.columns)
    if config.exclude_column:
        if config.exclude_column in columns:
            raise InputError(f"{config.source}: data.exclude_column: {config.exclude_column!r} is also a schema field")
        columns.append(config.exclude_column)
    records = read_records(config.input, id_column=config.id_column, columns=columns, encoding=config.encoding)
    excluded = 0
    if config.exclude_column:
        flag = records.get_column(config.exclude_column).str.strip_chars().str.to_lowercase().is_in(_EXCLUDED)
        excluded = int(flag.sum())
        records = records.filter(~flag).drop(config.exclude_column)
    result = encode_records(records, schema, secret, key_epoch=key_epoch_of(config.secret))
    config.data_dir.mkdir(parents=True, exist_ok=True)
    result.rejects.write_csv(config.data_dir / "rejects.csv")
    (config.data_dir / "rejects.csv").chmod(0o600)
    return AgencyEncodings(result.encodings, excluded, result.rejects.height)


# a field starts at a comma followed by NAME=, so values may hold commas ("12 Main St, Apt 3")
_FIELD_START = re.compile(r",\s*(?=[A-Za-z_][A-Za-z0-9_]*\s*=)")


def record_from_text(text: str, schema: Schema) -> pl.DataFrame:
    """``"given_name=Ann,surname=Smith,..."`` → one record (``record_id`` "1"); fields left out are missing.

    Errors name the field, never its value."""
    columns = schema.columns
    values: dict[str, str] = {}
    for part in _FIELD_START.split(text.strip()):
        name, sep, value = part.partition("=")
        name = name.strip()
        if not sep or not name:
            raise InputError("--record: expected NAME=VALUE pairs separated by commas")
        if name not in columns:
            raise InputError(f"--record: {name!r} is not a field of the schema (fields: {', '.join(columns)})")
        if name in values:
            raise InputError(f"--record: {name!r} is given twice")
        values[name] = value.strip()
    return pl.DataFrame(
        {"record_id": ["1"], **{c: [values.get(c) or None] for c in columns}},
        schema=dict.fromkeys(["record_id", *columns], pl.String),
    )


NO_KEY = "no match key could be made from this record: it cannot be found"


def query_encodings(config: NodeConfig, records: pl.DataFrame) -> tuple[ScopedEncodings, list[str], dict[int, list[str]]]:
    """The node's records for a query, encoded under its schema and secret, each record's id replaced
    by its row number (1, 2, ...): returns the encodings, the agency's own ids in row order, and per
    row (1, 2, ...) what could not be used: rejected fields with the reason, never the value, and
    whether no match key could be made (the query then cannot find the record)."""
    schema = Schema.load(config.schema)
    if not schema.match_keys:
        raise LinkageError(f"{config.schema}: intake queries need match-key encodings; this schema has no match keys")
    secret = Secret.from_file(config.secret)
    # A few records: one thread, since starting a parallel region costs more than encoding them.
    threads = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        encoded = encode_records(
            records.select("record_id", *schema.columns), schema, secret, key_epoch=key_epoch_of(config.secret)
        )
    finally:
        numba.set_num_threads(threads)
    encodings = encoded.encodings
    assert isinstance(encodings, ScopedEncodings)
    ids = encodings.record_ids.to_list()
    numbered = pl.Series("record_id", [str(n) for n in range(1, len(ids) + 1)], dtype=pl.String)
    notes: dict[int, list[str]] = {}
    for row, field, reason in encoded.rejects.select("row", "field", "reason").iter_rows():
        notes.setdefault(row, []).append(f"{field} not used: {reason}")
    for row in np.flatnonzero(~encodings.has_token.any(axis=1)) + 1:
        notes.setdefault(int(row), []).append(NO_KEY)
    return dataclasses.replace(encodings, record_ids=numbered), ids, notes


def query_records(config: NodeConfig, *, record: str | None = None, path: Path | None = None) -> pl.DataFrame:
    """The records a query asks about: one from ``--record`` text, or a file laid out as the node's input."""
    schema = Schema.load(config.schema)
    if record is not None:
        return record_from_text(record, schema)
    assert path is not None
    return read_records(path, id_column=config.id_column, columns=list(schema.columns), encoding=config.encoding)


def check_own_results(results: pl.DataFrame, own_ids: pl.Series, *, peer: str) -> None:
    """Delivered results may name only records this agency sent, each in one row at most, and
    ``same_person_as`` only its own records too: anything else is refused whole (counts, no ids)."""
    ids = results.get_column("record_id")
    strangers = int((~ids.is_in(own_ids.implode())).sum())
    others = results.get_column("same_person_as").explode().drop_nulls()
    strangers_too = int((~others.is_in(own_ids.implode())).sum())
    if strangers or strangers_too:
        raise RequestError(
            f"{peer}: results name records this agency did not send ({strangers} rows, {strangers_too} same_person_as ids): refused"
        )
    repeated = ids.len() - ids.n_unique()
    if repeated:
        raise RequestError(f"{peer}: results give {repeated} records more than one row: refused")


def write_results(data_dir: Path, job_id: str, results: pl.DataFrame, *, folder_name: str = "results") -> Path:
    """Write a job's results as ``results/<job>.csv``, all at once: a reader never sees half a file.

    Deliveries land in ``pending/`` first (``folder_name="pending"``); ``release_results`` moves them
    to ``results/`` once the coordinator says the job is finished.
    """
    folder = data_dir / folder_name
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    rows = results.with_columns(pl.col("shared_with").list.join(";"), pl.col("same_person_as").list.join(";"))
    return write_atomically(folder / f"{job_id}.csv", rows.write_csv)


def discard_stale_pending(data_dir: Path, keep: timedelta, now: datetime) -> list[tuple[str, float]]:
    """Remove results pending longer than ``keep`` (their job never finished); returns each job id
    with its age in days. The coordinator keeps a job's results until it is done, so nothing is lost."""
    folder = data_dir / "pending"
    discarded = []
    for path in sorted(folder.glob("*.csv")) if folder.is_dir() else []:
        age = now.timestamp() - path.stat().st_mtime
        if age > keep.total_seconds():
            path.unlink(missing_ok=True)
            discarded.append((path.stem, round(age / 86400, 1)))
    return discarded


def release_results(data_dir: Path, job_id: str) -> Path | None:
    """Move a job's pending results to ``results/``: the agency's, now that the job is finished.

    Returns the results file; None when nothing is pending and nothing was released (an unknown job).
    Releasing twice is harmless: the second finds the file already released.
    """
    pending = data_dir / "pending" / f"{job_id}.csv"
    out = data_dir / "results" / f"{job_id}.csv"
    if pending.exists():
        out.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.replace(pending, out)
    return out if out.exists() else None
