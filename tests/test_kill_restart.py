"""SIGKILL a real coordinator process mid-round, restart it, and check nothing committed is lost
— on a SQLite state file and on a PostgreSQL database (the real server the tests start)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import pytest

from dandelion.storage.location import open_state

from .conftest import RawClient, free_port, scaled, toy_task_file
from .test_coordinator_live import report

TASK_FILE = toy_task_file({"goal": 3, "min_reports": 2, "over_selection": 1.0, "deadline_s": 60.0})
#: Checkpoints of two reports: an ack needs its update in a stored sum of at least two.
K2 = ("--monitor-k", "2")


class Server:
    """A real ``dandelion serve`` process on a state file in ``tmp``, or on the database
    ``db`` (a ``postgresql://`` URL) when given."""

    def __init__(
        self, tmp: Path, task: str = TASK_FILE, *extra: str, db: str | None = None
    ) -> None:
        self.db = tmp / "state.db"
        self._url = db
        self.task_file = tmp / "task.toml"
        self.task_file.write_text(task)
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = tmp / "server.log"
        self.extra = list(extra)

    async def start(self) -> None:
        cmd = [
            sys.executable,
            "-m",
            "dandelion.cli",
            "serve",
            "--db",
            self.state,
            "--port",
            str(self.port),
            "--task",
            str(self.task_file),
            "--tick-s",
            "0.02",
            "--pace-min-s",
            "0.01",
            "--pace-max-s",
            "0.2",
            *self.extra,
        ]
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=log)
        deadline = time.monotonic() + scaled(20)
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
        raise AssertionError("coordinator did not start:\n" + self.log.read_text())

    def kill(self, sig: int = signal.SIGKILL) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, sig)
        self.proc.wait()

    @property
    def state(self) -> str:
        """What ``--db`` says: the database's URL, or the state file's path."""
        return self._url or str(self.db)

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"


def _snapshot(db: str) -> dict[str, Any]:
    store = open_state(db)
    try:
        return {
            "versions": [
                v[0] if isinstance(v, tuple) else v.version for v in store.list_model_versions("t1")
            ],
            "reported": store.count_events(task="t1", event="reported"),
            "rounds": {r.round: r.status for r in store.list_rounds("t1", 1000)},
        }
    finally:
        store.close()


async def _versions(db: str, count: int) -> None:
    """Wait until ``count`` model versions are committed (the commit acknowledges the round's
    last reports, so this is at most a moment)."""
    for _ in range(200):
        if len(_snapshot(db)["versions"]) >= count:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"fewer than {count} model versions")


async def _client(url: str, worker: str) -> RawClient:
    client = await RawClient.connect(url)
    assert (await client.hello(worker))["type"] == "welcome"
    return client


async def _task(client: RawClient) -> dict[str, Any]:
    for _ in range(500):
        msg, _frame = await client.checkin()
        if msg["type"] == "task":
            return msg
        await asyncio.sleep(0.01)
    raise AssertionError("no task")


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
async def test_sigkill_mid_round_loses_nothing_and_resumes(
    tmp_path: Path, backend: str, request: pytest.FixtureRequest
) -> None:
    url = request.getfixturevalue("postgres").database() if backend == "postgresql" else None
    server = Server(tmp_path, TASK_FILE, *K2, db=url)
    acked_reports = 0
    killed_round = 0
    expected_version = 0
    rng = np.random.default_rng(0)
    try:
        for cycle in range(3):
            await server.start()
            workers = [await _client(server.url, f"worker-c{cycle}-{i}") for i in range(3)]
            if cycle:
                # The round the kill left open resumed with its two acknowledged reports: one
                # more completes it, on the model it started from.
                task = await _task(workers[0])
                assert (task["round"], task["model_version"]) == (killed_round, expected_version)
                assert (await report(workers[0], task, rng.normal(size=11) * 0.1))["type"] == "ack"
                acked_reports += 1
                expected_version += 1
                await _versions(server.state, expected_version + 1)
            # Full rounds: every worker reports, the round commits a new model version.
            for _ in range(2):
                tasks = [await _task(w) for w in workers]
                assert {t["model_version"] for t in tasks} == {expected_version}
                replies = await asyncio.gather(
                    *(
                        report(w, t, rng.normal(size=11) * 0.1)
                        for w, t in zip(workers, tasks, strict=True)
                    )
                )
                assert [r["type"] for r in replies] == ["ack"] * 3, replies
                acked_reports += 3
                expected_version += 1
                await _versions(server.state, expected_version + 1)
            # Mid-round: two of three report (one checkpoint of two), then the process dies.
            tasks = [await _task(w) for w in workers]
            killed_round = tasks[0]["round"]
            replies = await asyncio.gather(
                *(
                    report(w, t, rng.normal(size=11) * 0.1)
                    for w, t in zip(workers[:2], tasks[:2], strict=True)
                )
            )
            assert [r["type"] for r in replies] == ["ack", "ack"], replies
            acked_reports += 2
            before = _snapshot(server.state)
            server.kill()
            for w in workers:
                await w.ws.close()
            after = _snapshot(server.state)
            # Every acknowledged report and every committed version survived the kill.
            assert after["reported"] >= acked_reports
            assert after["versions"] == list(range(expected_version + 1))
            assert after["reported"] >= before["reported"]
            assert after["rounds"][killed_round] == "open"
        # A last restart: the open round resumes where it stood (its acknowledged reports in
        # its aggregate), and completes when its last worker reports.
        await server.start()
        assert _snapshot(server.state)["rounds"][killed_round] == "open"
        worker = await _client(server.url, "worker-final")
        task = await _task(worker)
        assert task["model_version"] == expected_version
        assert task["round"] == killed_round
        assert (await report(worker, task, rng.normal(size=11) * 0.1))["type"] == "ack"
        await _versions(server.state, expected_version + 2)
        final = _snapshot(server.state)
        assert final["rounds"][killed_round] == "completed"
        assert final["versions"] == list(range(expected_version + 2))
        await worker.ws.close()
    finally:
        if server.proc is not None and server.proc.poll() is None:
            server.proc.terminate()
            server.proc.wait()
