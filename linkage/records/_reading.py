"""Reading an agency's records (CSV or Parquet) into a frame of string columns.

Whole-file problems are ``InputError``s naming the file and, where there is one, the row or
column; they never quote a value. Row 1 is the first record (the line after a CSV header).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from pathlib import Path

import numpy as np
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


# Limits that keep one hostile or broken file from taking the machine's memory: identifiers are short.
MAX_ROW_BYTES = 1024 * 1024
MAX_FIELD_BYTES = 64 * 1024


def _first_malformed_line(data: bytes) -> str:
    reader = csv.reader(io.StringIO(data.decode("utf-8")))
    width = None
    for row in reader:
        if width is None:
            width = len(row)
        elif row and len(row) != width:
            return f"line {reader.line_num}: {len(row)} fields where the header has {width}"
    return "malformed CSV"


def _check_csv_shape(path: Path, data: bytes) -> None:
    """Refuse overlong lines, ragged rows and a header naming one column twice, naming lines and positions only."""
    ends = np.flatnonzero(np.frombuffer(data, dtype=np.uint8) == ord("\n"))
    starts = np.concatenate(([0], ends + 1))
    stops = np.concatenate((ends, [len(data)]))
    lengths = stops - starts
    if len(lengths) and int(lengths.max()) > MAX_ROW_BYTES:
        line = int(np.argmax(lengths > MAX_ROW_BYTES)) + 1
        raise InputError(f"{path}: line {line}: longer than {MAX_ROW_BYTES // 1024} KiB; not a record of identifiers")
    if b'"' in data:
        widths_and_lines = _quoted_widths(data)
    else:  # no quoting: a row's width is its count of commas, counted for all lines at once
        commas = np.flatnonzero(np.frombuffer(data, dtype=np.uint8) == ord(","))
        per_line = np.diff(np.searchsorted(commas, np.concatenate((starts, [len(data) + 1])))) + 1
        blank = (lengths == 0) | (
            (lengths == 1) & (np.frombuffer(data, dtype=np.uint8)[np.minimum(starts, len(data) - 1)] == ord("\r"))
        )
        widths_and_lines = [(int(w), i + 1) for i, w in enumerate(per_line) if not blank[i]] if len(per_line) else []
        if widths_and_lines:
            header_width = widths_and_lines[0][0]
            bad = np.flatnonzero((per_line != header_width) & ~blank)
            widths_and_lines = widths_and_lines[:1] + ([(int(per_line[bad[0]]), int(bad[0]) + 1)] if len(bad) else [])
    if not widths_and_lines:
        return
    width = widths_and_lines[0][0]
    for row_width, line in widths_and_lines[1:]:
        if row_width != width:
            raise InputError(f"{path}: line {line}: {row_width} fields where the header has {width}")


def _quoted_widths(data: bytes) -> list[tuple[int, int]]:
    """(fields, line) of the header and of the first row whose width differs from it, with CSV quoting."""
    reader = csv.reader(io.StringIO(data.decode("utf-8")))
    found: list[tuple[int, int]] = []
    try:
        for row in reader:
            if not row:
                continue
            if not found:
                found.append((len(row), reader.line_num))
            elif len(row) != found[0][0]:
                found.append((len(row), reader.line_num))
                break
    except csv.Error:
        raise InputError(f"line {reader.line_num}: malformed CSV quoting") from None
    return found


def _check_header(path: Path, header: Sequence[str], id_column: str, columns: Sequence[str]) -> None:
    """The id and schema columns are there, each name once. The header's own words are never quoted:
    in a file without a header they are the first record."""
    absent = [c for c in columns if c not in header]
    if id_column not in header:
        hint = (
            f"; none of the schema's {len(columns)} columns either: is the header missing?" if len(absent) == len(columns) else ""
        )
        raise InputError(f"{path}: no id column {id_column!r} among the header's {len(header)} columns{hint}")
    if absent:
        raise InputError(f"{path}: missing column(s) named in the schema: {', '.join(absent)}")
    seen: dict[str, int] = {}
    for position, name in enumerate(header, start=1):
        if name in seen:
            raise InputError(f"{path}: header columns {seen[name]} and {position} have the same name; each column needs its own")
        seen[name] = position


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
                _check_csv_shape(path, data)
            except InputError as error:
                message = str(error)
                raise InputError(message if message.startswith(str(path)) else f"{path}: {message}") from None
            try:
                header = next(csv.reader(io.StringIO(data.decode("utf-8"))), [])
                _check_header(path, [c.strip() for c in header], id_column, columns)
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
    stripped = [c.strip() for c in frame.columns]
    _check_header(path, stripped, id_column, columns)
    frame = frame.rename(dict(zip(frame.columns, stripped, strict=True)))
    if frame.height == 0:
        raise InputError(f"{path}: no records (only a header)")
    frame = frame.select(
        pl.col(id_column).cast(pl.String).str.strip_chars().alias("record_id"),
        *(pl.col(c).cast(pl.String) for c in columns if c != "record_id"),
    )
    _check_field_sizes(path, frame)
    _check_ids(path, frame.get_column("record_id"), id_column)
    return frame


def _check_field_sizes(path: Path, frame: pl.DataFrame) -> None:
    longest = frame.select(pl.all().str.len_bytes().max()).row(0)
    for column, size in zip(frame.columns, longest, strict=True):
        if size is not None and size > MAX_FIELD_BYTES:
            row = int(frame.get_column(column).str.len_bytes().arg_max() or 0) + 1
            name = "the id column" if column == "record_id" else f"column {column!r}"
            raise InputError(f"{path}: row {row}: a value of {name} is longer than {MAX_FIELD_BYTES // 1024} KiB")


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
