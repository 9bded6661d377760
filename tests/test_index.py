"""Issue 15: the coordinator's intake index and `Query`.

Data: three agencies from linkage.testing._synthetic.generate_agencies (seeded: 400 people, seed 15),
encoded under the default match keys with a fresh secret. Time is injected everywhere: the index's
clock (an aware datetime) and the rate limit's clock (seconds) are plain functions the tests move.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import re
import stat
from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl
import pytest

from linkage.bloom._keys import Secret
from linkage.errors import ConfigError, IndexUnavailableError, QueryLimitError
from linkage.jobs._config import DISCLOSURES, IndexSettings, load_coordinator_config
from linkage.jobs._disclosure import agency_results
from linkage.jobs._index import _PAIRS_SCHEMA, MAX_QUERY_RECORDS, IndexKeeper, intake_index
from linkage.jobs._profiles import Linked, encode_records, link_sources, with_default_match_keys
from linkage.matching._link import LinkSettings
from linkage.records._schema import Schema
from linkage.scoped import ScopedEncodings
from linkage.testing._demo import COLUMNS
from linkage.testing._synthetic import generate_agencies
from linkage.trust._audit import AuditKey, AuditLog

AGENCIES = ("police", "child_welfare", "victim_services")
POLICIES = list(itertools.product(DISCLOSURES, repeat=3))


@dataclasses.dataclass(frozen=True)
class Project:
    sources: dict[str, ScopedEncodings]
    linked: Linked
    schema: Schema
    secret: Secret


@pytest.fixture(scope="module")
def project() -> Project:
    data = generate_agencies(400, rng=np.random.default_rng(15))
    schema = with_default_match_keys(Schema.for_columns(COLUMNS, project="intake-test"))
    secret = Secret.generate()
    sources = {}
    for name in AGENCIES:
        frame = data.frames[name].rename({"rec_id": "record_id"}).select("record_id", *COLUMNS)
        encodings = encode_records(frame, schema, secret).encodings
        assert isinstance(encodings, ScopedEncodings)
        sources[name] = encodings
    return Project(sources, link_sources(sources, LinkSettings()), schema, secret)


def rows_of(encodings: ScopedEncodings, rows: np.ndarray) -> ScopedEncodings:
    """Some of an agency's records, as its node would encode them for a query."""
    return dataclasses.replace(
        encodings,
        record_ids=encodings.record_ids.gather(rows),
        tokens=encodings.tokens[rows],
        has_token=encodings.has_token[rows],
        evidence=tuple(e[rows] for e in encodings.evidence),
    )


def job_disclosed(project: Project, agency: str, disclosure: dict[str, str]) -> pl.DataFrame:
    """What the job's own scoring discloses to ``agency`` for each of its records, pair by pair: the
    job's candidate pairs (scored by the job), banded by its thresholds, through the disclosure rule."""
    linked = project.linked
    # Banded on the scores as the job compared them (float32), not on the 4-place rounding shown: a
    # score just under a threshold rounds up to it (one random secret in about sixty gave such a pair).
    candidates = linked.result.candidate_pairs().with_columns(exact=pl.Series(linked.result.scores.astype(np.float64)))
    mine = pl.col("source_a") == agency
    halves = pl.concat([
        candidates.filter(mine),
        candidates.filter(pl.col("source_b") == agency).select(
            source_a="source_b", id_a="id_b", source_b="source_a", id_b="id_a", score="score", exact="exact"
        ),
    ])  # fmt: skip
    banded = halves.with_columns(
        band=pl.when(pl.col("exact") >= linked.threshold)
        .then(pl.lit("match"))
        .when(pl.col("exact") >= linked.review_threshold)
        .then(pl.lit("possible"))
    ).filter(pl.col("band").is_not_null())
    pairs = banded.select("source_a", "id_a", "source_b", "id_b", similarity="score", band="band")
    return agency_results(pairs, disclosure, bytes(32))[agency].select("record_id", "band", "similarity", "shared_with")


@pytest.fixture(scope="module")
def index(project):
    result = project.linked.result
    return intake_index("job1", project.sources, result.model, result.threshold, result.review_threshold)


