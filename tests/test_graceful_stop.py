"""A graceful stop (SIGTERM, SIGINT) with reports still waiting for their first checkpoint:
the coordinator stops at once instead of waiting for a checkpoint that will never come, the
waiting workers get no ack (nothing about their reports was stored), and the open round resumes
on the next start without them."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import numpy as np
import pytest
import websockets

from dandelion.app import make_app
from dandelion.serving import serve_app
from dandelion.settings import load_settings
from dandelion.storage import SQLiteStore

from .conftest import RawClient, scaled, small_task
from .test_coordinator_live import assigned, update_frame, update_msg


async def _serving(db: Path) -> tuple[asyncio.Event, asyncio.Task[None], int]:
    settings = load_settings(
        environ={}, overrides={"db": str(db), "port": 0, "tick_s": 0.02, "pace_min_s": 0.01}
    )
    loop = asyncio.get_running_loop()
    ready: asyncio.Future[int] = loop.create_future()
    stop = asyncio.Event()
    task = small_task(goal=5, min_reports=5, deadline_s=300.0)
    serving = loop.create_task(
        serve_app(
            make_app(settings, tasks=[task]),
            settings,
            stop=stop,
            on_ready=lambda addresses: ready.set_result(addresses[0][1]),
        )
    )
    await asyncio.wait([ready, serving], timeout=scaled(20), return_when="FIRST_COMPLETED")
    return stop, serving, ready.result()


async def test_a_stop_does_not_wait_for_reports_below_the_first_checkpoint(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    stop, serving, port = await _serving(db)
    url = f"ws://127.0.0.1:{port}/ws"
    workers = [await RawClient.connect(url) for _ in range(3)]
    for i, client in enumerate(workers):
        assert (await client.hello(f"worker-{i:04d}"))["type"] == "welcome"
    tasks = [await assigned(client) for client in workers]
    for client, task in zip(workers, tasks, strict=True):
        await client.send(update_msg(task))
        await client.send(update_frame(task, np.zeros(11)))
    await asyncio.sleep(0.3)  # 3 of the 5 reports the first checkpoint needs: they wait
    started = time.monotonic()
    stop.set()
    await asyncio.wait_for(serving, scaled(10))
    assert time.monotonic() - started < scaled(5)
    for client in workers:
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await client.recv(timeout=scaled(2))  # no ack: the close comes first
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1001
    store = SQLiteStore(str(db))
    try:
        events = [e for e in store.iter_events("t1") if e.event == "reported"]
        assert events == []  # nothing acknowledged, nothing stored as reported
    finally:
        store.close()
    # the next start resumes the open round; the same workers report again and are counted
    stop, serving, port = await _serving(db)
    try:
        url = f"ws://127.0.0.1:{port}/ws"
        again = [await RawClient.connect(url) for _ in range(5)]
        pairs = []
        for i, client in enumerate(again):
            await client.hello(f"worker-{i:04d}")
            task = await assigned(client)
            assert task["round"] == tasks[0]["round"]
            pairs.append((client, task))
        for client, task in pairs:
            await client.send(update_msg(task))
            await client.send(update_frame(task, np.zeros(11)))
        answers = [await client.recv_json(timeout=10) for client, _ in pairs]
        assert [a["type"] for a in answers] == ["ack"] * 5
        for client in again:
            await client.close()
    finally:
        stop.set()
        await asyncio.wait_for(serving, scaled(10))
