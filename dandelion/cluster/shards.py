"""One shard of a cluster: the round coordination of ``dandelion serve --cluster redis://…``.

K shard processes serve one population from one PostgreSQL state, each holding its own
workers' connections. What each part does (docs/design.md, "A cluster"):

- **Every shard** validates, clips and sums the updates of its own workers into its own
  partial aggregate of the open round, and checkpoints it as its row of ``shard_checkpoints``
  (a sum of at least k updates) together with the reports' events; only then are they
  acknowledged, and the cluster's report count (:class:`~.budget.RoundCounters`) grows.
  Before a report is added its assignment nonce is claimed in Redis, so an update sent again
  to another shard (its worker moved) is refused as a duplicate, not counted twice; before a
  fresh assignment a slot is taken from the cluster's over-selection budget.
- **The leader of a task** (:class:`~.leader.Leadership`: the Redis lease, with its fencing
  epoch) opens its rounds — the round number from storage, the open fenced with the epoch —
  and closes them on the cluster's report count or the deadline: it seals the round in
  PostgreSQL (no shard checkpoint is taken after the seal; one being written finishes first),
  merges every other shard's checkpoint into its own sum, adds DP noise once, runs the server
  optimizer and commits the model version and the ledger entry in one fenced transaction,
  then announces the version (:class:`~.announce.ModelAnnouncer`).
- **The other shards** follow storage: when their round closed there they drop it (reports
  still waiting for a checkpoint are refused as stale: never acknowledged), take up the new
  model version and join the next round as soon as the leader opened it. An announcement wakes
  them at once; polling storage every ``poll_s`` is the fallback.

For the operators' figures, every shard publishes its place — its open connections and the
tasks it leads — every ``_PUBLISH_S`` into one Redis hash (``dandelion:shards``; an entry not
renewed for ``_STALE_S`` is a dead shard's and is not shown), and keeps the cluster's report
count of each open round as last seen (:meth:`ClusterRounds.reports`), so that the admin API
and the dashboard of any shard show the cluster's figures.

A dead shard's checkpoint stays in PostgreSQL and is merged all the same. A dead leader's lease
expires; another shard takes it within one lease period and closes the round it was already
serving: everything acknowledged is in a checkpoint.

Rules of this file: it decides who does what; the lifecycle does it. It never touches a
socket of its own but Redis, and it holds nothing individual: counts, nonces, leases.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import secrets
import socket
import time
from collections.abc import Callable, Coroutine, Iterable
from typing import TYPE_CHECKING, Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from ..coordinator.coordination import RoundCoordination, cluster_refusal
from ..coordinator.lifecycle import RoundAbandoned
from ..privacy import BudgetCheck, evaluation_event
from ..protocol import ComeBack
from ..storage import RoundCheckpoint, ShardCheckpoint, StateStore, StorageError
from .announce import ModelAnnouncer, Version
from .budget import RoundCounters
from .connection import key
from .leader import LeaderLease, Leadership

if TYPE_CHECKING:
    from ..coordinator import Coordinator
    from ..coordinator.runtime import Round, TaskRuntime

__all__ = ["ClusterRounds", "shard_name"]

log = logging.getLogger("dandelion.cluster")

#: How long a round's counters outlive its deadline in Redis.
_COUNTERS_AFTER_S = 600.0
#: A shard without an open round looks at storage this often for the next one.
_IDLE_POLL_S = 0.05
#: Each shard says how many connections it holds this often; an entry older than
#: ``_STALE_S`` is a dead shard's.
_PUBLISH_S = 1.0
_STALE_S = 5.0


def _budget_check(runtime: TaskRuntime, kind: str) -> BudgetCheck:
    """The ledger's check of one more round of ``kind`` (the accountant runs: off the loop)."""
    ledger, plan = runtime.ledger, runtime.config.evaluation
    assert ledger is not None
    if kind == "evaluate" and plan is not None and plan.noise_multiplier is not None:
        return ledger.check_evaluation(evaluation_event(plan.noise_multiplier))
    return ledger.check_next()


def shard_name() -> str:
    """This process's name in the cluster: host, pid and a random tag (no ':')."""
    host = socket.gethostname().replace(":", "-")
    return f"{host}-{os.getpid()}-{secrets.token_hex(3)}"