@pytest.mark.parametrize("policies", POLICIES, ids=["-".join(p) for p in POLICIES])
def test_a_query_discloses_what_the_job_would_and_nothing_more(project, index, policies):
    disclosure = dict(zip(AGENCIES, policies, strict=True))
    for agency in AGENCIES:
        encodings = project.sources[agency]
        answer = index.answer(agency, encodings, disclosure)
        expected = job_disclosed(project, agency, disclosure)
        assert answer.sort("record_id").equals(expected.sort("record_id")), agency
        # nothing about agencies it may not see: the answer is the same without their records
        visible = [a for a in AGENCIES if a != agency and disclosure[a] == "full"]
        result = project.linked.result
        fewer = intake_index(
            "job1", {a: project.sources[a] for a in [agency, *visible]}, result.model, result.threshold, result.review_threshold
        )
        assert fewer.answer(agency, encodings, disclosure).sort("record_id").equals(answer.sort("record_id"))
        named = set(itertools.chain.from_iterable(answer.get_column("shared_with").to_list()))
        assert named <= (set(visible) if disclosure[agency] != "none" else set())
        assert set(answer.get_column("band")) <= {"match", "possible"}
    # the project's own default has something to say, so the comparison above is not vacuous
    if policies == ("full", "full", "full"):
        assert index.answer("police", project.sources["police"], disclosure).height > 50


def test_a_single_record_query_matches_the_batch(project, index):
    disclosure = dict.fromkeys(AGENCIES, "full")
    batch = index.answer("child_welfare", project.sources["child_welfare"], disclosure)
    for record_id in batch.get_column("record_id").head(20).to_list():
        row = int(np.flatnonzero(project.sources["child_welfare"].record_ids.to_numpy() == record_id)[0])
        one = index.answer("child_welfare", rows_of(project.sources["child_welfare"], np.array([row])), disclosure)
        assert one.equals(batch.filter(pl.col("record_id") == record_id))


# -- the keeper: lifecycle, expiry, refusals, the audit log -----------------------------------------


class Clock:
    def __init__(self) -> None:
        self.moment = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
        self.seconds = 0.0

    def now(self) -> datetime:
        return self.moment

    def monotonic(self) -> float:
        return self.seconds

    def advance(self, delta: timedelta) -> None:
        self.moment += delta
        self.seconds += delta.total_seconds()


def keeper_for(tmp_path, settings: IndexSettings, clock: Clock) -> tuple[IndexKeeper, AuditLog]:
    audit = AuditLog(tmp_path / "audit.db", AuditKey.generate(), now=clock.now)
    keeper = IndexKeeper(tmp_path / "index", settings, audit, "coordinator/c", now=clock.now, clock=clock.monotonic)
    return keeper, audit


def actions(audit: AuditLog) -> list[str]:
    return [e.action for e in audit.entries()]


def built_keeper(tmp_path, project, clock, **settings) -> tuple[IndexKeeper, AuditLog]:
    keeper, audit = keeper_for(tmp_path, IndexSettings(keep=timedelta(days=30), **settings), clock)
    keeper.stage("job1", project.sources, project.linked.result)
    assert keeper.activate("job1")
    return keeper, audit


def test_the_index_is_private_and_holds_no_raw_identifier(tmp_path, project):
    clock = Clock()
    keeper, audit = built_keeper(tmp_path, project, clock)
    files = [p for p in (tmp_path / "index").rglob("*") if p.is_file()]
    assert {p.name for p in files} == {"index.json", *(f"{a}.parquet" for a in AGENCIES)}
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in files)
    assert stat.S_IMODE((tmp_path / "index" / "job1").stat().st_mode) == 0o700
    data = generate_agencies(400, rng=np.random.default_rng(15))
    values = {
        v for f in data.frames.values() for c in ("surname", "given_name", "date_of_birth") for v in f.get_column(c).drop_nulls()
    }
    stored = b"".join(p.read_bytes() for p in files)
    assert [v for v in values if len(v) >= 5 and v.encode() in stored] == []
    meta = json.loads((tmp_path / "index" / "job1" / "index.json").read_text())
    assert meta["expires"] == "2026-12-31T09:00:00+00:00" and meta["state"] == "active"
    assert "index built" in actions(audit)


