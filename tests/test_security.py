"""Issue 14: the trust boundaries hold against a curious party (a peer, an insider, an impostor).

Real servers on loopback with the project's own PKI; data from linkage.testing._synthetic (seeded).
Each test names the finding of issue 14 it proves.
"""

from __future__ import annotations

import dataclasses
import re
import sqlite3

import polars as pl
from test_network import coordinator_with, run, task_force  # noqa: F401 - the shared fixture

from linkage.jobs._store import JobStore
from linkage.testing._demo import AGENCIES
from services.node import start_node


def input_values(path, columns=("given_name", "surname", "date_of_birth", "address")) -> set[str]:
    """Every identifying value of one agency's input (5 characters or more, so that chance hits are rare)."""
    frame = pl.read_csv(path, infer_schema=False)
    values: set[str] = set()
    for column in columns:
        values |= {v.strip() for v in frame.get_column(column).drop_nulls().to_list() if len(v.strip()) >= 5}
    return values


def all_bytes(folder) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file())


def found_in(values, blob: bytes) -> list[str]:
    """The values that occur in ``blob``; a value of digits only where no digit flanks it: a postcode
    inside a longer number (a timestamp 1796522203 holds 22203) is chance, not a leak."""
    return [
        v
        for v in values
        if (re.search(rb"(?<![0-9])" + re.escape(v.encode()) + rb"(?![0-9])", blob) if v.isdigit() else v.encode() in blob)
    ]


def test_1_a_headerless_input_names_no_value_at_the_coordinator(task_force, tmp_path):  # noqa: F811
    config = task_force.node_configs["police"]
    lines = config.input.read_text(encoding="utf-8").splitlines(keepends=True)
    headerless = tmp_path / "police-headerless.csv"
    headerless.write_text("".join(lines[1:]), encoding="utf-8")
    odd = dataclasses.replace(config, input=headerless, data_dir=tmp_path / "police")
    server, port, _ = start_node(odd, config.tls.load())
    coordinator, coordinator_port, _ = coordinator_with(task_force, tmp_path, {"police": port})
    try:
        last, events = run(f"127.0.0.1:{coordinator_port}", task_force.tls, list(AGENCIES))
    finally:
        server.stop(0).wait()
        coordinator.stop(0).wait()
    assert last.state == "failed" and "no id column 'rec_id' among the header's" in last.summary, last.summary
    values = input_values(config.input)
    first_record = set(lines[1].strip().split(","))
    said = "\n".join([last.summary, *(e.message for e in events)])
    assert [v for v in values | first_record if len(v) >= 3 and v in said] == []
    job = JobStore(tmp_path / "coordinator" / "jobs.db").get(last.job_id)
    assert job is not None and job.state == "failed" and "among the header's" in (job.error or "")
    stored = all_bytes(tmp_path / "coordinator")
    assert found_in([v for v in values | first_record if len(v) >= 5], stored) == []
    with sqlite3.connect(tmp_path / "coordinator" / "audit.db") as db:
        reasons = [r for (r,) in db.execute("SELECT details FROM entries WHERE action = 'job finished'")]
    assert reasons and all(v not in " ".join(reasons) for v in values)


def test_4_the_coordinator_talks_only_to_the_agency_it_dialled(task_force, tmp_path):  # noqa: F811
    """A server with police's certificate on child_welfare's address, claiming to be child_welfare, gets nothing."""
    import pytest
    from test_network import tls_of

    from linkage.errors import ConfigError
    from linkage.protocol._node import NodeService, node_policy
    from linkage.protocol._server import create_server
    from linkage.protocol.v1 import linkage_pb2_grpc as pb_grpc

    claimed = dataclasses.replace(task_force.node_configs["child_welfare"], data_dir=tmp_path / "impostor")
    police_tls = tls_of(task_force.layout, "police")
    with pytest.raises(ConfigError, match="node.agency is 'child_welfare' but the certificate is node/police"):
        start_node(claimed, police_tls)
    service = NodeService(claimed)
    server, port, _ = create_server(
        "127.0.0.1:0", police_tls, node_policy(claimed), lambda s: pb_grpc.add_NodeServicer_to_server(service, s)
    )
    coordinator, coordinator_port, _ = coordinator_with(task_force, tmp_path, {"child_welfare": port})
    try:
        last, _ = run(f"127.0.0.1:{coordinator_port}", task_force.tls, list(AGENCIES))
    finally:
        server.stop(0).wait()
        coordinator.stop(0).wait()
    assert last.state == "failed" and "the server did not present child_welfare's certificate" in last.summary, last.summary
    assert not (tmp_path / "impostor" / "results").exists()


class FloodingNode:
    """Announces a few records, then streams far more than they can take (stops at ``limit`` chunks)."""

    def __new__(cls, config, limit=60):
        from linkage.protocol._node import NodeService
        from linkage.protocol.v1 import linkage_pb2 as pb

        class Flooding(NodeService):
            sent = 0

            def FetchEncodings(self, request, context):
                for _ in range(limit):
                    Flooding.sent += 1
                    yield pb.EncodingChunk(record_ids=["x"], filters=bytes(1024 * 1024), present=b"\0\0")

        return Flooding(config)


