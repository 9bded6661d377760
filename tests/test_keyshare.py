"""The key ceremony over real servers: the coordinator relays, and cannot open or swap."""

from __future__ import annotations

import dataclasses
import datetime as dt
import sqlite3

import grpc
import pytest

from linkage.bloom._keys import Secret
from linkage.errors import CeremonyError, JobError
from linkage.jobs._config import load_coordinator_config, load_node_config
from linkage.protocol._credentials import channel_credentials
from linkage.protocol._keyshare import publish_card, receive_secret, share_secret
from linkage.protocol.v1 import linkage_pb2 as pb
from linkage.protocol.v1 import linkage_pb2_grpc as pb_grpc
from linkage.testing._demo import AGENCIES, prepare_demo, write_coordinator_config
from linkage.trust._ceremony import AgreementKey, key_epoch_of, make_key_card
from linkage.trust._pki import load_tls
from services.coordinator import start_coordinator


@pytest.fixture
def relay(tmp_path):
    layout, _ = prepare_demo(tmp_path, people=50, seed=3, with_secret=False)
    config = load_coordinator_config(write_coordinator_config(layout, dict.fromkeys(AGENCIES, 1)))
    server, port, _ = start_coordinator(config, config.tls.load())
    nodes = {name: load_node_config(layout.node_config(name)) for name in AGENCIES}
    tls = {name: c.tls.load() for name, c in nodes.items()}
    yield layout, f"127.0.0.1:{port}", nodes, tls
    server.stop(0).wait()


def test_agencies_end_with_the_same_secret_the_coordinator_never_held(relay):
    layout, address, nodes, tls = relay
    for name in AGENCIES:
        publish_card(nodes[name], tls[name], address)
    shared = share_secret(nodes["police"], tls["police"], address, project="p1", recipients=list(AGENCIES), epoch=3)
    for name in ("child_welfare", "victim_services"):
        got = receive_secret(nodes[name], tls[name], address, project="p1", trusted_senders=["police"], expected_epoch=3)
        assert got.fingerprint == shared.fingerprint and got.epoch == 3
        assert Secret.from_file(nodes[name].secret) == Secret.from_file(nodes["police"].secret)
        assert key_epoch_of(nodes[name].secret) == 3
    secret = Secret.from_file(nodes["police"].secret).raw_bytes()
    stored = b"".join(p.read_bytes() for p in layout.coordinator.rglob("*") if p.is_file())
    assert secret not in stored and secret.hex().encode() not in stored
    log = (layout.coordinator / "audit.db").read_bytes()
    assert b"secret relayed" in log and b"key card published" in log and b"project created" in log


def test_a_coordinator_that_swaps_a_key_card_is_caught(relay):
    layout, address, nodes, tls = relay
    for name in AGENCIES:
        publish_card(nodes[name], tls[name], address)
    # The coordinator replaces victim_services' card with one for an agreement key of its own,
    # signed... with the only certificate key it has: its own.
    coordinator_tls = load_tls(layout.pki / "ca.pem", layout.pki / "coordinator.pem", layout.pki / "coordinator.key")
    with pytest.raises(CeremonyError):
        make_key_card(AgreementKey.generate(), coordinator_tls, now=dt.datetime.now(dt.UTC))
    # So it swaps in another agency's genuine card under victim_services' name instead.
    with sqlite3.connect(layout.coordinator / "keys.db") as db:
        police_card = db.execute("SELECT card FROM cards WHERE agency = 'police'").fetchone()[0]
        db.execute("UPDATE cards SET card = ? WHERE agency = 'victim_services'", (police_card,))
    with pytest.raises(CeremonyError):
        share_secret(nodes["police"], tls["police"], address, project="p1", recipients=list(AGENCIES), epoch=1)
    assert not nodes["police"].secret.exists()


