"""The ``linkage`` command line: parse flags, call the library, print results.

A ``LinkageError`` becomes one line on stderr and exit status 1; a usage mistake exits 2. A
traceback means a bug in linkage, never a mistake by the user.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import polars as pl

from linkage import __version__
from linkage.bloom._keys import Secret
from linkage.errors import InputError, LinkageError, SchemaError
from linkage.jobs._file_runs import PROGRESS_ABOVE_RECORDS, encode_file, read_sources, write_link_files
from linkage.jobs._profiles import link_sources
from linkage.matching._engine import DEFAULT_ENGINE, ENGINES
from linkage.matching._evaluate import (
    blocking_quality,
    duplicate_quality,
    pair_quality,
    read_candidates,
    read_pairs,
    read_truth,
)
from linkage.matching._link import LinkSettings
from linkage.matching._thresholds import DEFAULT_THRESHOLDS
from linkage.records._reading import read_records
from linkage.records._schema import Schema
from linkage.scoped._link import DEFAULT_MATCH_THRESHOLD as SCOPED_MATCH_THRESHOLD
from linkage.scoped._link import DEFAULT_REVIEW_THRESHOLD as SCOPED_REVIEW_THRESHOLD

if TYPE_CHECKING:  # the commands import these lazily, so that `linkage --help` stays fast
    from linkage.jobs._config import NodeConfig
    from linkage.protocol.v1 import linkage_pb2 as pb
    from linkage.trust._audit import AuditLog, AuditPublicKey, Entry
    from linkage.trust._pki import TlsMaterial


def _refined(refine: tuple[str, ...]) -> str:
    return f"  (where shared: + {', then + '.join(refine)})" if refine else ""


def _print(*parts: object) -> None:
    print(*parts, flush=True)


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# -- schema ----------------------------------------------------------------------------------------
def cmd_schema_init(args: argparse.Namespace) -> None:
    from linkage.jobs._profiles import key_frequency_lines, with_default_match_keys

    columns = [c.strip() for c in args.columns.split(",") if c.strip()]
    if not columns:
        raise SchemaError("--columns: name at least one column")
    out = Path(args.out)
    if out.exists() and not args.force:
        raise SchemaError(f"{out}: already exists (pass --force to replace it)")
    schema = Schema.for_columns(columns, project=args.project, group_filters=args.field_scoring)
    records = None
    if args.sample:
        records = read_records(args.sample, id_column=args.id_column, columns=schema.columns, encoding=args.encoding)
    if not (args.field_scoring or args.record_filter):
        schema = with_default_match_keys(schema, records)  # a large population gets its keys
    if records is not None:  # measure each key's value frequencies before anyone encodes with it
        lines, refused = key_frequency_lines(records, schema, args.sample)
        for line in lines:
            _print(line)
        if refused:
            raise SchemaError(f"{args.sample}: {refused}; drop or narrow the key (edit the schema) and try again")
    out.write_text(schema.to_toml(), encoding="utf-8")
    _print(f"wrote {out}: project {schema.project}, {len(schema.fields)} fields, fingerprint {schema.fingerprint}")
    if schema.match_keys:
        _print(
            f"  match keys ({len(schema.match_keys)}): records are compared only inside the scope of a key they agree on exactly"
        )
        for key in schema.match_keys:
            _print(f"    {key.name:<26} {' + '.join(key.parts)}{_refined(key.refine)}")
    elif schema.group_filters:
        _print("  field scoring: group filters on; a curious coordinator can re-identify nearly every record (README: Privacy)")
    else:
        _print(
            "  XOR-folded record filter: any two records compare; its similarity graph is attackable at scale (README: Privacy)"
        )
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
    if not schema.match_keys:
        _print(
            f"filter       {schema.filter.bits} bits -> {schema.output_bits} bits out, {schema.filter.hashes} hashes at weight 1"
        )
    _print(f"profile      {schema.profile}")
    if schema.match_keys:
        from linkage.jobs._profiles import checked_match_keys

        checked_match_keys(schema)
        _print(f"match keys   {len(schema.match_keys)}; token cap {schema.token_cap} records per value and agency")
        for key in schema.match_keys:
            _print(f"  {key.name:<26} {' + '.join(key.parts)}{_refined(key.refine)}")
    else:
        _print(f"hardening    {', '.join(applied) or 'none'}")
    for spec in schema.fields:
        _print(f"  {spec.name:<20} {spec.kind:<9} group {spec.group:<8} weight {spec.weight} ({schema.hashes_for(spec)} hashes)")


# -- keys ------------------------------------------------------------------------------------------
def cmd_keys_new(args: argparse.Namespace) -> None:
    secret = Secret.generate()
    secret.write(args.out)
    _print(f"wrote {args.out} (32 random bytes, mode 0600), fingerprint {secret.fingerprint}")
    _print("share it with the project's agencies only; never with the coordinator")


def _node_tls(args: argparse.Namespace) -> tuple[NodeConfig, TlsMaterial]:
    from linkage.jobs._config import load_node_config

    config = load_node_config(args.config)
    return config, config.tls.load()


def cmd_keys_publish(args: argparse.Namespace) -> None:
    from linkage.protocol._keyshare import publish_card

    config, tls = _node_tls(args)
    card = publish_card(config, tls, args.coordinator, coordinator=args.coordinator_name)
    _print(f"published the key card of {config.agency}: agreement key {card.agreement_key_fingerprint}")
    _print("read this fingerprint to the other agencies over another channel; they see it when they share")


def cmd_keys_share(args: argparse.Namespace) -> None:
    from linkage.protocol._keyshare import share_secret

    config, tls = _node_tls(args)
    recipients = [a.strip() for a in args.to.split(",") if a.strip()]
    info = share_secret(
        config, tls, args.coordinator, project=args.project, recipients=recipients, epoch=args.epoch,
        coordinator=args.coordinator_name,
    )  # fmt: skip
    _print(
        f"shared a new secret for project {info.project} (epoch {info.epoch}) with {', '.join(r for r in recipients if r != config.agency)}"
    )
    _print(f"stored in {config.secret}, fingerprint {info.fingerprint}; the coordinator relayed copies it cannot open")


def cmd_keys_receive(args: argparse.Namespace) -> None:
    from linkage.protocol._keyshare import receive_secret

    config, tls = _node_tls(args)
    trusted = [a.strip() for a in args.sender.split(",") if a.strip()]
    info = receive_secret(
        config, tls, args.coordinator, project=args.project, trusted_senders=trusted, expected_epoch=args.epoch,
        coordinator=args.coordinator_name,
    )  # fmt: skip
    _print(f"received the secret of project {info.project} (epoch {info.epoch}) from {info.sender}")
    _print(f"stored in {config.secret}, fingerprint {info.fingerprint}: compare it with {info.sender}'s")


# -- encode ----------------------------------------------------------------------------------------
def cmd_encode(args: argparse.Namespace) -> None:
    schema = Schema.load(args.schema)
    if args.project and args.project != schema.project:
        schema = Schema.from_dict({**schema.to_dict(), "project": {"id": args.project}}, source="--project")
    if args.token_cap is not None:
        if not schema.match_keys:
            raise LinkageError("--token-cap: the schema has no match keys (the record-filter profiles have no cap)")
        schema = Schema.from_dict({**schema.to_dict(), "frequency": {"token_cap": args.token_cap}}, source="--token-cap")
    secret = Secret.from_file(args.secret)
    encoded = encode_file(
        Path(args.input), Path(args.out), schema, secret, id_column=args.id_column, encoding=args.encoding,
        secret_path=Path(args.secret), progress=_stderr,
    )  # fmt: skip
    _print(encoded.summary())


# -- link ----------------------------------------------------------------------------------------
def cmd_link(args: argparse.Namespace) -> None:
    sources = read_sources([Path(p) for p in args.encodings])
    duplicates = _duplicate_sources(args.duplicates, list(sources))
    threshold = args.threshold
    if args.labels:  # reviewed pairs suggest the match threshold, unless one is given
        from linkage.matching._labels import threshold_from_labels_file

        suggested = threshold_from_labels_file(args.labels)
        _stderr(
            f"labels: {suggested.line()}"
            if suggested
            else "labels: need pairs judged both same and not the same to suggest a threshold"
        )
        if suggested and threshold is None:
            threshold = suggested.threshold
    settings = LinkSettings(
        threshold=threshold, review_threshold=args.review_threshold, scoring=args.scoring, blocking=args.blocking,
        one_per_source=not args.many_per_source, engine=args.engine, duplicates=duplicates,
    )  # fmt: skip
    started = time.perf_counter()
    result = link_sources(
        sources, settings, progress=_stderr if sum(len(e) for e in sources.values()) > PROGRESS_ABOVE_RECORDS else None
    )
    elapsed = time.perf_counter() - started
    out, clusters = Path(args.out), Path(args.clusters) if args.clusters else None
    write_link_files(
        result, out, clusters=clusters, candidates=Path(args.candidates) if args.candidates else None,
        report=Path(args.report) if args.report else None,
    )  # fmt: skip
    _print(result.summary(elapsed, out, clusters))


def _duplicate_sources(asked: str | None, names: list[str]) -> frozenset[str]:
    """``--duplicates``: ``all`` or source names (a lone source is always searched for duplicates)."""
    if not asked:
        return frozenset()
    wanted = names if asked == "all" else [n.strip() for n in asked.split(",") if n.strip()]
    unknown = [n for n in wanted if n not in names]
    if unknown:
        raise LinkageError(f"--duplicates: no source named {unknown[0]!r} (sources: {', '.join(names)})")
    return frozenset(wanted)


def cmd_evaluate(args: argparse.Namespace) -> None:
    pairs = read_pairs(args.pairs)
    truth = read_truth(args.truth)
    sources = set(pairs.get_column("source_a")) | set(pairs.get_column("source_b"))
    own = sorted(set(pairs.filter(pl.col("source_a") == pl.col("source_b")).get_column("source_a")))
    for band in ("match", "match+possible"):
        chosen = pairs.filter(pl.col("band") == "match") if band == "match" else pairs
        if len(sources) != 1:
            _print(f"{band:<15} {pair_quality(chosen, truth).line()}")
        if own:  # pairs within a source: its duplicates, judged against the truth's duplicates of those sources
            _print(f"{'duplicates ' + band:<26} {duplicate_quality(chosen, truth, own).line()}")
    if args.candidates:
        b = blocking_quality(read_candidates(args.candidates), truth)
        _print(
            f"{'candidates':<15} pairs completeness {b.pairs_completeness:.4f}  reduction ratio {b.reduction_ratio:.6f}"
            f"  ({b.candidates:,} candidate pairs of {b.possible:,}; {b.true_found:,} of {b.true_total:,} true pairs)"
        )


def cmd_privacy_report(args: argparse.Namespace) -> None:
    from linkage.attacks import privacy_report
    from linkage.attacks._privacy_report import TARGET_REIDENTIFIED

    schema = Schema.load(args.schema)
    people = None
    if args.people:
        if not args.id_column:
            raise InputError("--people needs --id-column: the column that identifies each person")
        people = read_records(args.people, id_column=args.id_column, columns=schema.columns)
    report = privacy_report(
        schema, people=people, records=args.records, overlap=args.overlap, known_share=args.known,
        agency_people=args.agency_people, seed=args.seed, progress=_stderr,
    )  # fmt: skip
    source = args.people or "generated people (linkage's synthetic population)"
    _print(f"privacy report for {args.schema} (fingerprint {schema.fingerprint})")
    _print(f"  attacked: {report.records:,} records a list from {source}, {report.overlap:.0%} on both lists,"
           f" {report.known_share:.0%} of records in pairs the attacker already knows (graph attack)")  # fmt: skip
    _print(f"  {'attack':<10} {'view':<10} {'re-identified':>13} {'precision':>10} {'seconds':>8}")
    for r in report.results:
        _print(f"  {r.attack:<10} {r.view:<10} {r.reidentified:>13.1%} {r.precision:>10.1%} {r.seconds:>8.1f}")
    worst = report.worst
    verdict = "meets" if worst.reidentified <= TARGET_REIDENTIFIED else "misses"
    _print(f"worst: the {worst.attack} attack on the {worst.view} view re-identifies {worst.reidentified:.1%}"
           f" ({verdict} the aim of at most {TARGET_REIDENTIFIED:.0%})")  # fmt: skip
    _print("linkage with these settings (link's defaults): " + ", ".join(f"F1 {name} {f1:.4f}" for name, f1 in report.f1.items()))


# -- pki, node, coordinator, job ------------------------------------------------------------------
def cmd_pki_init(args: argparse.Namespace) -> None:
    from linkage.trust._pki import init_ca

    path = init_ca(args.dir)
    _print(f"wrote {path} and {Path(args.dir) / 'ca.key'} (keep the key offline; it issues every party's certificate)")


def cmd_pki_issue(args: argparse.Namespace) -> None:
    from linkage.trust._pki import issue

    cert, key = issue(args.dir, role=args.role, name=args.name, hosts=tuple(args.host or ("localhost", "127.0.0.1")))
    _print(f"wrote {cert} and {key}: role {args.role}, name {args.name}")


def cmd_node_serve(args: argparse.Namespace) -> None:
    from linkage.jobs._config import load_node_config
    from services._lifecycle import serve_until_stopped
    from services.node import start_node

    config = load_node_config(args.config, listen=args.listen)
    tls = config.tls.load()
    serve_until_stopped(
        lambda: start_node(config, tls, on_results=lambda job, path: _print(f"results of {job} stored in {path}")),
        f"node {config.agency}",
        _print,
    )


def cmd_coordinator_serve(args: argparse.Namespace) -> None:
    from linkage.jobs._config import load_coordinator_config
    from services._lifecycle import serve_until_stopped
    from services.coordinator import start_coordinator

    config = load_coordinator_config(args.config, listen=args.listen)
    tls = config.tls.load()
    serve_until_stopped(lambda: start_coordinator(config, tls), f"coordinator {config.name}", _print)


def _coordinator_client(args: argparse.Namespace) -> tuple[str, TlsMaterial, str]:
    from linkage.jobs._config import load_coordinator_config

    config = load_coordinator_config(args.config)
    address = args.coordinator or config.listen
    if address.endswith(":0"):
        raise LinkageError(f"{args.config}: coordinator.listen has no fixed port; pass --coordinator HOST:PORT")
    return address, config.tls.load(), config.name


def cmd_job_deliver(args: argparse.Namespace) -> None:
    from linkage.protocol._clients import resume_job_remotely
    from services.coordinator import follow_job

    address, tls, name = _coordinator_client(args)
    state = follow_job(resume_job_remotely(address, tls, args.job, coordinator=name), _print, _stderr)
    if state != "done":
        raise LinkageError(f"job {args.job} is still not finished (see above)")


def _job_line(job: pb.JobStatus) -> str:
    released = f"{len(job.released)}/{len(job.agencies)} released"
    return f"{job.job_id}  {job.state:<10}  {job.created}  {','.join(job.agencies)}  {released}"


def cmd_job_list(args: argparse.Namespace) -> None:
    from linkage.protocol._clients import list_jobs

    address, tls, name = _coordinator_client(args)
    jobs = list_jobs(address, tls, coordinator=name)
    _print(f"{'job':<28}  {'state':<10}  {'created':<25}  agencies  results")
    for job in jobs:
        _print(_job_line(job))


def cmd_job_show(args: argparse.Namespace) -> None:
    from linkage.protocol._clients import job_status

    address, tls, name = _coordinator_client(args)
    job = job_status(address, tls, args.job, coordinator=name)
    _print(f"job:        {job.job_id}")
    _print(f"state:      {job.state}")
    _print(f"created:    {job.created}")
    _print(f"finished:   {job.finished or '-'}")
    _print(f"agencies:   {', '.join(job.agencies)}")
    _print(f"delivered:  {', '.join(job.delivered) or '-'} (pending at the node until the job is finished)")
    _print(f"released:   {', '.join(job.released) or '-'}")
    if job.error:
        _print(f"error:      {job.error}")
    if job.summary:
        _print(f"summary:    {job.summary}")
    if job.state == "failed" or (job.state == "done" and len(job.released) < len(job.agencies)):
        _print(f"resume:     linkage job deliver --config {args.config} --job {job.job_id}")


def cmd_job_run(args: argparse.Namespace) -> None:
    from linkage.protocol._clients import job_request, run_job_remotely
    from services.coordinator import follow_job

    address, tls, name = _coordinator_client(args)
    agencies = [a.strip() for a in args.agencies.split(",") if a.strip()]
    request = job_request(agencies, threshold=args.threshold, review_threshold=args.review_threshold)
    state = follow_job(run_job_remotely(address, tls, request, coordinator=name), _print, _stderr)
    if state != "done":
        raise LinkageError("the job failed (see above)")


def cmd_query(args: argparse.Namespace) -> None:
    from linkage.jobs._agency import query_records
    from linkage.protocol._clients import ask_index

    config, tls = _node_tls(args)
    records = query_records(config, record=args.record, path=Path(args.input) if args.input else None)
    for line in ask_index(config, tls, args.coordinator, records, coordinator=args.coordinator_name):
        _print(line)


# -- audit ---------------------------------------------------------------------------------------
def _public_key_for(args: argparse.Namespace) -> AuditPublicKey:
    from linkage.trust._audit import AUDIT_PUBLIC_KEY_FILE, load_public_key

    return load_public_key(args.key or Path(args.log).parent / AUDIT_PUBLIC_KEY_FILE)


def cmd_audit_verify(args: argparse.Namespace) -> None:
    from linkage.trust._audit import format_anchor, load_public_key, parse_anchor, verify

    expected = parse_anchor(args.expect_last) if args.expect_last else None
    key = load_public_key(args.key)
    report = verify(args.log, key, expected_last=expected)
    trusted = f"checked against the key you gave, {args.key} (fingerprint {key.fingerprint})"
    if not report.ok:
        raise LinkageError(f"{args.log}: {report.reason}; {trusted}")
    _print(f"{args.log}: {report.reason}")
    _print(trusted)
    if report.last_verified:
        _print(f"anchor to record for the next check: --expect-last {format_anchor(report.last_verified)}")


def _audit_entries(args: argparse.Namespace) -> tuple[AuditLog, list[Entry]]:
    from linkage.trust._audit import AuditLog, parse_time, verify

    log = AuditLog(args.log, None)
    report = verify(args.log, _public_key_for(args))
    if not report.ok:
        _stderr(f"linkage: warning: {args.log} does not verify: {report.reason}")
    filters = {"job": args.job, "actor": args.agency, "action": args.action}
    filters = {k: v for k, v in filters.items() if v}
    if args.since:
        filters["since"] = parse_time(args.since)
    if args.until:
        filters["until"] = parse_time(args.until)
    return log, log.entries(**filters)


def cmd_audit_list(args: argparse.Namespace) -> None:
    from linkage.trust._audit import entries_table

    _, entries = _audit_entries(args)
    _print(entries_table(entries))


def cmd_audit_show(args: argparse.Namespace) -> None:
    import json

    from linkage.trust._audit import AuditLog

    entry = AuditLog(args.log, None).entry(args.seq)
    _print(json.dumps(entry.as_record(), indent=2, ensure_ascii=False, default=str))


def cmd_audit_export(args: argparse.Namespace) -> None:
    from linkage.trust._audit import entries_jsonl

    _, entries = _audit_entries(args)
    text = entries_jsonl(entries)
    if args.out:
        Path(args.out).write_text(text + ("\n" if text else ""), encoding="utf-8")
        _print(f"wrote {len(entries):,} entries to {args.out}")
    else:
        print(text, flush=True)


# -- review pages ----------------------------------------------------------------------------------
def cmd_review(args: argparse.Namespace) -> None:
    import getpass

    from services.review import ServeConfig, export_labels, serve

    if args.review_command == "export":
        rows = export_labels(Path(args.dir), Path(args.out), job=args.job)
        _print(f"wrote {rows:,} decisions to {args.out}")
        return
    optional = {name: Path(value) for name in ("tls_cert", "tls_key", "ca") if (value := getattr(args, name))}
    serve(
        ServeConfig(data_dir=Path(args.dir), listen=args.listen, audit_public_key=Path(args.key) if args.key else None,
                    local_actor=f"local/{getpass.getuser()}", **optional),
        say=_print,
    )  # fmt: skip


# -- demo ------------------------------------------------------------------------------------------
def cmd_demo(args: argparse.Namespace) -> None:
    from services.demo import run_demo

    run_demo(Path(args.workdir) if args.workdir else None, args.people, _print, _stderr)


# Help texts made from the defaults themselves, so that they cannot drift from them.
_FS, _DICE = DEFAULT_THRESHOLDS["fs"], DEFAULT_THRESHOLDS["dice"]
_KEYS = (SCOPED_MATCH_THRESHOLD, SCOPED_REVIEW_THRESHOLD)
THRESHOLD_DEFAULTS = (
    f"{_KEYS[0]:g} for match-key encodings and {_FS[0]:g} for fs on filters, match probabilities; for dice"
    f" {_DICE[0]:g}, raised for large sources where more unrelated pairs would reach it (the summary says so)"
)
REVIEW_DEFAULTS = f"{_KEYS[1]:g} for match-key encodings, {_FS[1]:g} for fs on filters; for dice the match threshold"


# -- parser ----------------------------------------------------------------------------------------
def _command_group(
    commands: argparse._SubParsersAction[argparse.ArgumentParser], name: str, text: str
) -> argparse._SubParsersAction[argparse.ArgumentParser]:
    """A command whose subcommands do the work (``linkage NAME SUBCOMMAND``)."""
    return commands.add_parser(name, help=text).add_subparsers(dest=f"{name}_command", required=True, metavar="SUBCOMMAND")


COORDINATOR_NAME_HELP = "the coordinator's certificate name (default: the first of node.coordinators)"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="linkage", description="Privacy-preserving record linkage with keyed Bloom filters.")
    parser.add_argument("--version", action="version", version=f"linkage {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    schema = _command_group(commands, "schema", "write or inspect a linkage schema")
    init = schema.add_parser("init", help="write a schema for the listed columns, kinds chosen from their names")
    init.add_argument("--columns", required=True, help="comma-separated column names to encode")
    init.add_argument("--out", required=True, help="schema file to write (TOML)")
    init.add_argument("--project", help="project id the keys are bound to (default: a random one)")
    init.add_argument("--force", action="store_true", help="replace an existing schema file")
    profile = init.add_mutually_exclusive_group()
    profile.add_argument("--field-scoring", action="store_true",
                         help="instead of match keys: record and per-field-group filters any two of which compare; re-identifiable (README: Privacy)")  # fmt: skip
    profile.add_argument("--record-filter", action="store_true",
                         help="instead of match keys: one XOR-folded record filter any two of which compare (the default before match keys)")  # fmt: skip
    init.add_argument(
        "--sample",
        help="a CSV/Parquet of the agency's records: measure each match key's value frequencies and refuse keys too common",
    )
    init.add_argument("--id-column", default="rec_id", help="the sample's record id column (default rec_id)")
    init.add_argument("--encoding", default="utf-8", help="the sample's text encoding")
    init.set_defaults(func=cmd_schema_init)
    show = schema.add_parser("show", help="validate a schema and print its fields and fingerprint")
    show.add_argument("--schema", required=True)
    show.set_defaults(func=cmd_schema_show)

    keys = _command_group(commands, "keys", "manage the project's linkage secret")
    new = keys.add_parser("new", help="write a fresh 32-byte secret (mode 0600; never overwrites)")
    new.add_argument("--out", required=True)
    new.set_defaults(func=cmd_keys_new)

    publish = keys.add_parser("publish", help="publish this agency's key card (its agreement key, signed by its certificate)")
    publish.add_argument("--config", required=True, help="node.toml")
    publish.add_argument("--coordinator", required=True, help="HOST:PORT of the coordinator that relays")
    publish.add_argument("--coordinator-name", help=COORDINATOR_NAME_HELP)
    publish.set_defaults(func=cmd_keys_publish)
    share = keys.add_parser("share", help="make a project secret and wrap it for the named agencies' key cards")
    share.add_argument("--config", required=True, help="node.toml (the secret is stored at its data.secret)")
    share.add_argument("--coordinator", required=True, help="HOST:PORT of the coordinator that relays")
    share.add_argument("--coordinator-name", help=COORDINATOR_NAME_HELP)
    share.add_argument("--project", required=True)
    share.add_argument("--to", required=True, help="comma-separated agencies (this one may be listed too)")
    share.add_argument("--epoch", type=int, default=1, help="key epoch of this secret (default 1; a new secret, a new epoch)")
    share.set_defaults(func=cmd_keys_share)
    receive = keys.add_parser("receive", help="fetch, check and store the project secret wrapped for this agency")
    receive.add_argument("--config", required=True, help="node.toml (the secret is stored at its data.secret)")
    receive.add_argument("--coordinator", required=True, help="HOST:PORT of the coordinator that relays")
    receive.add_argument("--coordinator-name", help=COORDINATOR_NAME_HELP)
    receive.add_argument("--project", required=True)
    receive.add_argument(
        "--sender",
        required=True,
        help="accept the secret only from these agencies (comma-separated): the agency you agreed would share it",
    )
    receive.add_argument("--epoch", type=int, help="accept only this key epoch")
    receive.set_defaults(func=cmd_keys_receive)

    enc = commands.add_parser("encode", help="encode a CSV or Parquet file into keyed Bloom filters (Parquet)")
    enc.add_argument("--schema", required=True, help="schema file (TOML)")
    enc.add_argument("--secret", required=True, help="the project's secret file")
    enc.add_argument("--input", required=True, help="records: CSV with a header, or Parquet")
    enc.add_argument("--id-column", required=True, help="column holding each record's unique id")
    enc.add_argument("--out", required=True, help="encodings file to write (Parquet); rejects go next to it")
    enc.add_argument("--project", help="project id (default: the schema's)")
    enc.add_argument("--encoding", default="utf-8", help="text encoding of a CSV input (default utf-8)")
    enc.add_argument(
        "--token-cap",
        type=int,
        help="match keys: override the schema's frequency cap (2 or more keeps tokens the source's own records share,"
        " for finding its duplicates; such a file links only with files of the same cap)",
    )
    enc.set_defaults(func=cmd_encode)

    lk = commands.add_parser(
        "link",
        help="link encodings of two or more sources, or find one source's duplicates (a source is named by its file's stem)",
    )
    lk.add_argument("encodings", nargs="+", help="encodings files (Parquet) from `linkage encode`")
    lk.add_argument("--threshold", type=float, help=f"match threshold (default {THRESHOLD_DEFAULTS})")
    lk.add_argument(
        "--review-threshold",
        type=float,
        help=f"lower bound of possible matches for review (default {REVIEW_DEFAULTS})",
    )
    lk.add_argument("--blocking", choices=("auto", "none", "lsh"), default="auto", help="auto: all pairs while few, LSH beyond")
    lk.add_argument("--scoring", choices=("auto", "fs", "dice"), default="auto",
                    help="fs: Fellegi-Sunter match probability from per-group Dice, weights learned by EM; dice: record Dice;"
                         " auto (default): fs when the encodings carry group filters, else dice")  # fmt: skip
    lk.add_argument("--many-per-source", action="store_true", help="let a cluster hold several records of one source")
    lk.add_argument(
        "--engine",
        choices=sorted(ENGINES),
        default=DEFAULT_ENGINE,
        help=f"what compares the encodings (default {DEFAULT_ENGINE})",
    )
    lk.add_argument(
        "--duplicates",
        metavar="SOURCES",
        help="all, or source names (comma-separated): also pair each one's own records and let them share a cluster"
        " (match keys; a lone source always)",
    )
    lk.add_argument("--out", required=True, help="pairs CSV: source_a,id_a,source_b,id_b,similarity,band")
    lk.add_argument("--clusters", help="clusters CSV: cluster_id,source,record_id")
    lk.add_argument("--candidates", help="candidates CSV: every scored pair (source_a,id_a,source_b,id_b,score), for `evaluate`")
    lk.add_argument(
        "--report", help="the run as JSON: thresholds used, per pair of sources its blocking and each candidate rule as it ran"
    )
    lk.add_argument(
        "--labels",
        help="labels CSV from `review export`: reviewed pairs suggest the match threshold (used unless --threshold is given)",
    )
    lk.set_defaults(func=cmd_link)

    ev = commands.add_parser("evaluate", help="precision, recall, F1 and F* of a pairs file against known truth")
    ev.add_argument("--pairs", required=True, help="pairs CSV from `linkage link`")
    ev.add_argument("--truth", required=True, help="truth CSV: record_id,source,entity_id")
    ev.add_argument("--candidates", help="candidates CSV from `link --candidates`: adds pairs completeness and reduction ratio")
    ev.set_defaults(func=cmd_evaluate)

    pr = commands.add_parser(
        "privacy-report",
        help="how many records two published attacks re-identify from a schema's encodings, beside linkage quality",
    )
    pr.add_argument("--schema", required=True, help="the schema whose settings are attacked")
    pr.add_argument(
        "--people",
        help="a population to attack (CSV or Parquet, the schema's columns, one row per person); default: generated people",
    )
    pr.add_argument("--id-column", help="with --people: the column that identifies each person")
    pr.add_argument(
        "--records", type=int, default=1000, help="records on each list, the encoded one and the attacker's (default 1000)"
    )
    pr.add_argument("--overlap", type=float, default=1.0, help="share of people on both lists (default 1.0: the worst case)")
    pr.add_argument(
        "--known", type=float, default=0.05, help="share of records in pairs the attacker already knows (default 0.05)"
    )
    pr.add_argument(
        "--agency-people", type=int, default=1000, help="people behind the generated agencies linked for F1 (default 1000)"
    )
    pr.add_argument("--seed", type=int, default=7, help="draws the lists, the secret and the attacks' randomness")
    pr.set_defaults(func=cmd_privacy_report)

    pki = _command_group(commands, "pki", "the task-force CA and every party's certificate")
    pki_init = pki.add_parser("init", help="create the task-force CA (ca.pem, ca.key)")
    pki_init.add_argument("--dir", required=True)
    pki_init.set_defaults(func=cmd_pki_init)
    pki_issue = pki.add_parser("issue", help="issue a certificate and key with a role and a name")
    pki_issue.add_argument("--dir", required=True, help="the CA's folder; NAME.pem and NAME.key are written there")
    pki_issue.add_argument("--role", required=True, choices=("node", "coordinator", "auditor"))
    pki_issue.add_argument("--name", required=True, help="the party's name, e.g. police")
    pki_issue.add_argument(
        "--host", action="append", help="a host name or IP the party serves on (repeatable; default localhost, 127.0.0.1)"
    )
    pki_issue.set_defaults(func=cmd_pki_issue)

    for role, text, serve_text, func in (
        ("node", "run an agency node", "serve this agency's encodings to its coordinator and receive results", cmd_node_serve),
        ("coordinator", "run the coordinator", "serve jobs: pull encodings, link, deliver results", cmd_coordinator_serve),
    ):
        process = _command_group(commands, role, text)
        serve_parser = process.add_parser("serve", help=serve_text)
        serve_parser.add_argument("--config", required=True, help=f"{role}.toml")
        serve_parser.add_argument("--listen", help=f"HOST:PORT (default: the config's {role}.listen)")
        serve_parser.set_defaults(func=func)

    query = commands.add_parser(
        "query", help="ask the coordinator's intake index which partners may be named as holding a person"
    )
    query.add_argument("--config", required=True, help="node.toml (its schema, secret and certificate)")
    query.add_argument("--coordinator", required=True, help="HOST:PORT of the coordinator")
    query.add_argument("--coordinator-name", help=COORDINATOR_NAME_HELP)
    asked = query.add_mutually_exclusive_group(required=True)
    asked.add_argument("--record", help='one record: "given_name=...,surname=...,date_of_birth=..." (schema field names)')
    asked.add_argument("--input", help="a small CSV or Parquet laid out as the node's input (at most 1000 records)")
    query.set_defaults(func=cmd_query)

    job = _command_group(commands, "job", "run linkage jobs on the coordinator")
    job_run = job.add_parser("run", help="ask the coordinator to link the named agencies; follow its progress")
    job_run.add_argument("--config", required=True, help="coordinator.toml (its certificate and address)")
    job_run.add_argument("--agencies", required=True, help="comma-separated agency names from the config")
    job_run.add_argument("--coordinator", help="HOST:PORT of the coordinator (default: the config's coordinator.listen)")
    job_run.add_argument("--threshold", type=float, help=f"match threshold (default: the config's, else {THRESHOLD_DEFAULTS})")
    job_run.add_argument(
        "--review-threshold",
        type=float,
        help=f"review threshold (default: the config's, else {REVIEW_DEFAULTS})",
    )
    job_run.set_defaults(func=cmd_job_run)
    for name, text, func in (
        (
            "deliver",
            "resume an unfinished job: fetch and link again, or make the missing deliveries and release them",
            cmd_job_deliver,
        ),
        ("list", "the coordinator's jobs, newest first, with their state", cmd_job_list),
        ("show", "one job: state, who holds its results, its error, how to resume it", cmd_job_show),
    ):
        sub = job.add_parser(name, help=text)
        sub.add_argument("--config", required=True, help="coordinator.toml (its certificate and address)")
        sub.add_argument("--coordinator", help="HOST:PORT of the coordinator (default: the config's coordinator.listen)")
        if name != "list":
            sub.add_argument("--job", required=True, help="the job id")
        sub.set_defaults(func=func)

    audit = _command_group(commands, "audit", "verify and read a tamper-evident audit log")
    audit_verify = audit.add_parser("verify", help="recompute the hash chain and every signature; name the first bad entry")
    audit_verify.add_argument("--log", required=True, help="audit.db")
    audit_verify.add_argument(
        "--key", required=True, help="the log's public key as you received it from its party (never trust the one beside the log)"
    )
    audit_verify.add_argument("--expect-last", help="SEQ:HASH recorded at an earlier check: detects a cut tail")
    audit_verify.set_defaults(func=cmd_audit_verify)
    for name, func, text in (
        ("list", cmd_audit_list, "entries as a table"),
        ("export", cmd_audit_export, "entries as JSON Lines"),
    ):
        sub = audit.add_parser(name, help=text)
        sub.add_argument("--log", required=True)
        sub.add_argument("--key", help="the log's public key (default: audit.pub beside the log)")
        sub.add_argument("--job", help="only this job")
        sub.add_argument("--agency", help="only entries by this actor (certificate subject, e.g. node/police)")
        sub.add_argument("--action", help='only this action, e.g. "results delivered"')
        sub.add_argument("--since", help="from this time (ISO 8601, inclusive)")
        sub.add_argument("--until", help="before this time (ISO 8601)")
        if name == "export":
            sub.add_argument("--out", help="file to write (default: standard output)")
        sub.set_defaults(func=func)
    audit_show = audit.add_parser("show", help="one entry in full")
    audit_show.add_argument("--log", required=True)
    audit_show.add_argument("seq", type=int)
    audit_show.set_defaults(func=cmd_audit_show)

    review = _command_group(commands, "review", "web pages for auditors and data stewards on a data folder")
    review_serve = review.add_parser("serve", help="serve the review pages of a coordinator's or a node's data folder")
    review_serve.add_argument("--dir", required=True, help="the data folder (a node's holds node.toml)")
    review_serve.add_argument(
        "--listen", default="127.0.0.1:8765", help="HOST:PORT (default 127.0.0.1:8765; other than loopback only with TLS)"
    )
    review_serve.add_argument("--key", help="the audit log's public key (default: audit.pub in the folder)")
    review_serve.add_argument(
        "--tls-cert", help="this party's certificate: serve HTTPS and admit only clients with a certificate"
    )
    review_serve.add_argument("--tls-key", help="the key of --tls-cert")
    review_serve.add_argument(
        "--ca", help="the task-force CA: clients need its auditor (coordinator) or this agency's node certificate"
    )
    review_export = review.add_parser("export", help="write a node's review decisions as a labels CSV (for `link --labels`)")
    review_export.add_argument("--dir", required=True, help="the node's data folder (holds reviews.db)")
    review_export.add_argument("--out", required=True, help="labels CSV: job,record_id,reference,score,decision,decided")
    review_export.add_argument("--job", help="only this job")
    for sub in (review_serve, review_export):
        sub.set_defaults(func=cmd_review)

    demo = commands.add_parser("demo", help="a whole task force on loopback: CA, three agency nodes, a coordinator, one job")
    demo.add_argument("--workdir", help="keep everything in this folder (default: a temporary one)")
    demo.add_argument("--people", type=int, default=2000, help="synthetic people to spread over the agencies (default 2000)")
    demo.set_defaults(func=cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except BrokenPipeError:  # `linkage audit list | head`: the reader has all it wanted
        with contextlib.suppress(OSError, AttributeError, ValueError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except LinkageError as exc:
        _stderr(f"linkage: error: {exc}")
        return 1
    except KeyboardInterrupt:
        _stderr("linkage: interrupted")
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
