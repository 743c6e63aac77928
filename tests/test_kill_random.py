"""Stop the coordinator at random moments, fifty times — SIGKILL, and every fifth time SIGTERM;
half of them right after a report was sent, while its checkpoint or its round's commit is being
written — then let the open rounds finish, and check what a user would check: the models.

Each worker's update is a one-hot vector of its own coordinate (0.5 at index i), weights are
uniform and the server optimizer is plain FedAvg, so the difference between model versions v
and v-1 times the round's report count, over 0.5, says exactly which workers' updates are in
version v: 1 where included, 0 where not, and 2 for an update counted twice. Every update a
worker received an ``ack`` for must be in exactly one committed version; versions are
contiguous; the file passes SQLite's integrity check. The same runs, with fewer kills, on a
PostgreSQL database of the real server the tests start.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import signal
import sqlite3
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import websockets

from dandelion.storage.location import is_postgres_url, open_state

from .conftest import RawClient, scaled, toy_task_file
from .test_coordinator_live import update_frame, update_msg
from .test_kill_restart import Server

KILLS = 50
WORKERS = 6  # per life of the server; each has its own coordinate
D = 320  # parameters: 319 features + bias, more than KILLS * WORKERS + the final run's
TASK = toy_task_file(
    {"goal": 4, "over_selection": 1.5, "min_reports": 2, "deadline_s": 1.0},
    num_features=D - 1,
    server={"weighting": "uniform"},
)


async def _worker(
    url: str, index: int, acked: set[tuple[int, int]], sent: asyncio.Event, stop: asyncio.Event
) -> None:
    """Report round after round until the connection dies (or ``stop``); record every ack."""
    values = np.zeros(D, dtype=np.float32)
    values[index] = 0.5
    try:
        client = await RawClient.connect(url)
        if (await client.hello(f"worker-{index:03d}"))["type"] != "welcome":
            return
        while not stop.is_set():
            msg, _ = await client.checkin()
            if msg["type"] != "task":
                await asyncio.sleep(0.01)
                continue
            await client.send(update_msg(msg, num_examples=1))
            await client.send(update_frame(msg, values))
            sent.set()
            reply = await client.recv_json(timeout=scaled(10))
            if reply["type"] == "ack":
                acked.add((msg["round"], index))
        await client.close()
    except (websockets.ConnectionClosed, OSError, TimeoutError, AssertionError):
        return


def _models(db: Path | str) -> dict[str, Any]:
    """Which worker's update each committed version holds, read off the models."""
    if not is_postgres_url(str(db)):
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
            assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    store = open_state(str(db), readonly=True)
    try:
        loaded = [store.get_model_version("t1", v.version) for v in store.list_model_versions("t1")]
        versions = [(m.version, m.round, m.params) for m in loaded if m is not None]
        rounds = store.list_rounds("t1", 100_000)
    finally:
        store.close()
    reported = {r.round: r.reported for r in rounds if r.status == "completed"}
    statuses = {r.round: r.status for r in rounds}
    included: dict[int, set[int]] = {}
    for (_, _, before), (_, rnd, after) in itertools.pairwise(versions):
        delta = np.frombuffer(after, "<f4").astype(np.float64) - np.frombuffer(before, "<f4")
        share = delta * reported[rnd] / 0.5
        rounded = np.rint(share)
        assert np.abs(share - rounded).max() < 1e-2, f"round {rnd}: not whole updates"
        assert set(np.unique(rounded)) <= {0.0, 1.0}, f"round {rnd}: an update counted twice"
        included[rnd] = {int(i) for i in np.flatnonzero(rounded)}
        assert len(included[rnd]) == reported[rnd], f"round {rnd}: count != updates in model"
    return {
        "versions": [v for v, _, _ in versions],
        "rounds": [r for _, r, _ in versions[1:]],
        "included": included,
        "statuses": statuses,
    }


async def _life(
    server: Server,
    first: int,
    acked: set[tuple[int, int]],
    until: Any,
) -> None:
    stop = asyncio.Event()
    sent = asyncio.Event()
    workers = [
        asyncio.create_task(_worker(server.url, first + i, acked, sent, stop))
        for i in range(WORKERS)
    ]
    try:
        await until(sent, stop, workers)
    finally:
        stop.set()
    await asyncio.wait(workers, timeout=scaled(15))


@pytest.mark.parametrize(("backend", "kills"), [("sqlite", KILLS), ("postgresql", 20)])
async def test_random_kills_lose_nothing_acknowledged_and_count_nothing_twice(
    tmp_path: Path, backend: str, kills: int, request: pytest.FixtureRequest
) -> None:
    url = request.getfixturevalue("postgres").database() if backend == "postgresql" else None
    server = Server(tmp_path, TASK, "--monitor-k", "2", db=url)
    rand = random.Random(7)
    acked: set[tuple[int, int]] = set()
    inside = 0
    try:
        for kill in range(kills):
            await server.start()
            after_a_report = kill % 2 == 1
            # Every fifth stop is a SIGTERM (a deploy) at the same kind of moment.
            how = signal.SIGTERM if kill % 5 == 4 else signal.SIGKILL

            async def until_killed(
                sent: asyncio.Event,
                _: asyncio.Event,
                __: Any,
                after: bool = after_a_report,
                how: signal.Signals = how,
            ) -> None:
                if after:  # the moment its checkpoint or its round's commit is being written
                    await asyncio.wait_for(sent.wait(), scaled(10))
                    await asyncio.sleep(rand.uniform(0.0, 0.02))
                else:
                    await asyncio.sleep(rand.uniform(0.0, 1.5))
                server.kill(how)

            await _life(server, kill * WORKERS, acked, until_killed)
            inside += after_a_report
            state = _models(server.state)
            assert state["versions"] == list(range(len(state["versions"])))
        # A last run in which the open rounds finish, ended by SIGTERM like a deploy.
        await server.start()
        before = _models(server.state)
        pending = [r for r, status in before["statuses"].items() if status == "open"]

        async def until_finished(sent: asyncio.Event, stop: asyncio.Event, workers: Any) -> None:
            for _ in range(int(scaled(400))):
                done = _models(server.state)
                if (
                    all(done["statuses"].get(r) == "completed" for r in pending)
                    and len(done["versions"]) >= len(before["versions"]) + 2
                ):
                    break
                await asyncio.sleep(0.05)
            # No new reports; the rounds holding acknowledged ones close by their own rule
            # (their checkpoints hold at least min_reports: they complete at the deadline).
            stop.set()
            await asyncio.wait(workers, timeout=scaled(15))
            for _ in range(int(scaled(200))):
                statuses = _models(server.state)["statuses"]
                if all(statuses.get(r) == "completed" for r, _ in acked):
                    break
                await asyncio.sleep(0.05)
            server.kill(signal.SIGTERM)

        await _life(server, kills * WORKERS, acked, until_finished)
        final = _models(server.state)
        assert final["versions"] == list(range(len(final["versions"])))
        assert len(set(final["rounds"])) == len(final["rounds"]), "a round in two versions"
        lost = sorted(
            (rnd, worker)
            for rnd, worker in acked
            if worker not in final["included"].get(rnd, set())
        )
        assert not lost, f"acknowledged but in no model: {lost[:10]} of {len(acked)}"
        assert len(acked) > 2 * kills  # reports really were acknowledged between the kills
        assert len(final["versions"]) > kills // 2  # rounds completed between the kills
        assert inside == kills // 2
    finally:
        if server.proc is not None and server.proc.poll() is None:
            server.proc.terminate()
            server.proc.wait()
