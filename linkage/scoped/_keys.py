"""Match keys: named combinations of normalised parts, and each record's value of each key.

A key is written over *roles*, not column names, so that one key set serves every schema:

    given, surname, middle        name fields, told apart by their column names
    dob                           the (first) date field
    sex, postcode, city, state    by kind
    address                       the first address field (FEBRL: address_1)

A part is ``role`` (the whole normalised value) or ``role:transform``:

    given:phonetic  surname:phonetic   the NYSIIS code of the name (jellyfish)
    given:nickname                     the nickname-canonical form (the ``nicknames`` data set)
    given:initial                      the first letter
    names:sorted                       given name and surname in alphabetical order (swaps)
    dob:year  dob:year_month           parts of the date of birth
    dob:unordered                      year with day and month in either order (swaps)

A part may also name a schema field directly (``surname`` or ``last_name``). A record lacks a key
when it lacks any of its parts; it then gets no token for that key.

A key may name ``refine`` parts: where a record's value of the key is shared by more of its agency's
records than the token cap allows, the record's token (and scope) is made from the key's parts
plus the first refine part, then plus the next, until its value is held by no other record of the
agency still being refined; only when every level is shared is its token dropped. Common values
(a frequent name with a birth date, in a population of a million) are mostly refined in every
agency alike, and no two records of one agency ever share a token. Not always: each agency decides
on its own records, so one may send a person's value unrefined (alone there) and the other refined
(shared there), or refine to different depths; and each refine part is one more place for an error.
On benchmarks/scale.py's data at 1,000,000 a side, of the true pairs sharing no token 19,570 (3.1% of
all true pairs) met on a key's value with one side refined and one not, 28,618 (4.5%) refined to
different depths, 29,569 (4.7%) were dropped at every level and 30,491 (4.8%) refined alike but
differed in a refine part (at 10,000: 0.9%, 0.05%, 1.0%, 0.2%). Sending also the next level's
token would recover about 0.03 of candidate recall at twice the tokens; the large-population keys
(``LARGE_POPULATION_KEYS``) recover 0.06 within the 1 KB a record.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from collections.abc import Sequence

import jellyfish
import numpy as np
import polars as pl

from linkage.errors import SchemaError
from linkage.records._normalise import NormalisedField
from linkage.records._schema import FieldSpec, Schema
from linkage.records._schema import MatchKey as DeclaredMatchKey
from linkage.records._tokens import FEW

ROLES = ("given", "surname", "middle", "dob", "sex", "postcode", "city", "state", "address")
_NAME_ROLES = {
    "given": "given_name first_name firstname forename given_names givenname",
    "surname": "surname last_name lastname family_name familyname",
    "middle": "middle_name middlename second_name",
}
_ROLE_BY_COLUMN = {column: role for role, columns in _NAME_ROLES.items() for column in columns.split()}
_ROLE_BY_KIND = {"date": "dob", "sex": "sex", "postcode": "postcode", "city": "city", "state": "state", "address": "address"}
# Transforms each role accepts; "" is the whole value.
_TRANSFORMS: dict[str, frozenset[str]] = {
    "given": frozenset({"", "phonetic", "nickname", "initial"}),
    "surname": frozenset({"", "phonetic", "initial"}),
    "middle": frozenset({"", "phonetic", "initial"}),
    "names": frozenset({"sorted", "sorted_phonetic"}),
    "dob": frozenset({"", "year", "year_month", "unordered", "day_month"}),
}


class MatchKey(DeclaredMatchKey):
    """One match key, as a schema's ``[[match_keys]] name = ..., parts = [...]`` entry, with what
    its parts mean (roles and transforms) checked."""

    def __post_init__(self) -> None:
        super().__post_init__()
        for part in self.parts + self.refine:
            base, _, transform = part.partition(":")
            if not base or (transform and base not in _TRANSFORMS and transform not in {"phonetic", "initial"}):
                raise SchemaError(f"match key {self.name!r}: part {part!r}: unknown transform")
            if base in _TRANSFORMS and transform not in _TRANSFORMS[base]:
                raise SchemaError(f"match key {self.name!r}: part {part!r}: {base} takes none of {transform!r}")

    def level(self, depth: int) -> MatchKey:
        """The key refined ``depth`` times: its parts and the first ``depth`` refine parts."""
        return MatchKey(name=self.name, parts=self.parts + self.refine[:depth])

    @classmethod
    def from_dict(cls, data: dict[str, object], *, where: str = "match_keys") -> MatchKey:
        if set(data) - {"name", "parts", "refine"}:
            raise SchemaError(f"{where}: unknown key(s) {', '.join(sorted(set(data) - {'name', 'parts', 'refine'}))}")
        name, parts, refine = data.get("name"), data.get("parts"), data.get("refine", [])
        if not isinstance(name, str):
            raise SchemaError(f"{where}.name: must be a string")
        for what, value in (("parts", parts), ("refine", refine)):
            if not isinstance(value, list) or not all(isinstance(p, str) for p in value):
                raise SchemaError(f"{where}.{what}: must be a list of strings")
        return cls(name=name, parts=tuple(parts), refine=tuple(refine))  # type: ignore[arg-type]


# The default key set, chosen on FEBRL4 and the generated agencies (benchmarks/scoped.py prints
# each key's recall and precision). A true pair is found when it agrees on any one key. Exact
# names with the date of birth lost too many true pairs to typos (union recall 0.58 on agencies
# of 5,000 people): the date keys take only a name's initial, the name keys a phonetic code, and
# both orders of names and of day and month. ``names`` alone links people whose date is missing
# (victim services); the frequency cap drops its common values.
DEFAULT_MATCH_KEYS: tuple[MatchKey, ...] = (
    MatchKey(name="dob_given_initial", parts=("given:initial", "dob:unordered"), refine=("surname:initial", "surname:phonetic")),
    MatchKey(name="dob_surname_initial", parts=("surname:initial", "dob:unordered"), refine=("given:initial", "given:nickname")),
    MatchKey(name="phonetic_names_year", parts=("names:sorted_phonetic", "dob:year"), refine=("dob:day_month", "postcode")),
    MatchKey(name="phonetic_names_day_month", parts=("names:sorted_phonetic", "dob:day_month"), refine=("sex", "city")),
    MatchKey(name="surname_postcode", parts=("surname:phonetic", "postcode", "given:initial"), refine=("dob:year",)),
    MatchKey(name="given_postcode", parts=("given:phonetic", "postcode", "surname:initial"), refine=("dob:year",)),
    MatchKey(name="names", parts=("given", "surname"), refine=("dob:year", "postcode")),
    MatchKey(name="given_address", parts=("given:phonetic", "address"), refine=("dob:year",)),
    MatchKey(name="surname_address", parts=("surname:phonetic", "address"), refine=("given:initial", "dob:year")),
    MatchKey(name="dob_postcode", parts=("dob", "postcode"), refine=("given:initial", "surname:initial")),
    MatchKey(name="street_postcode", parts=("address_1", "postcode"), refine=("surname:phonetic",)),
    MatchKey(name="street_town", parts=("address_1", "city"), refine=("surname:phonetic",)),
    MatchKey(name="street2_postcode", parts=("address_2", "postcode"), refine=("surname:phonetic",)),
    MatchKey(name="dob_state", parts=("dob", "state"), refine=("given:initial", "surname:initial")),
    MatchKey(name="dob_address", parts=("dob", "address"), refine=("given:initial",)),
)

# Keys for large populations. With a token cap of 1, a value two records of one agency share is
# refined or dropped; where a million people share most values of the keys above (in the
# generated agencies: 143 given names, 125 surnames), each refinement adds a part that errors can
# break, and the two agencies refine one person's value to different depths. These keys hold more of
# the name with the whole date, each robust to another error (nickname, misspelt surname, a wrong
# initial, a missing middle name). ``schema init --sample`` adds them where the sample shows a large
# population (``LARGE_POPULATION_SHARE``); on benchmarks/scale.py's data at 1,000,000 a side they
# raise the share of true pairs sharing a token from 0.747 to 0.805. In small populations they
# found few pairs the keys above missed (0.898 to 0.905 at 10,000 a side) and shifted the model's
# fit (generated agencies of 5,000 people: F1 0.857 to 0.852), so they are not sent there.
LARGE_POPULATION_KEYS: tuple[MatchKey, ...] = (
    MatchKey(name="dob_nickname", parts=("given:nickname", "dob:unordered"), refine=("surname:initial", "sex")),
    MatchKey(name="dob_surname_phonetic", parts=("surname:phonetic", "dob:unordered"), refine=("given:initial", "sex")),
    MatchKey(name="dob_initials_middle", parts=("middle:initial", "given:initial", "dob:unordered"), refine=("surname:initial",)),
    MatchKey(
        name="dob_given_initial_sex",
        parts=("given:initial", "dob:unordered", "sex"),
        refine=("surname:initial", "surname:phonetic"),
    ),
)
# A population is large when more than this share of a sample's records share their value of the
# first default key (date of birth + given initial) with another record: about 5% at 10,000
# generated records, 40% at 100,000, 88% at 1,000,000.
LARGE_POPULATION_SHARE = 0.2


def key_set_fingerprint(keys: tuple[MatchKey, ...]) -> str:
    """Changes with any key's name or parts: encodings of different key sets cannot be linked."""
    canonical = json.dumps([k.to_dict() for k in keys], separators=(",", ":"))
    return hashlib.sha256(f"match-keys-v1|{canonical}".encode()).hexdigest()[:16]


