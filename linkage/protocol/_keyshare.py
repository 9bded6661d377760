"""A node's side of the key ceremony, over the coordinator's KeyRelay service.

    publish: make (once) the node's agreement key, sign a key card with its certificate, post it
    share:   one agency makes a fresh secret, wraps it for each named agency's verified card, posts
    receive: the others fetch the copy meant for them, check who made it, and store the secret

The secret is stored (mode 0600, never overwritten) at the node config's ``data.secret``, with a
sidecar ``<secret>.json`` holding project, epoch, sender and the secret's fingerprint.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import grpc

from linkage.bloom._keys import Secret
from linkage.errors import CeremonyError, JobError, SecretError
from linkage.jobs._config import NodeConfig
from linkage.protocol._server import secure_channel
from linkage.protocol.v1 import linkage_pb2 as pb
from linkage.protocol.v1 import linkage_pb2_grpc as pb_grpc
from linkage.trust._ceremony import (
    AgreementKey,
    KeyCard,
    SecretInfo,
    WrappedSecret,
    make_key_card,
    secret_info_path,
    unwrap_secret,
    wrap_secret,
    write_secret_info,
)  # fmt: skip
from linkage.trust._pki import TlsMaterial

AGREEMENT_KEY_FILE = "agreement.key"

_Reply = TypeVar("_Reply")


def _relay(
    config: NodeConfig, address: str, tls: TlsMaterial, call: Callable[[pb_grpc.KeyRelayStub], _Reply], coordinator: str | None
) -> _Reply:
    """One call on the key relay of ``coordinator`` (one of the node's; by default the first): the
    handshake fails unless the server at ``address`` holds that coordinator's certificate."""
    name = config.coordinator(coordinator)
    try:
        with secure_channel(address, tls, peer=("coordinator", name)) as channel:
            return call(pb_grpc.KeyRelayStub(channel))
    except grpc.RpcError as error:
        raise JobError(f"coordinator at {address}: {error.code().name}: {error.details()}") from None


def agreement_key(config: NodeConfig) -> AgreementKey:
    path = config.data_dir / AGREEMENT_KEY_FILE
    if path.exists():
        return AgreementKey.load(path)
    config.data_dir.mkdir(parents=True, exist_ok=True)
    key = AgreementKey.generate()
    key.write(path)
    return key


def publish_card(
    config: NodeConfig, tls: TlsMaterial, address: str, *, now: dt.datetime | None = None, coordinator: str | None = None
) -> KeyCard:
    card = make_key_card(agreement_key(config), tls, now=now or dt.datetime.now(dt.UTC))
    _relay(
        config, address, tls, lambda stub: stub.PublishKeyCard(pb.KeyCardMessage(card=card.to_bytes()), timeout=30), coordinator
    )
    return card


def _refuse_existing_secret(path: Path) -> None:
    if path.exists():
        raise SecretError(f"{path}: a secret is already there; for a new epoch point data.secret at a new file")


def share_secret(
    config: NodeConfig, tls: TlsMaterial, address: str, *, project: str, recipients: list[str], epoch: int,
    now: dt.datetime | None = None, coordinator: str | None = None,
) -> SecretInfo:  # fmt: skip
    """Make a fresh secret, wrap it for every other named agency, post the copies, keep our own."""
    _refuse_existing_secret(config.secret)
    now = now or dt.datetime.now(dt.UTC)
    others = [r for r in dict.fromkeys(recipients) if r != config.agency]
    if not others:
        raise CeremonyError("name at least one other agency to share the secret with")
    cards = _relay(
        config, address, tls, lambda stub: stub.ListKeyCards(pb.ListKeyCardsRequest(agencies=others), timeout=30), coordinator
    ).cards
    secret = Secret.generate()
    wrapped = [
        wrap_secret(
            secret, project=project, epoch=epoch, recipient=name, recipient_card=KeyCard.from_bytes(card), sender=tls, now=now
        )
        for name, card in zip(others, cards, strict=True)
    ]
    _relay(config, address, tls, lambda stub: stub.PostWrappedSecrets(
        pb.WrappedSecrets(project=project, epoch=epoch, wrapped=[w.to_bytes() for w in wrapped]), timeout=30), coordinator)  # fmt: skip
    info = SecretInfo(project=project, epoch=epoch, sender=config.agency, fingerprint=secret.fingerprint)
    config.secret.parent.mkdir(parents=True, exist_ok=True)
    secret.write(config.secret)
    write_secret_info(secret_info_path(config.secret), info)
    return info


def project_roster(config: NodeConfig, tls: TlsMaterial, address: str, project: str, coordinator: str | None = None) -> pb.Roster:
    """The project's members as the relay fixed them when the project was created."""
    roster: pb.Roster = _relay(
        config, address, tls, lambda stub: stub.GetRoster(pb.RosterRequest(project=project), timeout=30), coordinator
    )
    return roster


def receive_secret(
    config: NodeConfig, tls: TlsMaterial, address: str, *, project: str, trusted_senders: list[str],
    expected_epoch: int | None = None, now: dt.datetime | None = None, coordinator: str | None = None,
) -> SecretInfo:  # fmt: skip
    """Fetch the copies meant for this agency, keep the newest one made by an accepted sender, store the secret.

    The receiver always names whom it accepts (``trusted_senders``), and they must be members of the
    project, as must this agency. Taking the roster's creator on trust would let a certificate of the
    task force that created a project of that name first (with this agency on its roster) hand it a
    secret; named senders turn that into an error naming the roster. A copy from anyone else is passed
    over, never taken and never in the way of the real one.
    """
    _refuse_existing_secret(config.secret)
    roster = project_roster(config, tls, address, project, coordinator)
    if config.agency not in roster.members:
        raise CeremonyError(f"{config.agency} is not a member of project {project!r} (members: {', '.join(roster.members)})")
    if not trusted_senders:
        raise CeremonyError("name the agencies whose secret you accept (--sender)")
    accepted = set(trusted_senders)
    strangers = sorted(accepted - set(roster.members))
    if strangers:
        raise CeremonyError(
            f"{', '.join(strangers)}: not a member of project {project!r} (members: {', '.join(roster.members)},"
            f" created by {roster.creator})"
        )
    response = _relay(
        config, address, tls, lambda stub: stub.FetchWrappedSecrets(pb.FetchWrappedRequest(project=project), timeout=30),
        coordinator,
    )  # fmt: skip
    if not response.wrapped:
        raise CeremonyError(f"no wrapped secret for {config.agency} in project {project!r}")
    key = agreement_key(config)
    refusals: list[str] = []
    for blob in response.wrapped:
        try:
            secret, info = unwrap_secret(
                WrappedSecret.from_bytes(blob), agreement_key=key, my_name=config.agency, ca_pem=tls.ca_pem,
                expected_project=project, expected_epoch=expected_epoch, trusted_senders=accepted, now=now,
            )  # fmt: skip
            break
        except CeremonyError as error:
            refusals.append(str(error))
    else:
        raise CeremonyError(
            f"no copy for {config.agency} from {', '.join(sorted(accepted))} could be opened; first refusal: {refusals[0]}"
        )
    config.secret.parent.mkdir(parents=True, exist_ok=True)
    secret.write(config.secret)
    write_secret_info(secret_info_path(config.secret), info)
    return info
