"""Normalisation: raw column values to the canonical form tokens are drawn from.

Everything here builds polars expressions or runs them over a frame; no value is ever printed or
logged. A value that is present but unusable (a date that is no date, a sex spelling nobody knows)
becomes null in the output and one row in the rejects frame: (row, field, reason).
"""

from __future__ import annotations

import datetime as dt

import polars as pl

from ._schema import FieldSpec, Schema

# Letters that Unicode decomposition leaves alone but people write without the mark.
_LETTER_FOLDS = {"ß": "ss", "ø": "o", "ł": "l", "æ": "ae", "œ": "oe", "đ": "d", "þ": "th", "ð": "d", "ı": "i", "ĳ": "ij"}

_SEX_SPELLINGS = {
    "m": "m", "male": "m", "man": "m", "boy": "m", "masculine": "m", "h": "m", "hombre": "m",
    "f": "f", "female": "f", "woman": "f", "girl": "f", "feminine": "f", "w": "f", "mujer": "f",
    "x": "x", "nonbinary": "x", "non binary": "x", "nb": "x", "other": "x", "intersex": "x",
    "diverse": "x", "d": "x",
}  # fmt: skip

# Street-type and direction words, written in full or abbreviated, mapped to one spelling.
_ADDRESS_WORDS = {
    "street": "st", "str": "st", "road": "rd", "avenue": "ave", "av": "ave", "drive": "dr",
    "place": "pl", "crescent": "cres", "court": "ct", "lane": "ln", "boulevard": "blvd",
    "circuit": "cct", "terrace": "tce", "highway": "hwy", "parade": "pde", "square": "sq",
    "close": "cl", "grove": "gr", "apartment": "apt", "suite": "ste", "north": "n", "south": "s",
    "east": "e", "west": "w", "mount": "mt", "saint": "st",
}  # fmt: skip

_DATE_FORMATS = ("%Y-%m-%d", "%m/%d/%Y", "%Y%m%d")
EARLIEST_BIRTH_YEAR = 1880


def folded(expr: pl.Expr) -> pl.Expr:
    """Unicode folding and case: José, JOSE and jose give one value."""
    out = expr.str.normalize("NFKD").str.replace_all(r"\p{M}", "").str.to_lowercase()
    return out.str.replace_many(list(_LETTER_FOLDS), list(_LETTER_FOLDS.values()))


def _words(expr: pl.Expr) -> pl.Expr:
    """Punctuation to spaces, whitespace collapsed; apostrophes vanish (O'Brien is obrien)."""
    out = expr.str.replace_all(r"['’`´]", "").str.replace_all(r"[^\p{L}\p{N}]+", " ")
    return out.str.strip_chars()


def _name(expr: pl.Expr) -> pl.Expr:
    # Spaces and hyphens removed: "van der Berg", "Van-der-berg" and "VanDerBerg" are one name.
    return _words(folded(expr)).str.replace_all(" ", "")


def _address(expr: pl.Expr) -> pl.Expr:
    # One Aho-Corasick pass over " word " patterns; doubling the spaces gives each word its own.
    spaced = pl.lit(" ") + _words(folded(expr)).str.replace_all(" ", "  ") + pl.lit(" ")
    out = spaced.str.replace_many([f" {w} " for w in _ADDRESS_WORDS], [f" {w} " for w in _ADDRESS_WORDS.values()])
    return out.str.replace_all(" +", " ").str.strip_chars()


def _postcode(expr: pl.Expr) -> pl.Expr:
    out = folded(expr).str.replace_all(r"[^\p{L}\p{N}]", "")
    # ZIP+4 (12345-6789) keeps its five-digit ZIP.
    return pl.when(out.str.contains(r"^\d{9}$")).then(out.str.slice(0, 5)).otherwise(out)


def _sex(expr: pl.Expr) -> pl.Expr:
    key = _words(folded(expr))
    return key.replace_strict(_SEX_SPELLINGS, default=None, return_dtype=pl.String)


def _date(expr: pl.Expr, spec: FieldSpec) -> pl.Expr:
    text = expr.str.strip_chars()
    if spec.date_format:
        return text.str.to_date(spec.date_format, strict=False)
    # An ISO timestamp keeps its date part.
    text = text.str.replace(r"^(\d{4}-\d{1,2}-\d{1,2})[T ].*$", "$1")
    return pl.coalesce([text.str.to_date(fmt, strict=False) for fmt in _DATE_FORMATS])


def _has_text(expr: pl.Expr) -> pl.Expr:
    return expr.str.contains(r"[\p{L}\p{N}]")


def normalised_value(spec: FieldSpec, raw: pl.Expr) -> pl.Expr:
    """The normalised value of a present raw value; null where it is unusable."""
    match spec.kind:
        case "name":
            out = _name(raw)
            return pl.when(out.str.contains(r"\p{L}")).then(out)
        case "date":
            return _date(raw, spec)
        case "sex":
            return _sex(raw)
        case "postcode":
            out = _postcode(raw)
            return pl.when(out.str.len_chars() > 0).then(out)
        case "address" | "city" | "state" | "text":
            out = _address(raw) if spec.kind == "address" else _words(folded(raw))
            return pl.when(_has_text(out)).then(out)
    raise AssertionError(spec.kind)


def _reject_reason(spec: FieldSpec, today: dt.date) -> str:
    return {
        "name": "no letters",
        "date": "not a date in a known format (ISO, MM/DD/YYYY, YYYYMMDD"
        + (f", {spec.date_format}" if spec.date_format else "")
        + f") between {EARLIEST_BIRTH_YEAR} and {today.isoformat()}",
        "sex": "unrecognised sex/gender spelling",
        "postcode": "no letters or digits",
    }.get(spec.kind, "no letters or digits")


def normalise(
    frame: pl.DataFrame, schema: Schema, *, today: dt.date
) -> tuple[pl.DataFrame, pl.DataFrame, dict[str, int]]:
    """Normalise every schema field of ``frame`` (all string columns).

    Returns the normalised frame (one column per field: strings, or dates for date fields; null
    where missing or unusable), the rejects frame (row, field, reason; row 1 is the first record)
    and the number of missing values per field. Each distinct raw value is normalised once.
    """
    missing_values = list(schema.missing_values)
    columns, rejects, missing = [], [], {}
    for spec in schema.fields:
        raw = frame.get_column(spec.name)
        distinct = raw.unique().to_frame("raw")
        is_missing = pl.col("raw").is_null() | pl.col("raw").str.strip_chars().str.to_lowercase().is_in(missing_values)
        value = normalised_value(spec, pl.col("raw"))
        if spec.kind == "date":
            value = pl.when(value.is_between(dt.date(EARLIEST_BIRTH_YEAR, 1, 1), today)).then(value)
        distinct = distinct.with_columns(missing=is_missing).with_columns(
            value=pl.when(~pl.col("missing")).then(value)
        ).with_columns(rejected=~pl.col("missing") & pl.col("value").is_null())
        # Back to rows with a hash join that keeps the row order.
        rows = raw.to_frame("raw").join(distinct, on="raw", how="left", nulls_equal=True, maintain_order="left")
        columns.append(rows.get_column("value").alias(spec.name))
        missing[spec.name] = int(rows.get_column("missing").sum())
        rejected = rows.get_column("rejected").arg_true()
        rejects.append(
            pl.DataFrame({"row": rejected.cast(pl.Int64) + 1}).with_columns(
                field=pl.lit(spec.name), reason=pl.lit(_reject_reason(spec, today))
            )
        )
    rejects_frame = pl.concat(rejects).sort("row", "field")
    return pl.DataFrame(columns), rejects_frame, missing
