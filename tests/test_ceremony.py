"""The key ceremony: agencies share a project secret through a relay that can neither read nor replace it.

Every party holds a real certificate from a task-force CA made with `linkage pki` in a temporary
folder. "The relay" is the coordinator: it sees every card and every wrapped copy as bytes, and the
attacks below are the ones it can mount on them. Forgeries are built with the module's own sealing
and signing helpers, so each refusal comes from a check, not from a malformed forgery; a control
case shows the same helpers make an accepted copy when the signer is honest.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import json
import stat
from pathlib import Path

import pytest
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PublicKey
from hypothesis import given, settings
from hypothesis import strategies as st

from linkage import Secret
from linkage.errors import LinkageError
from linkage.trust import _ceremony
from linkage.trust._ceremony import (
    AgreementKey,
    CeremonyError,
    KeyCard,
    SecretInfo,
    WrappedSecret,
    make_key_card,
    read_secret_info,
    unwrap_secret,
    verify_key_card,
    wrap_secret,
    write_secret_info,
)
from linkage.trust._pki import TlsMaterial, init_ca, issue, load_tls

NOW = dt.datetime(2025, 3, 1, 12, 0, 0, tzinfo=dt.UTC)
PROJECT = "trafficking-2025"
AGENCIES = ("police", "child_welfare", "victim_services")
DOES_NOT_OPEN = "wrapped secret does not open: altered, or not meant for this agency"
# The last day on which the certificate of the agency `retired` was valid (it expired a month ago).
RETIRED_DAY = NOW - dt.timedelta(days=30)


class TaskForce:
    """A CA with three project agencies, one agency outside the project, a coordinator and an auditor;
    plus an impostor CA that the relay controls, which has issued agency certificates of its own."""

    def __init__(self, root: Path) -> None:
        self.directory, self.impostor_directory = root / "ca", root / "impostor-ca"
        init_ca(self.directory, now=NOW - dt.timedelta(days=400))
        init_ca(self.impostor_directory, name="impostor CA", now=NOW - dt.timedelta(days=400))
        for name in (*AGENCIES, "hospital"):
            issue(self.directory, role="node", name=name, now=NOW - dt.timedelta(days=60))
        issue(self.directory, role="coordinator", name="coordinator", now=NOW - dt.timedelta(days=60))
        issue(self.directory, role="auditor", name="auditor", now=NOW - dt.timedelta(days=60))
        issue(self.directory, role="node", name="retired", now=RETIRED_DAY - dt.timedelta(hours=12), valid_days=1)
        for name in ("police", "child_welfare"):
            issue(self.impostor_directory, role="node", name=name, now=NOW - dt.timedelta(days=60))
        self.ca_pem = (self.directory / "ca.pem").read_bytes()
        self.agreement_keys = {name: AgreementKey.generate() for name in (*AGENCIES, "hospital", "retired")}
        self.cards = {
            name: make_key_card(self.agreement_keys[name], self.tls(name), now=NOW - dt.timedelta(hours=1))
            for name in (*AGENCIES, "hospital")
        }

    def tls(self, name: str) -> TlsMaterial:
        return load_tls(self.directory / "ca.pem", self.directory / f"{name}.pem", self.directory / f"{name}.key")

    def impostor_tls(self, name: str) -> TlsMaterial:
        d = self.impostor_directory
        return load_tls(d / "ca.pem", d / f"{name}.pem", d / f"{name}.key")


@pytest.fixture(scope="module")
def task_force(tmp_path_factory: pytest.TempPathFactory) -> TaskForce:
    return TaskForce(tmp_path_factory.mktemp("task-force"))


@pytest.fixture(scope="module")
def secret() -> Secret:
    return Secret.generate()


def share(
    task_force: TaskForce,
    secret: Secret,
    *,
    sender: str = "police",
    recipient: str = "child_welfare",
    epoch: int = 1,
    now: dt.datetime = NOW,
) -> WrappedSecret:
    return wrap_secret(
        secret,
        project=PROJECT,
        epoch=epoch,
        recipient=recipient,
        recipient_card=task_force.cards[recipient],
        sender=task_force.tls(sender),
        now=now,
    )


def receive(task_force: TaskForce, wrapped: WrappedSecret, *, me: str = "child_welfare", **options):
    options = {"expected_project": PROJECT, "now": NOW, **options}
    return unwrap_secret(wrapped, agreement_key=task_force.agreement_keys[me], my_name=me, ca_pem=task_force.ca_pem, **options)


def forged_copy(
    secret: Secret,
    *,
    claimed_sender: str,
    signer: TlsMaterial,
    recipient_card: KeyCard,
    recipient: str = "child_welfare",
    created: dt.datetime = NOW,
) -> WrappedSecret:
    """What an attacker who skips every sender-side check can make: a correctly sealed copy of a
    secret of its choosing, for the recipient's genuine key, signed with whatever certificate it holds."""
    context = WrappedSecret(
        project=PROJECT,
        epoch=1,
        sender=claimed_sender,
        recipient=recipient,
        recipient_key=recipient_card.agreement_key,
        created=created,
        sealed=bytes(80),
        sender_certificate_pem=signer.cert_pem,
        signature=b"\x00",
    )
    recipient_key = X25519PublicKey.from_public_bytes(recipient_card.agreement_key)
    sealed = _ceremony._HPKE.encrypt(_ceremony._secret_bytes(secret), recipient_key, info=context._hpke_info())
    return _ceremony._signed_wrapped_secret(context, sealed, signer)


