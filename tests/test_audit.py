"""The audit log: a real SQLite file, tampered with the way an insider would, through raw sqlite3."""

from __future__ import annotations

import itertools
import json
import sqlite3
import stat
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from linkage.errors import LinkageError
from linkage.trust._audit import (
    GENESIS_HASH,
    MAX_DETAIL_TEXT,
    AuditEntryError,
    AuditError,
    AuditKey,
    AuditKeyError,
    AuditLog,
    _entry_digest,
    entries_jsonl,
    entries_table,
    format_anchor,
    load_public_key,
    parse_anchor,
    verify,
)

START = datetime(2024, 5, 1, 9, 0, tzinfo=UTC)
KEY = AuditKey.generate()  # one signing key for the module: generating is cheap, but hypothesis runs many examples
OTHER_KEY = AuditKey.generate()
TEXT_COLUMNS = ("time", "actor", "action", "project", "job", "details")


def clock(start: datetime = START, step: timedelta = timedelta(seconds=1)):
    """An injected clock: each call is one step later than the last."""
    ticks = itertools.count()
    return lambda: start + next(ticks) * step


def filled_log(path: Path, entries: int, key: AuditKey = KEY) -> AuditLog:
    log = AuditLog(path, key, now=clock())
    for i in range(1, entries + 1):
        log.append(
            f"CN=agency-{i % 3},O=task-force", "job.submitted" if i % 2 else "job.linked",
            project="proj-1", job=f"job-{i % 4}", details={"records": 100 * i, "threshold": 0.8},
        )  # fmt: skip
    return log


@contextmanager
def insider(path: Path) -> Iterator[sqlite3.Connection]:
    """Raw write access to the file, triggers dropped first: what an insider with the file can do."""
    conn = sqlite3.connect(path)
    try:
        for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'").fetchall():
            conn.execute(f"DROP TRIGGER {name}")
        yield conn
        conn.commit()
    finally:
        conn.close()


def row_of(conn: sqlite3.Connection, seq: int) -> dict[str, object]:
    conn.row_factory = sqlite3.Row
    row = dict(conn.execute("SELECT * FROM entries WHERE seq = ?", (seq,)).fetchone())
    conn.row_factory = None
    return row


def rehash_and_resign(conn: sqlite3.Connection, key: AuditKey, from_seq: int = 1) -> None:
    """Recompute hashes and links from ``from_seq`` on and sign them with ``key``, as a forger would."""
    prev = GENESIS_HASH if from_seq == 1 else row_of(conn, from_seq - 1)["entry_hash"]
    for seq in [s for (s,) in conn.execute("SELECT seq FROM entries WHERE seq >= ? ORDER BY seq", (from_seq,))]:
        row = row_of(conn, seq)
        fields = {c: row[c] for c in ("time", "actor", "action", "project", "job")}
        digest = _entry_digest(seq=seq, **fields, details=json.loads(str(row["details"])), prev_hash=prev)
        conn.execute(
            "UPDATE entries SET prev_hash = ?, entry_hash = ?, signature = ?, key_fingerprint = ? WHERE seq = ?",
            (prev, digest.hex(), key._sign(digest), key.fingerprint, seq),
        )
        prev = digest.hex()


# -- the happy path ----------------------------------------------------------------------------------
def test_appended_entries_chain_sign_and_verify(tmp_path):
    path = tmp_path / "audit.sqlite"
    log = AuditLog(path, KEY, now=clock())
    first = log.append("CN=coordinator", "project.created", project="p1", details={"schema": "ab12cd34ef56ab78"})
    second = log.append("CN=hospital", "encodings.uploaded", project="p1", job="j1", details={"records": 1200})
    assert (first.seq, second.seq) == (1, 2)
    assert first.prev_hash == GENESIS_HASH and second.prev_hash == first.entry_hash
    assert first.time == START and second.time == START + timedelta(seconds=1)
    assert first.key_fingerprint == KEY.fingerprint
    assert log.entries() == [first, second]
    assert log.entry(2) == second and log.head() == (2, second.entry_hash)

    report = verify(path, KEY.public_key)
    assert report.ok and report.checked == 2 and report.first_bad is None
    assert report.last_verified == (2, second.entry_hash)
    assert "2 entries verified" in report.reason
    assert verify(path, KEY.public_key, expected_last=(1, first.entry_hash)).ok
    assert verify(path, KEY.public_key, expected_last=report.last_verified).ok
    assert verify(path, KEY).ok  # the keeper may check its own log with its signing key


