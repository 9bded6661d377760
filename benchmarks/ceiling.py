"""Ceiling: the best F1 a matcher could reach on benchmarks/scale.py's data, given the plaintext
and the truth.

No privacy and no unsupervised fitting: both agencies' normalised values are compared in the
clear, and the truth says which pairs are matches. It measures how much of F1's fall with n comes
from the data itself (143 given names, 125 surnames, births concentrated in some thirty years:
the more people, the more strangers look alike) rather than from the match keys' design.

1. **Candidates**: pairs that share the plaintext value of any default or large-population match
   key, with no token cap and no refinement: each key at the shallowest level (its parts and the
   first refine parts) whose pairs number at most ``--max-pairs``, so that a key as coarse as
   given name + surname is still used at a million records, refined by birth year.
2. **Comparison levels** per pair and field: given name and surname (exact, nickname form,
   phonetic code, initial; and Jaro–Winkler bands), names swapped, middle name, date of birth
   (exact, day and month swapped, two parts of three, year only, ...), sex, address (exact, house
   number; Jaro–Winkler bands), town, postcode (exact, first three digits), and how common the
   given name, surname and birth date are where they agree exactly. Missing is a level of its own.
3. **The best classifier of these levels**: every distinct combination of levels (a pattern) gets
   the share of matches among the candidate pairs that show it, computed with the truth on the
   same pairs (in-sample: an upper bound for any matcher that sees only these levels), and pairs
   are taken best first, one record per agency at most (greedy one-to-one, as ``linkage link``
   clusters two agencies). The F1 printed is the best over every cut-off. ``held-out`` scores
   every pair with the shares measured on the records of the other half of the first agency: how
   much of the in-sample figure is fitted to the pairs themselves (much at small n, where a
   pattern is seen a handful of times; little at a million).
4. **linkage link**: the same figures on the candidates ``linkage link`` found (the default schema,
   as benchmarks/scale.py encodes and runs it), and the F1 it reached: how much of its distance from
   the bound is candidates (the token cap) and how much scoring.

    python benchmarks/ceiling.py [--sizes 10000,100000,1000000] [--seed 5] [--max-pairs 40000000]
        [--leave-out given_frequency,surname_frequency,dob_frequency]
"""

from __future__ import annotations

import argparse
import datetime as dt
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import jellyfish
import numpy as np
import polars as pl

sys.path.insert(0, str(Path(__file__).parent))
from _common import machine_line, peak_rss_mib
from scale import COLUMNS, encoded, link_command, records

from linkage import Schema
from linkage.matching._evaluate import pair_quality
from linkage.matching._solve import greedy_clusters
from linkage.records._normalise import normalise
from linkage.scoped._keys import DEFAULT_MATCH_KEYS, LARGE_POPULATION_KEYS, key_values, nickname_canonicals, usable_keys

# The comparisons each pair gets (comparison_levels), in pattern order.
LEVELS = (
    "given",
    "given_jw",
    "surname",
    "surname_jw",
    "middle",
    "sex",
    "address",
    "address_jw",
    "city",
    "postcode",
    "swapped",
    "dob",
    "given_frequency",
    "surname_frequency",
    "dob_frequency",
)
# Jaro–Winkler bands (best first) for names and addresses.
NAME_BANDS = (0.999, 0.94, 0.88, 0.8)
ADDRESS_BANDS = (0.999, 0.92, 0.85)
# A pair is taken for one-to-one matching only where its pattern's share of matches exceeds this.
LEAST_SHARE = 0.02


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="10000,100000,1000000", help="comma-separated n (records per agency)")
    parser.add_argument("--seed", type=int, default=5, help="the data's seed (scale.py's default: 5)")
    parser.add_argument("--max-pairs", type=float, default=4e7, help="most candidate pairs one key may give (default 4e7)")
    parser.add_argument("--leave-out", default="", help=f"comma-separated comparisons not to use, of: {', '.join(LEVELS)}")
    args = parser.parse_args()
    leave_out = frozenset(filter(None, args.leave_out.split(",")))
    if leave_out - set(LEVELS):
        parser.error(f"--leave-out: unknown {', '.join(sorted(leave_out - set(LEVELS)))} (known: {', '.join(LEVELS)})")
    print(
        f"{'n':>10}  {'candidates':>11}  {'cand recall':>11}  {'patterns':>8}  {'F1 (P, R) in-sample':>22}"
        f"  {'one-to-one':>22}  {'held-out one-to-one':>22}  keys refined to fit"
        "\n(n: uncapped key candidates; link: the candidates `linkage link` found, and its F1)"
    )
    for n in (int(x) for x in args.sizes.split(",")):
        frames, truth = records(n, args.seed)
        print("\n".join(ceiling_lines(n, frames, truth, int(args.max_pairs), leave_out)), flush=True)
    print(f"peak RSS {peak_rss_mib():,.0f} MiB; {machine_line()}")


