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
        timeout = s.hello_timeout_s
        while not ws.closed:
            try:
                msg = await ws.receive(timeout=timeout)
            except TimeoutError:
                what = "no hello" if session.worker_id is None else "idle"
                await ws.close(
                    code=WSCloseCode.POLICY_VIOLATION, message=f"{what} timeout".encode()
                )
                return
            if msg.type is WSMsgType.TEXT:
                event = session.receive_text(msg.data)
            elif msg.type is WSMsgType.BINARY:
                event = session.receive_bytes(msg.data)
            else:
                return  # close, error (e.g. too big: aiohttp already answered 1009)
            if event is not None:
                await self._dispatch(ws, session, event)
            await self._flush(ws, session)
            if session.close_code is not None:
                await ws.close(code=session.close_code, message=session.close_reason.encode()[:120])
                return
            timeout = s.idle_timeout_s

    async def _dispatch(
        self, ws: web.WebSocketResponse, session: CoordinatorSession, event: Any
    ) -> None:
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
            else:
                session.send(answer_c)
        elif isinstance(event, UpdateReceived):
            assert worker is not None
            session.send(await coordinator.on_update(worker, event.update, event.frame))
        elif isinstance(event, OptOutReceived):
            assert worker is not None
            await coordinator.on_opt_out(worker)
        elif isinstance(event, ProtocolViolation):
            log.debug("worker %s: %s (%s)", worker, event.error.detail, event.error.code)

    def _claim(self, worker: str, ws: web.WebSocketResponse) -> None:
        old = self._by_worker.get(worker)
        self._by_worker[worker] = ws
        if old is not None and not old.closed:
            # The same worker reconnected (its old socket may be half-dead): newest wins.
            task = asyncio.get_running_loop().create_task(
                old.close(code=WSCloseCode.POLICY_VIOLATION, message=b"already_connected")
            )
            task.add_done_callback(lambda t: t.exception())

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


def _internal_error() -> str:
    from ..protocol import encode_message

    return encode_message(Error("internal", "the coordinator failed on this message", fatal=True))
