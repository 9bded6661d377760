"""The key ceremony: agencies share a project's linkage secret through a coordinator that cannot read it.

The coordinator relays every message of the ceremony and is trusted for nothing but delivery. Three
kinds of object travel through it, each a small canonical JSON document that it may read but cannot
forge or alter undetected:

    key card         an agency's long-term X25519 agreement key, signed with the ECDSA P-256 key of
                     its task-force certificate (the certificate travels with it)
    wrapped secret   the project secret sealed for one recipient's agreement key (HPKE, RFC 9180)
                     and signed by the sending agency, whose certificate travels with it
    secret info      the recipient's local sidecar (project, epoch, sender, fingerprint); never sent

What binds what, and which attack each binding stops:

- The card signature covers the agency name, the agreement key, the time and the certificate, so a
  coordinator that swaps the agreement key (for one of its own) breaks the signature; one that also
  swaps the certificate must present one the task-force CA issued to an agency node *of the expected
  name*, which it does not hold.
- The sealed secret uses HPKE base mode, DHKEM(X25519, HKDF-SHA256) / HKDF-SHA256 / ChaCha20-Poly1305:
  an ephemeral X25519 key per copy, a KEM context of (ephemeral key, recipient key), and an ``info``
  that binds project, epoch, sender, recipient, recipient key and time. A copy moved to another
  project, epoch, recipient or sender does not open.
- The sender signature covers every field of the copy, so a coordinator cannot wrap a secret of its
  own choosing (one it knows, which would let it read every encoding): its certificate says
  ``coordinator``, and a copy must be signed by an agency node's certificate from the task-force CA.
  Because ``info`` names the sender, another agency that strips the signature and signs as itself
  gets a copy that no longer opens: copies cannot be re-attributed.
- Signatures are made over a domain-separated message (``linkage/v1/…-signature`` then the
  canonical JSON of every other field), so a signature of one kind never verifies as another, nor as
  a TLS handshake signature made with the same certificate key.

Every wire form is canonical (sorted keys, no spaces, standard base64 with padding), and parsing
re-serialises and compares, so a copy altered in any byte is refused, even where the change would be
invisible to a lenient parser. Every failure is a `CeremonyError` whose message names the agency,
project and field at fault, never key material; a copy that fails to open gives one opaque message.

Layers: `make_key_card`, `verify_key_card`, `wrap_secret` and `unwrap_secret` are the recipes and ask
for no choices; HPKE, signing and the wire helpers below them are private. `AgreementKey.write`/
`load` and `write_secret_info`/`read_secret_info` are the only functions that touch files.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import hmac
import json
import re
import stat
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature, InvalidTag, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.hpke import AEAD, KDF, KEM, Suite
from cryptography.utils import CryptographyDeprecationWarning

from linkage._files import read_file, write_new_file
from linkage.bloom._keys import SECRET_BYTES, Secret
from linkage.errors import CeremonyError
from linkage.records._schema import PROJECT_ID
from linkage.trust._canonical import canonical_json
from linkage.trust._pki import (
    CLOCK_SKEW_ALLOWANCE,
    PARTY_NAME,
    Identity,
    PkiError,
    TlsMaterial,
    private_key_from_pem,
    refusing_malformed_certificates,
    verify_chain,
)

__all__ = [
    "AgreementKey",
    "CeremonyError",
    "KeyCard",
    "SecretInfo",
    "WrappedSecret",
    "make_key_card",
    "read_secret_info",
    "unwrap_secret",
    "verify_key_card",
    "wrap_secret",
    "write_secret_info",
]

KEY_CARD_FORMAT = "linkage-key-card"
WRAPPED_SECRET_FORMAT = "linkage-wrapped-secret"
SECRET_INFO_FORMAT = "linkage-secret-info"
WIRE_VERSION = 1
MAX_EPOCH = 2**32 - 1  # fits a protobuf uint32
MAX_WIRE_BYTES = 16 * 1024  # a card or copy is about 1.5 KiB; refuse to parse anything far larger

AGREEMENT_KEY_BYTES = 32
_SEALED_BYTES = 32 + SECRET_BYTES + 16  # HPKE enc (X25519 public key) + ciphertext + Poly1305 tag
_MAX_SIGNATURE_BYTES = 72  # a DER ECDSA P-256 signature
_NODE_ROLE = "node"

# The same names `linkage pki issue` accepts, and the same project ids a schema accepts.
_TIMESTAMP = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z")
_TIMESTAMP_FORMAT = "%Y-%m-%dT%H:%M:%SZ"

_KEY_CARD_SIGNATURE_DOMAIN = b"linkage/v1/key-card-signature\x00"
_WRAPPED_SECRET_SIGNATURE_DOMAIN = b"linkage/v1/wrapped-secret-signature\x00"
_WRAP_INFO_DOMAIN = b"linkage/v1/wrap\x00"
_AGREEMENT_KEY_FINGERPRINT_DOMAIN = b"linkage/v1/agreement-key"
_PRIVATE_FILE_MODE = stat.S_IRUSR | stat.S_IWUSR

_HPKE = Suite(KEM.X25519, KDF.HKDF_SHA256, AEAD.CHACHA20_POLY1305)
_DOES_NOT_OPEN = "wrapped secret does not open: altered, or not meant for this agency"


# --------------------------------------------------------------------------------------- keys


class AgreementKey:
    """An agency's long-term X25519 key agreement key. Its repr shows a fingerprint, never the key."""

    __slots__ = ("_private_key",)

    def __init__(self, private_key: X25519PrivateKey) -> None:
        if not isinstance(private_key, X25519PrivateKey):
            raise CeremonyError("agreement key: must be an X25519 private key")
        self._private_key = private_key

    @classmethod
    def generate(cls) -> AgreementKey:
        return cls(X25519PrivateKey.generate())

    @classmethod
    def load(cls, path: str | Path) -> AgreementKey:
        """Read a key written by `write`; errors name the file, never its contents."""
        path = Path(path)
        data = read_file(path, what="agreement key", error=CeremonyError)
        key = private_key_from_pem(data, str(path), what="agreement key", error=CeremonyError)
        if not isinstance(key, X25519PrivateKey):
            raise CeremonyError(f"{path}: not an X25519 private key; `linkage keys publish` makes the agency's agreement key")
        return cls(key)

    def write(self, path: str | Path) -> None:
        """Write the key as unencrypted PKCS#8 PEM to a new file readable by its owner only; never overwrite."""
        path = Path(path)
        pem = self._private_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        write_new_file(path, pem, what="an agreement key", error=CeremonyError)

    @property
    def public_bytes(self) -> bytes:
        """The raw 32-byte public key, as a key card carries it."""
        return _raw_public_bytes(self._private_key.public_key())

    @property
    def fingerprint(self) -> str:
        """A public name for the key pair, the same as `KeyCard.agreement_key_fingerprint`; safe to log."""
        return _agreement_key_fingerprint(self.public_bytes)

    def __repr__(self) -> str:
        return f"AgreementKey(fingerprint={self.fingerprint!r})"