def ceiling_lines(
    n: int, frames: dict[str, pl.DataFrame], truth: pl.DataFrame, max_pairs: int, leave_out: frozenset[str]
) -> list[str]:
    """The bound on the uncapped key candidates, then on the candidates ``linkage link`` found (and its F1)."""
    started = time.perf_counter()
    (name_a, a), (name_b, b) = frames.items()
    entity = {
        name: frame.join(truth.filter(pl.col("source") == name), on="record_id", how="left").get_column("entity_id").to_numpy()
        for name, frame in frames.items()
    }
    true_total = int(np.isin(entity[name_b], entity[name_a]).sum())
    schema = Schema.for_columns(COLUMNS, project="ceiling-benchmark")
    fields = [normalise(frame, schema, today=dt.date.today())[0] for frame in (a, b)]
    codes = Codes(fields)
    left, right, refined = candidates(fields, schema, max_pairs)
    lines = [
        f"{n:>10,}  {bound_cells(codes, left, right, entity[name_a], entity[name_b], true_total, leave_out)}  {', '.join(refined) or '-'}"
    ]
    with tempfile.TemporaryDirectory(prefix="linkage-ceiling-") as tmp:
        folder = Path(tmp)
        run = subprocess.run(link_command(encoded(frames, folder, "match-keys"), folder), capture_output=True, text=True)
        if run.returncode != 0:
            raise SystemExit(f"linkage link failed for n = {n:,}: {run.stderr.strip()}")
        found = pl.read_csv(folder / "candidates.csv", schema_overrides={"id_a": pl.String, "id_b": pl.String})
        pairs = pl.read_csv(folder / "pairs.csv", schema_overrides={"id_a": pl.String, "id_b": pl.String})
    rows = [frame.select("record_id").with_row_index("row") for frame in (a, b)]
    both = pl.concat(
        [
            found.filter(pl.col("source_a") == source).select(pl.col(first).alias("first"), pl.col(second).alias("second"))
            for source, first, second in ((name_a, "id_a", "id_b"), (name_b, "id_b", "id_a"))
        ]
    )
    both = both.join(rows[0], left_on="first", right_on="record_id").join(rows[1], left_on="second", right_on="record_id")
    left, right = (both.get_column(c).to_numpy().astype(np.int64) for c in ("row", "row_right"))
    linked = pair_quality(pairs.filter(pl.col("band") == "match"), truth).f1
    cells = bound_cells(codes, left, right, entity[name_a], entity[name_b], true_total, leave_out)
    lines.append(f"{'link':>10}  {cells}  linkage link F1 {linked:.4f}  ({time.perf_counter() - started:.0f} s)")
    return lines


def bound_cells(
    codes: Codes,
    left: np.ndarray,
    right: np.ndarray,
    entity_a: np.ndarray,
    entity_b: np.ndarray,
    true_total: int,
    leave_out: frozenset[str],
) -> str:
    """Candidates, candidate recall, patterns and the three F1 figures of these candidate pairs."""
    is_match = entity_a[left] == entity_b[right]
    levels = {name: level for name, level in comparison_levels(codes, left, right).items() if name not in leave_out}
    _, index = np.unique(pattern_codes(levels), return_inverse=True)
    in_sample = share_of_matches(index, is_match, np.ones(left.size, dtype=bool))
    half = left % 2 == 0  # the first agency's records in two halves: score each half by the other's shares
    held_out = np.where(half, share_of_matches(index, is_match, ~half), share_of_matches(index, is_match, half))
    sources = np.repeat([0, 1], codes.sizes)
    figures = [
        best_f1(in_sample, is_match, true_total),
        best_f1_one_to_one(in_sample, is_match, true_total, left, right + codes.size_a, sources),
        best_f1_one_to_one(held_out, is_match, true_total, left, right + codes.size_a, sources),
    ]
    cells = "  ".join(f"{f:.4f} ({p:.3f}, {r:.3f})".rjust(22) for f, p, r in figures)
    return f"{left.size:>11,}  {is_match.sum() / true_total:>11.4f}  {index.max() + 1:>8,}  {cells}"