class ClusterRounds(RoundCoordination):
    """The rounds of one shard, shared with the cluster's others through Redis and storage."""

    def __init__(
        self,
        client: aioredis.Redis,
        shard: str,
        *,
        lease_s: float = 5.0,
        poll_s: float = 0.5,
    ) -> None:
        self.client, self.shard = client, shard
        self.lease_ms = max(100, int(lease_s * 1000))
        self.poll_s = poll_s
        self.leaderships: dict[str, Leadership] = {}
        self.epochs: dict[str, int] = {}
        self._counters: dict[tuple[str, int], RoundCounters] = {}
        self._reports: dict[tuple[str, int], int] = {}  # the cluster's count, as last seen
        self._followers: dict[str, asyncio.Task[None]] = {}
        self._woken: set[str] = set()
        self._looked: dict[str, float] = {}
        self._background: set[asyncio.Task[Any]] = set()
        self._said: set[str] = set()
        self._counted: dict[str, float] = {}  # when a follower last read a round's count
        #: This shard's open worker connections (the application sets its endpoint's).
        self.connections: Callable[[], int] = lambda: 0
        self._published = -_PUBLISH_S
        self._places = key("shards")

    # -- the coordinator's life ------------------------------------------------------------------

    def attach(self, coordinator: Coordinator) -> None:
        self.coordinator = coordinator
        self.store = coordinator.store
        self.lifecycle = coordinator.lifecycle

    async def start(self) -> None:
        for name in list(self.coordinator.tasks):
            self._join(name)

    async def close(self) -> None:
        for task in self._followers.values():
            task.cancel()
        for leadership in self.leaderships.values():
            await leadership.stop()  # a leader gives its lease up: another takes over at once
        for task in [*self._followers.values(), *self._background]:
            with contextlib.suppress(asyncio.CancelledError, RedisError, OSError):
                await task
        with contextlib.suppress(RedisError, OSError):
            await self.client.hdel(self._places, self.shard)  # gone: not shown any more

    def _join(self, name: str) -> None:
        """Start competing for the task's lease and following its announcements."""
        if name in self.leaderships:
            return
        lease = LeaderLease(self.client, name, self.shard, ttl_ms=self.lease_ms)

        async def elected(epoch: int) -> None:
            self.epochs[name] = epoch
            log.info("task %s: this shard (%s) leads, epoch %d", name, self.shard, epoch)

        async def lost() -> None:
            self.epochs.pop(name, None)
            log.warning("task %s: this shard (%s) no longer leads", name, self.shard)

        leadership = self.leaderships[name] = Leadership(lease, elected, lost)
        leadership.start()
        self._followers[name] = asyncio.create_task(self._follow(name), name=f"follow:{name}")

    async def _follow(self, name: str) -> None:
        announcer = ModelAnnouncer(self.client, name)
        while True:
            try:
                async for version in announcer.follow():
                    log.debug("task %s: version %d announced", name, version.version)
                    self._woken.add(name)
            except (RedisError, OSError) as exc:
                log.warning("task %s: announcements lost (%s); polling storage", name, exc)
            await asyncio.sleep(self.poll_s)

    def describe(self) -> dict[str, object]:
        return {"shard": self.shard, "leads": sorted(t for t in self.epochs if self.leading(t))}

    def leading(self, task: str) -> bool:
        leadership = self.leaderships.get(task)
        return task in self.epochs and leadership is not None and leadership.lease.held()

    # -- the ticks -------------------------------------------------------------------------------

    async def tick(self, now: float) -> None:
        clock = time.monotonic()
        if clock - self._published >= _PUBLISH_S:
            self._published = clock
            self._spawn(self._publish())
        for name, runtime in list(self.coordinator.tasks.items()):
            self._join(name)
            rnd = runtime.round
            # The leader closes on the count: it reads it every tick; the others, for the
            # operators' figures, every poll_s.
            if (
                rnd is not None
                and rnd.open
                and (
                    self.leading(name)
                    or clock - self._counted.get(name, -self.poll_s) >= self.poll_s
                )
            ):
                self._counted[name] = clock
                try:
                    _, reports = await self._counters_of(name, rnd).counts()
                except (RedisError, OSError):
                    continue  # the deadline still closes it
                self._reports[(name, rnd.number)] = reports
            await self._take_up(runtime)

    # -- the operators' figures ------------------------------------------------------------------

    def reports(self, task: str, rnd: Round) -> int | None:
        return self._reports.get((task, rnd.number), 0)

    async def _publish(self) -> None:
        place = {
            "connections": self.connections(),
            "leads": sorted(t for t in self.epochs if self.leading(t)),
            "at": time.time(),
        }
        await self.client.hset(self._places, self.shard, json.dumps(place))

    async def view(self) -> dict[str, object]:
        """This shard's name and every live shard's place (name, connections, tasks led),
        by name; a shard that stopped publishing ``_STALE_S`` ago is left out."""
        try:
            raw: dict[bytes | str, bytes | str] = await self.client.hgetall(self._places)
        except (RedisError, OSError) as exc:
            log.warning("cluster: the shards' places cannot be read: %s", exc)
            raw = {}
        now = time.time()
        shards = []
        for name, value in sorted(raw.items()):
            try:
                place = json.loads(value)
                fresh = now - float(place["at"]) <= _STALE_S
                row = {
                    "shard": name.decode() if isinstance(name, bytes) else name,
                    "connections": int(place["connections"]),
                    "leads": [str(t) for t in place["leads"]],
                }
            except (ValueError, KeyError, TypeError):
                continue  # not a shard's entry: ignored
            if fresh:
                shards.append(row)
        return {"shard": self.shard, "shards": shards}

    async def resume(self, runtime: TaskRuntime) -> None:
        await self._take_up(runtime, force=True)

    async def open(self, runtime: TaskRuntime, now: float) -> None:
        """The leader opens the task's next round, unless storage holds one open already (the
        last leader's); the others wait for it."""
        name = runtime.name
        if not self.leading(name) or self._refused(runtime):
            return
        runtime = await self._take_up(runtime, force=True)
        if not runtime.wants_round or not self.leading(name):
            return
        await self.lifecycle.open(runtime, now)
        if runtime.round is not None:
            log.info("task %s: round %d opened by %s", name, runtime.round.number, self.shard)

    def _refused(self, runtime: TaskRuntime) -> bool:
        """A task a cluster does not run (``cluster_refusal``: DP-FTRL, secure aggregation) is
        never opened by a shard. Said once per task."""
        reason = cluster_refusal(runtime.config)
        if reason is None:
            return False
        if runtime.name not in self._said:
            self._said.add(runtime.name)
            log.error("task %s is not run by a cluster: %s", runtime.name, reason)
        return True

    async def _take_up(self, runtime: TaskRuntime, *, force: bool = False) -> TaskRuntime:
        """Bring the task's runtime up to what storage holds: drop a round closed there, take
        up a newer model version, adopt the open round. Returns the task's runtime now."""
        name = runtime.name
        rnd = runtime.round
        if runtime.closing or runtime.opening:
            return runtime
        clock = time.monotonic()
        every = self.poll_s if rnd is not None else _IDLE_POLL_S
        if not force and name not in self._woken and clock - self._looked.get(name, 0.0) < every:
            return runtime
        self._looked[name] = clock
        self._woken.discard(name)
        last: int = await self.store.read(lambda s: s.last_round_number(name))
        record = await self.store.read(lambda s: s.get_round(name, last)) if last else None
        dropped = False
        if rnd is not None:
            if rnd.number == last and record is not None and record.status == "open":
                return runtime  # still the open round
            self._drop(runtime, rnd)
            dropped = True
        if not runtime.idle:
            return runtime
        edited = (
            record is not None
            and record.status == "open"
            and record.config_version != runtime.config_version
        )
        # A training round completed elsewhere from the version this shard holds (or one it
        # served and just dropped): the model moved on, even when no round opened since. A
        # shard that kept its old model would train, and as a leader open rounds, from it.
        behind = (
            record is not None
            and record.status == "completed"
            and record.kind != "evaluate"
            and record.model_version >= runtime.model_version
        )
        if last != runtime.last_round or edited or dropped or behind:
            # A round the leader opened since (under a new config version, maybe): rebuilt
            # from storage, as a restart would.
            task = await self.store.read(lambda s: s.get_task(name))
            if task is None:
                return runtime
            runtime = await self.coordinator.registry.load(task)
            self.coordinator.registry.tasks[name] = runtime
        if record is None or record.status != "open" or runtime.round is not None:
            return runtime
        if record.model_version != runtime.model_version:
            return runtime  # the version it trains is not committed here yet: look again soon
        if self._refused(runtime):
            return runtime
        checkpoint = await self.store.read(lambda s: s.get_round_checkpoint(name, last))
        if checkpoint is None:
            return runtime
        adopted = self.lifecycle.new_round(
            runtime, last, record.opened_at, checkpoint.secret, record.kind
        )
        if runtime.ledger is not None:  # what the ledger will say once it is released
            check = await asyncio.to_thread(_budget_check, runtime, adopted.kind)
            adopted.epsilon_after = check.after
        if runtime.round is None and runtime.last_round == last:
            runtime.round = adopted
            log.info("task %s: shard %s serves round %d", name, self.shard, last)
        return runtime

    def _drop(self, runtime: TaskRuntime, rnd: Round) -> None:
        """The round closed elsewhere: stop taking reports; those still waiting for their
        checkpoint are refused (stale), never acknowledged."""
        rnd.open = False
        batch: Any = rnd.batch  # a training or an evaluation round's: the same to drop
        waiter = batch.waiter
        rnd.dropped_batch(batch)
        if waiter is not None and not waiter.done():
            waiter.set_exception(RoundAbandoned())
        if runtime.round is rnd:
            runtime.round = None
        self._forget(runtime.name, rnd.number)

    # -- closing ---------------------------------------------------------------------------------

    def may_close(self, runtime: TaskRuntime, rnd: Round, now: float) -> bool:
        return self.leading(runtime.name) and (self.complete(runtime, rnd) or rnd.due(now))

    def complete(self, runtime: TaskRuntime, rnd: Round) -> bool:
        if rnd.poisson or not self.leading(runtime.name):
            return False
        durable = self._reports.get((runtime.name, rnd.number), 0)
        waiting = rnd.batch.count + (rnd.sealed.count if rnd.sealed is not None else 0)
        return durable + waiting >= rnd.plan.goal

    def ends_by(self, rnd: Round) -> float | None:
        # The cluster's count closes the round, whichever shard reached it: any time.
        return None

    def come_back(self, answer: ComeBack, now: float) -> ComeBack:
        if answer.reason != "already_reported":
            return answer
        # This shard may not know yet that its round closed elsewhere: not until its deadline.
        return ComeBack(self.coordinator.pace.window(now), answer.reason)

    async def before_commit(self, runtime: TaskRuntime, rnd: Round) -> bool:
        """Seal the round (fenced), and take every other shard's checkpoint into the result."""
        name, number = runtime.name, rnd.number
        epoch = self.epochs.get(name)
        if epoch is None or not self.leading(name):
            return False

        def seal(s: StateStore) -> list[ShardCheckpoint]:
            s.fence(name, epoch)
            return s.seal_round(name, number)

        try:
            sealed = await self.store.write(seal)
        except (StorageError, KeyError) as exc:
            log.warning("task %s: round %d not closed here: %s", name, number, exc)
            self._woken.add(name)
            return False
        others = [c.aggregate for c in sealed if c.shard != self.shard]
        rnd.take_elsewhere(others)
        log.info(
            "task %s: round %d sealed: %d report(s) from %d other shard(s)",
            name,
            number,
            rnd.elsewhere.count if rnd.elsewhere is not None else 0,
            len(others),
        )
        return True

    def fence(self, store: StateStore, task: str) -> None:
        epoch = self.epochs.get(task)
        if epoch is None:
            raise StorageError(f"task {task!r}: this shard does not lead it")
        store.fence(task, epoch)

    def committed(self, runtime: TaskRuntime, rnd: Round) -> None:
        name = runtime.name
        version = Version(name, runtime.model_version, rnd.number, self.epochs.get(name, 0))
        self._spawn(ModelAnnouncer(self.client, name).announce(version))
        self._forget(name, rnd.number)

    # -- checkpoints, claims and slots -----------------------------------------------------------

    def checkpoint(
        self, store: StateStore, runtime: TaskRuntime, rnd: Round, checkpoint: RoundCheckpoint
    ) -> None:
        assert checkpoint.aggregate is not None  # a checkpoint after reports always holds one
        sealed = rnd.sealed.count if rnd.sealed is not None else 0
        store.save_shard_checkpoint(
            ShardCheckpoint(
                checkpoint.task,
                checkpoint.round,
                self.shard,
                checkpoint.aggregate,
                rnd.committed.count + sealed,
                checkpoint.rejected,
                checkpoint.updated_at,
            )
        )

    def checkpointed(self, runtime: TaskRuntime, rnd: Round, count: int) -> None:
        counters = self._counters_of(runtime.name, rnd)
        key = (runtime.name, rnd.number)

        async def add() -> None:
            self._reports[key] = await counters.add_reports(count)

        self._spawn(add())

    async def claim(self, runtime: TaskRuntime, rnd: Round, nonce: str) -> bool:
        try:
            return await self._counters_of(runtime.name, rnd).claim(nonce)
        except (RedisError, OSError) as exc:
            raise StorageError(f"the cluster's Redis: {exc}") from None

    def unclaim(self, runtime: TaskRuntime, rnd: Round, nonces: Iterable[str]) -> None:
        given = list(nonces)
        if given:
            self._spawn(self._counters_of(runtime.name, rnd).unclaim(given))

    async def take_slot(self, runtime: TaskRuntime, rnd: Round) -> bool:
        if rnd.poisson:
            return True
        try:
            return await self._counters_of(runtime.name, rnd).take_slot(rnd.plan.max_assigned)
        except (RedisError, OSError):
            return False  # come back later: the budget cannot be kept without Redis

    def released(self, task: str, number: int) -> None:
        counters = self._counters.get((task, number))
        if counters is not None:
            self._spawn(counters.give_back())

    def _counters_of(self, task: str, rnd: Round) -> RoundCounters:
        key = (task, rnd.number)
        counters = self._counters.get(key)
        if counters is None:
            expire_ms = int((rnd.plan.deadline_s + _COUNTERS_AFTER_S) * 1000)
            counters = self._counters[key] = RoundCounters(
                self.client, task, rnd.number, expire_ms=expire_ms
            )
        return counters

    def _forget(self, task: str, number: int) -> None:
        self._counters.pop((task, number), None)
        self._reports.pop((task, number), None)

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._background.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("cluster: %r", task.exception())
