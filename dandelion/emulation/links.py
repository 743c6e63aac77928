"""In-memory links with a device's speed, joined straight to the coordinator's conversation
driver: binary frames take the device's transfer time on the way (its bandwidth and latency),
text messages none.

A worker's message is handed to its connection's ``Conversation`` (the same driver and
``CoordinatorSession`` as the WebSocket endpoint: rate limit, schema check, state machine) in
the worker's own task, as soon as its upload time has passed; the coordinator's answers land in
the worker's inbox at the moment their download ends, in the order they were sent. No task per
connection and no queue hop per message: each message costs the work it causes, and the loop
wakes only where virtual time passes.

Rules of this file: a message is never reordered, never lost while the link is open, and never
delivered after the link closed. The coordinator's handling runs in the sending worker's task;
the one place it waits (an update's ack, until the checkpoint that holds it is written) is
shielded by the coordinator itself, so a worker cancelled there is a worker that went away
after reporting, as over a socket.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from typing import Any

from browser_worker.host import Connection, ConnectionClosed

from ..transport import ConversationDriver

__all__ = ["DirectLink"]

Delay = Callable[[int], float]
_CLOSE = object()


class DirectLink(Connection):
    """The worker's end of one connection. ``upload(n)`` / ``download(n)`` are the virtual
    seconds a binary message of ``n`` bytes takes each way."""

    def __init__(self, driver: ConversationDriver, upload: Delay, download: Delay) -> None:
        self.closed = False
        self.close_code: int | None = None
        self._upload = upload
        self._loop = asyncio.get_running_loop()
        self._inbox: deque[Any] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self._far = _CoordinatorEnd(self, download)
        self._conversation = driver.open(self._far)
        self._ended = False

    # -- the worker's side -----------------------------------------------------------------------

    async def send(self, message: str | bytes) -> None:
        if self.closed:
            raise ConnectionClosed(self.close_code)
        if isinstance(message, bytes):
            await asyncio.sleep(self._upload(len(message)))
            if self.closed:
                raise ConnectionClosed(self.close_code)
        try:
            await self._conversation.receive(message)
        except Exception:
            # The coordinator failed on it (a bug, not the worker's doing): the conversation
            # ends as a transport ends it when its handler raises, the worker sees why.
            self.closed = self._far.closed = True
            await self._end()
            raise

    async def receive(self) -> str | bytes:
        while not self._inbox:
            if self.closed:
                raise ConnectionClosed(self.close_code)
            waiter = self._loop.create_future()
            self._waiter = waiter
            try:
                await waiter
            finally:
                self._waiter = None
        item = self._inbox.popleft()
        if isinstance(item, tuple):
            _, code, reason = item
            self.closed, self.close_code = True, code
            self._inbox.clear()
            raise ConnectionClosed(code, reason)
        return item  # type: ignore[no-any-return]

    async def close(self, code: int = 1000, reason: str = "") -> None:
        if self.closed:
            return
        self.closed, self.close_code = True, code
        self._far.closed = True
        self._inbox.clear()
        await self._end()

    # -- what the coordinator's end calls --------------------------------------------------------

    def _arrive(self, item: Any) -> None:
        if self.closed:
            return  # the worker hung up first: nobody reads it
        self._inbox.append(item)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def _end(self) -> None:
        if not self._ended:
            self._ended = True
            await self._conversation.end()


class _CoordinatorEnd:
    """The driver's ``Link`` of one connection: what it sends reaches the worker's inbox once
    its download time has passed, after everything sent before it."""

    def __init__(self, near: DirectLink, download: Delay) -> None:
        self.closed = False
        self._near = near
        self._download = download
        # Messages on their way, with when each arrives (in sending order, so never decreasing):
        # one timer for the first, not one per message, since timers due at the same moment
        # may run in any order.
        self._pending: deque[tuple[float, Any]] = deque()

    async def send(self, data: str | bytes, /) -> None:
        if self.closed:
            raise ConnectionClosed(self._near.close_code)
        self._deliver(data, self._download(len(data)) if isinstance(data, bytes) else 0.0)

    async def close(self, code: int, reason: str, /) -> None:
        if self.closed:
            return
        self.closed = True
        self._deliver((_CLOSE, code, reason), 0.0)
        await self._near._end()

    def _deliver(self, item: Any, delay: float) -> None:
        near, pending = self._near, self._pending
        loop = near._loop
        if not pending and delay <= 0.0:
            near._arrive(item)  # nothing ahead of it on the way
            return
        at = (pending[-1][0] if pending else loop.time()) + delay
        pending.append((at, item))
        if len(pending) == 1:
            loop.call_at(at, self._arrived)

    def _arrived(self) -> None:
        near, pending = self._near, self._pending
        loop = near._loop
        now = loop.time()
        while pending and pending[0][0] <= now:
            near._arrive(pending.popleft()[1])
        if pending:
            loop.call_at(pending[0][0], self._arrived)
