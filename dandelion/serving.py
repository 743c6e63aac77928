"""Running the application on its port until SIGTERM or SIGINT.

:func:`run_server` does for ``dandelion serve`` what ``aiohttp.web.run_app`` did — an
``AppRunner``, one TCP listener, keep-alive 75 s, and on SIGTERM or SIGINT a graceful stop that
runs the app's ``on_shutdown`` hooks and the second half of its cleanup contexts (``app.py``:
worker connections closed with 1001, then the store drained) — with two differences:

- the port is bound *before* the application starts, so a port in use or out of range is one
  :class:`ServingError` (one line for the operator), not a traceback from a coordinator that
  has already opened its state;
- every accepted connection passes through the handshake guard (``transport/handshake.py``)
  until its first request's headers are complete: ``handshake_timeout_s`` at most, and
  ``max_handshakes_per_address`` pending at once from one address.

:func:`serve_app` is the same as a coroutine that stops when an event is set (for tests and
for callers with their own loop).

::

    ServingError   the listener cannot be made: port out of range or in use, an address that is
                   not this machine's or does not resolve, no permission
"""

from __future__ import annotations

import asyncio
import errno
import signal
import socket
from collections.abc import Callable

from aiohttp import web
from yarl import URL

from .settings import Settings
from .transport.handshake import HandshakeGuard
from .transport.limits import parse_networks

__all__ = ["ServingError", "check_port", "run_server", "serve_app"]

# What run_app used: idle HTTP keep-alive connections are closed after 75 s, and a stop waits
# up to 60 s for requests in flight.
_KEEPALIVE_S = 75.0
_SHUTDOWN_S = 60.0
_BACKLOG = 128

Ready = Callable[[list[tuple[str, int]]], None]


class ServingError(Exception):
    """The coordinator cannot listen where it was told to."""


def check_port(port: int) -> None:
    """Raise ServingError unless ``port`` is a TCP port number (0: any free one)."""
    if not 0 <= port <= 65535:
        raise ServingError(f"port {port} is out of range: a TCP port is 0 to 65535")


def run_server(
    app: web.Application,
    settings: Settings,
    *,
    before_start: Callable[[], None] | None = None,
    on_ready: Ready | None = None,
) -> None:
    """Serve ``app`` on ``settings.host``:``settings.port`` until SIGTERM or SIGINT.

    ``before_start`` runs once the port is bound and before the application starts (what it
    raises stops the start); ``on_ready`` gets the bound (host, port) addresses once workers
    can connect. Raises ServingError, before anything else runs, if the port cannot be bound.
    """

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        try:
            await serve_app(app, settings, stop=stop, before_start=before_start, on_ready=on_ready)
        finally:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)

    asyncio.run(main())


async def serve_app(
    app: web.Application,
    settings: Settings,
    *,
    stop: asyncio.Event,
    before_start: Callable[[], None] | None = None,
    on_ready: Ready | None = None,
) -> None:
    """Bind, start ``app``, serve until ``stop`` is set, then stop it gracefully."""
    check_port(settings.port)
    guard = HandshakeGuard(
        settings.max_handshakes_per_address,
        settings.handshake_timeout_s,
        exempt=parse_networks(settings.trusted_proxies),
    )
    runner = web.AppRunner(
        app,
        handle_signals=False,
        keepalive_timeout=_KEEPALIVE_S,
        shutdown_timeout=_SHUTDOWN_S,
        # No access log: its lines hold the client's address, and no log line may
        # (docs/operations.md, "Logs").
        access_log=None,
    )

    def protocol() -> asyncio.Protocol:
        # Called per accepted connection, which only happens after runner.setup().
        assert runner.server is not None
        return runner.server()

    listener = await _bind(guard.wrap(protocol), settings.host, settings.port)
    try:
        if before_start is not None:
            before_start()
        await runner.setup()  # the app's startup: the store opens, the coordinator starts
        site = _BoundSite(runner, listener)
        await site.start()
        if on_ready is not None:
            on_ready([(str(a[0]), int(a[1])) for a in (s.getsockname() for s in listener.sockets)])
        await stop.wait()
    finally:
        listener.close()
        await runner.cleanup()  # on_shutdown, then the cleanup contexts, as run_app
        guard.close_all()


async def _bind(factory: Callable[[], asyncio.Protocol], host: str, port: int) -> asyncio.Server:
    """Bound, not yet listening: connections are refused until the app has started."""
    loop = asyncio.get_running_loop()
    where = f"{host}:{port}"
    try:
        return await loop.create_server(
            factory, host or None, port, backlog=_BACKLOG, start_serving=False
        )
    except socket.gaierror as exc:
        raise ServingError(f"cannot listen on {host!r}: {exc.strerror}") from None
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            reason = "the port is in use by another process (choose another with --port)"
        elif exc.errno == errno.EACCES:
            reason = "permission denied (ports below 1024 need privileges)"
        elif exc.errno == errno.EADDRNOTAVAIL:
            reason = f"{host} is not an address of this machine"
        else:
            reason = str(exc)
        raise ServingError(f"cannot listen on {where}: {reason}") from None
    except OverflowError:
        raise ServingError(f"port {port} is out of range: a TCP port is 0 to 65535") from None


class _BoundSite(web.BaseSite):
    """An aiohttp site over a listener bound beforehand (see :func:`_bind`)."""

    __slots__ = ("_listener",)

    def __init__(self, runner: web.BaseRunner, listener: asyncio.Server) -> None:
        super().__init__(runner, backlog=_BACKLOG)
        self._listener = listener

    @property
    def name(self) -> str:
        host, port = self._listener.sockets[0].getsockname()[:2]
        return str(URL.build(scheme="http", host=host, port=port))

    async def start(self) -> None:
        await super().start()
        self._server = self._listener
        await self._listener.start_serving()
