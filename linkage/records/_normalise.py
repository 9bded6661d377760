"""Normalisation: raw column values to the canonical form tokens are drawn from.

The polars expressions here define every normal form. Most values are plain ASCII text, or dates
written one of three fixed ways: compiled kernels settle those in one pass and leave the rest to
the expressions (tests check that both agree). No value is ever printed or logged. A value that
is present but unusable (a date that is no date, a sex spelling nobody knows) becomes null in the
output and one row in the rejects frame: (row, field, reason).
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

import numba
import numpy as np
import polars as pl

from linkage.records._schema import FieldSpec, Schema
from linkage.records._tokens import FEW, factorised, utf8_bytes

# Letters that Unicode decomposition leaves alone but people write without the mark.
_LETTER_FOLDS = {
    "ß": "ss",
    "ø": "o",
    "ł": "l",
    "æ": "ae",
    "œ": "oe",
    "đ": "d",
    "þ": "th",
    "ð": "d",
    "ı": "i",
    "ĳ": "ij",
    "ς": "σ",
}  # ς: as case folding does

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

_Item = TypeVar("_Item")
_Result = TypeVar("_Result")


# -- The normal forms, as polars expressions ------------------------------------------------------


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


def _has_text(expr: pl.Expr) -> pl.Expr:
    return expr.str.contains(r"[\p{L}\p{N}]")


def _folded_text(kind: str, expr: pl.Expr) -> pl.Expr:
    """A text value folded and cleaned for its kind; "" where nothing is left."""
    match kind:
        case "name":
            return _name(expr)
        case "address":
            return _address(expr)
        case "postcode":
            return folded(expr).str.replace_all(r"[^\p{L}\p{N}]", "")
        case "city" | "state" | "text" | "sex":
            return _words(folded(expr))
    raise AssertionError(kind)


def _accepted_text(kind: str, text: pl.Expr) -> pl.Expr:
    """The normalised value of a folded text; null where it is unusable."""
    match kind:
        case "name":
            return pl.when(text.str.contains(r"\p{L}")).then(text)
        case "sex":
            return text.replace_strict(_SEX_SPELLINGS, default=None, return_dtype=pl.String)
        case "postcode":
            # ZIP+4 (12345-6789) keeps its five-digit ZIP.
            out = pl.when(text.str.contains(r"^\d{9}$")).then(text.str.slice(0, 5)).otherwise(text)
            return pl.when(out.str.len_chars() > 0).then(out)
        case "address" | "city" | "state" | "text":
            return pl.when(_has_text(text)).then(text)
    raise AssertionError(kind)


# ASCII digits only: \d would also take digits of other scripts, which no integer cast reads.
_DATE_PATTERNS = (  # (regex, group index of year, month, day)
    (r"^([0-9]{4})-([0-9]{1,2})-([0-9]{1,2})(?:[T ].*)?$", (1, 2, 3)),  # ISO, a timestamp keeps its date
    (r"^([0-9]{1,2})/([0-9]{1,2})/([0-9]{4})$", (3, 1, 2)),  # US MM/DD/YYYY
    (r"^([0-9]{4})([0-9]{2})([0-9]{2})$", (1, 2, 3)),  # compact YYYYMMDD
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


def _dates_by_expressions(text: pl.Series, spec: FieldSpec, today: dt.date) -> pl.Series:
    """Dates as "YYYY-MM-DD"; one impossible part becomes "??" ("1945-04-??"); null if unusable.

    ``text`` is stripped. A strict parse settles whole dates; only the rest go through the regexes.
    """
    formats = (spec.date_format,) if spec.date_format else ("%Y%m%d", "%Y-%m-%d", "%m/%d/%Y")
    earliest = dt.date(EARLIEST_BIRTH_YEAR, 1, 1)
    whole = pl.coalesce([pl.col("raw").str.to_date(fmt, strict=False) for fmt in formats])
    value = (
        text.to_frame("raw").select(pl.when(whole.is_between(earliest, today)).then(whole.dt.to_string("%Y-%m-%d"))).to_series()
    )
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


# -- Kernels for the common case: ASCII text, dates written one of three ways ------------------------

# The kernels' verdict per value: undecided (the expressions decide), unusable, or a value.
_UNDECIDED, _UNUSABLE, _VALUE = 0, 1, 2

# How the ASCII kernel joins a value's words: with spaces, without, or with street words mapped.
_JOIN_SPACED, _JOIN_CLOSED, _JOIN_ADDRESS = 0, 1, 2
_JOIN_BY_KIND = {"name": _JOIN_CLOSED, "postcode": _JOIN_CLOSED, "address": _JOIN_ADDRESS}


def _padded_words(words: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Words' UTF-8 bytes as rows of a zero-padded table, and their lengths in bytes."""
    encoded = [word.encode() for word in words]
    table = np.zeros((len(encoded), max(map(len, encoded), default=0)), dtype=np.uint8)
    for i, word in enumerate(encoded):
        table[i, : len(word)] = np.frombuffer(word, dtype=np.uint8)
    return table, np.array([len(w) for w in encoded], dtype=np.int64)


