import tomllib

import pytest

from linkage import Schema, SchemaError, kind_for_column


@pytest.mark.parametrize(
    ("column", "kind"),
    [
        *[(c, "name") for c in ("given_name", "first_name", "forename", "surname", "last_name", "family_name", "middle_name")],
        *[(c, "date") for c in ("date_of_birth", "dob", "birth_date", "DOB", " Date Of Birth ")],
        *[(c, "sex") for c in ("sex", "gender", "Gender")],
        *[(c, "address") for c in ("address", "street", "address_1", "address_2", "street_number")],
        *[(c, "city") for c in ("city", "suburb", "town")],
        ("state", "state"),
        *[(c, "postcode") for c in ("postcode", "zip", "zipcode")],
        *[(c, "text") for c in ("soc_sec_id", "notes", "favourite_colour")],
    ],
)
def test_kind_is_chosen_from_the_column_name(column, kind):
    assert kind_for_column(column) == kind


def test_toml_round_trip_keeps_schema_and_fingerprint(people_schema):
    text = people_schema.to_toml()
    again = Schema.from_dict(tomllib.loads(text))
    assert again == people_schema
    assert again.fingerprint == people_schema.fingerprint
    assert f"fingerprint {people_schema.fingerprint}" in text


def test_fingerprint_ignores_formatting_but_not_settings(people_schema):
    data = tomllib.loads(people_schema.to_toml())
    assert Schema.from_dict(data).fingerprint == people_schema.fingerprint
    data["fields"][0]["weight"] = 2.0
    assert Schema.from_dict(data).fingerprint != people_schema.fingerprint
    data = tomllib.loads(people_schema.to_toml())
    data["hardening"]["balance"] = True
    assert Schema.from_dict(data).fingerprint != people_schema.fingerprint
    data = tomllib.loads(people_schema.to_toml())
    data["project"]["id"] = "other"
    assert Schema.from_dict(data).fingerprint != people_schema.fingerprint


def test_random_project_ids_differ():
    assert Schema.for_columns(["surname"]).project != Schema.for_columns(["surname"]).project


@pytest.mark.parametrize(
    ("edit", "key"),
    [
        (lambda d: d["filter"].update(bits=1000), "filter.bits"),
        (lambda d: d["filter"].update(hashes=0), "filter.hashes"),
        (lambda d: d["filter"].update(colour=1), "filter.colour"),
        (lambda d: d["hardening"].update(blip=0.7), "hardening.blip"),
        (lambda d: d["hardening"].update(balance="yes"), "hardening.balance"),
        (lambda d: d["fields"][1].update(kind="banana"), "fields[1].kind"),
        (lambda d: d["fields"][0].update(weight=True), "fields[0].weight"),
        (lambda d: d["fields"][0].update(weight=-1.0), "fields[0].weight"),
        (lambda d: d["fields"][1].update(name="given_name"), "fields[1].name"),
        (lambda d: d["fields"][0].update(salt_with="nothing"), "fields[0].salt_with"),
        (lambda d: d["fields"][0].update(date_format="%Y"), "fields[0].date_format"),
        (lambda d: d["project"].update(id="has space"), "project.id"),
        (lambda d: d.update(fields=[]), "fields"),
        (lambda d: d.update(version=9), "version"),
        (lambda d: d.update(extra={}), "extra"),
    ],
)
def test_invalid_schema_names_the_key(people_schema, edit, key):
    data = tomllib.loads(people_schema.to_toml())
    edit(data)
    with pytest.raises(SchemaError) as info:
        Schema.from_dict(data, source="s.toml")
    assert f"s.toml: {key}" in str(info.value)


def test_load_reports_file_problems(tmp_path):
    with pytest.raises(SchemaError, match="not found"):
        Schema.load(tmp_path / "absent.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("version = [", encoding="utf-8")
    with pytest.raises(SchemaError, match="bad.toml: not valid TOML"):
        Schema.load(bad)


def test_hardening_changes_output_length(people_schema):
    data = tomllib.loads(people_schema.to_toml())
    data["hardening"].update(balance=True)
    assert Schema.from_dict(data).output_bits == 2048
    data["hardening"].update(xor_fold=True)
    assert Schema.from_dict(data).output_bits == 1024
