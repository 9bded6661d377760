"""Issue 14, done when: a three-agency job survives a node killed during fetch and during delivery and
the coordinator killed during linking — afterwards every job is finished with every agency holding
its results, or resumable to that state with one command (`linkage job deliver`); no agency holds
results of an unfinished job. And a plaintext sweep: after the demo and after each fault, no value of
any agency's input appears in the coordinator's files, in its output, or in any message that
crossed the wire (recorded by a server interceptor on every party).

Parties are in-process servers on loopback, stopped at a controlled point by a hook (never a sleep).
Data: linkage.testing._synthetic via prepare_demo (seeded).
"""

from __future__ import annotations

import dataclasses
import os
import threading
import time

import grpc
import polars as pl
import pytest

from linkage.errors import JobError
from linkage.jobs._config import load_coordinator_config, load_node_config
from linkage.jobs._store import JobStore
from linkage.protocol._clients import run_job_remotely
from linkage.protocol._node import NodeService
from linkage.protocol.v1 import linkage_pb2 as pb
from linkage.testing._demo import AGENCIES, prepare_demo, write_coordinator_config
from linkage.trust._audit import AuditLog
from services.coordinator import start_coordinator
from services.node import start_node

IDENTIFYING = ("given_name", "middle_name", "surname", "date_of_birth", "address", "city")


class WireRecorder(grpc.ServerInterceptor):
    """Every message to and from this server, as serialised bytes: what crossed the wire, in the clear."""

    def __init__(self) -> None:
        self.messages: list[bytes] = []
        self._lock = threading.Lock()

    def keep(self, message) -> None:
        if message is not None:
            with self._lock:
                self.messages.append(message.SerializeToString())

    def _each(self, iterator):
        for message in iterator:
            self.keep(message)
            yield message

    def intercept_service(self, continuation, details):
        handler = continuation(details)
        if handler is None:
            return None
        keep, each = self.keep, self._each

        def unary_response(behaviour, requests_streamed):
            def call(request, context):
                if not requests_streamed:
                    keep(request)
                answer = behaviour(each(request) if requests_streamed else request, context)
                keep(answer)
                return answer

            return call

        def stream_response(behaviour, requests_streamed):
            def call(request, context):
                if not requests_streamed:
                    keep(request)
                yield from each(behaviour(each(request) if requests_streamed else request, context))

            return call

        args = (handler.request_deserializer, handler.response_serializer)
        if handler.unary_unary:
            return grpc.unary_unary_rpc_method_handler(unary_response(handler.unary_unary, False), *args)
        if handler.unary_stream:
            return grpc.unary_stream_rpc_method_handler(stream_response(handler.unary_stream, False), *args)
        if handler.stream_unary:
            return grpc.stream_unary_rpc_method_handler(unary_response(handler.stream_unary, True), *args)
        return grpc.stream_stream_rpc_method_handler(stream_response(handler.stream_stream, True), *args)


class KillableNode(NodeService):
    """A node that dies (its server stops, the call breaks) during a fetch or during a delivery."""

    kill_on: str | None = None
    kill = staticmethod(lambda: None)
    killed = threading.Event

    def FetchEncodings(self, request, context):
        for n, chunk in enumerate(super().FetchEncodings(request, context)):
            if self.kill_on == "fetch" and n == 1:
                self.kill()
                context.abort(grpc.StatusCode.UNAVAILABLE, "node killed during fetch")
            yield chunk

    def DeliverResults(self, request_iterator, context):
        if self.kill_on == "deliver":
            for _ in request_iterator:  # the whole stream arrives; the node dies before it can keep it
                pass
            self.kill()
            context.abort(grpc.StatusCode.UNAVAILABLE, "node killed during delivery")
        return super().DeliverResults(request_iterator, context)


