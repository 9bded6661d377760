"""Issue 15: within-agency duplicates — one source linked with itself, the per-agency policy in jobs,
and each agency told which of its own records are one person.

Data: agencies from linkage.testing._synthetic (seeded) with planted duplicate case files
(``duplicates=``: the same person under several records of one agency, each damaged on its own),
so the truth of every duplicate is known; pairs for the disclosure rule are generated here.
"""

from __future__ import annotations

import dataclasses
import itertools
import json

import numpy as np
import polars as pl
import pytest

from linkage.bloom._keys import Secret
from linkage.errors import ConfigError, LinkageError
from linkage.jobs._config import DISCLOSURES, load_coordinator_config
from linkage.jobs._disclosure import agency_results, visible_to
from linkage.jobs._profiles import encode_records, link_sources, with_default_match_keys
from linkage.matching._evaluate import duplicate_quality, true_duplicates
from linkage.matching._link import LinkSettings
from linkage.records._schema import Schema
from linkage.scoped._link import DEFAULT_MATCH_THRESHOLD
from linkage.testing._synthetic import CHILD_WELFARE, POLICE, generate_agencies

COLUMNS = ["given_name", "middle_name", "surname", "date_of_birth", "sex", "address", "city", "postcode"]
SECRET = Secret(bytes(range(32)))


def schema_with_cap(cap: int) -> Schema:
    return dataclasses.replace(with_default_match_keys(Schema.for_columns(COLUMNS, project="duplicates")), token_cap=cap)


def encoded(frame: pl.DataFrame, cap: int):
    return encode_records(
        frame.rename({"rec_id": "record_id"}).select("record_id", *COLUMNS), schema_with_cap(cap), SECRET
    ).encodings


@pytest.fixture(scope="module")
def planted():
    """Police and child welfare of 2,000 people, 15% of each agency's people under several case files."""
    return generate_agencies(2000, [POLICE, CHILD_WELFARE], rng=np.random.default_rng(3), duplicates=0.15)


# -- the generator ------------------------------------------------------------------------------


def test_the_generator_plants_duplicates_with_their_truth_and_leaves_other_data_as_it_was():
    plain = generate_agencies(300, rng=np.random.default_rng(9))
    same = generate_agencies(300, rng=np.random.default_rng(9), duplicates=0.0)
    for name, frame in plain.frames.items():
        assert frame.equals(same.frames[name])
    data = generate_agencies(300, rng=np.random.default_rng(9), duplicates=0.3)
    per_source = data.truth.group_by("source", "entity_id").len()
    assert per_source.get_column("len").max() >= 2  # one person, several records of one agency
    for name, frame in data.frames.items():
        assert frame.get_column("rec_id").n_unique() == frame.height  # distinct case files
        people = plain.truth.filter(pl.col("source") == name).height
        assert people * 1.2 < frame.height < people * 1.6
    assert true_duplicates(data.truth).height > 0
    assert true_duplicates(plain.truth).height == 0
    with pytest.raises(ValueError, match="duplicates"):
        generate_agencies(10, rng=np.random.default_rng(1), duplicates=1.5)


# -- one source ---------------------------------------------------------------------------------


def test_one_source_finds_its_planted_duplicates(planted):
    police = encoded(planted.frames["police"], cap=20)
    linked = link_sources({"police": police}, LinkSettings())
    pairs = linked.pairs
    assert pairs.height > 0
    assert (pairs.get_column("source_a") == "police").all() and (pairs.get_column("source_b") == "police").all()
    assert (pairs.get_column("id_a") != pairs.get_column("id_b")).all()  # never a record with itself
    ordered = pairs.select(pl.min_horizontal("id_a", "id_b").alias("x"), pl.max_horizontal("id_a", "id_b").alias("y"))
    assert ordered.n_unique() == pairs.height  # each pair once
    quality = duplicate_quality(pairs.filter(pl.col("band") == "match"), planted.truth, ["police"])
    # Measured here: precision 1.000, recall 0.691 (benchmarks/quality.py prints it on 5,000 people).
    assert quality.precision >= 0.9 and quality.recall >= 0.6, quality.line()
    clusters = linked.clusters
    assert clusters.group_by("cluster_id").len().get_column("len").max() >= 2


