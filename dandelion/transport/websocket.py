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

__all__ = ["WORKER_PATH", "WorkerEndpoint"]

log = logging.getLogger("dandelion.transport")

WORKER_PATH = "/ws"
_CLOSE_TRY_LATER = 1013
_GRACE_S = 30.0


class WorkerEndpoint:
    """The aiohttp handler for ``/ws``, with the registry of live connections."""

    def __init__(
        self, coordinator: Coordinator, settings: Settings, validate: Validator | None
    ) -> None:
        self.coordinator = coordinator
        self.settings = settings
        self.validate = validate
        self.connections: weakref.WeakSet[web.WebSocketResponse] = weakref.WeakSet()
        self._by_worker: dict[str, web.WebSocketResponse] = {}
        # Silence deadlines, checked by watch() in one sweep rather than a timer per message.
        self._quiet_until: dict[web.WebSocketResponse, tuple[float, CoordinatorSession]] = {}

    async def handle(self, request: web.Request) -> web.StreamResponse:
        s = self.settings
        ws = web.WebSocketResponse(
            compress=False,
            heartbeat=s.heartbeat_s,
            max_msg_size=s.max_message_bytes,
            autoping=True,
        )
        await ws.prepare(request)
        self.connections.add(ws)
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
        while not ws.closed:
            msg = await ws.receive()
            if msg.type is WSMsgType.TEXT:
                event = session.receive_text(msg.data)
            elif msg.type is WSMsgType.BINARY:
                event = session.receive_bytes(msg.data)
            else:
                return  # close, error (e.g. too big: aiohttp already answered 1009)
            quiet = await self._dispatch(ws, session, event) if event is not None else None
            await self._flush(ws, session)
            if session.close_code is not None:
                await ws.close(code=session.close_code, message=session.close_reason.encode()[:120])
                return
            # A worker training on an assignment may stay silent until its deadline has passed;
            # otherwise silence beyond the idle timeout ends the connection.
            quiet_until[ws] = (time.monotonic() + max(s.idle_timeout_s, quiet or 0.0), session)

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
            session.send(await coordinator.on_update(worker, event.update, event.frame))
        elif isinstance(event, OptOutReceived):
            assert worker is not None
            await coordinator.on_opt_out(worker)
        elif isinstance(event, ProtocolViolation):
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
