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
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import NoReturn, TypeVar

import grpc

from linkage.errors import LinkageError, PkiError
from linkage.trust._pki import Identity, identity_from_auth_context

log = logging.getLogger("linkage.protocol")

# (method, identity) -> None to allow, or the reason to refuse
Policy = Callable[[str, Identity], str | None]

_Request = TypeVar("_Request")  # a message, or an iterator of messages for a client stream
_Response = TypeVar("_Response")


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


def certified_caller(context: grpc.ServicerContext) -> Identity:
    """The caller's identity, in a handler behind ``PolicyInterceptor`` (which refuses calls without one)."""
    identity = caller(context)
    if identity is None:
        raise PkiError("the call carries no task-force client certificate")
    return identity


def _anyone(method: str, identity: Identity) -> str | None:
    """The health service's policy: any certified peer may call it."""
    return None


def status_of(error: LinkageError) -> grpc.StatusCode:
    return getattr(grpc.StatusCode, error.grpc_status, grpc.StatusCode.INTERNAL)


def caller(context: grpc.ServicerContext) -> Identity | None:
    try:
        return identity_from_auth_context(context.auth_context())
    except LinkageError:
        return None


class _Guard:
    """The checks around one method's handler: the policy before it runs, error translation after."""

    def __init__(self, method: str, policy: Policy, on_refusal: Callable[[Refusal], None] | None) -> None:
        self._method, self._policy, self._on_refusal = method, policy, on_refusal

    def _refuse(self, context: grpc.ServicerContext, identity: str, code: grpc.StatusCode, reason: str) -> None:
        if self._on_refusal is not None:
            self._on_refusal(Refusal(context.peer(), identity, self._method, reason))
        context.abort(code, reason)

    def check(self, context: grpc.ServicerContext) -> None:
        try:
            identity = identity_from_auth_context(context.auth_context())
        except LinkageError as error:  # a certificate of the CA that carries no linkage role
            self._refuse(
                context, "-", grpc.StatusCode.PERMISSION_DENIED, f"the client certificate is not a linkage party's: {error}"
            )
            return
        if identity is None:
            self._refuse(context, "-", grpc.StatusCode.UNAUTHENTICATED, "a task-force client certificate is required")
            return
        refusal = self._policy(self._method, identity)
        if refusal:
            self._refuse(context, str(identity), grpc.StatusCode.PERMISSION_DENIED, f"{identity}: {refusal}")

    def fail(self, context: grpc.ServicerContext, error: Exception) -> NoReturn:
        if isinstance(error, LinkageError):
            context.abort(status_of(error), str(error))
        print(f"linkage: internal error in {self._method}: {type(error).__name__}", file=sys.stderr, flush=True)
        log.exception("internal error in %s", self._method)
        context.abort(grpc.StatusCode.INTERNAL, "internal error")
        raise AssertionError("ServicerContext.abort returned")  # grpc's abort always raises


def _guarded(
    behaviour: Callable[[_Request, grpc.ServicerContext], _Response], guard: _Guard
) -> Callable[[_Request, grpc.ServicerContext], _Response]:
    def unary(request: _Request, context: grpc.ServicerContext) -> _Response:
        guard.check(context)
        try:
            return behaviour(request, context)
        except Exception as error:
            if context.code() is not None:  # already aborted
                raise
            guard.fail(context, error)

    return unary


def _guarded_stream(
    behaviour: Callable[[_Request, grpc.ServicerContext], Iterator[_Response]], guard: _Guard
) -> Callable[[_Request, grpc.ServicerContext], Iterator[_Response]]:
    def stream(request: _Request, context: grpc.ServicerContext) -> Iterator[_Response]:
        guard.check(context)
        try:
            yield from behaviour(request, context)
        except Exception as error:
            if context.code() is not None:  # already aborted
                raise
            guard.fail(context, error)

    return stream


class PolicyInterceptor(grpc.ServerInterceptor):
    """Applies ``policy`` to every method except the standard health service (any certified peer)."""

    def __init__(self, policy: Policy, on_refusal: Callable[[Refusal], None] | None = None) -> None:
        self._policy = policy
        self._on_refusal = on_refusal

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        handler = continuation(handler_call_details)
        method: str = handler_call_details.method
        if handler is None:
            return None
        guard = _Guard(method, self._policy if not method.startswith("/grpc.health.v1.") else _anyone, self._on_refusal)
        if handler.unary_unary:
            return grpc.unary_unary_rpc_method_handler(
                _guarded(handler.unary_unary, guard),
                handler.request_deserializer,
                handler.response_serializer,
            )
        if handler.unary_stream:
            return grpc.unary_stream_rpc_method_handler(
                _guarded_stream(handler.unary_stream, guard),
                handler.request_deserializer,
                handler.response_serializer,
            )
        if handler.stream_unary:
            return grpc.stream_unary_rpc_method_handler(
                _guarded(handler.stream_unary, guard),
                handler.request_deserializer,
                handler.response_serializer,
            )
        return grpc.stream_stream_rpc_method_handler(
            _guarded_stream(handler.stream_stream, guard),
            handler.request_deserializer,
            handler.response_serializer,
        )
