"""``dandelion serve --db postgresql://…`` end to end: CPython workers (the same worker code
the browser runs, over real WebSockets) complete a round; the coordinator is SIGKILLed with two
acknowledged updates in the open round; restarted, it resumes that round with both in its
aggregate, and one more report completes it — the committed model counts all three."""

from __future__ import annotations

import asyncio
from pathlib import Path

from browser_worker.host.cpython import CPythonHost
from browser_worker.worker import Worker, WorkerConfig, WorkerStatus
from dandelion.storage.location import open_state
from dandelion.taskspec.models import Example

from .conftest import scaled, toy_task_file
from .pg_server import PostgresServer
from .test_kill_restart import K2, Server, _snapshot, _versions

#: Three reports close a round (the deadline is far: only reports close it); the first
#: checkpoint, and so the first ack, needs two (the minimum, and k = 2).
TASK = toy_task_file({"goal": 3, "min_reports": 2, "over_selection": 1.0, "deadline_s": 600.0})
DATA = [Example((i % 10,), (1.0,), i % 2) for i in range(20)]


async def _reports(url: str, names: list[str]) -> list[WorkerStatus]:
    """Each named worker takes part until one update of its own is acknowledged."""
    workers = [
        Worker(CPythonHost(), WorkerConfig(url, worker_id=n), lambda *_: DATA) for n in names
    ]
    return await asyncio.wait_for(
        asyncio.gather(*(w.run(max_updates=1) for w in workers)), scaled(60)
    )


async def test_cpython_workers_and_a_sigkill_on_postgresql(
    postgres: PostgresServer, tmp_path: Path
) -> None:
    server = Server(tmp_path, TASK, *K2, "--pace-max-s", "0.1", db=postgres.database())
    try:
        await server.start()
        done = await _reports(server.url, ["worker-a", "worker-b", "worker-c"])
        assert [s.updates_accepted for s in done] == [1, 1, 1]
        await _versions(server.state, 2)
        # Round 2 opens on version 1; two of its three reports are acknowledged, then SIGKILL.
        acked = await _reports(server.url, ["worker-d", "worker-e"])
        assert [s.updates_accepted for s in acked] == [1, 1]
        server.kill()
        killed = _snapshot(server.state)
        assert killed["versions"] == [0, 1]
        open_rounds = [r for r, status in killed["rounds"].items() if status == "open"]
        assert len(open_rounds) == 1
        # Restarted on the same database: the open round resumes with both acknowledged
        # updates in its checkpointed aggregate, so one more report completes it (goal 3).
        await server.start()
        last = await _reports(server.url, ["worker-f"])
        assert [s.updates_accepted for s in last] == [1]
        await _versions(server.state, 3)
        final = _snapshot(server.state)
        assert final["versions"] == [0, 1, 2]
        assert final["rounds"][open_rounds[0]] == "completed"
        store = open_state(server.state, readonly=True)
        try:
            rounds = {r.round: r for r in store.list_rounds("t1", 10)}
            assert rounds[open_rounds[0]].reported == 3  # two before the kill, one after
            versions = store.list_model_versions("t1")
            assert versions[-1].round == open_rounds[0]
        finally:
            store.close()
    finally:
        if server.proc is not None and server.proc.poll() is None:
            server.proc.terminate()
            server.proc.wait()


async def test_the_coordinator_carries_on_after_postgresql_restarts(tmp_path: Path) -> None:
    """The database server goes down and comes back under a running coordinator (its own
    server here, not the session's): the sessions it held are gone, the store opens new ones,
    and the next round completes — nothing committed before is lost."""
    from .conftest import free_port

    server_pg = PostgresServer(free_port())
    server_pg.start()
    try:
        url = server_pg.database()
        server = Server(tmp_path, TASK, *K2, "--pace-max-s", "0.1", db=url)
        try:
            await server.start()
            done = await _reports(server.url, ["worker-a", "worker-b", "worker-c"])
            assert [s.updates_accepted for s in done] == [1, 1, 1]
            await _versions(server.state, 2)
            # As after a crash of the database server: stopped at once, then recovered.
            server_pg.restart()
            again = await _reports(server.url, ["worker-d", "worker-e", "worker-f"])
            assert [s.updates_accepted for s in again] == [1, 1, 1]
            await _versions(server.state, 3)
            assert server.proc is not None and server.proc.poll() is None  # it never stopped
            final = _snapshot(server.state)
            assert final["versions"] == [0, 1, 2]
            assert sorted(final["rounds"].values()).count("completed") == 2
            log = server.log.read_text()  # the outage was met, and the store recovered
            assert "the state cannot be written" in log and "the state is writable again" in log
        finally:
            if server.proc is not None and server.proc.poll() is None:
                server.proc.terminate()
                server.proc.wait()
    finally:
        server_pg.stop()
