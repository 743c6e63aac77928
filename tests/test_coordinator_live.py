"""A real coordinator on loopback, spoken to over real WebSockets."""

from __future__ import annotations

import asyncio
import json
import math
import struct
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import websockets

from dandelion.protocol import FrameHeader, encode_frame

from .conftest import Live, LiveFactory, RawClient, scaled, small_task

PARAMS = 11  # small_task: 10 features + bias


def update_msg(task: dict[str, Any], **extra: Any) -> dict[str, Any]:
    msg = {
        "type": "update",
        "v": 1,
        "task": task["task"],
        "round": task["round"],
        "nonce": task["nonce"],
        "num_examples": 10,
        "metrics": {"loss": 0.5, "accuracy": 0.75},
        "unclipped": True,
    }
    msg.update(extra)
    return msg


def update_frame(task: dict[str, Any], values: Any, **header: Any) -> bytes:
    arr = np.asarray(values, dtype="<f4")
    fields = {
        "type": "update",
        "task": task["task"],
        "round": task["round"],
        "nonce": task["nonce"],
        "dtype": "float32",
        "shape": (arr.size,),
    }
    fields.update(header)
    return encode_frame(FrameHeader(**fields), arr.tobytes())


async def report(
    client: RawClient, task: dict[str, Any], values: Any, **extra: Any
) -> dict[str, Any]:
    await client.send(update_msg(task, **extra))
    await client.send(update_frame(task, values))
    return await client.recv_json()


async def report_together(pairs: Any, values: Any = None, **extra: Any) -> list[dict[str, Any]]:
    """Each (client, task) reports at once; their answers, in order. An ack waits for the
    checkpoint (k reports) or the round's commit that holds its update, so reports that are
    meant to be acknowledged are sent together."""
    pairs = list(pairs)
    return list(
        await asyncio.gather(
            *(
                report(c, t, np.zeros(len_of(t)) if values is None else values, **extra)
                for c, t in pairs
            )
        )
    )


def len_of(task: dict[str, Any]) -> int:
    return int(task["model"].get("num_features", PARAMS - 1)) + 1


async def joined(live: Live, clients: Any, worker_id: str) -> RawClient:
    client = await clients(live.url)
    welcome = await client.hello(worker_id)
    assert welcome["type"] == "welcome", welcome
    return client


async def assigned(client: RawClient) -> dict[str, Any]:
    for _ in range(200):
        msg, frame = await client.checkin()
        if msg["type"] == "task":
            assert frame is not None
            return msg
        await asyncio.sleep(0.02)
    raise AssertionError("no task was assigned")


async def test_a_round_completes_and_commits_the_mean_clipped_update(
    live: LiveFactory, clients: Any
) -> None:
    server: Live = await live()
    await server.coordinator.add_task(small_task(goal=2, min_reports=2))
    a = await joined(server, clients, "worker-aaaa")
    b = await joined(server, clients, "worker-bbbb")
    ta, tb = await assigned(a), await assigned(b)
    assert ta["round"] == tb["round"] == 1
    assert ta["nonce"] != tb["nonce"]
    # One small update, one of norm 1e6: the server clips it to the bound (1.0).
    small = np.full(PARAMS, 0.1, dtype=np.float32)
    huge = np.full(PARAMS, 1e6 / math.sqrt(PARAMS), dtype=np.float32)
    # Sent together: each ack waits for the round's commit, which needs both.
    got, ack = await asyncio.gather(report(a, ta, small), report(b, tb, huge))
    assert got["type"] == "ack", got
    assert ack["type"] == "ack"
    assert 0 <= ack["retry_window"]["min_s"] < ack["retry_window"]["max_s"]
    await server.wait_rounds(1)
    outcome = server.outcomes[0]
    assert outcome.model_version == 1
    assert outcome.reported == 2
    runtime = server.coordinator.tasks["t1"]
    stored = await server.store.read(lambda s: s.get_model_version("t1", 0))
    assert stored is not None
    before = np.frombuffer(stored.params, dtype="<f4")
    step = runtime.params - before
    # example-weighted (10 and 10) mean of the clipped updates
    expected = (small + huge / np.linalg.norm(huge)) / 2
    np.testing.assert_allclose(step, expected, rtol=1e-4, atol=1e-6)
    assert np.linalg.norm(step) <= (np.linalg.norm(small) + 1.0) / 2 + 1e-5