def test_the_hash_is_sha256_of_the_documented_canonical_json(tmp_path):
    entry = AuditLog(tmp_path / "a.sqlite", KEY, now=clock()).append("CN=é", "x", details={"b": 1, "a": [0.5, None, True]})
    canonical = (
        '{"action":"x","actor":"CN=é","details":{"a":[0.5,null,true],"b":1},"job":"",'
        f'"prev_hash":"{GENESIS_HASH}","project":"","seq":1,"time":"2024-05-01T09:00:00.000000+00:00"}}'
    )
    import hashlib

    assert entry.entry_hash == hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def test_an_empty_log_verifies_with_nothing_checked(tmp_path):
    path = tmp_path / "audit.sqlite"
    AuditLog(path, KEY)
    report = verify(path, KEY.public_key)
    assert (report.ok, report.checked, report.first_bad, report.last_verified) == (True, 0, None, None)


@given(
    details=st.dictionaries(
        st.text(min_size=1, max_size=20),
        st.one_of(
            st.none(),
            st.booleans(),
            st.integers(),
            st.floats(allow_nan=False, allow_infinity=False),
            st.text(max_size=40),
            st.lists(st.integers(0, 1000), max_size=5),
        ),  # fmt: skip
        max_size=6,
    ),
    job=st.text(max_size=30),
)
def test_any_fit_details_round_trip_and_verify(details, job):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "audit.sqlite"
        log = AuditLog(path, KEY, now=clock())
        appended = log.append("CN=coordinator", "job.linked", job=job, details=details)
        assert appended.details == details
        assert log.entries() == [appended]
        assert verify(path, KEY.public_key).ok


# -- tampering, each kind detected and named ---------------------------------------------------------
@given(entries=st.integers(1, 10), data=st.data(), column=st.sampled_from(TEXT_COLUMNS))
def test_an_edit_to_any_field_is_named_at_its_entry(entries, data, column):
    target = data.draw(st.integers(1, entries), label="edited entry")
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "audit.sqlite"
        filled_log(path, entries)
        with insider(path) as conn:
            value = row_of(conn, target)[column]
            edited = '{"records":1}' if column == "details" else value.replace("0", "1", 1) + "."
            conn.execute(f"UPDATE entries SET {column} = ? WHERE seq = ?", (edited, target))
        report = verify(path, KEY.public_key)
        assert not report.ok
        assert report.first_bad == target and report.checked == target - 1
        assert report.reason == f"entry {target}: contents do not match its hash (edited)"


def test_an_edit_that_keeps_the_meaning_of_details_but_not_their_text_is_still_an_edit(tmp_path):
    path = tmp_path / "audit.sqlite"
    filled_log(path, 3)
    with insider(path) as conn:
        conn.execute("""UPDATE entries SET details = '{"threshold": 0.8, "records": 200}' WHERE seq = 2""")
    assert verify(path, KEY.public_key).reason == "entry 2: contents do not match its hash (edited)"


def test_an_edit_with_the_entry_rehashed_is_caught_by_its_signature(tmp_path):
    path = tmp_path / "audit.sqlite"
    filled_log(path, 8)
    with insider(path) as conn:
        row = row_of(conn, 7)
        details = {"records": 1, "threshold": 0.8}
        digest = _entry_digest(
            seq=7, **{c: row[c] for c in ("time", "actor", "action", "project", "job")}, details=details,
            prev_hash=row["prev_hash"],
        )  # fmt: skip
        conn.execute(
            "UPDATE entries SET details = ?, entry_hash = ? WHERE seq = 7",
            (json.dumps(details, sort_keys=True, separators=(",", ":")), digest.hex()),
        )
    report = verify(path, KEY.public_key)
    assert report.first_bad == 7
    assert report.reason.startswith("entry 7: signature does not verify with the given key")


def test_a_deleted_entry_is_named(tmp_path):
    path = tmp_path / "audit.sqlite"
    filled_log(path, 8)
    with insider(path) as conn:
        conn.execute("DELETE FROM entries WHERE seq = 5")
    report = verify(path, KEY.public_key)
    assert (report.ok, report.first_bad, report.checked) == (False, 5, 4)
    assert report.reason == "entry 5 missing (deleted) — seq jumps from 4 to 6"
    assert report.last_verified[0] == 4


