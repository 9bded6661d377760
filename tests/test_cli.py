"""The command line: the steward's three commands, and one clear line for each mistake."""

import re
import stat

import polars as pl
import pytest
from conftest import PEOPLE_COLUMNS, run_linkage_subprocess

from linkage import Schema

GOOD_CSV = (
    "rec_id,given_name,surname,date_of_birth,sex,address,postcode\n"
    "a1,José,García,1985-03-14,M,12 Stanley Street,2000\n"
    "a2,Anne-Marie,O'Brien,03/14/1990,female,4 Pine Rd,12345-6789\n"
    "a3,Lee,Nguyen,19851402,x,,\n"
)


@pytest.fixture
def project(tmp_path, run_cli):
    schema, secret = tmp_path / "schema.toml", tmp_path / "secret.key"
    assert run_cli("schema", "init", "--columns", ",".join(PEOPLE_COLUMNS), "--out", schema).code == 0
    assert run_cli("keys", "new", "--out", secret).code == 0
    return tmp_path, schema, secret


def encode_args(schema, secret, input_path, out, id_column="rec_id"):
    return ("encode", "--schema", schema, "--secret", secret, "--input", input_path, "--id-column", id_column, "--out", out)


def test_the_three_commands_produce_encodings_and_a_rejects_report(project, run_cli):
    tmp, schema, secret = project
    people = tmp / "people.csv"
    people.write_text(GOOD_CSV, encoding="utf-8")
    result = run_cli(*encode_args(schema, secret, people, tmp / "people.parquet"))
    assert result.code == 0, result.err
    assert "encoded 3 records" in result.out
    assert "1 unusable values in 1 records (date_of_birth 1)" in result.out
    rejects = pl.read_csv(tmp / "people.rejects.csv")
    assert rejects.select("row", "record_id", "field").rows() == [(3, "a3", "date_of_birth")]
    encoded = pl.read_parquet(tmp / "people.parquet")
    assert encoded.get_column("record_id").to_list() == ["a1", "a2", "a3"]
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600


def test_schema_init_lists_kinds_and_refuses_to_overwrite(tmp_path, run_cli):
    out = tmp_path / "s.toml"
    first = run_cli("schema", "init", "--columns", "first_name,dob,zip,notes", "--out", out, "--project", "tf-2026")
    assert first.code == 0 and "tf-2026" in first.out
    assert "match keys" in first.out.splitlines()[1]  # the default profile
    assert [line.split()[1] for line in first.out.splitlines() if " group " in line] == ["name", "date", "postcode", "text"]
    assert Schema.load(out).profile == "match-keys" and "dob_given_initial" in {k.name for k in Schema.load(out).match_keys}
    folded = run_cli("schema", "init", "--columns", "first_name,dob", "--out", tmp_path / "rf.toml", "--record-filter")
    assert folded.code == 0 and "XOR-folded record filter" in folded.out
    assert Schema.load(tmp_path / "rf.toml").profile == "record-filter" and Schema.load(tmp_path / "rf.toml").hardening.xor_fold
    again = run_cli("schema", "init", "--columns", "surname", "--out", out)
    assert again.code == 1 and "already exists" in again.err
    fs = run_cli("schema", "init", "--columns", "first_name,dob", "--out", tmp_path / "fs.toml", "--field-scoring")
    assert fs.code == 0 and "re-identify nearly every record" in fs.out
    assert Schema.load(tmp_path / "fs.toml").group_filters and not Schema.load(tmp_path / "fs.toml").hardening.xor_fold
    shown = run_cli("schema", "show", "--schema", out)
    assert shown.code == 0 and "fingerprint" in shown.out


def test_keys_new_refuses_to_overwrite(project, run_cli):
    _, _, secret = project
    before = secret.read_bytes()
    result = run_cli("keys", "new", "--out", secret)
    assert result.code == 1 and "refusing to overwrite" in result.err
    assert secret.read_bytes() == before


