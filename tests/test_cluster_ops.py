"""What an operator sees of a cluster, from any shard: real shard processes (``dandelion serve
--cluster``) on one PostgreSQL and one redis-server, as in ``test_cluster_serve``.

- ``/metrics`` of each shard labels every sample with the shard's name as ``/healthz`` shows it;
- the admin API and the dashboard's snapshot of the leader show the open round's reports made
  on another shard (the cluster's count, not the shard's own), and every shard's connections.
"""

from __future__ import annotations

import asyncio
import time
import tomllib
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from dandelion.api.auth import hash_token, new_token
from dandelion.storage.location import open_state

from .conftest import scaled, toy_task_file
from .test_cluster_serve import PLAN, Cluster, Shard, _reports, cluster_urls

__all__ = ["cluster_urls"]  # the fixture, shared with test_cluster_serve

pytestmark = pytest.mark.slow


def _token(db: str) -> dict[str, str]:
    token = new_token()
    store = open_state(db)
    try:
        store.add_admin_token("ops", hash_token(token), time.time())
    finally:
        store.close()
    return {"Authorization": f"Bearer {token}"}


async def _get(http: aiohttp.ClientSession, shard: Shard, path: str, auth: dict[str, str]) -> Any:
    async with http.get(f"http://127.0.0.1:{shard.port}{path}", headers=auth) as r:
        assert r.status == 200, await r.text()
        if r.content_type == "application/json":
            return await r.json()
        return await r.text()


async def _until(check: Callable[[], Awaitable[Any]], what: str, timeout_s: float = 20.0) -> Any:
    """``check()``'s first truthy answer; fails naming ``what`` after ``timeout_s``."""
    deadline = time.monotonic() + scaled(timeout_s)
    last = None
    while time.monotonic() < deadline:
        last = await check()
        if last:
            return last
        await asyncio.sleep(0.1)
    raise AssertionError(f"{what}: last seen {last!r}")


async def test_each_shards_metrics_carry_its_name(
    cluster_urls: tuple[str, str], tmp_path: Path
) -> None:
    db, url = cluster_urls
    cluster = Cluster(tmp_path, db, url, toy_task_file(PLAN), k=2)
    try:
        await cluster.start()
        auth = _token(db)
        async with aiohttp.ClientSession() as http:
            for shard in cluster.shards:
                name = (await _get(http, shard, "/healthz", {}))["cluster"]["shard"]
                text = await _get(http, shard, "/metrics", auth)
                samples = [
                    s for family in text_string_to_metric_families(text) for s in family.samples
                ]
                assert {s.name for s in samples} >= {"dandelion_ws_messages_total"}
                assert {s.labels.get("shard") for s in samples} == {name}
    finally:
        cluster.stop()


async def test_the_leader_shows_the_reports_and_connections_of_the_other_shard(
    cluster_urls: tuple[str, str], tmp_path: Path
) -> None:
    db, url = cluster_urls
    cluster = Cluster(tmp_path, db, url, toy_task_file(PLAN), k=2)
    try:
        await cluster.start()
        leader = await cluster.wait_leader()
        other = next(s for s in cluster.shards if s is not leader)
        auth = _token(db)
        # Two reports, both on the other shard: the leader holds none of its own.
        done = await _reports(other.url, ["worker-o1", "worker-o2"])
        assert [s.updates_accepted for s in done] == [1, 1]
        async with aiohttp.ClientSession() as http:
            names = {
                s.port: (await _get(http, s, "/healthz", {}))["cluster"]["shard"]
                for s in cluster.shards
            }

            async def detail() -> Any:
                task = await _get(http, leader, "/api/v1/tasks/t1", auth)
                return task if (task["open_round"] or {}).get("reported") == 2 else None

            task = await _until(detail, "the leader's view of round 1")
            assert task["open_round"]["round"] == 1
            assert "2/6 reports across the cluster" in task["waiting"]
            # The other shard counts the same reports: its own, and the cluster's.
            theirs = await _get(http, other, "/api/v1/tasks/t1", auth)
            assert theirs["open_round"] == task["open_round"]
            # Three workers hold connections to the other shard, none to the leader.
            sockets = [await http.ws_connect(other.url) for _ in range(3)]
            try:

                async def shards() -> Any:
                    snapshot = await _get(http, leader, "/api/v1/dashboard", auth)
                    seen = {s["shard"]: s for s in snapshot["cluster"]["shards"]}
                    return snapshot if seen.get(names[other.port], {}).get("connections") else None

                snapshot = await _until(shards, "the other shard's connections")
                view = snapshot["cluster"]
                assert view["shard"] == names[leader.port]
                rows = {s["shard"]: s for s in view["shards"]}
                assert set(rows) == set(names.values())
                assert rows[names[other.port]] == {
                    "shard": names[other.port],
                    "connections": 3,
                    "leads": [],
                }
                # The leader's own: none, withheld as below k; it leads the task.
                assert rows[names[leader.port]] == {
                    "shard": names[leader.port],
                    "connections": None,
                    "leads": ["t1"],
                }
                assert view["connections"] == 3
                assert snapshot["funnel"]["connected_now"] is None  # the leader's own: 0
                (t1,) = snapshot["tasks"]
                assert t1["open_round"]["reported"] == 2
            finally:
                for ws in sockets:
                    await ws.close()
            # A stopped shard drops out of the others' view.
            other.stop()

            async def gone() -> Any:
                snapshot = await _get(http, leader, "/api/v1/dashboard", auth)
                shown = {s["shard"] for s in snapshot["cluster"]["shards"]}
                return shown == {names[leader.port]}

            await _until(gone, "the stopped shard leaving the view")
    finally:
        cluster.stop()


