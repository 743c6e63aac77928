"""Ingest benchmark: the aggregation kernel, the coordinator's ingest, and its memory.

Three measurements, each side by side in one run:

(a) kernel: decode + norm + clip + saxpy-add of a d-float32 update vs a plain memory copy of the
    same payload (``benchmarks/kernel.py``).
(b) ingest: the real coordinator (``dandelion serve`` in its own process, SQLite state) vs a bare
    aiohttp WebSocket server that only receives (``benchmarks/bare_ws_server.py``), fed by the
    same clients from this process. Each round every client sends one update (a text message and
    a d-float32 frame) and waits for its answer; only that reporting phase is timed, and the
    server's own CPU time over it is read from /proc. For the coordinator every update is
    validated, decoded, clipped, added, recorded in SQLite and acknowledged.
(c) memory: the coordinator's peak RSS (VmHWM) after the first round (``clients`` updates) and
    after all rounds (``clients * rounds`` updates): O(d), not O(updates).

    python benchmarks/ingest.py --json            # 100 clients x 100 rounds, d = 100,000

With ``--json`` the last line is one JSON object with ``kernel_vs_copy``, ``ingest_vs_bare``
(updates per second, coordinator / bare), ``server_cpu_ratio`` (server CPU per update, bare /
coordinator) and ``rss_ratio``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import websockets

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.kernel import measure_kernel  # noqa: E402
from dandelion.protocol import FrameHeader, encode_frame  # noqa: E402

_TICK = os.sysconf("SC_CLK_TCK")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICK


def bytes_written(pid: int) -> int:
    """Bytes the process caused to be sent to the storage layer (``write_bytes`` of
    /proc/PID/io: the state file, its WAL and its checkpoints)."""
    for line in Path(f"/proc/{pid}/io").read_text().splitlines():
        if line.startswith("write_bytes:"):
            return int(line.split()[1])
    raise RuntimeError("no write_bytes")


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM")


@dataclass
class Phase:
    """Timing of the reporting phases of one server."""

    wall: float = 0.0
    cpu: float = 0.0
    updates: int = 0
    rss_first_mb: float = 0.0
    rss_last_mb: float = 0.0
    marks: list[float] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)  # update sent -> answer, seconds
    written: int = 0  # bytes the server sent to storage over the timed phases


async def _wait_healthy(port: int, proc: subprocess.Popen[bytes]) -> None:
    async with aiohttp.ClientSession() as http:
        for _ in range(400):
            if proc.poll() is not None:
                raise RuntimeError("server exited during start-up")
            try:
                async with http.get(f"http://127.0.0.1:{port}/healthz") as r:
                    if r.status == 200 and (await r.json())["tasks"] >= 1:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.05)
    raise RuntimeError("server did not start")


def _task_file(tmp: Path, d: int, clients: int) -> Path:
    path = tmp / "bench.toml"
    path.write_text(
        f"""
