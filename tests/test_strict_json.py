"""Numbers at and beyond their ranges, through a real WebSocket to a live coordinator: beyond
is a protocol error naming the field (never ``internal``, never close 1011), at the bound is an
update like any other, and everything the coordinator emits afterwards — every admin route, its
server-sent events, /healthz, ``dandelion task show|list --json`` — is strict JSON, even with a
non-finite figure in the state file."""

from __future__ import annotations

import asyncio
import json
import math
import sys
import time
from typing import Any

import aiohttp
import numpy as np

from dandelion.protocol.messages import MAX_INT32, MAX_SAFE_INTEGER
from dandelion.storage import RoundRecord, StateStore

from .conftest import Live, LiveFactory, RawClient, small_task
from .test_admin_api import _http, _token
from .test_api_threshold import every_route, strict_loads
from .test_coordinator_live import assigned, report, update_msg

OUT_OF_RANGE: list[tuple[str, dict[str, Any] | str]] = [
    # (the field the error must name, the update's changes — or its raw text)
    ("metrics.loss", {"metrics": {"loss": 10**400}}),  # float() overflowed: internal, 1011
    ("metrics.loss", {"metrics": {"loss": 1e308}, "num_examples": 100}),  # sum overflowed
    ("metrics.accuracy", {"metrics": {"loss": 0.5, "accuracy": -1_000_000_001}}),
    ("num_examples", {"num_examples": MAX_INT32 + 1}),
    ("round", {"round": MAX_SAFE_INTEGER + 1}),
    ("norm", '"norm": 1e400'),  # valid JSON text, read as infinity
]


async def _refused(client: RawClient, task: dict[str, Any]) -> list[dict[str, Any]]:
    answers = []
    for _field, change in OUT_OF_RANGE:
        if isinstance(change, str):
            text = json.dumps(update_msg(task))[:-1] + ", " + change + "}"
            await client.send(text)
        else:
            await client.send(update_msg(task, **change))
        answers.append(await client.recv_json())
    return answers


def _old_round(s: StateStore) -> None:
    """A round as a state file from before the ranges could hold it: an average that
    overflowed to infinity, and a NaN."""
    now = time.time()
    s.open_round(RoundRecord("t1", 99, 1, "open", now - 5, None, 3))
    metrics = {"loss": math.inf, "accuracy": math.nan, "mean_norm": -math.inf, "ok": 0.25}
    s.close_round(
        task="t1",
        round=99,
        status="completed",
        closed_at=now,
        assigned=3,
        reported=3,
        rejected=0,
        dropped=0,
        metrics=metrics,
    )


async def _cli(server: Live, *args: str) -> Any:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "dandelion",
        "task",
        *args,
        "--json",
        "--db",
        server.settings.db,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await process.communicate()
    assert process.returncode == 0, err.decode()
    return strict_loads(out)


async def test_numbers_out_of_range_are_protocol_errors_and_every_output_stays_strict_json(
    live: LiveFactory, clients: Any
) -> None:
    server = await live(monitor_k=2, dashboard_refresh_s=0.1)
    await server.coordinator.add_task(small_task(goal=2, min_reports=2, max_rounds=1))
    a, b = await clients(server.url), await clients(server.url)
    for client, name in ((a, "worker-aaaa"), (b, "worker-bbbb")):
        assert (await client.hello(name))["type"] == "welcome"
    ta, tb = await assigned(a), await assigned(b)

    # Beyond a bound: a non-fatal protocol error naming the field; the connection goes on.
    for (field, _), answer in zip(OUT_OF_RANGE, await _refused(a, ta), strict=True):
        assert answer["type"] == "error", answer
        assert (answer["code"], answer["fatal"], answer["ref_type"]) == (
            "malformed",
            False,
            "update",
        ), answer
        assert field in answer["detail"], answer

    # At the bounds: updates like any other (both sent together: the acks wait for the
    # round's commit, which needs both).
    top = {"loss": 1e9, "accuracy": -1e9, "extra": 10**9}
    bottom = {"loss": -1e9, "accuracy": 1e9, "least": -(10**9)}
    acks = await asyncio.gather(
        report(a, ta, np.full(11, 0.1), metrics=top, num_examples=MAX_INT32, norm=1e9),
        report(b, tb, np.full(11, -0.1), metrics=bottom, num_examples=MAX_INT32, norm=0),
    )
    assert [ack["type"] for ack in acks] == ["ack", "ack"], acks
    await server.wait_rounds(1)
    for client in (a, b):
        assert client.ws.close_code is None  # no 1011, no close at all
    stored = await server.store.read(lambda s: s.list_rounds("t1"))
    assert all(math.isfinite(v) for r in stored for v in r.metrics.values()), stored

    # Every output parses strictly, even with non-finite figures in the state file.
    await server.store.write(_old_round)
    await asyncio.sleep(0.3)  # a fresh dashboard snapshot
    answers = await every_route(server, await _token(server), small_task("probe").to_dict())
    parsed = {}
    for answer in answers:
        assert answer.status < 500, (answer.path, answer.body)
        if answer.content_type in ("application/json", "text/event-stream"):
            parsed[answer.method, answer.path] = strict_loads(answer.body)
    old = next(r for r in parsed["GET", "/api/v1/tasks/t1/rounds"]["rounds"] if r["round"] == 99)
    assert old["metrics"] == {"loss": None, "accuracy": None, "mean_norm": None, "ok": 0.25}
    dashboard = parsed["GET", "/api/v1/dashboard"]
    t1 = next(t for t in dashboard["tasks"] if t["name"] == "t1")
    assert next(r for r in t1["rounds"] if r["round"] == 99)["loss"] is None
    async with aiohttp.ClientSession() as http, http.get(_http(server) + "/healthz") as resp:
        assert strict_loads(await resp.read())["status"] == "ok"
    shown = await _cli(server, "show", "t1")
    cli_old = next(r for r in shown["recent_rounds"] if r["round"] == 99)
    assert cli_old["metrics"]["loss"] is None and cli_old["metrics"]["ok"] == 0.25
    assert sorted(t["name"] for t in await _cli(server, "list")) == ["probe", "t1"]