def test_6_a_peer_cannot_stream_more_than_it_announced(task_force, tmp_path):  # noqa: F811
    from linkage.protocol._node import node_policy
    from linkage.protocol._server import create_server
    from linkage.protocol.v1 import linkage_pb2_grpc as pb_grpc

    config = task_force.node_configs["police"]
    service = FloodingNode(config)
    server, port, _ = create_server("127.0.0.1:0", config.tls.load(), node_policy(config),
                                    lambda s: pb_grpc.add_NodeServicer_to_server(service, s))  # fmt: skip
    coordinator, coordinator_port, _ = coordinator_with(task_force, tmp_path, {"police": port})
    try:
        last, _ = run(f"127.0.0.1:{coordinator_port}", task_force.tls, list(AGENCIES))
    finally:
        server.stop(0).wait()
        coordinator.stop(0).wait()
    assert last.state == "failed" and "more than the records it announced can take" in last.summary, last.summary


def test_6_requests_are_validated_invalid_argument_never_internal(task_force):  # noqa: F811
    import grpc
    import pytest

    from linkage.protocol._convert import result_chunks
    from linkage.protocol._credentials import channel_credentials
    from linkage.protocol.v1 import linkage_pb2 as pb
    from linkage.protocol.v1 import linkage_pb2_grpc as pb_grpc

    coordinator = grpc.secure_channel(f"127.0.0.1:{task_force.coordinator_port}", channel_credentials(task_force.tls))
    node = grpc.secure_channel(f"127.0.0.1:{task_force.ports['police']}", channel_credentials(task_force.tls))
    long_id = "job-" + "7" * 300
    calls = [
        lambda: list(
            pb_grpc.CoordinatorStub(coordinator).RunJob(pb.JobRequest(agencies=list(AGENCIES), scoring="magic"), timeout=30)
        ),
        lambda: list(
            pb_grpc.CoordinatorStub(coordinator).RunJob(pb.JobRequest(agencies=list(AGENCIES), blocking="x"), timeout=30)
        ),
        lambda: list(
            pb_grpc.CoordinatorStub(coordinator).RunJob(pb.JobRequest(agencies=list(AGENCIES), threshold=7.0), timeout=30)
        ),
        lambda: list(pb_grpc.CoordinatorStub(coordinator).RunJob(pb.JobRequest(agencies=["x" * 300, "police"]), timeout=30)),
        lambda: pb_grpc.CoordinatorStub(coordinator).GetJob(pb.GetJobRequest(job_id=long_id), timeout=30),
        lambda: list(pb_grpc.NodeStub(node).FetchEncodings(pb.FetchEncodingsRequest(job_id=long_id), timeout=30)),
        lambda: pb_grpc.NodeStub(node).Describe(pb.DescribeRequest(job_id="../../etc"), timeout=30),
        lambda: pb_grpc.NodeStub(node).DeliverResults(
            iter(
                result_chunks(
                    long_id,
                    pl.DataFrame(
                        schema={
                            "record_id": pl.String,
                            "band": pl.String,
                            "similarity": pl.Float64,
                            "reference": pl.String,
                            "shared_with": pl.List(pl.String),
                        }
                    ),
                )
            ),
            timeout=30,
        ),  # fmt: skip
    ]
    for call in calls:
        with pytest.raises(grpc.RpcError) as info:
            call()
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT, info.value.details()
        assert len(info.value.details()) < 200
    # more result rows than the agency has records: refused as they arrive
    police_records = pl.read_csv(task_force.node_configs["police"].input, infer_schema=False).height
    rows = pl.DataFrame({"record_id": [f"r{i}" for i in range(police_records + 1)], "band": "match", "similarity": 0.9,
                         "reference": "ref", "shared_with": [[] for _ in range(police_records + 1)]},
                        schema_overrides={"shared_with": pl.List(pl.String)})  # fmt: skip
    with pytest.raises(grpc.RpcError) as info:
        pb_grpc.NodeStub(node).DeliverResults(iter(result_chunks("job-flood", rows)), timeout=30)
    assert (
        info.value.code() == grpc.StatusCode.DATA_LOSS and "more result rows than this agency has records" in info.value.details()
    )
    coordinator.close()
    node.close()


def test_5_refused_calls_are_logged_rate_limited(task_force, capfd):  # noqa: F811
    import grpc
    import pytest
    from test_network import tls_of

    from linkage.protocol._credentials import channel_credentials
    from linkage.protocol.v1 import linkage_pb2 as pb
    from linkage.protocol.v1 import linkage_pb2_grpc as pb_grpc

    log = task_force.layout.agency("victim_services") / "audit.db"
    with sqlite3.connect(log) as db:
        before = db.execute("SELECT count(*) FROM entries WHERE action = 'call refused'").fetchone()[0]
    with grpc.secure_channel(
        f"127.0.0.1:{task_force.ports['victim_services']}", channel_credentials(tls_of(task_force.layout, "auditor"))
    ) as channel:
        for _ in range(40):
            with pytest.raises(grpc.RpcError) as info:
                pb_grpc.NodeStub(channel).Describe(pb.DescribeRequest(job_id="x"), timeout=10)
            assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
    with sqlite3.connect(log) as db:
        rows = [d for (d,) in db.execute("SELECT details FROM entries WHERE action = 'call refused' ORDER BY seq")][before:]
    assert 1 <= len(rows) <= 10  # logged, but a flood does not fill the disk
    assert all(
        '"/linkage.v1.Node/Describe"' in r and "auditor/auditor" in r and "127.0.0.1" in r and "only a coordinator may" in r
        for r in rows
    )
    err = capfd.readouterr().err
    assert "linkage: refused /linkage.v1.Node/Describe from ipv4:127.0.0.1:" in err and err.count("linkage: refused") == len(rows)