def _street_table() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """_ADDRESS_WORDS for the kernel: words by length, each packed as two little-endian int64
    (zero-padded to 16 bytes); where each length's words start; and their spellings."""
    words = sorted(_ADDRESS_WORDS, key=len)
    packed = np.frombuffer(b"".join(w.encode("ascii").ljust(16, b"\0") for w in words), dtype="<i8").reshape(-1, 2)
    by_length = np.searchsorted([len(w) for w in words], np.arange(18)).astype(np.int64)
    spellings, spelling_lengths = _padded_words([_ADDRESS_WORDS[w] for w in words])
    return packed.copy(), by_length, spellings, spelling_lengths


_STREET_WORDS, _STREET_WORDS_BY_LENGTH, _STREET_SPELLINGS, _STREET_SPELLING_LENGTHS = _street_table()


@numba.njit(cache=True, nogil=True, inline="always")
def _is_ascii(data: np.ndarray, first: int, last: int) -> bool:
    for j in range(first, last):
        if data[j] >= 128:
            return False
    return True


@numba.njit(cache=True, nogil=True, inline="always")
def _stripped(data: np.ndarray, first: int, last: int) -> tuple[int, int]:
    """data[first:last] without the ASCII whitespace (tab to carriage return, space) at either end."""
    while first < last and (data[first] == 32 or 9 <= data[first] <= 13):
        first += 1
    while last > first and (data[last - 1] == 32 or 9 <= data[last - 1] <= 13):
        last -= 1
    return first, last


