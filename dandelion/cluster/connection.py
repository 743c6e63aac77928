"""The Redis connection of a cluster: one URL, a clear error when it is wrong or unreachable."""

from __future__ import annotations

from urllib.parse import urlsplit

import redis.asyncio as aioredis
from redis.exceptions import RedisError

__all__ = ["PREFIX", "ClusterError", "check", "connect", "key"]

#: Every key and channel Dandelion uses starts with this, so a Redis can be shared.
PREFIX = "dandelion"


class ClusterError(Exception):
    """The cluster's Redis cannot be used; the message says why, in one line."""


def key(*parts: object) -> str:
    """``dandelion:part:part…``: task names hold no colon (a-z 0-9 _ -), so keys cannot clash."""
    return ":".join((PREFIX, *(str(p) for p in parts)))


async def connect(url: str, *, timeout_s: float = 5.0) -> aioredis.Redis:
    """A connected client for ``redis://host:port/db`` (or ``rediss://``, ``unix://``).

    Raises ClusterError for a URL of another scheme or a server that does not answer PING.
    """
    scheme = urlsplit(url).scheme
    if scheme not in ("redis", "rediss", "unix"):
        raise ClusterError(f"--cluster {url!r}: a redis:// (or rediss://, unix://) URL")
    try:
        client = aioredis.Redis.from_url(
            url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s
        )
    except ValueError as exc:
        raise ClusterError(f"--cluster {url!r}: {exc}") from None
    try:
        await client.ping()
    except (RedisError, OSError) as exc:
        await client.aclose()
        raise ClusterError(f"cannot reach Redis at {url}: {exc}") from None
    return client


def check(url: str, *, timeout_s: float = 5.0) -> None:
    """Before a shard starts: the URL is Redis's and the server answers. Raises ClusterError."""
    import asyncio

    async def ping() -> None:
        client = await connect(url, timeout_s=timeout_s)
        await client.aclose()

    asyncio.run(ping())
