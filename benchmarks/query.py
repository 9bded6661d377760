"""Intake queries: latency of `Query` against an index of many records, end to end over mTLS on loopback.

Data (seeded): three agencies from linkage.testing._synthetic (the default police, child-welfare and
victim-services profiles), about ``--records`` records in all, encoded under the default match keys.

The index is built *directly* from these generated encodings, not by a job over the network: a job
(``link_sources``) fits the Fellegi–Sunter model and thresholds on the first ``--fit`` records of
each agency, and the index holds every record with that model — the files a finished job leaves
(``IndexKeeper.stage`` then ``activate``) in a real coordinator's data folder. Then a real
coordinator starts on loopback in a process of its own (``linkage coordinator serve``, certificates
from linkage's own PKI), and for each of
``--queries`` police records, one at a time, as `linkage query` does it: the node encodes the record
under its schema and secret files (``query_encodings``), opens an mTLS channel, calls
``Index.Query`` and reads the answer. Timed per query, as a whole and in its two halves (encoding at
the node; the call: channel, handshake, the coordinator's work, the answer); the first query (which
loads the index) is not timed. The same records are then asked once more on one kept channel (a
node that keeps its connection open: no handshake per query). The index's memory is the arrays it
holds (encodings, sorted tokens, record ids).

    python benchmarks/query.py [--records 1000000] [--queries 1000] [--fit 20000] [--seed 15]
"""

from __future__ import annotations

import argparse
import re
import socket
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _common import machine_line, peak_rss_mib

from linkage.bloom._keys import Secret
from linkage.jobs._agency import query_encodings
from linkage.jobs._config import IndexSettings, NodeConfig, TlsPaths
from linkage.jobs._index import IndexKeeper, intake_index
from linkage.jobs._profiles import encode_records, encodings_to_bytes, link_sources, with_default_match_keys
from linkage.matching._link import LinkSettings
from linkage.protocol._clients import query_index
from linkage.protocol._server import secure_channel
from linkage.protocol.v1 import linkage_pb2 as pb
from linkage.protocol.v1 import linkage_pb2_grpc as pb_grpc
from linkage.records._schema import Schema
from linkage.scoped import ScopedEncodings
from linkage.testing._synthetic import generate_agencies
from linkage.trust._audit import party_log
from linkage.trust._pki import init_ca, issue, load_tls