@numba.njit(cache=True, nogil=True)
def _ascii_missing(
    data: np.ndarray, offsets: np.ndarray, words: np.ndarray, word_lengths: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Per ASCII value: whether it is one of ``words`` once stripped and lowercased (as
    ``_is_missing`` asks); and whether it was ASCII, so decided here."""
    n = offsets.shape[0] - 1
    missing = np.zeros(n, dtype=np.bool_)
    decided = np.zeros(n, dtype=np.bool_)
    for i in range(n):
        if not _is_ascii(data, offsets[i], offsets[i + 1]):
            continue
        decided[i] = True
        first, last = _stripped(data, offsets[i], offsets[i + 1])
        for k in range(words.shape[0]):
            if word_lengths[k] != last - first:
                continue
            same = True
            for t in range(last - first):
                c = data[first + t]
                if 65 <= c <= 90:
                    c += 32
                if c != words[k, t]:
                    same = False
                    break
            if same:
                missing[i] = True
                break
    return missing, decided


@numba.njit(cache=True, nogil=True, inline="always")
def _mapped_word(
    out: np.ndarray,
    start: int,
    end: int,
    low: int,
    high: int,
    words: np.ndarray,
    by_length: np.ndarray,
    spellings: np.ndarray,
    spelling_lengths: np.ndarray,
) -> int:
    """Replaces out[start:end] (packed in low, high) by its street spelling, if it has one; returns the new end."""
    length = end - start
    if length >= by_length.shape[0] - 1:
        return end
    for k in range(by_length[length], by_length[length + 1]):
        if words[k, 0] == low and words[k, 1] == high:
            for t in range(spelling_lengths[k]):
                out[start + t] = spellings[k, t]
            return start + int(spelling_lengths[k])
    return end


@numba.njit(cache=True, nogil=True)
def _ascii_folded_texts(
    data: np.ndarray,
    offsets: np.ndarray,
    join: int,
    words: np.ndarray,
    by_length: np.ndarray,
    spellings: np.ndarray,
    spelling_lengths: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """What ``_folded_text`` gives for each ASCII value, written from ``2 * offsets[i] + i`` on.

    Lowercase letters and digits kept, apostrophes dropped, anything else separates words.
    Returns (verdict, written bytes, lengths); values with a non-ASCII byte stay undecided.
    """
    n = offsets.shape[0] - 1
    verdict = np.empty(n, dtype=np.int8)
    lengths = np.zeros(n, dtype=np.int64)
    # A value's output fits twice its length plus one: only "av" -> "ave" grows, by half a word.
    out = np.empty(2 * data.shape[0] + n, dtype=np.uint8)
    for i in range(n):
        first, last = offsets[i], offsets[i + 1]
        if not _is_ascii(data, first, last):
            verdict[i] = _UNDECIDED
            continue
        verdict[i] = _VALUE
        base = 2 * first + i
        o = base
        word = -1  # where the current word starts in out; -1 between words
        low = high = 0  # the word's first 16 bytes, packed
        for j in range(first, last + 1):
            c = np.int64(data[j]) if j < last else 32  # a separator after the last word
            if 65 <= c <= 90:
                c += 32
            if 97 <= c <= 122 or 48 <= c <= 57:
                if word < 0:
                    if o > base and join != _JOIN_CLOSED:
                        out[o] = 32
                        o += 1
                    word = o
                    low = high = 0
                at = o - word
                if at < 8:
                    low |= c << (8 * at)
                elif at < 16:
                    high |= c << (8 * (at - 8))
                out[o] = c
                o += 1
            elif c == 39 or c == 96:  # ' and ` vanish inside a word
                continue
            elif word >= 0:
                if join == _JOIN_ADDRESS:
                    o = _mapped_word(out, word, o, low, high, words, by_length, spellings, spelling_lengths)
                word = -1
        lengths[i] = o - base
    return verdict, out, lengths


@numba.njit(cache=True, nogil=True, inline="always")
def _all_digits(data: np.ndarray, first: int, last: int) -> bool:
    for j in range(first, last):
        if data[j] < 48 or data[j] > 57:
            return False
    return True


@numba.njit(cache=True, nogil=True, inline="always")
def _digits(data: np.ndarray, start: int, count: int) -> int:
    """The number written by data[start:start + count]; -1 unless all are ASCII digits."""
    value = 0
    for j in range(start, start + count):
        d = int(data[j]) - 48
        if d < 0 or d > 9:
            return -1
        value = 10 * value + d
    return value


@numba.njit(cache=True, nogil=True, inline="always")
def _write_part(out: np.ndarray, at: int, value: int, width: int, ok: bool) -> None:
    """``value`` zero-padded to ``width`` digits, or as many "?" when it is not ``ok``."""
    for t in range(width - 1, -1, -1):
        out[at + t] = 48 + value % 10 if ok else 63
        value //= 10


@numba.njit(cache=True, nogil=True)
def _canonical_dates(
    data: np.ndarray, offsets: np.ndarray, earliest_year: int, today_year: int, today_month: int, today_day: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ASCII dates written YYYYMMDD, YYYY-MM-DD or MM/DD/YYYY, or with letters, as ``_dates_by_expressions``.

    A strict parse of these shapes finds the same year, month and day as the loose patterns, so
    both paths end the same: a whole date in range; else, two plausible parts and "??" for the
    third; else unusable. Writes 10 bytes per value from 10 * i. A letter fails every format and
    every pattern but a timestamp's tail: unusable unless the value starts like an ISO date. So do
    up to four or more than eight digits alone. Anything else stays undecided.
    """
    n = offsets.shape[0] - 1
    verdict = np.empty(n, dtype=np.int8)
    lengths = np.zeros(n, dtype=np.int64)
    out = np.empty(10 * n, dtype=np.uint8)
    for i in range(n):
        verdict[i] = _UNDECIDED
        if not _is_ascii(data, offsets[i], offsets[i + 1]):
            continue
        s, last = _stripped(data, offsets[i], offsets[i + 1])
        size = last - s
        if size == 0:
            verdict[i] = _UNUSABLE
            continue
        letter = False
        for j in range(s, last):
            if 65 <= data[j] <= 90 or 97 <= data[j] <= 122:
                letter = True
                break
        if letter:
            if not (size >= 5 and _digits(data, s, 4) >= 0 and data[s + 4] == 45):
                verdict[i] = _UNUSABLE
            continue
        if (size <= 4 or size >= 9) and _all_digits(data, s, last):
            # Digits alone: too few for any format, or left over after YYYYMMDD.
            verdict[i] = _UNUSABLE
            continue
        year = month = day = -1
        if size == 8:
            year, month, day = _digits(data, s, 4), _digits(data, s + 4, 2), _digits(data, s + 6, 2)
        elif size == 10 and data[s + 4] == 45 and data[s + 7] == 45:  # '-'
            year, month, day = _digits(data, s, 4), _digits(data, s + 5, 2), _digits(data, s + 8, 2)
        elif size == 10 and data[s + 2] == 47 and data[s + 5] == 47:  # '/'
            month, day, year = _digits(data, s, 2), _digits(data, s + 3, 2), _digits(data, s + 6, 4)
        if year < 0 or month < 0 or day < 0:
            continue
        year_ok = earliest_year <= year <= today_year
        month_ok = 1 <= month <= 12
        day_ok = 1 <= day <= 31
        if year_ok and month_ok and day_ok:
            leap = year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)
            month_days = 29 if month == 2 and leap else 28 if month == 2 else 30 if month in (4, 6, 9, 11) else 31
            later = year == today_year and (month > today_month or (month == today_month and day > today_day))
            if day > month_days or later:
                verdict[i] = _UNUSABLE  # three plausible parts, but no possible date
                continue
        elif int(year_ok) + int(month_ok) + int(day_ok) != 2:
            verdict[i] = _UNUSABLE
            continue
        at = 10 * i
        _write_part(out, at, year, 4, year_ok)
        out[at + 4] = 45  # '-'
        _write_part(out, at + 5, month, 2, month_ok)
        out[at + 7] = 45
        _write_part(out, at + 8, day, 2, day_ok)
        verdict[i] = _VALUE
        lengths[i] = 10
    return verdict, out, lengths


