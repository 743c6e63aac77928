"""The asyncio face of the store: group commit, isolation of failing jobs, durability."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from dandelion.storage import (
    AsyncStore,
    ConflictError,
    ModelVersion,
    ParticipationEvent,
    SQLiteStore,
    StateStore,
    StorageError,
    TaskRecord,
)


def _event(i: int) -> ParticipationEvent:
    return ParticipationEvent(f"w{i}", "t1", 1, "reported", float(i))


async def test_many_concurrent_writes_commit_in_fewer_batches(tmp_path: Path) -> None:
    path = str(tmp_path / "s.db")
    store = AsyncStore(lambda: SQLiteStore(path))
    await asyncio.gather(
        *(store.write(lambda s, i=i: s.record_events([_event(i)])) for i in range(300))
    )
    assert store.jobs == 300
    assert store.batches < 300  # group commit
    assert await store.read(lambda s: s.count_events()) == 300
    await store.close()


async def test_a_failing_job_loses_nothing_else(tmp_path: Path) -> None:
    store = AsyncStore(lambda: SQLiteStore(str(tmp_path / "s.db")))
    await store.write(lambda s: s.create_task(TaskRecord("t1", {}, "active", 0.0)))

    def fails(s: StateStore) -> None:
        s.record_events([_event(999)])  # rolled back with its job
        s.create_task(TaskRecord("t1", {}, "active", 0.0))

    results = await asyncio.gather(
        store.write(lambda s: s.record_events([_event(1)])),
        store.write(fails),
        store.write(lambda s: s.record_events([_event(2)])),
        return_exceptions=True,
    )
    assert isinstance(results[1], ConflictError)
    assert results[0] is None and results[2] is None
    names = await store.read(lambda s: sorted(e.worker_id for e in s.iter_events()))
    assert names == ["w1", "w2"]
    await store.close()


async def test_reads_proceed_while_writing(tmp_path: Path) -> None:
    path = str(tmp_path / "s.db")
    store = AsyncStore(lambda: SQLiteStore(path))
    writes = [store.write(lambda s, i=i: s.record_events([_event(i)] * 50)) for i in range(40)]
    reads = [store.read(lambda s: s.count_events()) for _ in range(40)]
    done = await asyncio.gather(*writes, *reads)
    counts = done[40:]
    # A read sees whole jobs or nothing of them (each job writes 50 events in its savepoint,
    # batches commit whole), and the one reader thread runs reads in order, each seeing at
    # least what the one before saw: a read of uncommitted or half-committed state breaks this.
    assert all(c % 50 == 0 for c in counts), counts
    assert counts == sorted(counts), counts
    assert await store.read(lambda s: s.count_events()) == 2000

    # And a read does not wait for writes: it completes while a write transaction is held
    # open, and sees none of that transaction's rows.
    inside, release = threading.Event(), threading.Event()

    def held_open(s: StateStore) -> None:
        s.record_events([_event(i) for i in range(50)])
        inside.set()
        release.wait(30)

    writing = asyncio.ensure_future(store.write(held_open))
    assert await asyncio.to_thread(inside.wait, 10)
    try:
        during = await asyncio.wait_for(store.read(lambda s: s.count_events()), 5)
    finally:
        release.set()
    await writing
    assert during == 2000
    assert await store.read(lambda s: s.count_events()) == 2050
    await store.close()


async def test_close_drains_the_queue(tmp_path: Path) -> None:
    path = str(tmp_path / "s.db")
    store = AsyncStore(lambda: SQLiteStore(path))
    pending = [
        asyncio.ensure_future(store.write(lambda s, i=i: s.record_events([_event(i)])))
        for i in range(50)
    ]
    await asyncio.sleep(0)
    await store.close()
    await asyncio.gather(*pending)
    reopened = SQLiteStore(path)
    assert reopened.count_events() == 50
    reopened.close()
    with pytest.raises(StorageError):
        await store.write(lambda s: None)


async def test_a_read_only_file_is_reported_and_reads_go_on(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    setup = SQLiteStore(str(path))
    setup.create_task(TaskRecord("t1", {}, "active", 0.0))
    setup.save_model_version(ModelVersion("t1", 0, 0, b"", b"", 0.0, {}))
    setup.close()

    def readonly() -> StateStore:
        store = SQLiteStore(str(path))
        store.conn.execute("PRAGMA query_only = ON")  # the medium refuses writes
        return store

    store = AsyncStore(readonly)
    with pytest.raises(StorageError):
        await store.write(lambda s: s.record_events([_event(1)]))
    assert await store.read(lambda s: s.latest_model_version("t1") is not None)
    # The writer thread is still alive and answers the next job.
    with pytest.raises(StorageError):
        await store.write(lambda s: s.set_consent("w", "opted_in", 0.0))
    await store.close()


def test_an_acknowledged_write_survives_sigkill(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    code = textwrap.dedent(
        f"""
        import asyncio, sys, time
        from dandelion.storage import AsyncStore, SQLiteStore, ParticipationEvent
        async def main():
            store = AsyncStore(lambda: SQLiteStore({str(path)!r}))
            await store.write(lambda s: s.record_events(
                [ParticipationEvent("w-acked", "t1", 1, "reported", 1.0)]))
            print("acked", flush=True)
            time.sleep(60)
        asyncio.run(main())
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "acked"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    proc.stdout.close()
    store = SQLiteStore(str(path))
    assert [e.worker_id for e in store.iter_events()] == ["w-acked"]
    store.close()
