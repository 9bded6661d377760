"""The attack harness: the attacks really re-identify plain encodings, hardening measures lower
where it should, and nothing in the harness can make a setting look safe by breaking.

Data: 500 synthetic people from linkage.testing._synthetic (seeded), one clean record each, on both the
encoded and the plaintext list (100% overlap unless a test says otherwise); 5% known pairs.
"""

from __future__ import annotations

import dataclasses
from functools import partial

import numpy as np
import polars as pl
import pytest

import linkage.attacks
from linkage import HardeningSpec, Schema, Secret, encode
from linkage.attacks import (
    ALL_GROUPS,
    RECORD,
    AttackScenario,
    attack_scenario,
    frequency_attack,
    graph_matching_attack,
    people_needed,
    view_filters,
)
from linkage.attacks._frequency import FrequencyAttackSettings, _labels, _mined_blocks
from linkage.attacks._plaintext import plaintext_tokens
from linkage.attacks._result import scored
from linkage.testing._synthetic import generate_agencies

COLUMNS = ["given_name", "middle_name", "surname", "date_of_birth", "sex", "address", "city", "postcode"]
RECORDS = 500
SECRET = Secret(bytes(range(32)))


@pytest.fixture(scope="module")
def scenario() -> AttackScenario:
    rng = np.random.default_rng(3)
    people = generate_agencies(people_needed(RECORDS, 1.0), rng=rng).people
    return attack_scenario(people, COLUMNS, records=RECORDS, overlap=1.0, known_share=0.05, rng=rng)


def schema_with(**hardening) -> Schema:
    # Unhardened unless asked: HardeningSpec's defaults are the project's chosen ones (xor_fold on).
    spec = HardeningSpec(**{"xor_fold": False, **hardening})
    return dataclasses.replace(Schema.for_columns(COLUMNS, project="attack-test", group_filters=True), hardening=spec)


def graph(scenario: AttackScenario, schema: Schema, view: str = RECORD, truth: np.ndarray | None = None):
    filters = view_filters(encode(scenario.encoded, schema, SECRET).encodings, view)
    truth = scenario.truth if truth is None else truth
    return graph_matching_attack(
        filters,
        scenario.plaintext,
        schema,
        known_pairs=scenario.known_pairs,
        rng=np.random.default_rng(1),
        view=view,
        truth=truth,
    )


def frequency(scenario: AttackScenario, schema: Schema, view: str = RECORD, truth: np.ndarray | None = None, **settings):
    filters = view_filters(encode(scenario.encoded, schema, SECRET).encodings, view)
    truth = scenario.truth if truth is None else truth
    return frequency_attack(
        filters,
        scenario.plaintext,
        schema,
        rng=np.random.default_rng(1),
        view=view,
        truth=truth,
        settings=FrequencyAttackSettings(**settings),
    )


# -- the harness -----------------------------------------------------------------------------------


def test_public_surface_is_sorted_and_complete():
    assert linkage.attacks.__all__ == sorted(linkage.attacks.__all__)
    for name in linkage.attacks.__all__:
        assert hasattr(linkage.attacks, name), name


def test_scenario_lists_share_the_stated_overlap_and_known_pairs_are_true():
    rng = np.random.default_rng(5)
    people = generate_agencies(people_needed(200, 0.5), rng=rng).people
    half = attack_scenario(people, COLUMNS, records=200, overlap=0.5, known_share=0.05, rng=rng)
    assert half.encoded.height == half.plaintext.height == 200
    assert (half.truth >= 0).sum() == 100
    assert len(half.known_pairs) == 10
    assert np.array_equal(half.truth[half.known_pairs[:, 0]], half.known_pairs[:, 1])
    # The truth joins identical people: the encoded row's values are the plaintext row's.
    rows = np.flatnonzero(half.truth >= 0)
    left = half.encoded.drop("record_id")[rows]
    right = half.plaintext.drop("record_id")[half.truth[rows]]
    assert left.equals(right)
    # Each list is shuffled on its own: row order gives nothing away.
    assert not np.array_equal(half.truth[rows], np.sort(half.truth[rows]))