@numba.njit(cache=True, nogil=True)
def _joined_lines(out: np.ndarray, starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """The written values out[starts[i]:starts[i] + lengths[i]], one per line."""
    n = lengths.shape[0]
    at = np.empty(n + 1, dtype=np.int64)
    at[0] = 0
    for i in range(n):
        at[i + 1] = at[i] + lengths[i] + 1
    joined = np.empty(max(int(at[n]) - 1, 0), dtype=np.uint8)
    for i in range(n):
        for t in range(lengths[i]):
            joined[at[i] + t] = out[starts[i] + t]
        if i < n - 1:
            joined[at[i + 1] - 1] = 10
    return joined


# -- Normalising a field ------------------------------------------------------------------------------


def _lines(name: str, out: np.ndarray, starts: np.ndarray, lengths: np.ndarray) -> pl.Series:
    """The values a kernel wrote (ASCII without newlines), as strings."""
    if len(lengths) == 0:
        return pl.Series(name, [], dtype=pl.String)
    text = _joined_lines(out, starts, lengths).tobytes().decode("ascii")
    if len(lengths) <= FEW:
        return pl.Series(name, text.split("\n"), dtype=pl.String)
    return pl.Series(name, [text]).str.split("\n").explode()


def _is_missing(raw: pl.Series, data: np.ndarray, offsets: np.ndarray, missing_values: tuple[str, ...]) -> np.ndarray:
    """Whether each raw value, stripped and lowercased, is one of ``missing_values``."""
    missing, decided = _ascii_missing(data, offsets, *_padded_words(list(missing_values)))
    undecided = np.flatnonzero(~decided)
    if len(undecided):
        others = raw.gather(undecided).str.strip_chars().str.to_lowercase().is_in(list(missing_values))
        missing[undecided] = others.to_numpy()
    return missing


def _texts(kind: str, raw: pl.Series, data: np.ndarray, offsets: np.ndarray) -> pl.Series:
    return _accepted(kind, _folded_texts(kind, raw, data, offsets))


def _accepted(kind: str, text: pl.Series) -> pl.Series:
    return text.to_frame("raw").select(_accepted_column(kind, "raw")).to_series().alias("value")


def _accepted_together(texts: list[tuple[str, pl.Series]]) -> list[pl.Series]:
    """``_accepted`` of a few fields' folded texts in one polars query (each query costs more than a
    few values' work): padded with nulls to one length, which the rules leave null, then cut back."""
    if not texts:
        return []
    n = max(len(text) for _, text in texts)
    columns = {str(f): pl.Series(text.to_list() + [None] * (n - len(text)), dtype=pl.String) for f, (_, text) in enumerate(texts)}
    frame = pl.DataFrame(columns).select(_accepted_column(kind, str(f)) for f, (kind, _) in enumerate(texts))
    return [frame.get_column(str(f)).head(len(text)).alias("value") for f, (_, text) in enumerate(texts)]


@functools.lru_cache(maxsize=256)
def _accepted_column(kind: str, column: str) -> pl.Expr:
    return _accepted_text(kind, pl.col(column)).alias(column)


def _folded_texts(kind: str, raw: pl.Series, data: np.ndarray, offsets: np.ndarray) -> pl.Series:
    """Each value folded and cleaned for its kind (``_folded_text``), not yet judged usable."""
    join = _JOIN_BY_KIND.get(kind, _JOIN_SPACED)
    verdict, out, lengths = _ascii_folded_texts(
        data, offsets, join, _STREET_WORDS, _STREET_WORDS_BY_LENGTH, _STREET_SPELLINGS, _STREET_SPELLING_LENGTHS
    )
    text = _lines("raw", out, 2 * offsets[:-1] + np.arange(len(raw)), lengths)
    undecided = np.flatnonzero(verdict == _UNDECIDED)
    if len(undecided):
        other = raw.gather(undecided).to_frame("raw").select(_folded_text(kind, pl.col("raw"))).to_series()
        text = text.scatter(undecided, other)
    return text


def _dates(raw: pl.Series, data: np.ndarray, offsets: np.ndarray, spec: FieldSpec, today: dt.date) -> pl.Series:
    if spec.date_format:
        return _dates_by_expressions(raw.str.strip_chars(), spec, today)
    verdict, out, lengths = _canonical_dates(data, offsets, EARLIEST_BIRTH_YEAR, today.year, today.month, today.day)
    written = _lines("raw", out, 10 * np.arange(len(raw)), lengths)
    if len(raw) <= FEW:
        value = pl.Series(
            "raw",
            [w if v else None for w, v in zip(written.to_list(), (verdict == _VALUE).tolist(), strict=True)],
            dtype=pl.String,
        )
    else:
        value = pl.select(pl.when(pl.Series(verdict == _VALUE)).then(written)).to_series()
    undecided = np.flatnonzero(verdict == _UNDECIDED)
    if len(undecided):
        text = raw.gather(undecided).str.strip_chars()
        value = value.scatter(undecided, _dates_by_expressions(text, spec, today))
    return value


def _normalised(spec: FieldSpec, raw: pl.Series, data: np.ndarray, offsets: np.ndarray, today: dt.date) -> pl.Series:
    if spec.kind == "date":
        return _dates(raw, data, offsets, spec, today)
    return _texts(spec.kind, raw, data, offsets)


def normalised_values(spec: FieldSpec, raw: pl.Series, today: dt.date) -> pl.Series:
    """The normalised value of each present (non-null) raw value; null where it is unusable."""
    return _normalised(spec, raw, *utf8_bytes(raw), today)


def _reject_reason(spec: FieldSpec, today: dt.date) -> str:
    return {
        "name": "no letters",
        "date": (
            f"not a date in the declared format {spec.date_format}"
            if spec.date_format
            else "not a date as YYYY-MM-DD, MM/DD/YYYY or YYYYMMDD"
        )
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
    if frame.height <= SERIAL_BELOW:
        done = _normalised_fields_together(frame, schema, today)
    else:
        done = map_concurrently(lambda spec: _normalised_field(frame.get_column(spec.name), spec, schema, today), schema.fields)
    fields = {spec.name: field for spec, (field, _, _) in zip(schema.fields, done, strict=True)}
    missing = {spec.name: n_missing for spec, (_, n_missing, _) in zip(schema.fields, done, strict=True)}
    found = [field_rejects for _, _, field_rejects in done if field_rejects.height]
    rejects = pl.concat(found).sort("row", "field") if found else pl.DataFrame(schema=_REJECTS)
    return fields, rejects, missing


# Records below which work runs on the calling thread: for a few (an intake query), starting
# threads costs more than the work.
SERIAL_BELOW = 64


def map_concurrently(function: Callable[[_Item], _Result], items: Iterable[_Item], *, serial: bool = False) -> list[_Result]:
    """``[function(item) for item in items]``, on as many threads as numba may use (one if ``serial``).

    For work per field: polars and the (serial, GIL-free) kernels let fields run side by side,
    where parallel kernels would stop at a barrier after every small step.
    """
    threads = numba.get_num_threads()
    if threads == 1 or serial:
        return [function(item) for item in items]
    with ThreadPoolExecutor(threads) as pool:
        return list(pool.map(function, items))


def _normalised_field(
    column: pl.Series, spec: FieldSpec, schema: Schema, today: dt.date
) -> tuple[NormalisedField, int, pl.DataFrame]:
    """One field normalised, its number of missing values, and its rejects."""
    raw_codes, raw = factorised(column)
    data, offsets = utf8_bytes(raw)
    is_missing = _is_missing(raw, data, offsets, schema.missing_for(spec))
    return _field_of(spec, raw_codes, is_missing, _normalised(spec, raw, data, offsets, today), today)


def _normalised_fields_together(
    frame: pl.DataFrame, schema: Schema, today: dt.date
) -> list[tuple[NormalisedField, int, pl.DataFrame]]:
    """``_normalised_field`` of every field of a few records, on this thread, the text fields'
    last step (``_accepted_text``) one polars query for all of them."""
    started = []
    for spec in schema.fields:
        raw_codes, raw = factorised(frame.get_column(spec.name))
        data, offsets = utf8_bytes(raw)
        is_missing = _is_missing(raw, data, offsets, schema.missing_for(spec))
        dates = _dates(raw, data, offsets, spec, today) if spec.kind == "date" else None
        folded = _folded_texts(spec.kind, raw, data, offsets) if dates is None else None
        started.append((raw_codes, is_missing, dates, folded))
    accepted = iter(
        _accepted_together([(spec.kind, f) for spec, (_, _, _, f) in zip(schema.fields, started, strict=True) if f is not None])
    )
    return [
        _field_of(spec, raw_codes, is_missing, dates if dates is not None else next(accepted), today)
        for spec, (raw_codes, is_missing, dates, _) in zip(schema.fields, started, strict=True)
    ]


def _field_of(
    spec: FieldSpec, raw_codes: np.ndarray, is_missing: np.ndarray, value: pl.Series, today: dt.date
) -> tuple[NormalisedField, int, pl.DataFrame]:
    """The field, its number of missing values and its rejects, from each distinct raw value's
    normalised ``value`` (null where unusable) and whether it is a missing value."""
    if len(value) <= FEW:  # the same, through Python lists: a few values cost less than a polars query
        texts = [None if gone else text for text, gone in zip(value.to_list(), is_missing.tolist(), strict=True)]
        value = pl.Series(value.name, texts, dtype=pl.String)
        partial = np.array([spec.kind == "date" and text is not None and "?" in text for text in texts], dtype=bool)
        null = np.array([text is None for text in texts], dtype=bool)
        rejected = np.where(partial, _PARTIAL, np.where(null, _REJECTED, _USABLE))
    else:
        if is_missing.any():
            value = pl.select(pl.when(~pl.Series(is_missing)).then(value)).to_series()
        # Only a date can be partial ("1945-04-??"): other normal forms hold letters, digits, spaces.
        if spec.kind == "date":
            partial = value.str.contains("?", literal=True).fill_null(False).to_numpy()
        else:
            partial = np.zeros(len(value), dtype=bool)
        rejected = np.where(partial, _PARTIAL, np.where(value.is_null().to_numpy(), _REJECTED, _USABLE))
    status = np.where(is_missing, _MISSING, rejected).astype(np.int8)
    value_codes, values = factorised(value)
    codes, n_missing, rows, partial_rows = _per_record(raw_codes, value_codes, status)
    if len(rows) == 0:
        return NormalisedField(codes, values), n_missing, pl.DataFrame(schema=_REJECTS)
    reason = pl.when(pl.Series(partial_rows)).then(pl.lit(_PARTIAL_REASON)).otherwise(pl.lit(_reject_reason(spec, today)))
    rejects = pl.DataFrame({"row": rows + 1}).select("row", field=pl.lit(spec.name), reason=reason)
    return NormalisedField(codes, values), n_missing, rejects


_REJECTS = {"row": pl.Int64, "field": pl.String, "reason": pl.String}


_PARTIAL_REASON = "impossible date: one part unusable, the other two encoded"
# What a distinct raw value is: usable, missing, rejected, or a date rejected but with two parts kept.
_USABLE, _MISSING, _REJECTED, _PARTIAL = 0, 1, 2, 3


@numba.njit(cache=True, nogil=True)
def _per_record(
    raw_codes: np.ndarray, value_codes: np.ndarray, status: np.ndarray
) -> tuple[np.ndarray, int, np.ndarray, np.ndarray]:
    """Each record's value code, the number of records missing a value, and the rejected records
    (0-based) with the partial ones marked. ``status`` is per distinct raw value."""
    n = raw_codes.shape[0]
    codes = np.empty(n, dtype=np.int64)
    rows = np.empty(n, dtype=np.int64)
    partial = np.empty(n, dtype=np.bool_)
    n_missing = n_rejected = 0
    for r in range(n):
        raw = raw_codes[r]
        if raw < 0:
            codes[r] = -1
            n_missing += 1
            continue
        codes[r] = value_codes[raw]
        if status[raw] == _MISSING:
            n_missing += 1
        elif status[raw] != _USABLE:
            rows[n_rejected] = r
            partial[n_rejected] = status[raw] == _PARTIAL
            n_rejected += 1
    return codes, n_missing, rows[:n_rejected].copy(), partial[:n_rejected].copy()
