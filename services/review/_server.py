"""Serving the review pages: loopback by default; any other address only behind mTLS.

``create_server`` binds (port 0 picks a free port) and returns the server and its port;
``run_server`` serves in a thread and stops in ``finally``. The HTTP server is werkzeug's (Flask's
own); with ``tls_cert``, ``tls_key`` and ``ca`` it asks every client for a certificate of the
task-force CA, and the application admits only the role the folder calls for: ``auditor`` on a
coordinator's folder, ``node`` of the same agency on a node's.
"""

from __future__ import annotations

import ipaddress
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from werkzeug.serving import BaseWSGIServer, make_server

from linkage.errors import PkiError, ServerError
from linkage.trust._pki import Identity, identity_from_pem, load_tls
from services.review._app import LOCAL_HOSTS, create_app
from services.review._folder import ReviewSite

DEFAULT_LISTEN = "127.0.0.1:8765"


@dataclass(frozen=True, kw_only=True)
class ServeConfig:
    data_dir: Path
    listen: str = DEFAULT_LISTEN
    tls_cert: Path | None = None
    tls_key: Path | None = None
    ca: Path | None = None
    audit_public_key: Path | None = None  # default: audit.pub in the folder
    local_actor: str = "local"  # who reads, in "audit log read" entries, when no certificate says

    @property
    def tls(self) -> bool:
        return self.tls_cert is not None


def parse_listen(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:PORT`` for IPv6) as (host, port)."""
    host, sep, port = text.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise ServerError(f"--listen: expected HOST:PORT, e.g. {DEFAULT_LISTEN}")
    return host, int(port)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _tls_context(config: ServeConfig) -> ssl.SSLContext:
    cert, key, ca = config.tls_cert, config.tls_key, config.ca
    if cert is None or key is None or ca is None:
        raise ServerError("TLS needs all three of --tls-cert, --tls-key and --ca")
    load_tls(ca, cert, key)  # PkiError names the file at fault
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(str(config.tls_cert), str(config.tls_key))
    context.load_verify_locations(cafile=str(config.ca))
    context.verify_mode = ssl.CERT_REQUIRED  # a client without a task-force certificate fails the handshake
    return context


def _identity_from_environ(environ: dict[str, Any]) -> Identity | None:
    pem = environ.get("SSL_CLIENT_CERT")
    if not isinstance(pem, str):
        return None
    try:
        return identity_from_pem(pem.encode("ascii"))
    except PkiError:
        return None


def create_server(config: ServeConfig) -> tuple[BaseWSGIServer, int]:
    """The bound (not yet serving) server and its port."""
    host, port = parse_listen(config.listen)
    if not config.tls and not is_loopback(host):
        raise ServerError(
            f"--listen {config.listen}: not a loopback address; serving beyond this machine needs --tls-cert, --tls-key and --ca"
        )
    site = ReviewSite.open(config.data_dir, public_key=config.audit_public_key)
    context = _tls_context(config) if config.tls else None
    hosts = LOCAL_HOSTS | {host, f"[{host}]"}
    app = create_app(site, local_actor=config.local_actor, identity_of=_identity_from_environ if context else None, hosts=hosts)
    try:
        server = make_server(host, port, app, threaded=True, ssl_context=context)
    except (OSError, SystemExit) as exc:  # werkzeug exits when the port is taken
        raise ServerError(f"cannot listen on {config.listen} ({exc})") from None
    return server, server.socket.getsockname()[1]


@contextmanager
def run_server(config: ServeConfig) -> Iterator[tuple[BaseWSGIServer, int]]:
    """Serve in a background thread; stop and close the socket on the way out."""
    server, port = create_server(config)
    thread = threading.Thread(target=server.serve_forever, name="review pages", daemon=True)
    thread.start()
    try:
        yield server, port
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def serve(config: ServeConfig, *, say: Any = print) -> None:
    """Serve until interrupted (the CLI's ``review serve``)."""
    server, port = create_server(config)
    host, _ = parse_listen(config.listen)
    shown = f"[{host}]" if ":" in host else host
    scheme = "https" if config.tls else "http"
    try:
        say(f"review pages of {config.data_dir} on {scheme}://{shown}:{port}/ (Ctrl-C stops)")
        server.serve_forever()
    finally:
        server.server_close()
