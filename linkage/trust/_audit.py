"""A tamper-evident audit log: SQLite rows, hash-chained and signed with Ed25519.

The coordinator (or a node) appends one entry per event it wants on the record: who (the actor, a
certificate subject), what (the action), for which project and job, and a few *details*. Details are
counts, thresholds, fingerprints and digests, never encodings or identifiers: ``append`` refuses
bytes, text longer than ``MAX_DETAIL_TEXT`` characters and details that together exceed
``MAX_DETAILS_JSON`` characters, so that the log can be handed to an auditor as it is.

Each entry's hash covers its contents and its predecessor's hash; the hash is signed with the log
keeper's ``AuditKey``. ``verify`` recomputes all of it from the rows alone and names the first entry
where the log was edited, deleted from, reordered or re-signed. Truncating the tail leaves a valid
chain, so it is caught only against an anchor (a ``(seq, entry_hash)`` the auditor recorded
earlier). Neither the hash chain nor the signatures stop the key holder from rewriting history; the
anchor does. SQLite triggers refuse UPDATE, DELETE and out-of-order INSERT: defence in depth against
mistakes only, since an insider with the file can drop them. The verifier is the guarantee.

The canonical form, for anyone writing a verifier in another language::

    body   = {"seq": int, "time": str, "actor": str, "action": str, "project": str, "job": str,
              "details": {...}, "prev_hash": str}
    text   = JSON of body with keys sorted at every level, separators "," and ":", non-ASCII
             characters written as themselves (not \\u escapes), NaN and infinities refused
    entry_hash = SHA-256(UTF-8 bytes of text), lower-case hex; prev_hash of entry 1 is 64 zeros
    signature  = Ed25519 over SIGNATURE_CONTEXT + the 32 raw bytes of entry_hash, lower-case hex
    details column = JSON of details in the same canonical form
    time   = UTC, ISO 8601 with microseconds and "+00:00" (fixed width, so text order is time order)

Numbers follow Python's ``json`` (integers exactly; floats as ``repr``, which differs from RFC 8785
only in exponent notation); callers should record thresholds as plain decimals.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import numbers
import os
import sqlite3
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from linkage._files import read_file, write_new_file
from linkage.errors import AuditEntryError, AuditError, AuditKeyError
from linkage.trust._canonical import canonical_json
from linkage.trust._pki import private_key_from_pem

__all__ = [
    "AuditEntryError",
    "AuditError",
    "AuditKey",
    "AuditKeyError",
    "AuditLog",
    "AuditPublicKey",
    "Entry",
    "VerifyReport",
    "entries_jsonl",
    "entries_table",
    "format_anchor",
    "load_public_key",
    "parse_anchor",
    "verify",
]

GENESIS_HASH = "0" * 64
SIGNATURE_CONTEXT = b"linkage/v1/audit-entry\x00"
LOG_FORMAT_VERSION = 1
MAX_DETAIL_TEXT = 512
MAX_DETAIL_KEY = 64
MAX_DETAILS_JSON = 8192
MAX_DETAILS_DEPTH = 4
MAX_FIELD_TEXT = 512
SQLITE_BUSY_TIMEOUT_S = 30.0

_COLUMNS = (
    "seq", "time", "actor", "action", "project", "job", "details",
    "prev_hash", "entry_hash", "signature", "key_fingerprint",
)  # fmt: skip
_SELECT = f"SELECT {', '.join(_COLUMNS)} FROM entries"
_HEX = frozenset("0123456789abcdef")

# Statements run one by one inside the creating transaction (executescript would commit it).
_SCHEMA_STATEMENTS = (
    """CREATE TABLE IF NOT EXISTS entries (
        seq INTEGER PRIMARY KEY,
        time TEXT NOT NULL,
        actor TEXT NOT NULL,
        action TEXT NOT NULL,
        project TEXT NOT NULL,
        job TEXT NOT NULL,
        details TEXT NOT NULL,      -- canonical JSON
        prev_hash TEXT NOT NULL,
        entry_hash TEXT NOT NULL,
        signature TEXT NOT NULL,    -- hex
        key_fingerprint TEXT NOT NULL
    )""",
    """CREATE TRIGGER IF NOT EXISTS entries_append_only_update BEFORE UPDATE ON entries
    BEGIN SELECT RAISE(ABORT, 'linkage audit log is append-only: UPDATE refused'); END""",
    """CREATE TRIGGER IF NOT EXISTS entries_append_only_delete BEFORE DELETE ON entries
    BEGIN SELECT RAISE(ABORT, 'linkage audit log is append-only: DELETE refused'); END""",
    # Also stops INSERT OR REPLACE, which deletes without firing the DELETE trigger.
    """CREATE TRIGGER IF NOT EXISTS entries_append_only_insert BEFORE INSERT ON entries
    WHEN NEW.seq IS NOT (SELECT COALESCE(MAX(seq), 0) + 1 FROM entries)
    BEGIN SELECT RAISE(ABORT, 'linkage audit log is append-only: an insert must take the next seq'); END""",
)


# -- errors (to move into linkage/errors.py) -------------------------------------------------------


# -- keys ------------------------------------------------------------------------------------------
def _fingerprint(public_key: Ed25519PublicKey) -> str:
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def _signed_message(digest: bytes) -> bytes:
    # A context prefix, so that a signature over an audit entry can never pass for one over anything
    # else the same key might sign.
    return SIGNATURE_CONTEXT + digest


class AuditPublicKey:
    """The public half of an ``AuditKey``: what an auditor needs to verify a log."""

    __slots__ = ("_key",)

    def __init__(self, public_key: Ed25519PublicKey) -> None:
        if not isinstance(public_key, Ed25519PublicKey):
            raise AuditKeyError("an audit verifying key must be an Ed25519 public key")
        self._key = public_key

    @property
    def fingerprint(self) -> str:
        """SHA-256 of the raw 32-byte public key, first 16 hex digits."""
        return _fingerprint(self._key)

    def pem(self) -> bytes:
        return self._key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)

    def _verifies(self, signature_hex: object, digest: bytes) -> bool:
        if not isinstance(signature_hex, str):
            return False
        try:
            self._key.verify(bytes.fromhex(signature_hex), _signed_message(digest))
        except (ValueError, InvalidSignature):
            return False
        return True

    def __repr__(self) -> str:
        return f"AuditPublicKey(fingerprint={self.fingerprint!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, AuditPublicKey) and self.pem() == other.pem()

    def __hash__(self) -> int:
        return hash(self.fingerprint)


class AuditKey:
    """An Ed25519 signing key for an audit log. Its repr shows a fingerprint, never the key."""

    __slots__ = ("_private", "_public")

    def __init__(self, private_key: Ed25519PrivateKey) -> None:
        if not isinstance(private_key, Ed25519PrivateKey):
            raise AuditKeyError("an audit signing key must be an Ed25519 private key")
        self._private = private_key
        self._public = AuditPublicKey(private_key.public_key())

    @classmethod
    def generate(cls) -> AuditKey:
        return cls(Ed25519PrivateKey.generate())

    @classmethod
    def load(cls, path: str | Path) -> AuditKey:
        """Read a PEM (PKCS8, unencrypted) Ed25519 private key written by ``write``."""
        path = Path(path)
        key = private_key_from_pem(_read_key_file(path), str(path), what="audit key", error=AuditKeyError)
        if not isinstance(key, Ed25519PrivateKey):
            raise AuditKeyError(f"{path}: not an Ed25519 private key")
        return cls(key)

    def write(self, path: str | Path) -> None:
        """Write the key as PEM (PKCS8) to a new file readable by its owner only; never overwrite."""
        path = Path(path)
        pem = self._private.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        write_new_file(path, pem, what="an audit key", error=AuditKeyError)

    @property
    def public_key(self) -> AuditPublicKey:
        return self._public

    def public_pem(self) -> bytes:
        """The public key as PEM (SubjectPublicKeyInfo), to hand to auditors."""
        return self._public.pem()

    @property
    def fingerprint(self) -> str:
        """SHA-256 of the raw 32-byte public key, first 16 hex digits: safe to log and show."""
        return self._public.fingerprint

    def _sign(self, digest: bytes) -> str:
        return self._private.sign(_signed_message(digest)).hex()

    def __repr__(self) -> str:
        return f"AuditKey(fingerprint={self.fingerprint!r})"


def _read_key_file(path: Path) -> bytes:
    return read_file(path, what="key", error=AuditKeyError)


def load_public_key(path_or_pem: str | Path | bytes) -> AuditPublicKey:
    """An auditor's verifying key: ``bytes`` are PEM data, a ``str`` or ``Path`` names a PEM file."""
    if isinstance(path_or_pem, bytes):
        source, data = "public key", path_or_pem
    else:
        source, data = str(path_or_pem), _read_key_file(Path(path_or_pem))
    if b"PRIVATE KEY" in data:
        raise AuditKeyError(f"{source}: this is a private key; give auditors the public key only (AuditKey.public_pem())")
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, UnsupportedAlgorithm):
        raise AuditKeyError(f"{source}: not a PEM public key") from None
    if not isinstance(key, Ed25519PublicKey):
        raise AuditKeyError(f"{source}: not an Ed25519 public key")
    return AuditPublicKey(key)


