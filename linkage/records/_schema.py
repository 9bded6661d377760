"""The linkage schema: which columns are encoded, how, and with which hardening.

A schema is a TOML file that every agency of a project shares. It is parsed once, at the edge, into
frozen dataclasses with every default visible here; validation errors name the offending key. The
fingerprint covers everything that changes the bits of an encoding, so two encodings can be
compared exactly when their fingerprints agree.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import re
import secrets
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from linkage.errors import SchemaError

SCHEMA_VERSION = 1
ENCODING_VERSION = 1

# kind -> the field group it belongs to, unless a field says otherwise.
KINDS: dict[str, str] = {
    "name": "name",
    "date": "dob",
    "sex": "sex",
    "address": "address",
    "city": "address",
    "state": "address",
    "postcode": "address",
    "text": "other",
}

# Relative weight per kind: the number of hash functions per token is weight × filter.hashes.
# By default a pair is scored by the Dice of its record filters alone, so a field's weight is its
# say in that one score. Relatives share a surname and an address, rarely a given name and a
# birthday: the date counts most and the address little (measured on generated agencies of 5,000
# people, Dice 0.62: F1 0.82 against 0.64 with the weights below; FEBRL4 0.991 against 0.992).
DEFAULT_WEIGHTS: dict[str, float] = {
    "name": 1.0,
    "date": 3.0,
    "sex": 0.5,
    "address": 0.25,
    "city": 0.25,
    "state": 0.3,
    "postcode": 0.3,
    "text": 0.5,
}
# With group filters, Fellegi–Sunter scoring learns each group's evidence itself; a weight only
# sets how many bits its field sets in the record filter (candidates) and its group filter.
FIELD_SCORING_WEIGHTS: dict[str, float] = {
    "name": 1.0,
    "date": 1.5,
    "sex": 0.5,
    "address": 0.5,
    "city": 0.5,
    "state": 0.3,
    "postcode": 0.6,
    "text": 0.5,
}


def default_weights(group_filters: bool) -> dict[str, float]:
    """Weight per kind for a schema with or without group filters."""
    return FIELD_SCORING_WEIGHTS if group_filters else DEFAULT_WEIGHTS


_KIND_BY_COLUMN: dict[str, str] = {}
for _kind, _names in {
    "name": "given_name first_name firstname forename given_names surname last_name lastname "
    "family_name middle_name middlename second_name maiden_name",
    "date": "date_of_birth dob birth_date birthdate dateofbirth",
    "sex": "sex gender",
    "address": "address street address_1 address_2 address1 address2 street_address street_number house_number street_name",
    "city": "city suburb town locality",
    "state": "state province region county",
    "postcode": "postcode zip zipcode zip_code postal_code post_code postalcode",
}.items():
    for _name in _names.split():
        _KIND_BY_COLUMN[_name] = _kind

DEFAULT_MISSING_VALUES = ("", "na", "n/a", "null", "none", "unknown", "-", "?")
# Name fields (kind ``name``) have their own list: the same but for markers that are also names
# (Na is a Korean surname; "NA" in any other field still means not known).
DEFAULT_MISSING_NAMES = tuple(v for v in DEFAULT_MISSING_VALUES if v != "na")
PROJECT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")  # the whole id (fullmatch)
KEY_NAME = re.compile(r"[a-z][a-z0-9_]{0,31}")  # a match key's name (fullmatch)
# A token value shared by more records of one agency than this is dropped from them (the records
# stay, with their other keys). At 1 the coordinator never sees two records of one agency share a
# token: the within-agency token graph, which graph matching re-identifies, is empty (README: Privacy).
DEFAULT_TOKEN_CAP = 1


def kind_for_column(column: str) -> str:
    """Guess a field's kind from its column name (anything unrecognised is free text)."""
    key = re.sub(r"[^a-z0-9]+", "_", column.strip().lower()).strip("_")
    return _KIND_BY_COLUMN.get(key, "text")


@dataclass(frozen=True, kw_only=True)
class FieldSpec:
    """One encoded column."""

    name: str
    kind: str
    weight: float
    group: str
    date_format: str | None = None  # a strftime format this column's dates are written in
    salt_with: str | None = None  # attribute salting: hash this field's tokens with another field's value

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}