class TaskForce:
    def __init__(self, root) -> None:
        self.layout, _ = prepare_demo(root, people=240, seed=11)
        self.recorder = WireRecorder()
        self.nodes: dict[str, tuple] = {}
        self.ports: dict[str, int] = {}
        for name in AGENCIES:
            self.start_node(name)
        self.config = dataclasses.replace(
            load_coordinator_config(write_coordinator_config(self.layout, self.ports)), retry_backoff_s=0.01
        )  # retries back off, quickly here
        self.tls = self.config.tls.load()
        self.start_coordinator()

    def start_node(self, name: str, *, kill_on: str | None = None) -> None:
        config = load_node_config(self.layout.node_config(name))
        config = dataclasses.replace(config, chunk_records=32, listen=f"127.0.0.1:{self.ports.get(name, 0)}")
        service = KillableNode(config)
        started = start_node(config, config.tls.load(), service=service,
                             interceptors=[self.recorder])  # fmt: skip
        service.kill_on = kill_on
        service.kill = lambda: started[0].stop(0)
        self.nodes[name] = started
        self.ports[name] = started[1]

    def stop_node(self, name: str) -> None:
        self.nodes[name][0].stop(0).wait()

    def start_coordinator(self, hook=None) -> None:
        self.coordinator = start_coordinator(self.config, self.tls, hook=hook, interceptors=[self.recorder])

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.coordinator[1]}"

    def run(self) -> pb.JobEvent:
        return list(run_job_remotely(self.address, self.tls, pb.JobRequest(agencies=list(AGENCIES)), coordinator="coordinator"))[
            -1
        ]

    def holders(self, job_id: str) -> list[str]:
        return [name for name in AGENCIES if (self.layout.agency(name) / "results" / f"{job_id}.csv").exists()]

    def results(self, job_id: str) -> dict[str, set[tuple[str, str]]]:
        out = {}
        for name in AGENCIES:
            frame = pl.read_csv(self.layout.agency(name) / "results" / f"{job_id}.csv", infer_schema=False)
            out[name] = set(frame.select("record_id", "band").iter_rows())
        return out

    def stop(self) -> None:
        for started in (*self.nodes.values(), self.coordinator):
            started[0].stop(0).wait()


@pytest.fixture
def task_force(tmp_path):
    force = TaskForce(tmp_path)
    yield force
    force.stop()


def input_values(layout) -> set[str]:
    values: set[str] = set()
    for name in AGENCIES:
        frame = pl.read_csv(layout.agency(name) / "input.csv", infer_schema=False)
        for column in IDENTIFYING:
            values |= {v.strip() for v in frame.get_column(column).drop_nulls().to_list() if len(v.strip()) >= 5}
    return values


def assert_no_plaintext(layout, messages: list[bytes], output: str) -> None:
    values = input_values(layout)
    assert len(values) > 300
    stored = b"\n".join(p.read_bytes() for p in sorted(layout.coordinator.rglob("*")) if p.is_file())
    wire = b"\n".join(messages)
    assert len(messages) > 20 and len(wire) > 10_000  # the recorder saw the job's traffic
    assert [v for v in values if v.encode() in stored] == [], "a value in the coordinator's files"
    assert [v for v in values if v.encode() in wire] == [], "a value on the wire"
    assert [v for v in values if v in output] == [], "a value in a party's output"


def resume_with_one_command(task_force, run_cli, job_id: str) -> str:
    """`linkage job deliver --job J`; returns what it printed."""
    result = run_cli(
        "job", "deliver", "--config", task_force.layout.coordinator_config, "--coordinator", task_force.address, "--job", job_id
    )
    assert result.code == 0, result.err
    assert sorted(task_force.holders(job_id)) == sorted(AGENCIES)
    job = JobStore(task_force.config.data_dir / "jobs.db").get(job_id)
    assert job is not None and job.state == "done" and sorted(job.released) == sorted(AGENCIES)
    for name in AGENCIES:
        assert not (task_force.layout.agency(name) / "pending" / f"{job_id}.csv").exists()
    return result.out + result.err


def test_a_node_killed_during_fetch(task_force, run_cli, capsys):
    reference = task_force.run()
    assert reference.state == "done", reference.summary
    task_force.stop_node("child_welfare")
    task_force.start_node("child_welfare", kill_on="fetch")
    last = task_force.run()
    assert last.state == "failed" and "child_welfare: transfer failed" in last.summary, last.summary
    assert "job deliver --job" in last.summary and task_force.holders(last.job_id) == []
    task_force.stop_node("child_welfare")  # already stopped by the kill: a no-op
    task_force.start_node("child_welfare")  # back, on the same address
    printed = resume_with_one_command(task_force, run_cli, last.job_id)
    assert task_force.results(last.job_id) == task_force.results(reference.job_id)  # nothing lost
    assert_no_plaintext(task_force.layout, task_force.recorder.messages, printed + "".join(capsys.readouterr()))


