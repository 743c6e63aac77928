"""One leader per task: a lease in Redis with expiry, renewed, and a fencing epoch.

The lease is the key ``dandelion:leader:<task>`` holding ``"<epoch>:<holder>"`` with a time to
live of ``ttl_ms``. It is taken only when absent (``SET … NX PX`` semantics, in a script that
also draws the next epoch from ``dandelion:epoch:<task>`` with ``INCR``), renewed by its holder
(``PEXPIRE`` if the value is still its own) and released by its holder only. When the leader
dies, the key expires and another process takes it within one lease period.

A leader that stalls (a long pause, a lost network) may still believe it leads after Redis let
the key expire. Two rules keep that harmless:

- **A local deadline.** A holder counts itself leader only until ``ttl_ms`` minus a margin after
  the moment it *sent* the command that took or renewed the lease, measured on its monotonic
  clock: Redis starts the key's clock later, so the holder's belief always ends first.
- **The epoch fences.** Each taking of the lease gets a larger epoch; what a leader writes
  elsewhere (a model version committed to PostgreSQL) carries it, and a write with an epoch
  below the last one seen is refused there.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from .connection import key

__all__ = ["LeaderLease", "Leadership", "LeaseHolder"]

_ACQUIRE = """
local cur = redis.call('GET', KEYS[1])
if cur then
  local sep = string.find(cur, ':', 1, true)
  if sep and string.sub(cur, sep + 1) == ARGV[1] then
    redis.call('PEXPIRE', KEYS[1], ARGV[2])
    return tonumber(string.sub(cur, 1, sep - 1))
  end
  return false
end
local epoch = redis.call('INCR', KEYS[2])
redis.call('SET', KEYS[1], epoch .. ':' .. ARGV[1], 'PX', ARGV[2])
return epoch
"""
_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


@dataclass(frozen=True, slots=True)
class LeaseHolder:
    """Who holds a task's lease, as Redis sees it now."""

    holder: str
    epoch: int
    ttl_ms: int


class LeaderLease:
    """The lease of one task, as one process (``holder``, unique per process) uses it."""

    def __init__(
        self, client: aioredis.Redis, task: str, holder: str, *, ttl_ms: int = 5000
    ) -> None:
        if ttl_ms < 100:
            raise ValueError("ttl_ms: at least 100")
        if not holder or ":" in holder:
            raise ValueError("holder: a non-empty name without ':'")
        self.client, self.task, self.holder, self.ttl_ms = client, task, holder, ttl_ms
        self.key, self.epoch_key = key("leader", task), key("epoch", task)
        #: Local belief ends this long before the lease could have expired in Redis.
        self.margin_ms = max(50, ttl_ms // 10)
        self.epoch: int | None = None
        self._valid_until = 0.0
        self._acquire = client.register_script(_ACQUIRE)
        self._renew = client.register_script(_RENEW)
        self._release = client.register_script(_RELEASE)

    @property
    def value(self) -> str:
        return f"{self.epoch}:{self.holder}"

    def held(self) -> bool:
        """Whether this process may act as the leader now (its local deadline not passed)."""
        return self.epoch is not None and time.monotonic() < self._valid_until

    def _extend(self, sent: float) -> None:
        self._valid_until = sent + (self.ttl_ms - self.margin_ms) / 1000

    async def try_acquire(self) -> int | None:
        """Take the lease if it is free (or already ours): the epoch, or None if another holds
        it. Raises RedisError when Redis cannot be reached."""
        sent = time.monotonic()
        epoch = await self._acquire(
            keys=[self.key, self.epoch_key], args=[self.holder, self.ttl_ms]
        )
        if epoch is None:
            self.epoch = None
            return None
        self.epoch = int(epoch)
        self._extend(sent)
        return self.epoch

    async def renew(self) -> bool:
        """Extend our lease; False (and no longer held) if it expired or another took it."""
        if self.epoch is None:
            return False
        sent = time.monotonic()
        if await self._renew(keys=[self.key], args=[self.value, self.ttl_ms]):
            self._extend(sent)
            return True
        self.epoch = None
        return False

    async def release(self) -> None:
        """Give the lease up at once (a clean shutdown), so another need not wait for expiry."""
        if self.epoch is not None:
            await self._release(keys=[self.key], args=[self.value])
        self.epoch = None

    async def current(self) -> LeaseHolder | None:
        """The holder Redis knows now, or None while nobody holds the lease."""
        async with self.client.pipeline(transaction=True) as pipe:
            pipe.get(self.key)
            pipe.pttl(self.key)
            value, ttl = await pipe.execute()
        if value is None:
            return None
        epoch, _, holder = value.decode().partition(":")
        return LeaseHolder(holder, int(epoch), int(ttl))


class Leadership:
    """Keeps trying to lead one task: takes the lease when free, renews it every third of its
    period, and calls ``on_elected(epoch)`` / ``on_lost()`` as leadership comes and goes."""

    def __init__(
        self,
        lease: LeaderLease,
        on_elected: Callable[[int], Awaitable[None]],
        on_lost: Callable[[], Awaitable[None]],
    ) -> None:
        self.lease, self.on_elected, self.on_lost = lease, on_elected, on_lost
        self.leading = False
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"leadership:{self.lease.task}")

    async def stop(self) -> None:
        """Stop trying; a leader releases the lease so that another takes over at once."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self.leading:
            self.leading = False
            with contextlib.suppress(RedisError, OSError):
                await self.lease.release()
            await self.on_lost()

    async def _step(self) -> None:
        try:
            if self.leading:
                ok = await self.lease.renew() and self.lease.held()
            else:
                ok = await self.lease.try_acquire() is not None
        except (RedisError, OSError):
            ok = self.leading and self.lease.held()  # Redis away: lead until the deadline
        if ok and not self.leading:
            self.leading = True
            assert self.lease.epoch is not None
            await self.on_elected(self.lease.epoch)
        elif not ok and self.leading:
            self.leading = False
            await self.on_lost()

    async def _run(self) -> None:
        period = self.lease.ttl_ms / 3000
        while True:
            await self._step()
            if self.leading:
                # wake before the local deadline, whatever the period
                left = self.lease._valid_until - time.monotonic()
                await asyncio.sleep(max(0.0, min(period, left)))
            else:
                await asyncio.sleep(period)
