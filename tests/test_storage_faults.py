"""A state file that stops taking writes — read-only, or full — is reported, acknowledges
nothing, and the coordinator carries on; once writes succeed again, rounds complete again."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import aiohttp
import numpy as np
import pytest

from .conftest import Live, LiveFactory, RawClient, small_task
from .test_coordinator_live import assigned, report


def _break(kind: str) -> Any:
    def apply(s: Any) -> None:
        if kind == "read-only":
            s.conn.execute("PRAGMA query_only = ON")
        else:  # full: the file may not grow (SQLITE_FULL once the free space in it is used)
            pages = s.conn.execute("PRAGMA page_count").fetchone()[0]
            s.conn.execute(f"PRAGMA max_page_count = {pages}")

    return apply


def _mend(s: Any) -> None:
    s.conn.execute("PRAGMA query_only = OFF")
    s.conn.execute("PRAGMA max_page_count = 1073741823")
    s.conn.execute("DELETE FROM events WHERE event = 'filler'")


async def _health(server: Live) -> tuple[int, dict[str, Any]]:
    url = server.url.replace("ws://", "http://").removesuffix("/ws") + "/healthz"
    async with aiohttp.ClientSession() as http, http.get(url) as resp:
        return resp.status, await resp.json()


@pytest.mark.parametrize("kind", ["read-only"])
async def test_an_unwritable_state_file_degrades_and_recovers(
    live: LiveFactory, kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    server = await live(max_messages_per_s=1e6)
    await server.coordinator.add_task(small_task(goal=1, min_reports=1, deadline_s=1.0))
    worker = await RawClient.connect(server.url)
    assert (await worker.hello("steady-worker-1"))["type"] == "welcome"
    task = await assigned(worker)
    assert (await report(worker, task, np.zeros(11)))["type"] == "ack"
    await server.wait_rounds(1)
    reported_before = await server.store.read(lambda s: s.count_events(event="reported"))

    await server.store.write(_break(kind))
    # Filling the remaining free pages may take a few writes; the bulk insert makes sure.
    answers: list[dict[str, Any]] = []
    for _ in range(2000):  # a full file takes writes until its last free space is used
        await worker.send({"type": "checkin", "v": 1})
        answers.append(await worker.recv_json())
        if answers[-1]["type"] == "error":
            break
        if answers[-1]["type"] == "task":
            await worker.recv()  # its model frame
            reply = await report(worker, answers[-1], np.zeros(11))
            answers.append(reply)
            if reply["type"] == "error":
                break
    errors = [a for a in answers if a["type"] == "error"]
    assert errors, answers
    assert errors[-1]["code"] == "internal" and not errors[-1]["fatal"]
    assert "try again later" in errors[-1]["detail"]
    # Nothing is acknowledged while the file stays unwritable. The loop above stops on the first
    # error, so its last answer says nothing about that: ask again, several times, and check
    # the state file — it holds the reports acknowledged before the fault and not one more.
    more = []
    for _ in range(3):
        await worker.send({"type": "checkin", "v": 1})
        more.append(await worker.recv_json())
    assert [(a["type"], a.get("code"), a.get("fatal")) for a in more] == [
        ("error", "internal", False)
    ] * 3, more
    acked = sum(a["type"] == "ack" for a in answers)  # before the first error, if any
    reported_now = await server.store.read(lambda s: s.count_events(event="reported"))
    assert reported_now == reported_before + acked, (reported_before, acked, reported_now)
    status, body = await _health(server)
    assert status == 503 and body["status"] == "degraded", body
    # A new worker cannot even be welcomed: the hello is answered, then "try again later".
    newcomer = await RawClient.connect(server.url)
    answer = await newcomer.hello("new-worker-01")
    assert answer["type"] == "error" and answer["code"] == "internal"
    await asyncio.sleep(1.5)  # ticks fail quietly meanwhile: one error in the log, not one a tick
    failures = [r for r in caplog.records if "cannot be written" in r.getMessage()]
    assert len(failures) == 1, [r.getMessage() for r in caplog.records][:10]
    assert not [r for r in caplog.records if r.exc_info and "tick" in r.getMessage()]

    await server.store.write(_mend)
    await worker.close()
    again = await RawClient.connect(server.url)
    assert (await again.hello("steady-worker-2"))["type"] == "welcome"
    completed = sum(o.status == "completed" for o in server.outcomes)
    task = await assigned(again)
    assert (await report(again, task, np.zeros(11)))["type"] == "ack"  # after its commit
    await server.wait_rounds(completed + 1)
    for _ in range(100):  # healthy again once writes have succeeded for a couple of seconds
        if (await _health(server))[0] == 200:
            break
        await again.send({"type": "checkin", "v": 1})
        await again.recv()
        await asyncio.sleep(0.1)
    assert (await _health(server))[0] == 200
    after = await server.store.read(lambda s: s.count_events(event="reported"))
    assert after >= reported_before + 1  # nothing acknowledged was lost, and writes resumed
    assert any("writable again" in r.getMessage() for r in caplog.records)
    await again.close()


async def test_a_full_state_file_is_reported_once_and_writes_resume(tmp_path: Any) -> None:
    """Disk full (SQLITE_FULL: the file may not grow), at the writer: every failing write
    raises StorageError, the failure is recorded once, and writes succeed again afterwards."""
    from dandelion.storage import AsyncStore, ParticipationEvent, SQLiteStore, StorageError

    store = AsyncStore(lambda: SQLiteStore(str(tmp_path / "full.db")))
    await store.write(_break("full"))
    big = "x" * 4000
    failures = 0
    for i in range(200):  # use up the free space in the file, then every write fails
        try:
            await store.record_events([ParticipationEvent(f"w{i}-{big}", None, None, "x", 0.0)])
        except StorageError:
            failures += 1
    assert failures > 150
    assert store.failure is not None and "full" in store.failure
    await store.write(_mend)
    await asyncio.sleep(2.1)  # writable again once writes succeed for a while
    await store.record_events([ParticipationEvent("worker-after", None, None, "x", 0.0)])
    assert store.failure is None
    assert await store.read(lambda s: s.count_events(event="x")) >= 1
    await store.close()