def test_who_may_use_the_relay(relay):
    layout, address, nodes, tls = relay
    publish_card(nodes["police"], tls["police"], address)
    # a node may not publish another agency's card
    card = make_key_card(AgreementKey.generate(), tls["child_welfare"], now=dt.datetime.now(dt.UTC))
    with grpc.secure_channel(address, channel_credentials(tls["police"])) as channel:
        with pytest.raises(grpc.RpcError) as info:
            pb_grpc.KeyRelayStub(channel).PublishKeyCard(pb.KeyCardMessage(card=card.to_bytes()), timeout=10)
        assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
    # the coordinator's and the auditor's certificates take no part
    for who in ("coordinator", "auditor"):
        other = load_tls(layout.pki / "ca.pem", layout.pki / f"{who}.pem", layout.pki / f"{who}.key")
        with grpc.secure_channel(address, channel_credentials(other)) as channel:
            with pytest.raises(grpc.RpcError) as info:
                pb_grpc.KeyRelayStub(channel).ListKeyCards(pb.ListKeyCardsRequest(agencies=["police"]), timeout=10)
            assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
    # a secret from an untrusted sender is refused; a missing card is named
    with pytest.raises(JobError, match="no key card published by child_welfare, victim_services"):
        share_secret(nodes["police"], tls["police"], address, project="p1", recipients=list(AGENCIES), epoch=1)
    publish_card(nodes["child_welfare"], tls["child_welfare"], address)
    share_secret(nodes["child_welfare"], tls["child_welfare"], address, project="p2", recipients=["police"], epoch=1)
    with pytest.raises(CeremonyError):
        receive_secret(nodes["police"], tls["police"], address, project="p2", trusted_senders=["victim_services"])


def test_only_members_of_the_project_roster_send_secrets_and_an_impostor_cannot_block(relay, tmp_path):
    """Issue 14.3: a task-force certificate outside the project can neither inject nor push aside its secret."""
    import dataclasses

    from linkage.protocol._keyshare import project_roster
    from linkage.trust._ceremony import wrap_secret
    from linkage.trust._pki import issue

    layout, address, nodes, tls = relay
    issue(layout.pki, role="node", name="hospital")
    hospital = dataclasses.replace(
        nodes["police"], agency="hospital", data_dir=tmp_path / "hospital", secret=tmp_path / "hospital" / "s.key"
    )
    tls["hospital"] = load_tls(layout.pki / "ca.pem", layout.pki / "hospital.pem", layout.pki / "hospital.key")
    for name in (*AGENCIES, "hospital"):
        publish_card(nodes.get(name, hospital), tls[name], address)
    shared = share_secret(nodes["police"], tls["police"], address, project="p1", recipients=["police", "child_welfare"], epoch=1)
    roster = project_roster(nodes["child_welfare"], tls["child_welfare"], address, "p1")
    assert (roster.creator, list(roster.members)) == ("police", ["child_welfare", "police"])
    # hospital (not a member) posts a copy for child_welfare, of a newer epoch: refused
    with grpc.secure_channel(address, channel_credentials(tls["hospital"])) as channel:
        stub = pb_grpc.KeyRelayStub(channel)
        card = stub.ListKeyCards(pb.ListKeyCardsRequest(agencies=["child_welfare"]), timeout=10).cards[0]
        from linkage.trust._ceremony import KeyCard

        forged = wrap_secret(Secret.generate(), project="p1", epoch=9, recipient="child_welfare",
                             recipient_card=KeyCard.from_bytes(card), sender=tls["hospital"], now=dt.datetime.now(dt.UTC))  # fmt: skip
        with pytest.raises(grpc.RpcError) as info:
            stub.PostWrappedSecrets(pb.WrappedSecrets(project="p1", epoch=9, wrapped=[forged.to_bytes()]), timeout=10)
        assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED and "not a member of project 'p1'" in info.value.details()
        # and cannot fetch the project's copies either
        with pytest.raises(grpc.RpcError) as info:
            stub.FetchWrappedSecrets(pb.FetchWrappedRequest(project="p1"), timeout=10)
        assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
    # a member cannot add a stranger to the roster
    publish_card(nodes["victim_services"], tls["victim_services"], address)
    with pytest.raises(JobError, match="victim_services: not a member of project 'p1'"):
        share_secret(dataclasses.replace(nodes["child_welfare"], secret=tmp_path / "cw-other.key"), tls["child_welfare"], address,
                     project="p1", recipients=["victim_services"], epoch=2)  # fmt: skip
    # a copy planted in the relay's store by a non-member is passed over, not taken and not in the way
    with sqlite3.connect(layout.coordinator / "keys.db") as db:
        db.execute(
            "INSERT INTO wrapped VALUES ('p1', 9, 'hospital', 'child_welfare', ?, '2099-01-01T00:00:00+00:00')",
            (forged.to_bytes(),),
        )
    # the receiver names whom it accepts, and says whom it accepted
    got = receive_secret(nodes["child_welfare"], tls["child_welfare"], address, project="p1", trusted_senders=["police"])
    assert got.sender == "police" and got.fingerprint == shared.fingerprint
    with pytest.raises(CeremonyError, match="--sender"):
        receive_secret(dataclasses.replace(nodes["child_welfare"], secret=tmp_path / "cw3.key"), tls["child_welfare"], address,
                       project="p1", trusted_senders=[])  # fmt: skip
    # a sender outside the roster cannot be named as trusted
    with pytest.raises(CeremonyError, match="hospital: not a member of project 'p1'"):
        receive_secret(dataclasses.replace(nodes["child_welfare"], secret=tmp_path / "cw2.key"), tls["child_welfare"], address,
                       project="p1", trusted_senders=["hospital"])  # fmt: skip
    # hospital creates a project first, naming police: police, naming the lead it agreed on, takes nothing
    share_secret(hospital, tls["hospital"], address, project="p3", recipients=["police"], epoch=1)
    with pytest.raises(CeremonyError, match=r"child_welfare: not a member of project 'p3' .*created by hospital"):
        receive_secret(dataclasses.replace(nodes["police"], secret=tmp_path / "p3.key"), tls["police"], address,
                       project="p3", trusted_senders=["child_welfare"])  # fmt: skip
    assert not (tmp_path / "p3.key").exists()