def test_a_query_through_the_keeper_is_answered_and_logged(tmp_path, project, index):
    clock = Clock()
    keeper, audit = built_keeper(tmp_path, project, clock)
    disclosure = dict.fromkeys(AGENCIES, "full")
    query = rows_of(project.sources["police"], np.arange(10))
    answer = keeper.query("police", query, disclosure, actor="node/police")
    assert answer.rows.equals(index.answer("police", query, disclosure))
    assert answer.job == "job1" and answer.remaining == 600 - 10
    [entry] = [e for e in audit.entries() if e.action == "index queried"]
    assert entry.actor == "node/police" and entry.details["records"] == 10 and entry.details["agency"] == "police"


def test_an_expired_index_is_deleted_and_says_so(tmp_path, project):
    clock = Clock()
    keeper, audit = built_keeper(tmp_path, project, clock)
    query = rows_of(project.sources["police"], np.arange(1))
    clock.advance(timedelta(days=30) - timedelta(seconds=1))
    keeper.query("police", query, dict.fromkeys(AGENCIES, "full"), actor="node/police")  # still kept
    clock.advance(timedelta(seconds=1))
    with pytest.raises(IndexUnavailableError, match=r"index of job job1 expired at 2026-12-31T09:00:00\+00:00 and was deleted"):
        keeper.query("police", query, dict.fromkeys(AGENCIES, "full"), actor="node/police")
    assert list((tmp_path / "index" / "job1").glob("*.parquet")) == []
    logged = actions(audit)
    assert logged.index("index deleted") < logged.index("index query refused")
    deleted = next(e for e in audit.entries() if e.action == "index deleted")
    assert deleted.job == "job1" and "expired" in deleted.details["reason"]


def test_expiry_runs_on_schedule_without_a_query(tmp_path, project):
    clock = Clock()
    keeper, audit = built_keeper(tmp_path, project, clock)
    assert keeper.expire() == []
    clock.advance(timedelta(days=31))
    assert keeper.expire() == ["job1"]
    assert keeper.expire() == []  # deleted once
    assert actions(audit).count("index deleted") == 1


def test_past_the_rate_limit_a_query_is_refused_and_logged(tmp_path, project):
    clock = Clock()
    keeper, audit = built_keeper(tmp_path, project, clock, queries_per_hour=25)
    disclosure = dict.fromkeys(AGENCIES, "full")
    police = project.sources["police"]
    for start in (0, 10):
        keeper.query("police", rows_of(police, np.arange(start, start + 10)), disclosure, actor="node/police")
    with pytest.raises(QueryLimitError, match="police: query limit reached"):
        keeper.query("police", rows_of(police, np.arange(20, 30)), disclosure, actor="node/police")
    # counted per agency: another agency is not held back
    keeper.query(
        "child_welfare", rows_of(project.sources["child_welfare"], np.arange(10)), disclosure, actor="node/child_welfare"
    )
    refused = [e for e in audit.entries() if e.action == "index query refused"]
    assert len(refused) == 1 and refused[0].details["agency"] == "police" and refused[0].actor == "node/police"
    assert "query limit" in refused[0].details["reason"]
    clock.advance(timedelta(hours=1))  # a sliding hour later, the first queries no longer count
    keeper.query("police", rows_of(police, np.arange(20, 30)), disclosure, actor="node/police")


def test_a_restarted_coordinator_still_counts_the_last_hours_queries(tmp_path, project):
    clock = Clock()
    keeper, audit = built_keeper(tmp_path, project, clock, queries_per_hour=25)
    disclosure = dict.fromkeys(AGENCIES, "full")
    police = project.sources["police"]
    keeper.query("police", rows_of(police, np.arange(10)), disclosure, actor="node/police")
    clock.advance(timedelta(minutes=30))
    keeper.query("police", rows_of(police, np.arange(10, 20)), disclosure, actor="node/police")
    # a new keeper on the same folder and log, as after a restart (its monotonic clock starts afresh)
    clock.seconds = 0.0
    restarted = IndexKeeper(
        tmp_path / "index", IndexSettings(keep=timedelta(days=30), queries_per_hour=25), audit, "coordinator/c",
        now=clock.now, clock=clock.monotonic,
    )  # fmt: skip
    assert restarted.limit.used("police") == 20 and restarted.limit.used("child_welfare") == 0
    with pytest.raises(QueryLimitError, match="20 of 25 records asked about"):
        restarted.query("police", rows_of(police, np.arange(20, 30)), disclosure, actor="node/police")
    clock.advance(timedelta(minutes=30))  # the first query is an hour old now: only the second counts
    assert restarted.query("police", rows_of(police, np.arange(20, 30)), disclosure, actor="node/police").remaining == 5


