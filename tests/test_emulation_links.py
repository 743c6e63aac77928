"""The emulator's links: a worker's messages go straight to the real conversation driver (session,
schema check, coordinator), answers arrive after their download time and never out of order."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from browser_worker.host import ConnectionClosed
from dandelion.coordinator import Coordinator
from dandelion.emulation.clock import run_virtual
from dandelion.emulation.links import DirectLink
from dandelion.emulation.store import EmulationStore, InlineStore
from dandelion.protocol import Checkin, Hello, WorkerSession
from dandelion.settings import load_settings
from dandelion.transport import ConversationDriver, SchemaValidator

from .conftest import small_task

DOWNLOAD_S = 2.5  # every binary message the coordinator sends takes this long to arrive


async def _driver() -> tuple[Coordinator, ConversationDriver, InlineStore]:
    store = InlineStore(EmulationStore())
    settings = load_settings(environ={}, overrides={"max_errors": 3})
    coordinator = Coordinator(store, settings)
    await coordinator.start()
    await coordinator.add_task(small_task(goal=1))
    return coordinator, ConversationDriver(coordinator, settings, SchemaValidator()), store


async def _welcomed(driver: ConversationDriver) -> tuple[DirectLink, WorkerSession]:
    link = DirectLink(driver, lambda n: 0.0, lambda n: DOWNLOAD_S)
    session = WorkerSession()
    session.send_hello(Hello("worker-0001", {"kind": "emulated", "version": "x"}, "opted_in"))
    for out in session.data_to_send():
        await link.send(out)
    session.receive_text(await link.receive())  # type: ignore[arg-type]
    return link, session


def _run(body: Any) -> Any:
    async def main() -> Any:
        coordinator, driver, store = await _driver()
        try:
            return await body(driver)
        finally:
            await coordinator.close()
            await store.close()

    return run_virtual(main())


def test_a_task_arrives_at_once_and_its_model_after_the_download() -> None:
    async def body(driver: ConversationDriver) -> tuple[Any, ...]:
        loop = asyncio.get_running_loop()
        link, session = await _welcomed(driver)
        session.send_checkin(Checkin())
        for out in session.data_to_send():
            await link.send(out)
        sent = loop.time()
        text = await link.receive()
        text_at = loop.time() - sent
        frame = await link.receive()
        frame_at = loop.time() - sent
        session.receive_text(text)  # type: ignore[arg-type]
        assigned = session.receive_bytes(frame)  # type: ignore[arg-type]
        return text_at, frame_at, assigned, driver.counters

    text_at, frame_at, assigned, counters = _run(body)
    assert text_at == 0.0 and frame_at == pytest.approx(DOWNLOAD_S)
    assert assigned.task.task == "t1" and assigned.frame.header.type == "model"
    assert counters.outcomes["task"] == 1 and counters.outcomes["checkin"] == 1


def test_the_schema_check_runs_and_answers_queue_behind_a_frame() -> None:
    async def body(driver: ConversationDriver) -> tuple[list[Any], ConnectionClosed, Any]:
        link, session = await _welcomed(driver)
        session.send_checkin(Checkin())
        for out in session.data_to_send():
            await link.send(out)
        # The model frame is still on its way: three malformed messages (an unknown field, which
        # the wire schema refuses) are answered with errors, the third one fatal (max_errors).
        for _ in range(3):
            await link.send(json.dumps({"type": "checkin", "v": 1, "surprise": True}))
        got: list[Any] = []
        while True:
            try:
                got.append(await link.receive())
            except ConnectionClosed as closed:
                return got, closed, driver.counters

    got, closed, counters = _run(body)
    kinds = [m if isinstance(m, bytes) else json.loads(m)["type"] for m in got]
    assert kinds[0] == "task" and isinstance(kinds[1], bytes)  # sent first, arrives first
    assert kinds[2:] == ["error", "error", "error"]
    assert json.loads(got[-1])["fatal"] is True and closed.code == 1008
    assert counters.protocol_violations == 3


def test_nothing_reaches_a_worker_that_hung_up() -> None:
    async def body(driver: ConversationDriver) -> tuple[bool, int]:
        link, session = await _welcomed(driver)
        session.send_checkin(Checkin())
        for out in session.data_to_send():
            await link.send(out)
        await link.close()
        await asyncio.sleep(2 * DOWNLOAD_S)  # the model frame's arrival time passes
        try:
            await link.receive()
        except ConnectionClosed:
            return True, driver.counters.outcomes["task"]
        return False, driver.counters.outcomes["task"]

    refused, tasks = _run(body)
    assert refused and tasks == 1
