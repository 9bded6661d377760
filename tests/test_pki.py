"""The task-force CA and role certificates, down to a real mTLS handshake with grpc on loopback."""

from __future__ import annotations

import contextlib
import datetime as dt
import stat
import subprocess
import sys
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from hypothesis import given
from hypothesis import strategies as st

import linkage.trust._pki
from linkage.protocol._credentials import channel_credentials, server_credentials
from linkage.trust._pki import (
    CLOCK_SKEW_ALLOWANCE,
    PARTY_NAME,
    ROLES,
    Identity,
    PkiError,
    TlsMaterial,
    ca_certificate,
    identity_from_auth_context,
    identity_from_pem,
    init_ca,
    issue,
    load_tls,
    new_private_key,
    role_certificate,
    verify_chain,
)

NOW = dt.datetime(2025, 3, 1, 12, 0, 0, tzinfo=dt.UTC)
CALL_TIMEOUT_S = 5
WHO_AM_I = "/linkage.test.Echo/WhoAmI"


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def certificate(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def tls_for(directory: Path, name: str) -> TlsMaterial:
    return load_tls(directory / "ca.pem", directory / f"{name}.pem", directory / f"{name}.key")


# ------------------------------------------------------------------------------- files and fields


def test_init_ca_writes_a_private_key_and_a_ca_certificate(tmp_path):
    directory = tmp_path / "pki"
    cert_path = init_ca(directory, now=NOW)
    assert cert_path == directory / "ca.pem"
    assert mode(directory / "ca.key") == 0o600
    assert mode(directory) == 0o700
    assert b"BEGIN PRIVATE KEY" in (directory / "ca.key").read_bytes()  # PEM, unencrypted
    cert = certificate(cert_path)
    constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    assert constraints.critical and constraints.value.ca and constraints.value.path_length == 0
    usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.key_cert_sign and usage.crl_sign and not usage.digital_signature
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "linkage task-force CA"
    assert cert.subject == cert.issuer


def test_init_ca_never_overwrites_a_ca(tmp_path):
    init_ca(tmp_path, now=NOW)
    before = {name: (tmp_path / name).read_bytes() for name in ("ca.pem", "ca.key")}
    with pytest.raises(PkiError, match=r"ca\.pem: already exists; refusing to overwrite a CA"):
        init_ca(tmp_path, now=NOW)
    (tmp_path / "ca.pem").unlink()  # a half-present CA is not replaced either
    with pytest.raises(PkiError, match=r"ca\.key: already exists"):
        init_ca(tmp_path, now=NOW)
    assert (tmp_path / "ca.key").read_bytes() == before["ca.key"]


def test_issue_writes_a_role_certificate_that_serves_and_connects(tmp_path):
    init_ca(tmp_path, now=NOW)
    cert_path, key_path = issue(
        tmp_path, role="node", name="police", hosts=("localhost", "127.0.0.1", "::1", "node-1.example"), now=NOW
    )
    assert (cert_path, key_path) == (tmp_path / "police.pem", tmp_path / "police.key")
    assert mode(key_path) == 0o600
    cert = certificate(cert_path)
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "police"
    assert cert.subject.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)[0].value == "node"
    assert cert.issuer == certificate(tmp_path / "ca.pem").subject
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == ["linkage://node/police"]
    assert san.get_values_for_type(x509.DNSName) == ["police.node.linkage.invalid", "localhost", "node-1.example"]
    assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == ["127.0.0.1", "::1"]
    usages = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert set(usages) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    identity = verify_chain(cert_path.read_bytes(), (tmp_path / "ca.pem").read_bytes(), now=NOW)
    assert identity == Identity("node", "police", cert.fingerprint(hashes.SHA256()).hex())


@pytest.mark.parametrize("role", ROLES)
def test_role_and_name_round_trip_through_the_certificate(tmp_path, role):
    init_ca(tmp_path, now=NOW)
    cert_path, _ = issue(tmp_path, role=role, name="victim-services_2", now=NOW)
    identity = identity_from_pem(cert_path.read_bytes())
    assert (identity.role, identity.name) == (role, "victim-services_2")
    assert str(identity) == f"{role}/victim-services_2"
    assert len(identity.fingerprint) == 64