@dataclass(frozen=True, kw_only=True)
class FilterSpec:
    bits: int = 1024  # filter length before hardening
    hashes: int = 18  # hash functions per token at weight 1.0 (about half the bits set on FEBRL)
    qgram: int = 2  # q for the q-grams of names, addresses and text


@dataclass(frozen=True, kw_only=True)
class HardeningSpec:
    """Hardening applied to every filter, in this order: balance, xor_fold, blip."""

    balance: bool = False  # append the complement and permute with a keyed permutation (2x length)
    # Measured (benchmarks/privacy.py): folding a ~50%-full record filter takes similarity-graph
    # matching from 99% re-identification to under 1%, but only when no group filters are sent.
    xor_fold: bool = True  # XOR the two halves (0.5x length)
    blip: float = 0.0  # randomised response: flip each bit with this probability
    # attribute salting is per field (FieldSpec.salt_with)


@dataclass(frozen=True, kw_only=True)
class MatchKey:
    """A match key as the schema declares it (``[[match_keys]] name = ..., parts = [...]``).

    What the parts mean (roles, transforms) is ``linkage.scoped``'s business: it checks them
    against the schema's fields before encoding."""

    name: str
    parts: tuple[str, ...]
    refine: tuple[str, ...] = ()  # parts added one at a time where a value is shared beyond the token cap

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not KEY_NAME.fullmatch(self.name):
            raise SchemaError(f"match key {self.name!r}: name: use 1-32 lowercase letters, digits and '_'")
        if not self.parts or not all(isinstance(p, str) and p for p in self.parts):
            raise SchemaError(f"match key {self.name!r}: parts: at least one part is required")
        if not all(isinstance(p, str) and p for p in self.refine):
            raise SchemaError(f"match key {self.name!r}: refine: parts must be non-empty strings")
        if len(set(self.parts + self.refine)) != len(self.parts) + len(self.refine):
            raise SchemaError(f"match key {self.name!r}: parts: a part is listed twice")

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "parts": list(self.parts), **({"refine": list(self.refine)} if self.refine else {})}


