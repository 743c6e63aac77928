"""Incomplete HTTP handshakes are bounded in time and in number per address.

The coordinator runs in this process through ``serve_app`` — the coroutine ``run_server`` (and
so ``dandelion serve``) runs — on loopback; the clients are raw sockets. Linux routes all of
127.0.0.0/8 to loopback, so a client bound to 127.0.0.2 is another address than 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from dandelion.app import make_app
from dandelion.serving import serve_app
from dandelion.settings import load_settings
from dandelion.transport.handshake import HeaderEnd

from .conftest import RawClient, scaled

ATTACKER = "127.0.0.2"
PROXY = "127.0.0.3"
Start = Callable[..., Awaitable[int]]


@pytest.fixture
async def guarded(tmp_path: Path) -> AsyncIterator[Start]:
    """``port = await guarded(**settings)``: a coordinator served as ``dandelion serve`` does."""
    stops: list[tuple[asyncio.Event, asyncio.Task[None]]] = []

    async def start(**overrides: Any) -> int:
        values = {"db": str(tmp_path / f"state{len(stops)}.db"), "port": 0, **overrides}
        settings = load_settings(environ={}, overrides=values)
        loop = asyncio.get_running_loop()
        ready: asyncio.Future[int] = loop.create_future()
        stop = asyncio.Event()
        task = loop.create_task(
            serve_app(
                make_app(settings),
                settings,
                stop=stop,
                on_ready=lambda addresses: ready.set_result(addresses[0][1]),
            )
        )
        stops.append((stop, task))
        await asyncio.wait([ready, task], timeout=scaled(20), return_when="FIRST_COMPLETED")
        return ready.result()

    yield start
    for stop, task in stops:
        stop.set()
        await task


class Pending:
    """A raw TCP connection that sends what it is told and waits for the server to close it."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.opened = time.monotonic()

    @classmethod
    async def open(cls, port: int, source: str = ATTACKER, first: bytes = b"") -> Pending:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))
        conn = cls(reader, writer)
        if first:
            writer.write(first)
            await writer.drain()
        return conn

    async def closed_after(self, timeout: float) -> float:
        """Seconds from opening until the server closed the connection (reads hit EOF)."""
        with contextlib.suppress(ConnectionResetError):
            data = await asyncio.wait_for(self.reader.read(), timeout)
            assert data == b"", data  # nothing was answered: the request never arrived
        return time.monotonic() - self.opened

    async def still_open(self, seconds: float) -> bool:
        try:
            await asyncio.wait_for(self.reader.read(1), seconds)
        except TimeoutError:
            return True
        return False

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError):
            await self.writer.wait_closed()


async def test_a_slow_loris_is_closed_after_the_handshake_timeout(guarded: Start) -> None:
    timeout = scaled(1.0)
    port = await guarded(handshake_timeout_s=timeout)
    # Half a request line, then a byte now and then: never the end of the headers.
    loris = await Pending.open(port, first=b"GET /healthz HT")

    async def trickle() -> None:
        for byte in b"TP/1.1\r\nHost: x":
            await asyncio.sleep(timeout / 8)
            try:
                loris.writer.write(bytes([byte]))
                await loris.writer.drain()
            except ConnectionError:
                return

    dribbling = asyncio.create_task(trickle())
    elapsed = await loris.closed_after(timeout * 5)
    assert 0.8 * timeout <= elapsed <= timeout + scaled(1.0), elapsed
    await dribbling
    await loris.close()
    # A connection that finishes its headers in time is answered, and not closed at the timeout.
    async with aiohttp.ClientSession() as http:
        async with http.get(f"http://127.0.0.1:{port}/healthz") as resp:
            assert resp.status == 200
        await asyncio.sleep(timeout * 1.5)
        async with http.get(f"http://127.0.0.1:{port}/healthz") as resp:  # the same keep-alive
            assert resp.status == 200


