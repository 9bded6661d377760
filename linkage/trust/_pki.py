"""The task-force CA and the role certificates that every party presents for mTLS.

One CA per task force issues one certificate per party. The certificate says who the party is and
what it may do, in three places that must agree:

    subject CN     the party's name          ``police``
    subject OU     the party's role          ``node`` | ``coordinator`` | ``auditor``
    SAN URI        both, unambiguously       ``linkage://node/police``

plus SAN DNS / IP entries for the hosts it serves on. Every certificate carries both serverAuth and
clientAuth, because every party is both a gRPC client and a gRPC server. A server reads the caller's
role back with ``identity_from_auth_context(context.auth_context())``.

Keys are ECDSA P-256: gRPC's TLS stack (BoringSSL) accepts them for servers and clients alike, which
is not reliably true of Ed25519. Private keys are written unencrypted, PEM, mode 0600; nothing here
ever overwrites a key or a certificate.

Layers: ``ca_certificate`` and ``role_certificate`` build certificates from keys and a ``now`` and
touch no files; ``init_ca``, ``issue`` and ``load_tls`` are the thin file adapters. grpc credentials
are made from ``TlsMaterial`` in ``linkage.protocol._credentials``: nothing here imports grpc.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import ipaddress
import re
import stat
import warnings
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from cryptography.utils import CryptographyDeprecationWarning
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from cryptography.x509.verification import PolicyBuilder, Store, VerificationError

from linkage._files import read_file, write_new_file
from linkage.errors import LinkageError, PkiError

__all__ = [
    "CA_CERT_FILE",
    "CA_KEY_FILE",
    "CLOCK_SKEW_ALLOWANCE",
    "DEFAULT_CA_NAME",
    "DEFAULT_CA_VALID_DAYS",
    "DEFAULT_HOSTS",
    "DEFAULT_VALID_DAYS",
    "Identity",
    "PkiError",
    "ROLES",
    "TlsMaterial",
    "URI_SCHEME",
    "ca_certificate",
    "certificate_fingerprint",
    "identity_from_auth_context",
    "identity_from_pem",
    "identity_host_name",
    "init_ca",
    "issue",
    "load_tls",
    "new_private_key",
    "role_certificate",
    "verify_chain",
]

ROLES = ("node", "coordinator", "auditor")
DEFAULT_CA_NAME = "linkage task-force CA"
DEFAULT_CA_VALID_DAYS = 3650
DEFAULT_VALID_DAYS = 825
DEFAULT_HOSTS = ("localhost", "127.0.0.1")
CA_CERT_FILE = "ca.pem"
CA_KEY_FILE = "ca.key"
URI_SCHEME = "linkage"
# Certificates start this long before `now`, so that a party whose clock runs a little behind the
# CA's can use a certificate the moment it is issued.
CLOCK_SKEW_ALLOWANCE = dt.timedelta(minutes=5)

PARTY_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")  # a party's name: certificates, configs, rosters (fullmatch)
_DNS_LABEL = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)")
_MAX_COMMON_NAME = 64  # RFC 5280 ub-common-name
_PRIVATE_FILE_MODE = stat.S_IRUSR | stat.S_IWUSR
_PUBLIC_FILE_MODE = _PRIVATE_FILE_MODE | stat.S_IRGRP | stat.S_IROTH


@dataclass(frozen=True)
class Identity:
    """Who a certificate says its holder is: a role, a name, and the certificate's SHA-256."""

    role: str
    name: str
    fingerprint: str

    def __str__(self) -> str:
        return f"{self.role}/{self.name}"


# --------------------------------------------------------------------------------------- building


def new_private_key() -> ec.EllipticCurvePrivateKey:
    """A fresh ECDSA P-256 key from the operating system's random source."""
    return ec.generate_private_key(ec.SECP256R1())


def ca_certificate(
    key: ec.EllipticCurvePrivateKey,
    *,
    name: str = DEFAULT_CA_NAME,
    now: dt.datetime | None = None,
    valid_days: int = DEFAULT_CA_VALID_DAYS,
) -> x509.Certificate:
    """The self-signed certificate of a task-force CA that issues party certificates and nothing else."""
    _check_key(key, "CA key")
    if not name or len(name) > _MAX_COMMON_NAME or not name.isprintable():
        raise PkiError(f"CA name: must be 1-{_MAX_COMMON_NAME} printable characters")
    start, end = _validity(_utc_now(now), valid_days)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    public_key = key.public_key()
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        # path_length=0: the CA signs party certificates directly and can delegate to nobody.
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(cert_sign=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .sign(key, hashes.SHA256())
    )


