"""Reading an agency's records (CSV or Parquet) into a frame of string columns.

Whole-file problems are ``InputError``s naming the file and, where there is one, the row or
column; they never quote a value. Row 1 is the first record (the line after a CSV header).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from pathlib import Path

import polars as pl

from linkage.errors import InputError


def _decoded_csv(path: Path, data: bytes, encoding: str) -> bytes:
    """The file as UTF-8 bytes, or an error naming the first line that is not valid ``encoding``."""
    try:
        text = data.decode(encoding)
    except LookupError:
        raise InputError(f"{path}: unknown text encoding {encoding!r}") from None
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise InputError(
            f"{path}: line {line}: not valid {encoding} text; re-save the file as UTF-8 or pass its encoding"
            " (e.g. --encoding latin-1)"
        ) from None
    return data if encoding.replace("-", "").lower() in ("utf8", "ascii") else text.encode("utf-8")


def _first_malformed_line(data: bytes) -> str:
    reader = csv.reader(io.StringIO(data.decode("utf-8")))
    width = None
    for row in reader:
        if width is None:
            width = len(row)
        elif row and len(row) != width:
            return f"line {reader.line_num}: {len(row)} fields where the header has {width}"
    return "malformed CSV"


def read_records(path: str | Path, *, id_column: str, columns: Sequence[str], encoding: str = "utf-8") -> pl.DataFrame:
    """The id column (as ``record_id``) and the requested columns, all strings, in file order."""
    path = Path(path)
    try:
        if path.suffix.lower() in (".parquet", ".pq"):
            frame = pl.read_parquet(path)
        else:
            data = path.read_bytes()
            if not data.strip():
                raise InputError(f"{path}: empty file")
            data = _decoded_csv(path, data.removeprefix(b"\xef\xbb\xbf"), encoding)
            try:
                frame = pl.read_csv(data, infer_schema=False)
            except pl.exceptions.PolarsError:
                raise InputError(f"{path}: {_first_malformed_line(data)}") from None
    except FileNotFoundError:
        raise InputError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise InputError(f"{path}: is a directory, not a data file") from None
    except PermissionError:
        raise InputError(f"{path}: permission denied") from None
    except pl.exceptions.PolarsError:
        raise InputError(f"{path}: not a readable Parquet file") from None
    frame = frame.rename({c: c.strip() for c in frame.columns})
    if id_column not in frame.columns:
        raise InputError(f"{path}: no id column {id_column!r} (columns: {', '.join(frame.columns)})")
    absent = [c for c in columns if c not in frame.columns]
    if absent:
        raise InputError(f"{path}: missing column(s) named in the schema: {', '.join(absent)}")
    if frame.height == 0:
        raise InputError(f"{path}: no records (only a header)")
    frame = frame.select(
        pl.col(id_column).cast(pl.String).str.strip_chars().alias("record_id"),
        *(pl.col(c).cast(pl.String) for c in columns if c != "record_id"),
    )
    _check_ids(path, frame.get_column("record_id"), id_column)
    return frame


def _check_ids(path: Path, ids: pl.Series, id_column: str) -> None:
    empty = (ids.is_null() | (ids == "")).arg_true()
    if len(empty):
        raise InputError(f"{path}: row {empty[0] + 1}: empty record id (column {id_column!r})")
    duplicated = ids.is_duplicated()
    if duplicated.any():
        rows = duplicated.arg_true()
        first = ids[int(rows[0])]
        same = (ids == first).arg_true()
        raise InputError(
            f"{path}: rows {same[0] + 1} and {same[1] + 1}: duplicate record id (column {id_column!r});"
            f" {int(duplicated.sum())} rows share an id"
        )
