"""The in-memory transport: what ``websocket.py`` does for a WebSocket, done for an in-memory
channel — the emulator, the DP demo and the tests use it.

Same session (``CoordinatorSession`` with the wire schemas' validator), same driver, same rules:
messages of one connection one at a time, a worker id connected twice keeps only its newest
connection, an opt-out closes the worker's open connection, the connection's end frees the
worker's assignment. A channel is anything with ``receive``/``send``/``close`` and ``closed``
(the worker's ``browser_worker.host.MemoryConnection`` is one); ``receive`` raising ends the
conversation.
"""

from __future__ import annotations

import asyncio
from typing import Protocol

from ..coordinator import Coordinator
from ..protocol import Validator
from ..settings import Settings
from .driver import ConversationDriver, DriverCounters

__all__ = ["Channel", "MemoryTransport"]


class Channel(Protocol):
    @property
    def closed(self) -> bool: ...

    async def receive(self) -> str | bytes: ...

    async def send(self, message: str | bytes) -> None: ...

    async def close(self, code: int = 1000, reason: str = "") -> None: ...


class MemoryTransport:
    """Serves in-memory channels with the coordinator, through the conversation driver."""

    def __init__(
        self, coordinator: Coordinator, settings: Settings, validate: Validator | None
    ) -> None:
        self.driver = ConversationDriver(coordinator, settings, validate)
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def counters(self) -> DriverCounters:
        return self.driver.counters

    def accept(self, channel: Channel) -> None:
        """Serve ``channel`` in the background until it closes."""
        task = asyncio.get_running_loop().create_task(self.serve(channel))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def serve(self, channel: Channel) -> None:
        """Serve ``channel`` until it closes (or the session closes it)."""
        conversation = self.driver.open(channel)
        session = conversation.session
        try:
            while session.close_code is None and not channel.closed:
                try:
                    data = await channel.receive()
                except Exception:  # the far end closed (the channel's own exception)
                    break
                await conversation.receive(data)
                del data  # an idle connection must not keep its last update frame alive
        finally:
            await conversation.end()
        if not channel.closed:
            await channel.close(session.close_code or 1000)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
