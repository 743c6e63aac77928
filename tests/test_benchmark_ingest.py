"""The ingest benchmark's two sides (benchmarks/ingest.py, bare_ws_server.py): the bare server
answers a worker's whole round as the coordinator does, and both move the same bytes."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import websockets

from benchmarks.ingest import measure_ingest
from dandelion.protocol import decode_frame
from dandelion.transport.validation import SchemaValidator
from tests.conftest import free_port, wait_for_port

ROOT = Path(__file__).resolve().parent.parent
D = 1000


@pytest.fixture
def bare_server() -> Iterator[str]:
    port = free_port()
    script = ROOT / "benchmarks" / "bare_ws_server.py"
    proc = subprocess.Popen([sys.executable, str(script), str(port), str(D)])
    try:
        wait_for_port(port, proc)
        yield f"ws://127.0.0.1:{port}/ws"
    finally:
        proc.terminate()
        proc.wait()


async def test_bare_server_answers_a_checkin_with_a_valid_task_and_a_d_float32_model(
    bare_server: str,
) -> None:
    async with websockets.connect(bare_server, compression=None) as ws:
        await ws.send('{"type":"checkin","v":1}')
        task = json.loads(await ws.recv(decode=True))
        frame = decode_frame(await ws.recv(decode=False))
        # The coordinator's own validator accepts the bare server's task message.
        assert SchemaValidator()(task) is None
        assert task["type"] == "task" and task["model"]["param_count"] == D
        assert frame.header.type == "model" and frame.header.shape == (D,)
        assert np.frombuffer(frame.payload, dtype="<f4").size == D
        await ws.send(json.dumps({"type": "update", "v": 1}))
        await ws.send(bytes(4 * D))
        assert json.loads(await ws.recv(decode=True))["type"] == "ack"
        await ws.send('{"type":"checkin","v":1}')
        assert json.loads(await ws.recv(decode=True))["round"] == task["round"] + 1


async def test_both_sides_go_through_whole_rounds_and_move_the_same_bytes() -> None:
    figures = await measure_ingest(clients=3, repeats=2, block_rounds=2, d=D)
    assert figures["updates"] == 3 * 2 * 2
    moved = figures["round_bytes_per_update"]
    # Each update's round holds at least the model frame and the update frame.
    assert moved["bare"] > 2 * 4 * D and moved["coordinator"] > 2 * 4 * D
    assert abs(moved["bare"] - moved["coordinator"]) / moved["coordinator"] < 0.03
    for key in ("round_server_cpu_ratio_spread", "server_cpu_ratio_spread"):
        spread = figures[key]
        assert spread["n"] == 2
    # The whole round holds the update window, so the coordinator spends more in it.
    assert figures["round_coordinator_cpu_us_per_update"] > figures["coordinator_cpu_us_per_update"]
    assert figures["rss_ratio"] == pytest.approx(1.0, abs=0.2)