# --------------------------------------------------------------------------------------- key cards


@dataclass(frozen=True, repr=False)
class KeyCard:
    """An agency's agreement public key, signed with its task-force certificate key.

    Construction checks the shape of every field; only `verify_key_card` says whether to trust it.
    The certificate is kept as PEM in the canonical form cryptography writes.
    """

    agency: str
    agreement_key: bytes
    created: dt.datetime
    certificate_pem: bytes
    signature: bytes
    _certificate: x509.Certificate = field(init=False, compare=False)

    def __post_init__(self) -> None:
        _check_agency_name(self.agency, "key card: agency")
        _check_bytes(self.agreement_key, "key card: agreement_key", exactly=AGREEMENT_KEY_BYTES)
        _check_timestamp(self.created, "key card: created")
        certificate = _parse_certificate(self.certificate_pem, "key card: certificate")
        object.__setattr__(self, "_certificate", certificate)
        object.__setattr__(self, "certificate_pem", certificate.public_bytes(serialization.Encoding.PEM))
        _check_bytes(self.signature, "key card: signature", at_most=_MAX_SIGNATURE_BYTES)

    @property
    def agreement_key_fingerprint(self) -> str:
        """What the agency's operator can read out to a sender over the phone, to compare with theirs."""
        return _agreement_key_fingerprint(self.agreement_key)

    def to_bytes(self) -> bytes:
        return _canonical_json(self._wire_fields())

    @classmethod
    def from_bytes(cls, data: bytes) -> KeyCard:
        """Parse a card; refuses anything but the exact canonical bytes `to_bytes` writes."""
        fields = _wire_object(data, "key card", KEY_CARD_FORMAT, _KEY_CARD_WIRE_FIELDS)
        card = cls(
            agency=_wire_string(fields, "agency", "key card"),
            agreement_key=_wire_base64(fields, "agreement_key", "key card"),
            created=_wire_timestamp(fields, "created", "key card"),
            certificate_pem=_pem_from_der(_wire_base64(fields, "certificate", "key card"), "key card: certificate"),
            signature=_wire_base64(fields, "signature", "key card"),
        )
        _check_canonical(card.to_bytes(), data, "key card")
        return card

    def _wire_fields(self) -> dict[str, Any]:
        return {**self._signed_fields(), "signature": _base64(self.signature)}

    def _signed_fields(self) -> dict[str, Any]:
        return {
            "format": KEY_CARD_FORMAT,
            "version": WIRE_VERSION,
            "agency": self.agency,
            "agreement_key": _base64(self.agreement_key),
            "created": _format_timestamp(self.created),
            "certificate": _base64(self._certificate.public_bytes(serialization.Encoding.DER)),
        }

    def _signed_message(self) -> bytes:
        return _KEY_CARD_SIGNATURE_DOMAIN + _canonical_json(self._signed_fields())

    def __repr__(self) -> str:
        return (
            f"KeyCard(agency={self.agency!r}, agreement_key={self.agreement_key_fingerprint!r}, "
            f"created={_format_timestamp(self.created)!r})"
        )