def test_deleted_runs_and_a_deleted_first_entry_are_named(tmp_path):
    path = tmp_path / "audit.sqlite"
    filled_log(path, 8)
    with insider(path) as conn:
        conn.execute("DELETE FROM entries WHERE seq IN (1, 5, 6)")
    report = verify(path, KEY.public_key)
    assert (report.first_bad, report.checked, report.last_verified) == (1, 0, None)
    assert report.reason == "entry 1 missing (deleted) — log starts at entry 2"
    path2 = tmp_path / "audit2.sqlite"
    filled_log(path2, 8)
    with insider(path2) as conn:
        conn.execute("DELETE FROM entries WHERE seq IN (5, 6)")
    report = verify(path2, KEY.public_key)
    assert (report.first_bad, report.reason) == (5, "entries 5 to 6 missing (deleted) — seq jumps from 4 to 7")


def test_a_deletion_renumbered_to_close_the_gap_is_still_caught(tmp_path):
    path = tmp_path / "audit.sqlite"
    filled_log(path, 6)
    with insider(path) as conn:
        conn.execute("DELETE FROM entries WHERE seq = 3")
        conn.execute("UPDATE entries SET seq = seq - 1 WHERE seq > 3")
    report = verify(path, KEY.public_key)
    assert report.first_bad == 3 and "previous-hash link broken" in report.reason


def test_swapping_two_entries_is_named_as_a_reordering(tmp_path):
    path = tmp_path / "audit.sqlite"
    filled_log(path, 8)
    with insider(path) as conn:
        third, sixth = row_of(conn, 3), row_of(conn, 6)
        columns = [c for c in third if c != "seq"]
        for seq, row in ((3, sixth), (6, third)):
            conn.execute(
                f"UPDATE entries SET {', '.join(f'{c} = ?' for c in columns)} WHERE seq = ?",
                (*(row[c] for c in columns), seq),
            )
    report = verify(path, KEY.public_key)
    assert (report.ok, report.first_bad, report.checked) == (False, 3, 2)
    assert report.reason == "entry 3: previous-hash link broken (reordered or an entry removed) — it links to entry 5"


def test_a_cut_tail_is_caught_only_against_an_anchor(tmp_path):
    path = tmp_path / "audit.sqlite"
    log = filled_log(path, 12)
    anchor = log.head()
    with insider(path) as conn:
        conn.execute("DELETE FROM entries WHERE seq > 10")
    assert verify(path, KEY.public_key).ok  # without an anchor the shorter chain is a valid chain
    report = verify(path, KEY.public_key, expected_last=anchor)
    assert (report.ok, report.first_bad, report.checked) == (False, 11, 10)
    assert report.reason == "log ends at entry 10 but the anchor records entry 12 (truncated: entries 11 to 12 or more were cut)"

    with insider(path) as conn:
        conn.execute("DELETE FROM entries")
    report = verify(path, KEY.public_key, expected_last=anchor)
    assert (report.first_bad, report.reason.split(" but")[0]) == (1, "log is empty")


def test_a_history_rewritten_by_the_key_holder_is_caught_against_an_anchor(tmp_path):
    path = tmp_path / "audit.sqlite"
    log = filled_log(path, 6)
    anchor = (4, log.entry(4).entry_hash)
    with insider(path) as conn:
        conn.execute("""UPDATE entries SET details = '{"records":1}' WHERE seq = 2""")
        rehash_and_resign(conn, KEY, from_seq=2)
    assert verify(path, KEY.public_key).ok  # the key holder can forge a consistent chain...
    report = verify(path, KEY.public_key, expected_last=anchor)  # ...but not one that meets the anchor
    assert report.first_bad == 4
    assert report.reason == "entry 4: hash differs from the anchor (the log was rewritten after the anchor was taken)"


def test_every_entry_resigned_with_another_key_fails_at_entry_1(tmp_path):
    path = tmp_path / "audit.sqlite"
    filled_log(path, 5)
    with insider(path) as conn:
        for seq in range(1, 6):
            digest = bytes.fromhex(row_of(conn, seq)["entry_hash"])
            conn.execute("UPDATE entries SET signature = ? WHERE seq = ?", (OTHER_KEY._sign(digest), seq))
    report = verify(path, KEY.public_key)
    assert (report.ok, report.first_bad, report.checked) == (False, 1, 0)
    assert report.reason == "entry 1: signature does not verify with the given key (re-signed with another key?)"
    assert verify(path, OTHER_KEY.public_key).ok