def test_one_source_under_the_default_cap_says_how_to_find_duplicates(planted):
    police = encoded(planted.frames["police"], cap=1)
    with pytest.raises(LinkageError, match=r"police: no two of its records share a match-key token.*--token-cap"):
        link_sources({"police": police}, LinkSettings())


def test_one_source_through_the_cli(planted, tmp_path, run_cli):
    planted.frames["police"].head(800).write_csv(tmp_path / "police.csv")
    (tmp_path / "schema.toml").write_text(schema_with_cap(1).to_toml(), encoding="utf-8")
    SECRET.write(tmp_path / "secret.key")
    common = ("--schema", tmp_path / "schema.toml", "--secret", tmp_path / "secret.key", "--id-column", "rec_id")
    assert run_cli("encode", *common, "--input", tmp_path / "police.csv", "--out", tmp_path / "police.parquet").code == 0
    refused = run_cli("link", tmp_path / "police.parquet", "--out", tmp_path / "pairs.csv")
    assert refused.code == 1 and "--token-cap" in refused.err and "Traceback" not in refused.err
    encode = run_cli(
        "encode", *common, "--token-cap", "20", "--input", tmp_path / "police.csv", "--out", tmp_path / "police.parquet"
    )
    assert encode.code == 0, encode.err
    done = run_cli("link", tmp_path / "police.parquet", "--out", tmp_path / "pairs.csv", "--clusters", tmp_path / "clusters.csv")
    assert done.code == 0, done.err
    assert "within one source" in done.out
    pairs = pl.read_csv(tmp_path / "pairs.csv", infer_schema=False)
    assert pairs.height > 0 and set(pairs.get_column("source_a")) == {"police"}
    planted.truth.write_csv(tmp_path / "truth.csv")
    judged = run_cli("evaluate", "--pairs", tmp_path / "pairs.csv", "--truth", tmp_path / "truth.csv")
    assert judged.code == 0 and "duplicates match" in judged.out


# -- the per-agency policy ----------------------------------------------------------------------


def largest_per_source(clusters: pl.DataFrame) -> dict[str, int]:
    counts = clusters.group_by("cluster_id", "source").len()
    return dict(counts.group_by("source").agg(pl.col("len").max()).iter_rows())


def test_the_policy_decides_whether_an_agency_has_several_records_in_a_cluster(planted):
    sources = {name: encoded(frame, cap=20) for name, frame in planted.frames.items()}
    forbid = link_sources(sources, LinkSettings())
    assert set(largest_per_source(forbid.clusters).values()) == {1}
    assert forbid.pairs.filter(pl.col("source_a") == pl.col("source_b")).is_empty()
    allow = link_sources(sources, LinkSettings(duplicates=frozenset({"police"})))
    largest = largest_per_source(allow.clusters)
    assert largest["police"] >= 2 and largest["child_welfare"] == 1
    own = allow.pairs.filter(pl.col("source_a") == pl.col("source_b"))
    assert set(own.get_column("source_a")) == {"police"}
    quality = duplicate_quality(own.filter(pl.col("band") == "match"), planted.truth, ["police"])
    # Measured here: precision 1.000, recall 0.771.
    assert quality.precision >= 0.9 and quality.recall >= 0.65, quality.line()


def test_the_policy_is_read_from_each_agency_entry(tmp_path):
    def config(extra: str):
        path = tmp_path / "coordinator.toml"
        path.write_text(
            '[coordinator]\nname = "c"\n[tls]\nca = "ca.pem"\ncert = "c.pem"\nkey = "c.key"\n'
            f'[agencies.police]\naddress = "127.0.0.1:1"\n{extra}\n[agencies.shelter]\naddress = "127.0.0.1:2"\n',
            encoding="utf-8",
        )
        return load_coordinator_config(path)

    assert config("").agencies["police"].duplicates == "forbid"  # today's behaviour by default
    assert config('duplicates = "allow"').agencies["police"].duplicates == "allow"
    assert config('duplicates = "allow"').agencies["shelter"].duplicates == "forbid"
    with pytest.raises(ConfigError, match=r"agencies\.police\.duplicates: one of forbid, allow"):
        config('duplicates = "sometimes"')


