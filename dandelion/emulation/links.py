"""In-memory links with a device's speed: binary frames take the device's transfer time on the
way (its bandwidth and latency), text messages none. The coordinator serves the far end with
``dandelion.transport.MemoryTransport``, the same conversation driver as the WebSocket endpoint.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from browser_worker.host import MemoryConnection

__all__ = ["LinkConnection", "link_pair"]

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