def test_scoring_counts_only_what_the_attacker_did_not_know():
    truth = np.array([0, 1, 2, 3, -1])
    known = np.array([[0, 0]])
    perfect = scored("x", RECORD, np.array([0, 1, 2, 3, -1]), np.zeros(5), truth=truth, known_pairs=known, seconds=0.0)
    assert (perfect.targets, perfect.guessed, perfect.correct) == (3, 3, 3)
    assert perfect.reidentified == 1.0 and perfect.precision == 1.0
    wrong = scored("x", RECORD, np.array([0, 2, 1, -1, 3]), np.zeros(5), truth=truth, known_pairs=known, seconds=0.0)
    # A guess for a record with no counterpart is a wrong guess; a record left unguessed is a miss.
    assert (wrong.targets, wrong.guessed, wrong.correct) == (3, 3, 0)
    assert wrong.reidentified == 0.0 and wrong.precision == 0.0
    nothing = scored("x", RECORD, np.full(5, -1), np.zeros(5), truth=truth, known_pairs=known, seconds=0.0)
    assert nothing.reidentified == 0.0 and nothing.guessed == 0


@pytest.mark.parametrize("attack", [graph, partial(frequency, rounds=2)], ids=["graph", "frequency"])
def test_attacks_guess_before_they_see_the_truth(scenario, attack):
    schema = schema_with()
    honest = attack(scenario, schema, "name")
    shuffled = scenario.truth.copy()
    movable = np.setdiff1d(np.arange(len(shuffled)), scenario.known_pairs[:, 0])
    shuffled[movable] = np.random.default_rng(0).permutation(shuffled[movable])
    blind = attack(scenario, schema, "name", truth=shuffled)
    assert np.array_equal(honest.guesses, blind.guesses)
    assert honest.reidentified > 0.5 > blind.reidentified


# -- graph matching --------------------------------------------------------------------------------


def test_graph_attack_reidentifies_plain_encodings(scenario):
    result = graph(scenario, schema_with())
    assert result.targets == RECORDS - len(scenario.known_pairs)
    assert result.reidentified > 0.9
    assert result.precision > 0.95


def test_graph_attack_finds_nothing_when_the_plaintext_is_not_the_encoded_people(scenario):
    # A control: the same anchors, but every other plaintext row's values shuffled column by column.
    # The attack must then fail; its successes elsewhere come from the data, not from the harness.
    schema = schema_with()
    filters = view_filters(encode(scenario.encoded, schema, SECRET).encodings, RECORD)
    known = np.zeros(RECORDS, dtype=bool)
    known[scenario.known_pairs[:, 1]] = True
    shuffled = scenario.plaintext.with_columns(
        pl.when(pl.Series(known)).then(pl.col(c)).otherwise(pl.col(c).shuffle(seed=i)).alias(c) for i, c in enumerate(COLUMNS)
    )
    result = graph_matching_attack(
        filters, shuffled, schema, known_pairs=scenario.known_pairs, rng=np.random.default_rng(1), truth=scenario.truth
    )
    assert result.reidentified < 0.02


def test_blip_and_xor_folding_lower_the_graph_attack_on_record_filters(scenario):
    plain = graph(scenario, schema_with()).reidentified
    blipped = graph(scenario, schema_with(blip=0.1)).reidentified
    folded = graph(scenario, schema_with(xor_fold=True)).reidentified
    assert plain > 0.9
    assert blipped < plain - 0.05
    # XOR-folding half-full filters flattens mid-range similarity: the graph barely survives.
    assert folded < 0.2


def test_balancing_does_not_change_the_graph(scenario):
    # Balancing hides how many bits a record sets but keeps every similarity: no defence here.
    assert graph(scenario, schema_with(balance=True)).reidentified > 0.9


# -- frequency / pattern mining --------------------------------------------------------------------


def test_mined_blocks_are_the_bits_of_frequent_tokens(scenario):
    """Blocks of co-set bits hold exactly the records of one frequent token, and labels name it."""
    schema = schema_with()
    encodings = encode(scenario.encoded, schema, SECRET).encodings
    bits = np.unpackbits(view_filters(encodings, "name").view(np.uint8), axis=1, bitorder="little")
    attacker = plaintext_tokens(scenario.plaintext, schema, ("name",))
    truth_tokens = plaintext_tokens(scenario.encoded, schema, ("name",))  # what the encoded records really hold
    index = {label: t for t, label in enumerate(truth_tokens.labels)}
    holds = truth_tokens.holds.toarray().astype(bool)
    settings = FrequencyAttackSettings()
    found = _mined_blocks(bits, 0.0, 18, settings)
    labels = _labels(found, attacker, RECORDS, settings)
    assert len(found) >= 20
    exact, named = 0, 0
    for block, label in zip(found, labels, strict=True):
        jaccard = (holds & block.records[:, None]).sum(0) / np.maximum((holds | block.records[:, None]).sum(0), 1)
        exact += jaccard.max() >= 0.9
        if label >= 0:
            named += jaccard[index[attacker.labels[label]]] >= 0.9
    # About half the blocks are single bigrams to the record; the rest join bigrams that travel
    # together (the bigrams of one surname), which no single token's records match.
    assert exact >= 0.4 * len(found)
    assert named >= 30
    assert named >= 0.5 * (labels >= 0).sum()