def test_5_the_refusal_log_reports_a_burst_then_counts_what_it_left_out():
    from linkage.protocol._auth import Refusal, RefusalLog

    now = [0.0]
    heard: list[Refusal] = []
    limiter = RefusalLog(heard.append, burst=3, window_s=60, clock=lambda: now[0])
    for _ in range(50):
        limiter(Refusal("ipv4:10.0.0.1:1", "-", "/m", "no"))
    limiter(Refusal("ipv4:10.0.0.2:1", "-", "/m", "no"))  # another peer has its own budget
    assert len(heard) == 4 and [h.suppressed for h in heard] == [0, 0, 0, 0]
    now[0] = 61.0
    limiter(Refusal("ipv4:10.0.0.1:1", "-", "/m", "no"))
    assert len(heard) == 5 and heard[-1].suppressed == 47


def test_8_a_certificate_without_a_role_is_told_so(task_force, tmp_path):  # noqa: F811
    import datetime as dt

    import grpc
    import pytest
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    from linkage.protocol.v1 import linkage_pb2 as pb
    from linkage.protocol.v1 import linkage_pb2_grpc as pb_grpc

    pki = task_force.layout.pki
    ca_cert = x509.load_pem_x509_certificate((pki / "ca.pem").read_bytes())
    ca_key = serialization.load_pem_private_key((pki / "ca.key").read_bytes(), None)
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "someone")]))
            .issuer_name(ca_cert.subject).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(hours=1)).not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
            .sign(ca_key, hashes.SHA256()))  # fmt: skip
    credentials = grpc.ssl_channel_credentials(
        root_certificates=(pki / "ca.pem").read_bytes(), certificate_chain=cert.public_bytes(serialization.Encoding.PEM),
        private_key=key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()),
    )  # fmt: skip
    with (
        grpc.secure_channel(f"127.0.0.1:{task_force.ports['police']}", credentials) as channel,
        pytest.raises(grpc.RpcError) as info,
    ):
        pb_grpc.NodeStub(channel).Describe(pb.DescribeRequest(), timeout=10)
    assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "carries no linkage role" in info.value.details() and "required" not in info.value.details()


def test_8_party_files_are_private_and_the_audit_key_lives_apart(task_force, run_cli, tmp_path):  # noqa: F811
    import stat

    last, _ = run(f"127.0.0.1:{task_force.coordinator_port}", task_force.tls, list(AGENCIES))
    assert last.state == "done", last.summary
    coordinator = task_force.layout.coordinator
    job_dir = coordinator / "jobs" / last.job_id

    def mode(path):
        return stat.S_IMODE(path.stat().st_mode)

    for path in (
        coordinator / "jobs.db",
        coordinator / "audit.db",
        job_dir / "pairs.csv",
        job_dir / "references.csv",
        job_dir / "clusters.csv",
    ):
        assert mode(path) == 0o600, path
    for folder in (coordinator, coordinator / "jobs", job_dir, coordinator / "keys"):
        assert mode(folder) == 0o700, folder
    police = task_force.layout.agency("police")
    assert mode(police / "audit.db") == 0o600 and mode(police) == 0o700 and mode(police / "results") == 0o700
    for party in (coordinator, police):
        assert not (party / "audit.key").exists() and (party / "keys" / "audit.key").exists()
    # verify trusts only the key it is given, and names it
    assert run_cli("audit", "verify", "--log", coordinator / "audit.db").code == 2
    trusted = tmp_path / "coordinator-audit.pub"
    trusted.write_bytes((coordinator / "audit.pub").read_bytes())
    verified = run_cli("audit", "verify", "--log", coordinator / "audit.db", "--key", trusted)
    assert verified.code == 0 and f"checked against the key you gave, {trusted} (fingerprint " in verified.out


def test_8_audit_list_into_a_closed_pipe_ends_quietly(task_force, monkeypatch, capsys):  # noqa: F811
    import sys

    from linkage import cli

    class ClosedPipe:
        def write(self, text):
            raise BrokenPipeError(32, "Broken pipe")

        def flush(self):
            raise BrokenPipeError(32, "Broken pipe")

    monkeypatch.setattr(sys, "stdout", ClosedPipe())
    code = cli.main(["audit", "list", "--log", str(task_force.layout.coordinator / "audit.db")])
    monkeypatch.undo()
    assert code == 0 and "Traceback" not in capsys.readouterr().err
