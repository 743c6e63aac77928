"""The cluster's Redis parts against a real redis-server: the leader lease with its fencing
epoch (taken over after a real SIGKILL, and after a real SIGSTOP of the leader, with no overlap
of the two leaders' beliefs), the shared assignment budget, and model announcements."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from dandelion.cluster import (
    ClusterError,
    LeaderLease,
    Leadership,
    ModelAnnouncer,
    RoundCounters,
    Version,
    connect,
)
from tests.conftest import free_port, scaled
from tests.redis_server import redis_server

ROOT = Path(__file__).resolve().parent.parent

# A process that tries to lead task "t" and says what it believes, with the system-wide
# monotonic clock (comparable across processes on Linux).
LEADER = """
import asyncio, sys, time
from dandelion.cluster import Leadership, LeaderLease, connect

async def main(url, ttl):
    client = await connect(url)
    lease = LeaderLease(client, "t", "child", ttl_ms=ttl)

    async def elected(epoch):
        print("elected", epoch, flush=True)

    async def lost():
        print("lost", time.monotonic(), flush=True)

    leadership = Leadership(lease, elected, lost)
    leadership.start()
    while True:
        await asyncio.sleep(0.02)
        if lease.held():
            print("until", lease._valid_until, flush=True)

asyncio.run(main(sys.argv[1], int(sys.argv[2])))
"""


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with redis_server(tmp_path_factory.mktemp("redis")) as url:
        yield url


@pytest.fixture
async def client(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    c = await connect(redis_url)
    await c.flushdb()
    yield c
    await c.aclose()


def _child(url: str, ttl_ms: int) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, "-c", LEADER, url, str(ttl_ms)],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )


def _end(proc: subprocess.Popen[str]) -> None:
    proc.kill()
    proc.wait()
    if proc.stdout is not None:
        proc.stdout.close()


async def _line(proc: subprocess.Popen[str], prefix: str, timeout: float) -> str:
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), timeout)
        if line.startswith(prefix):
            return line.strip()
        if not line:
            break
    raise AssertionError(f"no {prefix!r} line from the leader process")


async def test_a_wrong_url_and_an_unreachable_server_are_one_line_errors() -> None:
    with pytest.raises(ClusterError, match="a redis:// "):
        await connect("postgresql://127.0.0.1/x")
    with pytest.raises(ClusterError, match=r"cannot reach Redis at redis://127\.0\.0\.1:") as info:
        await connect(f"redis://127.0.0.1:{free_port()}/0", timeout_s=1)
    assert "\n" not in str(info.value)


async def test_one_holder_at_a_time_and_each_taking_gets_a_larger_epoch(
    client: aioredis.Redis,
) -> None:
    a = LeaderLease(client, "t", "a", ttl_ms=400)
    b = LeaderLease(client, "t", "b", ttl_ms=400)
    assert await a.try_acquire() == 1
    assert await b.try_acquire() is None
    assert await a.try_acquire() == 1  # taking it again is a renewal, not a new epoch
    holder = await b.current()
    assert holder is not None and (holder.holder, holder.epoch) == ("a", 1)
    assert 0 < holder.ttl_ms <= 400
    # a's belief ends before Redis lets the key go
    assert a.held() and a._valid_until - time.monotonic() < holder.ttl_ms / 1000
    for _ in range(4):  # renewed, it outlives its period
        await asyncio.sleep(0.2)
        assert await a.renew()
    assert await b.try_acquire() is None
    await asyncio.sleep(0.5)  # a stops renewing: the key expires
    assert not a.held()
    assert await b.try_acquire() == 2
    assert not await a.renew()  # a learns it lost, and cannot take b's lease back
    assert a.epoch is None and not a.held()
    await b.release()
    assert await b.current() is None
    assert await a.try_acquire() == 3  # released: taken at once, no wait for expiry


async def test_a_release_by_a_former_holder_does_not_free_the_new_leaders_lease(
    client: aioredis.Redis,
) -> None:
    a = LeaderLease(client, "t", "a", ttl_ms=200)
    b = LeaderLease(client, "t", "b", ttl_ms=5000)
    await a.try_acquire()
    await asyncio.sleep(0.3)
    assert await b.try_acquire() == 2
    await a.release()  # a still thinks it has epoch 1
    holder = await b.current()
    assert holder is not None and holder.holder == "b"


async def test_a_sigkilled_leader_is_replaced_within_one_lease_period(
    redis_url: str, client: aioredis.Redis
) -> None:
    ttl_ms = 1000
    proc = _child(redis_url, ttl_ms)
    try:
        assert await _line(proc, "elected", scaled(20)) == "elected 1"
        lease = LeaderLease(client, "t", "test", ttl_ms=ttl_ms)
        events: list[tuple[str, float]] = []

        async def elected(epoch: int) -> None:
            events.append((f"elected {epoch}", time.monotonic()))

        async def lost() -> None:
            events.append(("lost", time.monotonic()))

        leadership = Leadership(lease, elected, lost)
        leadership.start()
        await asyncio.sleep(0.5)
        assert events == []  # the child leads
        killed = time.monotonic()
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        while not events and time.monotonic() - killed < scaled(10):
            await asyncio.sleep(0.01)
        await leadership.stop()
        assert events[0][0] == "elected 2"
        # within one lease period of the kill, plus one retry period (ttl / 3)
        assert events[0][1] - killed <= ttl_ms / 1000 * (1 + 1 / 3) + scaled(0.3)
        assert events[-1][0] == "lost"  # stop() released it
        assert await lease.current() is None
    finally:
        _end(proc)


async def test_a_stalled_leader_stops_believing_before_another_takes_over(
    redis_url: str, client: aioredis.Redis
) -> None:
    ttl_ms = 600
    proc = _child(redis_url, ttl_ms)
    try:
        await _line(proc, "elected", scaled(20))
        last_belief = float((await _line(proc, "until", scaled(5))).split()[1])
        proc.send_signal(signal.SIGSTOP)  # a real stall: the process does not run at all
        assert proc.stdout is not None
        stopped = time.monotonic()
        lease = LeaderLease(client, "t", "test", ttl_ms=ttl_ms)
        while await lease.try_acquire() is None:
            assert time.monotonic() - stopped < scaled(10)
            await asyncio.sleep(0.01)
        took_over = time.monotonic()
        proc.send_signal(signal.SIGCONT)
        # every belief the child printed before the stall ended before the takeover
        lines = []
        while True:
            line = await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), scaled(10))
            lines.append(line.split())
            if line.startswith("lost"):
                break
        beliefs = [float(w[1]) for w in lines if w[0] == "until"]
        assert max([last_belief, *beliefs]) < took_over
        assert lease.epoch == 2 and lease.held()
        holder = await lease.current()
        assert holder is not None and holder.holder == "test"  # the child did not take it back
    finally:
        proc.send_signal(signal.SIGCONT)
        _end(proc)


async def test_the_assignment_budget_holds_across_shards(redis_url: str) -> None:
    shards = [await connect(redis_url) for _ in range(3)]
    try:
        await shards[0].flushdb()
        counters = [RoundCounters(c, "t", 7, expire_ms=60_000) for c in shards]
        results = await asyncio.gather(*(counters[i % 3].take_slot(13) for i in range(60)))
        assert sum(results) == 13
        assert await counters[1].take_slot(13) is False
        await counters[2].give_back()
        assert await counters[0].take_slot(13) is True
        assert (await counters[0].counts())[0] == 13
        for _ in range(20):
            await counters[1].give_back()
        assert (await counters[1].counts())[0] == 0  # never below zero
        other = RoundCounters(shards[0], "t", 8, expire_ms=60_000)
        assert await other.take_slot(1) is True  # another round has its own budget
        totals = await asyncio.gather(*(c.add_reports(5) for c in counters))
        assert sorted(totals) == [5, 10, 15]
        assert await counters[0].counts() == (0, 15)
        assert 0 < await shards[0].pttl(counters[0].reports_key) <= 60_000
    finally:
        for c in shards:
            await c.aclose()


async def test_model_versions_are_announced_to_followers_and_never_go_back(
    redis_url: str, client: aioredis.Redis
) -> None:
    leader = ModelAnnouncer(client, "t")
    assert await leader.latest() is None
    assert await leader.announce(Version("t", 1, 1, 1))
    follower_client = await connect(redis_url)
    try:
        follower = ModelAnnouncer(follower_client, "t")
        seen: list[int] = []

        async def follow() -> None:
            async for version in follower.follow():
                seen.append(version.version)
                if version.version == 3:
                    return

        task = asyncio.create_task(follow())
        while not seen:
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.1)  # subscribed
        assert await leader.announce(Version("t", 2, 2, 1))
        assert not await leader.announce(Version("t", 1, 1, 1))  # late and old: ignored
        assert await leader.announce(Version("t", 3, 3, 2))
        await asyncio.wait_for(task, scaled(5))
        assert seen == [1, 2, 3]
        latest = await follower.latest()
        assert latest == Version("t", 3, 3, 2)
    finally:
        await follower_client.aclose()


def test_lease_arguments_are_checked() -> None:
    with pytest.raises(ValueError, match="ttl_ms"):
        LeaderLease(None, "t", "a", ttl_ms=10)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="holder"):
        LeaderLease(None, "t", "a:b")  # type: ignore[arg-type]
