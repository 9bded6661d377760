"""Match keys (linkage.scoped): the PRF, tokens, scoped evidence, the cap, linking and its errors.

The end-to-end test links three agencies of 600 synthetic people from linkage._synthetic
(generate_agencies, seed 4, default messiness) and checks precision and recall against the
generator's truth.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from linkage import Schema, Secret
from linkage.errors import EncodingsError, SchemaError
from linkage.jobs._profiles import scoped_keys, with_default_match_keys
from linkage.matching._evaluate import pair_quality
from linkage.matching._scopes import scope_levels
from linkage.scoped import (
    MatchKey,
    ScopedLinkSettings,
    encode_scoped,
    key_frequencies,
    link_scoped,
    nickname_canonicals,
    read_scoped_encodings,
    write_scoped_encodings,
)  # fmt: skip
from linkage.scoped._encode import _distinct_rows
from linkage.scoped._encodings import pack_scoped, unpack_scoped
from linkage.scoped._keys import LARGE_POPULATION_KEYS
from linkage.scoped._link import LEVEL_WORDS, ruled_out
from linkage.scoped._prf import key_words, prefixed_siphash, siphash_bytes, strings_siphash, words_siphash
from linkage.testing._synthetic import generate_agencies

COLUMNS = ["given_name", "middle_name", "surname", "date_of_birth", "sex", "address", "city", "postcode"]
SCHEMA = Schema.for_columns(COLUMNS, project="scoped-test")
TODAY = dt.date(2024, 6, 1)
SECRET = Secret(bytes(range(32)))
OTHER = Secret(bytes(range(1, 33)))


def frame(rows: list[dict[str, str]]) -> pl.DataFrame:
    return pl.DataFrame({"record_id": [f"r{i}" for i in range(len(rows))], **{c: [r.get(c, "") for r in rows] for c in COLUMNS}})


PERSON = {"given_name": "Maria", "middle_name": "Ana", "surname": "Lopez", "date_of_birth": "1990-04-12", "sex": "F",
          "address": "12 Oak Street", "city": "Salem", "postcode": "97301"}  # fmt: skip


# -- the PRF --------------------------------------------------------------------------------------


def test_siphash_matches_the_papers_test_vectors() -> None:
    # Aumasson & Bernstein, "SipHash: a fast short-input PRF", appendix A and the reference vectors.
    k0, k1 = key_words(bytes(range(16)))
    data = np.arange(64, dtype=np.uint8)
    assert siphash_bytes(k0, k1, data, 0, 15) == 0xA129CA6149BE45E5
    assert siphash_bytes(k0, k1, data, 0, 0) == 0x726FDB47DD0E0E31
    assert siphash_bytes(k0, k1, data, 0, 1) == 0x74F839C593DC67FD
    assert siphash_bytes(k0, k1, data, 0, 16) == 0x3F2ACC7F57C29BDB


@settings(max_examples=50, deadline=None)
@given(st.integers(0, 2**64 - 1), st.integers(0, 2**64 - 1))
def test_word_siphash_is_siphash_of_the_words_bytes(m0: int, m1: int) -> None:
    k0, k1 = key_words(b"0123456789abcdef")
    words = np.array([m0, m1], dtype=np.uint64)
    assert words_siphash(k0, k1, words[:1], words[1:])[0] == siphash_bytes(k0, k1, words.view(np.uint8), 0, 16)


@settings(max_examples=50, deadline=None)
@given(st.integers(0, 2**64 - 1), st.lists(st.integers(0, 2**64 - 1), min_size=1, max_size=5))
def test_prefixed_siphash_is_siphash_of_each_pair_of_words(m0: int, rest: list[int]) -> None:
    # The evidence kernels absorb a record's field tag once, then hash each q-gram from that state.
    k0, k1 = key_words(b"fedcba9876543210")
    second = np.array(rest, dtype=np.uint64)
    first = np.full(len(rest), m0, dtype=np.uint64)
    assert np.array_equal(prefixed_siphash(k0, k1, np.uint64(m0), second), words_siphash(k0, k1, first, second))


def test_siphash_output_bits_are_balanced_and_key_sensitive() -> None:
    data = np.frombuffer(b"".join(i.to_bytes(4, "little") for i in range(20000)), dtype=np.uint8)
    offsets = np.arange(0, len(data) + 1, 4, dtype=np.int64)
    a = strings_siphash(*key_words(bytes(16)), data, offsets)
    b = strings_siphash(*key_words(bytes(15) + b"\x01"), data, offsets)
    bits = np.unpackbits(a.view(np.uint8)).reshape(len(a), 64).mean(axis=0)
    assert np.all(np.abs(bits - 0.5) < 0.02)
    flipped = np.unpackbits((a ^ b).view(np.uint8)).mean()
    assert abs(flipped - 0.5) < 0.01


# -- tokens and evidence ----------------------------------------------------------------------------

names = st.text(alphabet="abcdefghijklmnopqrstuvwxyz", min_size=2, max_size=10).filter(lambda v: v not in SCHEMA.missing_values)


@settings(max_examples=15, deadline=None)
@given(names, names)
def test_tokens_are_deterministic_and_secret_bound(given_name: str, surname: str) -> None:
    records = frame([{**PERSON, "given_name": given_name, "surname": surname}] * 2)
    one = encode_scoped(records, SCHEMA, SECRET, today=TODAY, cap=2).encodings
    again = encode_scoped(records, SCHEMA, SECRET, today=TODAY, cap=2).encodings
    other = encode_scoped(records, SCHEMA, OTHER, today=TODAY, cap=2).encodings
    assert one.has_token.all()
    assert np.array_equal(one.tokens, again.tokens)
    assert np.array_equal(one.tokens[0], one.tokens[1])
    assert not np.any(one.tokens == other.tokens)
    for k in range(len(one.layouts)):
        assert np.array_equal(one.evidence[k], again.evidence[k])


@settings(max_examples=15, deadline=None)
@given(names, names, names)
def test_evidence_of_one_value_in_two_scopes_is_unrelated(given_name: str, surname_a: str, surname_b: str) -> None:
    # Same given name, middle name and place; different surnames: the "given_address" scope and
    # others differ by the key's value, so the given name's bits must be unrelated.
    if surname_a == surname_b:
        return
    keys = (MatchKey(name="by_surname", parts=("surname",)),)
    enc = encode_scoped(
        frame([{**PERSON, "surname": surname_a}, {**PERSON, "surname": surname_b}]), SCHEMA, SECRET, keys=keys, today=TODAY
    ).encodings
    a, b = enc.evidence[0]
    both = sum(bin(int(x) & int(y)).count("1") for x, y in zip(a, b, strict=True))
    total = sum(bin(int(x)).count("1") + bin(int(y)).count("1") for x, y in zip(a, b, strict=True))
    assert 2 * both / total < 0.5  # equal values in one scope would give Dice 1


def test_by_default_no_two_records_of_an_agency_share_a_token_but_their_decoys_are_counted() -> None:
    keys = (MatchKey(name="by_surname", parts=("surname",)),)
    people = [PERSON, {**PERSON, "given_name": "Mario"}, {**PERSON, "surname": "Other"}]  # two Lopez
    enc = encode_scoped(frame(people), SCHEMA, SECRET, keys=keys, today=TODAY).encodings
    # The two Lopez records lose their token (the coordinator cannot see that they share a surname) ...
    assert enc.has_token[:, 0].tolist() == [False, False, True]
    assert not enc.evidence[0][:2].any() and enc.evidence[0][2].any()
    # ... and the node counted their comparison as one decoy pattern (an aggregate, no record).
    assert enc.decoy_counts.sum() == 1 and enc.decoy_patterns.shape == (1, len(enc.fields) + 1)


def test_same_value_in_one_scope_compares_equal() -> None:
    keys = (MatchKey(name="by_surname", parts=("surname",)),)
    enc = encode_scoped(
        frame([PERSON, {**PERSON, "given_name": "Mario", "postcode": ""}]), SCHEMA, SECRET, keys=keys, today=TODAY, cap=2
    ).encodings
    layout = enc.layouts[0]
    index = {f: i for i, f in enumerate(enc.fields)}
    slots = layout.slots
    levels = scope_levels(
        enc.evidence[0], enc.evidence[0], np.array([0]), np.array([1]), np.array([index[s.field] for s in slots]),
        np.array([s.comparison for s in slots]), np.array([s.offset for s in slots]), np.array([s.width for s in slots]),
        layout.lane_word, np.array([index[f] for f in layout.fixed]), len(enc.fields),
    )[0]  # fmt: skip
    assert levels[index["surname"]] == 5  # fixed by the key
    assert levels[index["date_of_birth"]] == 5 and levels[index["address"]] == 5 and levels[index["sex"]] == 5
    assert 0 <= levels[index["given_name"]] < 5  # Maria ~ Mario
    assert levels[index["postcode"]] == -1  # missing on one side: neither agreement nor disagreement


@settings(max_examples=10, deadline=None)
@given(st.integers(2, 6), st.integers(1, 4))
def test_frequency_cap_drops_tokens_not_records(copies: int, cap: int) -> None:
    rows = [PERSON] * copies + [{**PERSON, "given_name": "Zed", "surname": "Quill", "date_of_birth": "1970-01-02"}]
    keys = (MatchKey(name="surname_dob", parts=("surname", "dob")),)
    result = encode_scoped(frame(rows), SCHEMA, SECRET, keys=keys, cap=cap, today=TODAY)
    assert len(result.encodings) == copies + 1
    assert result.capped["surname_dob"] == (copies if copies > cap else 0)
    assert result.encodings.has_token[:copies, 0].all() == (copies <= cap)
    assert result.encodings.has_token[copies, 0]
    if copies > cap:
        assert not result.encodings.evidence[0][:copies].any()  # no token, no scope


def test_a_shared_value_is_refined_not_dropped_and_still_links_across_agencies() -> None:
    # Two Lopez of 1990-04-12 in agency a (and two in b): the key alone would drop all four tokens;
    # refined by the given name's initial, Maria and Pablo each hold a value of their own again.
    keys = (MatchKey(name="surname_dob", parts=("surname", "dob"), refine=("given:initial", "given")),)
    twins = [PERSON, {**PERSON, "given_name": "Pablo"}, {**PERSON, "given_name": "Paula"}, {**PERSON, "surname": "Quill"}]
    a = encode_scoped(frame(twins), SCHEMA, SECRET, keys=keys, today=TODAY)
    others = [{**PERSON, "address": ""}, {**PERSON, "given_name": "Pablo", "city": ""}, {**PERSON, "given_name": "Pia"}]
    b = encode_scoped(frame(others), SCHEMA, SECRET, keys=keys, today=TODAY)
    enc = a.encodings
    # Maria at the first level, Pablo and Paula (both P) at the second, Quill unrefined: all sent.
    assert enc.has_token[:, 0].all() and a.refined["surname_dob"] == 3 and a.capped["surname_dob"] == 0
    sent = enc.tokens[:, 0]
    assert len(set(sent.tolist())) == len(sent)  # no two records of the agency share a token
    # The refined records' scopes are their refined values': evidence compares within them ...
    assert enc.evidence[0][:3].any(axis=1).all()
    # ... the decoys were counted on the unrefined value (the three Lopez: three pairs).
    assert enc.decoy_counts.sum() == 3
    # Agency b's Maria, Pablo and Pia are refined alike (a value is refined in each agency by its own
    # counts: two P there too), so Maria and Pablo are found across the agencies.
    assert b.refined["surname_dob"] == 3
    result = link_scoped({"a": enc, "b": b.encodings})
    found = set(zip(*(result.candidate_pairs().get_column(c).to_list() for c in ("id_a", "id_b")), strict=True))
    assert found == {("r0", "r0"), ("r1", "r1")}
    # Without refine parts the shared value is dropped, as before.
    plain = encode_scoped(
        frame(twins), SCHEMA, SECRET, keys=(MatchKey(name="surname_dob", parts=("surname", "dob")),), today=TODAY
    )
    assert plain.encodings.has_token[:, 0].tolist() == [False, False, False, True] and plain.capped["surname_dob"] == 3


def test_refine_parts_are_checked_and_kept_in_the_schema(tmp_path: Path) -> None:
    with pytest.raises(SchemaError, match="part 'state' needs a state field"):
        encode_scoped(
            frame([PERSON]), SCHEMA, SECRET, keys=(MatchKey(name="k", parts=("surname",), refine=("state",)),), today=TODAY
        )
    with pytest.raises(SchemaError, match="listed twice"):
        MatchKey(name="k", parts=("surname", "dob"), refine=("dob",))
    key = MatchKey.from_dict({"name": "k", "parts": ["surname"], "refine": ["dob:year", "given:initial"]})
    assert key.level(1).parts == ("surname", "dob:year") and key.to_dict()["refine"] == ["dob:year", "given:initial"]
    schema = with_default_match_keys(SCHEMA)
    (tmp_path / "schema.toml").write_text(schema.to_toml())
    again = Schema.load(tmp_path / "schema.toml")
    assert again.match_keys == schema.match_keys and any(k.refine for k in again.match_keys)
    assert again.fingerprint == schema.fingerprint


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 300), st.integers(1, 24), st.integers(0, 2**32 - 1))
def test_decoy_patterns_are_counted_as_numpy_unique_counts_them(rows: int, width: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    levels = rng.integers(-1, 6, (rows, width)).astype(np.int8)
    levels[::3] = levels[:1] if rows else levels[::3]  # repeated rows
    expected, counts = np.unique(levels, axis=0, return_counts=True)
    got, got_counts = _distinct_rows(levels)
    assert np.array_equal(got, expected) and np.array_equal(got_counts, counts) and got.dtype == np.int8


def test_key_frequencies_report_the_share_of_common_values() -> None:
    rows = [PERSON] * 5 + [{**PERSON, "surname": f"S{i}x", "given_name": f"G{i}y"} for i in range(5)]
    table = key_frequencies(
        frame(rows), SCHEMA, keys=(MatchKey(name="names", parts=("given", "surname")),), shared_by_more_than=2, today=TODAY
    )
    row = table.row(0, named=True)
    assert row["records"] == 10 and row["largest"] == 5 and row["share_common"] == pytest.approx(0.5)


def test_a_sample_of_a_large_population_adds_the_large_population_keys() -> None:
    # 40 records: in the small sample each date of birth + given initial is held once; in the large
    # one 30 of them share it in pairs (75%, beyond LARGE_POPULATION_SHARE).
    small = [{**PERSON, "date_of_birth": f"19{50 + i}-04-12", "surname": f"S{i}x"} for i in range(40)]
    large = [
        {**row, "date_of_birth": f"19{50 + i // 2}-04-12" if i < 30 else row["date_of_birth"]} for i, row in enumerate(small)
    ]
    base = {k.name for k in with_default_match_keys(SCHEMA).match_keys}
    assert {k.name for k in with_default_match_keys(SCHEMA, frame(small)).match_keys} == base
    grown = with_default_match_keys(SCHEMA, frame(large))
    assert [k.name for k in grown.match_keys] == [*[k.name for k in with_default_match_keys(SCHEMA).match_keys],
                                                   *[k.name for k in LARGE_POPULATION_KEYS]]  # fmt: skip
    # no two records of the agency share a sent token under any key, large-population keys included
    encoded = encode_scoped(frame(large), grown, SECRET, keys=scoped_keys(grown), today=TODAY).encodings
    assert encoded.keys[-1] == LARGE_POPULATION_KEYS[-1].name
    for k in range(len(encoded.keys)):
        sent = encoded.tokens[encoded.has_token[:, k], k]
        assert len(np.unique(sent)) == len(sent)


def test_nickname_canonical_forms_come_from_the_data_set() -> None:
    canonical = nickname_canonicals()
    assert canonical["bob"] == "robert"
    assert "robert" not in canonical  # a formal name stays itself


# -- linking ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def agencies() -> tuple[dict[str, pl.DataFrame], pl.DataFrame]:
    data = generate_agencies(600, rng=np.random.default_rng(4))
    frames = {n: f.rename({"rec_id": "record_id"}).select("record_id", *COLUMNS) for n, f in data.frames.items()}
    return frames, data.truth


def test_links_generated_agencies_with_known_truth(agencies: tuple[dict[str, pl.DataFrame], pl.DataFrame]) -> None:
    frames, truth = agencies
    sources = {n: encode_scoped(f, SCHEMA, SECRET, today=TODAY).encodings for n, f in frames.items()}
    result = link_scoped(sources)
    quality = pair_quality(result.pairs.filter(pl.col("band") == "match"), truth)
    # Measured P 0.985 / R 0.724 at 5,000 people (benchmarks/scoped.py); small data is noisier.
    assert quality.precision >= 0.85
    assert quality.recall >= 0.65
    assert result.candidates == len(result.scores) and set(result.key_pairs) == set(sources["police"].keys)
    assert result.pairs.columns == ["source_a", "id_a", "source_b", "id_b", "similarity", "band", "agreement"]


def test_a_birthday_and_an_initial_alone_do_not_make_a_match(agencies: tuple[dict[str, pl.DataFrame], pl.DataFrame]) -> None:
    # Candidates through one key whose given names and surnames both differ are nearly all people who
    # share a birthday and an initial; the model once took them for matches (0.89 at 30,000 people).
    frames, _ = agencies
    sources = {n: encode_scoped(f, SCHEMA, SECRET, today=TODAY).encodings for n, f in frames.items()}
    result = link_scoped(sources)
    columns, roles = result.model.groups, sources["police"].roles
    stranger = np.full((1, len(columns)), -1, dtype=np.int8)
    for column, level in ((roles["given"], 0), (roles["surname"], 0), (roles["dob"], 5), (roles["sex"], 5), ("place", 0)):
        stranger[0, columns.index(column)] = level
    stranger[0, -1] = 1  # one key shared
    assert result.model.probabilities(stranger)[0] < result.threshold / 2
    namesake = stranger.copy()
    namesake[0, [columns.index(roles["given"]), columns.index(roles["surname"])]] = 5
    assert result.model.probabilities(namesake)[0] > result.threshold


def test_each_compared_pair_says_which_fields_agreed_at_which_level_and_no_value(
    agencies: tuple[dict[str, pl.DataFrame], pl.DataFrame],
) -> None:
    frames, _ = agencies
    sources = {n: encode_scoped(f, SCHEMA, SECRET, today=TODAY).encodings for n, f in frames.items()}
    pairs = link_scoped(sources).pairs
    compared = pairs.filter(pl.col("similarity").is_not_null())
    assert compared.height > 0 and compared.get_column("agreement").null_count() == 0
    # joined through a third record, never compared: no levels either
    assert (
        pairs.filter(pl.col("similarity").is_null()).get_column("agreement").null_count()
        == pairs.filter(pl.col("similarity").is_null()).height
    )
    words = "|".join(LEVEL_WORDS)
    shape = re.compile(rf"^([a-z_]+ ({words}), )*[a-z_]+ ({words}); [1-9][0-9]* keys shared$")
    texts = compared.get_column("agreement").to_list()
    assert all(shape.match(t) for t in texts), texts[:3]
    # a pair the model calls a match agrees mostly exactly; the text names levels, never values
    assert any("exact" in t for t in compared.filter(pl.col("band") == "match").get_column("agreement"))
    values = {v for f in frames.values() for c in COLUMNS for v in f.get_column(c).drop_nulls().to_list() if len(v) > 3}
    assert not any(v in t for t in set(texts) for v in values)


def test_parquet_round_trip_and_bytes(agencies: tuple[dict[str, pl.DataFrame], pl.DataFrame], tmp_path: Path) -> None:
    frames, _ = agencies
    enc = encode_scoped(frames["police"], SCHEMA, SECRET, today=TODAY).encodings
    write_scoped_encodings(enc, tmp_path / "p.parquet")
    back = read_scoped_encodings(tmp_path / "p.parquet")
    assert back.record_ids.to_list() == enc.record_ids.to_list()
    assert np.array_equal(back.tokens[back.has_token], enc.tokens[enc.has_token])
    assert all(np.array_equal(x, y) for x, y in zip(back.evidence, enc.evidence, strict=True))
    assert back.layouts == enc.layouts and back.secret_check == enc.secret_check
    assert enc.bytes_per_record <= 1024


def test_wire_form_round_trips_and_refuses_damage(agencies: tuple[dict[str, pl.DataFrame], pl.DataFrame]) -> None:
    frames, _ = agencies
    enc = encode_scoped(frames["police"], SCHEMA, SECRET, today=TODAY).encodings
    packed = pack_scoped(enc)
    back = unpack_scoped(packed, name="police")
    assert back.record_ids.to_list() == enc.record_ids.to_list() and back.layouts == enc.layouts
    assert np.array_equal(back.tokens, enc.tokens) and np.array_equal(back.has_token, enc.has_token)
    assert all(np.array_equal(x, y) for x, y in zip(back.evidence, enc.evidence, strict=True))
    # Nothing beyond tokens, evidence, ids and a small header: the wire carries no more than the file.
    ids = sum(len(r.encode()) + 1 for r in enc.record_ids.to_list())
    assert len(packed) - ids <= len(enc) * (enc.bytes_per_record + 1) + 8192
    for damaged in (packed[:-1], packed + b"x", b"LKMK0" + packed[5:]):
        with pytest.raises(EncodingsError, match="police"):
            unpack_scoped(damaged, name="police")


def test_a_large_agencys_decoy_statistics_fit_on_the_wire(agencies: tuple[dict[str, pl.DataFrame], pl.DataFrame]) -> None:
    # A million records give a decoy histogram of several MB (transfer.py once failed: header too large).
    frames, _ = agencies
    enc = encode_scoped(frames["police"], SCHEMA, SECRET, today=TODAY).encodings
    patterns = np.random.default_rng(1).integers(-1, 6, size=(150_000, enc.decoy_patterns.shape[1]), dtype=np.int8)
    big = dataclasses.replace(enc, decoy_patterns=patterns, decoy_counts=np.arange(1, 150_001, dtype=np.int64))
    packed = pack_scoped(big)
    assert int.from_bytes(packed[5:9], "little") > 1 << 21
    back = unpack_scoped(packed, name="police")
    assert np.array_equal(back.decoy_patterns, patterns) and np.array_equal(back.decoy_counts, big.decoy_counts)


# -- one-line errors ----------------------------------------------------------------------------------


def one_line(exc: pytest.ExceptionInfo[BaseException]) -> str:
    message = str(exc.value)
    assert "\n" not in message
    return message


def test_different_secret_is_detected_and_named(agencies: tuple[dict[str, pl.DataFrame], pl.DataFrame]) -> None:
    frames, _ = agencies
    a = encode_scoped(frames["police"], SCHEMA, SECRET, today=TODAY).encodings
    b = encode_scoped(frames["child_welfare"], SCHEMA, OTHER, today=TODAY).encodings
    with pytest.raises(EncodingsError) as exc:
        link_scoped({"police.parquet": a, "welfare.parquet": b})
    assert one_line(exc).startswith("welfare.parquet was encoded under a different secret than police.parquet")


def test_different_key_sets_are_refused(agencies: tuple[dict[str, pl.DataFrame], pl.DataFrame]) -> None:
    frames, _ = agencies
    a = encode_scoped(frames["police"], SCHEMA, SECRET, today=TODAY).encodings
    b = encode_scoped(
        frames["child_welfare"], SCHEMA, SECRET, keys=(MatchKey(name="names", parts=("given", "surname")),), today=TODAY
    ).encodings
    with pytest.raises(EncodingsError) as exc:
        link_scoped({"a": a, "b": b})
    assert "match-key set" in one_line(exc)


def test_a_key_naming_a_missing_field_is_a_schema_error() -> None:
    schema = Schema.for_columns(["given_name", "surname", "postcode"], project="scoped-test")
    records = pl.DataFrame({"record_id": ["1"], "given_name": ["a"], "surname": ["b"], "postcode": ["1"]})
    with pytest.raises(SchemaError) as exc:
        encode_scoped(records, schema, SECRET, keys=(MatchKey(name="surname_dob", parts=("surname", "dob")),), today=TODAY)
    assert "'surname_dob'" in one_line(exc) and "dob" in str(exc.value)


def test_a_key_set_that_links_nothing_is_refused() -> None:
    schema = Schema.for_columns(["sex", "city"], project="scoped-test")
    records = pl.DataFrame({"record_id": ["1"], "sex": ["f"], "city": ["x"]})
    with pytest.raises(SchemaError) as exc:
        encode_scoped(records, schema, SECRET, today=TODAY)
    assert "nothing could be linked" in one_line(exc)
    with pytest.raises(SchemaError) as exc:
        encode_scoped(records, SCHEMA, SECRET, keys=(), today=TODAY)
    one_line(exc)


def test_bad_key_definitions_are_schema_errors() -> None:
    with pytest.raises(SchemaError):
        MatchKey(name="Bad Name", parts=("surname",))
    with pytest.raises(SchemaError):
        MatchKey(name="k", parts=("dob:phonetic",))
    with pytest.raises(SchemaError):
        MatchKey.from_dict({"name": "k", "parts": "surname"})
    assert MatchKey.from_dict({"name": "k", "parts": ["surname", "dob:year"]}).to_dict() == {
        "name": "k",
        "parts": ["surname", "dob:year"],
    }


def test_link_settings_check_thresholds() -> None:
    from linkage.errors import LinkageError

    with pytest.raises(LinkageError):
        ScopedLinkSettings(threshold=0.3, review_threshold=0.5)


def test_a_few_records_encode_on_one_thread_to_the_same_bits(
    agencies: tuple[dict[str, pl.DataFrame], pl.DataFrame], monkeypatch: pytest.MonkeyPatch
) -> None:
    """An intake query's few records take the serial kernels: the same encodings as the parallel ones."""
    import linkage.records._normalise as normalise_module
    import linkage.scoped._encode as encode_module

    frame = agencies[0]["police"].head(40)
    serial = encode_scoped(frame, SCHEMA, SECRET, today=TODAY).encodings
    monkeypatch.setattr(encode_module, "SERIAL_BELOW", 0)
    monkeypatch.setattr(normalise_module, "SERIAL_BELOW", 0)
    parallel = encode_scoped(frame, SCHEMA, SECRET, today=TODAY).encodings
    assert serial.bytes_per_record > 0 and np.array_equal(serial.tokens, parallel.tokens)
    assert all(np.array_equal(s, p) for s, p in zip(serial.evidence, parallel.evidence, strict=True))


