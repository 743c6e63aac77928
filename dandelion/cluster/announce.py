"""The committed model version of a task, announced to every shard.

The leader commits a model version (durably, in PostgreSQL) and then announces it: the version
is written to the key ``dandelion:model:<task>`` (so a shard that starts, or whose connection
to Redis dropped, reads the latest on its own) and published on the channel of the same name
(so the others hear of it at once). Pub/sub delivers at most once, so a shard treats a message
as a hint and the key, and PostgreSQL behind it, as the truth; versions only grow, so an old
announcement arriving late is ignored.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass

import redis.asyncio as aioredis

from .connection import key

__all__ = ["ModelAnnouncer", "Version"]

_SET_IF_NEWER = """
local cur = redis.call('GET', KEYS[1])
if cur and tonumber(cjson.decode(cur)['version']) >= tonumber(ARGV[2]) then return 0 end
redis.call('SET', KEYS[1], ARGV[1])
redis.call('PUBLISH', KEYS[1], ARGV[1])
return 1
"""


@dataclass(frozen=True, slots=True)
class Version:
    """A committed model version: which round made it, under which leader's epoch."""

    task: str
    version: int
    round_id: int
    epoch: int

    def to_json(self) -> str:
        return json.dumps(
            {
                "task": self.task,
                "version": self.version,
                "round": self.round_id,
                "epoch": self.epoch,
            }
        )

    @classmethod
    def from_json(cls, raw: str | bytes) -> Version:
        doc = json.loads(raw)
        return cls(str(doc["task"]), int(doc["version"]), int(doc["round"]), int(doc["epoch"]))


class ModelAnnouncer:
    """Announce and follow the model versions of one task."""

    def __init__(self, client: aioredis.Redis, task: str) -> None:
        self.client, self.task = client, task
        self.key = key("model", task)
        self._set = client.register_script(_SET_IF_NEWER)

    async def announce(self, version: Version) -> bool:
        """Record and publish ``version``; False if a version as new is already announced."""
        done = await self._set(keys=[self.key], args=[version.to_json(), version.version])
        return bool(done)

    async def latest(self) -> Version | None:
        raw = await self.client.get(self.key)
        return None if raw is None else Version.from_json(raw)

    async def follow(self) -> AsyncIterator[Version]:
        """The latest version now (if any), then each newer one as it is announced."""
        pubsub = self.client.pubsub()
        await pubsub.subscribe(self.key)
        try:
            seen = -1
            first = await self.latest()
            if first is not None:
                seen = first.version
                yield first
            async for message in pubsub.listen():
                if message.get("type") != "message":
                    continue
                version = Version.from_json(message["data"])
                if version.version > seen:
                    seen = version.version
                    yield version
        finally:
            await pubsub.aclose()
