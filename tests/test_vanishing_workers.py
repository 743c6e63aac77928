"""Workers that vanish without a close: a stopped process, a half-open socket.

Neither sends a FIN or a close frame, and both hold an assignment (a coordinator gives a worker
training on a task until past its round's deadline before it counts the silence as idle). The
WebSocket heartbeat finds them: a peer that does not answer a ping within half a heartbeat is
disconnected, its unreported assignment is released at once, and the slot goes to another
worker, so the round completes by its goal long before its deadline.

Each test first checks the opposite: while the worker still answers pings, it keeps its
connection and its slot across several heartbeats, and a newcomer is turned away
(``come_back`` ``round_full``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from websockets.protocol import State

from dandelion.app import ENDPOINT

from .conftest import Live, LiveFactory, RawClient, scaled, small_task
from .test_coordinator_live import assigned, joined, report_together

pytestmark = pytest.mark.slow

#: Pings every second; a pong missing for half of that ends the connection. Short, but not so
#: short that a loaded machine misses a pong of a live client in this process.
HEARTBEAT_S = scaled(1.0)
DEADLINE_S = 60.0
#: A vanished peer is found within one heartbeat plus the pong timeout; "a few heartbeats".
FOUND_WITHIN_S = 3 * HEARTBEAT_S + scaled(0.5)

SLEEPER = """
import asyncio, json, sys

import websockets


async def main(url: str, worker: str) -> None:
    # Its own keepalive off: the coordinator's pings are the only ones on this connection.
    async with websockets.connect(
        url, compression=None, max_size=2**26, ping_interval=None
    ) as ws:
        hello = {"type": "hello", "v": 1, "worker_id": worker, "versions": [1],
                 "runtime": {"kind": "cpython"}, "consent": "opted_in"}
        await ws.send(json.dumps(hello))
        assert json.loads(await ws.recv())["type"] == "welcome"
        while True:
            await ws.send(json.dumps({"type": "checkin", "v": 1}))
            msg = json.loads(await ws.recv())
            if msg["type"] == "task":
                await ws.recv()  # the model frame
                break
            await asyncio.sleep(0.05)
        print(json.dumps({"round": msg["round"], "nonce": msg["nonce"]}), flush=True)
        await ws.wait_closed()  # never reports: trains forever, or is stopped
        print(json.dumps({"closed": ws.close_code}), flush=True)


asyncio.run(main(sys.argv[1], sys.argv[2]))
"""


def _round_plan() -> Any:
    """Two slots (goal 2, no over-selection), a long deadline: a round that completes quickly
    only if a vanished worker's slot goes to another one."""
    return small_task(goal=2, min_reports=2, over_selection=1.0, deadline_s=DEADLINE_S)


def _connected(server: Live, worker: str) -> bool:
    conversation = server.app[ENDPOINT].driver.conversation_of(worker)
    return conversation is not None and not conversation.link.closed


async def _dropped_within(server: Live, worker: str, timeout: float) -> float:
    """Seconds until the coordinator has ended ``worker``'s connection (and freed its slot)."""
    start = time.monotonic()
    while _connected(server, worker):
        assert time.monotonic() - start < timeout, f"{worker} still connected after {timeout}s"
        await asyncio.sleep(0.02)
    return time.monotonic() - start


async def _turned_away(client: RawClient) -> None:
    msg, _frame = await client.checkin()
    assert (msg["type"], msg.get("reason")) == ("come_back", "round_full"), msg


async def _holds_its_slot(server: Live, worker: str, newcomer: RawClient) -> None:
    """The control: a worker that answers pings keeps its connection and its slot."""
    await asyncio.sleep(2.5 * HEARTBEAT_S)
    assert _connected(server, worker), f"{worker} was dropped while answering pings"
    await _turned_away(newcomer)


async def _slot_reused(
    server: Live, vanished: str, steady: tuple[RawClient, dict[str, Any]], newcomer: RawClient
) -> None:
    """The newcomer gets the vanished worker's slot in the same round; the round completes by
    its goal, long before its deadline; the vanished worker's assignment was released."""
    task = await assigned(newcomer)
    assert task["round"] == steady[1]["round"] == 1, task
    answers = await report_together([steady, (newcomer, task)])
    assert [a["type"] for a in answers] == ["ack", "ack"], answers
    await server.wait_rounds(1)
    outcome = server.outcomes[0]
    assert (outcome.round, outcome.status, outcome.reported) == (1, "completed", 2), outcome
    assert outcome.assigned == 3  # two slots, three assignments: one was released
    assert outcome.closed_at - outcome.opened_at < DEADLINE_S / 3, outcome
    events = await server.store.read(lambda s: list(s.iter_events("t1")))
    released = [(e.worker_id, e.round) for e in events if e.event == "released"]
    assert released == [(vanished, 1)], released
    reported = sorted(e.worker_id for e in events if e.event == "reported")
    assert vanished not in reported and len(reported) == 2, reported