def test_issue_never_overwrites_a_party(tmp_path):
    init_ca(tmp_path, now=NOW)
    _, key_path = issue(tmp_path, role="node", name="police", now=NOW)
    key = key_path.read_bytes()
    with pytest.raises(PkiError, match=r"police\.pem: already exists; refusing to overwrite"):
        issue(tmp_path, role="auditor", name="police", now=NOW)
    assert key_path.read_bytes() == key
    assert identity_from_pem((tmp_path / "police.pem").read_bytes()).role == "node"


@pytest.mark.parametrize(
    ("role", "name", "message"),
    [
        ("admin", "police", r"role: 'admin' is not one of node, coordinator, auditor"),
        ("Node", "police", r"role: 'Node' is not one of"),
        ("node", "", r"name: '' must be 1-64 lowercase letters"),
        ("node", "Police", r"name: 'Police' must be"),
        ("node", "a" * 65, r"name: 'a{65}' must be"),
        ("node", "po lice", r"must be 1-64 lowercase letters, digits, '-' and '_', starting with a letter or digit"),
        ("node", "../police", r"name: '../police' must be"),
        ("node", "pólice", r"name: 'pólice' must be"),
        ("node", "-police", r"name: '-police' must be"),
        ("node", "ca", r"name: 'ca' is reserved for the CA's own files"),
    ],
)
def test_bad_roles_and_names_are_refused_before_anything_is_written(tmp_path, role, name, message):
    init_ca(tmp_path, now=NOW)
    with pytest.raises(PkiError, match=message):
        issue(tmp_path, role=role, name=name, now=NOW)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ca.key", "ca.pem"]


@pytest.mark.parametrize("hosts", [("bad host",), ("-leading.example",), ("",), (1,), "localhost"])
def test_bad_hosts_are_refused(tmp_path, hosts):
    init_ca(tmp_path, now=NOW)
    with pytest.raises(PkiError, match="hosts: "):
        issue(tmp_path, role="node", name="police", hosts=hosts, now=NOW)
    assert not (tmp_path / "police.key").exists()


def test_a_party_without_hosts_is_a_client_only_certificate(tmp_path):
    init_ca(tmp_path, now=NOW)
    cert_path, _ = issue(tmp_path, role="auditor", name="inspector", hosts=(), now=NOW)
    san = certificate(cert_path).extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    # the identity DNS name (a reserved .invalid name, never a real host) lets a client bind its peer
    assert [str(n.value) for n in san] == ["linkage://auditor/inspector", "inspector.auditor.linkage.invalid"]
    with pytest.raises(PkiError, match=r"ends in \.linkage\.invalid, which is kept for parties' identities"):
        issue(tmp_path, role="node", name="police", hosts=("child-welfare.node.linkage.invalid",), now=NOW)


def test_issue_needs_the_ca_and_its_own_key(tmp_path):
    with pytest.raises(PkiError, match=r"no CA here; make one with `linkage pki init"):
        issue(tmp_path / "absent", role="node", name="police", now=NOW)
    init_ca(tmp_path / "one", now=NOW)
    init_ca(tmp_path / "two", now=NOW)
    (tmp_path / "one" / "ca.key").unlink()
    with pytest.raises(PkiError, match=r"one/ca\.key: file not found"):
        issue(tmp_path / "one", role="node", name="police", now=NOW)
    (tmp_path / "one" / "ca.key").write_bytes((tmp_path / "two" / "ca.key").read_bytes())
    with pytest.raises(PkiError, match=r"one/ca\.key: does not belong to the CA certificate"):
        issue(tmp_path / "one", role="node", name="police", now=NOW)


# ------------------------------------------------------------------------------- time