def test_frequency_attack_reidentifies_plain_encodings(scenario):
    result = frequency(scenario, schema_with(), RECORD)
    assert result.reidentified > 0.5
    assert result.precision > 0.9


def test_xor_folding_stops_pattern_mining_on_record_filters_but_not_on_group_filters(scenario):
    schema = schema_with(xor_fold=True)
    assert frequency(scenario, schema, RECORD).reidentified < 0.05
    # Group filters are sparse: folded, a token's bits mostly survive, and so does the attack.
    assert frequency(scenario, schema, ALL_GROUPS).reidentified > 0.5


# -- the defaults ----------------------------------------------------------------------------------


def test_the_default_schema_resists_both_attacks_that_field_scoring_does_not(scenario):
    """What `schema init` writes: the attacks that re-identify nearly everyone under field scoring
    find next to no one (benchmarks/privacy.py measures 0.2% and 0.0% on 1,000 people)."""
    default = Schema.for_columns(COLUMNS, project="attack-test")
    field_scoring = Schema.for_columns(COLUMNS, project="attack-test", group_filters=True)
    assert encode(scenario.encoded, default, SECRET).encodings.group_filters is None  # nothing but the record filter
    assert graph(scenario, field_scoring, ALL_GROUPS).reidentified > 0.9
    assert frequency(scenario, field_scoring, ALL_GROUPS).reidentified > 0.5
    assert graph(scenario, default).reidentified <= 0.02
    assert frequency(scenario, default).reidentified <= 0.02


# -- the report ------------------------------------------------------------------------------------


def test_a_schemas_settings_carry_over_to_other_columns_kind_by_kind():
    from linkage.attacks import with_settings_of

    theirs = Schema.for_columns(["first_name", "last_name", "dob", "zip"], project="agency")
    fields = tuple(
        dataclasses.replace(f, weight=2.5 if f.name == "zip" else f.weight, salt_with="dob" if f.kind == "name" else None)
        for f in theirs.fields
    )
    theirs = dataclasses.replace(theirs, fields=fields, hardening=HardeningSpec(xor_fold=True, blip=0.01))
    mine = with_settings_of(theirs, COLUMNS, "report")
    by_name = {f.name: f for f in mine.fields}
    assert mine.hardening == theirs.hardening and mine.filter == theirs.filter and not mine.group_filters
    assert by_name["postcode"].weight == 2.5 and by_name["date_of_birth"].weight == theirs.field("dob").weight
    assert {by_name[n].salt_with for n in ("given_name", "middle_name", "surname")} == {"date_of_birth"}
    assert by_name["address"].salt_with is None and by_name["address"].weight == Schema.for_columns(["address"]).fields[0].weight


def test_the_privacy_report_sees_what_each_schema_sends(scenario):
    from linkage.attacks import privacy_report

    people = pl.concat([scenario.encoded, scenario.plaintext]).drop("record_id").unique(maintain_order=True)
    default = privacy_report(
        Schema.for_columns(COLUMNS, project="report"), people=people, records=300, agency_people=300, secret=SECRET
    )
    assert [(r.attack, r.view) for r in default.results] == [
        ("graph", RECORD),
        ("frequency", RECORD),
        ("embedding", RECORD),
        ("xor", RECORD),
    ]
    assert default.worst.reidentified <= 0.03 and default.f1["FEBRL4"] >= 0.99
    field_scoring = privacy_report(
        Schema.for_columns(COLUMNS, project="report", group_filters=True), records=300, agency_people=300, secret=SECRET
    )
    assert {r.view for r in field_scoring.results} == {RECORD, "name", "dob", "sex", "address", ALL_GROUPS}
    assert {(r.attack, r.view) for r in field_scoring.results if r.attack in ("embedding", "xor")} == {
        (a, v) for a in ("embedding", "xor") for v in (RECORD, ALL_GROUPS)
    }
    assert field_scoring.worst.reidentified > 0.9
