"""`linkage demo`: a whole task force on loopback — a CA, three agency nodes, a coordinator, the key
ceremony and one job — on the generator's synthetic records, printing what each agency received."""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import grpc
import polars as pl

from linkage.bloom._keys import Secret
from linkage.errors import LinkageError
from linkage.jobs._agency import query_records
from linkage.jobs._config import load_coordinator_config, load_node_config
from linkage.jobs._profiles import encode_records, link_sources
from linkage.matching._evaluate import duplicate_quality, pair_quality
from linkage.protocol._clients import ask_index, job_request, run_job_remotely
from linkage.protocol._keyshare import publish_card, receive_secret, share_secret
from linkage.records import Schema, read_records
from linkage.testing._demo import AGENCIES, COORDINATOR, DISCLOSURE, DemoLayout, prepare_demo, write_coordinator_config
from services._lifecycle import stop
from services.coordinator import follow_job, start_coordinator
from services.node import start_node

__all__ = ["run_demo"]

# Each agency holds about 5% of its people under two or more case files. Under the default token
# cap of 1 a job finds them only through a partner's record; the node finds them itself, linking its
# own records encoded with a cap that lets them share tokens.
DUPLICATE_FILES = 0.05
OWN_TOKEN_CAP = 20


def run_demo(
    workdir: Path | None,
    people: int,
    say: Callable[[str], None],
    progress: Callable[[str], None],
    *,
    interceptors: Sequence[grpc.ServerInterceptor] = (),
) -> None:
    """The demo in ``workdir`` (kept), or in a temporary folder removed afterwards."""
    if workdir is None:
        with tempfile.TemporaryDirectory(prefix="linkage-demo-") as temp:
            return run_demo(Path(temp), people, say, progress, interceptors=interceptors)
    workdir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    say(f"linkage demo in {workdir}: a task force of {', '.join(AGENCIES)} and a coordinator")
    layout, truth = prepare_demo(workdir, people=people, with_secret=False, duplicates=DUPLICATE_FILES)
    say(f"  CA and certificates in {layout.pki}; synthetic records of {people:,} people spread over the agencies")
    servers, ports = [], {}
    try:
        for name in AGENCIES:
            config = load_node_config(layout.node_config(name))
            node = start_node(config, config.tls.load(), interceptors=interceptors)
            servers.append(node)
            ports[name] = node[1]
            policy = DISCLOSURE[name]
            say(f"  node {name:<16} on 127.0.0.1:{ports[name]}  disclosure {policy}")
        coordinator_config = load_coordinator_config(write_coordinator_config(layout, ports, index_keep="30d"))
        tls = coordinator_config.tls.load()
        coordinator = start_coordinator(coordinator_config, tls, interceptors=interceptors)
        servers.append(coordinator)
        port = coordinator[1]
        say(f"  coordinator          on 127.0.0.1:{port}\n")
        _key_ceremony(layout, f"127.0.0.1:{port}", say)
        say(
            f"$ linkage job run --config {layout.coordinator_config} --coordinator 127.0.0.1:{port} --agencies {','.join(AGENCIES)}"
        )
        state = follow_job(
            run_job_remotely(f"127.0.0.1:{port}", tls, job_request(list(AGENCIES)), coordinator=COORDINATOR), say, progress
        )
        if state != "done":
            raise LinkageError("the demo job failed")
        say("\nwhat each agency received (its own record ids only):")
        for name in AGENCIES:
            files = sorted((layout.agency(name) / "results").glob("*.csv"))
            results = pl.read_csv(files[-1], infer_schema=False)
            bands = results.group_by("band").len().sort("band")
            counts = ", ".join(f"{b} {n:,}" for b, n in bands.iter_rows())
            say(f"  {name:<16} {files[-1].relative_to(workdir)}: {results.height:,} records ({counts or 'none'})")
            for row in results.head(3).iter_rows(named=True):
                say(
                    f"      {row['record_id']:<12} {row['band']:<8} {float(row['similarity']):.3f}  ref {row['reference']}  shared with: {row['shared_with'] or '(not disclosed)'}"
                )
        pairs = pl.read_csv(next((layout.coordinator / "jobs").glob("*/pairs.csv")), infer_schema=False)
        quality = pair_quality(pairs.filter(pl.col("band") == "match"), truth)
        say(f"\nagainst the generator's truth (pairs of different agencies): {quality.line()}")
        _intake_query(layout, f"127.0.0.1:{port}", say)
        _own_duplicates(layout, truth, say)
        say(f"demo finished in {time.perf_counter() - started:.1f} s")
    finally:
        for server in servers:
            stop(server, grace=1.0)


