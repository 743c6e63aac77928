"""Shared fixtures: a live coordinator on loopback, raw protocol clients, time scaling.

Real-socket tests bind to port 0 and scale their waits by ``DANDELION_TEST_TIMEOUT_SCALE``
(default 1) so a loaded machine does not turn into false failures.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import websockets
from aiohttp import web

from dandelion.app import COORDINATOR, STORE, make_app
from dandelion.coordinator import Coordinator, TaskConfig
from dandelion.settings import Settings, load_settings
from dandelion.storage import AsyncStore, MemoryStore, SQLiteStore, StateStore
from dandelion.storage.postgres import PostgresStore

from .pg_server import PostgresServer

SCALE = float(os.environ.get("DANDELION_TEST_TIMEOUT_SCALE", "1"))


def scaled(seconds: float) -> float:
    return seconds * SCALE


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port on ``host`` (a loopback address) that nobody listens on now."""
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, proc: subprocess.Popen[Any], timeout: float = 60.0) -> None:
    """Until something listens on ``port``; fails if ``proc`` exits first."""
    deadline = time.monotonic() + scaled(timeout)
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"the process exited with status {proc.returncode} before listening")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1.0).close()
            return
        except OSError:
            time.sleep(0.1)
    pytest.fail(f"nothing listens on port {port} after {timeout} s")


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """One real PostgreSQL server for the whole run, in a temporary folder (stopped after)."""
    server = PostgresServer(free_port())
    server.start()
    yield server
    server.stop()


@pytest.fixture(params=["sqlite", "memory", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StateStore]:
    """Each state backend in turn, on a fresh state: the storage contract runs on all three
    (PostgreSQL on a new database of the session's server)."""
    made: StateStore
    if request.param == "sqlite":
        made = SQLiteStore(str(tmp_path / "state.db"))
    elif request.param == "memory":
        made = MemoryStore()
    else:
        made = PostgresStore(request.getfixturevalue("postgres").database())
    yield made
    made.close()


def toy_task_file(
    rounds: dict[str, Any],
    *,
    num_features: int = 10,
    server: dict[str, Any] | None = None,
    privacy: dict[str, Any] | None = None,
) -> str:
    """The text of a task file for ``dandelion serve --task``: task ``t1``, objective
    ``page_examples``, logistic regression on ``num_features``, clip norm 1, and the given
    tables."""
    tables: dict[str, dict[str, Any]] = {
        "model": {"kind": "logreg", "num_features": num_features},
        "hyper": {"clip_norm": 1.0},
        **({"server": server} if server else {}),
        "rounds": rounds,
        **({"privacy": privacy} if privacy else {}),
    }
    lines = ['name = "t1"', 'objective = "page_examples"']
    for table, keys in tables.items():
        lines.append(f"[{table}]")
        lines.extend(f"{key} = {json.dumps(value)}" for key, value in keys.items())
    return "\n".join(lines) + "\n"


def small_task(name: str = "t1", **rounds: Any) -> TaskConfig:
    """A tiny logistic regression task (11 parameters) with a fast round plan."""
    plan = {"goal": 2, "over_selection": 1.0, "min_reports": 1, "deadline_s": 5.0}
    plan.update(rounds)
    return TaskConfig.from_dict(
        {
            "name": name,
            "objective": "page_examples",
            "model": {"kind": "logreg", "num_features": 10},
            "hyper": {"learning_rate": 0.5, "epochs": 1, "batch_size": 4, "clip_norm": 1.0},
            "rounds": plan,
        }
    )


@dataclass
class Live:
    """A coordinator serving on loopback."""

    app: web.Application
    url: str
    settings: Settings
    outcomes: list[Any] = field(default_factory=list)

    @property
    def coordinator(self) -> Coordinator:
        return self.app[COORDINATOR]

    @property
    def store(self) -> AsyncStore:
        return self.app[STORE]

    async def wait_rounds(self, n: int, timeout: float = 10.0, status: str = "completed") -> None:
        async def done() -> None:
            while sum(o.status == status for o in self.outcomes) < n:
                await asyncio.sleep(0.01)

        await asyncio.wait_for(done(), scaled(timeout))


LiveFactory = Callable[..., Any]


@pytest.fixture
async def live(tmp_path: Path) -> AsyncIterator[LiveFactory]:
    """``await live(**settings)`` starts a coordinator; all are stopped at the end of the test."""
    runners: list[web.AppRunner] = []

    async def start(**overrides: Any) -> Live:
        values = {
            "db": str(tmp_path / f"state{len(runners)}.db"),
            "port": 0,
            "tick_s": 0.02,
            "pace_min_s": 0.01,
            "pace_max_s": 0.5,
            "hello_timeout_s": 2.0,
        }
        values.update(overrides)
        settings = load_settings(environ={}, overrides=values)
        outcomes: list[Any] = []
        app = make_app(settings, on_coordinator=lambda c: c.add_listener(outcomes.append))
        runner = web.AppRunner(app, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        runners.append(runner)
        port = runner.addresses[0][1]
        return Live(app, f"ws://127.0.0.1:{port}/ws", settings, outcomes)

    yield start
    for runner in runners:
        await runner.cleanup()


class RawClient:
    """A hand-driven protocol client: sends exactly what a test says, reads what comes back."""

    def __init__(self, ws: websockets.ClientConnection) -> None:
        self.ws = ws

    @classmethod
    async def connect(cls, url: str) -> RawClient:
        ws = await websockets.connect(url, compression=None, max_size=2**26)
        return cls(ws)

    async def send(self, message: dict[str, Any] | str | bytes) -> None:
        if isinstance(message, dict):
            message = json.dumps(message)
        await self.ws.send(message)

    async def recv(self, timeout: float = 5.0) -> dict[str, Any] | bytes:
        data = await asyncio.wait_for(self.ws.recv(), scaled(timeout))
        return json.loads(data) if isinstance(data, str) else data

    async def recv_json(self, timeout: float = 5.0) -> dict[str, Any]:
        data = await self.recv(timeout)
        assert isinstance(data, dict), f"expected a text message, got {len(data)} bytes"
        return data

    async def hello(self, worker_id: str, **extra: Any) -> dict[str, Any]:
        msg = {
            "type": "hello",
            "v": 1,
            "worker_id": worker_id,
            "versions": [1],
            "runtime": {"kind": "cpython"},
            "consent": "opted_in",
        }
        msg.update(extra)
        await self.send(msg)
        return await self.recv_json()

    async def checkin(self) -> tuple[dict[str, Any], bytes | None]:
        await self.send({"type": "checkin", "v": 1})
        msg = await self.recv_json()
        if msg["type"] != "task":
            return msg, None
        frame = await self.recv()
        assert isinstance(frame, bytes)
        return msg, frame

    async def close(self) -> None:
        await self.ws.close()


@pytest.fixture
async def clients() -> AsyncIterator[Callable[[str], Any]]:
    made: list[RawClient] = []

    async def connect(url: str) -> RawClient:
        client = await RawClient.connect(url)
        made.append(client)
        return client

    yield connect
    for client in made:
        await client.close()