def test_validity_dates_follow_the_injected_now(tmp_path):
    init_ca(tmp_path, now=NOW, valid_days=1000)
    cert_path, _ = issue(tmp_path, role="coordinator", name="hub", now=NOW + dt.timedelta(days=10), valid_days=30)
    ca, cert = certificate(tmp_path / "ca.pem"), certificate(cert_path)
    assert ca.not_valid_before_utc == NOW - CLOCK_SKEW_ALLOWANCE
    assert ca.not_valid_after_utc == NOW + dt.timedelta(days=1000)
    assert cert.not_valid_before_utc == NOW + dt.timedelta(days=10) - CLOCK_SKEW_ALLOWANCE
    assert cert.not_valid_after_utc == NOW + dt.timedelta(days=40)

    cert_pem, ca_pem = cert_path.read_bytes(), (tmp_path / "ca.pem").read_bytes()
    assert verify_chain(cert_pem, ca_pem, now=NOW + dt.timedelta(days=20)).name == "hub"
    with pytest.raises(PkiError, match="not valid under the CA at 2025-03-10"):
        verify_chain(cert_pem, ca_pem, now=NOW + dt.timedelta(days=9))
    with pytest.raises(PkiError, match="not valid under the CA at 2025-04-11"):
        verify_chain(cert_pem, ca_pem, now=NOW + dt.timedelta(days=41))


def test_a_certificate_never_outlives_its_ca_and_an_expired_ca_issues_nothing(tmp_path):
    init_ca(tmp_path, now=NOW, valid_days=100)
    cert_path, _ = issue(tmp_path, role="node", name="school", now=NOW + dt.timedelta(days=90), valid_days=825)
    assert certificate(cert_path).not_valid_after_utc == NOW + dt.timedelta(days=100)
    with pytest.raises(PkiError, match=r"CA certificate: not valid at 2025-06-10 12:00:00 UTC"):
        issue(tmp_path, role="node", name="hospital", now=NOW + dt.timedelta(days=101))


def test_now_must_be_aware_and_days_positive(tmp_path):
    with pytest.raises(PkiError, match="now: must be a timezone-aware datetime"):
        init_ca(tmp_path, now=dt.datetime(2025, 3, 1))
    with pytest.raises(PkiError, match="valid_days: must be a positive whole number"):
        init_ca(tmp_path, now=NOW, valid_days=0)
    assert not any(tmp_path.iterdir())


# ------------------------------------------------------------------------------- reading identities


_CA_KEY = new_private_key()
_CA_CERT = ca_certificate(_CA_KEY, now=NOW)


@given(role=st.sampled_from(ROLES), name=st.from_regex(PARTY_NAME, fullmatch=True).filter(lambda n: n != "ca"))
def test_every_valid_role_and_name_round_trips_through_the_builders(role, name):
    cert = role_certificate(_CA_CERT, _CA_KEY, new_private_key().public_key(), role=role, name=name, now=NOW)
    identity = identity_from_pem(cert.public_bytes(serialization.Encoding.PEM))
    assert (identity.role, identity.name) == (role, name)


def test_the_module_surface_is_sorted_and_complete():
    assert linkage.trust._pki.__all__ == sorted(linkage.trust._pki.__all__)
    assert all(hasattr(linkage.trust._pki, name) for name in linkage.trust._pki.__all__)


def test_a_certificate_without_a_linkage_role_is_refused(tmp_path):
    init_ca(tmp_path, now=NOW)
    with pytest.raises(PkiError, match="certificate: carries no linkage role"):
        identity_from_pem((tmp_path / "ca.pem").read_bytes())
    with pytest.raises(PkiError, match="certificate: not a PEM certificate"):
        identity_from_pem(b"-----BEGIN CERTIFICATE-----\nnonsense\n-----END CERTIFICATE-----\n")


def _self_signed(subject: list[x509.NameAttribute], uris: list[str]) -> bytes:
    key = new_private_key()
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name(subject))
        .issuer_name(x509.Name(subject))
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(NOW)
        .not_valid_after(NOW + dt.timedelta(days=1))
    )
    if uris:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.UniformResourceIdentifier(u) for u in uris]), critical=False
        )
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


def test_a_certificate_whose_subject_and_uri_disagree_is_refused():
    cn, ou = NameOID.COMMON_NAME, NameOID.ORGANIZATIONAL_UNIT_NAME
    forged = _self_signed([x509.NameAttribute(ou, "node"), x509.NameAttribute(cn, "police")], ["linkage://coordinator/police"])
    with pytest.raises(PkiError, match="subject OU/CN disagree with its linkage:// identity"):
        identity_from_pem(forged)
    wrong_role = _self_signed([x509.NameAttribute(ou, "admin"), x509.NameAttribute(cn, "police")], [])
    with pytest.raises(PkiError, match=r"carries no linkage role \('admin' is not one of"):
        identity_from_pem(wrong_role)
    subject_only = _self_signed([x509.NameAttribute(ou, "auditor"), x509.NameAttribute(cn, "inspector")], [])
    assert str(identity_from_pem(subject_only)) == "auditor/inspector"