_KEY_CARD_WIRE_FIELDS = frozenset({"format", "version", "agency", "agreement_key", "created", "certificate", "signature"})


def make_key_card(agreement_key: AgreementKey, signer: TlsMaterial, *, now: dt.datetime) -> KeyCard:
    """The key card an agency publishes: its agreement public key signed with its certificate key.

    `signer` is the agency's own mTLS material (CA, certificate, key), already checked to belong
    together; the certificate must be an agency node's and valid at `now`.
    """
    if not isinstance(agreement_key, AgreementKey):
        raise CeremonyError("agreement key: must be an AgreementKey")
    when = _utc(now)
    identity = _verified_node(signer, when, "key card signer")
    unsigned = KeyCard(
        agency=identity.name,
        agreement_key=agreement_key.public_bytes,
        created=when,
        certificate_pem=signer.cert_pem,
        signature=b"\x00",  # replaced below; the signature covers every other field
    )
    signature = _signature(unsigned._signed_message(), signer)
    return KeyCard(
        agency=unsigned.agency,
        agreement_key=unsigned.agreement_key,
        created=unsigned.created,
        certificate_pem=unsigned.certificate_pem,
        signature=signature,
    )


def verify_key_card(card: KeyCard, ca_pem: bytes, *, expected_name: str, now: dt.datetime | None = None) -> X25519PublicKey:
    """The agreement key of agency `expected_name`, once its card is shown to come from that agency.

    Checks, in order: the certificate chains to the task-force CA and is valid at `now`; it belongs
    to an agency node named `expected_name`; the card names the same agency; the signature over the
    card verifies with the certificate's key; the card was not made in the future.
    A relay that swapped the agreement key or the certificate fails one of these.
    """
    if not isinstance(card, KeyCard):
        raise CeremonyError("key card: must be a KeyCard")
    _check_agency_name(expected_name, "expected agency name")
    when = _utc(now)
    what = f"key card of {expected_name!r}"
    identity = _verified_certificate(card.certificate_pem, ca_pem, when, f"{what}: certificate")
    if identity.name != expected_name:
        raise CeremonyError(f"{what}: certificate belongs to {identity.name!r}; the card was substituted")
    if card.agency != identity.name:
        raise CeremonyError(f"{what}: card names {card.agency!r}, but its certificate belongs to {identity.name!r}")
    if not _signature_verifies(card._signed_message(), card.signature, card._certificate):
        raise CeremonyError(f"{what}: signature does not verify; the card was altered or its key swapped")
    if card.created > when + CLOCK_SKEW_ALLOWANCE:
        raise CeremonyError(f"{what}: created in the future ({_format_timestamp(card.created)})")
    return X25519PublicKey.from_public_bytes(card.agreement_key)


# --------------------------------------------------------------------------------------- wrapped secrets