def role_certificate(
    ca_cert: x509.Certificate,
    ca_key: ec.EllipticCurvePrivateKey,
    public_key: ec.EllipticCurvePublicKey,
    *,
    role: str,
    name: str,
    hosts: Sequence[str] = DEFAULT_HOSTS,
    now: dt.datetime | None = None,
    valid_days: int = DEFAULT_VALID_DAYS,
) -> x509.Certificate:
    """A party's certificate for `public_key`, signed by the CA, usable as TLS server and client.

    It never outlives the CA: its end is cut to the CA's, so a chain that verifies today verifies
    until the party certificate's own printed date.
    """
    _check_role_and_name(role, name)
    _check_key(ca_key, "CA key")
    if not isinstance(public_key, ec.EllipticCurvePublicKey) or not isinstance(public_key.curve, ec.SECP256R1):
        raise PkiError("party key: must be an ECDSA P-256 public key")
    if ca_cert.public_key() != ca_key.public_key():
        raise PkiError("CA key: does not belong to the CA certificate")
    issued_at = _utc_now(now)
    start, end = _validity(issued_at, valid_days)
    if not ca_cert.not_valid_before_utc <= issued_at <= ca_cert.not_valid_after_utc:
        raise PkiError(f"CA certificate: not valid at {issued_at:%Y-%m-%d %H:%M:%S} UTC")
    end = min(end, ca_cert.not_valid_after_utc)
    alternative_names: list[x509.GeneralName] = [x509.UniformResourceIdentifier(_identity_uri(role, name))]
    alternative_names += [x509.DNSName(identity_host_name(role, name)), *_host_names(hosts)]
    ca_key_id = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    return (
        x509.CertificateBuilder()
        .subject_name(
            x509.Name(
                [
                    x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, role),
                    x509.NameAttribute(NameOID.COMMON_NAME, name),
                ]
            )
        )
        .issuer_name(ca_cert.subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(digital_signature=True), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
            critical=False,
        )
        .add_extension(x509.SubjectAlternativeName(alternative_names), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_key_id), critical=False)
        .sign(ca_key, hashes.SHA256())
    )


# --------------------------------------------------------------------------------------- reading


def identity_from_pem(cert_pem: bytes) -> Identity:
    """The role and name a linkage certificate carries. Raises `PkiError` if it carries none.

    This reads what the certificate says; it does not check who signed it. On an mTLS connection
    gRPC has already checked the chain against the task-force CA; elsewhere call `verify_chain`.
    """
    return _identity(cert_pem, "certificate")


def _identity(cert_pem: bytes, where: str) -> Identity:
    cert = _parse_certificate(cert_pem, where)
    subject_role = _single_attribute(cert.subject, NameOID.ORGANIZATIONAL_UNIT_NAME)
    subject_name = _single_attribute(cert.subject, NameOID.COMMON_NAME)
    uris = [uri for uri in _san_uris(cert) if uri.startswith(f"{URI_SCHEME}://")]
    if len(uris) > 1:
        raise PkiError(f"{where}: carries {len(uris)} linkage identities; expected one")
    if uris:
        role, _, name = uris[0].removeprefix(f"{URI_SCHEME}://").partition("/")
        if (subject_role, subject_name) != (role, name):
            raise PkiError(f"{where}: subject OU/CN disagree with its linkage:// identity")
    elif subject_role is not None and subject_name is not None:
        role, name = subject_role, subject_name
    else:
        raise PkiError(f"{where}: carries no linkage role (not issued by `linkage pki issue`)")
    if role not in ROLES:
        raise PkiError(f"{where}: carries no linkage role ({role!r} is not one of {', '.join(ROLES)})")
    if not PARTY_NAME.fullmatch(name):
        raise PkiError(f"{where}: carries no valid linkage name")
    return Identity(role=role, name=name, fingerprint=certificate_fingerprint(cert))