_EMULATED_TASK = """
name = "emulated"
objective = "revisit_7d"
[features]
num_buckets = 32
horizon_days = 7.0
[model]
kind = "logreg"
[hyper]
learning_rate = 0.3
epochs = 1
batch_size = 16
clip_norm = 10.0
[rounds]
goal = 20
min_reports = 10
deadline_s = 60.0
max_rounds = 5
"""


async def _accepted(http: aiohttp.ClientSession, shard: Shard, auth: dict[str, str]) -> int:
    text = await _get(http, shard, "/metrics", auth)
    return next(
        int(s.value)
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == "dandelion_updates_total" and s.labels["outcome"] == "accepted"
    )


async def test_the_websocket_emulator_spreads_its_devices_over_two_shards(
    cluster_urls: tuple[str, str], tmp_path: Path
) -> None:
    from dandelion.emulation import EmulateOptions, PopulationConfig, emulate
    from dandelion.emulation.population import Dist

    db, url = cluster_urls
    cluster = Cluster(tmp_path, db, url, _EMULATED_TASK, k=2)
    try:
        await cluster.start()
        auth = _token(db)
        config = PopulationConfig(
            size=30, seed=5, rounds=1, history_days=9.0, test_users=5, dropout=0.0,
            startup_s=Dist(0.2), straggler_share=0.0,
        )  # fmt: skip
        urls = ",".join(s.url for s in cluster.shards)
        options = EmulateOptions(
            mode="websocket", url=urls, db=db, progress=False, max_wall_s=scaled(120.0)
        )
        task = tomllib.loads(_EMULATED_TASK)
        result = await asyncio.to_thread(emulate, config, options, task=task)
        assert [(r.round, r.status) for r in result.rounds] == [(1, "completed")]
        assert result.rounds[0].reported is not None and result.rounds[0].reported >= 20
        async with aiohttp.ClientSession() as http:
            accepted = [await _accepted(http, s, auth) for s in cluster.shards]
        # 15 devices on each shard and 26 slots in all: each shard took at least 5 reports
        # (counted in steps of k = 2), and the two together the round's.
        assert all(n >= 4 for n in accepted), accepted
        assert sum(accepted) >= 20 - 2, accepted
    finally:
        cluster.stop()


def test_emulate_refuses_a_url_list_with_a_wrong_entry_in_one_line() -> None:
    from dandelion.emulation import EmulationError
    from dandelion.emulation.websocket import worker_urls

    assert worker_urls("ws://a:1/ws, ws://b:2/ws") == ["ws://a:1/ws", "ws://b:2/ws"]
    with pytest.raises(EmulationError, match="each coordinator URL is ws://"):
        worker_urls("ws://a:1/ws,,ws://b:2/ws")
    with pytest.raises(EmulationError, match="each coordinator URL is ws://"):
        worker_urls("http://a:1/ws")