# -- what each agency is told ------------------------------------------------------------------

AGENCIES = ("a", "b", "c")
KEY = bytes(32)
THRESHOLDS = (0.5, 0.2)


def pairs_with_duplicates(seed: int = 11) -> pl.DataFrame:
    """People held by random agencies, some under two records of one agency; a pair per two records
    (own pairs too), band match or possible, a similarity or none (joined through a third record)."""
    rng = np.random.default_rng(seed)
    rows = []
    for person in range(80):
        records = [(a, f"{a}{person}-{k}") for a in AGENCIES if rng.random() < 0.6 for k in range(1 + (rng.random() < 0.4))]
        for (x, i), (y, j) in itertools.combinations(records, 2):
            similarity = None if rng.random() < 0.15 else float(rng.uniform(0.1, 1.0))
            rows.append((x, i, y, j, similarity, "match" if rng.random() < 0.7 else "possible"))
    return pl.DataFrame(
        rows, schema={"source_a": pl.String, "id_a": pl.String, "source_b": pl.String, "id_b": pl.String,
                      "similarity": pl.Float64, "band": pl.String}, orient="row",
    )  # fmt: skip


POLICIES = list(itertools.product(DISCLOSURES, repeat=3))


@pytest.mark.parametrize("policies", POLICIES, ids=["-".join(p) for p in POLICIES])
def test_own_duplicates_name_only_own_records_and_tell_nothing_of_invisible_agencies(policies):
    disclosure = dict(zip(AGENCIES, policies, strict=True))
    pairs = pairs_with_duplicates()
    results = agency_results(pairs, disclosure, KEY, thresholds=THRESHOLDS)
    told = 0
    for agency in AGENCIES:
        visible = visible_to(agency, disclosure)
        involved = (pl.col("source_a") == agency) | (pl.col("source_b") == agency)
        others = pl.when(pl.col("source_a") == agency).then(pl.col("source_b")).otherwise(pl.col("source_a"))
        only_visible = pairs.filter(~involved | others.is_in([*visible, agency]))
        mine = results[agency]
        alone = agency_results(only_visible, disclosure, KEY, thresholds=THRESHOLDS)[agency]
        assert mine.drop("reference").equals(alone.drop("reference"))
        same = set(itertools.chain.from_iterable(mine.get_column("same_person_as").to_list()))
        assert all(r.startswith(agency) for r in same | set(mine.get_column("record_id")))
        for record, group in mine.select("record_id", "same_person_as").iter_rows():
            assert record not in group
            told += len(group)
    assert told > 0


def test_a_record_joined_to_its_own_only_through_an_invisible_agency_is_not_told():
    pairs = pl.DataFrame(
        {"source_a": ["a", "a", "a"], "id_a": ["a1", "a2", "a1"], "source_b": ["b", "b", "a"], "id_b": ["b1", "b1", "a2"],
         "similarity": [0.9, 0.9, None], "band": ["match", "match", "match"]},
    )  # fmt: skip
    hidden = agency_results(pairs, {"a": "full", "b": "receive-only"}, KEY, thresholds=THRESHOLDS)["a"]
    assert hidden.is_empty()
    shown = agency_results(pairs, {"a": "full", "b": "full"}, KEY, thresholds=THRESHOLDS)["a"]
    assert dict(shown.select("record_id", "same_person_as").iter_rows()) == {"a1": ["a2"], "a2": ["a1"]}
    direct = pairs.with_columns(similarity=pl.Series([0.9, 0.9, 0.8]))
    told = agency_results(direct, {"a": "full", "b": "none"}, KEY, thresholds=THRESHOLDS)["a"]
    assert dict(told.select("record_id", "same_person_as").iter_rows()) == {"a1": ["a2"], "a2": ["a1"]}
    assert told.get_column("shared_with").to_list() == [[], []]
    # Without the job's thresholds, nothing of its own pairs is told.
    assert agency_results(direct, {"a": "full", "b": "none"}, KEY)["a"].is_empty()