async def test_a_stopped_worker_process_is_dropped_and_its_slot_reused(
    live: LiveFactory, clients: Any, tmp_path: Path
) -> None:
    server: Live = await live(heartbeat_s=HEARTBEAT_S, monitor_k=2)
    await server.coordinator.add_task(_round_plan())
    script = tmp_path / "sleeper.py"
    script.write_text(SLEEPER)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(script), server.url, "stopped-worker", stdout=asyncio.subprocess.PIPE
    )
    assert proc.stdout is not None
    try:
        line = await asyncio.wait_for(proc.stdout.readline(), scaled(30))
        assert json.loads(line)["round"] == 1, line
        steady = await joined(server, clients, "steady-worker")
        steady_task = await assigned(steady)
        newcomer = await joined(server, clients, "late-worker")
        await _turned_away(newcomer)  # both slots are held
        await _holds_its_slot(server, "stopped-worker", newcomer)

        proc.send_signal(signal.SIGSTOP)  # alive, its socket open, but it answers nothing
        took = await _dropped_within(server, "stopped-worker", FOUND_WITHIN_S)
        await _slot_reused(server, "stopped-worker", (steady, steady_task), newcomer)

        # Woken up, the worker finds its connection closed by the coordinator.
        proc.send_signal(signal.SIGCONT)
        line = await asyncio.wait_for(proc.stdout.readline(), scaled(10))
        assert "closed" in json.loads(line), line
        assert took < FOUND_WITHIN_S
    finally:
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGCONT)
                proc.kill()
            await proc.wait()


class FreezingProxy:
    """A TCP proxy on loopback. Until :meth:`freeze` it forwards bytes both ways; then it
    stops reading and writing on both sides and closes neither: to the coordinator, the
    worker's socket goes silent without a FIN, and the worker is never told either."""

    def __init__(self, port: int) -> None:
        self.port = port
        self._pumps: list[asyncio.Task[None]] = []
        self._writers: list[asyncio.StreamWriter] = []
        self._server: asyncio.Server | None = None

    async def start(self) -> str:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        return f"ws://127.0.0.1:{port}/ws"

    async def _accept(self, down_r: asyncio.StreamReader, down_w: asyncio.StreamWriter) -> None:
        up_r, up_w = await asyncio.open_connection("127.0.0.1", self.port)
        self._writers += [down_w, up_w]
        loop = asyncio.get_running_loop()
        self._pumps += [
            loop.create_task(self._pump(down_r, up_w)),
            loop.create_task(self._pump(up_r, down_w)),
        ]
        # Returns without closing anything: the pumps own the connection.

    async def _pump(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        while data := await source.read(65536):
            sink.write(data)
            await sink.drain()
        sink.write_eof()

    def freeze(self) -> None:
        for pump in self._pumps:
            pump.cancel()
        for writer in self._writers:
            writer.transport.pause_reading()  # nothing read from either side any more

    async def close(self) -> None:
        for pump in self._pumps:
            pump.cancel()
        await asyncio.gather(*self._pumps, return_exceptions=True)
        for writer in self._writers:
            writer.transport.abort()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()


async def test_a_half_open_socket_is_dropped_and_its_slot_reused(
    live: LiveFactory, clients: Any
) -> None:
    server: Live = await live(heartbeat_s=HEARTBEAT_S, monitor_k=2)
    await server.coordinator.add_task(_round_plan())
    port = urlsplit(server.url).port
    assert port is not None
    proxy = FreezingProxy(port)
    behind: RawClient | None = None
    try:
        behind = await RawClient.connect(await proxy.start())
        assert (await behind.hello("half-open-worker"))["type"] == "welcome"
        assert (await assigned(behind))["round"] == 1
        steady = await joined(server, clients, "steady-worker")
        steady_task = await assigned(steady)
        newcomer = await joined(server, clients, "late-worker")
        await _turned_away(newcomer)
        await _holds_its_slot(server, "half-open-worker", newcomer)  # pongs pass the proxy

        proxy.freeze()
        took = await _dropped_within(server, "half-open-worker", FOUND_WITHIN_S)
        await _slot_reused(server, "half-open-worker", (steady, steady_task), newcomer)
        assert took < FOUND_WITHIN_S
        # Half-open indeed: nothing reached the worker, which still believes it is connected.
        assert behind.ws.state is State.OPEN
    finally:
        await proxy.close()  # the worker's socket ends now: its close below does not wait
        if behind is not None:
            await behind.close()
