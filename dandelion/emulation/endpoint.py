"""The coordinator's side of in-memory connections: what ``dandelion.transport.websocket`` does
for a WebSocket, done for an in-memory pair.

Same session (``CoordinatorSession`` with the wire schemas' validator), same coordinator calls,
same rules: messages of one connection one at a time, a worker id connected twice keeps only its
newest connection. Binary frames take the device's transfer time on the way (its bandwidth and
latency), text messages none.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable

from browser_worker.host import ConnectionClosed, MemoryConnection
from dandelion.protocol import (
    CheckinReceived,
    CoordinatorSession,
    HelloReceived,
    OptOutReceived,
    ProtocolViolation,
    Reject,
    UpdateReceived,
    Validator,
    Welcome,
)

from ..coordinator import Coordinator
from ..settings import Settings

__all__ = ["LinkConnection", "MemoryEndpoint", "link_pair"]

Delay = Callable[[int], float]


class LinkConnection(MemoryConnection):
    """One end of an in-memory pair whose binary messages take ``delay(len)`` virtual seconds."""

    def __init__(
        self, inbox: asyncio.Queue[object], outbox: asyncio.Queue[object], delay: Delay | None
    ) -> None:
        super().__init__(inbox, outbox)
        self._delay = delay

    async def send(self, message: str | bytes) -> None:
        if self._delay is not None and isinstance(message, bytes):
            await asyncio.sleep(self._delay(len(message)))
        await super().send(message)


def link_pair(
    upload: Delay | None, download: Delay | None
) -> tuple[LinkConnection, LinkConnection]:
    """(worker end, coordinator end): the worker's frames take ``upload``, the coordinator's
    ``download``."""
    a: asyncio.Queue[object] = asyncio.Queue()
    b: asyncio.Queue[object] = asyncio.Queue()
    return LinkConnection(a, b, upload), LinkConnection(b, a, download)


class MemoryEndpoint:
    """Serves in-memory connections with the coordinator. ``counts`` says what happened."""

    def __init__(
        self, coordinator: Coordinator, settings: Settings, validate: Validator | None
    ) -> None:
        self.coordinator = coordinator
        self.settings = settings
        self.validate = validate
        self.counts: Counter[str] = Counter()
        self._by_worker: dict[str, LinkConnection] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def accept(self, conn: LinkConnection) -> None:
        task = asyncio.get_running_loop().create_task(self.serve(conn))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def serve(self, conn: LinkConnection) -> None:
        s = self.settings
        session = CoordinatorSession(
            validate=self.validate, max_text_bytes=s.max_text_bytes, max_errors=s.max_errors
        )
        try:
            while session.close_code is None:
                # One message per call: an idle connection must not keep its last update frame
                # (d values) alive in this loop's variables while it waits for the next one.
                await self._one(conn, session, await conn.receive())
        except ConnectionClosed:
            pass
        finally:
            worker = session.worker_id
            if worker is not None and self._by_worker.get(worker) is conn:
                del self._by_worker[worker]
        if not conn.closed:
            await conn.close(session.close_code or 1000)

    async def _one(
        self, conn: LinkConnection, session: CoordinatorSession, data: str | bytes
    ) -> None:
        event = session.receive_text(data) if isinstance(data, str) else session.receive_bytes(data)
        if event is not None:
            await self._dispatch(conn, session, event)
        for out in session.data_to_send():
            await conn.send(out)

    async def _dispatch(
        self, conn: LinkConnection, session: CoordinatorSession, event: object
    ) -> None:
        coordinator, counts = self.coordinator, self.counts
        worker = session.worker_id
        if isinstance(event, HelloReceived):
            answer = await coordinator.on_hello(event.hello)
            session.send(answer)
            counts["hello"] += 1
            if isinstance(answer, Welcome):
                assert worker is not None
                old = self._by_worker.get(worker)
                self._by_worker[worker] = conn
                if old is not None and old is not conn and not old.closed:
                    counts["replaced_connection"] += 1
                    await old.close(1008, "already_connected")
            else:
                counts[f"reject_{answer.reason}"] += 1
        elif isinstance(event, CheckinReceived):
            assert worker is not None
            answer_c = await coordinator.on_checkin(worker, event.checkin)
            counts["checkin"] += 1
            if isinstance(answer_c, tuple):
                session.send(answer_c[0], answer_c[1])
                counts["task"] += 1
            else:
                session.send(answer_c)
                counts[f"come_back_{answer_c.reason}"] += 1
        elif isinstance(event, UpdateReceived):
            assert worker is not None
            answer_u = await coordinator.on_update(worker, event.update, event.frame)
            session.send(answer_u)
            if isinstance(answer_u, Reject):
                counts[f"update_rejected_{answer_u.reason}"] += 1
            else:
                counts["ack"] += 1
        elif isinstance(event, OptOutReceived):
            assert worker is not None
            await coordinator.on_opt_out(worker)
            counts["opt_out"] += 1
        elif isinstance(event, ProtocolViolation):
            counts["protocol_error"] += 1

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