@dataclass(frozen=True, repr=False)
class WrappedSecret:
    """One copy of a project secret, sealed for one recipient's agreement key and signed by its sender.

    `sealed` is the HPKE output (ephemeral public key, ciphertext, tag). Construction checks the
    shape of every field; only `unwrap_secret` says whether to trust it.
    """

    project: str
    epoch: int
    sender: str
    recipient: str
    recipient_key: bytes
    created: dt.datetime
    sealed: bytes
    sender_certificate_pem: bytes
    signature: bytes
    _sender_certificate: x509.Certificate = field(init=False, compare=False)

    def __post_init__(self) -> None:
        _check_project(self.project, "wrapped secret: project")
        _check_epoch(self.epoch, "wrapped secret: epoch")
        _check_agency_name(self.sender, "wrapped secret: sender")
        _check_agency_name(self.recipient, "wrapped secret: recipient")
        _check_bytes(self.recipient_key, "wrapped secret: recipient_key", exactly=AGREEMENT_KEY_BYTES)
        _check_timestamp(self.created, "wrapped secret: created")
        _check_bytes(self.sealed, "wrapped secret: sealed", exactly=_SEALED_BYTES)
        certificate = _parse_certificate(self.sender_certificate_pem, "wrapped secret: sender_certificate")
        object.__setattr__(self, "_sender_certificate", certificate)
        object.__setattr__(self, "sender_certificate_pem", certificate.public_bytes(serialization.Encoding.PEM))
        _check_bytes(self.signature, "wrapped secret: signature", at_most=_MAX_SIGNATURE_BYTES)

    def to_bytes(self) -> bytes:
        return _canonical_json(self._wire_fields())

    @classmethod
    def from_bytes(cls, data: bytes) -> WrappedSecret:
        """Parse a copy; refuses anything but the exact canonical bytes `to_bytes` writes."""
        what = "wrapped secret"
        fields = _wire_object(data, what, WRAPPED_SECRET_FORMAT, _WRAPPED_SECRET_WIRE_FIELDS)
        wrapped = cls(
            project=_wire_string(fields, "project", what),
            epoch=_wire_integer(fields, "epoch", what),
            sender=_wire_string(fields, "sender", what),
            recipient=_wire_string(fields, "recipient", what),
            recipient_key=_wire_base64(fields, "recipient_key", what),
            created=_wire_timestamp(fields, "created", what),
            sealed=_wire_base64(fields, "sealed", what),
            sender_certificate_pem=_pem_from_der(_wire_base64(fields, "sender_certificate", what), f"{what}: sender_certificate"),
            signature=_wire_base64(fields, "signature", what),
        )
        _check_canonical(wrapped.to_bytes(), data, what)
        return wrapped

    def _context_fields(self) -> dict[str, Any]:
        """What the HPKE `info` binds: everything about the copy except the sealed bytes and the proof of origin."""
        return {
            "format": WRAPPED_SECRET_FORMAT,
            "version": WIRE_VERSION,
            "project": self.project,
            "epoch": self.epoch,
            "sender": self.sender,
            "recipient": self.recipient,
            "recipient_key": _base64(self.recipient_key),
            "created": _format_timestamp(self.created),
        }

    def _signed_fields(self) -> dict[str, Any]:
        return {
            **self._context_fields(),
            "sealed": _base64(self.sealed),
            "sender_certificate": _base64(self._sender_certificate.public_bytes(serialization.Encoding.DER)),
        }

    def _wire_fields(self) -> dict[str, Any]:
        return {**self._signed_fields(), "signature": _base64(self.signature)}

    def _hpke_info(self) -> bytes:
        return _WRAP_INFO_DOMAIN + _canonical_json(self._context_fields())

    def _signed_message(self) -> bytes:
        return _WRAPPED_SECRET_SIGNATURE_DOMAIN + _canonical_json(self._signed_fields())

    def __repr__(self) -> str:
        return (
            f"WrappedSecret(project={self.project!r}, epoch={self.epoch}, sender={self.sender!r}, "
            f"recipient={self.recipient!r}, created={_format_timestamp(self.created)!r})"
        )


_WRAPPED_SECRET_WIRE_FIELDS = frozenset(
    {
        "format",
        "version",
        "project",
        "epoch",
        "sender",
        "recipient",
        "recipient_key",
        "created",
        "sealed",
        "sender_certificate",
        "signature",
    }
)


