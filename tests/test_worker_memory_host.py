"""The worker over the in-memory host: no sockets, the real sessions and coordinator."""

from __future__ import annotations

import asyncio
import dataclasses
import weakref
from types import SimpleNamespace

import pytest

from browser_worker.host import MemoryConnection, MemoryHost
from browser_worker.worker import Worker, WorkerConfig, WorkerStatus
from dandelion.coordinator import Coordinator
from dandelion.settings import load_settings
from dandelion.storage import AsyncStore, MemoryStore
from dandelion.taskspec.models import Example
from dandelion.transport import MemoryTransport

from .conftest import small_task

_TRANSPORTS: weakref.WeakKeyDictionary[Coordinator, MemoryTransport] = weakref.WeakKeyDictionary()


async def _serve(coordinator: Coordinator, conn: MemoryConnection) -> None:
    """Serve one in-memory connection through the coordinator's in-memory transport (the same
    conversation driver as the WebSocket endpoint; one transport per coordinator)."""
    transport = _TRANSPORTS.get(coordinator)
    if transport is None:
        transport = _TRANSPORTS[coordinator] = MemoryTransport(
            coordinator, coordinator.settings, None
        )
    await transport.serve(conn)


async def test_workers_complete_rounds_in_memory() -> None:
    shared = MemoryStore()
    store = AsyncStore(lambda: shared)
    settings = load_settings(environ={}, overrides={"pace_min_s": 0.01, "pace_max_s": 0.2})
    coordinator = Coordinator(store, settings)
    await coordinator.start()
    await coordinator.add_task(small_task(goal=3, min_reports=3, max_rounds=3))

    async def ticks() -> None:
        while True:
            await coordinator.tick()
            await asyncio.sleep(0.01)

    ticker = asyncio.create_task(ticks())
    data = [Example((i % 10,), (1.0,), i % 2) for i in range(12)]
    seen: list[WorkerStatus] = []
    workers = [
        Worker(
            MemoryHost(lambda conn: _serve(coordinator, conn)),
            WorkerConfig("memory://", worker_id=f"worker-{i:04d}"),
            lambda *_: data,
            on_status=seen.append,
        )
        for i in range(3)
    ]
    statuses = await asyncio.wait_for(asyncio.gather(*(w.run(max_updates=3) for w in workers)), 20)
    ticker.cancel()
    assert [s.updates_accepted for s in statuses] == [3, 3, 3]
    assert {s.state for s in seen} >= {"connecting", "connected", "training", "stopped"}
    assert shared.count_events(event="reported") == 9
    await coordinator.close()
    await store.close()


async def test_opt_out_reaches_the_coordinator_and_clears_local_state() -> None:
    shared = MemoryStore()
    store = AsyncStore(lambda: shared)
    coordinator = Coordinator(store, load_settings(environ={}))
    await coordinator.start()
    host = MemoryHost(lambda conn: _serve(coordinator, conn))
    worker = Worker(host, WorkerConfig("memory://"), lambda *_: [])
    assert host.storage.get("dandelion.worker_id") == worker.worker_id
    run = asyncio.create_task(worker.run())
    for _ in range(200):
        if worker.status.state == "waiting":  # connected, told there is no task
            break
        await asyncio.sleep(0.01)
    await worker.opt_out()
    await asyncio.wait_for(run, 5)
    await asyncio.sleep(0.05)
    assert shared.get_consent(worker.worker_id) == "opted_out"
    assert host.storage.get("dandelion.worker_id") is None
    assert worker.status.state == "stopped"
    await store.close()


def test_a_status_change_keeps_every_other_field() -> None:
    full = WorkerStatus("training", "d", 3, 2, 1.5, "e", {"k": 1})
    assert all(
        getattr(full, f.name) != f.default for f in dataclasses.fields(WorkerStatus) if f.init
    )  # every field away from its default, so a dropped one shows
    seen: list[WorkerStatus] = []
    holder = SimpleNamespace(status=full, on_status=seen.append)
    Worker._set(holder, state="waiting")  # type: ignore[arg-type]
    assert holder.status == dataclasses.replace(full, state="waiting") and seen == [holder.status]
    with pytest.raises(TypeError, match="not status fields"):
        Worker._set(holder, mood="fine")  # type: ignore[arg-type]
    assert holder.status.state == "waiting"
