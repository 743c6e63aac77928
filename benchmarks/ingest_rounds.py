"""The clients of ``ingest.py``: one side's workers going through whole rounds, timed two ways.

A side is one server (the coordinator or the bare server) and ``clients`` WebSocket connections
to it from this process, opened once. Each round every client goes through what a worker goes
through — check-in, the task message and the model frame (or ``come_back`` and a retry while
the next round is not yet open), the update (a text message and a d-float32 frame), the ack —
and the clients wait for each other at three points: before the check-in, before the update and
after the ack. At each point the server's own CPU time is read from /proc (every thread's
schedstat), so every round gives two windows:

- the whole round, check-in → ack: what a server spends per update a worker delivers;
- update → ack: the ingest window alone (what this benchmark timed before).

The clients also count the bytes they sent and received over the whole round, so the two sides
can be seen to move the same bytes.

Rules of this file: clients and /proc reads only; no figures beyond sums (``ingest.py`` makes
them).
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import websockets

from dandelion.protocol import FrameHeader, encode_frame

__all__ = ["Block", "Side", "Window", "bytes_written", "cpu_seconds", "peak_rss_mb"]

_CHECKIN = '{"type":"checkin","v":1}'


def cpu_seconds(pid: int) -> float:
    """CPU seconds the threads of process ``pid`` have run so far, to the nanosecond: the sum of
    /proc/PID/task/*/schedstat (the clock ticks of /proc/PID/stat, 10 ms, are too coarse for a
    block of a few hundred milliseconds). A thread that ended takes its time with it; the
    servers here keep theirs (the event loop, the SQLite writer)."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            total += int((task / "schedstat").read_text().split()[0])
        except (FileNotFoundError, ProcessLookupError):
            continue  # the thread ended between the listing and the read
    return total / 1e9


def bytes_written(pid: int) -> int:
    """Bytes the process caused to be sent to the storage layer (``write_bytes`` of
    /proc/PID/io: the state file, its WAL and its checkpoints)."""
    for line in Path(f"/proc/{pid}/io").read_text().splitlines():
        if line.startswith("write_bytes:"):
            return int(line.split()[1])
    raise RuntimeError("no write_bytes")


def peak_rss_mb(pid: int) -> float:
    """The process's peak resident memory (VmHWM), MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM")


@dataclass
class Window:
    """Wall and server CPU seconds summed over one kind of window, and the updates in them."""

    wall: float = 0.0
    cpu: float = 0.0
    updates: int = 0

    def cpu_us_per_update(self) -> float:
        return 1e6 * self.cpu / self.updates

    def updates_per_s(self) -> float:
        return self.updates / self.wall


@dataclass
class Block:
    """One side's timed rounds, run back to back."""

    whole: Window = field(default_factory=Window)  # check-in -> ack
    update: Window = field(default_factory=Window)  # update -> ack
    moved: int = 0  # bytes the clients sent and received over the whole rounds
    written: int = 0  # bytes the server sent to storage over the whole rounds
    latencies: list[float] = field(default_factory=list)  # update sent -> answer, seconds


def _update(task: str, rnd: int, nonce: str, values: np.ndarray) -> tuple[str, bytes]:
    text = json.dumps(
        {
            "type": "update",
            "v": 1,
            "task": task,
            "round": rnd,
            "nonce": nonce,
            "num_examples": 10,
            "metrics": {"loss": 0.5},
            "unclipped": False,
        }
    )
    header = FrameHeader("update", task, rnd, nonce, "float32", (values.size,))
    return text, encode_frame(header, values.tobytes())


def _hello(i: int) -> str:
    return json.dumps(
        {
            "type": "hello",
            "v": 1,
            "worker_id": f"bench-{i:06d}",
            "versions": [1],
            "runtime": {"kind": "cpython"},
            "consent": "opted_in",
        }
    )


class Side:
    """``clients`` connections to the server at ``url`` (process ``pid``). ``welcomes``: the
    server answers a hello (the coordinator does; the bare server reads it and stays quiet)."""

    def __init__(self, url: str, pid: int, clients: int, d: int, *, welcomes: bool) -> None:
        self.url, self.pid, self.clients, self.welcomes = url, pid, clients, welcomes
        rng = np.random.default_rng(0)
        self._payloads = [rng.normal(size=d).astype("<f4") for _ in range(4)]
        self._conns: list[Any] = []
        self._rounds = 0

    async def connect(self) -> None:
        async def one(i: int) -> Any:
            ws = await websockets.connect(self.url, compression=None, max_size=2**26)
            await ws.send(_hello(i))
            if self.welcomes:
                reply = json.loads(await ws.recv())
                assert reply["type"] == "welcome", reply
            return ws

        self._conns = list(await asyncio.gather(*(one(i) for i in range(self.clients))))

    async def close(self) -> None:
        await asyncio.gather(*(ws.close() for ws in self._conns))

    async def run(self, rounds: int) -> Block:
        """``rounds`` whole rounds of every client, timed; the sums over them."""
        block = Block()
        barrier = asyncio.Barrier(self.clients)
        marks: dict[str, float] = {}
        pid = self.pid

        async def mark(point: str) -> None:
            if await barrier.wait() != 0:
                return
            now, cpu = time.perf_counter(), cpu_seconds(pid)
            if point == "checkin":
                marks.update(t0=now, c0=cpu, w0=bytes_written(pid))
            elif point == "update":
                marks.update(t1=now, c1=cpu)
            else:
                block.whole.wall += now - marks["t0"]
                block.whole.cpu += cpu - marks["c0"]
                block.update.wall += now - marks["t1"]
                block.update.cpu += cpu - marks["c1"]
                block.whole.updates += self.clients
                block.update.updates += self.clients
                block.written += bytes_written(pid) - int(marks["w0"])

        async def one(i: int, ws: Any) -> None:
            for r in range(rounds):
                moved = 0
                await mark("checkin")
                while True:
                    await ws.send(_CHECKIN)
                    raw = await ws.recv()
                    moved += len(_CHECKIN) + len(raw)
                    msg = json.loads(raw)
                    if msg["type"] == "task":
                        moved += len(await ws.recv())  # the model frame
                        break
                    assert msg["type"] == "come_back", msg
                    await asyncio.sleep(msg["retry_window"]["min_s"])
                values = self._payloads[(i + self._rounds + r) % len(self._payloads)]
                text, frame = _update(msg["task"], msg["round"], msg["nonce"], values)
                await mark("update")
                sent = time.perf_counter()
                await ws.send(text)
                await ws.send(frame)
                reply = await ws.recv()
                block.latencies.append(time.perf_counter() - sent)
                assert json.loads(reply)["type"] == "ack", reply
                block.moved += moved + len(text) + len(frame) + len(reply)
                await mark("ack")

        await asyncio.gather(*(one(i, ws) for i, ws in enumerate(self._conns)))
        self._rounds += rounds
        return block