@dataclass(frozen=True)
class SecretInfo:
    """What a recipient records next to a received secret: public facts, safe to log."""

    project: str
    epoch: int
    sender: str
    fingerprint: str

    def __post_init__(self) -> None:
        _check_project(self.project, "secret info: project")
        _check_epoch(self.epoch, "secret info: epoch")
        _check_agency_name(self.sender, "secret info: sender")
        if not isinstance(self.fingerprint, str) or not re.fullmatch(r"[0-9a-f]{16}", self.fingerprint):
            raise CeremonyError("secret info: fingerprint: must be 16 lowercase hex digits")

    def describes(self, secret: Secret) -> bool:
        """Whether `secret` is the one this record was written for (the secret file and sidecar agree)."""
        return hmac.compare_digest(secret.fingerprint, self.fingerprint)


def wrap_secret(
    secret: Secret,
    *,
    project: str,
    epoch: int,
    recipient: str,
    recipient_card: KeyCard,
    sender: TlsMaterial,
    now: dt.datetime,
) -> WrappedSecret:
    """A copy of `secret` that only agency `recipient` can open, signed by the sending agency.

    `recipient_card` is checked with `verify_key_card` against the sender's CA before anything is
    sealed, so a card that a relay swapped or substituted is refused here. `sender` is the sending
    agency's own mTLS material; its certificate must be an agency node's, valid at `now`.
    """
    if not isinstance(secret, Secret):
        raise CeremonyError("secret: must be a Secret")
    _check_project(project, "project")
    _check_epoch(epoch, "epoch")
    when = _utc(now)
    sender_identity = _verified_node(sender, when, "sender certificate")
    recipient_key = verify_key_card(recipient_card, sender.ca_pem, expected_name=recipient, now=when)
    context = WrappedSecret(
        project=project,
        epoch=epoch,
        sender=sender_identity.name,
        recipient=recipient,
        recipient_key=recipient_card.agreement_key,
        created=when,
        sealed=bytes(_SEALED_BYTES),  # the context fields alone decide the HPKE info
        sender_certificate_pem=sender.cert_pem,
        signature=b"\x00",
    )
    try:
        sealed = _HPKE.encrypt(_secret_bytes(secret), recipient_key, info=context._hpke_info())
    except ValueError:  # a low-order point: no agency's real key is one
        raise CeremonyError(f"key card of {recipient!r}: agreement key is unusable") from None
    return _signed_wrapped_secret(context, sealed, sender)


def unwrap_secret(
    wrapped: WrappedSecret,
    *,
    agreement_key: AgreementKey,
    my_name: str,
    ca_pem: bytes,
    expected_project: str,
    expected_epoch: int | None = None,
    trusted_senders: Collection[str] | None = None,
    now: dt.datetime | None = None,
) -> tuple[Secret, SecretInfo]:
    """Open a copy meant for this agency, once it is shown to come from an agency of the task force.

    Checks, in order: the sender's certificate chains to the task-force CA, is valid at `now`, and
    belongs to an agency node of the name the copy claims; the sender signature verifies; the sender
    is one of `trusted_senders` (any agency node when None); the copy is for `my_name`, for
    `expected_project` and, when given, `expected_epoch`, and for this agreement key. Only then is
    it opened. Returns the secret and the record to keep beside it.
    """
    if not isinstance(wrapped, WrappedSecret):
        raise CeremonyError("wrapped secret: must be a WrappedSecret")
    if not isinstance(agreement_key, AgreementKey):
        raise CeremonyError("agreement key: must be an AgreementKey")
    _check_agency_name(my_name, "my_name")
    _check_project(expected_project, "expected_project")
    if expected_epoch is not None:
        _check_epoch(expected_epoch, "expected_epoch")
    if isinstance(trusted_senders, str):
        raise CeremonyError("trusted_senders: must be a collection of agency names, not one string")
    when = _utc(now)
    what = f"wrapped secret from {wrapped.sender!r}"
    identity = _verified_certificate(wrapped.sender_certificate_pem, ca_pem, when, f"{what}: sender certificate")
    if identity.name != wrapped.sender:
        raise CeremonyError(f"{what}: signed with the certificate of {identity.name!r}; the copy is forged")
    if not _signature_verifies(wrapped._signed_message(), wrapped.signature, wrapped._sender_certificate):
        raise CeremonyError(f"{what}: sender signature does not verify; the copy was altered in transit")
    if trusted_senders is not None and identity.name not in trusted_senders:
        raise CeremonyError(f"{what}: not one of the trusted senders ({', '.join(sorted(trusted_senders))})")
    if wrapped.created > when + CLOCK_SKEW_ALLOWANCE:
        raise CeremonyError(f"{what}: created in the future ({_format_timestamp(wrapped.created)})")
    if wrapped.recipient != my_name:
        raise CeremonyError(f"{what}: meant for {wrapped.recipient!r}, not {my_name!r}")
    if wrapped.project != expected_project:
        raise CeremonyError(f"{what}: for project {wrapped.project!r}, not {expected_project!r}")
    if expected_epoch is not None and wrapped.epoch != expected_epoch:
        raise CeremonyError(f"{what}: for key epoch {wrapped.epoch}, not {expected_epoch}")
    if not hmac.compare_digest(wrapped.recipient_key, agreement_key.public_bytes):
        raise CeremonyError(
            f"{what}: sealed for agreement key {_agreement_key_fingerprint(wrapped.recipient_key)}, not this"
            f" agency's key {agreement_key.fingerprint}; publish a fresh key card and ask for the secret again"
        )
    try:
        plaintext = _HPKE.decrypt(wrapped.sealed, agreement_key._private_key, info=wrapped._hpke_info())
    except (InvalidTag, ValueError):
        raise CeremonyError(_DOES_NOT_OPEN) from None
    if len(plaintext) != SECRET_BYTES:
        raise CeremonyError(_DOES_NOT_OPEN)
    secret = Secret(plaintext)
    return secret, SecretInfo(project=wrapped.project, epoch=wrapped.epoch, sender=identity.name, fingerprint=secret.fingerprint)