def test_records_encoded_one_at_a_time_get_the_bits_of_a_bulk_run(agencies: tuple[dict[str, pl.DataFrame], pl.DataFrame]) -> None:
    """An intake query encodes one record (Python lists, serial kernels), a job many (polars, parallel
    kernels): with a cap no value reaches, every token, evidence word and reject is the same."""
    messy = frame([
        {**PERSON, "given_name": "José-María", "surname": "Müller Ñúñez", "address": "3 Saint Ávila Rd."},
        {**PERSON, "date_of_birth": "1990-13-45", "sex": "unknown", "postcode": "97301-1234"},
        {**PERSON, "date_of_birth": "1990-13-01", "given_name": "NA", "city": "  "},
        {**PERSON, "date_of_birth": "04/12/1990", "surname": "O'Brien", "middle_name": "不明"},
        {**PERSON, "date_of_birth": "19900412", "address": "", "sex": "?"},
        dict.fromkeys(PERSON, ""),
    ])  # fmt: skip
    records = pl.concat([agencies[0]["police"].head(120).select(messy.columns), messy])
    bulk = encode_scoped(records, SCHEMA, SECRET, today=TODAY, cap=records.height)
    assert bulk.encodings.has_token.sum() > records.height and bulk.rejects.height > 0
    for r in range(records.height):
        one = encode_scoped(records.slice(r, 1), SCHEMA, SECRET, today=TODAY)
        assert np.array_equal(one.encodings.tokens[0], bulk.encodings.tokens[r])
        assert np.array_equal(one.encodings.has_token[0], bulk.encodings.has_token[r])
        for words, bulk_words in zip(one.encodings.evidence, bulk.encodings.evidence, strict=True):
            assert np.array_equal(words[0], bulk_words[r])
        assert one.rejects.drop("row").rows() == bulk.rejects.filter(pl.col("row") == r + 1).drop("row").rows()


def test_a_records_lesser_candidates_in_one_other_source_are_ruled_out() -> None:
    source_of = np.array([0, 0, 1, 1, 2])
    left, right = np.array([0, 0, 1, 0, 1]), np.array([2, 3, 3, 4, 4])
    score = np.array([0.9, 0.4, 0.8, 0.1, 0.1], dtype=np.float32)
    # Record 0 has 2 (0.9) and 3 (0.4) in source 1, and record 3 has 1 (0.8) above 0 in source 0:
    # (0, 3) is out either way. Records 0 and 1 tie for 4 in source 2: a tie rules nothing out.
    assert ruled_out(left, right, score, source_of).tolist() == [False, True, False, False, False]
    # A source whose records may be one person (its duplicates are sought) rules nothing out.
    assert not ruled_out(left, right, score, source_of, shared=[1]).any()
