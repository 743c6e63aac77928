"""The worker WebSocket endpoint: moves whole messages between a socket and the conversation
driver.

One handler per connection. Messages of one connection are handled one at a time, in order; a
slow or broken worker never holds up another one. permessage-deflate is off (float32 tensors
don't compress, and it costs CPU and memory per connection); message size, heartbeat and
timeouts are explicit: aiohttp's heartbeat closes a connection whose peer stopped answering
pings (a stopped process, a half-open socket), and one sweep closes connections silent past
their deadline.

Nothing here decides anything: the session checks the conversation, the driver
(``driver.py``) hands it to the coordinator, the coordinator decides.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import weakref
from typing import Any

from aiohttp import WSCloseCode, WSMsgType, web

from ..coordinator import Coordinator
from ..protocol import Error, Validator, encode_message
from ..settings import Settings
from .driver import Conversation, ConversationDriver, DriverCounters
from .limits import AddressLimit, client_address, parse_networks

__all__ = ["WORKER_PATH", "WorkerEndpoint"]

log = logging.getLogger("dandelion.transport")

WORKER_PATH = "/ws"


class _SocketLink:
    """A WebSocket as the driver's Link."""

    __slots__ = ("ws",)

    def __init__(self, ws: web.WebSocketResponse) -> None:
        self.ws = ws

    @property
    def closed(self) -> bool:
        return self.ws.closed

    async def send(self, data: str | bytes) -> None:
        if isinstance(data, str):
            await self.ws.send_str(data)
        else:
            await self.ws.send_bytes(data)

    async def close(self, code: int, reason: str) -> None:
        await self.ws.close(code=code, message=reason.encode()[:120])


class WorkerEndpoint:
    """The aiohttp handler for ``/ws``, with the registry of live connections."""

    def __init__(
        self, coordinator: Coordinator, settings: Settings, validate: Validator | None
    ) -> None:
        self.coordinator = coordinator
        self.settings = settings
        self.driver = ConversationDriver(coordinator, settings, validate)
        self.connections: weakref.WeakSet[web.WebSocketResponse] = weakref.WeakSet()
        self.addresses = AddressLimit(settings.max_connections_per_address)
        self._trusted = parse_networks(settings.trusted_proxies)
        # Silence deadlines, checked by watch() in one sweep rather than a timer per message.
        self._quiet_until: dict[web.WebSocketResponse, tuple[float, Conversation]] = {}

    @property
    def counters(self) -> DriverCounters:
        return self.driver.counters

    def open_connections(self) -> int:
        """Workers connected now (a closed socket may linger in the registry until collected)."""
        return sum(1 for ws in list(self.connections) if not ws.closed)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        address = client_address(request, self._trusted)
        if not self.addresses.acquire(address):
            self.counters.refused_connections += 1
            return web.Response(
                status=429,
                text="too many open connections from this address; try again later\n",
                headers={"Retry-After": "60"},
            )
        try:
            return await self._handle(request)
        finally:
            self.addresses.release(address)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        s = self.settings
        ws = web.WebSocketResponse(
            compress=False,
            heartbeat=s.heartbeat_s,
            max_msg_size=s.max_message_bytes,
            autoping=True,
        )
        await ws.prepare(request)
        self.connections.add(ws)
        conversation = self.driver.open(_SocketLink(ws))
        self._quiet_until[ws] = (time.monotonic() + conversation.quiet_s, conversation)
        try:
            await self._converse(ws, conversation)
        except asyncio.CancelledError:
            raise
        except ConnectionError:
            pass  # the worker went away mid-send; nothing to answer
        except Exception:
            log.exception("worker connection failed")
            with contextlib.suppress(Exception):
                await ws.send_str(_internal_error())
            await ws.close(code=WSCloseCode.INTERNAL_ERROR, message=b"internal error")
        finally:
            self._quiet_until.pop(ws, None)
            if not ws.closed:
                await ws.close(code=conversation.session.close_code or WSCloseCode.OK)
            await conversation.end()
        return ws

    async def _converse(self, ws: web.WebSocketResponse, conversation: Conversation) -> None:
        quiet_until = self._quiet_until
        while not ws.closed:
            msg = await ws.receive()
            if msg.type not in (WSMsgType.TEXT, WSMsgType.BINARY):
                return  # close, error (e.g. too big: aiohttp already answered 1009)
            data = msg.data
            del msg  # an update frame is d floats: an idle worker must not keep it alive
            await conversation.receive(data)
            del data
            if conversation.session.close_code is not None:
                return
            # Until its hello is welcomed a connection has only the hello timeout, counted from
            # connecting: other messages buy no time.
            if conversation.session.version is not None:
                quiet_until[ws] = (time.monotonic() + conversation.quiet_s, conversation)

    async def watch(self) -> None:
        """Close connections silent past their deadline: no hello in time, or idle. Runs for
        the application's lifetime; one sweep per interval, whatever the number of connections."""
        interval = min(1.0, self.settings.hello_timeout_s / 4)
        while True:
            await asyncio.sleep(interval)
            now = time.monotonic()
            expired = [(ws, c) for ws, (t, c) in self._quiet_until.items() if t <= now]
            for ws, conversation in expired:
                self._quiet_until.pop(ws, None)
                what = "no hello" if conversation.worker_id is None else "idle"
                task = asyncio.get_running_loop().create_task(
                    ws.close(code=WSCloseCode.POLICY_VIOLATION, message=f"{what} timeout".encode())
                )
                task.add_done_callback(_ignore_result)

    async def close_all(self) -> None:
        """Close every worker connection with 1001 (going away): for shutdown."""
        await asyncio.gather(
            *(
                ws.close(code=WSCloseCode.GOING_AWAY, message=b"shutdown")
                for ws in self.connections
            ),
            return_exceptions=True,
        )


def _ignore_result(task: asyncio.Task[Any]) -> None:
    if not task.cancelled():
        task.exception()


def _internal_error() -> str:
    return encode_message(Error("internal", "the coordinator failed on this message", fatal=True))