def identity_from_auth_context(auth_context: dict[str, list[bytes]]) -> Identity | None:
    """The caller's identity from grpc's ``ServicerContext.auth_context()``; None on a plaintext call.

    With mTLS, grpcio (1.85) fills ``x509_pem_cert`` with the peer's verified leaf certificate (and
    ``x509_common_name``, ``x509_subject``, ``x509_subject_alternative_name`` ...). The role is read
    from the certificate itself, not from those derived strings. Raises `PkiError` when the caller
    presented a certificate that carries no linkage role.
    """
    pems = auth_context.get("x509_pem_cert") or []
    if not pems:
        return None
    if len(pems) != 1:
        raise PkiError(f"peer: presented {len(pems)} leaf certificates; expected one")
    return identity_from_pem(pems[0])


def certificate_fingerprint(cert: x509.Certificate) -> str:
    """The hex SHA-256 of the certificate's DER: public, stable, and what `openssl x509 -fingerprint` prints."""
    return cert.fingerprint(hashes.SHA256()).hex()


def verify_chain(cert_pem: bytes, ca_pem: bytes, *, now: dt.datetime | None = None) -> Identity:
    """Check that the CA issued this party certificate and that both are valid at `now`.

    Uses cryptography's RFC 5280 path validation with the CA as the only trust anchor, as a client
    certificate (every linkage certificate is also one). Returns the identity it carries; raises
    `PkiError` otherwise.
    """
    cert = _parse_certificate(cert_pem, "certificate")
    ca_cert = _parse_certificate(ca_pem, "CA certificate")
    when = _utc_now(now)
    verifier = PolicyBuilder().store(Store([ca_cert])).time(when).build_client_verifier()
    try:
        verifier.verify(cert, [])
    except VerificationError as exc:
        raise PkiError(f"certificate: not valid under the CA at {when:%Y-%m-%d %H:%M:%S} UTC ({exc})") from None
    return identity_from_pem(cert_pem)


# --------------------------------------------------------------------------------------- files


def init_ca(
    directory: str | Path,
    *,
    name: str = DEFAULT_CA_NAME,
    now: dt.datetime | None = None,
    valid_days: int = DEFAULT_CA_VALID_DAYS,
) -> Path:
    """Create a new CA in `directory` (made, mode 0700, if absent): ``ca.pem`` and ``ca.key`` (0600).

    Refuses if either file already exists. Returns the certificate's path.
    """
    directory = Path(directory)
    cert_path, key_path = directory / CA_CERT_FILE, directory / CA_KEY_FILE
    _refuse_existing(cert_path, key_path, what="a CA")
    key = new_private_key()
    cert = ca_certificate(key, name=name, now=now, valid_days=valid_days)
    _make_directory(directory)
    _write_pair(cert_path, cert, key_path, key, what="a CA")
    return cert_path


def issue(
    directory: str | Path,
    *,
    role: str,
    name: str,
    hosts: Sequence[str] = DEFAULT_HOSTS,
    now: dt.datetime | None = None,
    valid_days: int = DEFAULT_VALID_DAYS,
) -> tuple[Path, Path]:
    """Issue a certificate for party `name` in `role`, signed by the CA in `directory`.

    Writes ``NAME.pem`` and ``NAME.key`` (0600) next to the CA; refuses to overwrite either.
    Returns (certificate path, key path).
    """
    _check_role_and_name(role, name)
    directory = Path(directory)
    cert_path, key_path = directory / f"{name}.pem", directory / f"{name}.key"
    ca_cert, ca_key = _load_ca(directory)
    _refuse_existing(cert_path, key_path, what=f"the certificate of {name!r}")
    key = new_private_key()
    cert = role_certificate(ca_cert, ca_key, key.public_key(), role=role, name=name, hosts=hosts, now=now, valid_days=valid_days)
    _write_pair(cert_path, cert, key_path, key, what=f"the certificate of {name!r}")
    return cert_path, key_path


@dataclass(frozen=True, repr=False)
class TlsMaterial:
    """What one party needs for mTLS: the task-force CA, its own certificate and its private key.

    Checked on construction: all three parse, the key belongs to the certificate, the certificate
    carries a linkage identity and the CA signed it. Dates are left to the TLS handshake. The repr
    shows the identity and fingerprints, never the key.
    """

    ca_pem: bytes
    cert_pem: bytes
    key_pem: bytes

    def __post_init__(self) -> None:
        _check_tls_material(self.ca_pem, self.cert_pem, self.key_pem)

    @property
    def identity(self) -> Identity:
        return identity_from_pem(self.cert_pem)

    def __repr__(self) -> str:
        ca_fingerprint = certificate_fingerprint(x509.load_pem_x509_certificate(self.ca_pem))
        return f"TlsMaterial(identity={str(self.identity)!r}, fingerprint={self.identity.fingerprint!r}, ca={ca_fingerprint!r})"