# -- canonical form --------------------------------------------------------------------------------
def _entry_digest(
    *, seq: object, time: object, actor: object, action: object, project: object, job: object,
    details: object, prev_hash: object,
) -> bytes:  # fmt: skip
    body = {
        "seq": seq, "time": time, "actor": actor, "action": action, "project": project, "job": job,
        "details": details, "prev_hash": prev_hash,
    }  # fmt: skip
    return hashlib.sha256(canonical_json(body).encode("utf-8")).digest()


def _format_time(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def _aware(moment: object, what: str) -> datetime:
    if not isinstance(moment, datetime) or moment.tzinfo is None or moment.utcoffset() is None:
        raise AuditEntryError(f"{what}: must be a timezone-aware datetime")
    return moment


def utc_now() -> datetime:
    return datetime.now(UTC)


def _same_digest(stored: object, expected: str) -> bool:
    return isinstance(stored, str) and hmac.compare_digest(stored.encode("utf-8"), expected.encode("utf-8"))


# -- checking what goes in -------------------------------------------------------------------------
def _checked_text(name: str, value: object, *, required: bool) -> str:
    if not isinstance(value, str):
        raise AuditEntryError(f"{name}: must be text, not {type(value).__name__}")
    if required and not value:
        raise AuditEntryError(f"{name}: must not be empty")
    if len(value) > MAX_FIELD_TEXT:
        raise AuditEntryError(f"{name}: {len(value)} characters; at most {MAX_FIELD_TEXT}")
    _encodable(value, name)
    return value


def _encodable(text: str, where: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise AuditEntryError(f"{where}: not valid Unicode text") from None


def _checked_detail(value: object, where: str, depth: int) -> object:
    """The value as plain JSON data, or an error naming where it sits (never what it holds)."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, bytes | bytearray | memoryview):
        raise AuditEntryError(
            f"{where}: bytes are not allowed in audit details; record a count, threshold, fingerprint or hex digest instead"
        )
    if isinstance(value, str):
        if len(value) > MAX_DETAIL_TEXT:
            raise AuditEntryError(
                f"{where}: text of {len(value)} characters; audit details hold at most {MAX_DETAIL_TEXT}"
                " (record a count, fingerprint or digest, never encodings or identifiers)"
            )
        _encodable(value, where)
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        number = float(value)
        if not math.isfinite(number):
            raise AuditEntryError(f"{where}: not a finite number")
        return number
    if depth >= MAX_DETAILS_DEPTH and isinstance(value, Mapping | list | tuple):
        raise AuditEntryError(f"{where}: nested more than {MAX_DETAILS_DEPTH} levels deep")
    if isinstance(value, Mapping):
        clean: dict[str, object] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise AuditEntryError(f"{where}: keys must be text, found a key of type {type(key).__name__}")
            if not key or len(key) > MAX_DETAIL_KEY:
                raise AuditEntryError(f"{where}: a key of {len(key)} characters; keys are names of 1 to {MAX_DETAIL_KEY}")
            _encodable(key, where)
            clean[key] = _checked_detail(item, f"{where}[{key!r}]", depth + 1)
        return clean
    if isinstance(value, list | tuple):
        return [_checked_detail(item, f"{where}[{i}]", depth + 1) for i, item in enumerate(value)]
    raise AuditEntryError(
        f"{where}: a {type(value).__name__} is not an audit detail (use numbers, short text, booleans, lists or mappings)"
    )


def _checked_details(details: Mapping[str, Any] | None) -> str:
    """Details as canonical JSON text."""
    if details is None:
        details = {}
    if not isinstance(details, Mapping):
        raise AuditEntryError(f"details: must be a mapping of names to values, not {type(details).__name__}")
    text = canonical_json(_checked_detail(details, "details", 0))
    if len(text) > MAX_DETAILS_JSON:
        raise AuditEntryError(
            f"details: {len(text)} characters as JSON; at most {MAX_DETAILS_JSON} (record counts and"
            " digests, never lists of records)"
        )
    return text


# -- entries ---------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Entry:
    """One row of the log, as stored. Reading an entry does not verify it: run ``verify``."""

    seq: int
    time: datetime
    actor: str
    action: str
    project: str
    job: str
    details: dict[str, Any] = field(hash=False)
    prev_hash: str
    entry_hash: str
    signature: str
    key_fingerprint: str

    def as_record(self) -> dict[str, Any]:
        """The entry as JSON-ready data, columns in table order."""
        return {
            "seq": self.seq, "time": _format_time(self.time), "actor": self.actor, "action": self.action,
            "project": self.project, "job": self.job, "details": self.details, "prev_hash": self.prev_hash,
            "entry_hash": self.entry_hash, "signature": self.signature, "key_fingerprint": self.key_fingerprint,
        }  # fmt: skip


def _entry_from_row(path: Path, row: Sequence[object]) -> Entry:
    seq = row[0]
    if not isinstance(seq, int):
        raise AuditError(f"{path}: an entry's seq is not a number; run `linkage audit verify`")
    text: dict[str, str] = {}
    for name, value in zip(_COLUMNS[1:], row[1:], strict=True):
        if not isinstance(value, str):
            raise AuditError(f"{path}: entry {seq}: column {name} does not hold text; run `linkage audit verify`")
        text[name] = value
    try:
        details = json.loads(text["details"])
        moment = datetime.fromisoformat(text["time"])
    except ValueError:
        raise AuditError(f"{path}: entry {seq}: unreadable time or details; run `linkage audit verify`") from None
    if not isinstance(details, dict) or moment.tzinfo is None:
        raise AuditError(f"{path}: entry {seq}: unreadable time or details; run `linkage audit verify`")
    return Entry(
        seq=seq, time=moment, actor=text["actor"], action=text["action"], project=text["project"], job=text["job"],
        details=details, prev_hash=text["prev_hash"], entry_hash=text["entry_hash"], signature=text["signature"],
        key_fingerprint=text["key_fingerprint"],
    )  # fmt: skip


# -- the log ---------------------------------------------------------------------------------------
@contextmanager
def _connection(path: Path, *, writable: bool) -> Iterator[sqlite3.Connection]:
    """A connection for one call, closed after it; SQLite errors become ``AuditError``."""
    try:
        if writable:
            conn = sqlite3.connect(path, timeout=SQLITE_BUSY_TIMEOUT_S, isolation_level=None)
        else:
            if not path.is_file():
                raise AuditError(f"{path}: no audit log here")
            uri = path.resolve().as_uri() + "?mode=ro"
            conn = sqlite3.connect(uri, uri=True, timeout=SQLITE_BUSY_TIMEOUT_S, isolation_level=None)
    except sqlite3.Error as exc:
        raise AuditError(f"{path}: cannot open audit log ({exc})") from None
    try:
        yield conn
    except sqlite3.Error as exc:
        raise AuditError(f"{path}: audit log unreadable or unwritable ({exc})") from None
    finally:
        conn.close()


def _check_layout(path: Path, conn: sqlite3.Connection) -> None:
    columns = tuple(row[1] for row in conn.execute("PRAGMA table_info(entries)"))
    (version,) = conn.execute("PRAGMA user_version").fetchone()
    if columns != _COLUMNS or version != LOG_FORMAT_VERSION:
        raise AuditError(f"{path}: not a linkage audit log (format {LOG_FORMAT_VERSION})")


class AuditLog:
    """An append-only, hash-chained, signed log in one SQLite file.

    With a ``key`` the log is created if absent and can be appended to; the key must be the one that
    signed the last entry. Without one (``key=None``, an auditor) the file must exist and is opened
    read-only. Appends are safe from many threads (a lock) and from many processes (each append is one
    ``BEGIN IMMEDIATE`` transaction); each call opens and closes its own connection.
    """

    def __init__(self, path: str | Path, key: AuditKey | None, *, now: Callable[[], datetime] = utc_now) -> None:
        self._path = Path(path)
        self._key = key
        self._now = now
        self._lock = threading.Lock()
        if key is None:
            with _connection(self._path, writable=False) as conn:
                _check_layout(self._path, conn)
            return
        if not isinstance(key, AuditKey):
            raise AuditKeyError(f"{self._path}: the signing key must be an AuditKey")
        with _connection(self._path, writable=True) as conn:
            conn.execute("BEGIN IMMEDIATE")
            _create_or_check_layout(self._path, conn)
            last = conn.execute("SELECT key_fingerprint FROM entries ORDER BY seq DESC LIMIT 1").fetchone()
            conn.execute("COMMIT")
        if last is not None and last[0] != key.fingerprint:
            raise AuditKeyError(
                f"{self._path}: the last entry was signed by key {_printable(str(last[0]))[:16]}, this key is"
                f" {key.fingerprint}; appending would break verification (start a new log for a new key)"
            )

    @property
    def path(self) -> Path:
        return self._path

    def append(
        self, actor: str, action: str, *, project: str = "", job: str = "", details: Mapping[str, Any] | None = None
    ) -> Entry:
        """Add one signed entry and return it.

        ``details`` hold counts, thresholds, fingerprints and digests: never encodings or identifiers.
        Bytes, text over ``MAX_DETAIL_TEXT`` characters, non-finite numbers and other types are refused
        with an ``AuditEntryError`` that names the detail, never its value.
        """
        if self._key is None:
            raise AuditKeyError(f"{self._path}: opened without a signing key (read-only); cannot append")
        try:
            fields = {
                "actor": _checked_text("actor", actor, required=True),
                "action": _checked_text("action", action, required=True),
                "project": _checked_text("project", project, required=False),
                "job": _checked_text("job", job, required=False),
            }
            details_text = _checked_details(details)
        except AuditEntryError as exc:
            raise AuditEntryError(f"{self._path}: entry refused: {exc}") from None
        with self._lock, _connection(self._path, writable=True) as conn:
            conn.execute("BEGIN IMMEDIATE")
            last = conn.execute("SELECT seq, entry_hash FROM entries ORDER BY seq DESC LIMIT 1").fetchone()
            seq, prev_hash = (last[0] + 1, last[1]) if last else (1, GENESIS_HASH)
            # The clock is read inside the lock, so times never run backwards against seq.
            time_text = _format_time(_aware(self._now(), f"{self._path}: entry refused: now()"))
            digest = _entry_digest(seq=seq, time=time_text, **fields, details=json.loads(details_text), prev_hash=prev_hash)
            entry_hash, signature = digest.hex(), self._key._sign(digest)
            row = (seq, time_text, *fields.values(), details_text, prev_hash, entry_hash, signature, self._key.fingerprint)
            conn.execute(f"INSERT INTO entries ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' * len(_COLUMNS))})", row)
            conn.execute("COMMIT")
        return _entry_from_row(self._path, row)

    def entries(
        self,
        *,
        job: str | None = None,
        actor: str | None = None,
        action: str | None = None,
        project: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> list[Entry]:
        """Entries in seq order, filtered by exact job, actor, action and project and by
        ``since <= time < until``. Reading does not verify: run ``verify`` first."""
        clauses: list[str] = []
        params: list[str] = []
        for column, wanted in (("job", job), ("actor", actor), ("action", action), ("project", project)):
            if wanted is not None:
                clauses.append(f"{column} = ?")
                params.append(wanted)
        for operator, bound, name in ((">=", since, "since"), ("<", until, "until")):
            if bound is not None:
                clauses.append(f"time {operator} ?")
                params.append(_format_time(_aware(bound, name)))
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        with _connection(self._path, writable=self._key is not None) as conn:
            rows = conn.execute(f"{_SELECT}{where} ORDER BY seq", params).fetchall()
        return [_entry_from_row(self._path, row) for row in rows]

    def entry(self, seq: int) -> Entry:
        """One entry by its sequence number."""
        with _connection(self._path, writable=self._key is not None) as conn:
            row = conn.execute(f"{_SELECT} WHERE seq = ?", (seq,)).fetchone()
        if row is None:
            raise AuditError(f"{self._path}: no entry {seq}")
        return _entry_from_row(self._path, row)

    def head(self) -> tuple[int, str] | None:
        """The last entry's ``(seq, entry_hash)``: an anchor an auditor can record for ``verify``."""
        with _connection(self._path, writable=self._key is not None) as conn:
            row = conn.execute("SELECT seq, entry_hash FROM entries ORDER BY seq DESC LIMIT 1").fetchone()
        return (row[0], row[1]) if row else None

    def __repr__(self) -> str:
        key = self._key.fingerprint if self._key else None
        return f"AuditLog({str(self._path)!r}, key={key!r})"


def _create_or_check_layout(path: Path, conn: sqlite3.Connection) -> None:
    has_table = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'entries'").fetchone()
    if has_table is None:
        (version,) = conn.execute("PRAGMA user_version").fetchone()
        (objects,) = conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
        if version != 0 or objects:
            raise AuditError(f"{path}: an SQLite file that is not a linkage audit log; refusing to add one to it")
        conn.execute(f"PRAGMA user_version = {LOG_FORMAT_VERSION}")
    # Also restores the triggers if an insider dropped them; whether rows changed is verify's job.
    for statement in _SCHEMA_STATEMENTS:
        conn.execute(statement)
    _check_layout(path, conn)


# -- verification ----------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class VerifyReport:
    """What ``verify`` found.

    ``checked`` counts the entries that verified before the first failure (all of them when ``ok``);
    ``first_bad`` is the seq where the log breaks; ``reason`` says how, in words for an auditor;
    ``last_verified`` is the ``(seq, entry_hash)`` of the last good entry: record it and pass it as
    ``expected_last`` next time, so that a cut tail or a rewritten history shows.
    """

    ok: bool
    checked: int
    first_bad: int | None
    reason: str
    last_verified: tuple[int, str] | None


def format_anchor(anchor: tuple[int, str]) -> str:
    """``(seq, entry_hash)`` as the text ``SEQ:HASH``."""
    seq, entry_hash = _checked_anchor(anchor, "anchor")
    return f"{seq}:{entry_hash}"


def parse_anchor(text: str) -> tuple[int, str]:
    """``SEQ:HASH`` (as ``format_anchor`` writes it) back into ``(seq, entry_hash)``."""
    seq_text, _, entry_hash = text.strip().partition(":")
    if not seq_text.isdigit():
        raise AuditError("anchor: expected SEQ:HASH, e.g. 12:<64 hex digits>")
    return _checked_anchor((int(seq_text), entry_hash.lower()), "anchor")


def _checked_anchor(anchor: object, what: str) -> tuple[int, str]:
    if not (isinstance(anchor, tuple) and len(anchor) == 2):
        raise AuditError(f"{what}: expected (seq, entry_hash)")
    seq, entry_hash = anchor
    if isinstance(seq, bool) or not isinstance(seq, int) or seq < 1:
        raise AuditError(f"{what}: seq must be a whole number from 1")
    if not isinstance(entry_hash, str) or len(entry_hash) != 64 or not set(entry_hash) <= _HEX:
        raise AuditError(f"{what}: entry_hash must be 64 lower-case hex digits")
    return seq, entry_hash


def verify(
    path: str | Path, public_key: AuditPublicKey | AuditKey, *, expected_last: tuple[int, str] | None = None
) -> VerifyReport:
    """Recompute the whole log from its rows and report the first entry where it breaks.

    Checks, entry by entry in seq order: seq runs 1..n without gaps (a gap is a deletion); each
    entry's prev_hash is its predecessor's hash (a broken link is a reordering or a removal); each
    entry's hash matches its contents (a mismatch is an edit); each signature verifies with
    ``public_key`` (a failure is a re-signing with another key). With ``expected_last``, an anchor
    recorded earlier, a log that ends before it or holds another hash there is reported as truncated
    or rewritten. A tampered log is a report, not an error; an unreadable file raises ``AuditError``.
    """
    path = Path(path)
    if isinstance(public_key, AuditKey):  # a keeper checking its own log
        public_key = public_key.public_key
    if not isinstance(public_key, AuditPublicKey):
        raise AuditKeyError(f"{path}: verify needs an AuditPublicKey (see load_public_key)")
    anchor = None if expected_last is None else _checked_anchor(expected_last, "expected_last")
    anchor_hash_found: str | None = None
    checked = 0
    last: tuple[int, str] | None = None

    def broken(first_bad: int, reason: str) -> VerifyReport:
        return VerifyReport(ok=False, checked=checked, first_bad=first_bad, reason=reason, last_verified=last)

    with _connection(path, writable=False) as conn:
        _check_layout(path, conn)
        for row in conn.execute(f"{_SELECT} ORDER BY seq"):
            seq, time, actor, action, project, job, details_text, prev_hash, entry_hash, signature, signer = row
            expected_seq = 1 if last is None else last[0] + 1
            if seq != expected_seq:
                missing = f"entry {expected_seq}" if seq == expected_seq + 1 else f"entries {expected_seq} to {seq - 1}"
                where = f"log starts at entry {seq}" if last is None else f"seq jumps from {last[0]} to {seq}"
                return broken(expected_seq, f"{missing} missing (deleted) — {where}")
            expected_prev = GENESIS_HASH if last is None else last[1]
            if not _same_digest(prev_hash, expected_prev):
                return broken(seq, f"entry {seq}: previous-hash link broken (reordered or an entry removed)"
                              + _link_hint(conn, prev_hash, seq))  # fmt: skip
            digest = _recomputed_digest(row)
            if digest is None or not _same_digest(entry_hash, digest.hex()):
                return broken(seq, f"entry {seq}: contents do not match its hash (edited)")
            if not public_key._verifies(signature, digest):
                named = ""
                if isinstance(signer, str) and len(signer) == 16 and set(signer) <= _HEX and signer != public_key.fingerprint:
                    named = f"; the entry names key {signer}, the given key is {public_key.fingerprint}"
                return broken(
                    seq, f"entry {seq}: signature does not verify with the given key (re-signed with another key?){named}"
                )
            checked += 1
            last = (seq, digest.hex())
            if anchor is not None and seq == anchor[0]:
                anchor_hash_found = last[1]
    if anchor is not None:
        anchor_seq, anchor_hash = anchor
        if last is None or last[0] < anchor_seq:
            ends = "log is empty" if last is None else f"log ends at entry {last[0]}"
            cut_from = 1 if last is None else last[0] + 1
            return broken(cut_from, f"{ends} but the anchor records entry {anchor_seq}"
                          f" (truncated: entries {cut_from} to {anchor_seq} or more were cut)")  # fmt: skip
        if anchor_hash_found is None or not _same_digest(anchor_hash_found, anchor_hash):
            return broken(anchor_seq, f"entry {anchor_seq}: hash differs from the anchor"
                          " (the log was rewritten after the anchor was taken)")  # fmt: skip
    if last is None:
        return VerifyReport(ok=True, checked=0, first_bad=None, reason="empty log: nothing to verify", last_verified=None)
    reason = f"{checked} entries verified: chain intact, every signature valid for key {public_key.fingerprint}"
    if anchor is not None:
        reason += f"; entry {anchor[0]} matches the anchor"
    return VerifyReport(ok=True, checked=checked, first_bad=None, reason=reason, last_verified=last)


def _recomputed_digest(row: Sequence[object]) -> bytes | None:
    """The hash the row's contents call for, or None where they cannot be the log's own (edited)."""
    seq, time, actor, action, project, job, details_text = row[:7]
    if not isinstance(details_text, str):
        return None
    try:
        details = json.loads(details_text)
        if not isinstance(details, dict) or canonical_json(details) != details_text:
            return None
        return _entry_digest(
            seq=seq, time=time, actor=actor, action=action, project=project, job=job, details=details, prev_hash=row[7]
        )
    except (TypeError, ValueError, UnicodeEncodeError):
        return None


def _link_hint(conn: sqlite3.Connection, prev_hash: object, seq: int) -> str:
    if not isinstance(prev_hash, str):
        return ""
    found = conn.execute("SELECT seq FROM entries WHERE entry_hash = ? AND seq != ?", (prev_hash, seq)).fetchone()
    return f" — it links to entry {found[0]}" if found else ""


# -- rendering -------------------------------------------------------------------------------------
def _printable(text: str) -> str:
    """Text safe for a terminal: control characters (and escape sequences) shown as escapes."""
    return "".join(ch if ch.isprintable() else ch.encode("unicode_escape").decode("ascii") for ch in text)


def _detail_text(value: object) -> str:
    return value if isinstance(value, str) else canonical_json(value)


def entries_table(entries: Sequence[Entry]) -> str:
    """A plain text table for the terminal, one line per entry (no trailing newline)."""
    if not entries:
        return "(no entries)"
    header = ("seq", "time (UTC)", "actor", "action", "project", "job", "details")
    rows: list[tuple[str, ...]] = [
        (
            str(e.seq),
            e.time.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S"),
            e.actor,
            e.action,
            e.project,
            e.job,
            " ".join(f"{k}={_detail_text(v)}" for k, v in e.details.items()),
        )  # fmt: skip
        for e in entries
    ]
    rows = [tuple(_printable(cell) for cell in row) for row in rows]
    widths = [max(len(row[i]) for row in (header, *rows)) for i in range(len(header) - 1)]

    def line(row: Sequence[str]) -> str:
        cells = [cell.rjust(widths[0]) if i == 0 else cell.ljust(widths[i]) for i, cell in enumerate(row[:-1])]
        return "  ".join([*cells, row[-1]]).rstrip()

    return "\n".join([line(header), line(["-" * w for w in widths] + ["-" * len(header[-1])]), *map(line, rows)])


def entries_jsonl(entries: Sequence[Entry]) -> str:
    """One JSON object per entry and line, every column included, for export."""
    return "".join(json.dumps(e.as_record(), ensure_ascii=False) + "\n" for e in entries)


# -- a party's own log -----------------------------------------------------------------------------
AUDIT_LOG_FILE = "audit.db"
AUDIT_KEY_FILE = "audit.key"
AUDIT_PUBLIC_KEY_FILE = "audit.pub"
KEYS_FOLDER = "keys"


def party_log(data_dir: Path, *, now: Callable[[], datetime] = utc_now, key_dir: Path | None = None) -> AuditLog:
    """The audit log in a party's data folder, with its signing key (made on first use).

    The signing key lives apart from the log, in ``key_dir`` (default ``data_dir/keys``, mode 0700),
    so that a copy of the log's folder is not a way to append entries; a key an older version left
    beside the log is moved there. ``audit.pub`` beside the log is a convenience copy: auditors
    verify against the public key they were given (``audit verify --key``), never the one beside the
    log. The log is mode 0600.
    """
    data_dir.mkdir(parents=True, exist_ok=True)
    key_dir = key_dir if key_dir is not None else data_dir / KEYS_FOLDER
    key_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    key_dir.chmod(0o700)
    key_path = key_dir / AUDIT_KEY_FILE
    beside = data_dir / AUDIT_KEY_FILE
    if beside.exists() and not key_path.exists():
        os.replace(beside, key_path)
    if key_path.exists():
        key = AuditKey.load(key_path)
    else:
        key = AuditKey.generate()
        key.write(key_path)
    public = data_dir / AUDIT_PUBLIC_KEY_FILE
    if not public.exists():
        public.write_bytes(key.public_pem())
    log = AuditLog(data_dir / AUDIT_LOG_FILE, key, now=now)
    for path in (log.path, *(log.path.with_name(log.path.name + suffix) for suffix in ("-wal", "-shm", "-journal"))):
        if path.exists():
            path.chmod(0o600)
    return log


def parse_time(text: str) -> datetime:
    """An ISO 8601 time with a zone ("2026-11-23T09:00:00+00:00" or "...Z"); a bare date means UTC midnight."""
    value = text.strip()
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise AuditEntryError(f"not an ISO 8601 time: {text!r} (e.g. 2026-11-23T09:00:00+00:00)") from None
    if moment.tzinfo is None:
        if len(value) == 10:  # a date alone
            return moment.replace(tzinfo=UTC)
        raise AuditEntryError(f"time {text!r} has no time zone (add +00:00 or Z)")
    return moment