def test_a_project_without_an_index_refuses_queries(tmp_path, project):
    clock = Clock()
    keeper, audit = keeper_for(tmp_path, IndexSettings(), clock)
    keeper.stage("job1", project.sources, project.linked.result)  # the policy keeps none: nothing written
    assert not keeper.activate("job1") and not (tmp_path / "index").exists()
    with pytest.raises(IndexUnavailableError, match=r"keeps no intake index \(\[index\] keep is not set"):
        keeper.query("police", rows_of(project.sources["police"], np.arange(1)), {"police": "full"}, actor="node/police")
    assert actions(audit) == ["index query refused"]


def test_no_job_yet_and_oversized_queries_are_refused(tmp_path, project):
    clock = Clock()
    keeper, _ = keeper_for(tmp_path, IndexSettings(keep=timedelta(days=1)), clock)
    with pytest.raises(IndexUnavailableError, match="no intake index yet"):
        keeper.query("police", rows_of(project.sources["police"], np.arange(1)), {"police": "full"}, actor="node/police")
    big = rows_of(project.sources["police"], np.zeros(MAX_QUERY_RECORDS + 1, dtype=np.int64))
    with pytest.raises(QueryLimitError, match="1 to 1,000 records"):
        keeper.query("police", big, {"police": "full"}, actor="node/police")


def test_a_new_job_replaces_the_index_and_the_old_one_is_deleted(tmp_path, project):
    clock = Clock()
    keeper, audit = built_keeper(tmp_path, project, clock)
    clock.advance(timedelta(days=1))
    keeper.stage("job2", project.sources, project.linked.result)
    assert keeper.activate("job2")
    assert list((tmp_path / "index" / "job1").glob("*.parquet")) == []
    deleted = [e for e in audit.entries() if e.action == "index deleted"]
    assert [e.job for e in deleted] == ["job1"] and "replaced" in deleted[0].details["reason"]
    answer = keeper.query("police", rows_of(project.sources["police"], np.arange(3)), {"police": "full"}, actor="node/police")
    assert answer.job == "job2"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('keep = "30 days"', 'index.keep: a number of days or hours, like "30d"'),
        ('keep = "0h"', "index.keep: between 1h and 366d"),
        ("keep = 30", "index.keep: wrong type int"),
        ("queries_per_hour = 0", "index.queries_per_hour: must be between 1 and 1000000"),
        ("rate = 3", "index.rate: unknown key"),
    ],
)
def test_bad_index_settings_name_the_file_and_key(tmp_path, text, message):
    path = tmp_path / "coordinator.toml"
    path.write_text(
        f"""[coordinator]
name = "c"
[tls]
ca = "ca.pem"
cert = "c.pem"
key = "c.key"
[agencies.police]
address = "127.0.0.1:1"
[index]
{text}
""",
        encoding="utf-8",
    )
    with pytest.raises(ConfigError, match=f"{path}: {message}"):
        load_coordinator_config(path)


def test_index_settings_default_off_and_parse(tmp_path):
    path = tmp_path / "coordinator.toml"
    base = '[coordinator]\nname = "c"\n[tls]\nca = "a"\ncert = "b"\nkey = "c"\n[agencies.police]\naddress = "127.0.0.1:1"\n'
    path.write_text(base, encoding="utf-8")
    assert load_coordinator_config(path).index == IndexSettings()
    assert not IndexSettings().enabled
    path.write_text(base + '[index]\nkeep = "12h"\nqueries_per_hour = 50\n', encoding="utf-8")
    assert load_coordinator_config(path).index == IndexSettings(keep=timedelta(hours=12), queries_per_hour=50)


# -- over the wire: a real coordinator and nodes on loopback with mTLS, and the CLI ------------------