def resigned(wrapped: WrappedSecret, signer: TlsMaterial, **changes) -> WrappedSecret:
    """`wrapped` with fields changed and signed again by `signer`'s certificate key (an agency turned relay)."""
    changed = _ceremony._replace_wrapped(wrapped, sender_certificate_pem=signer.cert_pem, **changes)
    return _ceremony._replace_wrapped(changed, signature=_ceremony._signature(changed._signed_message(), signer))


def with_wire_field(blob: bytes, key: str, value) -> bytes:
    """`blob` with one field replaced, re-serialised canonically, as a relay rewriting it would."""
    fields = json.loads(blob)
    fields[key] = value
    return json.dumps(fields, sort_keys=True, separators=(",", ":")).encode()


def spellings(value: bytes) -> list[bytes]:
    return [value, value.hex().encode(), base64.b64encode(value), base64.urlsafe_b64encode(value).rstrip(b"=")]


# ------------------------------------------------------------------------------------------ happy path


def test_three_agencies_end_with_the_same_secret_and_the_relay_holds_nothing_that_opens_it(task_force, secret):
    relay_holds: list[bytes] = [task_force.cards[name].to_bytes() for name in AGENCIES]

    # The police fetch the other agencies' cards from the relay and send each a copy through it.
    cards = {name: KeyCard.from_bytes(blob) for name, blob in zip(AGENCIES, relay_holds)}
    for recipient in ("child_welfare", "victim_services"):
        copy = wrap_secret(
            secret,
            project=PROJECT,
            epoch=1,
            recipient=recipient,
            recipient_card=cards[recipient],
            sender=task_force.tls("police"),
            now=NOW,
        )
        relay_holds.append(copy.to_bytes())

    received = {}
    for blob in relay_holds[len(AGENCIES) :]:
        copy = WrappedSecret.from_bytes(blob)
        received[copy.recipient] = receive(task_force, copy, me=copy.recipient)
    assert set(received) == {"child_welfare", "victim_services"}
    for got, info in received.values():
        assert got == secret
        assert info == SecretInfo(project=PROJECT, epoch=1, sender="police", fingerprint=secret.fingerprint)

    # Nothing the relay holds contains the secret or an agency's private agreement key, in any spelling,
    # and its own agreement key opens no copy.
    private_keys = [key._private_key.private_bytes_raw() for key in task_force.agreement_keys.values()]
    for blob in relay_holds:
        for value in (_ceremony._secret_bytes(secret), *private_keys):
            assert not any(spelling in blob for spelling in spellings(value))
    relay_key = AgreementKey.generate()
    for blob in relay_holds[len(AGENCIES) :]:
        copy = WrappedSecret.from_bytes(blob)
        with pytest.raises(InvalidTag):
            _ceremony._HPKE.decrypt(copy.sealed, relay_key._private_key, info=copy._hpke_info())