# -- a job on real servers ----------------------------------------------------------------------


def test_a_job_tells_each_agency_its_own_duplicates_as_its_policy_allows(tmp_path):
    from linkage.jobs._config import load_node_config
    from linkage.protocol._clients import run_job_remotely
    from linkage.protocol.v1 import linkage_pb2 as pb
    from linkage.testing._demo import AGENCIES as DEMO_AGENCIES
    from linkage.testing._demo import prepare_demo, write_coordinator_config
    from services.coordinator import start_coordinator
    from services.node import start_node

    layout, truth = prepare_demo(tmp_path, people=400, seed=8, duplicates=0.2, token_cap=20, secret=SECRET)
    servers, ports = [], {}
    try:
        for name in DEMO_AGENCIES:
            config = load_node_config(layout.node_config(name))
            server, ports[name], _ = start_node(config, config.tls.load())
            servers.append(server)
        policies = {"police": "allow", "child_welfare": "forbid", "victim_services": "allow"}
        coordinator = load_coordinator_config(write_coordinator_config(layout, ports, duplicates=policies))
        tls = coordinator.tls.load()
        server, port, _ = start_coordinator(coordinator, tls)
        servers.append(server)
        events = list(
            run_job_remotely(f"127.0.0.1:{port}", tls, pb.JobRequest(agencies=list(DEMO_AGENCIES)), coordinator="coordinator")
        )
        assert events[-1].state == "done", events[-1].summary
        job = events[-1].job_id
    finally:
        for server in servers:
            server.stop(0).wait()
    job_dir = layout.coordinator / "jobs" / job
    clusters = pl.read_csv(job_dir / "clusters.csv", infer_schema=False)
    largest = largest_per_source(clusters)
    assert largest["police"] >= 2 and largest["child_welfare"] == 1
    police = pl.read_csv(layout.agency("police") / "results" / f"{job}.csv", infer_schema=False)
    assert (police.get_column("same_person_as").fill_null("") != "").any()
    assert json.loads((job_dir / "thresholds.json").read_text())["threshold"] == DEFAULT_MATCH_THRESHOLD
    entity = dict(truth.select("record_id", "entity_id").cast(pl.String).iter_rows())
    for name in DEMO_AGENCIES:
        results = pl.read_csv(layout.agency(name) / "results" / f"{job}.csv", infer_schema=False)
        own = set(pl.read_csv(layout.agency(name) / "input.csv", infer_schema=False).get_column("rec_id"))
        named = results.select("record_id", pl.col("same_person_as").fill_null("")).filter(pl.col("same_person_as") != "")
        told = [(r, g.split(";")) for r, g in named.iter_rows()]
        assert all(set(g) <= own for _, g in told)  # its own records only
        if policies[name] == "forbid":
            assert told == []
        elif told:
            right = sum(entity[r] == entity[x] for r, group in told for x in group)
            assert right / sum(len(g) for _, g in told) >= 0.8
    # Nothing raw at the coordinator: not in its job files, store or log.
    values = set()
    for name in DEMO_AGENCIES:
        frame = pl.read_csv(layout.agency(name) / "input.csv", infer_schema=False)
        for column in ("surname", "given_name", "date_of_birth", "address"):
            values |= {v.strip() for v in frame.get_column(column).drop_nulls().to_list() if len(v.strip()) >= 5}
    stored = b"\n".join(p.read_bytes() for p in layout.coordinator.rglob("*") if p.is_file())
    # SQLite keeps an audit entry's columns side by side: actor "coordinator" then action "results
    # released" read "...torres..." (a surname), which is the log's own words, not a value.
    own_words = "coordinator/coordinatorresults delivered"
    leaked = [v for v in values if v.encode() in stored and v not in own_words]
    assert len(values) > 200 and leaked == []