def candidates(fields: list[dict], schema: Schema, max_pairs: int) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Pairs (row in the first agency, row in the second) sharing a key's plaintext value."""
    found, refined = [], []
    for key in usable_keys(DEFAULT_MATCH_KEYS + LARGE_POPULATION_KEYS, schema):
        for depth in range(len(key.refine) + 1):
            level = key.level(depth)
            values = [key_values([level], schema, side).to_series().rename("value") for side in fields]
            sides = [v.to_frame().with_row_index("row").drop_nulls() for v in values]
            counts = sides[0].group_by("value").len().join(sides[1].group_by("value").len(), on="value")
            pairs = counts.select((pl.col("len").cast(pl.Int64) * pl.col("len_right")).sum()).item() or 0
            if pairs <= max_pairs:
                found.append(sides[0].join(sides[1], on="value").select("row", "row_right"))
                if depth:
                    refined.append(f"{key.name} + {', '.join(key.refine[:depth])}")
                break
        else:
            refined.append(f"{key.name} left out")
    pairs = pl.concat(found).unique()
    return pairs.get_column("row").to_numpy().astype(np.int64), pairs.get_column("row_right").to_numpy().astype(np.int64), refined


class Codes:
    """Both agencies' values of each compared part as integer codes shared by the two (-1: missing),
    and the distinct values behind the codes of the parts compared by Jaro–Winkler."""

    def __init__(self, fields: list[dict]) -> None:
        self.sizes = tuple(side[COLUMNS[0]].codes.size for side in fields)
        self.size_a = self.sizes[0]
        self.codes: dict[str, np.ndarray] = {}
        self.values: dict[str, list[str]] = {}
        value = {name: pl.concat([side[name].per_record() for side in fields]) for name in COLUMNS}
        nicknames = nickname_canonicals()
        for name in ("given_name", "middle_name", "surname"):
            self.add(name, value[name], keep_values=name != "middle_name")
            self.add(f"{name}:initial", value[name].str.slice(0, 1))
            phonetic = {v: jellyfish.nysiis(v.replace(" ", "")) for v in value[name].drop_nulls().unique().to_list()}
            self.add(f"{name}:phonetic", value[name].replace_strict(phonetic, default=None))
            self.add(f"{name}:nickname", value[name].replace(nicknames))
        dob = value["date_of_birth"]
        self.add("dob", dob)
        for part, (start, length) in {"year": (0, 4), "month": (5, 2), "day": (8, 2)}.items():
            self.add(f"dob:{part}", dob.str.slice(start, length).replace({"????": None, "??": None}))
        self.add("sex", value["sex"])
        self.add("address", value["address"], keep_values=True)
        self.add("address:number", value["address"].str.extract(r"^(\d+)"))
        self.add("city", value["city"])
        self.add("postcode", value["postcode"])
        self.add("postcode:3", value["postcode"].str.slice(0, 3))

    def add(self, name: str, values: pl.Series, *, keep_values: bool = False) -> None:
        self.codes[name] = (values.rank("dense").cast(pl.Int64) - 1).fill_null(-1).to_numpy()
        if keep_values:
            self.values[name] = values.drop_nulls().unique().sort().to_list()

    def pair(self, name: str, left: np.ndarray, right: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self.codes[name][left], self.codes[name][right + self.size_a]

    def count(self, name: str, rows: np.ndarray) -> np.ndarray:
        codes = self.codes[name]
        counts = np.bincount(codes[codes >= 0], minlength=codes.max() + 1)
        return np.where(codes[rows] >= 0, counts[np.maximum(codes[rows], 0)], 0)


def comparison_levels(codes: Codes, left: np.ndarray, right: np.ndarray) -> dict[str, np.ndarray]:
    def agree(name: str) -> np.ndarray:
        x, y = codes.pair(name, left, right)
        return (x == y) & (x >= 0)

    def missing(name: str) -> np.ndarray:
        x, y = codes.pair(name, left, right)
        return (x < 0) | (y < 0)

    def ladder(name: str, rungs: list[str]) -> np.ndarray:
        """The first rung (best first) the pair agrees on; then 'none' and 'missing'."""
        level = np.full(left.size, len(rungs), dtype=np.int64)
        for k in reversed(range(len(rungs))):
            level[agree(rungs[k])] = k
        level[missing(name)] = len(rungs) + 1
        return level

    levels = {
        "given": ladder("given_name", ["given_name", "given_name:nickname", "given_name:phonetic", "given_name:initial"]),
        "given_jw": similarity_bands(codes, "given_name", left, right, NAME_BANDS),
        "surname": ladder("surname", ["surname", "surname:phonetic", "surname:initial"]),
        "surname_jw": similarity_bands(codes, "surname", left, right, NAME_BANDS),
        "middle": ladder("middle_name", ["middle_name", "middle_name:initial"]),
        "sex": ladder("sex", ["sex"]),
        "address": ladder("address", ["address", "address:number"]),
        "address_jw": similarity_bands(codes, "address", left, right, ADDRESS_BANDS),
        "city": ladder("city", ["city"]),
        "postcode": ladder("postcode", ["postcode", "postcode:3"]),
    }
    given, surname = codes.pair("given_name", left, right), codes.pair("surname", left, right)
    levels["swapped"] = ((given[0] == surname[1]) & (surname[0] == given[1]) & (given[0] >= 0)).astype(np.int64)
    year, month, day = agree("dob:year"), agree("dob:month"), agree("dob:day")
    months, days = codes.pair("dob:month", left, right), codes.pair("dob:day", left, right)
    day_month_swapped = year & (months[0] == days[1]) & (days[0] == months[1]) & (months[0] >= 0)
    parts = year.astype(np.int64) + month + day
    levels["dob"] = np.select(
        [missing("dob"), agree("dob"), day_month_swapped, parts == 2, year, parts == 1],
        [6, 0, 1, 2, 3, 4],
        default=5,
    )
    # How common an exactly agreeing value is (both agencies together), in bands of a factor of 4.
    for name, part in (("given_frequency", "given_name"), ("surname_frequency", "surname"), ("dob_frequency", "dob")):
        bands = np.minimum(np.log2(np.maximum(codes.count(part, left), 1)).astype(np.int64) // 2, 14)
        levels[name] = np.where(agree(part), bands, 15)
    assert tuple(levels) == LEVELS
    return levels


def similarity_bands(codes: Codes, name: str, left: np.ndarray, right: np.ndarray, bands: tuple[float, ...]) -> np.ndarray:
    """The Jaro–Winkler band of each pair's values (computed once per distinct pair of values)."""
    x, y = codes.pair(name, left, right)
    present = (x >= 0) & (y >= 0)
    width = len(codes.values[name])
    distinct, index = np.unique(np.where(present, x * width + y, -1), return_inverse=True)
    values = codes.values[name]
    similarity = np.array(
        [jellyfish.jaro_winkler_similarity(values[c // width], values[c % width]) if c >= 0 else -1.0 for c in distinct.tolist()]
    )[index]
    level = np.where(present, len(bands), len(bands) + 1)
    for k in reversed(range(len(bands))):
        level[present & (similarity >= bands[k])] = k
    return level


def pattern_codes(levels: dict[str, np.ndarray]) -> np.ndarray:
    code = np.zeros(next(iter(levels.values())).size, dtype=np.int64)
    for level in levels.values():
        code = code * 16 + level
    return code


def share_of_matches(index: np.ndarray, is_match: np.ndarray, counted: np.ndarray) -> np.ndarray:
    """Each pair's pattern's share of matches among the ``counted`` pairs (0 where none was counted)."""
    matches = np.bincount(index[counted], weights=is_match[counted], minlength=index.max() + 1)
    seen = np.bincount(index[counted], minlength=index.max() + 1)
    return (matches / np.maximum(seen, 1))[index]


def best_f1(
    score: np.ndarray, is_match: np.ndarray, true_total: int, taken: np.ndarray | None = None
) -> tuple[float, float, float]:
    """The best (F1, precision, recall) over every cut-off of ``score`` (pairs ``taken`` only)."""
    order = np.argsort(-score, kind="stable")
    if taken is not None:
        order = order[taken[order]]
    order = order[score[order] > 0]
    tp = np.cumsum(is_match[order])
    precision = tp / np.arange(1, order.size + 1)
    recall = tp / true_total
    f1 = 2 * precision * recall / np.maximum(precision + recall, 1e-12)
    # a cut-off falls between patterns, not inside one: only the last pair of each score counts
    last = np.flatnonzero(np.append(np.diff(score[order]) != 0, True))
    best = last[np.argmax(f1[last])]
    return float(f1[best]), float(precision[best]), float(recall[best])


def best_f1_one_to_one(
    score: np.ndarray, is_match: np.ndarray, true_total: int, left: np.ndarray, right: np.ndarray, sources: np.ndarray
) -> tuple[float, float, float]:
    """As ``best_f1``, over the pairs greedy one-to-one matching takes (best first). Lowering the
    cut-off only adds pairs to what a higher one took, so one greedy pass serves every cut-off."""
    considered = score > LEAST_SHARE
    _, accepted = greedy_clusters(left[considered], right[considered], score[considered], sources)
    taken = np.zeros(score.size, dtype=bool)
    taken[np.flatnonzero(considered)[accepted]] = True
    return best_f1(score, is_match, true_total, taken)


if __name__ == "__main__":
    main()