@pytest.mark.parametrize(
    ("content", "id_column", "expected"),
    [
        (GOOD_CSV, "record", "no id column 'record'"),
        (GOOD_CSV.replace(",postcode", ",zip"), "rec_id", "missing column(s) named in the schema: postcode"),
        (GOOD_CSV.replace("a3,", "a1,"), "rec_id", "rows 1 and 3: duplicate record id"),
        (GOOD_CSV.replace("a2,", ","), "rec_id", "row 2: empty record id"),
        ("", "rec_id", "empty file"),
        (GOOD_CSV.splitlines()[0] + "\n", "rec_id", "no records (only a header)"),
        (GOOD_CSV + "a4,too,many,fields,here,x,y,z,w\n", "rec_id", "line 5: 9 fields where the header has 7"),
        # issue 14: a file without a header, a ragged short row, a column named twice, an overlong field
        ("\n".join(GOOD_CSV.splitlines()[1:]) + "\n", "rec_id", "no id column 'rec_id' among the header's 7 columns"),
        (GOOD_CSV + "a4,Stanley,1985-03-14\n", "rec_id", "line 5: 3 fields where the header has 7"),
        (
            GOOD_CSV.replace('"a3,Lee,Nguyen', '"a3,Lee,Nguyen').replace("a3,Lee,Nguyen,19851402,x,,", 'a3,"Lee, Jr",Nguyen'),
            "rec_id",
            "line 4: 3 fields where the header has 7",
        ),
        (
            "".join(line + ",extra\n" for line in GOOD_CSV.replace("postcode", "surname", 1).splitlines()).replace(
                ",extra", ",postcode", 1
            ),
            "rec_id",
            "header columns 3 and 7 have the same name",
        ),
        (
            GOOD_CSV.replace("12 Stanley Street", "x" * 70_000),
            "rec_id",
            "row 1: a value of column 'address' is longer than 64 KiB",
        ),
        (GOOD_CSV.replace("12 Stanley Street", "x" * 1_100_000), "rec_id", "line 2: longer than 1024 KiB"),
    ],
)
def test_bad_input_gives_one_line_naming_file_and_place(project, run_cli, content, id_column, expected):
    tmp, schema, secret = project
    people = tmp / "people.csv"
    people.write_text(content, encoding="utf-8")
    result = run_cli(*encode_args(schema, secret, people, tmp / "out.parquet", id_column))
    assert result.code == 1
    assert result.err.count("\n") == 1 and "Traceback" not in result.err
    assert str(people) in result.err and expected in result.err
    assert not (tmp / "out.parquet").exists()
    for value in ("García", "O'Brien", "Stanley", "1985-03-14", "José", "xxxx"):
        assert value not in result.err


def test_wrong_text_encoding_names_the_line_and_the_remedy(project, run_cli):
    tmp, schema, secret = project
    people = tmp / "latin1.csv"
    people.write_bytes(GOOD_CSV.encode("latin-1"))
    result = run_cli(*encode_args(schema, secret, people, tmp / "out.parquet"))
    assert result.code == 1 and "line 2: not valid utf-8 text" in result.err and "--encoding" in result.err
    fixed = run_cli(*encode_args(schema, secret, people, tmp / "out.parquet"), "--encoding", "latin-1")
    assert fixed.code == 0, fixed.err


def test_missing_files_and_bad_secret(project, run_cli):
    tmp, schema, secret = project
    people = tmp / "people.csv"
    people.write_text(GOOD_CSV, encoding="utf-8")
    assert "absent.csv: file not found" in run_cli(*encode_args(schema, secret, tmp / "absent.csv", tmp / "o.parquet")).err
    assert "nope.toml: schema file not found" in run_cli(*encode_args(tmp / "nope.toml", secret, people, tmp / "o.parquet")).err
    bad_secret = tmp / "bad.key"
    bad_secret.write_bytes(b"short")
    result = run_cli(*encode_args(schema, bad_secret, people, tmp / "o.parquet"))
    assert result.code == 1 and "bad.key: not a linkage secret" in result.err


def test_bad_schema_key_is_named(project, run_cli):
    tmp, schema, secret = project
    schema.write_text(schema.read_text().replace("bits = 1024", "bits = 1000"))
    people = tmp / "people.csv"
    people.write_text(GOOD_CSV, encoding="utf-8")
    result = run_cli(*encode_args(schema, secret, people, tmp / "o.parquet"))
    assert result.code == 1 and "filter.bits" in result.err and str(schema) in result.err


def test_project_override_changes_the_keys(project, run_cli):
    tmp, schema, secret = project
    people = tmp / "people.csv"
    people.write_text(GOOD_CSV, encoding="utf-8")
    assert run_cli(*encode_args(schema, secret, people, tmp / "a.parquet")).code == 0
    assert run_cli(*encode_args(schema, secret, people, tmp / "b.parquet"), "--project", "another").code == 0
    a, b = pl.read_parquet(tmp / "a.parquet"), pl.read_parquet(tmp / "b.parquet")
    tokens = [c for c in a.columns if c.startswith("token_")]
    assert tokens and all(a.get_column(c).to_list() != b.get_column(c).to_list() for c in tokens)
    assert pl.read_parquet_metadata(tmp / "b.parquet")["linkage.project"] == "another"


