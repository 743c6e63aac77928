"""The admin API and /metrics: a token or a 401, one error shape, no count below k."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

import aiohttp
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from dandelion.api.auth import hash_token, new_token

from .conftest import Live, LiveFactory, scaled, small_task

TASK_TOML = """
name = "from-toml"
objective = "page_examples"
[model]
kind = "logreg"
num_features = 10
[hyper]
learning_rate = 0.5
epochs = 1
batch_size = 4
clip_norm = 1.0
[rounds]
goal = 2
min_reports = 1
deadline_s = 5.0
"""


def _http(server: Live) -> str:
    return server.url.replace("ws://", "http://").removesuffix("/ws")


async def _token(server: Live, name: str = "ops") -> str:
    token = new_token()
    digest = hash_token(token)
    await server.store.write(lambda s: s.add_admin_token(name, digest, time.time()))
    return token


async def _run_workers(server: Live, n: int, updates: int) -> None:
    from browser_worker.host.cpython import CPythonHost
    from browser_worker.worker import Worker, WorkerConfig
    from dandelion.taskspec.models import Example

    data = [Example((i % 10,), (1.0,), i % 2) for i in range(20)]
    workers = [
        Worker(
            CPythonHost(), WorkerConfig(server.url, worker_id=f"worker-{i:04d}"), lambda *_: data
        )
        for i in range(n)
    ]
    runs = [asyncio.create_task(w.run(max_updates=updates)) for w in workers]
    await asyncio.wait_for(asyncio.gather(*runs), scaled(30))


def _admin_paths(server: Live) -> list[tuple[str, str]]:
    out = []
    for route in server.app.router.routes():
        info = route.resource.get_info() if route.resource is not None else {}
        path = info.get("path") or info.get("formatter", "")
        if path.startswith(("/api/", "/metrics")) and route.method != "HEAD":
            concrete = path.replace("{name}", "t1").replace("{action}", "pause")
            out.append((route.method, concrete.replace("{version}", "0")))
    return out


async def test_every_admin_route_needs_a_token(live: LiveFactory) -> None:
    server = await live()
    await server.coordinator.add_task(small_task())
    token = await _token(server)
    paths = _admin_paths(server)
    assert len(paths) >= 10, paths  # the check covers the whole API, not one route
    async with aiohttp.ClientSession() as http:
        for method, path in paths:
            for headers in ({}, {"Authorization": "Bearer dnd_wrong"}, {"Authorization": token}):
                async with http.request(method, _http(server) + path, headers=headers) as resp:
                    assert resp.status == 401, (method, path, headers)
                    assert resp.headers["WWW-Authenticate"].startswith("Bearer")
                    body = await resp.json()
                    assert body["error"]["status"] == 401
                    assert body["error"]["code"] == "unauthorized"
                    assert token not in json.dumps(body)
        auth = {"Authorization": f"Bearer {token}"}
        async with http.get(_http(server) + "/api/v1/tasks", headers=auth) as resp:
            assert resp.status == 200
            assert [t["name"] for t in (await resp.json())["tasks"]] == ["t1"]
        # A revoked token stops working (the checker's memory is per token, ten seconds; a
        # fresh coordinator-side check is forced here by a new token name).
        await server.store.write(lambda s: s.revoke_admin_token("ops"))
        server.app[_operator_key()].tokens._good.clear()  # type: ignore[union-attr]
        async with http.get(_http(server) + "/api/v1/tasks", headers=auth) as resp:
            assert resp.status == 401


def _operator_key() -> Any:
    from dandelion.api.wiring import OPERATOR

    return OPERATOR


async def test_errors_share_one_shape(live: LiveFactory) -> None:
    server = await live()
    await server.coordinator.add_task(small_task())
    auth = {"Authorization": f"Bearer {await _token(server)}"}
    base = _http(server)
    cases = [
        ("GET", "/api/v1/tasks/nope", None, None, 404, "not_found"),
        ("GET", "/api/v1/nothing-here", None, None, 404, "not_found"),
        ("DELETE", "/api/v1/tasks", None, None, 405, "method_not_allowed"),
        ("POST", "/api/v1/tasks", "x", "text/plain", 415, "unsupported_media_type"),
        ("POST", "/api/v1/tasks", "{not json", "application/json", 400, "bad_request"),
        ("POST", "/api/v1/tasks", '{"name": "x"}', "application/json", 422, "invalid"),
        ("POST", "/api/v1/tasks/t1/explode", None, None, 404, "not_found"),
        ("GET", "/api/v1/tasks/t1/rounds?limit=zero", None, None, 400, "bad_request"),
        ("GET", "/api/v1/tasks/t1/models/99", None, None, 404, "not_found"),
    ]
    async with aiohttp.ClientSession(headers=auth) as http:
        for method, path, body, ctype, status, code in cases:
            headers = {"Content-Type": ctype} if ctype else {}
            async with http.request(method, base + path, data=body, headers=headers) as resp:
                assert resp.status == status, (path, await resp.text())
                error = (await resp.json())["error"]
                assert error == {"status": status, "code": code, "message": error["message"]}
                assert error["message"], path


async def test_tasks_are_created_paused_resumed_archived_and_models_downloaded(
    live: LiveFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    server = await live()
    token = await _token(server)
    auth = {"Authorization": f"Bearer {token}"}
    base = _http(server) + "/api/v1"
    async with aiohttp.ClientSession(headers=auth) as http:
        body = json.dumps(small_task("from-json").to_dict())
        async with http.post(
            f"{base}/tasks", data=body, headers={"Content-Type": "application/json"}
        ) as r:
            assert r.status == 201, await r.text()
            assert (await r.json())["status"] == "active"
        headers = {"Content-Type": "application/toml"}
        async with http.post(f"{base}/tasks", data=TASK_TOML, headers=headers) as r:
            assert r.status == 201, await r.text()
        async with http.post(f"{base}/tasks", data=TASK_TOML, headers=headers) as r:
            assert r.status == 409
        assert set(server.coordinator.tasks) == {"from-json", "from-toml"}

        async with http.post(f"{base}/tasks/from-toml/pause") as r:
            info = await r.json()
            assert info["status"] == "paused" and "admin API by ops" in info["status_reason"]
        assert server.coordinator.tasks["from-toml"].status == "paused"
        async with http.post(f"{base}/tasks/from-toml/resume") as r:
            assert (await r.json())["status"] == "active"
        async with http.post(f"{base}/tasks/from-toml/archive") as r:
            assert (await r.json())["status"] == "archived"
        async with http.post(f"{base}/tasks/from-toml/resume") as r:
            assert r.status == 409

        await _run_workers(server, 2, 1)
        async with http.get(f"{base}/tasks/from-json/models") as r:
            models = (await r.json())["models"]
        assert [m["version"] for m in models][:2] == [0, 1]
        async with http.get(f"{base}/tasks/from-json/models/latest") as r:
            raw = await r.read()
            version = int(r.headers["X-Dandelion-Model-Version"])
        expected = server.coordinator.tasks["from-json"].params
        assert version == server.coordinator.tasks["from-json"].model_version
        assert np.array_equal(np.frombuffer(raw, dtype="<f4"), expected)
        async with http.get(f"{base}/tasks/from-json/privacy") as r:
            assert (await r.json()) == {"task": "from-json", "privacy": None, "ledger": []}
    assert token not in caplog.text


async def _after_two_rounds(live: LiveFactory, k: int) -> tuple[Live, dict[str, Any]]:
    """Three workers, two rounds of task t1 with ``monitor_k = k``; then what the API says."""
    server = await live(monitor_k=k, dashboard_refresh_s=0.1)
    await server.coordinator.add_task(small_task(goal=3, min_reports=3, max_rounds=2))
    auth = {"Authorization": f"Bearer {await _token(server)}"}
    await _run_workers(server, 3, 2)
    await server.wait_rounds(2)
    await asyncio.sleep(0.2)
    base = _http(server) + "/api/v1"
    got: dict[str, Any] = {}
    async with aiohttp.ClientSession(headers=auth) as http:
        for key, path in (
            ("participation", "/participation"),
            ("rounds", "/tasks/t1/rounds"),
            ("task", "/tasks/t1"),
            ("dashboard", "/dashboard"),
        ):
            async with http.get(base + path) as r:
                got[key] = await r.json()
        async with http.get(_http(server) + "/metrics") as r:
            got["metrics_type"] = r.headers["Content-Type"]
            got["metrics"] = await r.text()
    return server, got


async def test_small_counts_are_withheld_everywhere(live: LiveFactory) -> None:
    _, got = await _after_two_rounds(live, k=10)
    figures, rounds, task = got["participation"], got["rounds"]["rounds"], got["task"]
    dashboard, metrics = got["dashboard"], got["metrics"]
    # Three workers, six reports: every worker count is below k = 10.
    assert figures["k"] == 10
    assert all(v is None for v in figures["funnel"].values()), figures["funnel"]
    for name in ("checked_in", "reported", "selected"):
        assert all(v is None for v in figures["series"][name])
    completed = [r for r in rounds if r["status"] == "completed"]
    assert len(completed) == 2
    assert all(r["reported"] is None and r["metrics"] == {} for r in completed)
    assert all(r["reported"] is None for r in task["recent_rounds"])
    assert all(r["loss"] is None for t in dashboard["tasks"] for r in t["rounds"])
    assert "<" not in json.dumps(dashboard["funnel"])  # withheld is null, drawn "<k" by the page
    for family in text_string_to_metric_families(metrics):
        if family.name == "dandelion_funnel":
            assert family.samples == []
        assert family.name != "dandelion_connected_workers"
    # Timestamps are bucketed to the minute.
    assert all(r["closed_at"] % 60 == 0 for r in completed)


async def test_counts_at_or_above_k_are_shown_and_metrics_parse(live: LiveFactory) -> None:
    server, got = await _after_two_rounds(live, k=2)
    figures, rounds, metrics = got["participation"], got["rounds"]["rounds"], got["metrics"]
    assert got["metrics_type"].startswith("text/plain")
    db_reported = await server.store.read(lambda s: s.count_events(event="reported"))
    assert figures["funnel"]["reported"] == db_reported == 6
    assert figures["funnel"]["opted_in"] == 3
    assert sum(v or 0 for v in figures["series"]["reported"]) == 6
    completed = [r for r in rounds if r["status"] == "completed"]
    assert [r["reported"] for r in completed] == [3, 3]
    assert all("loss" in r["metrics"] for r in completed)
    families = {f.name: f for f in text_string_to_metric_families(metrics)}
    # One process, no cluster: no sample says a shard, the dashboard lists none.
    assert all("shard" not in s.labels for f in families.values() for s in f.samples)
    assert "cluster" not in got["dashboard"]
    rounds_total = {
        s.labels["status"]: s.value
        for s in families["dandelion_rounds"].samples
        if s.name.endswith("_total")
    }
    assert rounds_total["completed"] == 2
    updates = {s.labels["outcome"]: s.value for s in families["dandelion_updates"].samples}
    assert updates["accepted"] == 6
    funnel = {s.labels["stage"]: s.value for s in families["dandelion_funnel"].samples}
    assert funnel["reported"] == 6
    assert "dandelion_round_duration_seconds" in families
    assert not any(
        "worker" in label for f in families.values() for s in f.samples for label in s.labels
    )


async def test_a_cli_token_works_and_only_its_hash_is_stored(
    live: LiveFactory, tmp_path: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    from dandelion.cli import main

    db = tmp_path / "cli.db"
    assert main(["token", "create", "grafana", "--db", str(db), "--json"]) == 0
    token = json.loads(capsys.readouterr().out)["token"]
    assert token.startswith("dnd_") and len(token) > 40
    assert main(["token", "create", "bad name!", "--db", str(db)]) == 2
    server = await live(db=str(db))
    async with (
        aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as http,
        http.get(_http(server) + "/api/v1/tasks") as resp,
    ):
        assert resp.status == 200
    for path in tmp_path.glob("cli.db*"):
        assert token.encode() not in path.read_bytes()
    assert hash_token(token).encode() in db.read_bytes() or any(
        hash_token(token).encode() in p.read_bytes() for p in tmp_path.glob("cli.db*")
    )


async def test_tasks_say_why_their_open_round_waits(live: LiveFactory) -> None:
    server = await live(dashboard_refresh_s=0.1)
    await server.coordinator.add_task(small_task(goal=3, deadline_s=60.0))
    auth = {"Authorization": f"Bearer {await _token(server)}"}
    base = _http(server) + "/api/v1"
    said = server.coordinator.round_waiting("t1", server.settings.monitor_k)
    async with aiohttp.ClientSession(headers=auth) as http:
        async with http.get(f"{base}/tasks") as r:
            (row,) = (await r.json())["tasks"]
        async with http.get(f"{base}/tasks/t1") as r:
            detail = await r.json()
        await asyncio.sleep(0.2)
        async with http.get(f"{base}/dashboard") as r:
            (task,) = (await r.json())["tasks"]
    # The field is there in the list, the detail and the dashboard, as the coordinator says it
    # (a sentence while a round is open, null otherwise).
    for shown in (row, detail, task):
        assert "waiting" in shown
        assert shown["waiting"] is None if said is None else isinstance(shown["waiting"], str)
    if said is not None:
        assert detail["waiting"].split(", deadline")[0] == said.split(", deadline")[0]
        # Nobody has reported or is training yet: zero is below k and withheld like any count.
        k = server.settings.monitor_k
        assert detail["waiting"].startswith(f"<{k}/3 reports, <{k} assigned"), detail["waiting"]
