import datetime as dt
import unicodedata

import polars as pl
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from linkage import FieldSpec, Schema
from linkage._normalise import normalise

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
def test_name_normalisation_is_idempotent_and_case_blind(name):
    # Some letters change length when uppercased (Greek ᾀ -> ἈΙ): case cannot be blind to those.
    assume(len(name.upper()) == len(name) and name.upper().lower() == name.lower())
    once = normalised("name", [name, name.upper(), name.lower(), unicodedata.normalize("NFD", name)])
    assert once[0] is None or len(set(once)) == 1
    if once[0] is not None:
        assert normalised("name", [once[0]]) == [once[0]]


@given(st.dates(min_value=dt.date(1900, 1, 1), max_value=TODAY))
def test_date_formats_agree(day):
    forms = [day.isoformat(), day.strftime("%m/%d/%Y"), day.strftime("%Y%m%d"), f"{day.isoformat()}T12:30:00"]
    assert normalised("date", forms) == [day.isoformat()] * 4


def test_declared_date_format():
    assert normalised("date", ["14.03.1985", "1985-03-14"], date_format="%d.%m.%Y") == ["1985-03-14", None]


def test_dates_keep_plausible_parts_of_one_bad_part():
    assert normalised("date", ["19450493", "19451393", "19850231", "2099-01-01", "1870-05-05", "soon"]) == [
        "1945-04-??", None, None, "????-01-01", "????-05-05", None,
    ]


def test_sex_spellings():
    assert normalised("sex", ["M", "male", " Man ", "F", "Female", "woman", "X", "non-binary", "banana"]) == [
        "m", "m", "m", "f", "f", "f", "x", "x", None,
    ]


def test_postcodes_and_zip_plus_four():
    assert normalised("postcode", ["12345-6789", "12345", "123456789", "SW1A 1AA", "sw1a1aa"]) == [
        "12345", "12345", "12345", "sw1a1aa", "sw1a1aa",
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