def _own_duplicates(layout: DemoLayout, truth: pl.DataFrame, say: Callable[[str], None]) -> None:
    """Police looks for its own duplicate case files at its node: its records encoded with a token
    cap that lets its own records share tokens (a file that never leaves the node), linked alone."""
    config = load_node_config(layout.node_config("police"))
    own = layout.agency("police") / "own.parquet"
    say(
        f"\npolice looks for its own duplicate case files, at its node (nothing is sent):\n"
        f"$ linkage encode --schema {config.schema} --secret {config.secret} --input {config.input} --id-column {config.id_column} --token-cap {OWN_TOKEN_CAP} --out {own}\n"
        f"$ linkage link {own} --out {own.with_name('own-duplicates.csv')}"
    )
    schema = Schema.load(config.schema)
    schema = Schema.from_dict({**schema.to_dict(), "frequency": {"token_cap": OWN_TOKEN_CAP}}, source="--token-cap")
    records = read_records(config.input, id_column=config.id_column, columns=list(schema.columns), encoding=config.encoding)
    encodings = encode_records(records, schema, Secret.from_file(config.secret)).encodings
    pairs = link_sources({"police": encodings}).pairs.filter(pl.col("band") == "match")
    pairs.write_csv(own.with_name("own-duplicates.csv"))
    quality = duplicate_quality(pairs, truth, ["police"])
    say(f"  {pairs.height:,} pairs of its own records found to be one person; against the planted duplicates: {quality.line()}")


def _intake_query(layout: DemoLayout, coordinator: str, say: Callable[[str], None]) -> None:
    """Police asks the index kept from the job about three of its records, as `linkage query` does."""
    config = load_node_config(layout.node_config("police"))
    small = layout.agency("police") / "intake.csv"
    pl.read_csv(config.input, infer_schema=False).head(3).write_csv(small)
    say(
        f'\nan intake check ([index] keep = "30d"):\n$ linkage query --config {layout.node_config("police")} --coordinator {coordinator} --input {small}'
    )
    records = query_records(config, path=small)
    for line in ask_index(config, config.tls.load(), coordinator, records):
        say(f"  {line}")


def _key_ceremony(layout: DemoLayout, coordinator: str, say: Callable[[str], None]) -> None:
    """The agencies agree a secret through the coordinator, which relays what it cannot open."""

    configs = {name: load_node_config(layout.node_config(name)) for name in AGENCIES}
    tls = {name: c.tls.load() for name, c in configs.items()}
    say("key ceremony (the coordinator relays; it never sees the secret):")
    for name in AGENCIES:
        card = publish_card(configs[name], tls[name], coordinator)
        say(f"  $ linkage keys publish --config {layout.node_config(name)} ...   agreement key {card.agreement_key_fingerprint}")
    lead, *others = AGENCIES
    info = share_secret(configs[lead], tls[lead], coordinator, project="task-force-demo", recipients=list(AGENCIES), epoch=1)
    say(
        f"  $ linkage keys share --config {layout.node_config(lead)} --project task-force-demo --to {','.join(AGENCIES)} ...   secret {info.fingerprint}"
    )
    for name in others:
        got = receive_secret(configs[name], tls[name], coordinator, project="task-force-demo", trusted_senders=[lead])
        say(
            f"  $ linkage keys receive --config {layout.node_config(name)} --project task-force-demo --sender {lead} ...   secret {got.fingerprint}"
        )
    say("")
