"""Start, serve until a signal, stop gracefully: the one lifecycle every process here shares."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Iterator

import grpc
from grpc_health.v1 import health

GRACE_SECONDS = 5.0

Started = tuple[grpc.Server, int, health.HealthServicer]


def stop(started: Started, grace: float = GRACE_SECONDS) -> None:
    """Tell health checkers we are going, then stop, letting calls in flight finish for ``grace`` s."""
    server, _, health_servicer = started
    health_servicer.enter_graceful_shutdown()
    server.stop(grace).wait()


@contextlib.contextmanager
def running(start: Callable[[], Started], grace: float = GRACE_SECONDS) -> Iterator[int]:
    """A started server for the ``with`` block; yields its port and stops it in ``finally``."""
    started = start()
    try:
        yield started[1]
    finally:
        stop(started, grace)


def serve_until_stopped(start: Callable[[], Started], what: str, say: Callable[[str], None]) -> None:
    """Serve until SIGINT or SIGTERM, then stop gracefully."""
    with running(start) as port:
        say(f"{what} serving on port {port} (mTLS); Ctrl-C to stop")
        stopping = threading.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stopping.set())
        stopping.wait()
    say(f"{what} stopped")