def load_tls(ca_path: str | Path, cert_path: str | Path, key_path: str | Path) -> TlsMaterial:
    """Read and check one party's TLS material; errors name the file at fault."""
    ca_path, cert_path, key_path = Path(ca_path), Path(cert_path), Path(key_path)
    ca_pem, cert_pem, key_pem = _read_file(ca_path), _read_file(cert_path), _read_file(key_path)
    # Check here, naming the files; the constructor's own check then passes.
    _check_tls_material(ca_pem, cert_pem, key_pem, ca_where=str(ca_path), cert_where=str(cert_path), key_where=str(key_path))
    return TlsMaterial(ca_pem=ca_pem, cert_pem=cert_pem, key_pem=key_pem)


def _check_tls_material(
    ca_pem: bytes,
    cert_pem: bytes,
    key_pem: bytes,
    *,
    ca_where: str = "CA certificate",
    cert_where: str = "certificate",
    key_where: str = "private key",
) -> None:
    ca_cert = _parse_certificate(ca_pem, ca_where)
    cert = _parse_certificate(cert_pem, cert_where)
    key = _parse_private_key(key_pem, key_where)
    if cert.public_key() != key.public_key():
        raise PkiError(f"{key_where}: does not belong to the certificate {cert_where}")
    try:
        cert.verify_directly_issued_by(ca_cert)
    except (ValueError, TypeError, InvalidSignature):
        raise PkiError(f"{cert_where}: not issued by the CA {ca_where}") from None
    _identity(cert_pem, cert_where)


# --------------------------------------------------------------------------------------- helpers


def _check_role_and_name(role: str, name: str) -> None:
    if role not in ROLES:
        raise PkiError(f"role: {role!r} is not one of {', '.join(ROLES)}")
    if not isinstance(name, str) or not PARTY_NAME.fullmatch(name):
        raise PkiError(f"name: {name!r} must be 1-64 lowercase letters, digits, '-' and '_', starting with a letter or digit")
    if name == Path(CA_CERT_FILE).stem:
        raise PkiError(f"name: {name!r} is reserved for the CA's own files")


def _check_key(key: object, what: str) -> ec.EllipticCurvePrivateKey:
    """``key`` if it is an ECDSA P-256 private key; a PkiError naming ``what`` otherwise."""
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP256R1):
        raise PkiError(f"{what}: must be an ECDSA P-256 private key")
    return key


def _utc_now(now: dt.datetime | None) -> dt.datetime:
    if now is None:
        now = dt.datetime.now(dt.UTC)
    elif now.tzinfo is None or now.utcoffset() is None:
        raise PkiError("now: must be a timezone-aware datetime")
    # Certificates hold whole seconds; truncating here makes the printed dates exactly predictable.
    return now.astimezone(dt.UTC).replace(microsecond=0)


def _validity(issued_at: dt.datetime, valid_days: int) -> tuple[dt.datetime, dt.datetime]:
    """(not before, not after) of a certificate issued at `issued_at` (already UTC, whole seconds)."""
    if isinstance(valid_days, bool) or not isinstance(valid_days, int) or valid_days < 1:
        raise PkiError(f"valid_days: must be a positive whole number of days, not {valid_days!r}")
    return issued_at - CLOCK_SKEW_ALLOWANCE, issued_at + dt.timedelta(days=valid_days)


def _key_usage(*, cert_sign: bool = False, digital_signature: bool = False) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=digital_signature,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )


def _identity_uri(role: str, name: str) -> str:
    return f"{URI_SCHEME}://{role}/{name}"


IDENTITY_HOST_SUFFIX = ".linkage.invalid"


def identity_host_name(role: str, name: str) -> str:
    """The DNS name every certificate carries for its identity (``police.node.linkage.invalid``).

    A client that dials a party sets it as the TLS target name, so the handshake itself fails unless
    the server's certificate was issued to that party: TLS hostname checks match DNS names, not the
    ``linkage://`` URI. ``.invalid`` is reserved (RFC 2606): it never names a real host, and
    ``hosts`` may not use the suffix, so no certificate can carry another party's identity name.
    """
    return f"{name}.{role}{IDENTITY_HOST_SUFFIX}"