@dataclass(frozen=True, kw_only=True)
class Schema:
    project: str
    fields: tuple[FieldSpec, ...]
    filter: FilterSpec = FilterSpec()
    hardening: HardeningSpec = HardeningSpec()
    # Per-group filters let the attacks re-identify 90-100% of records whatever the hardening
    # (benchmarks/privacy.py); they are for a task force that accepts that (README: Privacy).
    group_filters: bool = False  # also emit one filter per field group (field scoring); the presence mask is always sent
    missing_values: tuple[str, ...] = DEFAULT_MISSING_VALUES
    missing_names: tuple[str, ...] = DEFAULT_MISSING_NAMES  # for fields of kind "name"
    # Match keys (the default profile): records are compared only inside the scope of a key they
    # agree on exactly. Empty: the record-filter profiles (Bloom filters any two of which compare).
    match_keys: tuple[MatchKey, ...] = ()
    token_cap: int = DEFAULT_TOKEN_CAP  # a token value held by more records of one agency is dropped

    def __post_init__(self) -> None:
        _validate(self)

    @property
    def profile(self) -> str:
        """``match-keys``, ``field-scoring`` (group filters) or ``record-filter``."""
        if self.match_keys:
            return "match-keys"
        return "field-scoring" if self.group_filters else "record-filter"

    # -- derived -------------------------------------------------------------------------------
    @property
    def columns(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.fields)

    @property
    def groups(self) -> tuple[str, ...]:
        """Field groups in order of first appearance."""
        return tuple(dict.fromkeys(f.group for f in self.fields))

    @property
    def output_bits(self) -> int:
        bits = self.filter.bits
        if self.hardening.balance:
            bits *= 2
        if self.hardening.xor_fold:
            bits //= 2
        return bits

    def field(self, name: str) -> FieldSpec:
        return next(f for f in self.fields if f.name == name)

    def missing_for(self, spec: FieldSpec) -> tuple[str, ...]:
        """The values that mean 'not known' in this field."""
        return self.missing_names if spec.kind == "name" else self.missing_values

    def hashes_for(self, spec: FieldSpec) -> int:
        return max(1, round(spec.weight * self.filter.hashes))

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": SCHEMA_VERSION,
            "project": {"id": self.project},
            "filter": dataclasses.asdict(self.filter),
            "hardening": dataclasses.asdict(self.hardening),
            "output": {"group_filters": self.group_filters},
            "missing": {"values": list(self.missing_values), "names": list(self.missing_names)},
            "fields": [f.to_dict() for f in self.fields],
            **(
                {"match_keys": [k.to_dict() for k in self.match_keys], "frequency": {"token_cap": self.token_cap}}
                if self.match_keys
                else {}
            ),
        }

    @property
    def fingerprint(self) -> str:
        """Stable across formatting and comments; changes with anything that changes the bits."""
        canonical = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(f"encoding-v{ENCODING_VERSION}|{canonical}".encode()).hexdigest()[:32]

    # -- construction --------------------------------------------------------------------------
    @classmethod
    def for_columns(cls, columns: list[str], *, project: str | None = None, group_filters: bool = False) -> Schema:
        """A schema for these columns, each field's kind chosen from its name.

        The default is the record filter alone, XOR-folded, with ``DEFAULT_WEIGHTS``: the one
        setting measured to resist both attacks (README: Privacy). ``group_filters=True`` is field
        scoring: unfolded record and group filters with ``FIELD_SCORING_WEIGHTS``, which link messy
        data best and let a curious coordinator re-identify nearly every record.
        """
        weights = default_weights(group_filters)
        fields = []
        for column in columns:
            kind = kind_for_column(column)
            fields.append(FieldSpec(name=column.strip(), kind=kind, weight=weights[kind], group=KINDS[kind]))
        return cls(
            project=project or f"p-{secrets.token_hex(6)}",
            fields=tuple(fields),
            hardening=HardeningSpec(xor_fold=not group_filters),
            group_filters=group_filters,
        )

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, source: str = "schema") -> Schema:
        data = dict(data)
        _check_keys(
            data,
            {"version", "project", "filter", "hardening", "output", "missing", "fields", "match_keys", "frequency"},
            source,
            "",
        )
        version = data.get("version", SCHEMA_VERSION)
        if version != SCHEMA_VERSION:
            raise SchemaError(f"{source}: version: unsupported schema version {version!r} (expected {SCHEMA_VERSION})")
        project = _table(data, "project", source)
        _check_keys(project, {"id"}, source, "project.")
        if "id" not in project:
            raise SchemaError(f"{source}: project.id: missing")
        filt = _table(data, "filter", source)
        _check_keys(filt, {f.name for f in dataclasses.fields(FilterSpec)}, source, "filter.")
        hard = _table(data, "hardening", source)
        _check_keys(hard, {f.name for f in dataclasses.fields(HardeningSpec)}, source, "hardening.")
        output = _table(data, "output", source)
        _check_keys(output, {"group_filters"}, source, "output.")
        missing = _table(data, "missing", source)
        _check_keys(missing, {"values", "names"}, source, "missing.")
        group_filters = _typed(output.get("group_filters", False), bool, source, "output.group_filters")
        weights = default_weights(group_filters)
        raw_fields = data.get("fields")
        if not isinstance(raw_fields, list) or not raw_fields:
            raise SchemaError(f"{source}: fields: at least one [[fields]] entry is required")
        fields = []
        for index, raw in enumerate(raw_fields):
            where = f"fields[{index}]"
            if not isinstance(raw, dict):
                raise SchemaError(f"{source}: {where}: must be a table")
            _check_keys(raw, {f.name for f in dataclasses.fields(FieldSpec)}, source, f"{where}.")
            if "name" not in raw:
                raise SchemaError(f"{source}: {where}.name: missing")
            kind = raw.get("kind", "text")
            if kind not in KINDS:
                raise SchemaError(f"{source}: {where}.kind: unknown kind {kind!r} (one of {', '.join(KINDS)})")
            fields.append(
                FieldSpec(
                    name=_typed(raw["name"], str, source, f"{where}.name"),
                    kind=kind,
                    weight=float(_typed(raw.get("weight", weights[kind]), (int, float), source, f"{where}.weight")),
                    group=_typed(raw.get("group", KINDS[kind]), str, source, f"{where}.group"),
                    date_format=_typed(raw.get("date_format"), (str, type(None)), source, f"{where}.date_format"),
                    salt_with=_typed(raw.get("salt_with"), (str, type(None)), source, f"{where}.salt_with"),
                )
            )
        match_keys = _match_keys(data.get("match_keys", []), source)
        frequency = _table(data, "frequency", source)
        _check_keys(frequency, {"token_cap"}, source, "frequency.")
        try:
            return cls(
                project=_typed(project["id"], str, source, "project.id"),
                match_keys=match_keys,
                token_cap=_typed(frequency.get("token_cap", DEFAULT_TOKEN_CAP), int, source, "frequency.token_cap"),
                fields=tuple(fields),
                filter=FilterSpec(**{k: _typed(v, int, source, f"filter.{k}") for k, v in filt.items()}),
                hardening=HardeningSpec(**_hardening_values(hard, source)),
                group_filters=group_filters,
                missing_values=_missing_list(missing, "values", DEFAULT_MISSING_VALUES, source),
                missing_names=_missing_list(missing, "names", DEFAULT_MISSING_NAMES, source),
            )
        except SchemaError as exc:
            message = str(exc)
            raise SchemaError(message if message.startswith(source) else f"{source}: {message}") from None

    @classmethod
    def load(cls, path: str | Path) -> Schema:
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise SchemaError(f"{path}: schema file not found") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise SchemaError(f"{path}: cannot read schema file ({exc})") from None
        return _schema_from_text(text, str(path))

    def to_toml(self) -> str:
        return _render_toml(self)


