"""Who may call what: the caller's role and name come from its certificate, checked before any handler.

The interceptor wraps every handler: it reads the peer's identity from the TLS auth context, asks
the policy whether that identity may call the method, and aborts with PERMISSION_DENIED (or
UNAUTHENTICATED without a certificate) before the servicer runs. Every refusal is reported to
``on_refusal`` (peer address, identity, method, reason), at most ``RefusalLog.burst`` a minute per
peer address with a count of those left out, so a flood of bad calls cannot fill a disk. The same
wrapper translates errors:
a ``LinkageError`` becomes its status with its message; anything else becomes INTERNAL with no
detail (and a line on the server's log), so a bug never leaks data to a peer.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import grpc

from linkage.errors import LinkageError
from linkage.trust._pki import Identity, identity_from_auth_context

log = logging.getLogger("linkage.protocol")

# (method, identity) -> None to allow, or the reason to refuse
Policy = Callable[[str, Identity], str | None]


@dataclass(frozen=True)
class Refusal:
    peer: str  # the network address, as grpc reports it
    identity: str  # role/name from the certificate, or "-" without one
    method: str
    reason: str
    suppressed: int = 0  # refusals of this peer left out since the last one reported


class RefusalLog:
    """Rate-limits refusal reports per peer address: ``burst`` a window, then one line with the count left out."""

    def __init__(self, report: Callable[[Refusal], None], *, burst: int = 10, window_s: float = 60.0,
                 clock: Callable[[], float] = time.monotonic) -> None:  # fmt: skip
        self._report, self._burst, self._window, self._clock = report, burst, window_s, clock
        self._lock = threading.Lock()
        self._seen: dict[str, tuple[float, int, int]] = {}  # peer -> (window start, reported, suppressed)

    def __call__(self, refusal: Refusal) -> None:
        now = self._clock()
        with self._lock:
            if len(self._seen) > 10_000:  # many peers: forget the oldest windows rather than grow
                self._seen = {p: v for p, v in self._seen.items() if now - v[0] < self._window}
            start, reported, suppressed = self._seen.get(refusal.peer, (now, 0, 0))
            if now - start >= self._window:
                start, reported = now, 0
            if reported >= self._burst:
                self._seen[refusal.peer] = (start, reported, suppressed + 1)
                return
            self._seen[refusal.peer] = (start, reported + 1, 0)
        try:
            self._report(Refusal(refusal.peer, refusal.identity, refusal.method, refusal.reason, suppressed))
        except Exception:
            log.exception("could not report a refused call")


def status_of(error: LinkageError) -> grpc.StatusCode:
    return getattr(grpc.StatusCode, error.grpc_status, grpc.StatusCode.INTERNAL)


def caller(context: grpc.ServicerContext) -> Identity | None:
    try:
        return identity_from_auth_context(context.auth_context())
    except LinkageError:
        return None


def _guarded(
    behaviour: Callable, method: str, policy: Policy, streaming_response: bool, on_refusal: Callable[[Refusal], None] | None
) -> Callable:
    def refuse(context: grpc.ServicerContext, identity: str, code: grpc.StatusCode, reason: str) -> None:
        if on_refusal is not None:
            on_refusal(Refusal(context.peer(), identity, method, reason))
        context.abort(code, reason)

    def check(context: grpc.ServicerContext) -> None:
        try:
            identity = identity_from_auth_context(context.auth_context())
        except LinkageError as error:  # a certificate of the CA that carries no linkage role
            refuse(context, "-", grpc.StatusCode.PERMISSION_DENIED, f"the client certificate is not a linkage party's: {error}")
            return
        if identity is None:
            refuse(context, "-", grpc.StatusCode.UNAUTHENTICATED, "a task-force client certificate is required")
            return
        refusal = policy(method, identity)
        if refusal:
            refuse(context, str(identity), grpc.StatusCode.PERMISSION_DENIED, f"{identity}: {refusal}")

    def fail(context: grpc.ServicerContext, error: Exception) -> None:
        if isinstance(error, LinkageError):
            context.abort(status_of(error), str(error))
        print(f"linkage: internal error in {method}: {type(error).__name__}", file=sys.stderr, flush=True)
        log.exception("internal error in %s", method)
        context.abort(grpc.StatusCode.INTERNAL, "internal error")

    if streaming_response:

        def stream(request: Any, context: grpc.ServicerContext):
            check(context)
            try:
                yield from behaviour(request, context)
            except Exception as error:
                if context.code() is not None:  # already aborted
                    raise
                fail(context, error)

        return stream

    def unary(request: Any, context: grpc.ServicerContext):
        check(context)
        try:
            return behaviour(request, context)
        except Exception as error:
            if context.code() is not None:
                raise
            fail(context, error)

    return unary


class PolicyInterceptor(grpc.ServerInterceptor):
    """Applies ``policy`` to every method except the standard health service (any certified peer)."""

    def __init__(self, policy: Policy, on_refusal: Callable[[Refusal], None] | None = None) -> None:
        self._policy = policy
        self._on_refusal = on_refusal

    def intercept_service(self, continuation, handler_call_details):
        handler = continuation(handler_call_details)
        method = handler_call_details.method
        if handler is None:
            return None
        policy = self._policy if not method.startswith("/grpc.health.v1.") else (lambda _m, _i: None)
        if handler.unary_unary:
            return grpc.unary_unary_rpc_method_handler(
                _guarded(handler.unary_unary, method, policy, False, self._on_refusal),
                handler.request_deserializer,
                handler.response_serializer,
            )
        if handler.unary_stream:
            return grpc.unary_stream_rpc_method_handler(
                _guarded(handler.unary_stream, method, policy, True, self._on_refusal),
                handler.request_deserializer,
                handler.response_serializer,
            )
        if handler.stream_unary:
            return grpc.stream_unary_rpc_method_handler(
                _guarded(handler.stream_unary, method, policy, False, self._on_refusal),
                handler.request_deserializer,
                handler.response_serializer,
            )
        return grpc.stream_stream_rpc_method_handler(
            _guarded(handler.stream_stream, method, policy, True, self._on_refusal),
            handler.request_deserializer,
            handler.response_serializer,
        )