# --------------------------------------------------------------------------------------- secret info files


def write_secret_info(path: str | Path, info: SecretInfo) -> None:
    """Write the sidecar that records where a secret came from; owner-only, never overwritten."""
    if not isinstance(info, SecretInfo):
        raise CeremonyError("secret info: must be a SecretInfo")
    document = {
        "format": SECRET_INFO_FORMAT,
        "version": WIRE_VERSION,
        "project": info.project,
        "epoch": info.epoch,
        "sender": info.sender,
        "fingerprint": info.fingerprint,
    }
    text = json.dumps(document, sort_keys=True, indent=2, ensure_ascii=True) + "\n"
    write_new_file(Path(path), text.encode("ascii"), what="a secret's record", error=CeremonyError)


def read_secret_info(path: str | Path) -> SecretInfo:
    """Read a sidecar written by `write_secret_info`; errors name the file and the field."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise CeremonyError(f"{path}: secret info file not found") from None
    except OSError as exc:
        raise CeremonyError(f"{path}: cannot read secret info file ({exc.strerror})") from None
    what = str(path)
    fields = _wire_object(data, what, SECRET_INFO_FORMAT, _SECRET_INFO_FIELDS)
    try:
        return SecretInfo(
            project=_wire_string(fields, "project", what),
            epoch=_wire_integer(fields, "epoch", what),
            sender=_wire_string(fields, "sender", what),
            fingerprint=_wire_string(fields, "fingerprint", what),
        )
    except CeremonyError as exc:
        raise CeremonyError(f"{path}: {exc}") from None


_SECRET_INFO_FIELDS = frozenset({"format", "version", "project", "epoch", "sender", "fingerprint"})


# --------------------------------------------------------------------------------------- signing and sealing


def _signed_wrapped_secret(context: WrappedSecret, sealed: bytes, sender: TlsMaterial) -> WrappedSecret:
    """`context` with its sealed bytes in place, signed with the sender's certificate key."""
    unsigned = _replace_wrapped(context, sealed=sealed, sender_certificate_pem=sender.cert_pem, signature=b"\x00")
    return _replace_wrapped(unsigned, signature=_signature(unsigned._signed_message(), sender))


def _replace_wrapped(wrapped: WrappedSecret, **changes: Any) -> WrappedSecret:
    fields = {
        "project": wrapped.project,
        "epoch": wrapped.epoch,
        "sender": wrapped.sender,
        "recipient": wrapped.recipient,
        "recipient_key": wrapped.recipient_key,
        "created": wrapped.created,
        "sealed": wrapped.sealed,
        "sender_certificate_pem": wrapped.sender_certificate_pem,
        "signature": wrapped.signature,
    }
    return WrappedSecret(**{**fields, **changes})