@functools.lru_cache(maxsize=8)
def _schema_from_text(text: str, source: str) -> Schema:
    """A schema file's text parsed and checked, once per text: a node asked about one record after
    another loads the same file each time (a Schema is immutable; an error is raised afresh each time)."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SchemaError(f"{source}: not valid TOML ({exc})") from None
    return Schema.from_dict(data, source=source)


def _validate(schema: Schema) -> None:
    if not PROJECT_ID.fullmatch(schema.project):
        raise SchemaError("project.id: use 1-64 letters, digits, '.', '_' or '-'")
    bits = schema.filter.bits
    if bits < 64 or bits > 65536 or bits % 64:
        raise SchemaError("filter.bits: must be a multiple of 64 between 64 and 65536")
    if not 1 <= schema.filter.hashes <= 64:
        raise SchemaError("filter.hashes: must be between 1 and 64")
    if not 1 <= schema.filter.qgram <= 3:
        raise SchemaError("filter.qgram: must be 1, 2 or 3")
    if not 0.0 <= schema.hardening.blip < 0.5:
        raise SchemaError("hardening.blip: must be a probability in [0, 0.5)")
    if schema.hardening.xor_fold and schema.output_bits % 64:
        raise SchemaError("hardening.xor_fold: the folded filter must still be a multiple of 64 bits")
    seen: set[str] = set()
    for index, spec in enumerate(schema.fields):
        where = f"fields[{index}]"
        if not spec.name:
            raise SchemaError(f"{where}.name: must not be empty")
        if spec.name in seen:
            raise SchemaError(f"{where}.name: field {spec.name!r} is listed twice")
        seen.add(spec.name)
        if spec.kind not in KINDS:
            raise SchemaError(f"{where}.kind: unknown kind {spec.kind!r}")
        if not 0.0 < spec.weight <= 8.0:
            raise SchemaError(f"{where}.weight: must be in (0, 8]")
        if not re.fullmatch(r"[a-z][a-z0-9_]{0,31}", spec.group):
            raise SchemaError(f"{where}.group: use lowercase letters, digits and '_'")
        if spec.date_format is not None and spec.kind != "date":
            raise SchemaError(f"{where}.date_format: only date fields take a format")
    if not 1 <= schema.token_cap <= 1_000_000:
        raise SchemaError("frequency.token_cap: must be between 1 and 1000000")
    for index, spec in enumerate(schema.fields):
        if spec.salt_with is not None:
            if spec.salt_with not in seen:
                raise SchemaError(f"fields[{index}].salt_with: no field named {spec.salt_with!r}")
            if spec.salt_with == spec.name:
                raise SchemaError(f"fields[{index}].salt_with: a field cannot salt itself")


def _match_keys(raw: Any, source: str) -> tuple[MatchKey, ...]:
    if not isinstance(raw, list):
        raise SchemaError(f"{source}: match_keys: must be an array of tables ([[match_keys]])")
    keys = []
    for index, entry in enumerate(raw):
        where = f"match_keys[{index}]"
        if not isinstance(entry, dict):
            raise SchemaError(f"{source}: {where}: must be a table")
        _check_keys(entry, {"name", "parts", "refine"}, source, f"{where}.")
        name = _typed(entry.get("name"), str, source, f"{where}.name")
        parts = _typed(entry.get("parts"), list, source, f"{where}.parts")
        refine = _typed(entry.get("refine", []), list, source, f"{where}.refine")
        try:
            keys.append(
                MatchKey(
                    name=name,
                    parts=tuple(_typed(p, str, source, f"{where}.parts") for p in parts),
                    refine=tuple(_typed(p, str, source, f"{where}.refine") for p in refine),
                )
            )
        except SchemaError as exc:
            raise SchemaError(f"{source}: {where}: {exc}") from None
    names = [k.name for k in keys]
    if len(set(names)) != len(names):
        raise SchemaError(f"{source}: match_keys: a key name is listed twice")
    return tuple(keys)


def _hardening_values(table: dict[str, Any], source: str) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for key, value in table.items():
        if key == "blip":
            values[key] = float(_typed(value, (int, float), source, "hardening.blip"))
        else:
            values[key] = _typed(value, bool, source, f"hardening.{key}")
    return values


def _missing_list(missing: dict[str, Any], key: str, default: tuple[str, ...], source: str) -> tuple[str, ...]:
    values = _typed(missing.get(key, list(default)), list, source, f"missing.{key}")
    return tuple(_typed(v, str, source, f"missing.{key}").strip().lower() for v in values)


def _table(data: dict[str, Any], key: str, source: str) -> dict[str, Any]:
    value = data.get(key, {})
    if not isinstance(value, dict):
        raise SchemaError(f"{source}: {key}: must be a table")
    return value


def _check_keys(table: dict[str, Any], allowed: set[str], source: str, prefix: str) -> None:
    for key in table:
        if key not in allowed:
            raise SchemaError(f"{source}: {prefix}{key}: unknown key (allowed: {', '.join(sorted(allowed))})")


def _typed(value: Any, types: Any, source: str, key: str) -> Any:
    # bool is an int in Python; a weight of `true` is a mistake, not 1.
    if isinstance(value, bool) and types is not bool and (types is int or (isinstance(types, tuple) and bool not in types)):
        raise SchemaError(f"{source}: {key}: expected a number, found a boolean")
    if not isinstance(value, types):
        raise SchemaError(f"{source}: {key}: wrong type {type(value).__name__}")
    return value


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(value)


def _render_toml(schema: Schema) -> str:
    data = schema.to_dict()
    lines = [
        "# linkage schema: share this file unchanged with every agency of the project.",
        f"# fingerprint {schema.fingerprint}",
        f"version = {data['version']}",
        "",
        "[project]",
        f"id = {_toml_value(schema.project)}",
        "",
        "[filter]",
        "# bits: filter length; hashes: hash functions per token at weight 1.0; qgram: q of q-grams",
    ]
    lines += [f"{k} = {_toml_value(v)}" for k, v in data["filter"].items()]
    lines += [
        "",
        "[hardening]",
        "# balance: add complement + keyed permutation; xor_fold: fold halves; blip: bit-flip probability",
    ]
    lines += [f"{k} = {_toml_value(v)}" for k, v in data["hardening"].items()]
    lines += ["", "[output]", f"group_filters = {_toml_value(schema.group_filters)}"]
    lines += ["", "[missing]", "# values (compared case-insensitively) that mean 'not known'"]
    lines += [f"values = {_toml_value(list(schema.missing_values))}"]
    lines += ["# the same for name fields (Na is a surname)", f"names = {_toml_value(list(schema.missing_names))}"]
    for spec in data["fields"]:
        lines += ["", "[[fields]]"]
        lines += [f"{k} = {_toml_value(v)}" for k, v in spec.items()]
    if schema.match_keys:
        lines += [
            "",
            "[frequency]",
            "# a token value held by more records of one agency than this is dropped (the record stays)",
            f"token_cap = {schema.token_cap}",
        ]
        lines += ["", "# Match keys: two records are compared only inside the scope of a key they agree on exactly."]
        for key in schema.match_keys:
            lines += ["", "[[match_keys]]", f"name = {_toml_value(key.name)}", f"parts = {_toml_value(list(key.parts))}"]
            if key.refine:
                lines.append(f"refine = {_toml_value(list(key.refine))}")
    return "\n".join(lines) + "\n"
