"""The coordinator's side of the key ceremony: it stores and relays what it cannot open.

Key cards and wrapped secrets are signed by the agencies' certificates and sealed to the
recipients' agreement keys (see ``linkage.trust._ceremony``); the coordinator checks only who may post
or fetch what, keeps the blobs in ``keys.db`` and logs every step.

A project's roster is fixed by its first share: the sharing agency and the recipients it names.
Afterwards only members may post copies (to members) or fetch them, and a fetch returns only
copies posted by members, so a certificate of the task force that is not in the project can neither
inject a secret nor push the real one aside. Anyone with a node certificate may read a roster.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import sqlite3
import threading
from pathlib import Path

import grpc

from linkage.errors import CeremonyError
from linkage.protocol._auth import certified_caller
from linkage.protocol.v1 import linkage_pb2 as pb
from linkage.protocol.v1 import linkage_pb2_grpc as pb_grpc
from linkage.trust._audit import AuditLog
from linkage.trust._ceremony import KeyCard, WrappedSecret

_SCHEMA = """
CREATE TABLE IF NOT EXISTS cards (agency TEXT PRIMARY KEY, card BLOB NOT NULL, published TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS wrapped (
    project TEXT NOT NULL, epoch INTEGER NOT NULL, sender TEXT NOT NULL, recipient TEXT NOT NULL,
    blob BLOB NOT NULL, posted TEXT NOT NULL, PRIMARY KEY (project, epoch, sender, recipient)
);
CREATE TABLE IF NOT EXISTS rosters (project TEXT PRIMARY KEY, creator TEXT NOT NULL, members TEXT NOT NULL, created TEXT NOT NULL);
"""


class RelayPermissionError(CeremonyError):
    grpc_status = "PERMISSION_DENIED"


class NoRosterError(CeremonyError):
    grpc_status = "NOT_FOUND"


def _digest(blob: bytes) -> str:
    return hashlib.sha256(blob).hexdigest()


class KeyRelayService(pb_grpc.KeyRelayServicer):
    def __init__(self, path: Path, audit: AuditLog) -> None:
        self._path, self._audit = path, audit
        self._lock = threading.Lock()
        with sqlite3.connect(path) as db:
            db.executescript(_SCHEMA)

    def _now(self) -> str:
        return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")

    def PublishKeyCard(self, request: pb.KeyCardMessage, context: grpc.ServicerContext) -> pb.RelayAck:
        me = certified_caller(context)
        card = KeyCard.from_bytes(request.card)
        if card.agency != me.name:
            raise RelayPermissionError(f"{me}: may publish only its own key card, not {card.agency}'s")
        with self._lock, sqlite3.connect(self._path) as db:
            db.execute("INSERT OR REPLACE INTO cards VALUES (?, ?, ?)", (card.agency, request.card, self._now()))
        self._audit.append(str(me), "key card published", details={
            "agency": card.agency, "agreement_key": card.agreement_key_fingerprint, "digest": _digest(request.card),
        })  # fmt: skip
        return pb.RelayAck(count=1)

    def ListKeyCards(self, request: pb.ListKeyCardsRequest, context: grpc.ServicerContext) -> pb.KeyCards:
        with sqlite3.connect(self._path) as db:
            found = dict(db.execute("SELECT agency, card FROM cards"))
        missing = [a for a in request.agencies if a not in found]
        if missing:
            raise CeremonyError(f"no key card published by {', '.join(missing)} (run `linkage keys publish` there)")
        return pb.KeyCards(cards=[found[a] for a in request.agencies])

    def PostWrappedSecrets(self, request: pb.WrappedSecrets, context: grpc.ServicerContext) -> pb.RelayAck:
        me = certified_caller(context)
        copies = [(WrappedSecret.from_bytes(blob), blob) for blob in request.wrapped]
        for wrapped, _ in copies:
            if wrapped.sender != me.name:
                raise RelayPermissionError(f"{me}: may post only copies it wrapped, not {wrapped.sender}'s")
            if wrapped.project != request.project or wrapped.epoch != request.epoch:
                raise CeremonyError(f"a copy for {wrapped.recipient} is for another project or epoch")
        recipients = sorted({w.recipient for w, _ in copies})
        with self._lock, sqlite3.connect(self._path) as db:
            roster = self._roster(db, request.project)
            new_project = roster is None
            if roster is None:
                members = sorted({me.name, *recipients})
                db.execute(
                    "INSERT INTO rosters VALUES (?, ?, ?, ?)", (request.project, me.name, json.dumps(members), self._now())
                )
            else:
                members = list(roster.members)
                if me.name not in members:
                    self._refused(str(me), "post", request.project, "not a member")
                    raise RelayPermissionError(
                        f"{me}: not a member of project {request.project!r} (its roster, fixed by {roster.creator}: {', '.join(members)})"
                    )
                outsiders = [r for r in recipients if r not in members]
                if outsiders:
                    raise CeremonyError(
                        f"{', '.join(outsiders)}: not a member of project {request.project!r}; a roster never grows"
                    )
            for wrapped, blob in copies:
                db.execute(
                    "INSERT OR REPLACE INTO wrapped VALUES (?, ?, ?, ?, ?, ?)",
                    (wrapped.project, wrapped.epoch, wrapped.sender, wrapped.recipient, blob, self._now()),
                )
        if new_project:
            self._audit.append(str(me), "project created", project=request.project, details={
                "epoch": request.epoch, "by": me.name, "agencies": members,
            })  # fmt: skip
        self._audit.append(str(me), "secret relayed", project=request.project, details={
            "epoch": request.epoch, "sender": me.name, "recipients": sorted(w.recipient for w, _ in copies),
            "digests": [_digest(blob) for _, blob in copies],
        })  # fmt: skip
        return pb.RelayAck(count=len(copies))

    def FetchWrappedSecrets(self, request: pb.FetchWrappedRequest, context: grpc.ServicerContext) -> pb.WrappedSecrets:
        """Every copy members posted for the caller, newest epoch first: the receiver picks the one it trusts."""
        me = certified_caller(context)
        with sqlite3.connect(self._path) as db:
            roster = self._roster(db, request.project)
            rows = db.execute(
                "SELECT epoch, sender, blob FROM wrapped WHERE project = ? AND recipient = ? ORDER BY epoch DESC, posted DESC",
                (request.project, me.name),
            ).fetchall()
        if roster is not None and me.name not in roster.members:
            self._refused(str(me), "fetch", request.project, "not a member")
            raise RelayPermissionError(f"{me}: not a member of project {request.project!r}")
        rows = [(e, blob) for e, sender, blob in rows if roster is not None and sender in roster.members]
        if not rows:
            raise CeremonyError(f"no wrapped secret for {me.name} in project {request.project!r} yet")
        epoch = rows[0][0]
        blobs = [blob for _, blob in rows]
        self._audit.append(str(me), "wrapped secret fetched", project=request.project, details={
            "epoch": epoch, "recipient": me.name, "digests": [_digest(b) for b in blobs],
        })  # fmt: skip
        return pb.WrappedSecrets(project=request.project, epoch=epoch, wrapped=blobs)

    def GetRoster(self, request: pb.RosterRequest, context: grpc.ServicerContext) -> pb.Roster:
        with sqlite3.connect(self._path) as db:
            roster = self._roster(db, request.project)
        if roster is None:
            raise NoRosterError(f"no project {request.project!r} yet: its first `linkage keys share` creates it")
        return roster

    @staticmethod
    def _roster(db: sqlite3.Connection, project: str) -> pb.Roster | None:
        row = db.execute("SELECT creator, members, created FROM rosters WHERE project = ?", (project,)).fetchone()
        if row is None:
            return None
        return pb.Roster(project=project, creator=row[0], members=json.loads(row[1]), created=row[2])

    def _refused(self, actor: str, what: str, project: str, reason: str) -> None:
        self._audit.append(actor, "relay refused", project=project, details={"call": what, "reason": reason})