@pytest.fixture(scope="module")
def task_force(tmp_path_factory):
    """The demo task force (300 people, seed 5) with an index kept 30 days and 6 queries an hour."""
    from linkage.jobs._config import load_node_config
    from linkage.testing._demo import prepare_demo, write_coordinator_config
    from services.coordinator import start_coordinator
    from services.node import start_node

    root = tmp_path_factory.mktemp("intake")
    layout, _ = prepare_demo(root, people=300, seed=5)
    servers, ports = [], {}
    for name in AGENCIES:
        config = load_node_config(layout.node_config(name))
        server, port, _ = start_node(config, config.tls.load())
        servers.append(server)
        ports[name] = port
    path = write_coordinator_config(layout, ports)
    path.write_text(path.read_text() + '\n[index]\nkeep = "30d"\nqueries_per_hour = 6\n', encoding="utf-8")
    config = load_coordinator_config(path)
    tls = config.tls.load()
    server, port, _ = start_coordinator(config, tls)
    servers.append(server)
    yield layout, f"127.0.0.1:{port}", tls
    for server in servers:
        server.stop(0).wait()


def test_linkage_query_over_mtls(task_force, capsys):
    from linkage.cli import main
    from linkage.protocol._clients import run_job_remotely
    from linkage.protocol.v1 import linkage_pb2 as pb

    layout, address, tls = task_force
    police = ["query", "--config", str(layout.node_config("police")), "--coordinator", address]
    frame = pl.read_csv(layout.agency("police") / "input.csv", infer_schema=False).filter(
        pl.col("no_consent").fill_null("") != "yes"
    )
    first = frame.row(0, named=True)
    record = ",".join(f"{c}={first[c]}" for c in COLUMNS if first[c])
    # before any job: refused, with the reason
    assert main([*police, "--record", record]) == 1
    assert "FAILED_PRECONDITION: no intake index yet" in capsys.readouterr().err
    events = list(run_job_remotely(address, tls, pb.JobRequest(agencies=list(AGENCIES)), coordinator="coordinator"))
    assert events[-1].state == "done", events[-1].summary
    assert any("intake index of job" in e.message for e in events)
    # a small file of police's own records: each line says what may be disclosed
    small = layout.root / "small.csv"
    frame.head(5).write_csv(small)
    assert main([*police, "--input", str(small)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert [line.split(":")[0] for line in out[:5]] == frame.get_column("rec_id").head(5).to_list()
    assert out[-1].startswith("index of job ") and "1 queries left this hour" in out[-1]
    assert all("victim_services" not in line for line in out)  # receive-only: never named to police
    disclosed = [line for line in out[:5] if "nothing to disclose" not in line]
    assert disclosed, out
    assert all(re.search(r": (match|possible) \(score [01]\.\d{4}\): ", line) for line in disclosed)
    # the results police received from the job agree on which of these records have a partner it may see
    [results] = (layout.agency("police") / "results").glob("*.csv")
    received = set(pl.read_csv(results, infer_schema=False).get_column("record_id"))
    # (a pair at or above the review threshold gives the job a row too; the job may add rows joined through a third record)
    assert {line.split(":")[0] for line in disclosed} <= received
    # one record more is allowed, the next is past the hour's limit: refused and logged
    assert main([*police, "--record", record]) == 0
    capsys.readouterr()
    assert main([*police, "--record", record]) == 1
    err = capsys.readouterr().err
    assert "RESOURCE_EXHAUSTED" in err and "query limit reached" in err
    log = AuditLog(layout.coordinator / "audit.db", None)
    refused = [e for e in log.entries() if e.action == "index query refused"]
    assert refused[-1].actor == "node/police" and "query limit" in refused[-1].details["reason"]
    assert [e.details["records"] for e in log.entries() if e.action == "index queried"] == [5, 1]
    # a raw value never reaches the coordinator's index or log
    stored = b"".join(p.read_bytes() for p in layout.coordinator.rglob("*") if p.is_file())
    assert all(str(first[c]).encode() not in stored for c in ("surname", "given_name") if first[c] and len(first[c]) >= 5)


def _refused_query(layout, address, party: str, packed: bytes):
    """A raw Query from ``party``'s certificate, which the coordinator must refuse: its error."""
    import grpc

    from linkage.protocol._server import secure_channel
    from linkage.protocol.v1 import linkage_pb2 as pb
    from linkage.protocol.v1 import linkage_pb2_grpc as pb_grpc
    from linkage.trust._pki import load_tls

    tls = load_tls(layout.pki / "ca.pem", layout.pki / f"{party}.pem", layout.pki / f"{party}.key")
    with secure_channel(address, tls) as channel, pytest.raises(grpc.RpcError) as refused:
        pb_grpc.IndexStub(channel).Query(pb.QueryRequest(packed=packed), timeout=10)
    return refused.value


def test_only_a_node_of_the_project_may_query(task_force):
    import grpc

    layout, address, _ = task_force
    refused = _refused_query(layout, address, "auditor", b"")
    assert refused.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "only agency nodes may" in refused.details()


def test_a_malformed_query_is_refused_and_logged(task_force):
    import grpc

    layout, address, _ = task_force
    refused = _refused_query(layout, address, "police", b"not encodings")
    assert refused.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "police: not match-key encodings" in refused.details()
    last = AuditLog(layout.coordinator / "audit.db", None).entries()[-1]
    assert last.action == "index query refused" and last.actor == "node/police" and "not match-key" in last.details["reason"]


def test_a_query_with_no_pair_answers_as_the_rule_does_with_none(project, index):
    """A query sharing no token with any partner skips the disclosure rule: the same empty answer."""
    police = project.sources["police"]
    alone = dataclasses.replace(police, has_token=np.zeros_like(police.has_token))
    for policies in POLICIES:
        disclosure = dict(zip(AGENCIES, policies, strict=True))
        assert index.pairs("police", alone).is_empty()
        expected = agency_results(pl.DataFrame(schema=_PAIRS_SCHEMA), disclosure, bytes(32))["police"]
        assert index.answer("police", alone, disclosure).equals(expected.select("record_id", "band", "similarity", "shared_with"))


def test_a_query_says_which_fields_it_could_not_use(tmp_path):
    """An intake worker who types a date that is no date is told so (field and reason, never the
    value), and a record from which no key can be made is said to be unfindable, not 'nothing to disclose'."""
    from linkage.jobs._agency import query_encodings
    from linkage.jobs._config import load_node_config
    from linkage.testing._demo import prepare_demo

    layout, _ = prepare_demo(tmp_path, people=50, seed=3)
    config = load_node_config(layout.node_config("police"))
    records = pl.DataFrame(
        [
            {"record_id": "A-1", "given_name": "Maria", "surname": "Lopez", "date_of_birth": "1990-04-12", "sex": "f"},
            {"record_id": "A-2", "given_name": "Maria", "surname": "Lopez", "date_of_birth": "1990-13-45", "postcode": "97301"},
            {"record_id": "A-3", "given_name": "Zyxwv", "sex": "f"},
        ],
        schema=dict.fromkeys(["record_id", *COLUMNS], pl.String),
    )
    encodings, ids, notes = query_encodings(config, records)
    assert ids == ["A-1", "A-2", "A-3"] and len(encodings) == 3
    assert 1 not in notes
    assert notes[2][0].startswith("date_of_birth not used: ") and "1990-13-45" not in "; ".join(notes[2])
    assert all("cannot be found" not in n for n in notes[2])  # names and postcode still make a key
    assert notes[3] == ["no match key could be made from this record: it cannot be found"]


def test_a_query_no_key_can_be_made_from_is_refused_before_it_is_sent(tmp_path, capsys):
    # It would find nothing and spend one of the hour's queries: refused at the node, in one line.
    from linkage.cli import main
    from linkage.testing._demo import prepare_demo

    layout, _ = prepare_demo(tmp_path, people=50, seed=3)
    config = str(layout.node_config("police"))
    assert (
        main(
            ["query", "--config", config, "--coordinator", "127.0.0.1:1", "--record", "given_name=Zyxwv,date_of_birth=1990-13-45"]
        )
        == 1
    )
    err = capsys.readouterr().err.strip()
    assert err.startswith("linkage: error: no match key could be made from the record (date_of_birth not used: ")
    assert "1990-13-45" not in err and "Zyxwv" not in err and len(err.splitlines()) == 1
