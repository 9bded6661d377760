"""Real gRPC servers on loopback with mTLS: the task force end to end, and every refusal.

Data: three agencies from linkage.testing._synthetic (seeded), certificates from linkage's own PKI.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import signal
import socket
import subprocess
import sys

import grpc
import polars as pl
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from linkage.errors import JobError
from linkage.jobs._config import load_coordinator_config, load_node_config
from linkage.jobs._store import JobStore
from linkage.protocol._clients import run_job_remotely
from linkage.protocol._convert import encodings_from_chunks, result_chunks
from linkage.protocol._credentials import channel_credentials
from linkage.protocol._node import NodeService, node_policy
from linkage.protocol._server import create_server
from linkage.protocol.v1 import linkage_pb2 as pb
from linkage.protocol.v1 import linkage_pb2_grpc as pb_grpc
from linkage.records._schema import Schema
from linkage.scoped._link import DEFAULT_MATCH_THRESHOLD
from linkage.testing._demo import AGENCIES, prepare_demo, write_coordinator_config
from linkage.trust._pki import init_ca, issue, load_tls
from services.coordinator import start_coordinator
from services.node import start_node


@pytest.fixture(scope="module")
def task_force(tmp_path_factory):
    """Demo layout, three running nodes, a running coordinator; yields handy facts."""
    root = tmp_path_factory.mktemp("task-force")
    layout, truth = prepare_demo(root, people=300, seed=5)
    issue(layout.pki, role="coordinator", name="rogue")  # a coordinator no node answers
    servers, ports, configs = [], {}, {}
    for name in AGENCIES:
        config = load_node_config(layout.node_config(name))
        server, port, _ = start_node(config, config.tls.load())
        servers.append(server)
        ports[name], configs[name] = port, config
    coordinator_config = load_coordinator_config(write_coordinator_config(layout, ports))
    tls = coordinator_config.tls.load()
    server, port, _ = start_coordinator(coordinator_config, tls)
    servers.append(server)
    facts = dataclasses.make_dataclass(
        "TaskForce", ["layout", "truth", "ports", "coordinator_port", "tls", "config", "node_configs"]
    )
    yield facts(layout, truth, ports, port, tls, coordinator_config, configs)
    for server in servers:
        server.stop(0).wait()


def tls_of(layout, name):
    return load_tls(layout.pki / "ca.pem", layout.pki / f"{name}.pem", layout.pki / f"{name}.key")


def run(address, tls, agencies, **options):
    events = list(run_job_remotely(address, tls, pb.JobRequest(agencies=agencies, **options), coordinator="coordinator"))
    return events[-1], events


def raw_identifiers(layout) -> set[str]:
    """Surnames, given names and birth dates (every spelling in the inputs) of all agencies."""
    values = set()
    for name in AGENCIES:
        frame = pl.read_csv(layout.agency(name) / "input.csv", infer_schema=False)
        for column in ("surname", "given_name", "date_of_birth"):
            values |= {v.strip() for v in frame.get_column(column).drop_nulls().to_list() if len(v.strip()) >= 5}
    return values


def test_a_job_delivers_each_agency_only_its_own_results(task_force):
    last, events = run(f"127.0.0.1:{task_force.coordinator_port}", task_force.tls, list(AGENCIES))
    assert last.state == "done", last.summary
    assert any("received" in e.message for e in events) and "matching pairs" in last.summary
    for name in AGENCIES:
        [results_file] = (task_force.layout.agency(name) / "results").glob(f"{last.job_id}.csv")
        results = pl.read_csv(results_file, infer_schema=False)
        own = set(pl.read_csv(task_force.layout.agency(name) / "input.csv", infer_schema=False).get_column("rec_id"))
        assert results.height > 0 and set(results.get_column("record_id")) <= own
        shared = set(";".join(results.get_column("shared_with").fill_null("").to_list()).split(";")) - {""}
        assert "victim_services" not in shared  # receive-only: never named to others
        assert name not in shared
    status = pb_grpc.CoordinatorStub(
        grpc.secure_channel(f"127.0.0.1:{task_force.coordinator_port}", channel_credentials(task_force.tls))
    )
    assert status.GetJob(pb.GetJobRequest(job_id=last.job_id), timeout=10).state == "done"


def test_no_raw_identifier_reaches_the_coordinator(task_force):
    last, _ = run(f"127.0.0.1:{task_force.coordinator_port}", task_force.tls, list(AGENCIES))
    assert last.state == "done"
    values = raw_identifiers(task_force.layout)
    assert len(values) > 200
    stored = b"".join(p.read_bytes() for p in task_force.layout.coordinator.rglob("*") if p.is_file())
    assert [v for v in values if v.encode() in stored] == []
    # and what it receives: the raw bytes of every encodings stream
    with grpc.secure_channel(f"127.0.0.1:{task_force.ports['police']}", channel_credentials(task_force.tls)) as channel:
        fetch = channel.unary_stream(
            "/linkage.v1.Node/FetchEncodings", request_serializer=pb.FetchEncodingsRequest.SerializeToString
        )
        received = b"".join(fetch(pb.FetchEncodingsRequest(job_id="probe"), timeout=30))
    police = pl.read_csv(task_force.layout.agency("police") / "input.csv", infer_schema=False)
    ids = "\n".join(police.get_column("rec_id").to_list())
    assert [v for v in values if v.encode() in received and v not in ids] == []


def test_excluded_records_are_never_sent(task_force):
    config = task_force.node_configs["police"]
    frame = pl.read_csv(config.input, infer_schema=False)
    excluded = set(frame.filter(pl.col("no_consent") == "yes").get_column("rec_id"))
    assert excluded
    with grpc.secure_channel(f"127.0.0.1:{task_force.ports['police']}", channel_credentials(task_force.tls)) as channel:
        chunks = list(pb_grpc.NodeStub(channel).FetchEncodings(pb.FetchEncodingsRequest(job_id="probe"), timeout=30))
    encodings, _ = encodings_from_chunks(chunks, peer="police")
    sent = set(encodings.record_ids.to_list())
    assert sent and not (sent & excluded) and len(sent) == frame.height - len(excluded)


def health(address, credentials=None):
    channel = grpc.secure_channel(address, credentials) if credentials else grpc.insecure_channel(address)
    with channel:
        return health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5).status


def test_refusals_with_exact_status_codes(task_force, tmp_path):
    layout = task_force.layout
    node_address = f"127.0.0.1:{task_force.ports['police']}"
    coordinator_address = f"127.0.0.1:{task_force.coordinator_port}"
    assert health(coordinator_address, channel_credentials(tls_of(layout, "police"))) == health_pb2.HealthCheckResponse.SERVING
    # plaintext, TLS without a client certificate, a certificate from another CA
    init_ca(tmp_path / "other")
    issue(tmp_path / "other", role="node", name="police")
    foreign = load_tls(tmp_path / "other" / "ca.pem", tmp_path / "other" / "police.pem", tmp_path / "other" / "police.key")
    ca = (layout.pki / "ca.pem").read_bytes()
    for credentials in (None, grpc.ssl_channel_credentials(root_certificates=ca), grpc.ssl_channel_credentials(
        root_certificates=ca, private_key=foreign.key_pem, certificate_chain=foreign.cert_pem)):  # fmt: skip
        with pytest.raises(grpc.RpcError) as info:
            health(coordinator_address, credentials)
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    # a node cannot start jobs
    with pytest.raises(JobError, match="PERMISSION_DENIED"):
        run(coordinator_address, tls_of(layout, "police"), list(AGENCIES))
    # an auditor cannot fetch encodings; a coordinator the node does not answer neither
    for who in ("auditor", "rogue", "child_welfare"):
        with grpc.secure_channel(node_address, channel_credentials(tls_of(layout, who))) as channel:
            with pytest.raises(grpc.RpcError) as info:
                list(pb_grpc.NodeStub(channel).FetchEncodings(pb.FetchEncodingsRequest(job_id="x"), timeout=10))
            assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
            with pytest.raises(grpc.RpcError) as info:
                pb_grpc.NodeStub(channel).DeliverResults(iter(result_chunks("job-x", pl.DataFrame(schema={
                    "record_id": pl.String, "band": pl.String, "similarity": pl.Float64, "reference": pl.String,
                    "shared_with": pl.List(pl.String)}))), timeout=10)  # fmt: skip
            assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED


def test_malformed_and_oversize_messages(task_force):
    address = f"127.0.0.1:{task_force.ports['police']}"
    with grpc.secure_channel(address, channel_credentials(task_force.tls)) as channel:
        stub = pb_grpc.NodeStub(channel)
        bad_band = [pb.ResultChunk(job_id="job-1", rows=[pb.ResultRow(record_id="PD-1", band="certain")]),
                    pb.ResultChunk(job_id="job-1", last=True, total_rows=1, digest="0")]  # fmt: skip
        unfinished = [pb.ResultChunk(job_id="job-1", rows=[pb.ResultRow(record_id="PD-1", band="match")])]
        wrong_digest = [pb.ResultChunk(job_id="job-1", rows=[pb.ResultRow(record_id="PD-1", band="match")]),
                        pb.ResultChunk(job_id="job-1", last=True, total_rows=1, digest="f" * 64)]  # fmt: skip
        for chunks in (bad_band, unfinished, wrong_digest):
            with pytest.raises(grpc.RpcError) as info:
                stub.DeliverResults(iter(chunks), timeout=10)
            assert info.value.code() == grpc.StatusCode.DATA_LOSS
        huge = [pb.ResultChunk(job_id="job-1", rows=[pb.ResultRow(record_id="x" * (40 * 1024 * 1024), band="match")])]
        with pytest.raises(grpc.RpcError) as info:
            stub.DeliverResults(iter(huge), timeout=30)
        assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        garbage = channel.unary_unary("/linkage.v1.Node/Describe", request_serializer=lambda b: b)
        with pytest.raises(grpc.RpcError) as info:
            garbage(b"\xff\xff\xff\xff", timeout=10)
        assert info.value.code() in (grpc.StatusCode.INTERNAL, grpc.StatusCode.INVALID_ARGUMENT)
    assert not list((task_force.layout.agency("police") / "results").glob("job-1*"))  # nothing half-written


def test_results_naming_records_the_agency_did_not_send_are_refused(task_force):
    # A coordinator (faulty or hostile) cannot plant rows for records police never sent, point
    # same_person_as at strangers, or give one record two rows: the delivery is refused whole.
    config = task_force.node_configs["police"]
    own = pl.read_csv(config.input, infer_schema=False).filter(pl.col("no_consent").fill_null("") != "yes")
    first, second = own.get_column("rec_id").head(2).to_list()

    def rows(ids: list[str], same: list[list[str]]) -> pl.DataFrame:
        return pl.DataFrame({
            "record_id": ids, "band": ["match"] * len(ids), "similarity": [0.9] * len(ids), "reference": ["r"] * len(ids),
            "shared_with": [["child_welfare"]] * len(ids), "same_person_as": same, "agreement": [None] * len(ids),
        }, schema_overrides={"agreement": pl.String})  # fmt: skip

    address = f"127.0.0.1:{task_force.ports['police']}"
    with grpc.secure_channel(address, channel_credentials(task_force.tls)) as channel:
        stub = pb_grpc.NodeStub(channel)
        for bad, says in (
            (rows([first, "CW0000001"], [[], []]), "did not send (1 rows, 0 same_person_as ids)"),
            (rows([first], [["VS-0000001", second]]), "did not send (0 rows, 1 same_person_as ids)"),
            (rows([first, first], [[], []]), "1 records more than one row"),
        ):
            with pytest.raises(grpc.RpcError) as info:
                stub.DeliverResults(result_chunks("job-planted", bad), timeout=10)
            assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT and says in info.value.details()
        # control: the same rows naming police's own records are taken
        assert stub.DeliverResults(result_chunks("job-planted", rows([first, second], [[second], [first]])), timeout=10).rows == 2
    pending = list((task_force.layout.agency("police") / "pending").glob("job-planted*"))
    assert len(pending) == 1 and pl.read_csv(pending[0]).height == 2


class TamperingNode(NodeService):
    """Flips one byte of every stream, or only of the first ``times`` streams."""

    def __init__(self, *args, times=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.calls, self.times = 0, times

    def FetchEncodings(self, request, context):
        self.calls += 1
        for chunk in super().FetchEncodings(request, context):
            if not chunk.last and (self.times is None or self.calls <= self.times):
                if chunk.filters:
                    chunk.filters = bytes([chunk.filters[0] ^ 1]) + chunk.filters[1:]
                if chunk.packed:  # match-key encodings travel packed: flip one in the middle
                    middle = len(chunk.packed) // 2
                    chunk.packed = chunk.packed[:middle] + bytes([chunk.packed[middle] ^ 1]) + chunk.packed[middle + 1 :]
            yield chunk


def coordinator_with(task_force, tmp_path, replace: dict[str, int]):
    ports = {**task_force.ports, **replace}
    layout = dataclasses.replace(task_force.layout)
    config = load_coordinator_config(write_coordinator_config(layout, ports))
    config = dataclasses.replace(config, data_dir=tmp_path / "coordinator", retry_backoff_s=0.01)  # retries back off; fast here
    return start_coordinator(config, task_force.tls)


@pytest.mark.parametrize(("times", "state"), [(1, "done"), (None, "failed")])
def test_an_altered_transfer_is_detected_and_retried(task_force, tmp_path, times, state):
    config = task_force.node_configs["child_welfare"]
    service = TamperingNode(config, times=times)
    server, port, _ = create_server("127.0.0.1:0", config.tls.load(), node_policy(config),
                                    lambda s: pb_grpc.add_NodeServicer_to_server(service, s))  # fmt: skip
    coordinator, coordinator_port, _ = coordinator_with(task_force, tmp_path, {"child_welfare": port})
    try:
        last, events = run(f"127.0.0.1:{coordinator_port}", task_force.tls, list(AGENCIES))
        assert last.state == state
        assert any("child_welfare: transfer attempt 1 failed" in e.message and "digest" in e.message for e in events)
        if state == "failed":
            assert "child_welfare: transfer failed after 3 attempts" in last.summary
    finally:
        server.stop(0).wait()
        coordinator.stop(0).wait()


def test_a_node_that_is_down_fails_the_job_naming_it(task_force, tmp_path):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        dead = probe.getsockname()[1]
    coordinator, port, _ = coordinator_with(task_force, tmp_path, {"police": dead})
    try:
        last, _ = run(f"127.0.0.1:{port}", task_force.tls, list(AGENCIES))
        assert last.state == "failed" and last.summary.startswith("police: transfer failed") and "UNAVAILABLE" in last.summary
    finally:
        coordinator.stop(0).wait()


def test_a_schema_mismatch_stops_the_job_naming_the_agency(task_force, tmp_path):
    config = task_force.node_configs["victim_services"]
    other_schema = tmp_path / "schema.toml"
    other_schema.write_text(config.schema.read_text().replace("bits = 1024", "bits = 512"))
    odd = dataclasses.replace(config, schema=other_schema, data_dir=tmp_path / "vs")
    server, port, _ = start_node(odd, config.tls.load())
    coordinator, coordinator_port, _ = coordinator_with(task_force, tmp_path, {"victim_services": port})
    try:
        last, _ = run(f"127.0.0.1:{coordinator_port}", task_force.tls, list(AGENCIES))
        assert last.state == "failed" and last.summary.startswith("victim_services: ") and "differs" in last.summary
    finally:
        server.stop(0).wait()
        coordinator.stop(0).wait()


def test_a_restarted_coordinator_marks_an_interrupted_job_failed(task_force, tmp_path):
    store = JobStore(tmp_path / "coordinator" / "jobs.db")
    job = store.create(["police", "child_welfare"], {})
    store.set_state(job, "delivering")
    store.delivered(job, "police", 10, "d" * 64)
    coordinator, port, _ = coordinator_with(task_force, tmp_path, {})
    try:
        with grpc.secure_channel(f"127.0.0.1:{port}", channel_credentials(task_force.tls)) as channel:
            status = pb_grpc.CoordinatorStub(channel).GetJob(pb.GetJobRequest(job_id=job), timeout=10)
        assert status.state == "failed"
        assert (
            status.error
            == f"coordinator stopped while the job was delivering; results had reached police; resume it with `linkage job deliver --job {job}`"
        )
    finally:
        coordinator.stop(0).wait()


def test_coordinator_serve_in_a_subprocess(task_force):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen(
        [sys.executable, "-m", "linkage.cli", "coordinator", "serve", "--config", str(task_force.layout.coordinator_config),
         "--listen", f"127.0.0.1:{port}"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    try:
        line = process.stdout.readline()
        assert re.search(rf"coordinator coordinator serving on port {port}", line), line + process.stderr.read()
        credentials = channel_credentials(tls_of(task_force.layout, "victim_services"))
        assert health(f"127.0.0.1:{port}", credentials) == health_pb2.HealthCheckResponse.SERVING
        with pytest.raises(grpc.RpcError):
            health(f"127.0.0.1:{port}")
    finally:
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=30)
    assert process.returncode == 0, err
    assert "stopped" in out and "Traceback" not in err


def test_every_step_of_a_job_is_in_the_audit_logs(task_force, run_cli):
    from linkage.trust._audit import load_public_key, verify

    last, _ = run(f"127.0.0.1:{task_force.coordinator_port}", task_force.tls, list(AGENCIES))
    assert last.state == "done"
    log = task_force.layout.coordinator / "audit.db"
    report = verify(log, load_public_key(task_force.layout.coordinator / "audit.pub"))
    assert report.ok, report.reason
    listed = run_cli("audit", "list", "--log", log, "--job", last.job_id)
    assert listed.code == 0, listed.err
    actions = [line.split("  ")[2].strip() for line in listed.out.splitlines()[2:]]
    assert "job started" in listed.out and listed.out.count("encodings received") == 3
    assert listed.out.count("results delivered") == 3 and "encodings deleted" in listed.out and "job finished" in listed.out
    assert actions  # a table row per entry
    exported = run_cli("audit", "export", "--log", log, "--job", last.job_id, "--action", "job linked")
    linked = [json.loads(line)["details"] for line in exported.out.splitlines() if line.strip()]
    # The scoring and thresholds linking used, not the defaults the request left open.
    assert len(linked) == 1 and linked[0]["profile"] == "match-keys" and linked[0]["scoring"] == "fs", linked
    assert linked[0]["threshold"] == DEFAULT_MATCH_THRESHOLD and set(linked[0]["pairs_per_key"]) == {
        k.name for k in Schema.load(task_force.node_configs["police"].schema).match_keys
    }
    node_log = task_force.layout.agency("police") / "audit.db"
    assert verify(node_log, load_public_key(task_force.layout.agency("police") / "audit.pub")).ok
    node_listed = run_cli("audit", "list", "--log", node_log, "--job", last.job_id)
    assert "encodings sent" in node_listed.out and "results received" in node_listed.out


def test_auditors_read_the_log_over_grpc_and_each_read_is_logged(task_force):
    address = f"127.0.0.1:{task_force.coordinator_port}"
    with grpc.secure_channel(address, channel_credentials(tls_of(task_force.layout, "auditor"))) as channel:
        stub = pb_grpc.AuditStub(channel)
        entries = list(stub.ListEntries(pb.AuditQuery(action="job started"), timeout=10))
        verified = stub.Verify(pb.AuditVerifyRequest(), timeout=10)
    assert entries and all('"job started"' in e.json for e in entries)
    assert verified.ok and verified.public_key_pem == (task_force.layout.coordinator / "audit.pub").read_text()
    with grpc.secure_channel(address, channel_credentials(tls_of(task_force.layout, "auditor"))) as channel:
        reads = list(pb_grpc.AuditStub(channel).ListEntries(pb.AuditQuery(action="audit log read"), timeout=10))
    assert any('"actor":"auditor/auditor"' in r.json.replace(" ", "") for r in reads)
    for who in ("police", "coordinator"):
        with grpc.secure_channel(address, channel_credentials(tls_of(task_force.layout, who))) as channel:
            with pytest.raises(grpc.RpcError) as info:
                list(pb_grpc.AuditStub(channel).ListEntries(pb.AuditQuery(), timeout=10))
            assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED


def test_audit_verify_names_the_edited_entry(task_force, tmp_path, run_cli):
    import shutil
    import sqlite3

    log = tmp_path / "audit.db"
    shutil.copy(task_force.layout.coordinator / "audit.db", log)
    shutil.copy(task_force.layout.coordinator / "audit.pub", tmp_path / "audit.pub")
    assert run_cli("audit", "verify", "--log", log, "--key", tmp_path / "audit.pub").code == 0
    with sqlite3.connect(log) as db:
        db.execute("DROP TRIGGER entries_append_only_update")
        db.execute("UPDATE entries SET actor = 'coordinator/someone-else' WHERE seq = 2")
    result = run_cli("audit", "verify", "--log", log, "--key", tmp_path / "audit.pub")
    assert result.code == 1 and "entry 2: contents do not match its hash (edited)" in result.err


class DyingNode(NodeService):
    """Breaks off the stream after its first chunk, on the first ``times`` calls (None: always)."""

    def __init__(self, *args, times=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.calls, self.times = 0, times

    def FetchEncodings(self, request, context):
        self.calls += 1
        for n, chunk in enumerate(super().FetchEncodings(request, context)):
            if n == 1 and (self.times is None or self.calls <= self.times):
                context.abort(grpc.StatusCode.UNAVAILABLE, "node went away")
            yield chunk


@pytest.mark.parametrize(("times", "state"), [(1, "done"), (None, "failed")])
def test_a_node_dying_mid_stream_is_retried_then_fails_the_job(task_force, tmp_path, times, state):
    config = dataclasses.replace(task_force.node_configs["police"], chunk_records=64)
    service = DyingNode(config, times=times)
    server, port, _ = create_server("127.0.0.1:0", config.tls.load(), node_policy(config),
                                    lambda s: pb_grpc.add_NodeServicer_to_server(service, s))  # fmt: skip
    coordinator, coordinator_port, _ = coordinator_with(task_force, tmp_path, {"police": port})
    try:
        last, events = run(f"127.0.0.1:{coordinator_port}", task_force.tls, list(AGENCIES))
        assert last.state == state, last.summary
        assert any("police: transfer attempt 1 failed" in e.message and "node went away" in e.message for e in events)
        if state == "failed":
            assert last.summary.startswith("police: transfer failed after 3 attempts")
            assert not list((task_force.layout.agency("child_welfare") / "results").glob(f"{last.job_id}*"))
    finally:
        server.stop(0).wait()
        coordinator.stop(0).wait()