async def test_pending_handshakes_per_address_are_capped_while_others_are_served(
    guarded: Start,
) -> None:
    limit, timeout = 4, scaled(1.5)
    port = await guarded(max_handshakes_per_address=limit, handshake_timeout_s=timeout)
    url = f"ws://127.0.0.1:{port}/ws"
    worker = await RawClient.connect(url)  # from 127.0.0.1, before the flood
    assert (await worker.hello("worker-before"))["type"] == "welcome"

    held = [await Pending.open(port, first=b"GET /ws HTTP/1.1\r\nHost:") for _ in range(limit)]
    extra = await Pending.open(port)
    assert await extra.closed_after(timeout) < timeout / 2  # refused at once, not timed out
    for conn in held:
        assert await conn.still_open(0.01)

    # Meanwhile, from another address: a new worker and a plain request go through, and the
    # worker connected before carries on past the handshake timeout.
    late = await RawClient.connect(url)
    assert (await late.hello("worker-during"))["type"] == "welcome"
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"http://127.0.0.1:{port}/healthz") as resp,
    ):
        assert resp.status == 200
        assert (await resp.json())["connections"] == 2
    for conn in held:  # the held ones time out ...
        assert await conn.closed_after(timeout * 3) >= 0.8 * timeout
        await conn.close()
    await extra.close()
    await worker.send({"type": "checkin", "v": 1})
    assert (await worker.recv_json())["type"] == "come_back"

    # ... and give their address its slots back: it is served again.
    again = await Pending.open(port, first=b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    assert (await asyncio.wait_for(again.reader.readline(), scaled(5))).startswith(b"HTTP/1.1 200")
    await again.close()
    await worker.close()
    await late.close()


async def test_a_burst_of_honest_connections_from_one_address_is_served(guarded: Start) -> None:
    # Accepted in one go, before any is read: over the limit, each waits a moment (uncounted)
    # for its own headers instead of being refused with the slow ones.
    limit = 4
    port = await guarded(max_handshakes_per_address=limit, handshake_timeout_s=scaled(2.0))
    request = b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"

    async def one() -> bytes:
        conn = await Pending.open(port, first=request)
        try:
            return await asyncio.wait_for(conn.reader.readline(), scaled(5))
        finally:
            await conn.close()

    answers = await asyncio.gather(*(one() for _ in range(10 * limit)))
    assert answers == [b"HTTP/1.1 200 OK\r\n"] * (10 * limit)


async def test_trusted_proxies_are_timed_but_not_counted(guarded: Start) -> None:
    limit, timeout = 2, scaled(1.0)
    port = await guarded(
        max_handshakes_per_address=limit, handshake_timeout_s=timeout, trusted_proxies=PROXY
    )
    burst = [await Pending.open(port, source=PROXY) for _ in range(limit + 3)]
    for conn in burst:  # none refused at once; each closed at the timeout all the same
        assert await conn.closed_after(timeout * 5) >= 0.8 * timeout
        await conn.close()
    counted = [await Pending.open(port) for _ in range(limit + 1)]
    assert await counted[-1].closed_after(timeout) < timeout / 2
    for conn in counted:
        await conn.close()


def test_the_end_of_the_headers_is_found_across_pieces() -> None:
    request = b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\r\n"
    for cut in range(1, len(request)):
        end = HeaderEnd()
        assert not end.feed(request[:cut])
        assert end.feed(request[cut:])
    byte_by_byte = HeaderEnd()
    assert [byte_by_byte.feed(bytes([b])) for b in request].index(True) == len(request) - 1
    blank_lines_first = HeaderEnd()
    assert not blank_lines_first.feed(b"\r\n\r\n\r\n")  # empty lines before the request line
    assert not blank_lines_first.feed(b"GET / HTTP/1.1\r\n")
    assert blank_lines_first.feed(b"\r\n")
    lenient = HeaderEnd()
    assert lenient.feed(b"GET / HTTP/1.1\nHost: x\n\n")