def test_a_server_holding_another_partys_certificate_is_not_taken_for_the_coordinator(relay):
    # The server at the address holds a valid certificate of the project's CA, issued to
    # "coordinator"; a node (or an operator) that expects the coordinator "hq" refuses it in the
    # handshake: no key card, no wrapped secret, no job request ever reaches it.
    from linkage.protocol._clients import list_jobs, run_job_remotely

    layout, address, nodes, tls = relay
    expecting_hq = dataclasses.replace(nodes["police"], coordinators=("hq",))
    with pytest.raises(JobError, match="UNAVAILABLE"):
        publish_card(expecting_hq, tls["police"], address)
    with pytest.raises(JobError, match="UNAVAILABLE"):
        share_secret(expecting_hq, tls["police"], address, project="p1", recipients=list(AGENCIES), epoch=1)
    coordinator_tls = load_tls(layout.pki / "ca.pem", layout.pki / "coordinator.pem", layout.pki / "coordinator.key")
    with pytest.raises(JobError, match="UNAVAILABLE"):
        list_jobs(address, coordinator_tls, coordinator="hq")
    with pytest.raises(JobError, match="UNAVAILABLE"):
        list(run_job_remotely(address, coordinator_tls, pb.JobRequest(agencies=list(AGENCIES)), coordinator="hq"))
    # control: the names that match go through
    publish_card(nodes["police"], tls["police"], address)
    assert list_jobs(address, coordinator_tls, coordinator="coordinator") == []
    stored = (layout.coordinator / "audit.db").read_bytes()
    assert stored.count(b"key card published") == 1


def test_a_node_with_two_coordinators_names_the_one_it_dials(relay):
    # The relay at the address is "coordinator", listed second: by default the node expects the first
    # ("standby") and refuses the server; named, the call goes through; a name the node does not list
    # is a one-line config error before any connection.
    from linkage.errors import ConfigError

    layout, address, nodes, tls = relay
    two = dataclasses.replace(nodes["police"], coordinators=("standby", "coordinator"))
    with pytest.raises(JobError, match="UNAVAILABLE"):
        publish_card(two, tls["police"], address)
    publish_card(two, tls["police"], address, coordinator="coordinator")
    with pytest.raises(ConfigError, match="'hq' is not in node.coordinators"):
        share_secret(two, tls["police"], address, project="p1", recipients=list(AGENCIES), epoch=1, coordinator="hq")
    assert (layout.coordinator / "audit.db").read_bytes().count(b"key card published") == 1
