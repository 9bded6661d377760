"""Normalisation: raw column values to the canonical form tokens are drawn from.

Everything here builds polars expressions or runs them over a frame; no value is ever printed or
logged. A value that is present but unusable (a date that is no date, a sex spelling nobody knows)
becomes null in the output and one row in the rejects frame: (row, field, reason).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np
import polars as pl

from ._schema import FieldSpec, Schema
from ._tokens import factorised, mapped_codes

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

EARLIEST_BIRTH_YEAR = 1880


def folded(expr: pl.Expr) -> pl.Expr:
    """Unicode folding and case: José, JOSE and jose give one value."""
    decomposed = expr.str.normalize("NFKD").str.replace_all(r"\p{M}", "").str.to_lowercase()
    decomposed = decomposed.str.replace_many(list(_LETTER_FOLDS), list(_LETTER_FOLDS.values()))
    # Most values are plain ASCII: lowercasing is all they need.
    return pl.when(expr.str.contains(r"[^\x00-\x7f]")).then(decomposed).otherwise(expr.str.to_lowercase())


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
    return out.str.replace_all("  ", " ", literal=True).str.strip_chars()


def _postcode(expr: pl.Expr) -> pl.Expr:
    out = folded(expr).str.replace_all(r"[^\p{L}\p{N}]", "")
    # ZIP+4 (12345-6789) keeps its five-digit ZIP.
    return pl.when(out.str.contains(r"^\d{9}$")).then(out.str.slice(0, 5)).otherwise(out)


def _sex(expr: pl.Expr) -> pl.Expr:
    key = _words(folded(expr))
    return key.replace_strict(_SEX_SPELLINGS, default=None, return_dtype=pl.String)


_DATE_PATTERNS = (  # (regex, group index of year, month, day)
    (r"^(\d{4})-(\d{1,2})-(\d{1,2})(?:[T ].*)?$", (1, 2, 3)),  # ISO, a timestamp keeps its date
    (r"^(\d{1,2})/(\d{1,2})/(\d{4})$", (3, 1, 2)),  # US MM/DD/YYYY
    (r"^(\d{4})(\d{2})(\d{2})$", (1, 2, 3)),  # compact YYYYMMDD
)


def _date_parts(text: pl.Series, spec: FieldSpec) -> pl.DataFrame:
    """Year, month and day of loosely written dates (null where a part cannot be found)."""
    frame = text.to_frame("raw")
    if spec.date_format:
        parsed = pl.col("raw").str.to_date(spec.date_format, strict=False)
        return frame.select(year=parsed.dt.year(), month=parsed.dt.month(), day=parsed.dt.day())
    found = frame.select(
        [pl.col("raw").str.extract_groups(pattern).alias(f"p{i}") for i, (pattern, _) in enumerate(_DATE_PATTERNS)]
    )
    return found.select(
        pl.coalesce(
            pl.col(f"p{i}").struct.field(str(groups[part])).cast(pl.Int32) for i, (_, groups) in enumerate(_DATE_PATTERNS)
        ).alias(name)
        for part, name in enumerate(("year", "month", "day"))
    )


def _dates(raw: pl.Series, spec: FieldSpec, today: dt.date) -> pl.Series:
    """Dates as "YYYY-MM-DD"; one impossible part becomes "??" ("1945-04-??"); null if unusable.

    Most values are whole dates: a strict parse settles them; only the rest go through the regexes.
    """
    text = raw.str.strip_chars()
    formats = (spec.date_format,) if spec.date_format else ("%Y%m%d", "%Y-%m-%d", "%m/%d/%Y")
    earliest = dt.date(EARLIEST_BIRTH_YEAR, 1, 1)
    whole = pl.coalesce([pl.col("raw").str.to_date(fmt, strict=False) for fmt in formats])
    value = text.to_frame("raw").select(
        pl.when(whole.is_between(earliest, today)).then(whole.dt.to_string("%Y-%m-%d"))
    ).to_series()
    rest = (value.is_null() & text.is_not_null()).arg_true()
    if len(rest) == 0:
        return value
    parts = _date_parts(text.gather(rest), spec)
    year, month, day = pl.col("year"), pl.col("month"), pl.col("day")
    oks = [year.is_between(EARLIEST_BIRTH_YEAR, today.year), month.is_between(1, 12), day.is_between(1, 31)]
    texts = [
        pl.when(ok).then(part.cast(pl.String).str.zfill(width)).otherwise(pl.lit("?" * width))
        for ok, part, width in zip(oks, (year, month, day), (4, 2, 2), strict=True)
    ]
    good = pl.sum_horizontal(ok.cast(pl.Int8).fill_null(0) for ok in oks)
    iso = pl.format("{}-{}-{}", *texts)
    # Three good parts: a loosely written whole date ("1985-3-4", a timestamp) unless impossible.
    loose = iso.str.to_date("%Y-%m-%d", strict=False)
    partial = parts.select(
        pl.when((good == 3) & loose.is_between(earliest, today)).then(iso).when(good == 2).then(iso)
    ).to_series()
    return value.scatter(rest, partial)


def _has_text(expr: pl.Expr) -> pl.Expr:
    return expr.str.contains(r"[\p{L}\p{N}]")


def normalised_values(spec: FieldSpec, raw: pl.Series, today: dt.date) -> pl.Series:
    """The normalised value of each present raw value; null where it is unusable."""
    if spec.kind == "date":
        return _dates(raw, spec, today)
    col = pl.col("raw")
    match spec.kind:
        case "name":
            out = _name(col)
            expr = pl.when(out.str.contains(r"\p{L}")).then(out)
        case "sex":
            expr = _sex(col)
        case "postcode":
            out = _postcode(col)
            expr = pl.when(out.str.len_chars() > 0).then(out)
        case "address" | "city" | "state" | "text":
            out = _address(col) if spec.kind == "address" else _words(folded(col))
            expr = pl.when(_has_text(out)).then(out)
        case _:
            raise AssertionError(spec.kind)
    return raw.to_frame("raw").select(expr.alias("value")).get_column("value")


def _reject_reason(spec: FieldSpec, today: dt.date) -> str:
    return {
        "name": "no letters",
        "date": (f"not a date in the declared format {spec.date_format}" if spec.date_format
                 else "not a date as YYYY-MM-DD, MM/DD/YYYY or YYYYMMDD")
        + f" between {EARLIEST_BIRTH_YEAR} and {today.isoformat()}",
        "sex": "unrecognised sex/gender spelling",
        "postcode": "no letters or digits",
    }.get(spec.kind, "no letters or digits")


@dataclass(frozen=True, eq=False)
class NormalisedField:
    """One field after normalisation: ``values[codes[r]]`` is record r's value (code -1: none)."""

    codes: np.ndarray  # int64 per record
    values: pl.Series  # distinct normalised values: strings ("YYYY-MM-DD" for dates)

    def per_record(self) -> pl.Series:
        """Each record's normalised value (null where none)."""
        codes = pl.Series(self.codes).set(pl.Series(self.codes < 0), None)
        return self.values.gather(codes)


