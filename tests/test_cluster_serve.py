"""``dandelion serve --cluster redis://… --db postgresql://…`` end to end: three real shard
processes on loopback ports share one PostgreSQL (started by the tests) and one redis-server,
with CPython workers (the browser's worker code, over real WebSockets) spread over them.

What is checked is what an operator would check: the committed rounds in PostgreSQL — their
report counts against the acknowledgements the workers received, one "reported" event per
worker and round, one ledger entry per completed private round — after a shard, and then the
leader, is killed with SIGKILL in the middle of a round.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest
import redis

from browser_worker.host.cpython import CPythonHost
from browser_worker.worker import Worker, WorkerConfig, WorkerStatus
from dandelion.storage.location import open_state
from dandelion.storage.postgres import PostgresStore
from dandelion.taskspec.models import Example

from .conftest import free_port, scaled, toy_task_file
from .pg_server import PostgresServer
from .redis_server import redis_server

pytestmark = pytest.mark.slow

LEASE_S = 1.0
#: Six reports close a round; a shard checkpoints (and so acknowledges) every two (k = 2).
PLAN = {"goal": 6, "min_reports": 2, "over_selection": 1.5, "deadline_s": 600.0}
#: A private round: every worker's coin says yes (q = goal / population = 1), and the round
#: closes at its deadline, which leaves room for a leader's failover.
PRIVATE_PLAN = {**PLAN, "deadline_s": 8.0}
PRIVACY = {
    "population": 6,
    "noise_multiplier": 2.0,
    "delta": 1e-5,
    "epsilon": 100.0,
    "accountant": "pld",
}
DATA = [Example((i % 10,), (1.0,), i % 2) for i in range(20)]


class Shard:
    """One ``dandelion serve --cluster`` process."""

    def __init__(self, tmp: Path, n: int, db: str, cluster: str, task: Path) -> None:
        self.port = free_port()
        self.log = tmp / f"shard{n}.log"
        self.cmd = [
            sys.executable,
            "-m",
            "dandelion.cli",
            "serve",
            "--db",
            db,
            "--cluster",
            cluster,
            "--leader-lease-s",
            str(LEASE_S),
            "--port",
            str(self.port),
            "--task",
            str(task),
            "--monitor-k",
            "2",
            "--tick-s",
            "0.02",
            "--pace-min-s",
            "0.01",
            "--pace-max-s",
            "0.1",
        ]
        self.proc: subprocess.Popen[bytes] | None = None

    async def start(self) -> None:
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(self.cmd, stdout=log, stderr=log)
        deadline = time.monotonic() + scaled(30)
        async with aiohttp.ClientSession() as http:
            while time.monotonic() < deadline:
                assert self.proc.poll() is None, self.log.read_text()
                try:
                    async with http.get(f"http://127.0.0.1:{self.port}/healthz") as r:
                        if r.status == 200 and (await r.json())["tasks"] == 1:
                            return
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.05)
        raise AssertionError("shard did not start:\n" + self.log.read_text())

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    def kill(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=scaled(20))
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class Cluster:
    def __init__(self, tmp: Path, db: str, cluster: str, task: str, k: int = 3) -> None:
        self.db, self.redis_url = db, cluster
        path = tmp / "task.toml"
        path.write_text(task)
        self.shards = [Shard(tmp, n, db, cluster, path) for n in range(k)]

    async def start(self) -> None:
        await self.shards[0].start()  # it creates the task; the others find it
        await asyncio.gather(*(s.start() for s in self.shards[1:]))

    def leader(self) -> Shard | None:
        raw = redis.Redis.from_url(self.redis_url).get("dandelion:leader:t1")
        if raw is None:
            return None
        pid = int(raw.decode().partition(":")[2].rsplit("-", 2)[1])
        live = [s for s in self.shards if s.proc is not None and s.proc.poll() is None]
        return next((s for s in live if s.proc is not None and s.proc.pid == pid), None)

    async def wait_leader(self, other_than: Shard | None = None) -> Shard:
        deadline = time.monotonic() + scaled(20)
        while time.monotonic() < deadline:
            leader = self.leader()
            if leader is not None and leader is not other_than:
                return leader
            await asyncio.sleep(0.02)
        raise AssertionError("no leader")

    def stop(self) -> None:
        for shard in self.shards:
            shard.stop()


@pytest.fixture
def cluster_urls(postgres: PostgresServer, tmp_path: Path) -> Iterator[tuple[str, str]]:
    with redis_server(tmp_path) as url:
        yield postgres.database(), url


async def _reports(url: str, names: list[str]) -> list[WorkerStatus]:
    """Each named worker takes part until one update of its own is acknowledged."""
    workers = [
        Worker(CPythonHost(), WorkerConfig(url, worker_id=n), lambda *_: DATA) for n in names
    ]
    return await asyncio.wait_for(
        asyncio.gather(*(w.run(max_updates=1) for w in workers)), scaled(90)
    )


async def _round_committed(db: str, number: int) -> None:
    deadline = time.monotonic() + scaled(30)
    while time.monotonic() < deadline:
        store = open_state(db, readonly=True)
        try:
            record = store.get_round("t1", number)
        finally:
            store.close()
        if record is not None and record.status == "completed":
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"round {number} was not committed")


def _check_rounds(db: str, acked: dict[int, set[str]]) -> dict[int, int]:
    """Every acknowledged update is in its committed round, none twice; returns each round's
    report count."""
    store = open_state(db, readonly=True)
    try:
        counts = {}
        for number, workers in acked.items():
            record = store.get_round("t1", number)
            assert record is not None and record.status == "completed"
            events = [
                e.worker_id
                for e in store.iter_events("t1")
                if e.round == number and e.event == "reported"
            ]
            assert Counter(events).most_common(1)[0][1] == 1  # nobody counted twice
            assert workers <= set(events)  # nothing acknowledged lost
            assert record.reported == len(events)  # the model's count is the events'
            counts[number] = record.reported
        versions = store.list_model_versions("t1")
        assert [v.round for v in versions[1:]] == sorted(acked)  # one version per round
        return counts
    finally:
        store.close()


async def test_three_shards_serve_rounds_with_reports_from_every_shard(
    cluster_urls: tuple[str, str], tmp_path: Path
) -> None:
    db, url = cluster_urls
    cluster = Cluster(tmp_path, db, url, toy_task_file(PLAN))
    try:
        await cluster.start()
        await cluster.wait_leader()
        acked: dict[int, set[str]] = {}
        for number in (1, 2):  # the second round: every shard took up version 1 and round 2
            names = [f"worker-r{number}-s{s}-{i}" for s in range(3) for i in range(2)]
            done = await asyncio.gather(
                *(_reports(sh.url, names[2 * s : 2 * s + 2]) for s, sh in enumerate(cluster.shards))
            )
            assert [st.updates_accepted for group in done for st in group] == [1] * 6
            await _round_committed(db, number)
            acked[number] = set(names)
        assert _check_rounds(db, acked) == {1: 6, 2: 6}
        # Only the leader closed rounds: the others only served them.
        leader = cluster.leader()
        assert leader is not None
        others = [s for s in cluster.shards if s is not leader]
        assert all("sealed" not in s.log.read_text() for s in others)
        assert "sealed: 4 report(s) from 2 other shard(s)" in leader.log.read_text()
        async with aiohttp.ClientSession() as http:
            for shard in cluster.shards:
                async with http.get(f"http://127.0.0.1:{shard.port}/healthz") as r:
                    seen = (await r.json())["cluster"]
                assert seen["leads"] == (["t1"] if shard is leader else [])
                assert seen["shard"].split("-")[-2] == str(shard.proc.pid if shard.proc else "")
    finally:
        cluster.stop()


async def test_a_shard_then_the_leader_killed_mid_round_lose_nothing(
    cluster_urls: tuple[str, str], tmp_path: Path
) -> None:
    db, url = cluster_urls
    cluster = Cluster(tmp_path, db, url, toy_task_file(PRIVATE_PLAN, privacy=PRIVACY))
    try:
        await cluster.start()
        leader = await cluster.wait_leader()
        follower, third = [s for s in cluster.shards if s is not leader]
        # Round 1: a follower's two workers are acknowledged, then it is killed.
        first = await _reports(follower.url, ["worker-a1", "worker-a2"])
        assert [s.updates_accepted for s in first] == [1, 1]
        follower.kill()
        rest = await asyncio.gather(
            _reports(leader.url, ["worker-a3", "worker-a4"]),
            _reports(third.url, ["worker-a5", "worker-a6"]),
        )
        assert [s.updates_accepted for group in rest for s in group] == [1] * 4
        await _round_committed(db, 1)
        # Round 2: the leader's two workers are acknowledged, then the leader is killed; the
        # third shard takes the lease over and closes the round with the dead leader's part.
        early = await _reports(leader.url, ["worker-b1", "worker-b2"])
        assert [s.updates_accepted for s in early] == [1, 1]
        leader.kill()
        killed = time.monotonic()
        successor = await cluster.wait_leader(other_than=leader)
        failover = time.monotonic() - killed
        assert successor is third
        assert failover < LEASE_S * 4 / 3 + scaled(1.0), failover
        late = await _reports(third.url, ["worker-b3", "worker-b4", "worker-b5", "worker-b6"])
        assert [s.updates_accepted for s in late] == [1] * 4
        await _round_committed(db, 2)
        acked = {1: {f"worker-a{i}" for i in range(1, 7)}, 2: {f"worker-b{i}" for i in range(1, 7)}}
        assert _check_rounds(db, acked) == {1: 6, 2: 6}
        store = open_state(db, readonly=True)
        try:
            ledger = store.list_ledger("t1")
            assert [e.round for e in ledger] == [1, 2]  # ε charged once per committed round
            assert ledger[0].epsilon < ledger[1].epsilon
        finally:
            store.close()
    finally:
        cluster.stop()


async def test_a_second_plain_writer_is_refused_beside_the_shards(
    cluster_urls: tuple[str, str], tmp_path: Path
) -> None:
    db, url = cluster_urls
    cluster = Cluster(tmp_path, db, url, toy_task_file(PLAN), k=2)
    try:
        await cluster.start()  # two shards hold the shared lease together
        plain = await asyncio.create_subprocess_exec(
            *(sys.executable, "-m", "dandelion.cli", "serve", "--db", db, "--port", "0"),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        _, err = await asyncio.wait_for(plain.communicate(), scaled(60))
        assert plain.returncode != 0
        assert "is held by" in err.decode()
    finally:
        cluster.stop()


@pytest.mark.parametrize(
    ("cluster", "db", "said"),
    [
        ("http://127.0.0.1:6379", "postgres", "a redis:// (or rediss://, unix://) URL"),
        ("redis://127.0.0.1:{free}/0", "postgres", "cannot reach Redis at redis://127.0.0.1:"),
        (
            "redis://127.0.0.1:6379/0",
            "state.db",
            "the shards of a cluster share a postgresql:// db",
        ),
    ],
)
async def test_a_shard_is_refused_in_one_line_for_a_wrong_cluster_or_state(
    postgres: PostgresServer, tmp_path: Path, cluster: str, db: str, said: str
) -> None:
    state = postgres.database() if db == "postgres" else str(tmp_path / db)
    proc = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "dandelion.cli", "serve", "--create", "--port", "0"),
        *("--db", state, "--cluster", cluster.format(free=free_port())),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await asyncio.wait_for(proc.communicate(), scaled(60))
    assert proc.returncode == 2
    assert said in err.decode()
    assert len(err.decode().strip().splitlines()) <= 2  # a line (and the usage, for a setting)


async def test_a_leader_that_stops_cleanly_hands_over_at_once(
    cluster_urls: tuple[str, str], tmp_path: Path
) -> None:
    """SIGTERM: the leader gives its lease up as it stops, so the next one need not wait for
    the lease to expire; the round it opened goes on and completes on the other shard."""
    db, url = cluster_urls
    cluster = Cluster(tmp_path, db, url, toy_task_file(PLAN), k=2)
    try:
        await cluster.start()
        leader = await cluster.wait_leader()
        other = next(s for s in cluster.shards if s is not leader)
        early = await _reports(leader.url, ["worker-c1", "worker-c2"])
        assert [s.updates_accepted for s in early] == [1, 1]
        assert leader.proc is not None
        pid = leader.proc.pid
        leader.proc.terminate()
        leader.proc.wait(timeout=scaled(20))
        # Gone with the process, not left to expire: the key is free, or the other's already.
        raw = redis.Redis.from_url(url).get("dandelion:leader:t1")
        assert raw is None or f"-{pid}-" not in raw.decode()
        successor = await cluster.wait_leader(other_than=leader)
        assert successor is other
        assert "no longer leads" in leader.log.read_text()
        late = await _reports(other.url, [f"worker-c{i}" for i in range(3, 7)])
        assert [s.updates_accepted for s in late] == [1] * 4
        await _round_committed(db, 1)
        assert _check_rounds(db, {1: {f"worker-c{i}" for i in range(1, 7)}}) == {1: 6}
    finally:
        cluster.stop()


async def test_a_dp_ftrl_task_is_refused_by_a_shard(
    cluster_urls: tuple[str, str], tmp_path: Path
) -> None:
    """DP-FTRL's minimum separation is kept per process: across shards its guarantee would
    not hold, so a shard refuses the task file in one line and starts nothing."""
    db, url = cluster_urls
    task = tmp_path / "ftrl.toml"
    ftrl = {"population": 10_000, "noise_multiplier": 2.0, "epsilon": 100.0}
    task.write_text(
        toy_task_file(PLAN, privacy={**ftrl, "mechanism": "dp_ftrl", "min_separation": 5})
    )
    proc = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "dandelion.cli", "serve", "--port", "0", "--task", str(task)),
        *("--db", db, "--cluster", url),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await asyncio.wait_for(proc.communicate(), scaled(60))
    assert proc.returncode == 2
    assert "task t1: DP-FTRL's minimum separation is kept per process" in err.decode()
    store = PostgresStore(db, readonly=True)
    try:
        assert store.applied_migrations() == ()  # nothing was made, not even the schema
    finally:
        store.close()


async def test_a_secure_task_is_refused_by_a_shard(
    cluster_urls: tuple[str, str], tmp_path: Path
) -> None:
    """A secure round's participants talk to one SecAgg+ server, and a cluster spreads them
    over shards: a shard refuses the task file in one line and starts nothing."""
    db, url = cluster_urls
    task = tmp_path / "secure.toml"
    task.write_text(toy_task_file(PLAN) + "[secure_aggregation]\ndegree = 4\n")
    proc = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "dandelion.cli", "serve", "--port", "0", "--task", str(task)),
        *("--db", db, "--cluster", url),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await asyncio.wait_for(proc.communicate(), scaled(60))
    assert proc.returncode == 2, err.decode()
    assert "task t1: a secure round's participants talk to one SecAgg+ server" in err.decode()
    store = PostgresStore(db, readonly=True)
    try:
        assert store.applied_migrations() == ()
    finally:
        store.close()
