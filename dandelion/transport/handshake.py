"""Incomplete HTTP handshakes, bounded in time and in number per address.

A TCP connection is *pending* from the moment it is accepted until the headers of its first
request are complete (the empty line that ends them). aiohttp alone would hold a pending
connection for its keep-alive timeout, and the per-address limit of ``limits.py`` only sees a
connection once its WebSocket request arrives — so one address could hold thousands of sockets
by never finishing a request line. The guard closes a connection that is still pending
``timeout_s`` after it was accepted, and refuses a new connection from an address that already
has ``limit`` pending ones — after a grace of ``grace_s`` (50 ms) in which its own headers may
still arrive, since a burst of honest connections is accepted before any of them is read. Once
the headers are complete the guard steps aside (the transport is handed to aiohttp's protocol)
and costs nothing more.

Rules of this file:

- The peer's address as the socket reports it is held in memory while its connections are
  pending, and nowhere else: never logged, never stored.
- Connections from ``exempt`` networks (the ``trusted_proxies``) are timed but not counted: a
  reverse proxy reads a client's headers itself before it connects upstream, so what it opens
  arrives complete, and a burst of them must not be mistaken for one abusive address.
- Only the end of the headers is looked for (:class:`HeaderEnd`, sans-I/O); what the request
  *is* stays aiohttp's parser's business.
"""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Callable
from typing import cast

from .limits import AddressLimit, Network

__all__ = ["HandshakeGuard", "HeaderEnd"]


class HeaderEnd:
    """Finds where the first request's headers end in a byte stream fed piece by piece.

    Empty lines before the request line do not count (RFC 9112 lets a server skip them), so
    ``\\r\\n\\r\\n`` sent first does not make a connection look complete.
    """

    __slots__ = ("_started", "_tail", "done")

    def __init__(self) -> None:
        self.done = False
        self._started = False
        self._tail = b""

    def feed(self, data: bytes) -> bool:
        """Take the next bytes; True once the headers are complete."""
        if self.done:
            return True
        if not self._started:
            data = data.lstrip(b"\r\n")
            if not data:
                return False
            self._started = True
        seen = self._tail + data
        # CRLF CRLF normally; LF LF from lenient clients (a CRLF request never holds LF LF).
        if b"\r\n\r\n" in seen or b"\n\n" in seen:
            self.done = True
            return True
        self._tail = seen[-3:]
        return False