async def test_rejects_carry_the_reason(live: LiveFactory, clients: Any) -> None:
    server: Live = await live(monitor_k=2)
    await server.coordinator.add_task(small_task(goal=3, min_reports=1, deadline_s=1.0))
    a = await joined(server, clients, "worker-aaaa")
    b = await joined(server, clients, "worker-bbbb")
    c = await joined(server, clients, "worker-cccc")
    ta, tb, tc = await assigned(a), await assigned(b), await assigned(c)
    ok = np.zeros(PARAMS)
    # wrong shape
    await a.send(update_msg(ta))
    await a.send(update_frame(ta, np.zeros(PARAMS + 1)))
    assert (await a.recv_json())["reason"] == "wrong_shape"
    # non-finite values
    bad = np.zeros(PARAMS)
    bad[3] = np.nan
    assert (await report(a, ta, bad))["reason"] == "non_finite"
    # another worker's nonce
    assert (await report(a, tb, ok))["reason"] == "not_assigned"
    # accepted (a checkpoint of two), then the same again
    replies = await report_together([(a, ta), (b, tb)], ok)
    assert [r["type"] for r in replies] == ["ack", "ack"], replies
    assert (await report(a, ta, ok))["reason"] == "duplicate"
    # after the deadline closes the round, c's report is stale
    await server.wait_rounds(1)
    stale = await report(c, tc, ok)
    assert stale["type"] == "reject"
    assert stale["reason"] == "stale_round"
    assert (stale["task"], stale["round"], stale["nonce"]) == (tc["task"], 1, tc["nonce"])


async def test_update_frames_need_no_alignment_and_may_use_any_json_whitespace(
    live: LiveFactory, clients: Any
) -> None:
    server: Live = await live()
    await server.coordinator.add_task(small_task(goal=1))
    client = await joined(server, clients, "worker-aaaa")
    task = await assigned(client)
    fields = {"v": 1, "type": "update", "task": task["task"], "round": task["round"]}
    fields |= {"nonce": task["nonce"], "dtype": "float32", "shape": [PARAMS]}
    header = b"\n" + json.dumps(fields).encode() + b"\t\r"
    header += b" " * ((1 - 4 - len(header)) % 4)  # the values start 1 byte past a boundary
    assert (4 + len(header)) % 4 == 1
    values = np.full(PARAMS, 0.01, dtype="<f4").tobytes()
    await client.send(update_msg(task))
    await client.send(struct.pack("<I", len(header)) + header + values)
    assert (await client.recv_json())["type"] == "ack"


async def test_a_quiet_round_still_closes_and_one_below_minimum_is_retried(
    live: LiveFactory, clients: Any
) -> None:
    server: Live = await live()
    await server.coordinator.add_task(small_task(goal=5, min_reports=2, deadline_s=0.3))
    a = await joined(server, clients, "worker-aaaa")
    ta = await assigned(a)
    # One report of a minimum of two: never acknowledged, the deadline abandons the round.
    refused = await report(a, ta, np.zeros(PARAMS))
    assert (refused["type"], refused["reason"]) == ("reject", "stale_round"), refused
    await server.wait_rounds(1, status="abandoned")
    abandoned = server.outcomes[0]
    assert (abandoned.round, abandoned.reported, abandoned.model_version) == (1, 0, 0)
    # The retry is a new round number from the same model version.
    t2 = await assigned(a)
    assert t2["round"] == 2
    assert t2["model_version"] == 0
    b = await joined(server, clients, "worker-bbbb")
    tb = await assigned(b)
    assert tb["round"] == 2
    replies = await report_together([(a, t2), (b, tb)], np.zeros(PARAMS))
    assert [r["type"] for r in replies] == ["ack", "ack"], replies
    await server.wait_rounds(1)  # completed at its deadline with 2 of 5
    done = next(o for o in server.outcomes if o.status == "completed")
    assert (done.round, done.reported, done.model_version) == (2, 2, 1)


async def test_over_selection_caps_assignments_and_paces_the_rest(
    live: LiveFactory, clients: Any
) -> None:
    server: Live = await live(pace_min_s=0.5, pace_max_s=60.0)
    await server.coordinator.add_task(small_task(goal=2, over_selection=1.5, deadline_s=30))
    got = []
    for i in range(4):
        client = await joined(server, clients, f"worker-{i:04d}")
        msg, _frame = await client.checkin()
        got.append(msg)
    assert [m["type"] for m in got] == ["task", "task", "task", "come_back"]
    come_back = got[3]
    assert come_back["reason"] == "round_full"
    window = come_back["retry_window"]
    assert window["max_s"] - window["min_s"] >= 0.5  # never a zero-width (lockstep) window


