"""Limits of the worker endpoint: message rate, connections per address, size per kind."""

from __future__ import annotations

import asyncio
from unittest import mock

import pytest
import websockets
from aiohttp.test_utils import make_mocked_request

from dandelion.app import ENDPOINT
from dandelion.transport.limits import AddressLimit, TokenBucket, client_address, parse_networks

from .conftest import LiveFactory, RawClient


async def test_a_connection_that_sends_too_fast_is_slowed_then_closed(
    live: LiveFactory, clients: object
) -> None:
    server = await live(max_messages_per_s=5.0, max_errors=10)  # no task: come_back each time
    client = await RawClient.connect(server.url)
    assert (await client.hello("fast-worker-1"))["type"] == "welcome"
    for _ in range(12):  # a burst of ten goes through, then the bucket is empty
        await client.send({"type": "checkin", "v": 1})
    answers = [await client.recv_json() for _ in range(12)]
    limited = [a for a in answers if a["type"] == "error" and a["code"] == "rate_limited"]
    assert 1 <= len(limited) <= 3, answers
    assert not any(a.get("fatal") for a in limited)
    await asyncio.sleep(1.0)  # the bucket refills: the conversation goes on
    await client.send({"type": "checkin", "v": 1})
    assert (await client.recv_json())["type"] == "come_back"
    # Flooding on: rate_limited errors count towards max_errors, and the tenth closes it.
    for _ in range(60):
        try:
            await client.send({"type": "checkin", "v": 1})
        except websockets.ConnectionClosed:
            break
    with pytest.raises(websockets.ConnectionClosed) as closed:
        await _drain(client)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008
    await client.close()


async def _drain(client: RawClient) -> None:
    while True:
        await client.recv(timeout=5)


async def test_connections_per_address_are_capped_in_memory(live: LiveFactory) -> None:
    server = await live(max_connections_per_address=3)
    held = [await RawClient.connect(server.url) for _ in range(3)]
    with pytest.raises(websockets.InvalidStatus) as refused:
        await RawClient.connect(server.url)
    assert refused.value.response.status_code == 429
    await held[0].close()
    await asyncio.sleep(0.1)
    again = await RawClient.connect(server.url)  # a slot came free
    assert (await again.hello("slot-worker-1"))["type"] == "welcome"
    for c in [*held[1:], again]:
        await c.close()
    await asyncio.sleep(0.1)
    assert len(server.app[ENDPOINT].addresses) == 0


async def test_each_message_kind_has_its_own_size_limit(live: LiveFactory) -> None:
    server = await live()
    client = await RawClient.connect(server.url)
    answer = await client.hello("big-hello-worker", client="x" * 5000)
    assert answer["type"] == "error" and answer["code"] == "too_large", answer
    assert "hello message" in answer["detail"]
    assert (await client.hello("big-hello-worker"))["type"] == "welcome"  # not fatal
    await client.close()


def _request(peer: str, forwarded: str | None = None) -> object:
    headers = {"X-Forwarded-For": forwarded} if forwarded else {}
    transport = mock.Mock()
    transport.get_extra_info.return_value = (peer, 40000)
    return make_mocked_request("GET", "/ws", headers=headers, transport=transport)


def test_forwarded_addresses_are_believed_only_from_trusted_proxies() -> None:
    trusted = parse_networks("127.0.0.1, 172.28.0.0/24")
    assert client_address(_request("203.0.113.9", "198.51.100.1"), trusted) == "203.0.113.9"  # type: ignore[arg-type]
    assert client_address(_request("127.0.0.1", "198.51.100.1"), trusted) == "198.51.100.1"  # type: ignore[arg-type]
    # The proxy appends the address it saw: only the last entry is the proxy's own word.
    forged = "10.9.9.9, 198.51.100.2"
    assert client_address(_request("172.28.0.5", forged), trusted) == "198.51.100.2"  # type: ignore[arg-type]
    assert client_address(_request("127.0.0.1", "garbage"), trusted) == "127.0.0.1"  # type: ignore[arg-type]
    assert client_address(_request("127.0.0.1", "198.51.100.1"), ()) == "127.0.0.1"  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="not-an-ip"):
        parse_networks("127.0.0.1,not-an-ip")


def test_address_limit_and_token_bucket() -> None:
    limit = AddressLimit(2)
    assert limit.acquire("a") and limit.acquire("a") and not limit.acquire("a")
    assert limit.acquire("b")
    limit.release("a")
    assert limit.acquire("a")
    bucket = TokenBucket(rate=2.0, burst=3.0, now=0.0)
    assert [bucket.take(0.0) for _ in range(4)] == [True, True, True, False]
    assert bucket.take(0.5) and not bucket.take(0.5)  # one token per half second
