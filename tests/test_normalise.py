import datetime as dt
import unicodedata

import polars as pl
from hypothesis import assume, example, given
from hypothesis import strategies as st

from linkage import FieldSpec, Schema
from linkage.records._normalise import (
    _accepted_text,
    _dates_by_expressions,
    _folded_text,
    _is_missing,
    normalise,
    normalised_values,
)
from linkage.records._schema import DEFAULT_MISSING_NAMES
from linkage.records._tokens import factorised, utf8_bytes

TODAY = dt.date(2026, 11, 23)


def normalised(kind: str, values: list[str | None], **options) -> list:
    spec = FieldSpec(name="v", kind=kind, weight=1.0, group="g", **options)
    schema = Schema(project="t", fields=(spec,))
    out, rejects, _ = normalise(pl.DataFrame({"v": values}, schema={"v": pl.String}), schema, today=TODAY)
    return out["v"].per_record().to_list()


def test_unicode_case_and_space_fold_to_one_name():
    assert len(set(normalised("name", ["José", "JOSE", " jose ", "Jose\u0301", "JOSÉ"]))) == 1
    assert normalised("name", ["Łukasz", "Straße", "Ærø", "Zoë"]) == ["lukasz", "strasse", "aero", "zoe"]


def test_particles_hyphens_and_apostrophes():
    assert len(set(normalised("name", ["van der Berg", "Van-Der-Berg", "VANDERBERG", "van der berg"]))) == 1
    assert normalised("name", ["O'Brien", "O’Brien", "OBrien"]) == ["obrien"] * 3
    assert normalised("name", ["Anne-Marie", "Anne Marie"]) == ["annemarie"] * 2


letters = st.text(st.characters(whitelist_categories=("Lu", "Ll")), min_size=1, max_size=12)


@given(letters)
@example("ϲ")  # lunate sigma: NFKD gives final sigma ς, its capital gives σ
@example("ŃA")  # folds to "na", a missing-value marker when read again
def test_name_normalisation_is_idempotent_and_case_blind(name):
    # Some letters change length when uppercased (Greek ᾀ -> ἈΙ): case cannot be blind to those.
    assume(len(name.upper()) == len(name) and name.upper().lower() == name.lower())
    once = normalised("name", [name, name.upper(), name.lower(), unicodedata.normalize("NFD", name)])
    assert once[0] is None or len(set(once)) == 1
    if once[0] is not None and once[0] not in DEFAULT_MISSING_NAMES:
        assert normalised("name", [once[0]]) == [once[0]]


@given(st.dates(min_value=dt.date(1900, 1, 1), max_value=TODAY))
def test_date_formats_agree(day):
    forms = [day.isoformat(), day.strftime("%m/%d/%Y"), day.strftime("%Y%m%d"), f"{day.isoformat()}T12:30:00"]
    assert normalised("date", forms) == [day.isoformat()] * 4


def test_declared_date_format():
    assert normalised("date", ["14.03.1985", "1985-03-14"], date_format="%d.%m.%Y") == ["1985-03-14", None]


def test_dates_keep_plausible_parts_of_one_bad_part():
    assert normalised("date", ["19450493", "19451393", "19850231", "2099-01-01", "1870-05-05", "soon"]) == [
        "1945-04-??",
        None,
        None,
        "????-01-01",
        "????-05-05",
        None,
    ]


def test_sex_spellings():
    assert normalised("sex", ["M", "male", " Man ", "F", "Female", "woman", "X", "non-binary", "banana"]) == [
        "m",
        "m",
        "m",
        "f",
        "f",
        "f",
        "x",
        "x",
        None,
    ]


def test_postcodes_and_zip_plus_four():
    assert normalised("postcode", ["12345-6789", "12345", "123456789", "SW1A 1AA", "sw1a1aa"]) == [
        "12345",
        "12345",
        "12345",
        "sw1a1aa",
        "sw1a1aa",
    ]


def test_addresses_share_one_spelling_of_street_types():
    values = normalised("address", ["12 Stanley Street", "12 stanley st.", "12 STANLEY ST", "12 Stanley Str"])
    assert len(set(values)) == 1
    assert normalised("address", ["1 North Street Road"]) == ["1 n st rd"]


def test_missing_and_rejected_values_are_counted_and_reported():
    spec = FieldSpec(name="dob", kind="date", weight=1.0, group="dob")
    schema = Schema(project="t", fields=(spec,))
    frame = pl.DataFrame({"dob": ["1985-03-14", "", None, "NA", "unknown", "31/31/31", "19450493"]})
    values, rejects, missing = normalise(frame, schema, today=TODAY)
    assert missing == {"dob": 4}
    assert rejects.get_column("row").to_list() == [6, 7]
    assert rejects.get_column("field").to_list() == ["dob", "dob"]
    assert "31/31/31" not in str(rejects.to_dicts())


