"""The shipped cluster site (deploy/nginx/dandelion-cluster.conf), run for real with Debian's
nginx in front of three real ``serve --cluster`` shards: CPython workers connect through it
over wss://, rounds complete, a shard is killed with SIGKILL in the middle of the run and its
workers carry on through the others. Checked in PostgreSQL against what the workers were told:
every acknowledged update is in a completed round (none in an abandoned one), nobody is
counted twice in a round, and each round's count is its events'."""

from __future__ import annotations

import asyncio
import re
import ssl
import time
from collections import Counter
from pathlib import Path

from browser_worker.host.cpython import CPythonHost
from browser_worker.worker import Worker, WorkerConfig
from dandelion.storage.location import open_state
from dandelion.taskspec.models import Example

from .conftest import free_port, scaled, toy_task_file
from .test_cluster_serve import Cluster
from .test_cluster_serve import cluster_urls as cluster_urls  # the fixture
from .test_deploy_nginx import ROOT, Nginx, _certificate, render

#: Rounds close on their goal, or at their deadline when a shard's last reports (fewer than k)
#: wait for more.
PLAN = {"goal": 6, "min_reports": 2, "over_selection": 2.0, "deadline_s": 4.0}
DATA = [Example((i % 10,), (1.0,), i % 2) for i in range(20)]


def _site(folder: Path, ports: list[int], https: int, http: int) -> str:
    conf = (ROOT / "deploy" / "nginx" / "dandelion-cluster.conf").read_text()
    servers = re.findall(r"^\s*server 127\.0\.0\.1:875\d .*;$", conf, flags=re.MULTILINE)
    assert len(servers) == 3, "the shipped cluster site changed shape"
    for line, port in zip(servers, ports, strict=True):
        conf = conf.replace(line, line.replace(line.split()[1], f"127.0.0.1:{port}"))
    cert, key = _certificate(folder)
    # render() fits the single-coordinator site; its upstream line is gone here, so name one.
    conf = conf.replace("keepalive 32;", "server 127.0.0.1:8750 down;\n    keepalive 32;", 1)
    out = render(conf, upstream=ports[0], https=https, http=http, cert=cert, key=key)
    return out.replace(f"server 127.0.0.1:{ports[0]} down;\n", "")


def _proxy(tmp_path: Path, cluster: Cluster) -> tuple[Nginx, Path, int]:
    """nginx in front of the cluster's shards (not started): the proxy, its folder (with the
    certificate) and its HTTPS port."""
    folder = tmp_path / "nginx"
    folder.mkdir()
    https, http = free_port(), free_port()
    return (
        Nginx(folder, _site(folder, [s.port for s in cluster.shards], https, http)),
        folder,
        https,
    )


def _workers(folder: Path, https: int, prefix: str) -> list[Worker]:
    """Twelve workers that reach the shards through the proxy over wss://."""
    context = ssl.create_default_context(cafile=str(folder / "fullchain.pem"))
    return [
        Worker(
            CPythonHost(ssl=context),
            WorkerConfig(f"wss://127.0.0.1:{https}/ws", worker_id=f"{prefix}-worker-{i:02d}"),
            lambda *_: DATA,
        )
        for i in range(12)
    ]


async def _closed(db: str, cluster: Cluster) -> None:
    """Wait until no open round holds a report (the last acknowledged ones close with it); on
    failure, say which rounds stayed open and what the shards logged last."""
    deadline = time.monotonic() + scaled(30)
    while time.monotonic() < deadline:
        store = open_state(db, readonly=True)
        try:
            open_rounds = {r.round for r in store.list_rounds("t1", 1000) if r.status == "open"}
            busy = any(
                e.round in open_rounds for e in store.iter_events("t1") if e.event == "reported"
            )
        finally:
            store.close()
        if not busy:
            return
        await asyncio.sleep(0.1)
    tails = "\n".join(
        f"--- {shard.log.name}\n" + "\n".join(shard.log.read_text().splitlines()[-40:])
        for shard in cluster.shards
    )
    raise AssertionError(f"a round with reports did not close: open {sorted(open_rounds)}\n{tails}")


