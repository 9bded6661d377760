"""An mTLS server with the policy interceptor and the health service, and mTLS channels to peers.

Stopping is the process's business (``services._lifecycle``)."""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from concurrent import futures

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from linkage.errors import ServerError
from linkage.protocol._auth import Policy, PolicyInterceptor, Refusal, RefusalLog
from linkage.protocol._credentials import channel_credentials, server_credentials
from linkage.trust._audit import AuditLog
from linkage.trust._pki import TlsMaterial, identity_host_name

MAX_MESSAGE_BYTES = 32 * 1024 * 1024
CHANNEL_OPTIONS: list[tuple[str, str | int]] = [
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
]


def create_server(
    listen: str,
    tls: TlsMaterial,
    policy: Policy,
    register: Callable[[grpc.Server], None],
    *,
    workers: int = 8,
    on_refusal: Callable[[Refusal], None] | None = None,
    interceptors: Sequence[grpc.ServerInterceptor] = (),
) -> tuple[grpc.Server, int, health.HealthServicer]:
    """A started mTLS server on ``listen`` (port 0: any free port) with the health service; returns the port.

    ``on_refusal`` hears of every refused call (wrap it in a ``RefusalLog`` to rate-limit it);
    ``interceptors`` run before the policy (tests record what crosses the wire)."""
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=workers),
        interceptors=[*interceptors, PolicyInterceptor(policy, on_refusal)],
        options=CHANNEL_OPTIONS,
    )
    register(server)
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    try:
        port = server.add_secure_port(listen, server_credentials(tls))
    except RuntimeError as exc:
        raise ServerError(f"cannot listen on {listen} ({exc})") from None
    if port == 0:
        raise ServerError(f"cannot listen on {listen} (address in use?)")
    server.start()
    health_servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    return server, port, health_servicer


def refusal_reporter(audit: AuditLog, me: str) -> RefusalLog:
    """Refused calls as a line on stderr and an audit entry, rate-limited per peer address."""

    def report(refusal: Refusal) -> None:
        more = f" (and {refusal.suppressed} more refused, not logged)" if refusal.suppressed else ""
        print(
            f"linkage: refused {refusal.method} from {refusal.peer} ({refusal.identity}): {refusal.reason}{more}",
            file=sys.stderr,
            flush=True,
        )
        audit.append(me, "call refused", details={
            "peer": refusal.peer[:120], "identity": refusal.identity[:140], "method": refusal.method[:120],
            "reason": refusal.reason[:300], "suppressed": refusal.suppressed,
        })  # fmt: skip

    return RefusalLog(report)


def secure_channel(address: str, tls: TlsMaterial, *, peer: tuple[str, str] | None = None) -> grpc.Channel:
    """An mTLS channel to ``address``; with ``peer`` (role, name) the handshake fails unless the server's
    certificate was issued to that party (its identity DNS name is the TLS target name)."""
    options = list(CHANNEL_OPTIONS)
    if peer is not None:
        options.append(("grpc.ssl_target_name_override", identity_host_name(*peer)))
    return grpc.secure_channel(address, channel_credentials(tls), options=options)