def test_parquet_input(project, run_cli):
    tmp, schema, secret = project
    source = tmp / "people.parquet.in"
    pl.read_csv(GOOD_CSV.encode(), infer_schema=False).write_parquet(tmp / "people.parquet")
    result = run_cli(*encode_args(schema, secret, tmp / "people.parquet", tmp / "enc.parquet"))
    assert result.code == 0, result.err and not source.exists()


def test_usage_errors_exit_2(run_cli):
    assert run_cli("encode", "--schema", "x").code == 2
    assert run_cli("frobnicate").code == 2


def test_real_entry_point_in_a_subprocess(project):
    tmp, schema, secret = project
    people = tmp / "people.csv"
    people.write_text(GOOD_CSV, encoding="utf-8")
    done = run_linkage_subprocess(*encode_args(schema, secret, people, tmp / "sub.parquet"))
    assert done.returncode == 0, done.stderr
    assert "encoded 3 records" in done.stdout
    failed = run_linkage_subprocess(*encode_args(schema, secret, tmp / "absent.csv", tmp / "sub.parquet"))
    assert failed.returncode == 1 and failed.stderr.startswith("linkage: error:") and "Traceback" not in failed.stderr


def test_privacy_report_attacks_a_schema_on_a_population_file(tmp_path, run_cli):
    import numpy as np

    from linkage.testing._synthetic import generate_agencies

    columns = ["given_name", "surname", "date_of_birth", "sex", "address", "postcode"]
    people = generate_agencies(400, rng=np.random.default_rng(2)).people
    people.select(pl.int_range(pl.len()).cast(pl.String).alias("person"), *columns).write_csv(tmp_path / "people.csv")
    assert run_cli("schema", "init", "--columns", ",".join(columns), "--out", tmp_path / "s.toml").code == 0
    report = run_cli("privacy-report", "--schema", tmp_path / "s.toml", "--people", tmp_path / "people.csv", "--id-column", "person",
                     "--records", "200", "--agency-people", "300")  # fmt: skip
    assert report.code == 0, report.err
    # The secret is fresh each run: one record more or less re-identified moves 0.5% here.
    assert "from " + str(tmp_path / "people.csv") in report.out and re.search(
        r"re-identifies \d+\.\d% \((meets|misses) the aim", report.out
    )
    assert "F1 FEBRL4" in report.out  # and one line per attack on what match keys send, the tokens:
    assert re.findall(r"^  (\S+) +tokens ", report.out, re.M) == ["token-frequency", "token-graph", "scope-graph"]
    assert run_cli("schema", "init", "--columns", ",".join(columns), "--out", tmp_path / "rf.toml", "--record-filter").code == 0
    folded = run_cli("privacy-report", "--schema", tmp_path / "rf.toml", "--people", tmp_path / "people.csv", "--id-column", "person",
                     "--records", "200", "--agency-people", "300")  # fmt: skip
    assert folded.code == 0, folded.err  # the record filter: one line per attack on it alone
    assert re.findall(r"^  (graph|frequency|embedding|xor) +(\S+) ", folded.out, re.M) == [
        ("graph", "record"),
        ("frequency", "record"),
        ("embedding", "record"),
        ("xor", "record"),
    ]
    too_many = run_cli(
        "privacy-report",
        "--schema",
        tmp_path / "s.toml",
        "--people",
        tmp_path / "people.csv",
        "--id-column",
        "person",
        "--records",
        "500",
    )
    assert (
        too_many.code == 1 and "need 500 people; the population has 400" in too_many.err and len(too_many.err.splitlines()) == 1
    )
    no_id = run_cli("privacy-report", "--schema", tmp_path / "s.toml", "--people", tmp_path / "people.csv")
    assert no_id.code == 1 and "--people needs --id-column" in no_id.err
    missing = run_cli(
        "privacy-report", "--schema", tmp_path / "s.toml", "--people", tmp_path / "nobody.csv", "--id-column", "person"
    )
    assert missing.code == 1 and "nobody.csv" in missing.err and "Traceback" not in missing.err