def test_a_whole_chain_rehashed_consistently_under_another_key_fails_at_entry_1(tmp_path):
    path = tmp_path / "audit.sqlite"
    filled_log(path, 5)
    with insider(path) as conn:
        conn.execute("""UPDATE entries SET actor = 'CN=someone-else', details = '{}'""")
        rehash_and_resign(conn, OTHER_KEY)
    assert verify(path, OTHER_KEY.public_key).ok  # a perfectly consistent forgery...
    report = verify(path, KEY.public_key)  # ...under the wrong key
    assert (report.ok, report.first_bad) == (False, 1)
    assert report.reason == (
        "entry 1: signature does not verify with the given key (re-signed with another key?);"
        f" the entry names key {OTHER_KEY.fingerprint}, the given key is {KEY.fingerprint}"
    )


def test_a_replaced_file_signed_by_another_key_fails_at_entry_1(tmp_path):
    path = tmp_path / "audit.sqlite"
    filled_log(path, 3)
    forged = tmp_path / "forged.sqlite"
    filled_log(forged, 3, key=OTHER_KEY)
    forged.replace(path)
    assert verify(path, KEY.public_key).first_bad == 1


# -- the triggers ----------------------------------------------------------------------------------
def test_update_delete_and_out_of_order_insert_are_refused_while_the_triggers_stand(tmp_path):
    path = tmp_path / "audit.sqlite"
    filled_log(path, 3)
    conn = sqlite3.connect(path)
    try:
        with pytest.raises(sqlite3.DatabaseError, match="append-only: UPDATE refused"):
            conn.execute("UPDATE entries SET actor = 'x' WHERE seq = 2")
        with pytest.raises(sqlite3.DatabaseError, match="append-only: DELETE refused"):
            conn.execute("DELETE FROM entries WHERE seq = 3")
        copy = "SELECT time, actor, action, project, job, details, prev_hash, entry_hash, signature, key_fingerprint FROM entries WHERE seq = 1"
        for statement in (
            f"INSERT OR REPLACE INTO entries SELECT 2, * FROM ({copy})",
            f"INSERT INTO entries SELECT 9, * FROM ({copy})",
        ):
            with pytest.raises(sqlite3.DatabaseError, match="append-only: an insert must take the next seq"):
                conn.execute(statement)
        conn.rollback()
    finally:
        conn.close()
    assert verify(path, KEY.public_key).checked == 3


def test_reopening_with_the_key_restores_dropped_triggers(tmp_path):
    path = tmp_path / "audit.sqlite"
    filled_log(path, 2)
    with insider(path):
        pass
    AuditLog(path, KEY)
    conn = sqlite3.connect(path)
    try:
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            conn.execute("DELETE FROM entries")
    finally:
        conn.close()


# -- what goes in ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("details", "message"),
    [
        ({"names": b"Jane Doe"}, r"details\['names'\]: bytes are not allowed"),
        ({"filters": bytearray(b"\x01\x02")}, r"details\['filters'\]: bytes are not allowed"),
        ({"rows": [1, memoryview(b"Jane")]}, r"details\['rows'\]\[1\]: bytes are not allowed"),
        (
            {"note": "Jane Doe " * 100},
            rf"details\['note'\]: text of 900 characters; audit details hold at most {MAX_DETAIL_TEXT}",
        ),
        ({"ids": ["id-0001"] * 2000}, r"details: \d+ characters as JSON; at most 8192"),
        ({1: "count"}, r"details: keys must be text"),
        ({"score": float("nan")}, r"details\['score'\]: not a finite number"),
        ({"people": {"Jane Doe"}}, r"details\['people'\]: a set is not an audit detail"),
        ({"a": {"b": {"c": {"d": {"e": 1}}}}}, r"nested more than 4 levels"),
    ],
)
def test_details_that_could_carry_encodings_or_identifiers_are_refused(tmp_path, details, message):
    path = tmp_path / "audit.sqlite"
    log = AuditLog(path, KEY, now=clock())
    with pytest.raises(AuditEntryError, match=message) as caught:
        log.append("CN=coordinator", "job.linked", details=details)
    assert str(caught.value).startswith(f"{path}: entry refused: ")
    assert "Jane" not in str(caught.value) and "id-0001" not in str(caught.value)
    assert isinstance(caught.value, LinkageError) and caught.value.grpc_status == "INVALID_ARGUMENT"
    assert log.entries() == []
    log.append("CN=coordinator", "job.linked", details={"note": "x" * MAX_DETAIL_TEXT})
    assert verify(path, KEY.public_key).checked == 1


