"""The worker over the in-memory host: no sockets, the real sessions and coordinator."""

from __future__ import annotations

import asyncio

from browser_worker.host import ConnectionClosed, MemoryConnection, MemoryHost
from browser_worker.models import Example
from browser_worker.worker import Worker, WorkerConfig, WorkerStatus
from dandelion.coordinator import Coordinator
from dandelion.protocol import (
    CheckinReceived,
    CoordinatorSession,
    HelloReceived,
    OptOutReceived,
    UpdateReceived,
)
from dandelion.settings import load_settings
from dandelion.storage import AsyncStore, MemoryStore

from .conftest import small_task


async def _serve(coordinator: Coordinator, conn: MemoryConnection) -> None:
    """A minimal server loop: the same session and coordinator calls as the WebSocket one."""
    session = CoordinatorSession()
    try:
        while session.close_code is None:
            data = await conn.receive()
            event = (
                session.receive_text(data) if isinstance(data, str) else session.receive_bytes(data)
            )
            if isinstance(event, HelloReceived):
                session.send(await coordinator.on_hello(event.hello))
            elif isinstance(event, CheckinReceived):
                assert session.worker_id is not None
                answer = await coordinator.on_checkin(session.worker_id, event.checkin)
                if isinstance(answer, tuple):
                    session.send(*answer)
                else:
                    session.send(answer)
            elif isinstance(event, UpdateReceived):
                assert session.worker_id is not None
                ack = await coordinator.on_update(session.worker_id, event.update, event.frame)
                session.send(ack)
            elif isinstance(event, OptOutReceived):
                assert session.worker_id is not None
                await coordinator.on_opt_out(session.worker_id)
            for out in session.data_to_send():
                await conn.send(out)
    except ConnectionClosed:
        return
    await conn.close(session.close_code or 1000)


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