def test_verify_chain_refuses_a_certificate_from_another_ca(tmp_path):
    init_ca(tmp_path / "ours", now=NOW)
    init_ca(tmp_path / "theirs", now=NOW)
    cert_path, _ = issue(tmp_path / "theirs", role="node", name="police", now=NOW)
    with pytest.raises(PkiError, match="certificate: not valid under the CA"):
        verify_chain(cert_path.read_bytes(), (tmp_path / "ours" / "ca.pem").read_bytes(), now=NOW)


def test_auth_context_without_a_certificate_has_no_identity():
    assert identity_from_auth_context({}) is None
    assert identity_from_auth_context({"transport_security_type": [b"insecure"]}) is None


# ------------------------------------------------------------------------------- TLS material


def test_tls_material_hides_its_key_and_checks_it_belongs(tmp_path):
    init_ca(tmp_path / "pki", now=NOW)
    issue(tmp_path / "pki", role="node", name="police", now=NOW)
    issue(tmp_path / "pki", role="node", name="school", now=NOW)
    tls = tls_for(tmp_path / "pki", "police")
    text = repr(tls)
    assert "PRIVATE" not in text and tls.key_pem.decode().splitlines()[1][:20] not in text
    assert "node/police" in text and tls.identity.fingerprint in text
    with pytest.raises(PkiError, match="private key: does not belong to the certificate"):
        TlsMaterial(ca_pem=tls.ca_pem, cert_pem=tls.cert_pem, key_pem=tls_for(tmp_path / "pki", "school").key_pem)


def test_load_tls_names_the_file_at_fault(tmp_path):
    pki, other = tmp_path / "pki", tmp_path / "other"
    init_ca(pki, now=NOW)
    init_ca(other, now=NOW)
    issue(pki, role="node", name="police", now=NOW)
    issue(pki, role="node", name="school", now=NOW)
    issue(other, role="node", name="police", now=NOW)
    with pytest.raises(PkiError, match=r"pki/absent\.pem: file not found"):
        load_tls(pki / "ca.pem", pki / "absent.pem", pki / "police.key")
    with pytest.raises(PkiError, match=r"pki/school\.key: does not belong to the certificate .*pki/police\.pem"):
        load_tls(pki / "ca.pem", pki / "police.pem", pki / "school.key")
    with pytest.raises(PkiError, match=r"other/police\.pem: not issued by the CA .*pki/ca\.pem"):
        load_tls(pki / "ca.pem", other / "police.pem", other / "police.key")
    with pytest.raises(PkiError, match=r"pki/ca\.pem: carries no linkage role"):
        load_tls(pki / "ca.pem", pki / "ca.pem", pki / "ca.key")
    with pytest.raises(PkiError, match=r"pki/police\.pem: not a PEM private key"):
        load_tls(pki / "ca.pem", pki / "police.pem", pki / "police.pem")


def test_the_pki_module_loads_without_grpc():
    code = "import sys, linkage.trust._pki; print('grpc' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


# ------------------------------------------------------------------------------- real mTLS


def _who_am_i(request: bytes, context: grpc.ServicerContext) -> bytes:
    identity = identity_from_auth_context(context.auth_context())
    return str(identity).encode() if identity else b"anonymous"


@contextlib.contextmanager
def run_server(tls: TlsMaterial) -> Iterator[int]:
    """A server on loopback port 0 with grpc's health service and a who-am-I method; yields the port."""
    who = grpc.method_handlers_generic_handler("linkage.test.Echo", {"WhoAmI": grpc.unary_unary_rpc_method_handler(_who_am_i)})
    server = grpc.server(futures.ThreadPoolExecutor(2), handlers=[who])
    health_servicer = health.HealthServicer()
    health_servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    port = server.add_secure_port("127.0.0.1:0", server_credentials(tls))
    server.start()
    try:
        yield port
    finally:
        server.stop(grace=None)