def test_fields_and_clock_are_checked(tmp_path):
    log = AuditLog(tmp_path / "audit.sqlite", KEY, now=lambda: datetime(2024, 1, 1))
    with pytest.raises(AuditEntryError, match="action: must not be empty"):
        log.append("CN=coordinator", "")
    with pytest.raises(AuditEntryError, match="actor: must be text, not bytes"):
        log.append(b"CN=coordinator", "x")  # type: ignore[arg-type]
    with pytest.raises(AuditEntryError, match=r"now\(\): must be a timezone-aware datetime"):
        log.append("CN=coordinator", "x")
    assert log.head() is None


# -- concurrency -----------------------------------------------------------------------------------
def test_eight_threads_appending_at_once_make_one_gapless_valid_chain(tmp_path):
    path = tmp_path / "audit.sqlite"
    shared = AuditLog(path, KEY, now=clock())
    per_thread, threads = 25, 8
    barrier = threading.Barrier(threads)
    failures: list[BaseException] = []

    def work(number: int) -> None:
        # Half the threads share one AuditLog, half open their own (as separate processes would).
        log = shared if number % 2 else AuditLog(path, KEY)
        barrier.wait()
        try:
            for i in range(per_thread):
                log.append(f"CN=node-{number}", "encodings.uploaded", job=f"job-{number}", details={"batch": i})
        except BaseException as exc:  # noqa: BLE001 - surfaced below
            failures.append(exc)

    workers = [threading.Thread(target=work, args=(n,)) for n in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert failures == []
    entries = shared.entries()
    assert [e.seq for e in entries] == list(range(1, threads * per_thread + 1))
    for n in range(threads):
        assert [e.details["batch"] for e in entries if e.actor == f"CN=node-{n}"] == list(range(per_thread))
    report = verify(path, KEY.public_key)
    assert report.ok and report.checked == threads * per_thread


# -- reading ---------------------------------------------------------------------------------------
def test_entries_filter_by_job_actor_action_project_and_time(tmp_path):
    path = tmp_path / "audit.sqlite"
    log = AuditLog(path, KEY, now=clock(step=timedelta(hours=1)))
    log.append("CN=coordinator", "project.created", project="p1")
    log.append("CN=hospital", "encodings.uploaded", project="p1", job="j1", details={"records": 10})
    log.append("CN=school", "encodings.uploaded", project="p1", job="j1", details={"records": 20})
    log.append("CN=coordinator", "job.linked", project="p1", job="j1", details={"pairs": 3})
    log.append("CN=coordinator", "project.created", project="p2")

    def seqs(**filters) -> list[int]:
        return [e.seq for e in log.entries(**filters)]

    assert seqs() == [1, 2, 3, 4, 5]
    assert seqs(job="j1") == [2, 3, 4]
    assert seqs(actor="CN=coordinator") == [1, 4, 5]
    assert seqs(action="encodings.uploaded") == [2, 3]
    assert seqs(project="p2") == [5]
    assert seqs(since=START + timedelta(hours=1), until=START + timedelta(hours=3)) == [2, 3]
    assert seqs(since=(START + timedelta(hours=3)).astimezone(timezone(timedelta(hours=-5)))) == [4, 5]
    assert seqs(job="j1", actor="CN=coordinator") == [4]
    assert seqs(job="absent") == []
    with pytest.raises(AuditEntryError, match="since: must be a timezone-aware datetime"):
        log.entries(since=datetime(2024, 5, 1))

    auditor = AuditLog(path, None)  # read-only, no key
    assert auditor.entries(job="j1") == log.entries(job="j1")
    with pytest.raises(AuditKeyError, match="opened without a signing key"):
        auditor.append("CN=auditor", "x")
    with pytest.raises(AuditError, match="no entry 9"):
        auditor.entry(9)


def test_table_and_jsonl_render_entries(tmp_path):
    log = AuditLog(tmp_path / "audit.sqlite", KEY, now=clock())
    log.append("CN=coordinator", "project.created", project="p1", details={"schema": "ab12"})
    log.append("CN=evil\x1b[2J", "job.linked", project="p1", job="j1", details={"pairs": 3, "threshold": 0.8})
    entries = log.entries()

    table = entries_table(entries).splitlines()
    assert table[0].split() == ["seq", "time", "(UTC)", "actor", "action", "project", "job", "details"]
    assert table[2].split() == ["1", "2024-05-01", "09:00:00", "CN=coordinator", "project.created", "p1", "schema=ab12"]
    assert "\x1b" not in table[3] and "CN=evil\\x1b[2J" in table[3] and "pairs=3 threshold=0.8" in table[3]
    assert entries_table([]) == "(no entries)"

    lines = entries_jsonl(entries).splitlines()
    assert len(lines) == 2
    records = [json.loads(line) for line in lines]
    assert records[1] == entries[1].as_record()
    assert records[1]["time"] == "2024-05-01T09:00:01.000000+00:00" and records[1]["details"]["pairs"] == 3
    assert entries_jsonl([]) == ""


# -- keys ------------------------------------------------------------------------------------------
def test_key_file_is_private_never_overwritten_and_loads_back(tmp_path):
    path = tmp_path / "audit.key"
    key = AuditKey.generate()
    key.write(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert AuditKey.load(path).fingerprint == key.fingerprint
    with pytest.raises(AuditKeyError, match="refusing to overwrite"):
        AuditKey.generate().write(path)
    assert AuditKey.load(path).fingerprint == key.fingerprint

    public = tmp_path / "audit.pub"
    public.write_bytes(key.public_pem())
    assert load_public_key(public) == key.public_key == load_public_key(key.public_pem())
    with pytest.raises(AuditKeyError, match="this is a private key"):
        load_public_key(path)
    with pytest.raises(AuditKeyError, match="not a PEM private key"):
        AuditKey.load(public)
    with pytest.raises(AuditKeyError, match="absent.key: key file not found"):
        AuditKey.load(tmp_path / "absent.key")


def test_keys_of_another_kind_are_refused(tmp_path):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed448 import Ed448PrivateKey

    other = Ed448PrivateKey.generate()
    private = tmp_path / "ed448.key"
    private.write_bytes(
        other.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    with pytest.raises(AuditKeyError, match="ed448.key: not an Ed25519 private key"):
        AuditKey.load(private)
    pem = other.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    with pytest.raises(AuditKeyError, match="not an Ed25519 public key"):
        load_public_key(pem)


def test_key_repr_shows_only_the_fingerprint():
    key = AuditKey.generate()
    assert repr(key) == f"AuditKey(fingerprint={key.fingerprint!r})"
    assert len(key.fingerprint) == 16
    assert repr(key.public_key) == f"AuditPublicKey(fingerprint={key.fingerprint!r})"


def test_a_log_refuses_a_key_other_than_the_one_that_signed_it(tmp_path):
    path = tmp_path / "audit.sqlite"
    filled_log(path, 2)
    with pytest.raises(AuditKeyError, match=f"signed by key {KEY.fingerprint}, this key is {OTHER_KEY.fingerprint}"):
        AuditLog(path, OTHER_KEY)


# -- files that are not logs, anchors --------------------------------------------------------------
def test_files_that_are_not_audit_logs_are_refused(tmp_path):
    with pytest.raises(AuditError, match="absent.sqlite: no audit log here"):
        verify(tmp_path / "absent.sqlite", KEY.public_key)
    with pytest.raises(AuditError, match="absent.sqlite: no audit log here"):
        AuditLog(tmp_path / "absent.sqlite", None)
    text = tmp_path / "notes.txt"
    text.write_text("not a database " * 100)
    with pytest.raises(AuditError, match="notes.txt: .*not a database"):
        verify(text, KEY.public_key)
    with pytest.raises(AuditError, match="notes.txt: .*not a database"):
        AuditLog(text, KEY)
    other = tmp_path / "other.sqlite"
    conn = sqlite3.connect(other)
    conn.execute("CREATE TABLE people (name TEXT)")
    conn.commit()
    conn.close()
    with pytest.raises(AuditError, match="other.sqlite: an SQLite file that is not a linkage audit log"):
        AuditLog(other, KEY)
    with pytest.raises(AuditError, match="other.sqlite: not a linkage audit log"):
        verify(other, KEY.public_key)
    assert AuditError.grpc_status == "DATA_LOSS"


def test_anchors_round_trip_as_text_and_are_checked():
    anchor = (12, "ab" * 32)
    assert parse_anchor(format_anchor(anchor)) == anchor
    for bad in ("12", "x:" + "ab" * 32, "12:abc", "0:" + "ab" * 32):
        with pytest.raises(AuditError, match="anchor"):
            parse_anchor(bad)