class HandshakeGuard:
    """Pending connections per address, at most ``limit`` each, none older than ``timeout_s``.

    ``wrap(factory)`` turns a protocol factory (aiohttp's ``web.Server``) into one whose
    connections pass through the guard. A connection over its address's limit waits
    ``grace_s``, uncounted, for its headers before it is refused: a burst of honest clients
    behind one address is accepted in one go, before any of them has been read, and would
    otherwise be refused with the abusive ones. ``refused`` and ``timed_out`` count what the
    guard closed.
    """

    def __init__(
        self,
        limit: int,
        timeout_s: float,
        exempt: tuple[Network, ...] = (),
        *,
        grace_s: float = 0.05,
    ) -> None:
        self.timeout_s = timeout_s
        self.exempt = exempt
        self.grace_s = min(grace_s, timeout_s)
        self.pending = AddressLimit(limit)
        self.refused = 0
        self.timed_out = 0
        self._open: set[_Guarded] = set()

    def wrap(self, factory: Callable[[], asyncio.Protocol]) -> Callable[[], asyncio.Protocol]:
        return lambda: _Guarded(self, factory)

    def close_all(self) -> None:
        """Close every connection still pending (at shutdown: aiohttp does not know them)."""
        for conn in list(self._open):
            conn.abort()

    def _counted(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return True
        return not any(ip in net for net in self.exempt)


# What a connection over its address's limit may send while it waits (headers are smaller).
_WAIT_BYTES = 64 * 1024


class _Guarded(asyncio.Protocol):
    """One accepted connection until its headers are complete; then the transport is handed
    to ``inner`` (aiohttp's protocol). Over its address's limit it first *waits*: uncounted,
    with no inner protocol yet, its bytes kept, for at most the guard's grace."""

    def __init__(self, guard: HandshakeGuard, factory: Callable[[], asyncio.Protocol]) -> None:
        self._guard = guard
        self._factory = factory
        self._inner: asyncio.Protocol | None = None
        self._transport: asyncio.Transport | None = None  # None once handed over or closed
        self._peer = ""
        self._address: str | None = None  # set while it counts against its address
        self._waiting: bytearray | None = None  # set while it waits over the limit
        self._timer: asyncio.TimerHandle | None = None
        self._opened = 0.0
        self._headers = HeaderEnd()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        guard = self._guard
        tcp = cast(asyncio.Transport, transport)
        peer = tcp.get_extra_info("peername")
        self._peer = str(peer[0]) if isinstance(peer, tuple) and peer else ""
        self._transport = tcp
        guard._open.add(self)
        loop = asyncio.get_running_loop()
        self._opened = loop.time()
        if not guard._counted(self._peer) or self._count():
            self._start()
            return
        self._waiting = bytearray()
        self._timer = loop.call_later(guard.grace_s, self._grace_over)

    def data_received(self, data: bytes) -> None:
        if self._transport is None:
            return
        complete = self._headers.feed(data)
        if self._waiting is not None:
            self._waiting += data
            if complete:  # no longer pending: it never needs a slot
                self._start()
                self._through(self._take_waiting())
            elif len(self._waiting) > _WAIT_BYTES:
                self._refuse()
            return
        if complete:
            self._through(data)
        elif self._inner is not None:
            self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self._inner.eof_received() if self._inner is not None else None

    def pause_writing(self) -> None:
        if self._inner is not None:
            self._inner.pause_writing()

    def resume_writing(self) -> None:
        if self._inner is not None:
            self._inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        self._done()
        if self._inner is not None:
            self._inner.connection_lost(exc)

    def abort(self) -> None:
        if self._transport is not None:
            self._transport.abort()

    def _count(self) -> bool:
        if not self._guard.pending.acquire(self._peer):
            return False
        self._address = self._peer
        return True

    def _start(self) -> None:
        """Give the connection to aiohttp, still pending: the clock runs from the accept."""
        assert self._transport is not None
        loop = asyncio.get_running_loop()
        if self._timer is not None:
            self._timer.cancel()
        left = self._guard.timeout_s - (loop.time() - self._opened)
        self._timer = loop.call_later(max(left, 0.0), self._expire)
        self._inner = self._factory()
        self._inner.connection_made(self._transport)

    def _through(self, data: bytes) -> None:
        """The headers are complete: the transport talks to aiohttp directly from now on."""
        transport, inner = self._transport, self._inner
        assert transport is not None
        assert inner is not None
        self._done()
        transport.set_protocol(inner)
        inner.data_received(data)

    def _grace_over(self) -> None:
        self._timer = None
        if self._transport is None:
            return
        if not self._count():
            self._refuse()
            return
        self._start()  # a slot came free meanwhile
        buffered = self._take_waiting()
        if buffered and self._inner is not None:
            self._inner.data_received(buffered)

    def _take_waiting(self) -> bytes:
        buffered, self._waiting = bytes(self._waiting or b""), None
        return buffered

    def _refuse(self) -> None:
        self._guard.refused += 1
        self._waiting = None
        self.abort()  # aiohttp never saw it

    def _expire(self) -> None:
        self._timer = None
        if self._transport is not None:
            self._guard.timed_out += 1
            self._transport.close()

    def _done(self) -> None:
        """No longer pending: give back the address's slot, stop the clock."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._address is not None:
            self._guard.pending.release(self._address)
            self._address = None
        self._guard._open.discard(self)
        self._waiting = None
        self._transport = None