def test_cards_and_copies_round_trip_through_their_canonical_bytes(task_force, secret):
    card = task_force.cards["child_welfare"]
    assert KeyCard.from_bytes(card.to_bytes()) == card
    parsed = KeyCard.from_bytes(card.to_bytes())
    key = verify_key_card(parsed, task_force.ca_pem, expected_name="child_welfare", now=NOW)
    assert key.public_bytes_raw() == task_force.agreement_keys["child_welfare"].public_bytes
    copy = share(task_force, secret)
    assert WrappedSecret.from_bytes(copy.to_bytes()) == copy
    assert json.loads(copy.to_bytes())["format"] == "linkage-wrapped-secret"
    assert json.loads(card.to_bytes())["version"] == 1


def test_each_copy_is_sealed_afresh(task_force, secret):
    first, second = share(task_force, secret), share(task_force, secret)
    assert first.sealed[:32] != second.sealed[:32]  # a new ephemeral key every time
    assert receive(task_force, first)[0] == receive(task_force, second)[0] == secret


# ------------------------------------------------------------------------------------------ key files


def test_agreement_key_file_is_private_round_trips_and_is_never_overwritten(tmp_path, task_force):
    key, path = AgreementKey.generate(), tmp_path / "agreement.key"
    key.write(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert AgreementKey.load(path).public_bytes == key.public_bytes
    with pytest.raises(CeremonyError, match="refusing to overwrite an agreement key"):
        AgreementKey.generate().write(path)
    assert AgreementKey.load(path).fingerprint == key.fingerprint
    # A certificate key is a P-256 key, not an agreement key.
    with pytest.raises(CeremonyError, match="police.key: not an X25519 private key"):
        AgreementKey.load(task_force.directory / "police.key")
    with pytest.raises(CeremonyError, match="not found"):
        AgreementKey.load(tmp_path / "absent.key")
    with pytest.raises(CeremonyError, match="must be an X25519 private key"):
        AgreementKey(b"\x01" * 32)  # type: ignore[arg-type]


def test_reprs_show_fingerprints_and_names_never_key_material(task_force, secret):
    key = task_force.agreement_keys["child_welfare"]
    private = key._private_key.private_bytes_raw()
    texts = [repr(key), repr(task_force.cards["child_welfare"]), repr(share(task_force, secret))]
    assert key.fingerprint in texts[0] and key.fingerprint in texts[1]
    for text in texts:
        for value in (private, _ceremony._secret_bytes(secret)):
            assert not any(spelling in text.encode() for spelling in spellings(value))
            assert str(value) not in text


# ------------------------------------------------------------------------------------------ card attacks


def test_a_relay_that_swaps_an_agreement_key_for_its_own_is_detected(task_force, secret):
    relay_key = AgreementKey.generate()
    swapped = KeyCard.from_bytes(
        with_wire_field(
            task_force.cards["child_welfare"].to_bytes(), "agreement_key", base64.b64encode(relay_key.public_bytes).decode()
        )
    )
    with pytest.raises(CeremonyError, match="key card of 'child_welfare': signature does not verify"):
        verify_key_card(swapped, task_force.ca_pem, expected_name="child_welfare", now=NOW)
    # The sender runs the same check before it seals anything.
    with pytest.raises(CeremonyError, match="signature does not verify"):
        wrap_secret(
            secret,
            project=PROJECT,
            epoch=1,
            recipient="child_welfare",
            recipient_card=swapped,
            sender=task_force.tls("police"),
            now=NOW,
        )


def _card_signed_by_coordinator(task_force: TaskForce, key: AgreementKey) -> KeyCard:
    coordinator = task_force.tls("coordinator")
    unsigned = KeyCard(
        agency="child_welfare",
        agreement_key=key.public_bytes,
        created=NOW,
        certificate_pem=coordinator.cert_pem,
        signature=b"\x00",
    )
    return dataclasses.replace(unsigned, signature=_ceremony._signature(unsigned._signed_message(), coordinator))


@pytest.mark.parametrize(
    ("forge", "refusal"),
    [
        # its own certificate says coordinator
        (_card_signed_by_coordinator, "belongs to the coordinator 'coordinator', not an agency node"),
        # a genuine card of another agency, passed off as child_welfare's
        (lambda tf, key: tf.cards["hospital"], "certificate belongs to 'hospital'; the card was substituted"),
        # a 'child_welfare' node certificate from a CA the relay runs
        (lambda tf, key: make_key_card(key, tf.impostor_tls("child_welfare"), now=NOW), "not valid under the CA"),
    ],
    ids=["coordinator-certificate", "another-agencys-card", "impostor-ca"],
)
def test_a_relay_that_swaps_the_certificate_too_is_detected(task_force, forge, refusal):
    card = forge(task_force, AgreementKey.generate())
    with pytest.raises(CeremonyError, match=refusal):
        verify_key_card(card, task_force.ca_pem, expected_name="child_welfare", now=NOW)


def test_a_card_whose_name_disagrees_with_its_certificate_is_refused(task_force):
    police = task_force.tls("police")
    unsigned = dataclasses.replace(task_force.cards["police"], agency="child_welfare")
    card = dataclasses.replace(unsigned, signature=_ceremony._signature(unsigned._signed_message(), police))
    with pytest.raises(CeremonyError, match="card names 'child_welfare', but its certificate belongs to 'police'"):
        verify_key_card(card, task_force.ca_pem, expected_name="police", now=NOW)


def test_only_agency_nodes_make_key_cards(task_force):
    for name, role in (("coordinator", "coordinator"), ("auditor", "auditor")):
        with pytest.raises(CeremonyError, match=f"belongs to the {role} '{name}', not an agency node"):
            make_key_card(AgreementKey.generate(), task_force.tls(name), now=NOW)


def test_expired_and_future_cards_are_refused(task_force):
    card = make_key_card(task_force.agreement_keys["retired"], task_force.tls("retired"), now=RETIRED_DAY)
    verify_key_card(card, task_force.ca_pem, expected_name="retired", now=RETIRED_DAY)  # control
    with pytest.raises(CeremonyError, match="certificate: certificate: not valid under the CA"):
        verify_key_card(card, task_force.ca_pem, expected_name="retired", now=NOW)
    early = make_key_card(task_force.agreement_keys["police"], task_force.tls("police"), now=NOW + dt.timedelta(days=1))
    with pytest.raises(CeremonyError, match="created in the future"):
        verify_key_card(early, task_force.ca_pem, expected_name="police", now=NOW)


# ------------------------------------------------------------------------------------------ copy attacks


def test_the_forgery_helper_makes_an_accepted_copy_when_the_signer_is_the_agency(task_force):
    """Control for the forgery tests: with an honest signer the same helper yields a copy that opens."""
    chosen = Secret.generate()
    copy = forged_copy(
        chosen, claimed_sender="police", signer=task_force.tls("police"), recipient_card=task_force.cards["child_welfare"]
    )
    assert receive(task_force, copy)[0] == chosen


@pytest.mark.parametrize(
    ("claimed_sender", "signer", "refusal"),
    [
        ("coordinator", "coordinator", "belongs to the coordinator 'coordinator', not an agency node"),
        ("police", "coordinator", "belongs to the coordinator 'coordinator', not an agency node"),
        ("police", "auditor", "belongs to the auditor 'auditor', not an agency node"),
        ("police", "impostor:police", "not valid under the CA"),
        ("police", "hospital", "signed with the certificate of 'hospital'; the copy is forged"),
    ],
)
def test_a_relay_cannot_make_agencies_adopt_a_secret_of_its_choosing(task_force, claimed_sender, signer, refusal):
    tls = task_force.impostor_tls(signer.split(":")[1]) if signer.startswith("impostor:") else task_force.tls(signer)
    copy = forged_copy(
        Secret.generate(), claimed_sender=claimed_sender, signer=tls, recipient_card=task_force.cards["child_welfare"]
    )
    with pytest.raises(CeremonyError, match=refusal):
        receive(task_force, WrappedSecret.from_bytes(copy.to_bytes()))


def test_the_coordinator_cannot_wrap_even_through_the_recipe(task_force):
    with pytest.raises(CeremonyError, match="sender certificate: belongs to the coordinator"):
        wrap_secret(
            Secret.generate(),
            project=PROJECT,
            epoch=1,
            recipient="child_welfare",
            recipient_card=task_force.cards["child_welfare"],
            sender=task_force.tls("coordinator"),
            now=NOW,
        )


# Half the replacements come from the base64 alphabet, so that the altered document still parses
# and the change reaches the certificate, signature and HPKE checks rather than the JSON parser.
BASE64_ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
REPLACEMENT_BYTES = st.one_of(st.sampled_from(list(BASE64_ALPHABET)), st.integers(0, 255))


def altered_at(blob: bytes, position: int, replacement: int) -> bytes:
    return blob[:position] + bytes([replacement]) + blob[position + 1 :]


def plausible_replacement(original: int) -> int:
    """Another character of the same kind: base64 stays base64, a digit stays a digit."""
    for alphabet in (b"0123456789", BASE64_ALPHABET):
        if original in alphabet:
            return alphabet[(alphabet.index(original) + 1) % len(alphabet)]
    return ord("x") if original != ord("x") else ord("y")


def refuses_copy(task_force: TaskForce, blob: bytes) -> bool:
    try:
        receive(task_force, WrappedSecret.from_bytes(blob))
    except CeremonyError:
        return True
    return False


def refuses_card(task_force: TaskForce, blob: bytes) -> bool:
    try:
        verify_key_card(KeyCard.from_bytes(blob), task_force.ca_pem, expected_name="child_welfare", now=NOW)
    except CeremonyError:
        return True
    return False


@settings(max_examples=400)
@given(data=st.data())
def test_a_copy_altered_in_any_byte_is_refused(task_force, secret, data):
    blob = _blob_for_alteration(task_force, secret)
    position = data.draw(st.integers(0, len(blob) - 1), label="position")
    replacement = data.draw(REPLACEMENT_BYTES.filter(lambda b: b != blob[position]), label="byte")
    assert refuses_copy(task_force, altered_at(blob, position, replacement))


@settings(max_examples=300)
@given(data=st.data())
def test_a_card_altered_in_any_byte_is_refused(task_force, data):
    blob = task_force.cards["child_welfare"].to_bytes()
    position = data.draw(st.integers(0, len(blob) - 1), label="position")
    replacement = data.draw(REPLACEMENT_BYTES.filter(lambda b: b != blob[position]), label="byte")
    assert refuses_card(task_force, altered_at(blob, position, replacement))


def test_every_byte_of_a_copy_and_a_card_is_covered(task_force, secret):
    """Each position once, replaced by a character of the same kind: no field goes unchecked."""
    copy, card = _blob_for_alteration(task_force, secret), task_force.cards["child_welfare"].to_bytes()
    accepted = [
        (kind, position)
        for kind, blob, refuses in (("copy", copy, refuses_copy), ("card", card, refuses_card))
        for position in range(len(blob))
        if not refuses(task_force, altered_at(blob, position, plausible_replacement(blob[position])))
    ]
    assert accepted == []


_BLOBS: dict[int, bytes] = {}


def _blob_for_alteration(task_force: TaskForce, secret: Secret) -> bytes:
    # One copy per test run, so that every example alters the same bytes.
    if id(task_force) not in _BLOBS:
        blob = share(task_force, secret).to_bytes()
        receive(task_force, WrappedSecret.from_bytes(blob))  # control: unaltered, it opens
        _BLOBS[id(task_force)] = blob
    return _BLOBS[id(task_force)]


BROKEN_SIGNATURE = "sender signature does not verify; the copy was altered in transit"


@pytest.mark.parametrize(
    ("key", "value", "refusal"),
    [
        ("project", "another-project", BROKEN_SIGNATURE),
        ("epoch", 2, BROKEN_SIGNATURE),
        ("recipient", "victim_services", BROKEN_SIGNATURE),
        ("created", "2025-03-01T11:00:00Z", BROKEN_SIGNATURE),
        ("recipient_key", base64.b64encode(bytes(32)).decode(), BROKEN_SIGNATURE),
        ("sealed", base64.b64encode(bytes(80)).decode(), BROKEN_SIGNATURE),
        # the certificate still says police, so this is caught one step earlier
        ("sender", "hospital", "from 'hospital': signed with the certificate of 'police'; the copy is forged"),
    ],
)
def test_a_relay_that_rewrites_a_field_canonically_is_detected(task_force, secret, key, value, refusal):
    blob = with_wire_field(share(task_force, secret).to_bytes(), key, value)
    with pytest.raises(CeremonyError, match=refusal):
        receive(task_force, WrappedSecret.from_bytes(blob), me=json.loads(blob)["recipient"])


@pytest.mark.parametrize(
    "changes",
    [
        {"sender": "hospital"},
        {"sender": "hospital", "epoch": 2},
        {"sender": "hospital", "project": "another-project"},
        {"sender": "hospital", "created": NOW - dt.timedelta(minutes=1)},
    ],
    ids=["sender", "sender+epoch", "sender+project", "sender+created"],
)
def test_another_agency_that_re_signs_a_copy_as_its_own_gets_one_that_does_not_open(task_force, secret, changes):
    copy = resigned(share(task_force, secret), task_force.tls("hospital"), **changes)
    options = {"expected_project": changes.get("project", PROJECT)}
    with pytest.raises(CeremonyError) as refused:
        receive(task_force, copy, **options)
    assert str(refused.value) == DOES_NOT_OPEN


def test_a_copy_meant_for_one_agency_is_refused_by_another(task_force, secret):
    copy = share(task_force, secret, recipient="child_welfare")
    with pytest.raises(CeremonyError, match="meant for 'child_welfare', not 'victim_services'"):
        receive(task_force, copy, me="victim_services")
    # An agency that claims another's name still lacks that agency's agreement key.
    with pytest.raises(CeremonyError, match="sealed for agreement key .* not this agency's key"):
        unwrap_secret(
            copy,
            agreement_key=task_force.agreement_keys["victim_services"],
            my_name="child_welfare",
            ca_pem=task_force.ca_pem,
            expected_project=PROJECT,
            now=NOW,
        )


def test_a_copy_for_another_project_or_epoch_is_refused(task_force, secret):
    copy = share(task_force, secret, epoch=3)
    with pytest.raises(CeremonyError, match="for project 'trafficking-2025', not 'other-project'"):
        receive(task_force, copy, expected_project="other-project")
    with pytest.raises(CeremonyError, match="for key epoch 3, not 4"):
        receive(task_force, copy, expected_epoch=4)
    assert receive(task_force, copy, expected_epoch=3)[1].epoch == 3


def test_expired_or_foreign_senders_are_refused(task_force, secret):
    early_card = make_key_card(
        task_force.agreement_keys["child_welfare"], task_force.tls("child_welfare"), now=RETIRED_DAY - dt.timedelta(hours=1)
    )
    copy = wrap_secret(
        secret,
        project=PROJECT,
        epoch=1,
        recipient="child_welfare",
        recipient_card=early_card,
        sender=task_force.tls("retired"),
        now=RETIRED_DAY,
    )
    assert receive(task_force, copy, now=RETIRED_DAY)[0] == secret  # control: while the certificate was valid
    with pytest.raises(CeremonyError, match="sender certificate: certificate: not valid under the CA"):
        receive(task_force, copy, now=NOW)
    with pytest.raises(CeremonyError, match="sender certificate: certificate: not valid under the CA"):
        share(task_force, secret, sender="retired")
    # A sender from the relay's own CA cannot even find the recipients' cards valid.
    with pytest.raises(CeremonyError, match="key card of 'child_welfare': certificate: .*not valid under the CA"):
        wrap_secret(
            secret,
            project=PROJECT,
            epoch=1,
            recipient="child_welfare",
            recipient_card=task_force.cards["child_welfare"],
            sender=task_force.impostor_tls("police"),
            now=NOW,
        )


def test_a_copy_from_the_future_is_refused(task_force, secret):
    copy = share(task_force, secret, now=NOW + dt.timedelta(hours=1))
    with pytest.raises(CeremonyError, match="created in the future"):
        receive(task_force, copy)


def test_trusted_senders_limit_who_may_share(task_force, secret):
    copy = share(task_force, secret)
    with pytest.raises(CeremonyError, match="not one of the trusted senders \\(victim_services\\)"):
        receive(task_force, copy, trusted_senders={"victim_services"})
    assert receive(task_force, copy, trusted_senders={"police"})[0] == secret
    with pytest.raises(CeremonyError, match="not one string"):
        receive(task_force, copy, trusted_senders="police")


def test_wrap_checks_its_arguments(task_force, secret):
    for epoch in (-1, True, 2**32, 1.0):
        with pytest.raises(CeremonyError, match="epoch: must be a whole number"):
            share(task_force, secret, epoch=epoch)
    with pytest.raises(CeremonyError, match="now: must be a timezone-aware datetime"):
        share(task_force, secret, now=NOW.replace(tzinfo=None))
    with pytest.raises(CeremonyError, match="project: must be"):
        wrap_secret(
            secret,
            project="no spaces",
            epoch=1,
            recipient="child_welfare",
            recipient_card=task_force.cards["child_welfare"],
            sender=task_force.tls("police"),
            now=NOW,
        )


# ------------------------------------------------------------------------------------------ wire forms


@settings(max_examples=200)
@given(data=st.binary(max_size=4096))
def test_arbitrary_bytes_are_refused_with_a_ceremony_error(data):
    for parse in (KeyCard.from_bytes, WrappedSecret.from_bytes):
        with pytest.raises(CeremonyError):
            parse(data)


def test_non_canonical_or_unknown_documents_are_refused(task_force, secret):
    blob = share(task_force, secret).to_bytes()
    fields = json.loads(blob)
    cases = {
        "not in canonical form": json.dumps(fields, sort_keys=True).encode(),  # spaces
        "not in canonical form ": blob[:-1] + b',"epoch":1}',  # a duplicate key
        "version 2 is not supported": with_wire_field(blob, "version", 2),
        "unknown \\['extra'\\]": with_wire_field(blob, "extra", "x"),
        "not a linkage-wrapped-secret document": task_force.cards["police"].to_bytes(),
        "epoch: must be a whole number": with_wire_field(blob, "epoch", "1"),
        "too large": blob + b" " * 20000,
    }
    for message, data in cases.items():
        with pytest.raises(CeremonyError, match=message.strip()):
            WrappedSecret.from_bytes(data)
    # Base64 whose unused low bits are set decodes to the same bytes, and is still refused.
    card = json.loads(task_force.cards["police"].to_bytes())
    key = card["agreement_key"]  # 32 bytes: 43 characters and one '='; the 43rd carries 2 unused bits
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    sloppy = key[:42] + alphabet[alphabet.index(key[42]) ^ 1] + "="
    assert base64.b64decode(sloppy) == base64.b64decode(key)
    with pytest.raises(CeremonyError, match="not in canonical form"):
        KeyCard.from_bytes(with_wire_field(task_force.cards["police"].to_bytes(), "agreement_key", sloppy))


# ------------------------------------------------------------------------------------------ secret info


def test_secret_info_sidecar_round_trips_and_is_never_overwritten(tmp_path, task_force, secret):
    got, info = receive(task_force, share(task_force, secret, epoch=7))
    got.write(tmp_path / "secret.key")
    write_secret_info(tmp_path / "secret.json", info)
    assert stat.S_IMODE((tmp_path / "secret.json").stat().st_mode) == 0o600
    assert read_secret_info(tmp_path / "secret.json") == info == SecretInfo(PROJECT, 7, "police", secret.fingerprint)
    assert info.describes(Secret.from_file(tmp_path / "secret.key"))
    assert not info.describes(Secret.generate())
    with pytest.raises(CeremonyError, match="refusing to overwrite"):
        write_secret_info(tmp_path / "secret.json", dataclasses.replace(info, epoch=8))
    assert read_secret_info(tmp_path / "secret.json").epoch == 7


def test_malformed_secret_info_files_are_refused_naming_the_file(tmp_path):
    document = {
        "format": "linkage-secret-info",
        "version": 1,
        "project": PROJECT,
        "epoch": 1,
        "sender": "police",
        "fingerprint": "0" * 16,
    }
    cases = {
        "epoch: must be a whole number": {**document, "epoch": "1"},
        "fingerprint: must be 16 lowercase hex digits": {**document, "fingerprint": "xyz"},
        "missing \\['sender'\\]": {k: v for k, v in document.items() if k != "sender"},
    }
    for number, (message, content) in enumerate(cases.items()):
        path = tmp_path / f"info-{number}.json"
        path.write_text(json.dumps(content))
        with pytest.raises(CeremonyError, match=f"info-{number}.json: .*{message}"):
            read_secret_info(path)
    with pytest.raises(CeremonyError, match="secret info file not found"):
        read_secret_info(tmp_path / "absent.json")


def test_ceremony_error_is_a_linkage_error_with_a_grpc_status():
    assert issubclass(CeremonyError, LinkageError)
    assert CeremonyError.grpc_status == "FAILED_PRECONDITION"
