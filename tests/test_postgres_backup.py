"""Backups of a PostgreSQL state are PostgreSQL's own: ``pg_dump --format=custom`` while the
coordinator runs, ``pg_restore`` into a new database, and ``serve --db`` on it resumes — the
commands that docs/operations.md ("Backups") gives, run for real."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

import numpy as np

from dandelion.storage.location import open_state

from .conftest import RawClient, toy_task_file
from .pg_server import PostgresServer
from .test_coordinator_live import report
from .test_kill_restart import K2, Server, _snapshot, _task, _versions

TASK = toy_task_file({"goal": 2, "min_reports": 2, "over_selection": 1.0, "deadline_s": 60.0})


def _tool(postgres: PostgresServer, *args: str) -> None:
    done = subprocess.run(
        [str(postgres.bin / args[0]), *args[1:]], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr


def _models(url: str) -> list[tuple[int, int, bytes]]:
    store = open_state(url, readonly=True)
    try:
        versions = store.list_model_versions("t1")
        loaded = [store.get_model_version("t1", v.version) for v in versions]
        return [(m.version, m.round, m.params) for m in loaded if m is not None]
    finally:
        store.close()


async def test_pg_dump_of_a_running_coordinator_restores_and_resumes(
    postgres: PostgresServer, tmp_path: Path
) -> None:
    live = postgres.database()
    server = Server(tmp_path, TASK, *K2, db=live)
    dump = tmp_path / "state.dump"
    rng = np.random.default_rng(1)
    try:
        await server.start()
        workers = [await RawClient.connect(server.url) for _ in range(2)]
        for i, w in enumerate(workers):
            assert (await w.hello(f"backup-worker-{i}"))["type"] == "welcome"
        for _ in range(2):  # two rounds, two model versions after the initial one
            tasks = [await _task(w) for w in workers]
            replies = await asyncio.gather(  # an ack needs both in one checkpoint (k = 2)
                *(
                    report(w, t, rng.normal(size=11) * 0.1)
                    for w, t in zip(workers, tasks, strict=True)
                )
            )
            assert [r["type"] for r in replies] == ["ack", "ack"]
        await _versions(live, 3)
        # While it runs: a consistent snapshot (one transaction), in the custom format.
        _tool(postgres, "pg_dump", "--format=custom", f"--file={dump}", f"--dbname={live}")
        for w in workers:
            await w.ws.close()
    finally:
        if server.proc is not None and server.proc.poll() is None:
            server.proc.terminate()
            server.proc.wait()
    restored = postgres.url("restored")
    _tool(postgres, "createdb", f"--maintenance-db={postgres.url()}", "restored")
    _tool(postgres, "pg_restore", "--no-owner", f"--dbname={restored}", str(dump))
    assert _models(restored) == _models(live)
    assert [v for v, _, _ in _models(restored)] == [0, 1, 2]
    assert _snapshot(restored)["rounds"] == _snapshot(live)["rounds"]
    # A coordinator on the restored database carries on from its last version.
    again = Server(tmp_path, TASK, *K2, db=restored)
    try:
        await again.start()
        worker = await RawClient.connect(again.url)
        assert (await worker.hello("backup-worker-9"))["type"] == "welcome"
        task = await _task(worker)
        assert task["model_version"] == 2
        await worker.ws.close()
    finally:
        if again.proc is not None and again.proc.poll() is None:
            again.proc.terminate()
            again.proc.wait()