COLUMNS = ["given_name", "middle_name", "surname", "date_of_birth", "sex", "address", "city", "postcode"]
PEOPLE_PER_RECORD = 0.6  # the default profiles hold about 1.66 records per person in all


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--fit", type=int, default=20_000, help="records per agency the job's model is fitted on")
    parser.add_argument("--seed", type=int, default=15)
    args = parser.parse_args()

    started = time.perf_counter()
    data = generate_agencies(round(args.records * PEOPLE_PER_RECORD), rng=np.random.default_rng(args.seed))
    schema = with_default_match_keys(Schema.for_columns(COLUMNS, project="query-benchmark"))
    secret = Secret(bytes(range(32)))
    frames = {name: f.rename({"rec_id": "record_id"}).select("record_id", *COLUMNS) for name, f in data.frames.items()}
    sources: dict[str, ScopedEncodings] = {}
    for name, frame in frames.items():
        encodings = encode_records(frame, schema, secret).encodings
        assert isinstance(encodings, ScopedEncodings)
        sources[name] = encodings
    total = sum(len(e) for e in sources.values())
    prepared = time.perf_counter()
    print(f"generated and encoded {total:,} records in {prepared - started:.1f} s", flush=True)

    fit = {name: frame.head(args.fit) for name, frame in frames.items()}
    linked = link_sources({n: encode_records(f, schema, secret).encodings for n, f in fit.items()}, LinkSettings())
    result = linked.result
    built = time.perf_counter()
    index = intake_index("bench", sources, result.model, result.threshold, result.review_threshold)  # type: ignore[union-attr]
    index_seconds = time.perf_counter() - built
    index_mib = index.nbytes / 2**20
    del index

    with tempfile.TemporaryDirectory() as temp:
        root = Path(temp)
        init_ca(root / "pki")
        issue(root / "pki", role="coordinator", name="coordinator")
        issue(root / "pki", role="node", name="police")
        data_dir = root / "coordinator"
        data_dir.mkdir()
        agencies = "".join(f'[agencies.{n}]\naddress = "127.0.0.1:1"\ndisclosure = "full"\n' for n in sources)
        config_path = data_dir / "coordinator.toml"
        config_path.write_text(
            f'[coordinator]\nname = "coordinator"\ndata_dir = "."\n'
            f'[tls]\nca = "../pki/ca.pem"\ncert = "../pki/coordinator.pem"\nkey = "../pki/coordinator.key"\n'
            f'{agencies}[index]\nkeep = "30d"\nqueries_per_hour = 1000000\n',
            encoding="utf-8",
        )
        index_settings = IndexSettings(keep=timedelta(days=30), queries_per_hour=1_000_000)
        keeper = IndexKeeper(data_dir / "index", index_settings, party_log(data_dir), "coordinator/coordinator")
        keeper.stage("bench", sources, result)  # type: ignore[arg-type]
        keeper.activate("bench")
        del keeper, sources
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        server = subprocess.Popen(
            [sys.executable, "-m", "linkage.cli", "coordinator", "serve", "--config", str(config_path), "--listen", f"127.0.0.1:{port}"],
            stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        assert server.stdout is not None
        if not re.search(r"serving on port", server.stdout.readline()):
            raise SystemExit("the coordinator did not start")
        node_tls = load_tls(root / "pki/ca.pem", root / "pki/police.pem", root / "pki/police.key")
        (root / "schema.toml").write_text(schema.to_toml(), encoding="utf-8")
        secret.write(root / "secret.key")
        node = NodeConfig(
            agency="police", listen="127.0.0.1:0", data_dir=root, input=root / "none.csv", id_column="record_id",
            schema=root / "schema.toml", secret=root / "secret.key", coordinators=("coordinator",),
            tls=TlsPaths(ca=root / "pki/ca.pem", cert=root / "pki/police.pem", key=root / "pki/police.key"),
        )  # fmt: skip
        address = f"127.0.0.1:{port}"
        police = frames["police"]
        rows = np.random.default_rng(args.seed).choice(police.height, size=args.queries + 1, replace=False)

        def ask(row: int) -> tuple[float, float, int]:
            t0 = time.perf_counter()
            encodings, _, _ = query_encodings(node, police.slice(int(row), 1))
            t1 = time.perf_counter()
            answers = query_index(address, node_tls, encodings, coordinator="coordinator").answers
            return t1 - t0, time.perf_counter() - t1, len(answers)

        loading = time.perf_counter()
        ask(rows[0])  # loads the index from the data folder
        load_seconds = time.perf_counter() - loading
        timings, answered, kept = [], 0, []
        try:
            for row in rows[1:]:
                encode_s, call_s, n = ask(row)
                timings.append((encode_s, call_s))
                answered += n > 0
            with secure_channel(address, node_tls, peer=("coordinator", "coordinator")) as channel:
                stub = pb_grpc.IndexStub(channel)
                for row in rows[1:]:
                    packed = encodings_to_bytes(query_encodings(node, police.slice(int(row), 1))[0])
                    t0 = time.perf_counter()
                    stub.Query(pb.QueryRequest(packed=packed), timeout=60)
                    kept.append(time.perf_counter() - t0)
        finally:
            server.terminate()
            server.wait(timeout=60)
    encode_ms, call_ms = (np.array(t) * 1000 for t in zip(*timings, strict=True))
    ms = encode_ms + call_ms
    print(f"index of {total:,} records: built in {index_seconds:.1f} s, loaded by the coordinator in {load_seconds:.1f} s")
    print(f"{len(ms):,} single-record queries, {answered:,} with something to disclose")
    kept_ms = np.array(kept) * 1000
    for label, values in (
        ("encoding at the node", encode_ms),
        ("the call (mTLS channel, Query, answer)", call_ms),
        ("the call on one kept channel (no handshake)", kept_ms),
    ):
        print(f"  {label}: p50 {np.percentile(values, 50):.1f} ms, p99 {np.percentile(values, 99):.1f} ms")
    print(
        f"query latency end to end over mTLS: p50 {np.percentile(ms, 50):.1f} ms, p99 {np.percentile(ms, 99):.1f} ms, "
        f"max {ms.max():.1f} ms; index memory {index_mib:,.0f} MiB ({index_mib * 2**20 / total:,.0f} bytes a record); "
        f"peak RSS {peak_rss_mib():,.0f} MiB; {machine_line()}"
    )


if __name__ == "__main__":
    main()
