"""SIGKILL the coordinator at random moments of its rounds, fifty times: every acknowledged
report is in the state file afterwards, the file opens cleanly, and the coordinator resumes from
its last committed model every time."""

from __future__ import annotations

import asyncio
import random
import sqlite3
from pathlib import Path
from typing import Any

import numpy as np
import websockets

from .conftest import RawClient, scaled
from .test_coordinator_live import report
from .test_kill_restart import Server

KILLS = 50


async def _worker(
    url: str,
    name: str,
    acked: list[tuple[str, str, int]],
    rng: np.random.Generator,
    seen: list[int],
) -> None:
    """Report round after round until the connection dies; record every ack."""
    try:
        client = await RawClient.connect(url)
        if (await client.hello(name))["type"] != "welcome":
            return
        while True:
            msg, _ = await client.checkin()
            if msg["type"] != "task":
                await asyncio.sleep(0.01)
                continue
            seen.append(msg["model_version"])
            reply = await report(client, msg, rng.normal(size=11) * 0.1)
            if reply["type"] == "ack":
                acked.append((name, msg["task"], msg["round"]))
    except (websockets.ConnectionClosed, OSError, TimeoutError, AssertionError):
        return


def _state(db: Path) -> dict[str, Any]:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        reported = set(
            conn.execute("SELECT worker_id, task, round FROM events WHERE event = 'reported'")
        )
        versions = [
            v for (v,) in conn.execute("SELECT version FROM model_versions ORDER BY version")
        ]
        completed = {
            r for (r,) in conn.execute("SELECT round FROM rounds WHERE status = 'completed'")
        }
        rounds_of_versions = {
            r for (r,) in conn.execute("SELECT round FROM model_versions WHERE version > 0")
        }
    return {
        "reported": reported,
        "versions": versions,
        "completed": completed,
        "rounds_of_versions": rounds_of_versions,
    }


async def test_fifty_random_kills_lose_nothing_acknowledged(tmp_path: Path) -> None:
    server = Server(tmp_path)
    rand = random.Random(7)
    rng = np.random.default_rng(7)
    acked: list[tuple[str, str, int]] = []
    resumed_from: list[int] = []
    try:
        for kill in range(KILLS):
            await server.start()
            state = _state(server.db)
            seen: list[int] = []
            workers = [
                asyncio.create_task(
                    _worker(server.url, f"worker-k{kill:02d}-{i}", acked, rng, seen)
                )
                for i in range(3)
            ]
            await asyncio.sleep(rand.uniform(0.0, 1.2))  # somewhere in a round
            server.kill()
            await asyncio.wait(workers, timeout=scaled(10))
            if seen:  # the first assignment after a restart is of the last committed model
                assert min(seen) == state["versions"][-1], (kill, seen, state["versions"][-1])
                resumed_from.append(min(seen))
            after = _state(server.db)
            missing = set(acked) - after["reported"]
            assert not missing, f"kill {kill}: acknowledged but lost: {sorted(missing)[:5]}"
            # Model versions are contiguous, and every completed round has its version.
            assert after["versions"] == list(range(len(after["versions"])))
            assert after["completed"] == after["rounds_of_versions"]
        assert len(acked) > KILLS  # reports were really acknowledged between the kills
        assert len(resumed_from) >= KILLS // 2
        assert _state(server.db)["versions"][-1] >= 3  # rounds were committed between kills
    finally:
        if server.proc is not None and server.proc.poll() is None:
            server.proc.terminate()
            server.proc.wait()