def _host_names(hosts: Iterable[str]) -> list[x509.GeneralName]:
    if isinstance(hosts, str):
        raise PkiError("hosts: must be a list of host names or IP addresses, not one string")
    names: list[x509.GeneralName] = []
    for host in hosts:
        if not isinstance(host, str):
            raise PkiError(f"hosts: {host!r} is neither a DNS name nor an IP address")
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
            continue
        except ValueError:
            pass
        if host.rstrip(".").lower().endswith(IDENTITY_HOST_SUFFIX):
            raise PkiError(f"hosts: {host!r} ends in {IDENTITY_HOST_SUFFIX}, which is kept for parties' identities")
        labels = host.rstrip(".").split(".")
        if len(host) > 253 or not all(_DNS_LABEL.fullmatch(label) for label in labels):
            raise PkiError(f"hosts: {host!r} is neither a DNS name nor an IP address")
        names.append(x509.DNSName(host.rstrip(".").lower()))
    return names


def _single_attribute(name: x509.Name, oid: x509.ObjectIdentifier) -> str | None:
    values = name.get_attributes_for_oid(oid)
    if len(values) != 1:
        return None
    value = values[0].value
    return value if isinstance(value, str) else None


def _san_uris(cert: x509.Certificate) -> list[str]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return san.get_values_for_type(x509.UniformResourceIdentifier)


def _parse_certificate(pem: bytes, where: str) -> x509.Certificate:
    try:
        with refusing_malformed_certificates():
            return x509.load_pem_x509_certificate(pem)
    except (ValueError, TypeError, x509.InvalidVersion, CryptographyDeprecationWarning):
        raise PkiError(f"{where}: not a PEM certificate") from None


def private_key_from_pem(pem: bytes, where: str, *, what: str, error: type[LinkageError]) -> PrivateKeyTypes:
    """An unencrypted PEM private key of any kind (the caller checks the kind); an encrypted or
    unreadable one is ``error`` naming ``where`` and ``what`` it should hold, never the key."""
    try:
        return serialization.load_pem_private_key(pem, password=None)
    except TypeError:
        raise error(f"{where}: {what} is encrypted; linkage expects an unencrypted PEM key") from None
    except (ValueError, UnsupportedAlgorithm):
        raise error(f"{where}: not a PEM private key") from None


def _parse_private_key(pem: bytes, where: str) -> ec.EllipticCurvePrivateKey:
    key = private_key_from_pem(pem, where, what="private key", error=PkiError)
    return _check_key(key, where)


def _read_file(path: Path) -> bytes:
    return read_file(path, what="", error=PkiError)


def _load_ca(directory: Path) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    cert_path, key_path = directory / CA_CERT_FILE, directory / CA_KEY_FILE
    if not cert_path.exists() and not key_path.exists():
        raise PkiError(f"{directory}: no CA here; make one with `linkage pki init --dir {directory}`")
    ca_cert = _parse_certificate(_read_file(cert_path), str(cert_path))
    ca_key = _parse_private_key(_read_file(key_path), str(key_path))
    if ca_cert.public_key() != ca_key.public_key():
        raise PkiError(f"{key_path}: does not belong to the CA certificate {cert_path}")
    try:
        constraints = ca_cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        constraints = None
    if constraints is None or not constraints.ca:
        raise PkiError(f"{cert_path}: not a CA certificate")
    return ca_cert, ca_key


def _make_directory(directory: Path) -> None:
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise PkiError(f"{directory}: cannot create directory ({exc.strerror})") from None


def _refuse_existing(*paths: Path, what: str) -> None:
    for path in paths:
        if path.exists():
            raise PkiError(f"{path}: already exists; refusing to overwrite {what}")


def _write_pair(cert_path: Path, cert: x509.Certificate, key_path: Path, key: ec.EllipticCurvePrivateKey, *, what: str) -> None:
    """Write key then certificate, each only if absent; on failure remove what this call wrote."""
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    write_new_file(key_path, key_pem, what=what, error=PkiError, mode=_PRIVATE_FILE_MODE)
    try:
        write_new_file(
            cert_path, cert.public_bytes(serialization.Encoding.PEM), what=what, error=PkiError, mode=_PUBLIC_FILE_MODE
        )
    except BaseException:
        key_path.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def refusing_malformed_certificates() -> Iterator[None]:
    """cryptography only warns about some malformed certificates (a negative serial, say): refuse them."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", CryptographyDeprecationWarning)
        yield