def _signature(message: bytes, signer: TlsMaterial) -> bytes:
    # TlsMaterial has already checked that this is the P-256 key of signer's certificate.
    key = serialization.load_pem_private_key(signer.key_pem, password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise CeremonyError("signing key: must be the ECDSA P-256 key of the agency's certificate")
    return key.sign(message, ec.ECDSA(hashes.SHA256()))


def _signature_verifies(message: bytes, signature: bytes, certificate: x509.Certificate) -> bool:
    try:
        public_key = certificate.public_key()
    except (ValueError, UnsupportedAlgorithm):
        return False
    if not isinstance(public_key, ec.EllipticCurvePublicKey) or not isinstance(public_key.curve, ec.SECP256R1):
        return False
    try:
        public_key.verify(signature, message, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        return False
    return True


def _secret_bytes(secret: Secret) -> bytes:
    # Secret offers no accessor for its bytes, by design; the ceremony is the one place that must
    # move them, sealed, to another agency.
    return secret.raw_bytes()


def _verified_node(material: TlsMaterial, when: dt.datetime, what: str) -> Identity:
    if not isinstance(material, TlsMaterial):
        raise CeremonyError(f"{what}: must be TlsMaterial (the agency's CA, certificate and key)")
    return _verified_certificate(material.cert_pem, material.ca_pem, when, what)


def _verified_certificate(cert_pem: bytes, ca_pem: bytes, when: dt.datetime, what: str) -> Identity:
    """The identity of an agency node's certificate that chains to the CA at `when`."""
    try:
        identity = verify_chain(cert_pem, ca_pem, now=when)
    except PkiError as exc:
        raise CeremonyError(f"{what}: {exc}") from None
    if identity.role != _NODE_ROLE:
        raise CeremonyError(f"{what}: belongs to the {identity.role} {identity.name!r}, not an agency node")
    return identity


def _agreement_key_fingerprint(public_bytes: bytes) -> str:
    # 128 bits: long enough that nobody can make a second key with the same printed name.
    return hashlib.sha256(_AGREEMENT_KEY_FINGERPRINT_DOMAIN + public_bytes).hexdigest()[:32]


def _raw_public_bytes(public_key: X25519PublicKey) -> bytes:
    return public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


# --------------------------------------------------------------------------------------- field checks


def _check_agency_name(name: object, what: str) -> None:
    if not isinstance(name, str) or not PARTY_NAME.fullmatch(name):
        raise CeremonyError(f"{what}: must be 1-64 lowercase letters, digits, '-' and '_', starting with a letter or digit")


def _check_project(project: object, what: str) -> None:
    if not isinstance(project, str) or not PROJECT_ID.fullmatch(project):
        raise CeremonyError(f"{what}: must be 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit")


def _check_epoch(epoch: object, what: str) -> None:
    if isinstance(epoch, bool) or not isinstance(epoch, int) or not 0 <= epoch <= MAX_EPOCH:
        raise CeremonyError(f"{what}: must be a whole number from 0 to {MAX_EPOCH}")


def _check_bytes(value: object, what: str, *, exactly: int | None = None, at_most: int | None = None) -> None:
    if not isinstance(value, bytes):
        raise CeremonyError(f"{what}: must be bytes")
    if exactly is not None and len(value) != exactly:
        raise CeremonyError(f"{what}: must be {exactly} bytes, not {len(value)}")
    if at_most is not None and not 0 < len(value) <= at_most:
        raise CeremonyError(f"{what}: must be 1-{at_most} bytes, not {len(value)}")


def _check_timestamp(value: object, what: str) -> None:
    if not isinstance(value, dt.datetime) or value.tzinfo is None or value.utcoffset() != dt.timedelta(0):
        raise CeremonyError(f"{what}: must be a UTC datetime")
    if value.microsecond:
        raise CeremonyError(f"{what}: must be whole seconds")


def _utc(now: object) -> dt.datetime:
    if now is None:
        now = dt.datetime.now(dt.UTC)
    if not isinstance(now, dt.datetime) or now.tzinfo is None or now.utcoffset() is None:
        raise CeremonyError("now: must be a timezone-aware datetime")
    # Whole seconds, as certificates and the wire hold them.
    return now.astimezone(dt.UTC).replace(microsecond=0)


def _parse_certificate(pem: object, what: str) -> x509.Certificate:
    if not isinstance(pem, bytes):
        raise CeremonyError(f"{what}: must be PEM bytes")
    try:
        with refusing_malformed_certificates():
            return x509.load_pem_x509_certificate(pem)
    except (ValueError, TypeError, x509.InvalidVersion, CryptographyDeprecationWarning):  # InvalidVersion is no ValueError
        raise CeremonyError(f"{what}: not a PEM certificate") from None


def _pem_from_der(der: bytes, what: str) -> bytes:
    try:
        with refusing_malformed_certificates():
            return x509.load_der_x509_certificate(der).public_bytes(serialization.Encoding.PEM)
    except (ValueError, TypeError, x509.InvalidVersion, CryptographyDeprecationWarning):
        raise CeremonyError(f"{what}: not a DER certificate") from None


# --------------------------------------------------------------------------------------- wire helpers


def _canonical_json(fields: dict[str, Any]) -> bytes:
    return canonical_json(fields, ascii_only=True).encode("ascii")


def _check_canonical(expected: bytes, data: bytes, what: str) -> None:
    # Re-serialising catches what a lenient parse forgives: duplicate keys, spaces, escapes,
    # non-canonical base64 padding bits, a certificate in another encoding.
    if expected != data:
        raise CeremonyError(f"{what}: not in canonical form (altered in transit?)")


def _wire_object(data: object, what: str, format_name: str, expected_fields: frozenset[str]) -> dict[str, Any]:
    if not isinstance(data, bytes):
        raise CeremonyError(f"{what}: must be bytes")
    if len(data) > MAX_WIRE_BYTES:
        raise CeremonyError(f"{what}: {len(data)} bytes is too large (at most {MAX_WIRE_BYTES})")
    try:
        fields = json.loads(data.decode("ascii"), parse_constant=_refuse_constant)
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise CeremonyError(f"{what}: not a JSON document") from None
    if not isinstance(fields, dict):
        raise CeremonyError(f"{what}: not a JSON object")
    if fields.get("format") != format_name:
        raise CeremonyError(f"{what}: not a {format_name} document")
    version = fields.get("version")
    if isinstance(version, bool) or version != WIRE_VERSION:
        raise CeremonyError(f"{what}: version {version!r} is not supported (expected {WIRE_VERSION})")
    if set(fields) != expected_fields:
        missing, unknown = sorted(expected_fields - set(fields)), sorted(set(fields) - expected_fields)
        raise CeremonyError(f"{what}: fields missing {missing}, unknown {unknown}")
    return fields


def _refuse_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def _wire_string(fields: dict[str, Any], key: str, what: str) -> str:
    value = fields[key]
    if not isinstance(value, str):
        raise CeremonyError(f"{what}: {key}: must be a string")
    return value


def _wire_integer(fields: dict[str, Any], key: str, what: str) -> int:
    value = fields[key]
    if isinstance(value, bool) or not isinstance(value, int):
        raise CeremonyError(f"{what}: {key}: must be a whole number")
    return value


def _wire_base64(fields: dict[str, Any], key: str, what: str) -> bytes:
    value = _wire_string(fields, key, what)
    try:
        return base64.b64decode(value.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        raise CeremonyError(f"{what}: {key}: not base64") from None


def _wire_timestamp(fields: dict[str, Any], key: str, what: str) -> dt.datetime:
    value = _wire_string(fields, key, what)
    if not _TIMESTAMP.fullmatch(value):
        raise CeremonyError(f"{what}: {key}: must be a UTC time like 2025-03-01T12:00:00Z")
    try:
        return dt.datetime.strptime(value, _TIMESTAMP_FORMAT).replace(tzinfo=dt.UTC)
    except ValueError:
        raise CeremonyError(f"{what}: {key}: not a valid date and time") from None


def _base64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _format_timestamp(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).strftime(_TIMESTAMP_FORMAT)


def secret_info_path(secret_path: Path) -> Path:
    """Where the ceremony records a secret's project, epoch and sender: ``<secret>.json``."""
    return secret_path.with_name(secret_path.name + ".json")


def key_epoch_of(secret_path: Path) -> int:
    """The epoch recorded beside a secret by the ceremony; 0 for a secret made by `keys new`."""
    info = secret_info_path(secret_path)
    return read_secret_info(info).epoch if info.exists() else 0