def field_roles(schema: Schema) -> dict[str, str]:
    """Role -> field name: each role taken by the first field that plays it."""
    roles: dict[str, str] = {}
    for spec in schema.fields:
        role = _role_of(spec)
        if role is not None and role not in roles:
            roles[role] = spec.name
    return roles


def _role_of(spec: FieldSpec) -> str | None:
    if spec.kind == "name":
        column = re.sub(r"[^a-z0-9]+", "_", spec.name.strip().lower()).strip("_")
        return _ROLE_BY_COLUMN.get(column)
    return _ROLE_BY_KIND.get(spec.kind)


def part_fields(key: MatchKey, schema: Schema) -> dict[str, tuple[str, ...]]:
    """Part -> the schema fields it reads; a SchemaError names the key and the missing field."""
    return dict(_part_fields(key, schema))


@functools.lru_cache(maxsize=256)
def _part_fields(key: MatchKey, schema: Schema) -> tuple[tuple[str, tuple[str, ...]], ...]:
    roles = field_roles(schema)
    columns = set(schema.columns)
    out: dict[str, tuple[str, ...]] = {}
    for part in key.parts:
        base = part.partition(":")[0]
        needed: tuple[str, ...]
        if base == "names":
            needed = ("given", "surname")
        else:
            needed = (base,)
        fields = []
        for role in needed:
            if role in columns:
                fields.append(role)
            elif role in roles:
                fields.append(roles[role])
            else:
                raise SchemaError(f"match key {key.name!r}: part {part!r} needs a {role} field, and the schema has none")
        out[part] = tuple(fields)
    return tuple(out.items())


