"""The worker WebSocket endpoint: moves whole messages between a socket and a session.

One handler per connection. Messages of one connection are handled one at a time, in order; a
slow or broken worker never holds up another one. permessage-deflate is off (float32 tensors
don't compress, and it costs CPU and memory per connection); message size, heartbeat and
timeouts are explicit. A worker id connected twice keeps only its newest connection.

Nothing here decides anything: sessions check the conversation, the coordinator decides.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import weakref
from dataclasses import dataclass
from typing import Any

from aiohttp import WSCloseCode, WSMsgType, web

from ..coordinator import Coordinator
from ..protocol import (
    CheckinReceived,
    CoordinatorSession,
    Error,
    HelloReceived,
    OptOutReceived,
    ProtocolViolation,
    Reject,
    UpdateReceived,
    Validator,
    Welcome,
)
from ..settings import Settings
from ..storage import StorageError
from .limits import AddressLimit, TokenBucket, client_address, parse_networks

__all__ = ["WORKER_PATH", "EndpointCounters", "WorkerEndpoint"]

log = logging.getLogger("dandelion.transport")

WORKER_PATH = "/ws"
_CLOSE_TRY_LATER = 1013
_GRACE_S = 30.0
_UNAVAILABLE = (
    "the coordinator cannot store its state right now; nothing was recorded, try again later"
)


@dataclass(slots=True)
class EndpointCounters:
    """What the endpoint has handled since start (read by ``/metrics``)."""

    connections_opened: int = 0
    received: int = 0  # WebSocket messages read, whatever became of them
    messages: int = 0
    updates_accepted: int = 0
    updates_rejected: int = 0
    update_bytes: int = 0
    protocol_violations: int = 0
    rate_limited: int = 0
    storage_errors: int = 0
    refused_connections: int = 0


class WorkerEndpoint:
    """The aiohttp handler for ``/ws``, with the registry of live connections."""

    def __init__(
        self, coordinator: Coordinator, settings: Settings, validate: Validator | None
    ) -> None:
        self.coordinator = coordinator
        self.settings = settings
        self.validate = validate
        self.connections: weakref.WeakSet[web.WebSocketResponse] = weakref.WeakSet()
        self.counters = EndpointCounters()
        self.addresses = AddressLimit(settings.max_connections_per_address)
        self._trusted = parse_networks(settings.trusted_proxies)
        self._by_worker: dict[str, web.WebSocketResponse] = {}
        # Silence deadlines, checked by watch() in one sweep rather than a timer per message.
        self._quiet_until: dict[web.WebSocketResponse, tuple[float, CoordinatorSession]] = {}

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
        self.counters.connections_opened += 1
        session = CoordinatorSession(
            validate=self.validate, max_text_bytes=s.max_text_bytes, max_errors=s.max_errors
        )
        try:
            await self._converse(ws, session)
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
            worker = session.worker_id
            if worker is not None and self._by_worker.get(worker) is ws:
                del self._by_worker[worker]
            if not ws.closed:
                await ws.close(code=session.close_code or WSCloseCode.OK)
        return ws

    async def _converse(self, ws: web.WebSocketResponse, session: CoordinatorSession) -> None:
        s = self.settings
        quiet_until = self._quiet_until
        quiet_until[ws] = (time.monotonic() + s.hello_timeout_s, session)
        try:
            await self._converse_until_closed(ws, session)
        finally:
            quiet_until.pop(ws, None)

    async def _converse_until_closed(
        self, ws: web.WebSocketResponse, session: CoordinatorSession
    ) -> None:
        s = self.settings
        quiet_until = self._quiet_until
        bucket = TokenBucket(
            s.max_messages_per_s, max(10.0, 2 * s.max_messages_per_s), time.monotonic()
        )
        while not ws.closed:
            msg = await ws.receive()
            if msg.type not in (WSMsgType.TEXT, WSMsgType.BINARY):
                return  # close, error (e.g. too big: aiohttp already answered 1009)
            self.counters.received += 1
            if not bucket.take(time.monotonic()):
                self.counters.rate_limited += 1
                event: Any = session.refuse(
                    f"more than {s.max_messages_per_s:g} messages per second; message dropped"
                )
            elif msg.type is WSMsgType.TEXT:
                event = session.receive_text(msg.data)
            else:
                event = session.receive_bytes(msg.data)
            quiet = await self._dispatch(ws, session, event) if event is not None else None
            # Let go of the message (an update frame is d floats) before waiting for the next:
            # an idle worker must not keep its last update alive.
            del msg, event
            await self._flush(ws, session)
            if session.close_code is not None:
                await ws.close(code=session.close_code, message=session.close_reason.encode()[:120])
                return
            # Until its hello is welcomed a connection has only the hello timeout, counted from
            # connecting: other messages buy no time. Once welcomed, a worker training on an
            # assignment may stay silent until its deadline has passed; otherwise silence
            # beyond the idle timeout ends the connection.
            if session.version is not None:
                quiet = max(s.idle_timeout_s, quiet or 0.0)
                quiet_until[ws] = (time.monotonic() + quiet, session)

    async def watch(self) -> None:
        """Close connections silent past their deadline: no hello in time, or idle. Runs for
        the application's lifetime; one sweep per interval, whatever the number of connections."""
        interval = min(1.0, self.settings.hello_timeout_s / 4)
        while True:
            await asyncio.sleep(interval)
            now = time.monotonic()
            expired = [(ws, s) for ws, (t, s) in self._quiet_until.items() if t <= now]
            for ws, session in expired:
                self._quiet_until.pop(ws, None)
                what = "no hello" if session.worker_id is None else "idle"
                task = asyncio.get_running_loop().create_task(
                    ws.close(code=WSCloseCode.POLICY_VIOLATION, message=f"{what} timeout".encode())
                )
                task.add_done_callback(_ignore_result)

    async def _dispatch(
        self, ws: web.WebSocketResponse, session: CoordinatorSession, event: Any
    ) -> float | None:
        """Act on one event; return how long the worker may now stay silent, if longer than
        usual (it was given a task with a deadline)."""
        self.counters.messages += 1
        try:
            return await self._act(ws, session, event)
        except StorageError:
            # The state file cannot be written (the store has logged why): nothing was
            # acknowledged. Say so; a worker retries later. A hello cannot be answered at all.
            self.counters.storage_errors += 1
            session.send(Error("internal", _UNAVAILABLE))
            if isinstance(event, HelloReceived):
                session.close(_CLOSE_TRY_LATER, "state unavailable")
            return None

    async def _act(
        self, ws: web.WebSocketResponse, session: CoordinatorSession, event: Any
    ) -> float | None:
        coordinator = self.coordinator
        worker = session.worker_id
        if isinstance(event, HelloReceived):
            answer = await coordinator.on_hello(event.hello)
            session.send(answer)
            if isinstance(answer, Welcome):
                assert worker is not None
                self._claim(worker, ws)
            elif isinstance(answer, Reject) and answer.reason == "over_capacity":
                session.close(_CLOSE_TRY_LATER, "over capacity")
        elif isinstance(event, CheckinReceived):
            assert worker is not None
            answer_c = await coordinator.on_checkin(worker, event.checkin)
            if isinstance(answer_c, tuple):
                session.send(answer_c[0], answer_c[1])
                return answer_c[0].deadline_s + _GRACE_S
            session.send(answer_c)
        elif isinstance(event, UpdateReceived):
            assert worker is not None
            answer_u = await coordinator.on_update(worker, event.update, event.frame)
            session.send(answer_u)
            if isinstance(answer_u, Reject):
                self.counters.updates_rejected += 1
            else:
                self.counters.updates_accepted += 1
                self.counters.update_bytes += len(event.frame.payload)
        elif isinstance(event, OptOutReceived):
            assert worker is not None
            await coordinator.on_opt_out(worker)
        elif isinstance(event, ProtocolViolation):
            self.counters.protocol_violations += 1
            log.debug("worker %s: %s (%s)", worker, event.error.detail, event.error.code)
        return None

    def _claim(self, worker: str, ws: web.WebSocketResponse) -> None:
        old = self._by_worker.get(worker)
        self._by_worker[worker] = ws
        if old is not None and not old.closed:
            # The same worker reconnected (its old socket may be half-dead): newest wins.
            task = asyncio.get_running_loop().create_task(
                old.close(code=WSCloseCode.POLICY_VIOLATION, message=b"already_connected")
            )
            task.add_done_callback(_ignore_result)

    @staticmethod
    async def _flush(ws: web.WebSocketResponse, session: CoordinatorSession) -> None:
        for out in session.data_to_send():
            if isinstance(out, str):
                await ws.send_str(out)
            else:
                await ws.send_bytes(out)

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
    from ..protocol import encode_message

    return encode_message(Error("internal", "the coordinator failed on this message", fatal=True))
