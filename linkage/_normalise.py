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


_DATE_PATTERNS = (  # (regex, group index of year, month, day)
    (r"^(\d{4})-(\d{1,2})-(\d{1,2})(?:[T ].*)?$", (1, 2, 3)),  # ISO, a timestamp keeps its date
    (r"^(\d{1,2})/(\d{1,2})/(\d{4})$", (3, 1, 2)),  # US MM/DD/YYYY
    (r"^(\d{4})(\d{2})(\d{2})$", (1, 2, 3)),  # compact YYYYMMDD
)


def _date(expr: pl.Expr, spec: FieldSpec, today: dt.date) -> pl.Expr:
    """A date as "YYYY-MM-DD"; one impossible part becomes "??" ("1945-04-??"); null if unusable."""
    text = expr.str.strip_chars()
    if spec.date_format:
        parsed = text.str.to_date(spec.date_format, strict=False)
        parts = [parsed.dt.year(), parsed.dt.month(), parsed.dt.day()]
    else:
        parts = [
            pl.coalesce([text.str.extract(pattern, groups[i]).cast(pl.Int32) for pattern, groups in _DATE_PATTERNS])
            for i in range(3)
        ]
    year, month, day = parts
    year_ok = year.is_between(EARLIEST_BIRTH_YEAR, today.year)
    month_ok = month.is_between(1, 12)
    day_ok = day.is_between(1, 31)
    iso = pl.format("{}-{}-{}", year.cast(pl.String), month.cast(pl.String).str.zfill(2), day.cast(pl.String).str.zfill(2))
    whole = iso.str.to_date("%Y-%m-%d", strict=False)
    partial = pl.format(
        "{}-{}-{}",
        pl.when(year_ok).then(year.cast(pl.String)).otherwise(pl.lit("????")),
        pl.when(month_ok).then(month.cast(pl.String).str.zfill(2)).otherwise(pl.lit("??")),
        pl.when(day_ok).then(day.cast(pl.String).str.zfill(2)).otherwise(pl.lit("??")),
    )
    good_parts = year_ok.cast(pl.Int8).fill_null(0) + month_ok.cast(pl.Int8).fill_null(0) + day_ok.cast(pl.Int8).fill_null(0)
    return (
        pl.when(whole.is_not_null() & (whole <= today) & year_ok)
        .then(iso)
        .when(good_parts == 2)
        .then(partial)
    )


def _has_text(expr: pl.Expr) -> pl.Expr:
    return expr.str.contains(r"[\p{L}\p{N}]")


def normalised_value(spec: FieldSpec, raw: pl.Expr, today: dt.date) -> pl.Expr:
    """The normalised value of a present raw value; null where it is unusable."""
    match spec.kind:
        case "name":
            out = _name(raw)
            return pl.when(out.str.contains(r"\p{L}")).then(out)
        case "date":
            return _date(raw, spec, today)
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
        "date": (f"not a date in the declared format {spec.date_format}" if spec.date_format
                 else "not a date as YYYY-MM-DD, MM/DD/YYYY or YYYYMMDD")
        + f" between {EARLIEST_BIRTH_YEAR} and {today.isoformat()}",
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
        value = normalised_value(spec, pl.col("raw"), today)
        distinct = distinct.with_columns(missing=is_missing).with_columns(
            value=pl.when(~pl.col("missing")).then(value)
        ).with_columns(rejected=~pl.col("missing") & (pl.col("value").is_null() | pl.col("value").str.contains("?", literal=True)))
        # Back to rows with a hash join that keeps the row order.
        rows = raw.to_frame("raw").join(distinct, on="raw", how="left", nulls_equal=True, maintain_order="left")
        columns.append(rows.get_column("value").alias(spec.name))
        missing[spec.name] = int(rows.get_column("missing").sum())
        rejected = rows.filter(pl.col("rejected")).select(
            row=pl.int_range(1, rows.height + 1, dtype=pl.Int64).filter(rows.get_column("rejected")),
            field=pl.lit(spec.name),
            reason=pl.when(pl.col("value").is_null())
            .then(pl.lit(_reject_reason(spec, today)))
            .otherwise(pl.lit("impossible date: one part unusable, the other two encoded")),
        )
        rejects.append(rejected)
    rejects_frame = pl.concat(rejects).sort("row", "field")
    return pl.DataFrame(columns), rejects_frame, missing
