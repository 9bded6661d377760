"""Who may call what: the caller's role and name come from its certificate, checked before any handler.

The interceptor wraps every handler: it reads the peer's identity from the TLS auth context, asks
the policy whether that identity may call the method, and aborts with PERMISSION_DENIED (or
UNAUTHENTICATED without a certificate) before the servicer runs. The same wrapper translates errors:
a ``LinkageError`` becomes its status with its message; anything else becomes INTERNAL with no
detail (and a line on the server's log), so a bug never leaks data to a peer.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from typing import Any

import grpc

from linkage.errors import LinkageError
from linkage.trust._pki import Identity, identity_from_auth_context

log = logging.getLogger("linkage.protocol")

# (method, identity) -> None to allow, or the reason to refuse
Policy = Callable[[str, Identity], str | None]


def status_of(error: LinkageError) -> grpc.StatusCode:
    return getattr(grpc.StatusCode, error.grpc_status, grpc.StatusCode.INTERNAL)


def caller(context: grpc.ServicerContext) -> Identity | None:
    try:
        return identity_from_auth_context(context.auth_context())
    except LinkageError:
        return None


def _guarded(behaviour: Callable, method: str, policy: Policy, streaming_response: bool) -> Callable:
    def check(context: grpc.ServicerContext) -> None:
        identity = caller(context)
        if identity is None:
            context.abort(grpc.StatusCode.UNAUTHENTICATED, "a task-force client certificate is required")
        refusal = policy(method, identity)
        if refusal:
            context.abort(grpc.StatusCode.PERMISSION_DENIED, f"{identity}: {refusal}")

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

    def __init__(self, policy: Policy) -> None:
        self._policy = policy

    def intercept_service(self, continuation, handler_call_details):
        handler = continuation(handler_call_details)
        method = handler_call_details.method
        if handler is None:
            return None
        policy = self._policy if not method.startswith("/grpc.health.v1.") else (lambda _m, _i: None)
        if handler.unary_unary:
            return grpc.unary_unary_rpc_method_handler(
                _guarded(handler.unary_unary, method, policy, False), handler.request_deserializer, handler.response_serializer
            )
        if handler.unary_stream:
            return grpc.unary_stream_rpc_method_handler(
                _guarded(handler.unary_stream, method, policy, True), handler.request_deserializer, handler.response_serializer
            )
        if handler.stream_unary:
            return grpc.stream_unary_rpc_method_handler(
                _guarded(handler.stream_unary, method, policy, False), handler.request_deserializer, handler.response_serializer
            )
        return grpc.stream_stream_rpc_method_handler(
            _guarded(handler.stream_stream, method, policy, True), handler.request_deserializer, handler.response_serializer
        )