def test_na_is_a_name_in_name_fields_and_not_known_elsewhere(tmp_path):
    """Na is a Korean surname: name fields have their own missing markers (``[missing] names``)."""
    frame = pl.DataFrame({"surname": ["Na", "NA", " na ", "unknown", "n/a"], "dob": ["NA"] * 5})
    fields = (
        FieldSpec(name="surname", kind="name", weight=1.0, group="name"),
        FieldSpec(name="dob", kind="date", weight=1.0, group="dob"),
    )
    values, _, missing = normalise(frame, Schema(project="t", fields=fields), today=TODAY)
    assert values["surname"].per_record().to_list() == ["na", "na", "na", None, None]
    assert missing == {"surname": 2, "dob": 5}
    path = tmp_path / "schema.toml"
    path.write_text(Schema(project="t", fields=fields).to_toml().replace('names = ["", "n/a"', 'names = ["na", "", "n/a"'))
    strict = Schema.load(path)
    assert strict.missing_names[0] == "na" and normalise(frame, strict, today=TODAY)[2] == {"surname": 5, "dob": 5}


# The compiled kernels settle ASCII values; the expressions define what they must give.
ascii_text = st.text(st.characters(min_codepoint=0, max_codepoint=127), max_size=24)
address_words = st.lists(
    st.sampled_from(["street", "St", "STR", "av", "Ave", "north", "saint", "Mount", "12", "O'Brien", "x`y", "-", ",",
                     " ", "  ", "\t", "apartment", "Boulevard", "streets", "123456789", "12345-6789"]),
    max_size=6,
).map("".join)  # fmt: skip


@given(st.lists(st.one_of(ascii_text, address_words), min_size=1, max_size=30))
def test_ascii_kernel_agrees_with_the_expressions(values):
    raw = pl.Series("raw", values, dtype=pl.String)
    for kind in ("name", "address", "postcode", "city", "state", "text", "sex"):
        spec = FieldSpec(name="v", kind=kind, weight=1.0, group="g")
        folded = raw.to_frame("raw").select(_folded_text(kind, pl.col("raw"))).to_series()
        expected = folded.to_frame("raw").select(_accepted_text(kind, pl.col("raw"))).to_series()
        assert normalised_values(spec, raw, TODAY).to_list() == expected.to_list(), kind


def _written(parts: tuple[int, int, int, int]) -> str:
    year, month, day, form = parts
    return [f"{year:04d}{month:02d}{day:02d}", f"{year:04d}-{month:02d}-{day:02d}", f"{month:02d}/{day:02d}/{year:04d}"][form]


date_like = st.one_of(
    st.tuples(st.integers(1870, 2030), st.integers(0, 13), st.integers(0, 32), st.integers(0, 2)).map(_written),
    st.tuples(st.integers(0, 9999), st.integers(0, 99), st.integers(0, 99), st.integers(0, 2)).map(_written),
    st.text(st.sampled_from("0123456789-/ T:x\t"), max_size=12),
    ascii_text,
)


@given(st.lists(date_like, min_size=1, max_size=30))
def test_date_kernel_agrees_with_the_expressions(values):
    raw = pl.Series("raw", values, dtype=pl.String)
    spec = FieldSpec(name="v", kind="date", weight=1.0, group="g")
    expected = _dates_by_expressions(raw.str.strip_chars(), spec, TODAY)
    assert normalised_values(spec, raw, TODAY).to_list() == expected.to_list()


def test_date_kernel_knows_leap_years_and_today():
    assert normalised("date", ["20000229", "19000229", "20240229", "20230229", "20261123", "20261124", "11/23/2026"]) == [
        "2000-02-29",
        None,
        "2024-02-29",
        None,
        "2026-11-23",
        None,
        "2026-11-23",
    ]


def test_dates_in_other_digits_are_rejected_not_fatal():
    assert normalised("date", ["１９８５-０３-１４", "١٩٨٥٠٣١٤", "1985-03-14"]) == [None, None, "1985-03-14"]


@given(st.lists(st.one_of(st.sampled_from([" NA ", "n/A", "\tunknown\n", "\x1cna", "na\x1f", "\u00a0na", " Ñ/A ", "不明 ", "?"]),
                          ascii_text), min_size=1, max_size=30))  # fmt: skip
def test_missing_values_are_found_as_the_expression_finds_them(values):
    raw = pl.Series("raw", values, dtype=pl.String)
    words = ("", "na", "n/a", "unknown", "ñ/a", "不明", "?")
    expected = raw.str.strip_chars().str.to_lowercase().is_in(list(words)).to_list()
    assert _is_missing(raw, *utf8_bytes(raw), words).tolist() == expected


@given(
    st.lists(
        st.one_of(st.none(), st.sampled_from(["", "a", "A", "José", "jose", "不明", "a\x1fb"]), st.text(max_size=6)), max_size=90
    )
)
def test_few_values_are_factorised_and_joined_as_many_are(values):
    """Up to ``FEW`` values take Python lists, more take polars: the same codes, values and bytes."""
    import linkage.records._tokens as tokens_module

    raw = pl.Series("v", values, dtype=pl.String)
    codes, distinct = factorised(raw)
    original = tokens_module.FEW
    tokens_module.FEW = -1  # every length takes the polars path
    try:
        bulk_codes, bulk_distinct = factorised(raw)
        present = raw.drop_nulls()
        bulk_data, bulk_offsets = utf8_bytes(present)
    finally:
        tokens_module.FEW = original
    assert codes.tolist() == bulk_codes.tolist() and distinct.to_list() == bulk_distinct.to_list()
    assert distinct.name == bulk_distinct.name and distinct.dtype == bulk_distinct.dtype
    data, offsets = utf8_bytes(present)
    assert data.tobytes() == bulk_data.tobytes() and offsets.tolist() == bulk_offsets.tolist()
