"""How `digitnet serve` runs the app: uvicorn's h11 protocol, with the limits a server that
anyone on a network may reach needs and uvicorn does not have.

uvicorn closes a connection that idles after a response (its keep-alive timeout) and h11
caps the size of a request's head, but nothing times out a request that never finishes
arriving: a connection that sends nothing, half a head, or a body a byte at a time stays
open for good (uvicorn arms its keep-alive timer only after a response), and enough of them
use up the process's open files. LimitedH11Protocol is uvicorn's h11 protocol plus
- a deadline for the request's head (from the connection's start or its previous response),
- a deadline for the body (from the end of the head),
- at most `max_connections` open: one more pushes out the connection that has waited
  longest for a request head (idle or slow), or is closed at once if every one is busy.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import ipaddress
from dataclasses import dataclass
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from .app import LOOPBACK_HOSTS


@dataclass(frozen=True)
class ServerLimits:
    """The limits on clients of one server process (a worker), in seconds and counts."""

    keep_alive: int = 5  # s a connection may idle between requests (uvicorn's default)
    head_timeout: float = 10.0  # s from a connection's start or last response to a full head
    body_timeout: float = 30.0  # s from the end of the head to the end of the body: 5 MB
    #                             arrive in 30 s at 1.4 Mbit/s
    max_connections: int = 100  # open at once; fewer if the open-file limit is low
    max_head_bytes: int = 16 * 1024  # request line and headers (h11's default)


# Files a worker keeps open besides its connections (measured: 16 when idle; uploads over
# 1 MB spool to a temporary file while they are read).
_FILES_RESERVED = 32


def connections_allowed(limits: ServerLimits) -> int:
    """`limits.max_connections`, or fewer so that connections never use up the open files."""
    try:
        import resource
    except ImportError:  # not on Windows
        return limits.max_connections
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return limits.max_connections
    return max(1, min(limits.max_connections, soft - _FILES_RESERVED))


def uvicorn_options(limits: ServerLimits = ServerLimits()) -> dict[str, Any]:
    """Keyword arguments for uvicorn.run or uvicorn.Config that enforce `limits`."""
    limits = dataclasses.replace(limits, max_connections=connections_allowed(limits))
    return {"http": functools.partial(LimitedH11Protocol, limits=limits),
            "timeout_keep_alive": limits.keep_alive,
            "h11_max_incomplete_event_size": limits.max_head_bytes}


def default_allowed_hosts(bind: str) -> list[str] | None:
    """The Host header values to accept from clients of a server listening on `bind`: the
    loopback names for a loopback address, else the address or name itself; None for a
    wildcard (0.0.0.0, ::), whose names only the person starting the server knows."""
    if bind == "localhost":
        return list(LOOPBACK_HOSTS)
    try:
        address = ipaddress.ip_address(bind)
    except ValueError:  # a name; "" listens everywhere
        return [bind] if bind else None
    if address.is_unspecified:
        return None
    literal = f"[{address}]" if address.version == 6 else str(address)
    return list(dict.fromkeys([*LOOPBACK_HOSTS, literal])) if address.is_loopback else [literal]


class LimitedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with deadlines for a request's head and body and a cap on open
    connections (the module's docstring says why)."""

    def __init__(self, *args: Any, limits: ServerLimits, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.limits = limits
        self.waiting_for: str | None = None  # "head", "body", or None while answering
        self.waiting_since = 0.0
        self.deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._watch()
        if len(self.connections) > self.limits.max_connections:
            self._make_room()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        self._watch()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._watch()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.deadline is not None:
            self.deadline.cancel()
        super().connection_lost(exc)

    def _watch(self) -> None:
        """Arm the deadline for what the connection now waits for, when that changes."""
        state = self.conn.their_state
        waiting = "head" if state is h11.IDLE else "body" if state is h11.SEND_BODY else None
        if waiting == self.waiting_for:
            return
        self.waiting_for, self.waiting_since = waiting, self.loop.time()
        if self.deadline is not None:
            self.deadline.cancel()
        timeout = {"head": self.limits.head_timeout, "body": self.limits.body_timeout}
        self.deadline = (self.loop.call_later(timeout[waiting], self.transport.close)
                         if waiting else None)

    def _make_room(self) -> None:
        """Close the open connection that has waited longest for a request head, which is
        this new one if every other is busy with a request."""
        waiting = [c for c in self.connections if isinstance(c, LimitedH11Protocol)
                   and c.waiting_for == "head" and not c.transport.is_closing()]
        min(waiting, key=lambda c: c.waiting_since, default=self).transport.close()