@pytest.fixture(scope="module")
def task_force(tmp_path_factory) -> Path:
    """A CA made a month ago, a coordinator, two parties and certificates out of their dates."""
    directory = tmp_path_factory.mktemp("pki")
    now = dt.datetime.now(dt.UTC)
    init_ca(directory, now=now - dt.timedelta(days=30))
    issue(directory, role="coordinator", name="coordinator")
    issue(directory, role="node", name="police")
    issue(directory, role="auditor", name="inspector", hosts=())
    issue(directory, role="node", name="expired", now=now - dt.timedelta(days=10), valid_days=1)
    issue(directory, role="node", name="not-yet", now=now + dt.timedelta(days=10))
    return directory


@pytest.fixture(scope="module")
def coordinator_port(task_force) -> Iterator[int]:
    with run_server(tls_for(task_force, "coordinator")) as port:
        yield port


def health_check(channel: grpc.Channel) -> int:
    request = health_pb2.HealthCheckRequest(service="")
    return health_pb2_grpc.HealthStub(channel).Check(request, timeout=CALL_TIMEOUT_S).status


def assert_refused(channel: grpc.Channel) -> None:
    with pytest.raises(grpc.RpcError) as failure:
        health_check(channel)
    assert failure.value.code() == grpc.StatusCode.UNAVAILABLE


def test_a_party_of_the_same_ca_is_served(task_force, coordinator_port):
    credentials = channel_credentials(tls_for(task_force, "police"))
    with grpc.secure_channel(f"127.0.0.1:{coordinator_port}", credentials) as channel:
        assert health_check(channel) == health_pb2.HealthCheckResponse.SERVING
    with grpc.secure_channel(f"localhost:{coordinator_port}", credentials) as channel:  # the DNS name too
        assert health_check(channel) == health_pb2.HealthCheckResponse.SERVING


@pytest.mark.parametrize(("name", "expected"), [("police", b"node/police"), ("inspector", b"auditor/inspector")])
def test_the_server_reads_the_callers_role_and_name(task_force, coordinator_port, name, expected):
    with grpc.secure_channel(f"127.0.0.1:{coordinator_port}", channel_credentials(tls_for(task_force, name))) as channel:
        assert channel.unary_unary(WHO_AM_I)(b"", timeout=CALL_TIMEOUT_S) == expected


def test_a_plaintext_client_is_refused(coordinator_port):
    with grpc.insecure_channel(f"127.0.0.1:{coordinator_port}") as channel:
        assert_refused(channel)


def test_a_tls_client_without_a_certificate_is_refused(task_force, coordinator_port):
    credentials = grpc.ssl_channel_credentials(root_certificates=(task_force / "ca.pem").read_bytes())
    with grpc.secure_channel(f"127.0.0.1:{coordinator_port}", credentials) as channel:
        assert_refused(channel)


def test_a_client_of_another_ca_is_refused(tmp_path, coordinator_port, task_force):
    init_ca(tmp_path)
    issue(tmp_path, role="node", name="police")
    # It even trusts our CA, so only its own certificate can be what fails.
    theirs = tls_for(tmp_path, "police")
    credentials = grpc.ssl_channel_credentials(
        root_certificates=(task_force / "ca.pem").read_bytes(), private_key=theirs.key_pem, certificate_chain=theirs.cert_pem
    )
    with grpc.secure_channel(f"127.0.0.1:{coordinator_port}", credentials) as channel:
        assert_refused(channel)


def test_a_client_that_trusts_another_ca_refuses_the_server(tmp_path, coordinator_port):
    init_ca(tmp_path)
    issue(tmp_path, role="node", name="police")
    with grpc.secure_channel(f"127.0.0.1:{coordinator_port}", channel_credentials(tls_for(tmp_path, "police"))) as channel:
        assert_refused(channel)


@pytest.mark.parametrize("name", ["expired", "not-yet"])
def test_a_client_certificate_out_of_its_dates_is_refused(task_force, coordinator_port, name):
    with grpc.secure_channel(f"127.0.0.1:{coordinator_port}", channel_credentials(tls_for(task_force, name))) as channel:
        assert_refused(channel)
