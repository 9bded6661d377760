"""A privacy report for one schema: what the two attacks re-identify, beside linkage quality.

    schema's settings ─▶ people (generated, or a population file) ─▶ encoded list + attacker's list
                      ─▶ graph and frequency attacks on every view the coordinator gets
    schema's settings ─▶ FEBRL4 and three generated agencies ─▶ link (default settings) ─▶ F1

A schema names its own columns; on data with other columns its settings are carried over field
kind by field kind (``with_settings_of``). ``benchmarks/privacy.py`` runs the same pieces over
many hardening settings.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl

from linkage.attacks._embedding import embedding_attack
from linkage.attacks._frequency import frequency_attack
from linkage.attacks._graph import graph_matching_attack
from linkage.attacks._keyed import (
    NO_TOKEN,
    PLACEHOLDER_KEYS,
    MatchKeyView,
    match_key_view,
    scope_graph_attack,
    token_frequency_attack,
    token_graph_attack,
)
from linkage.attacks._result import AttackResult
from linkage.attacks._scenario import AttackScenario, attack_scenario, people_needed
from linkage.attacks._views import ALL_GROUPS, RECORD, view_filters
from linkage.attacks._xor import xor_linearity_attack
from linkage.bloom._encode import encode
from linkage.bloom._encodings import Encodings
from linkage.bloom._keys import Secret
from linkage.errors import LinkageError
from linkage.jobs._profiles import AnyEncodings, encode_records, link_sources
from linkage.matching._evaluate import pair_quality
from linkage.matching._link import LinkSettings
from linkage.records._reading import read_records
from linkage.records._schema import Schema
from linkage.testing._febrl import FEBRL_COLUMNS, FEBRL_ID_COLUMN, febrl_path
from linkage.testing._synthetic import generate_agencies

__all__ = [
    "DENSE_LIMIT",
    "GENERATED_COLUMNS",
    "PrivacyReport",
    "attack_views",
    "attacks_on",
    "linkage_f1",
    "match_key_attacks",
    "privacy_report",
    "scalable_attacks_on",
    "with_settings_of",
]

GENERATED_COLUMNS = ("given_name", "middle_name", "surname", "date_of_birth", "sex", "address", "city", "postcode")
TARGET_REIDENTIFIED = 0.01  # the project's aim, at 100% overlap
MIN_RECORDS = 100  # fewer, and one record re-identified is a percent
DENSE_LIMIT = 5000  # the graph and frequency attacks hold n × n matrices: above this, only the scalable ones run


@dataclass(frozen=True, eq=False)
class PrivacyReport:
    results: tuple[AttackResult, ...]
    f1: dict[str, float]  # data set -> F1 of the match band with default link settings
    records: int
    overlap: float
    known_share: float

    @property
    def worst(self) -> AttackResult:
        return max(self.results, key=lambda r: r.reidentified)


def with_settings_of(schema: Schema, columns: Sequence[str], project: str) -> Schema:
    """A schema for ``columns`` (kinds from their names) with ``schema``'s settings: filter,
    hardening, group filters, missing values, each kind's weight (its first field of that kind)
    and attribute salting by kind (names salted with a date stay salted with a date)."""
    like = Schema.for_columns(list(columns), project=project, group_filters=schema.group_filters)
    weight_of: dict[str, float] = {}
    salt_kind_of: dict[str, str] = {}
    for spec in schema.fields:
        weight_of.setdefault(spec.kind, spec.weight)
        if spec.salt_with:
            salt_kind_of.setdefault(spec.kind, schema.field(spec.salt_with).kind)
    first_of_kind: dict[str, str] = {}
    for spec in like.fields:
        first_of_kind.setdefault(spec.kind, spec.name)
    fields = tuple(
        dataclasses.replace(
            spec,
            weight=weight_of.get(spec.kind, spec.weight),
            salt_with=first_of_kind.get(salt_kind_of[spec.kind]) if spec.kind in salt_kind_of else None,
        )
        for spec in like.fields
    )
    carried = dataclasses.replace(
        like, fields=fields, filter=schema.filter, hardening=schema.hardening, missing_values=schema.missing_values,
        missing_names=schema.missing_names,
    )  # fmt: skip
    if not schema.match_keys:
        return carried
    # Match keys are written over roles (given, surname, dob, ...): those whose parts the columns
    # can make carry over; a key naming a field the columns lack is left out.
    from linkage.records._schema import MatchKey
    from linkage.scoped import MatchKey as ScopedMatchKey
    from linkage.scoped import resolved_keys
    from linkage.scoped._keys import usable_keys

    if {k.name for k in schema.match_keys} == {k.name for k in resolved_keys(schema, None)}:
        usable = resolved_keys(carried, None)  # the default set: the default the columns can make
    else:
        usable = usable_keys(
            tuple(ScopedMatchKey(name=k.name, parts=k.parts, refine=k.refine) for k in schema.match_keys), carried
        )
    return dataclasses.replace(
        carried,
        match_keys=tuple(MatchKey(name=k.name, parts=k.parts, refine=k.refine) for k in usable),
        token_cap=schema.token_cap,
    )


def attack_views(encodings: Encodings) -> list[str]:
    """What the coordinator holds: the record filter and, where sent, each group filter and all of them."""
    if encodings.group_filters is None:
        return [RECORD]
    return [RECORD, *encodings.group_names, ALL_GROUPS]


def attacks_on(
    scenario: AttackScenario,
    schema: Schema,
    secret: Secret,
    seed: int,
    *,
    views: Sequence[str] | None = None,
    progress: Callable[[str], None] = lambda _: None,
) -> list[AttackResult]:
    """Every attack on ``views`` (default: every view the coordinator gets) of the scenario's
    encoded list, encoded under ``schema``: the graph and frequency attacks (up to ``DENSE_LIMIT``
    records), then the embedding and XOR-linearity attacks on the record view and all group filters."""
    encodings = encode(scenario.encoded, schema, secret).encodings
    chosen = attack_views(encodings) if views is None else list(views)
    results = []
    if len(scenario.truth) <= DENSE_LIMIT:
        for view in chosen:
            filters = view_filters(encodings, view)
            progress(f"graph attack on the {view} view")
            results.append(_known_pair_attack(graph_matching_attack, scenario, schema, filters, view, seed))
            progress(f"frequency attack on the {view} view")
            results.append(
                frequency_attack(
                    filters, scenario.plaintext, schema, rng=np.random.default_rng(seed), view=view, truth=scenario.truth
                )
            )
    scalable_views = [v for v in chosen if v in (RECORD, ALL_GROUPS)]
    results += scalable_attacks_on(scenario, schema, encodings, seed, views=scalable_views, progress=progress)
    return results


def scalable_attacks_on(
    scenario: AttackScenario,
    schema: Schema,
    encodings: Encodings,
    seed: int,
    *,
    views: Sequence[str] = (RECORD,),
    progress: Callable[[str], None] = lambda _: None,
) -> list[AttackResult]:
    """The embedding graph-matching and XOR-linearity attacks on ``views`` of ``encodings`` (the
    scenario's encoded list), both from the scenario's known pairs."""
    results = []
    for view in views:
        filters = view_filters(encodings, view)
        for name, attack in (("embedding", embedding_attack), ("xor", xor_linearity_attack)):
            progress(f"{name} attack on the {view} view")
            results.append(_known_pair_attack(attack, scenario, schema, filters, view, seed))
    return results


def _known_pair_attack(
    attack: Callable[..., AttackResult], scenario: AttackScenario, schema: Schema, filters: np.ndarray, view: str, seed: int
) -> AttackResult:
    """One attack that starts from the scenario's known pairs, on one view's filters."""
    return attack(
        filters,
        scenario.plaintext,
        schema,
        known_pairs=scenario.known_pairs,
        rng=np.random.default_rng(seed),
        view=view,
        truth=scenario.truth,
    )


def scoped_view(frame: pl.DataFrame, schema: Schema, secret: Secret) -> MatchKeyView:
    """What the coordinator holds of ``frame`` encoded under ``schema``'s match keys with ``secret``:
    each key's token per record (as the nodes send them, after the frequency cap) and, for every pair
    of records sharing a token, their within-scope similarity (the mean agreement level of the
    fields compared inside their shared scopes, 0 to 1). The attacker builds the same view of its own
    list under a secret of its own: the strongest realistic attacker knows the schema."""
    from linkage.jobs._profiles import scoped_keys
    from linkage.scoped import encode_scoped
    from linkage.scoped._link import compared_pairs

    encodings = encode_scoped(frame, schema, secret, keys=scoped_keys(schema), cap=schema.token_cap).encodings
    tokens = {
        key: np.where(encodings.has_token[:, k], (encodings.tokens[:, k] >> np.uint64(1)).astype(np.int64), NO_TOKEN)
        for k, key in enumerate(encodings.keys)
    }
    i, j, levels, _ = compared_pairs(encodings, encodings)
    keep = i < j
    i, j, levels = i[keep], j[keep], levels[keep].astype(np.float64)
    present = levels >= 0
    scores = np.where(present, levels, 0.0).sum(axis=1) / np.maximum(present.sum(axis=1), 1) / 5.0
    return MatchKeyView(tokens=tokens, scope_edges=np.stack([i, j], axis=1).astype(np.int64), scope_scores=scores)


def match_key_attacks(
    scenario: AttackScenario,
    *,
    keys: Mapping[str, Sequence[str]] = PLACEHOLDER_KEYS,
    schema: Schema | None = None,
    seed: int,
    progress: Callable[[str], None] = lambda _: None,
) -> list[AttackResult]:
    """The token frequency, shared-token graph and within-scope graph attacks on the scenario's
    encoded list: under ``schema``'s real match-key encoding when given (fresh secret; the attacker
    encodes its list under its own), else under plaintext keys ``keys`` (a control)."""
    rng = np.random.default_rng(seed)
    progress("match-key views")
    if schema is not None and schema.match_keys:
        encoded = scoped_view(scenario.encoded, schema, Secret.generate())
        attacker = scoped_view(scenario.plaintext, schema, Secret(rng.bytes(32)))
    else:
        encoded = match_key_view(scenario.encoded, keys, key=Secret.generate().derive("attack", "tokens"))
        attacker = match_key_view(scenario.plaintext, keys, key=rng.bytes(32))
    progress("token frequency attack")
    results = [token_frequency_attack(encoded.tokens, attacker.tokens, truth=scenario.truth, known_pairs=scenario.known_pairs)]
    for name, attack in (("token graph", token_graph_attack), ("scope graph", scope_graph_attack)):
        progress(f"{name} attack")
        results.append(
            attack(encoded, attacker, known_pairs=scenario.known_pairs, rng=np.random.default_rng(seed), truth=scenario.truth)
        )
    return results


def linkage_f1(
    schema: Schema, secret: Secret, *, agency_people: int, seed: int, settings: LinkSettings = LinkSettings()
) -> dict[str, float]:
    """F1 of ``link`` with ``schema``'s settings, on FEBRL4 and on generated agencies."""
    febrl_schema = with_settings_of(schema, FEBRL_COLUMNS, "privacy-report-febrl")
    febrl = {
        name: read_records(febrl_path(file), id_column=FEBRL_ID_COLUMN, columns=FEBRL_COLUMNS)
        for name, file in (("a", "dataset4a.csv"), ("b", "dataset4b.csv"))
    }
    truth = pl.concat(
        frame.select("record_id", source=pl.lit(name), entity_id=pl.col("record_id").str.extract(r"rec-(\d+)"))
        for name, frame in febrl.items()
    )
    out = {"FEBRL4": _f1({n: encode_records(f, febrl_schema, secret).encodings for n, f in febrl.items()}, truth, settings)}
    agency_schema = with_settings_of(schema, GENERATED_COLUMNS, "privacy-report-agencies")
    data = generate_agencies(agency_people, rng=np.random.default_rng(seed))
    sources = {
        name: encode_records(
            frame.rename({"rec_id": "record_id"}).select("record_id", *GENERATED_COLUMNS), agency_schema, secret
        ).encodings
        for name, frame in data.frames.items()
    }
    out[f"generated agencies ({agency_people:,} people)"] = _f1(sources, data.truth, settings)
    return out


