"""An in-memory host: a worker and a server-side handler joined by two queues, no sockets.

The server side is any coroutine ``serve(conn)`` taking the other end of the pair: the emulator
and the tests plug the coordinator's own session handling in there.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from .base import ConnectFailed, Connection, ConnectionClosed, Host, KeyValueStore, MemoryKV

__all__ = ["MemoryConnection", "MemoryHost", "connection_pair"]

_CLOSED = object()


class MemoryConnection(Connection):
    """One end of an in-memory connection."""

    def __init__(self, inbox: asyncio.Queue[object], outbox: asyncio.Queue[object]) -> None:
        self._inbox = inbox
        self._outbox = outbox
        self.closed = False
        self.close_code: int | None = None

    async def send(self, message: str | bytes) -> None:
        if self.closed:
            raise ConnectionClosed(self.close_code)
        self._outbox.put_nowait(message)

    async def receive(self) -> str | bytes:
        if self.closed:
            raise ConnectionClosed(self.close_code)
        item = await self._inbox.get()
        if isinstance(item, tuple) and item and item[0] is _CLOSED:
            self.closed, self.close_code = True, item[1]
            raise ConnectionClosed(item[1], item[2])
        assert isinstance(item, str | bytes)
        return item

    async def close(self, code: int = 1000, reason: str = "") -> None:
        if not self.closed:
            self.closed, self.close_code = True, code
            self._outbox.put_nowait((_CLOSED, code, reason))


def connection_pair() -> tuple[MemoryConnection, MemoryConnection]:
    """Two connected ends: what one sends, the other receives."""
    a: asyncio.Queue[object] = asyncio.Queue()
    b: asyncio.Queue[object] = asyncio.Queue()
    return MemoryConnection(a, b), MemoryConnection(b, a)


class MemoryHost(Host):
    """A host whose ``connect`` hands the far end of a pair to ``serve``."""

    runtime_kind = "emulated"

    def __init__(
        self,
        serve: Callable[[MemoryConnection], Awaitable[None]] | None,
        *,
        clock: Callable[[], float] = time.time,
        storage: KeyValueStore | None = None,
    ) -> None:
        self._serve = serve
        self._clock = clock
        self._storage = storage or MemoryKV()
        self._tasks: set[asyncio.Future[None]] = set()
        self.lines: list[tuple[str, str]] = []

    async def connect(self, url: str) -> Connection:
        if self._serve is None:
            raise ConnectFailed("no server")
        mine, theirs = connection_pair()
        task: asyncio.Future[None] = asyncio.ensure_future(self._serve(theirs))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return mine

    def now(self) -> float:
        return self._clock()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)

    @property
    def storage(self) -> KeyValueStore:
        return self._storage

    def log(self, level: str, message: str) -> None:
        self.lines.append((level, message))
