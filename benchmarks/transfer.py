"""Transfer and end-to-end job: real servers on loopback with mTLS, certificates from linkage's PKI.

1. Encodings per second moved node -> coordinator (FetchEncodings, verified: count and digest) for
   --records FEBRL-like records (the node encodes once before timing; the stream is timed alone).
2. End-to-end job over three agencies from linkage.testing._synthetic, about --agency-records each:
   fetch, link (blocking auto), deliver; wall time from the job request to the last event.

    python benchmarks/transfer.py [--records 1000000] [--agency-records 200000]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl

sys.path.insert(0, str(Path(__file__).parent))
from _common import machine_line, peak_rss_mib
from encode import febrl_like

from linkage.bloom._encodings import Encodings
from linkage.jobs._config import load_coordinator_config, load_node_config
from linkage.jobs._profiles import with_default_match_keys
from linkage.protocol._clients import run_job_remotely
from linkage.protocol._convert import encodings_from_chunks
from linkage.protocol._credentials import channel_credentials
from linkage.protocol._server import CHANNEL_OPTIONS
from linkage.protocol.v1 import linkage_pb2 as pb
from linkage.protocol.v1 import linkage_pb2_grpc as pb_grpc
from linkage.records._schema import Schema
from linkage.testing._demo import AGENCIES, COORDINATOR, prepare_demo, write_coordinator_config
from linkage.testing._febrl import FEBRL_COLUMNS
from linkage.trust._pki import load_tls
from services.coordinator import start_coordinator
from services.node import start_node


def transfer(root: Path, records: int) -> tuple[float, int, float, str]:
    import grpc

    layout, _ = prepare_demo(root, people=50, seed=1)
    folder = layout.agency("police")
    febrl_like(records, 3).write_csv(folder / "input.csv")
    (folder / "schema.toml").write_text(
        with_default_match_keys(Schema.for_columns(list(FEBRL_COLUMNS), project="bench")).to_toml()
    )
    text = (folder / "node.toml").read_text().replace('exclude_column = "no_consent"\n', "")
    (folder / "node.toml").write_text(text)
    config = load_node_config(folder / "node.toml")
    server, port, _ = start_node(config, config.tls.load())
    tls = load_tls(layout.pki / "ca.pem", layout.pki / "coordinator.pem", layout.pki / "coordinator.key")
    try:
        with grpc.secure_channel(f"127.0.0.1:{port}", channel_credentials(tls), options=CHANNEL_OPTIONS) as channel:
            stub = pb_grpc.NodeStub(channel)
            started = time.perf_counter()
            stub.Describe(pb.DescribeRequest(job_id="bench"), timeout=3600)  # the node encodes here
            encoded = time.perf_counter() - started
            started = time.perf_counter()
            chunks = list(stub.FetchEncodings(pb.FetchEncodingsRequest(job_id="bench"), timeout=3600))
            encodings, _ = encodings_from_chunks(chunks, peer="police")
            seconds = time.perf_counter() - started
            wire_bytes = sum(chunk.ByteSize() for chunk in chunks)
    finally:
        server.stop(0).wait()
    if isinstance(encodings, Encodings):
        shape = f"{encodings.bits}-bit filters" + (
            f" + {len(encodings.group_names)} group filters" if encodings.group_filters is not None else ""
        )
    else:
        shape = f"{len(encodings.keys)} match keys"
    return seconds, len(encodings), encoded, f"{shape}, {wire_bytes / max(len(encodings), 1):,.0f} bytes per record on the wire"


def job(root: Path, agency_records: int) -> tuple[float, dict[str, int], str]:
    people = int(agency_records / 0.63)  # police holds about 63% of the generated people
    layout, _ = prepare_demo(root, people=people, seed=2)
    servers, ports = [], {}
    try:
        for name in AGENCIES:
            config = load_node_config(layout.node_config(name))
            server, port, _ = start_node(config, config.tls.load())
            servers.append(server)
            ports[name] = port
        config = load_coordinator_config(write_coordinator_config(layout, ports))
        tls = config.tls.load()
        server, port, _ = start_coordinator(config, tls)
        servers.append(server)
        sizes = {name: pl.scan_csv(layout.agency(name) / "input.csv").select(pl.len()).collect().item() for name in AGENCIES}
        started = time.perf_counter()
        last = None
        for event in run_job_remotely(f"127.0.0.1:{port}", tls, pb.JobRequest(agencies=list(AGENCIES)), coordinator=COORDINATOR):
            if not event.done:
                print(f"  [{time.perf_counter() - started:6.1f} s] {event.message}", flush=True)
            last = event
        seconds = time.perf_counter() - started
        return seconds, sizes, last.state if last else "none"
    finally:
        for server in servers:
            server.stop(0).wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--agency-records", type=int, default=200_000)
    args = parser.parse_args()
    np.random.default_rng(0)
    with tempfile.TemporaryDirectory(prefix="linkage-transfer-") as temp:
        seconds, moved, encoded, shape = transfer(Path(temp) / "transfer", args.records)
        print(
            f"transfer: {moved:,} encodings ({shape}, default schema) in {seconds:.2f} s: {moved / seconds:,.0f} encodings/s (node encode before it: {encoded:.1f} s)"
        )
        job_seconds, sizes, state = job(Path(temp) / "job", args.agency_records)
        print(f"job: {state} in {job_seconds:.1f} s for {', '.join(f'{k} {v:,}' for k, v in sizes.items())}")
    print(
        f"transfer: {moved / seconds:,.0f} encodings/s over mTLS loopback ({moved:,} records; {shape}); end-to-end job of"
        f" {sum(sizes.values()):,} records in 3 agencies: {job_seconds:.1f} s ({state}); peak RSS {peak_rss_mib():,.0f} MiB; {machine_line()}"
    )


if __name__ == "__main__":
    main()