def usable_keys(keys: tuple[MatchKey, ...], schema: Schema) -> tuple[MatchKey, ...]:
    """The keys whose every part has a field in ``schema``; an error when none has."""
    if not keys:
        raise SchemaError("match keys: none given, so no two records could ever be compared")
    usable = []
    for key in keys:
        try:
            part_fields(key, schema)
        except SchemaError:
            continue
        # A refine part the schema cannot make is left out (the key refines on the others).
        refine = tuple(part for part in key.refine if _makes(part, schema))
        usable.append(MatchKey(name=key.name, parts=key.parts, refine=refine))
    if not usable:
        raise SchemaError("match keys: no key has all its parts among the schema's fields, so nothing could be linked")
    return tuple(usable)


def _makes(part: str, schema: Schema) -> bool:
    try:
        part_fields(MatchKey(name="part", parts=(part,)), schema)
    except SchemaError:
        return False
    return True


def check_keys(keys: tuple[MatchKey, ...], schema: Schema) -> None:
    """Every key's parts are in ``schema``, names are unique, and at least one key exists."""
    if not keys:
        raise SchemaError("match keys: none given, so no two records could ever be compared")
    names = [k.name for k in keys]
    if len(set(names)) != len(names):
        raise SchemaError("match keys: a key name is listed twice")
    for key in keys:
        part_fields(key.level(len(key.refine)), schema)