name = "bench"
objective = "page_examples"  # the clients send updates; what they learn from is theirs
[model]
kind = "logreg"
num_features = {d - 1}
[hyper]
clip_norm = 1.0
[rounds]
goal = {clients}
min_reports = {clients}
over_selection = 1.0
deadline_s = 600.0
"""
    )
    return path


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


async def _run_clients(
    url: str, pid: int, clients: int, rounds: int, d: int, coordinator: bool
) -> Phase:
    phase = Phase()
    barrier = asyncio.Barrier(clients)
    rng = np.random.default_rng(0)
    payloads = [rng.normal(size=d).astype("<f4") for _ in range(4)]
    marks: dict[str, float] = {}

    async def mark_start() -> None:
        if await barrier.wait() == 0:
            marks["t"], marks["c"] = time.perf_counter(), cpu_seconds(pid)
            marks["w"] = bytes_written(pid)

    async def mark_end(rnd_index: int) -> None:
        if await barrier.wait() == 0:
            phase.wall += time.perf_counter() - marks["t"]
            phase.cpu += cpu_seconds(pid) - marks["c"]
            phase.written += bytes_written(pid) - int(marks["w"])
            phase.updates += clients
            if rnd_index == 0:
                phase.rss_first_mb = peak_rss_mb(pid)

    async def one(i: int) -> None:
        async with websockets.connect(url, compression=None, max_size=2**26) as ws:
            if coordinator:
                await ws.send(
                    json.dumps(
                        {
                            "type": "hello",
                            "v": 1,
                            "worker_id": f"bench-{i:06d}",
                            "versions": [1],
                            "runtime": {"kind": "cpython"},
                            "consent": "opted_in",
                        }
                    )
                )
                assert json.loads(await ws.recv())["type"] == "welcome"
            for r in range(rounds):
                task, rnd, nonce = "bench", r + 1, f"nonce-{i:06d}-{r:06d}"
                if coordinator:
                    while True:
                        await ws.send('{"type":"checkin","v":1}')
                        msg = json.loads(await ws.recv())
                        if msg["type"] == "task":
                            await ws.recv()  # the model frame
                            task, rnd, nonce = msg["task"], msg["round"], msg["nonce"]
                            break
                        await asyncio.sleep(msg["retry_window"]["min_s"])
                text, frame = _update(task, rnd, nonce, payloads[(i + r) % len(payloads)])
                await mark_start()
                sent = time.perf_counter()
                await ws.send(text)
                await ws.send(frame)
                reply = json.loads(await ws.recv())
                phase.latencies.append(time.perf_counter() - sent)
                assert reply["type"] == "ack", reply
                await mark_end(r)

    await asyncio.gather(*(one(i) for i in range(clients)))
    phase.rss_last_mb = peak_rss_mb(pid)
    return phase


async def measure_ingest(clients: int, rounds: int, d: int, bare_rounds: int) -> dict[str, Any]:
    results: dict[str, Phase] = {}
    with tempfile.TemporaryDirectory(prefix="dandelion-bench-") as tmp_name:
        tmp = Path(tmp_name)
        for kind in ("bare", "coordinator"):
            port = _free_port()
            if kind == "bare":
                cmd = [sys.executable, str(ROOT / "benchmarks" / "bare_ws_server.py"), str(port)]
            else:
                cmd = [
                    sys.executable,
                    "-m",
                    "dandelion",
                    "serve",
                    "--port",
                    str(port),
                    "--db",
                    str(tmp / "bench.db"),
                    "--task",
                    str(_task_file(tmp, d, clients)),
                    "--tick-s",
                    "0.01",
                    "--pace-min-s",
                    "0.005",
                    "--pace-max-s",
                    "0.05",
                    "--log-level",
                    "WARNING",
                    "--max-handshakes-per-address",
                    str(2 * clients + 100),
                ]
            proc = subprocess.Popen(cmd, cwd=ROOT)
            try:
                await _wait_healthy(port, proc)
                n = rounds if kind == "coordinator" else bare_rounds
                results[kind] = await _run_clients(
                    f"ws://127.0.0.1:{port}/ws", proc.pid, clients, n, d, kind == "coordinator"
                )
            finally:
                proc.terminate()
                proc.wait()
    bare, coord = results["bare"], results["coordinator"]
    bare_us = 1e6 * bare.cpu / bare.updates
    coord_us = 1e6 * coord.cpu / coord.updates
    return {
        "clients": clients,
        "d": d,
        "updates": coord.updates,
        "bare_server_cpu_us_per_update": round(bare_us, 1),
        "coordinator_cpu_us_per_update": round(coord_us, 1),
        "bare_updates_per_s": round(bare.updates / bare.wall, 1),
        "coordinator_updates_per_s": round(coord.updates / coord.wall, 1),
        # Ingest rate: the coordinator's updates per second over the bare server's.
        "ingest_vs_bare": round((coord.updates / coord.wall) / (bare.updates / bare.wall), 3),
        # Server CPU per update, bare over coordinator: the extra work per update, isolated.
        "server_cpu_ratio": round(bare_us / coord_us, 3),
        # An ack waits for the checkpoint that holds its update (at least k = 10 reports).
        "bare_answer_ms_median": _ms(bare.latencies, 50),
        "coordinator_ack_ms_median": _ms(coord.latencies, 50),
        "coordinator_ack_ms_p95": _ms(coord.latencies, 95),
        "coordinator_bytes_written_per_update": round(coord.written / coord.updates),
        "update_bytes": 4 * d,
        "rss_after_first_round_mb": round(coord.rss_first_mb, 1),
        "rss_after_all_mb": round(coord.rss_last_mb, 1),
        "updates_at_first_mark": clients,
        "rss_ratio": round(coord.rss_last_mb / coord.rss_first_mb, 3),
    }


def _ms(values: list[float], q: float) -> float:
    return round(1000 * float(np.percentile(values, q)), 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=100, help="coordinator rounds [100]")
    parser.add_argument("--bare-rounds", type=int, default=30, help="bare server rounds [30]")
    parser.add_argument("--d", type=int, default=100_000)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    kernel = measure_kernel(args.d)
    print(f"kernel: {kernel}", file=sys.stderr)
    ingest = asyncio.run(measure_ingest(args.clients, args.rounds, args.d, args.bare_rounds))
    print(f"ingest: {ingest}", file=sys.stderr)
    result = {"kernel_vs_copy": kernel["kernel_vs_copy"], **ingest, "kernel": kernel}
    print(json.dumps(result) if args.json else json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