async def test_several_tasks_run_at_once(live: LiveFactory, clients: Any) -> None:
    server: Live = await live()
    await server.coordinator.add_task(small_task("alpha", goal=1))
    await server.coordinator.add_task(small_task("beta", goal=1))
    seen = set()
    # Which task a worker joins is the selection's choice, and a task whose round just closed
    # may open its next one before the other is picked: keep joining until both were served.
    for i in range(20):
        client = await joined(server, clients, f"worker-{i:04d}")
        task = await assigned(client)
        seen.add(task["task"])
        assert (await report(client, task, np.zeros(PARAMS)))["type"] == "ack"
        if len(seen) == 2:
            break
    assert seen == {"alpha", "beta"}
    await server.wait_rounds(2)
    assert {o.task for o in server.outcomes} == {"alpha", "beta"}


async def test_hello_without_consent_is_rejected_and_closed(
    live: LiveFactory, clients: Any
) -> None:
    server: Live = await live()
    client = await clients(server.url)
    reply = await client.hello("worker-nope", consent="opted_out")
    assert (reply["type"], reply["reason"]) == ("reject", "not_opted_in")
    with pytest.raises(websockets.ConnectionClosed) as info:
        await client.recv()
    assert info.value.rcvd is not None and info.value.rcvd.code == 1008


async def test_unknown_versions_are_rejected_with_ours(live: LiveFactory, clients: Any) -> None:
    server: Live = await live()
    client = await clients(server.url)
    reply = await client.hello("worker-future", v=7, versions=[7])
    assert reply["reason"] == "unsupported_version"
    assert reply["versions"] == [1]


async def test_silent_connection_is_closed(live: LiveFactory, clients: Any) -> None:
    server: Live = await live(hello_timeout_s=0.2)
    client = await clients(server.url)
    with pytest.raises(websockets.ConnectionClosed) as info:
        await client.recv(timeout=5)
    assert info.value.rcvd is not None and info.value.rcvd.code == 1008


async def test_messages_before_hello_do_not_extend_the_hello_timeout(
    live: LiveFactory, clients: Any
) -> None:
    server: Live = await live(hello_timeout_s=0.6)
    client = await clients(server.url)
    loop = asyncio.get_running_loop()
    start = loop.time()
    for _ in range(2):
        await client.send({"type": "checkin", "v": 1})
        err = await client.recv_json()
        assert (err["type"], err["code"], err["fatal"]) == ("error", "unexpected_message", False)
        await asyncio.sleep(0.25)
    with pytest.raises(websockets.ConnectionClosed) as info:
        await client.recv(timeout=5)
    assert info.value.rcvd is not None
    assert (info.value.rcvd.code, info.value.rcvd.reason) == (1008, "no hello timeout")
    assert loop.time() - start < scaled(3.0)


async def test_oversized_message_closes_with_1009(live: LiveFactory, clients: Any) -> None:
    server: Live = await live(max_message_bytes=4096)
    client = await joined(server, clients, "worker-big")
    await client.send(b"\0" * 10_000)
    with pytest.raises(websockets.ConnectionClosed) as info:
        await client.recv()
    assert info.value.rcvd is not None and info.value.rcvd.code == 1009


async def test_bad_messages_get_errors_while_other_workers_finish_rounds(
    live: LiveFactory, clients: Any
) -> None:
    server: Live = await live()
    await server.coordinator.add_task(small_task(goal=2, min_reports=2, max_rounds=3))
    good = [await joined(server, clients, f"worker-good{i}") for i in range(2)]
    bad = await joined(server, clients, "worker-evil")

    async def honest(client: RawClient) -> None:
        for _ in range(3):
            task = await assigned(client)
            assert (await report(client, task, np.full(PARAMS, 0.01)))["type"] == "ack"

    async def hostile() -> list[str]:
        codes = []
        garbage: list[Any] = [
            "{not json",
            json.dumps(  # a valid hello, out of order
                {
                    "type": "hello",
                    "v": 1,
                    "worker_id": "worker-evil",
                    "versions": [1],
                    "runtime": {"kind": "other"},
                    "consent": "opted_in",
                }
            ),
            json.dumps({"type": "checkin", "v": 1, "surprise": True}),  # unknown field
            json.dumps({"type": "update", "v": 1}),  # missing fields
            "x" * 70_000,  # over the text limit
            struct.pack("<I", 9999) + b"{}",  # a frame where none is expected
        ]
        for item in garbage:
            await bad.send(item)
            reply = await bad.recv_json()
            assert reply["type"] == "error"
            assert reply["fatal"] is False
            codes.append(reply["code"])
        return codes

    results = await asyncio.wait_for(
        asyncio.gather(honest(good[0]), honest(good[1]), hostile()), scaled(20)
    )
    assert results[2] == [
        "malformed",
        "unexpected_message",
        "malformed",
        "malformed",
        "too_large",
        "unexpected_message",
    ]
    await server.wait_rounds(3)
    # The hostile connection is still usable after non-fatal errors.
    msg, _ = await bad.checkin()
    assert msg["type"] in ("task", "come_back")