def test_a_node_killed_during_delivery(task_force, run_cli, capsys):
    task_force.stop_node("child_welfare")
    task_force.start_node("child_welfare", kill_on="deliver")
    last = task_force.run()
    assert last.state == "failed" and "child_welfare: delivery failed" in last.summary, last.summary
    # police's delivery is in, but pending: no agency holds results of a job that is not finished
    assert task_force.holders(last.job_id) == []
    assert (task_force.layout.agency("police") / "pending" / f"{last.job_id}.csv").exists()
    job = JobStore(task_force.config.data_dir / "jobs.db").get(last.job_id)
    assert job.state == "failed" and job.delivered == ("police",) and job.released == ()
    task_force.start_node("child_welfare")
    printed = resume_with_one_command(task_force, run_cli, last.job_id)
    assert_no_plaintext(task_force.layout, task_force.recorder.messages, printed + "".join(capsys.readouterr()))


def test_results_pending_too_long_are_discarded_at_start_up_and_delivered_again(task_force, run_cli):
    task_force.stop_node("child_welfare")
    task_force.start_node("child_welfare", kill_on="deliver")
    last = task_force.run()
    assert last.state == "failed"
    pending = task_force.layout.agency("police") / "pending" / f"{last.job_id}.csv"
    assert pending.exists()
    old = time.time() - 31 * 86400  # the job was abandoned a month ago (the default keep is 30 days)
    os.utime(pending, (old, old))
    task_force.stop_node("police")
    task_force.start_node("police")  # at start-up the node discards it, and says so in its log
    assert not pending.exists()
    log = AuditLog(task_force.layout.agency("police") / "audit.db", None).entries(action="pending results discarded")
    assert [(e.job, e.details["keep_days"]) for e in log] == [(last.job_id, 30.0)] and log[0].details["age_days"] >= 31
    task_force.stop_node("child_welfare")
    task_force.start_node("child_welfare")
    resume_with_one_command(task_force, run_cli, last.job_id)  # the coordinator delivers them again: nothing lost


def test_the_coordinator_killed_during_linking(task_force, run_cli, capsys):
    reached, never = threading.Event(), threading.Event()
    dying = {}

    def hook(state: str, job_id: str) -> None:
        if state == "linking":
            dying["job"] = job_id
            reached.set()
            dying["server"].stop(0)  # the process is gone: its server, and this thread with it
            never.wait()

    task_force.coordinator[0].stop(0).wait()
    task_force.start_coordinator(hook=hook)
    dying["server"] = task_force.coordinator[0]
    with pytest.raises(JobError):
        task_force.run()
    assert reached.wait(60)
    job_id = dying["job"]
    assert task_force.holders(job_id) == []
    task_force.start_coordinator()  # restarted on the same data folder: the job is marked interrupted
    job = JobStore(task_force.config.data_dir / "jobs.db").get(job_id)
    assert job.state == "failed" and "coordinator stopped while the job was linking" in job.error
    printed = resume_with_one_command(task_force, run_cli, job_id)
    assert_no_plaintext(task_force.layout, task_force.recorder.messages, printed + "".join(capsys.readouterr()))


def test_no_plaintext_after_the_demo(tmp_path, capfd):
    from services.demo import run_demo

    recorder = WireRecorder()
    lines: list[str] = []
    run_demo(tmp_path, 300, lines.append, lines.append, interceptors=[recorder])
    from linkage.testing._demo import DemoLayout

    layout = DemoLayout(tmp_path)
    assert any("what each agency received" in line for line in lines)
    captured = "".join(capfd.readouterr())
    # the demo prints what agencies received (their own record ids); the coordinator's side is swept
    assert_no_plaintext(layout, recorder.messages, captured + "\n".join(lines))