def normalise(
    frame: pl.DataFrame, schema: Schema, *, today: dt.date
) -> tuple[dict[str, NormalisedField], pl.DataFrame, dict[str, int]]:
    """Normalise every schema field of ``frame`` (all string columns).

    Returns the fields (codes into distinct values; -1 where missing or unusable), the rejects
    frame (row, field, reason; row 1 is the first record) and the number of missing values per
    field. Each distinct raw value is normalised once.
    """
    missing_values = list(schema.missing_values)
    fields, rejects, missing = {}, [], {}
    for spec in schema.fields:
        raw_codes, raw = factorised(frame.get_column(spec.name))
        is_missing = raw.str.strip_chars().str.to_lowercase().is_in(missing_values).to_numpy()
        value = normalised_values(spec, raw, today)
        value = pl.select(pl.when(~pl.Series(is_missing)).then(value)).to_series()
        partial = value.str.contains("?", literal=True).fill_null(False).to_numpy()
        unusable = (~is_missing & value.is_null().to_numpy()) | partial
        value_codes, values = factorised(value)
        present = raw_codes >= 0
        fields[spec.name] = NormalisedField(mapped_codes(value_codes, raw_codes), values)
        missing[spec.name] = int((~present).sum() + is_missing[raw_codes[present]].sum())
        rows = np.flatnonzero(mapped_codes(unusable.astype(np.int64), raw_codes) == 1)
        reasons = np.where(partial[raw_codes[rows]], "impossible date: one part unusable, the other two encoded", _reject_reason(spec, today))
        rejects.append(pl.DataFrame({"row": rows + 1, "field": [spec.name] * len(rows), "reason": reasons}, schema={"row": pl.Int64, "field": pl.String, "reason": pl.String}))
    return fields, pl.concat(rejects).sort("row", "field"), missing
