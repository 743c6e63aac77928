"""/healthz counts the worker connections open now, not every connection ever made."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp

from .conftest import Live, LiveFactory, scaled
from .test_admin_api import _http
from .test_api_threshold import strict_loads


async def _connections(server: Live) -> int:
    async with aiohttp.ClientSession() as http, http.get(_http(server) + "/healthz") as resp:
        assert resp.status == 200
        body = strict_loads(await resp.read())
    assert body["status"] == "ok"
    count: int = body["connections"]
    return count


async def _until(server: Live, wanted: int) -> int:
    """/healthz's count once it is ``wanted`` (a close takes a moment to reach the server),
    or the last count after a few seconds."""
    loop = asyncio.get_running_loop()
    end = loop.time() + scaled(5)
    while (seen := await _connections(server)) != wanted and loop.time() < end:
        await asyncio.sleep(0.05)
    return seen


async def test_healthz_counts_open_connections_only(live: LiveFactory, clients: Any) -> None:
    server = await live()
    first = [await clients(server.url) for _ in range(6)]
    for i, client in enumerate(first):
        assert (await client.hello(f"worker-{i:04d}"))["type"] == "welcome"
    assert await _until(server, 6) == 6
    for client in first:
        await client.close()
    # Closed connections are gone from the count (they used to linger until collected).
    assert await _until(server, 0) == 0
    second = [await clients(server.url) for _ in range(2)]
    for i, client in enumerate(second):
        assert (await client.hello(f"worker-b{i:03d}"))["type"] == "welcome"
    assert await _until(server, 2) == 2
