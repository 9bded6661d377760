"""Issue 14: the trust boundaries hold against a curious party (a peer, an insider, an impostor).

Real servers on loopback with the project's own PKI; data from linkage.testing._synthetic (seeded).
Each test names the finding of issue 14 it proves.
"""

from __future__ import annotations

import dataclasses
import sqlite3

import polars as pl
from test_network import coordinator_with, run, task_force  # noqa: F401 - the shared fixture

from linkage.jobs._store import JobStore
from linkage.testing._demo import AGENCIES
from linkage.trust._pki import load_tls
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


def test_1_a_headerless_input_names_no_value_at_the_coordinator(task_force, tmp_path):  # noqa: F811
    config = task_force.node_configs["police"]
    lines = config.input.read_text(encoding="utf-8").splitlines(keepends=True)
    headerless = tmp_path / "police-headerless.csv"
    headerless.write_text("".join(lines[1:]), encoding="utf-8")
    odd = dataclasses.replace(config, input=headerless, data_dir=tmp_path / "police")
    server, port, _ = start_node(odd, load_tls(config.tls.ca, config.tls.cert, config.tls.key))
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
    assert [v for v in values | first_record if len(v) >= 5 and v.encode() in stored] == []
    with sqlite3.connect(tmp_path / "coordinator" / "audit.db") as db:
        reasons = [r for (r,) in db.execute("SELECT details FROM entries WHERE action = 'job finished'")]
    assert reasons and all(v not in " ".join(reasons) for v in values)


def test_4_the_coordinator_talks_only_to_the_agency_it_dialled(task_force, tmp_path):  # noqa: F811
    """A server with police's certificate on child_welfare's address, claiming to be child_welfare, gets nothing."""
    import pytest

    from linkage.errors import ConfigError
    from linkage.protocol._node import NodeService, node_policy
    from linkage.protocol._server import create_server
    from linkage.protocol.v1 import linkage_pb2_grpc as pb_grpc
    from test_network import tls_of

    claimed = dataclasses.replace(task_force.node_configs["child_welfare"], data_dir=tmp_path / "impostor")
    police_tls = tls_of(task_force.layout, "police")
    with pytest.raises(ConfigError, match="node.agency is 'child_welfare' but the certificate is node/police"):
        start_node(claimed, police_tls)
    service = NodeService(claimed)
    server, port, _ = create_server("127.0.0.1:0", police_tls, node_policy(claimed), lambda s: pb_grpc.add_NodeServicer_to_server(service, s))
    coordinator, coordinator_port, _ = coordinator_with(task_force, tmp_path, {"child_welfare": port})
    try:
        last, _ = run(f"127.0.0.1:{coordinator_port}", task_force.tls, list(AGENCIES))
    finally:
        server.stop(0).wait()
        coordinator.stop(0).wait()
    assert last.state == "failed" and "the server did not present child_welfare's certificate" in last.summary, last.summary
    assert not (tmp_path / "impostor" / "results").exists()
