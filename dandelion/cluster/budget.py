"""A round's assignment budget and report count, shared by every shard.

Over-selection assigns at most ``ceil(goal * over_selection)`` workers to a round, whichever
shard they are connected to: each shard takes a slot from one counter in Redis before it
assigns a worker (``INCR``, given back at once past the limit, in one script), and gives the
slot back when that worker is released without reporting. Each shard adds its acknowledged
reports to the round's report count after the group commit that made them durable, and the
leader closes the round when the count reaches the goal. A shard claims a report's assignment
nonce (an HMAC under the round's secret: it names no worker) before it adds the update, so that
the same update sent again to another shard is refused, not counted twice; a claim whose
checkpoint failed is given back. The keys expire a while after the round's deadline; nothing
in them names a worker.
"""

from __future__ import annotations

import redis.asyncio as aioredis

from .connection import key

__all__ = ["RoundCounters"]

_TAKE = """
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
if n > tonumber(ARGV[1]) then
  redis.call('DECR', KEYS[1])
  return 0
end
return n
"""
_GIVE_BACK = """
local n = tonumber(redis.call('GET', KEYS[1]) or '0')
if n > 0 then return redis.call('DECR', KEYS[1]) end
return 0
"""


class RoundCounters:
    """The shared counters of round ``round_id`` of ``task``."""

    def __init__(self, client: aioredis.Redis, task: str, round_id: int, *, expire_ms: int) -> None:
        if expire_ms < 1000:
            raise ValueError("expire_ms: at least 1000 (past the round's deadline)")
        self.client, self.expire_ms = client, expire_ms
        self.assigned_key = key("round", task, round_id, "assigned")
        self.reports_key = key("round", task, round_id, "reports")
        self.claimed_key = key("round", task, round_id, "claimed")
        self._take = client.register_script(_TAKE)
        self._give_back = client.register_script(_GIVE_BACK)

    async def take_slot(self, limit: int) -> bool:
        """One assignment slot if fewer than ``limit`` are taken across the cluster."""
        taken = await self._take(keys=[self.assigned_key], args=[limit, self.expire_ms])
        return int(taken) > 0

    async def give_back(self) -> None:
        """A worker assigned here was released without a report: its slot is free again."""
        await self._give_back(keys=[self.assigned_key])

    async def add_reports(self, n: int) -> int:
        """Add ``n`` durable reports (one group commit's); the cluster's count after it."""
        async with self.client.pipeline(transaction=True) as pipe:
            pipe.incrby(self.reports_key, n)
            pipe.pexpire(self.reports_key, self.expire_ms)
            count, _ = await pipe.execute()
        return int(count)

    async def claim(self, nonce: str) -> bool:
        """Claim a report's assignment nonce; False if a shard claimed it already."""
        async with self.client.pipeline(transaction=True) as pipe:
            pipe.sadd(self.claimed_key, nonce)
            pipe.pexpire(self.claimed_key, self.expire_ms)
            added, _ = await pipe.execute()
        return bool(added)

    async def unclaim(self, nonces: list[str]) -> None:
        """The reports of these nonces were not stored: their workers may send them again."""
        await self.client.srem(self.claimed_key, *nonces)

    async def counts(self) -> tuple[int, int]:
        """(slots taken, reports) across the cluster now."""
        assigned, reports = await self.client.mget(self.assigned_key, self.reports_key)
        return int(assigned or 0), int(reports or 0)