def fixed_fields(key: MatchKey, schema: Schema) -> frozenset[str]:
    """Fields whose whole normalised value the key holds: their evidence would say nothing new."""
    fixed: set[str] = set()
    for part, fields in part_fields(key, schema).items():
        if ":" not in part:
            fixed.update(fields)
    return frozenset(fixed)


# -- values ------------------------------------------------------------------------------------------


@functools.cache
def nickname_canonicals() -> dict[str, str]:
    """Name -> its nickname-canonical form, from the ``nicknames`` data set (built once).

    A nickname may belong to several formal names (Alex: Alexander, Alexandra); it maps to the
    one with the most nicknames, the commonest formal name. A formal name maps to itself.
    """
    from nicknames import NickNamer

    namer = NickNamer()
    nicknames = namer.nickname_lookup
    canonical: dict[str, str] = {}
    for name in set(nicknames) | set(namer.canonical_lookup):
        options = sorted({name} | namer.canonicals_of(name))
        canonical[name] = max(options, key=lambda option: len(nicknames.get(option, ())))
    return {name: form for name, form in canonical.items() if name != form}


def _phonetic(values: pl.Series) -> pl.Series:
    """The NYSIIS code of each word of each value (keeps "van der berg" apart from "berg");
    spaces and hyphens separate words."""
    words = [re.split(r"[\s\-']+", v) if v is not None else None for v in values.to_list()]
    return pl.Series(
        values.name, [None if w is None else " ".join(jellyfish.nysiis(x) for x in w if x) for w in words], dtype=pl.String
    )


def _transformed(value: pl.Expr, transform: str) -> pl.Expr:
    """One transform of a field's values (phonetic codes are made beforehand, per distinct value)."""
    if transform in ("", "phonetic"):
        return value
    if transform == "initial":
        return value.str.slice(0, 1)
    if transform == "nickname":
        return value.replace(nickname_canonicals())
    if transform == "year":
        return value.str.slice(0, 4).str.replace(r"\?+", "")
    if transform == "year_month":
        return pl.when(value.str.contains("?", literal=True)).then(None).otherwise(value.str.slice(0, 7))
    if transform == "day_month":
        month, day = value.str.slice(5, 2), value.str.slice(8, 2)
        low, high = pl.min_horizontal(month, day), pl.max_horizontal(month, day)
        return pl.when(value.str.slice(5).str.contains("?", literal=True)).then(None).otherwise(low + "-" + high)
    if transform == "unordered":
        year, month, day = value.str.slice(0, 4), value.str.slice(5, 2), value.str.slice(8, 2)
        low, high = pl.min_horizontal(month, day), pl.max_horizontal(month, day)
        return pl.when(value.str.contains("?", literal=True)).then(None).otherwise(year + "-" + low + "-" + high)
    raise AssertionError(transform)


_SEPARATOR = "\x1f"