def _counted(db: str) -> Counter[str]:
    """How many reports of each worker completed rounds hold; checks that nobody counts twice
    in a round, that each round's count is its events', that each made a model version and
    that no other round holds a report."""
    store = open_state(db, readonly=True)
    try:
        rounds = {r.round: r for r in store.list_rounds("t1", 1000)}
        events = [e for e in store.iter_events("t1") if e.event == "reported"]
        counted: Counter[str] = Counter()
        completed = [r for r in rounds.values() if r.status == "completed"]
        for record in completed:
            mine = [e.worker_id for e in events if e.round == record.round]
            assert max(Counter(mine).values()) == 1  # nobody twice in a round
            assert record.reported == len(mine)
            counted.update(mine)
        assert all(rounds[e.round or 0].status == "completed" for e in events)
        assert len(store.list_model_versions("t1")) == len(completed) + 1
        return counted
    finally:
        store.close()


async def _acks(workers: list[Worker], at_least: int) -> None:
    deadline = time.monotonic() + scaled(90)
    while sum(w.status.updates_accepted for w in workers) < at_least:
        assert time.monotonic() < deadline, [w.status for w in workers]
        await asyncio.sleep(0.05)


async def test_workers_through_nginx_across_a_shard_kill(
    cluster_urls: tuple[str, str], tmp_path: Path
) -> None:
    db, url = cluster_urls
    cluster = Cluster(tmp_path, db, url, toy_task_file(PLAN))
    proxy, folder, https = _proxy(tmp_path, cluster)
    try:
        await cluster.start()
        leader = await cluster.wait_leader()
        proxy.start(https)
        workers = _workers(folder, https, "nginx")
        run = asyncio.gather(*(w.run() for w in workers))
        try:
            await _acks(workers, 6)  # in the middle of the run: a shard dies
            next(s for s in cluster.shards if s is not leader).kill()
            await _acks(workers, 30)
        finally:
            for w in workers:
                w.stop()
            await asyncio.wait_for(run, scaled(30))
        await _closed(db, cluster)
        counted = _counted(db)
        for worker in workers:
            # Nothing acknowledged is lost; more may count (a killed shard's checkpoint whose
            # acknowledgements never reached their workers).
            name = worker.worker_id
            assert counted[name] >= worker.status.updates_accepted, name
        access = (folder / "logs" / "access.log").read_text()
        assert 'GET /ws HTTP/1.1" 101' in access
    finally:
        proxy.stop()
        cluster.stop()


async def test_repeated_kills_of_shards_and_leaders_behind_nginx(
    cluster_urls: tuple[str, str], tmp_path: Path
) -> None:
    """Shards and leaders killed in turn, each started again at once (a new shard on the same
    port): every acknowledged update stays in a completed round, none is counted twice."""
    db, url = cluster_urls
    cluster = Cluster(tmp_path, db, url, toy_task_file(PLAN))
    proxy, folder, https = _proxy(tmp_path, cluster)
    kills = ["shard", "leader", "shard", "shard", "leader", "shard"]
    try:
        await cluster.start()
        await cluster.wait_leader()
        proxy.start(https)
        workers = _workers(folder, https, "soak")
        run = asyncio.gather(*(w.run() for w in workers))
        acks = 0
        try:
            for kind in kills:
                acks += 6
                await _acks(workers, acks)
                leader = await cluster.wait_leader()
                victim = (
                    leader
                    if kind == "leader"
                    else next(s for s in cluster.shards if s is not leader)
                )
                victim.kill()
                if kind == "leader":
                    await cluster.wait_leader(other_than=leader)
                await victim.start()
            await _acks(workers, acks + 6)
        finally:
            for w in workers:
                w.stop()
            await asyncio.wait_for(run, scaled(30))
        await _closed(db, cluster)
        counted = _counted(db)
        for worker in workers:
            assert counted[worker.worker_id] >= worker.status.updates_accepted, worker.worker_id
        assert sum(counted.values()) >= acks + 6
    finally:
        proxy.stop()
        cluster.stop()
