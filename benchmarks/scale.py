"""Scale: `linkage link` on n × n records with default settings.

Data (seeded): two agencies from linkage.testing._synthetic (the police and child-welfare profiles, default
messiness), each cut to exactly n records, encoded with the default schema (``schema init --sample``
on the first agency's records: match keys, with the large-population keys where the sample shows
a large population) and written as Parquet.
The benchmark then runs the real command, in a child process, as a coordinator would:

    linkage link police.parquet child_welfare.parquet --out pairs.csv --candidates candidates.csv

and reports its wall time and peak RSS (the child's alone: generating and encoding the data is not
counted), and linkage quality against the generator's truth (P / R / F1 of the ``match`` band).
``candidate recall`` is the share of true pairs among the candidates the command wrote (pairs that
share a match-key token; for the filter profiles, the pairs blocking let through).

``--profile record-filter`` encodes with the folded record filter and ``--profile field-scoring``
with group filters (fs scoring and a second candidate rule on names and date of birth); for these the
blocking ``auto`` chose is printed (all pairs while quick, LSH beyond, the record rule tightened
where all pairs would take hours), and ``completeness``: an unblocked comparison of ``--sample`` rows
of police against all of child welfare, at the threshold each rule ran at, against the candidates.

    python benchmarks/scale.py [--sizes 10000,100000,1000000] [--sample 1000] [--seed 5] [--profile match-keys]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl

sys.path.insert(0, str(Path(__file__).parent))
from _common import machine_line

from linkage import Schema, Secret, read_encodings
from linkage.jobs._profiles import encode_records, with_default_match_keys, write_any_encodings
from linkage.matching._candidates import candidate_rules
from linkage.matching._engine import NumbaEngine
from linkage.matching._evaluate import canonical_pairs, pair_quality, true_pairs
from linkage.matching._link import LinkSettings
from linkage.testing._synthetic import CHILD_WELFARE, POLICE, generate_agencies

COLUMNS = ["given_name", "middle_name", "surname", "date_of_birth", "sex", "address", "city", "postcode"]
# People per record wanted: each person is held by one agency, or by both with probability 1/2,
# so an agency holds about 3/4 of them; 1.4 leaves room to cut both to exactly n.
PEOPLE_PER_RECORD = 1.4


PROFILES = ("match-keys", "record-filter", "field-scoring")


def records(n: int, seed: int) -> tuple[dict[str, pl.DataFrame], pl.DataFrame]:
    """The two agencies' records (``record_id`` and ``COLUMNS``, exactly n each) and the truth of
    the records kept (benchmarks/ceiling.py reads the same data)."""
    data = generate_agencies(round(n * PEOPLE_PER_RECORD), (POLICE, CHILD_WELFARE), rng=np.random.default_rng(seed), overlap=0.5)
    frames, kept = {}, []
    for name, frame in data.frames.items():
        if frame.height < n:
            raise SystemExit(f"generated only {frame.height:,} {name} records for n = {n:,}")
        frames[name] = frame.head(n).rename({"rec_id": "record_id"}).select("record_id", *COLUMNS)
        kept.append(frames[name].select("record_id", source=pl.lit(name)))
    return frames, data.truth.join(pl.concat(kept), on=["record_id", "source"])


def agencies(n: int, directory: Path, seed: int, profile: str) -> tuple[list[Path], pl.DataFrame]:
    frames, truth = records(n, seed)
    return encoded(frames, directory, profile), truth


def encoded(frames: dict[str, pl.DataFrame], directory: Path, profile: str) -> list[Path]:
    """Each agency's records encoded (schema as the profile asks) to ``<agency>.parquet`` in ``directory``."""
    schema = Schema.for_columns(COLUMNS, project="scale-benchmark", group_filters=profile == "field-scoring")
    if profile == "match-keys":  # as `schema init --sample` on the first agency's records
        schema = with_default_match_keys(schema, next(iter(frames.values())))
    secret = Secret(bytes(range(32)))
    paths = []
    for name, frame in frames.items():
        paths.append(directory / f"{name}.parquet")
        write_any_encodings(encode_records(frame, schema, secret).encodings, paths[-1])
    return paths


def link_command(paths: list[Path], folder: Path) -> list[str]:
    """``linkage link`` as a coordinator runs it: pairs, candidates and report into ``folder``."""
    linkage = Path(sys.executable).with_name("linkage")
    outputs = [
        f"--{what}={folder / name}"
        for what, name in (("out", "pairs.csv"), ("candidates", "candidates.csv"), ("report", "report.json"))
    ]
    return [str(linkage), "link", *map(str, paths), *outputs]