def key_values(
    keys: Sequence[MatchKey], schema: Schema, values: dict[str, NormalisedField], cache: dict[str, pl.Series] | None = None
) -> pl.DataFrame:
    """Each record's value of each key as one string (null where a part is missing): column ``k``
    holds ``keys[k]``'s values. ``cache`` keeps what one encoding run has made (phonetic codes, parts)
    for its later calls (the refined keys).

    A few records (an intake query): one polars query makes every part and key from each field's
    value per record, since a query costs far more than a few records' work. Many records: each
    part is made on its field's distinct values (far fewer than the records), then spread to them."""
    parts, expressions, bases = _key_expressions(tuple(keys), schema)
    cache = {} if cache is None else cache
    for column, (name, transform) in bases.items():
        if column not in cache:
            cache[column] = _per_distinct(values[name], transform)
    codes = {column: values[name].codes for column, (name, _) in bases.items()}
    if len(next(iter(codes.values()))) <= FEW:
        frame = pl.DataFrame({column: _spread(cache[column], codes[column]) for column in bases})
        return frame.lazy().with_columns(part for _, part in parts.values()).select(expressions).collect()
    for made, (column, part) in parts.items():
        if made not in cache:
            cache[made] = _spread(cache[column].to_frame(column).select(part).to_series(), codes[column])
    return pl.DataFrame({made: cache[made] for made in parts}).lazy().select(expressions).collect()


def _per_distinct(field: NormalisedField, transform: str) -> pl.Series:
    """A field's distinct values, or their phonetic codes (made in Python, so once per distinct value)."""
    return _phonetic(field.values) if transform == "phonetic" else field.values


def _spread(distinct: pl.Series, codes: np.ndarray) -> pl.Series:
    """Each record's value of ``distinct`` by its code (null where the code is -1)."""
    if len(codes) <= FEW:
        texts = distinct.to_list()
        return pl.Series([texts[code] if code >= 0 else None for code in codes.tolist()], dtype=pl.String)
    return distinct.extend_constant(None, 1).gather(np.where(codes >= 0, codes, len(distinct)))


@functools.lru_cache(maxsize=16)
def _key_expressions(
    keys: tuple[MatchKey, ...], schema: Schema
) -> tuple[dict[str, tuple[str, pl.Expr]], list[pl.Expr], dict[str, tuple[str, str]]]:
    """The expressions of ``key_values`` (built once per key set): each distinct part (a field's
    transform) once, then the keys from the parts; and the columns they read: column -> (field, ""
    for its value or "phonetic" for its phonetic code). A part shared by several keys is one column,
    not a copy of its expression in each key: a smaller query, cheaper to plan for one record."""
    bases: dict[str, tuple[str, str]] = {}
    parts_made: dict[str, tuple[str, pl.Expr]] = {}  # part column -> (the column it reads, its expression)

    def part(name: str, transform: str) -> pl.Expr:
        base = "phonetic" if transform == "phonetic" else ""
        column = f"{name}{_SEPARATOR}{base}"
        bases[column] = (name, base)
        made = f"{name}{_SEPARATOR}{transform}{_SEPARATOR}part"
        if made not in parts_made:
            value = _transformed(pl.col(column), transform)
            parts_made[made] = (column, pl.when(value.str.len_bytes() > 0).then(value).alias(made))
        return pl.col(made)

    expressions = []
    for k, key in enumerate(keys):
        parts: list[pl.Expr] = []
        for key_part, fields in part_fields(key, schema).items():
            role, _, transform = key_part.partition(":")
            if role == "names":
                inner = "phonetic" if transform == "sorted_phonetic" else ""
                given, surname = (part(f, inner) for f in fields)
                low, high = pl.min_horizontal(given, surname), pl.max_horizontal(given, surname)
                parts.append(pl.when(given.is_not_null() & surname.is_not_null()).then(low + _SEPARATOR + high))
            else:
                parts.append(part(fields[0], transform))
        # Tagged with the key's name so that equal strings of two keys never give one token.
        expressions.append(pl.concat_str([pl.lit(key.name), *parts], separator=_SEPARATOR).alias(str(k)))
    return parts_made, expressions, bases
