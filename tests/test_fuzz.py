"""Fuzz a live coordinator with well over 100,000 malformed or adversarial messages while
honest workers train: no crash, no unhandled exception in the log, and the honest rounds
complete.

The coordinator runs on its own event loop in a thread (hypothesis drives a plain function);
the fuzzing connections and three honest workers talk to it over real WebSockets.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import websockets
from aiohttp import web
from hypothesis import HealthCheck, given, settings

from dandelion.app import COORDINATOR, ENDPOINT, make_app
from dandelion.settings import load_settings

from .conftest import scaled, small_task
from .fuzz_messages import Recipe, batches, expand
from .test_fuzz_deep import Stages

TARGET_MESSAGES = 100_000


class _Errors(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


class Server:
    """A coordinator on a loop of its own, in a thread."""

    def __init__(self, db: Path) -> None:
        self.loop = asyncio.new_event_loop()
        self.settings = load_settings(
            environ={},
            overrides={
                "db": str(db),
                "port": 0,
                "tick_s": 0.05,
                "pace_min_s": 0.05,
                "pace_max_s": 0.3,
                "max_messages_per_s": 1_000_000.0,  # the rate limit has its own test
                "max_errors": 200,
            },
        )
        self.outcomes: list[Any] = []
        self.runner: web.AppRunner | None = None
        self.url = ""
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.call(self._start())

    def call(self, coro: Any, timeout: float = 120.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(scaled(timeout))

    async def _start(self) -> None:
        app = make_app(self.settings, on_coordinator=lambda c: c.add_listener(self.outcomes.append))
        self.runner = web.AppRunner(app, handle_signals=False)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", 0).start()
        self.url = f"ws://127.0.0.1:{self.runner.addresses[0][1]}/ws"
        await app[COORDINATOR].add_task(small_task(goal=3, min_reports=3, deadline_s=20.0))

    def stop(self) -> None:
        if self.runner is not None:
            self.call(self.runner.cleanup())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    s = Server(tmp_path / "fuzz.db")
    yield s
    s.stop()


async def _drain(ws: websockets.ClientConnection) -> None:
    try:
        async for _ in ws:
            pass
    except websockets.ConnectionClosed:
        pass


async def _send_all(url: str, messages: list[str | bytes]) -> tuple[int, int, int]:
    """Send every message, reconnecting whenever the coordinator closes the connection.
    Returns (sent, connections used, connections the coordinator closed)."""
    sent, connections, closed = 0, 0, 0
    i = 0
    while i < len(messages):
        connections += 1
        async with websockets.connect(
            url, compression=None, max_size=2**26, close_timeout=0.05
        ) as ws:
            reader = asyncio.create_task(_drain(ws))
            try:
                while i < len(messages) and not reader.done():  # done: the coordinator closed
                    await ws.send(messages[i])
                    i += 1
                    sent += 1
                    if sent % 64 == 0:
                        await asyncio.sleep(0)  # let the reader see a close
                if not reader.done():
                    # The coordinator answers a ping after it has handled every message before
                    # it: a close those messages caused comes first, however loaded the machine.
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(await ws.ping(), scaled(5))
                    await asyncio.sleep(0)
            except websockets.ConnectionClosed:
                i += 1  # that one may not have arrived; go on with the next on a new socket
            if reader.done():
                closed += 1
            reader.cancel()
    return sent, connections, closed


async def _honest(url: str, stop: asyncio.Event) -> list[int]:
    from browser_worker.host.cpython import CPythonHost
    from browser_worker.worker import Worker, WorkerConfig
    from dandelion.taskspec.models import Example

    data = [Example((i % 10,), (1.0,), i % 2) for i in range(20)]
    workers = [
        Worker(CPythonHost(), WorkerConfig(url, worker_id=f"honest-{i:04d}"), lambda *_: data)
        for i in range(3)
    ]
    runs = [asyncio.ensure_future(w.run()) for w in workers]
    await stop.wait()
    for w in workers:
        w.stop()
    await asyncio.wait(runs, timeout=10)
    return [w.status.updates_accepted for w in workers]


async def _received(server: Server) -> int:
    assert server.runner is not None
    return int(server.runner.app[ENDPOINT].counters.received)


def test_fuzzing_never_crashes_the_coordinator_and_honest_rounds_complete(
    server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    stages = Stages(monkeypatch)  # how deep these messages get: see test_fuzz_deep.py
    errors = _Errors()
    logging.getLogger().addHandler(errors)
    stop = asyncio.Event()
    honest = asyncio.run_coroutine_threadsafe(_honest(server.url, stop), server.loop)
    totals = {"messages": 0, "connections": 0, "closed": 0, "batches": 0}

    @settings(
        max_examples=260,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(batches)
    def one_batch(recipes: list[Recipe]) -> None:
        messages = [m for r in recipes for m in expand(r)]
        sent, connections, closed = asyncio.run(_send_all(server.url, messages))
        totals["messages"] += sent
        totals["connections"] += connections
        totals["closed"] += closed
        totals["batches"] += 1

    try:
        one_batch()
        # Hypothesis may stop early: top up, a bounded number of times, so that a coordinator
        # that stops reading what it is sent fails the count below instead of hanging here.
        for _ in range(5):  # about half of what is sent lands in sockets being closed
            if server.call(_received(server)) >= TARGET_MESSAGES:
                break
            one_batch()
    finally:
        server.loop.call_soon_threadsafe(stop.set)
        accepted = honest.result(scaled(60))
        logging.getLogger().removeHandler(errors)

    print(f"\nshallow fuzz: {totals}; stages: {dict(sorted(stages.counts.items()))}")
    # What the coordinator really read (sends into a closing socket do not count).
    received = server.call(_received(server))
    assert received >= TARGET_MESSAGES, (received, totals)
    # The closing paths ran, not only the happy one: the coordinator closed connections (fatal
    # error, opt-out, reject) in about one batch in four (1 in 10 is the floor).
    assert totals["closed"] > totals["batches"] // 10, totals
    unhandled = [r for r in errors.records if r.exc_info or "unexpected" in r.getMessage()]
    assert unhandled == [], [r.getMessage() for r in unhandled[:5]]
    assert errors.records == [], [r.getMessage() for r in errors.records[:5]]
    # The honest workers kept training through it all.
    completed = [o for o in server.outcomes if o.status == "completed"]
    assert len(completed) >= 3, len(completed)
    assert min(accepted) >= 2, accepted

    async def health() -> int:
        http_url = server.url.replace("ws://", "http://").removesuffix("/ws")
        async with aiohttp.ClientSession() as http, http.get(http_url + "/healthz") as resp:
            return resp.status

    assert server.call(health()) == 200


def test_found_by_fuzzing_deep_nesting_is_malformed_not_a_crash() -> None:
    from dandelion.protocol import CoordinatorSession, ProtocolViolation

    session = CoordinatorSession()
    event = session.receive_text("[" * 20_000 + "]" * 20_000)  # 40,000 characters: < 64 KiB
    assert isinstance(event, ProtocolViolation)
    assert event.error.code == "malformed" and "nested too deeply" in event.error.detail


def test_found_by_fuzzing_a_number_of_four_hundred_digits_is_malformed() -> None:
    from dandelion.protocol import MessageError, parse_message

    update = (
        '{"type": "update", "v": 1, "task": "t1", "round": 1, "nonce": "AAAAAAAAAAAAAAAAAAAA", '
        '"num_examples": 10, "metrics": {}, "unclipped": true, "norm": 1' + "0" * 400 + "}"
    )
    with pytest.raises(MessageError, match="too large"):
        parse_message(update)