async def test_ten_errors_close_the_connection(live: LiveFactory, clients: Any) -> None:
    server: Live = await live(max_errors=3)
    bad = await joined(server, clients, "worker-evil")
    for i in range(3):
        await bad.send("{")
        reply = await bad.recv_json()
        assert reply["fatal"] is (i == 2)
    with pytest.raises(websockets.ConnectionClosed) as info:
        await bad.recv()
    assert info.value.rcvd is not None and info.value.rcvd.code == 1008


async def test_events_are_committed_without_addresses(live: LiveFactory, clients: Any) -> None:
    server: Live = await live()
    await server.coordinator.add_task(small_task(goal=1))
    client = await joined(server, clients, "worker-aaaa")
    task = await assigned(client)
    await report(client, task, np.zeros(PARAMS))
    store = server.store
    counts = await store.read(lambda s: s.event_counts("t1"))
    assert counts.get("reported") == 1
    assert counts.get("selected") == 1
    db = Path(server.settings.db)
    stored = db.read_bytes() + Path(f"{db}-wal").read_bytes()
    assert b"worker-aaaa" in stored  # the check below looks at the right bytes
    assert b"127.0.0.1" not in stored


async def test_the_worker_class_completes_rounds_over_websockets(live: LiveFactory) -> None:
    from browser_worker.host.cpython import CPythonHost
    from browser_worker.worker import Worker, WorkerConfig
    from dandelion.taskspec.models import Example

    server: Live = await live()
    await server.coordinator.add_task(small_task(goal=3, min_reports=3, max_rounds=2))
    data = [Example((i % 10,), (1.0,), i % 2) for i in range(20)]
    workers = [
        Worker(
            CPythonHost(), WorkerConfig(server.url, worker_id=f"worker-{i:04d}"), lambda *_: data
        )
        for i in range(3)
    ]
    runs = [asyncio.create_task(w.run(max_updates=2)) for w in workers]
    statuses = await asyncio.wait_for(asyncio.gather(*runs), scaled(20))
    assert [s.updates_accepted for s in statuses] == [2, 2, 2]
    await server.wait_rounds(2)
    assert server.coordinator.tasks["t1"].model_version == 2


async def test_an_opted_out_hello_ends_the_open_session_and_frees_its_assignment(
    live: LiveFactory, clients: Any
) -> None:
    server: Live = await live()
    await server.coordinator.add_task(small_task(goal=1, over_selection=1.0, deadline_s=30))
    first = await joined(server, clients, "worker-quits")
    task = await assigned(first)
    assert server.coordinator.tasks["t1"].round.needed == 0  # type: ignore[union-attr]
    # The user opts out from another page: a hello that says so, on a new connection.
    other = await clients(server.url)
    reply = await other.hello("worker-quits", consent="opted_out")
    assert (reply["type"], reply["reason"]) == ("reject", "not_opted_in")
    with pytest.raises(websockets.ConnectionClosed):  # the open session ends with it
        await first.recv(timeout=5)
    assert server.coordinator.tasks["t1"].round.needed == 1  # type: ignore[union-attr]
    consent = await server.store.read(lambda s: s.get_consent("worker-quits"))
    assert consent == "opted_out"
    # Its update, sent anyway on a new connection without opting in again, is never counted.
    again = await clients(server.url)
    refused = await again.hello("worker-quits", consent="opted_out")
    assert refused["type"] == "reject"
    # Another worker takes the freed slot and completes the round.
    b = await joined(server, clients, "worker-stays")
    tb = await assigned(b)
    assert tb["round"] == task["round"]
    assert (await report(b, tb, np.zeros(PARAMS)))["type"] == "ack"
    await server.wait_rounds(1)
    assert server.outcomes[0].reported == 1