def _f1(sources: Mapping[str, AnyEncodings], truth: pl.DataFrame, settings: LinkSettings) -> float:
    result = link_sources(sources, settings)
    return pair_quality(result.pairs.filter(pl.col("band") == "match"), truth).f1


def privacy_report(
    schema: Schema,
    *,
    people: pl.DataFrame | None = None,
    records: int = 1000,
    overlap: float = 1.0,
    known_share: float = 0.05,
    agency_people: int = 1000,
    seed: int = 7,
    secret: Secret | None = None,
    progress: Callable[[str], None] = lambda _: None,
) -> PrivacyReport:
    """Attack ``schema``'s encodings of ``records`` people (from ``people``, one row per person with
    the schema's columns, or generated), and link FEBRL4 and generated agencies with its settings.
    ``seed`` draws the lists and the attacks' randomness; the secret is fresh each run unless given,
    so no seed can hand it to the attacker (whose own key comes from its randomness)."""
    if not 0.0 < overlap <= 1.0:
        raise LinkageError(f"overlap must be above 0 and at most 1, not {overlap:g}")
    if records < MIN_RECORDS:
        raise LinkageError(f"records: at least {MIN_RECORDS} a list, not {records}")
    rng = np.random.default_rng(seed)
    secret = secret or Secret.generate()
    if people is None:
        attacked = with_settings_of(schema, GENERATED_COLUMNS, schema.project)
        people = generate_agencies(people_needed(records, overlap), rng=rng).people
    else:
        attacked = schema
    needed = people_needed(records, overlap)
    if people.height < needed:
        raise LinkageError(
            f"{records:,} records a list at {overlap:.0%} overlap need {needed:,} people; the population has {people.height:,}"
        )
    if not 0.0 <= known_share <= overlap:
        raise LinkageError(
            f"known pairs ({known_share:g}) must be a share of the records between 0 and the overlap ({overlap:g})"
        )
    scenario = attack_scenario(people, attacked.columns, records=records, overlap=overlap, known_share=known_share, rng=rng)
    if attacked.match_keys:  # no filter is sent: the coordinator holds tokens and within-scope scores
        results = match_key_attacks(scenario, schema=attacked, seed=seed, progress=progress)
    else:
        results = attacks_on(scenario, attacked, secret, seed, progress=progress)
    progress("linking FEBRL4 and generated agencies")
    f1 = linkage_f1(schema, secret, agency_people=agency_people, seed=seed)
    return PrivacyReport(results=tuple(results), f1=f1, records=records, overlap=overlap, known_share=known_share)