def sampled_completeness(paths: list[Path], candidates: pl.DataFrame, report: dict, sample: int, seed: int) -> float:
    """Share of the pairs an unblocked comparison of ``sample`` rows finds, at the Dice each rule ran at
    (as the command's report says: asked, raised or tightened), that are among the candidates."""
    a, b = read_encodings(paths[0]), read_encodings(paths[1])
    rows = np.sort(np.random.default_rng(seed).choice(len(a), min(sample, len(a)), replace=False))
    found = set(zip(*(candidates.get_column(c).to_list() for c in ("id_a", "id_b")), strict=True))
    exact: set[tuple[str, str]] = set()
    ids_a, ids_b = a.record_ids.to_numpy(), b.record_ids.to_numpy()
    ran = {rule["rule"]: rule["threshold"] for rule in report["source_pairs"][0]["rules"]}
    # the rules' filters as `link` builds them (the thresholds given here are not used)
    for rule, fa, fb, _ in candidate_rules(a, b, LinkSettings().resolved(a.group_filters is not None)):
        i, j, _ = NumbaEngine().dice_pairs(np.ascontiguousarray(fa[rows]), fb, ran[rule])
        exact |= set(zip(ids_a[rows[i]], ids_b[j], strict=True))
    return len(exact & found) / len(exact) if exact else 1.0


def blocking_line(report: dict) -> str:
    """What blocking each pair of sources got, and every note on the run, on one line."""
    # match keys: no blocking (pairs share a token), and the run's notes as they are
    parts = [f"note: {note}" for note in report.get("run_notes", report.get("notes", []))]
    for s in report.get("source_pairs", []):
        completeness = (
            "1 (all pairs compared)" if s["blocking"] == "none" else f"{s['pairs_completeness']:.4f} (estimated on a sample)"
        )
        parts.append(
            f"{s['source_a']} ~ {s['source_b']} {s['blocking']} {s['candidates']:,} {s['matches']:,} {s['possible']:,} {completeness}"
        )
        parts += [f"note: {note}" for note in s["notes"]]
    return " ".join(parts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="10000,100000,1000000", help="comma-separated n (records per agency)")
    parser.add_argument("--sample", type=int, default=1000, help="rows of police compared unblocked for pairs completeness")
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--profile", choices=PROFILES, default="match-keys", help="the schema's profile (default: match-keys)")
    args = parser.parse_args()
    print(f"profile {args.profile}")
    print(
        f"{'n':>10}  {'wall s':>7}  {'peak RSS MiB':>12}  {'candidates':>11}  {'cand recall':>11}  {'completeness':>12}"
        f"  {'P':>5}  {'R':>5}  {'F1':>6}  blocking"
    )
    for n in (int(x) for x in args.sizes.split(",")):
        with tempfile.TemporaryDirectory(prefix="linkage-scale-") as tmp:
            folder = Path(tmp)
            started = time.perf_counter()
            paths, truth = agencies(n, folder, args.seed, args.profile)
            prepared = time.perf_counter() - started
            command = link_command(paths, folder)
            before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
            started = time.perf_counter()
            run = subprocess.run(command, capture_output=True, text=True)
            wall = time.perf_counter() - started
            peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
            if run.returncode != 0:
                raise SystemExit(f"linkage link failed for n = {n:,}: {run.stderr.strip()}")
            report = json.loads((folder / "report.json").read_text(encoding="utf-8"))
            candidates = pl.read_csv(folder / "candidates.csv", schema_overrides={"id_a": pl.String, "id_b": pl.String})
            completeness = (
                "-"
                if args.profile == "match-keys"
                else f"{sampled_completeness(paths, candidates, report, args.sample, args.seed):.4f}"
            )
            real = true_pairs(truth)
            found = canonical_pairs(candidates.select("source_a", "id_a", "source_b", "id_b"))
            recall = found.join(real, on=["source_a", "id_a", "source_b", "id_b"], how="semi").height / max(real.height, 1)
            pairs = pl.read_csv(folder / "pairs.csv", schema_overrides={"id_a": pl.String, "id_b": pl.String})
            quality = pair_quality(pairs.filter(pl.col("band") == "match"), truth)
            blocking = blocking_line(report)
            # A child's ru_maxrss is the largest of all children so far: report it only where it grew.
            rss = f"{peak / 1024:,.0f}" if peak > before else f"<= {before / 1024:,.0f}"
            print(
                f"{n:>10,}  {wall:>7.1f}  {rss:>12}  {candidates.height:>11,}  {recall:>11.4f}  {completeness:>12}"
                f"  {quality.precision:>5.3f}  {quality.recall:>5.3f}  {quality.f1:>6.4f}  {blocking}"
                f"  (data generated and encoded in {prepared:.0f} s, not counted)",
                flush=True,
            )
    print(machine_line())


if __name__ == "__main__":
    main()
