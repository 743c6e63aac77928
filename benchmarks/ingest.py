"""Ingest benchmark: the aggregation kernel, the coordinator's CPU per update, and its memory.

Three measurements, each side by side in one run:

(a) kernel: decode + norm + clip + saxpy-add of a d-float32 update vs a plain memory copy of the
    same payload (``benchmarks/kernel.py``).
(b) CPU per update: the real coordinator (``dandelion serve`` in its own process, SQLite state)
    vs a bare aiohttp WebSocket server (``benchmarks/bare_ws_server.py``), both running at once
    and fed by the same number of clients from this process. Every round each client goes
    through a worker's whole round — check-in, the task message and a d-float32 model frame,
    the update (a text message and a d-float32 frame), the ack — and both servers move the same
    bytes (the clients count them). The server's own CPU time is read from /proc over two
    windows of every round (``benchmarks/ingest_rounds.py``): the whole round, check-in → ack,
    and update → ack alone (the figure this benchmark reported first). The two sides run in
    interleaved blocks of ``--block-rounds`` rounds (bare, coordinator; then coordinator, bare;
    …), ``--repeats`` pairs of blocks: each pair gives one ratio, reported as the median with
    its quartiles and extremes.
(c) memory: the coordinator's peak RSS (VmHWM) after its first round (``clients`` updates) and
    after all rounds: O(d), not O(updates).

What each side's clock leaves out is in ``EXCLUDES`` and in the output.

    python benchmarks/ingest.py --json            # 100 clients, 10 x 10 rounds a side, d = 100,000

With ``--json`` the last line is one JSON object with ``kernel_vs_copy``, ``round_server_cpu_ratio``
(server CPU per update over the whole round, bare / coordinator, median of the pairs) and its
``round_server_cpu_ratio_spread``, the same for update → ack alone (``server_cpu_ratio``,
``server_cpu_ratio_spread``; ``ingest_vs_bare`` is that window's updates per second,
coordinator / bare), the bytes each side moved per update, and ``rss_ratio``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.ingest_rounds import Block, Side, peak_rss_mb  # noqa: E402
from benchmarks.kernel import measure_kernel  # noqa: E402
from benchmarks.paired import pair_order, paired_ratios  # noqa: E402

#: What each side's CPU windows leave out (both: the clients, which run in this process; the
#: connections' opening and hello, before the first window).
EXCLUDES = {
    "coordinator": (
        "its start, the task's set-up and each connection's handshake and hello/welcome; the "
        "idle time between blocks (its round timer ticks then, untimed); nothing of a round: "
        "check-ins answered with come_back while the next round opens, selection, the task "
        "message and model frame, schema validation, decode, clip, add, the participation "
        "events and checkpoints in SQLite, the round's aggregation and commit are all inside"
    ),
    "bare": (
        "everything a coordinator does beyond moving bytes: no parsing, schema validation, "
        "session state, selection, decode, clip or aggregate, no storage; its task message is "
        "a formatted string and its model frame is encoded once at start and resent as it is"
    ),
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


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
objective = "revisit_7d"
[features]
num_buckets = {d - 21}
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


def _commands(tmp: Path, d: int, clients: int) -> dict[str, tuple[list[str], int]]:
    ports = {"bare": _free_port(), "coordinator": _free_port()}
    bare = [sys.executable, str(ROOT / "benchmarks" / "bare_ws_server.py"), str(ports["bare"])]
    coordinator = [sys.executable, "-m", "dandelion", "serve", "--port", str(ports["coordinator"])]
    coordinator += ["--db", str(tmp / "bench.db"), "--task", str(_task_file(tmp, d, clients))]
    coordinator += ["--tick-s", "0.01", "--pace-min-s", "0.005", "--pace-max-s", "0.05"]
    coordinator += ["--log-level", "WARNING"]
    coordinator += ["--max-handshakes-per-address", str(2 * clients + 100)]
    return {
        "bare": ([*bare, str(d)], ports["bare"]),
        "coordinator": (coordinator, ports["coordinator"]),
    }


async def measure_ingest(clients: int, repeats: int, block_rounds: int, d: int) -> dict[str, Any]:
    """Run both servers, ``repeats`` interleaved pairs of ``block_rounds`` rounds a side."""
    procs: dict[str, subprocess.Popen[bytes]] = {}
    with tempfile.TemporaryDirectory(prefix="dandelion-bench-") as tmp_name:
        try:
            sides: dict[str, Side] = {}
            for kind, (cmd, port) in _commands(Path(tmp_name), d, clients).items():
                procs[kind] = subprocess.Popen(cmd, cwd=ROOT)
                await _wait_healthy(port, procs[kind])
                url = f"ws://127.0.0.1:{port}/ws"
                sides[kind] = Side(url, procs[kind].pid, clients, d, welcomes=kind == "coordinator")
                await sides[kind].connect()
            # One untimed round a side: first connections' buffers, the coordinator's first
            # round and its first checkpoint.
            for side in sides.values():
                await side.run(1)
            rss_first = peak_rss_mb(procs["coordinator"].pid)
            blocks: dict[str, list[Block]] = {"bare": [], "coordinator": []}
            for rep in range(repeats):
                for k in pair_order(rep):
                    kind = ("bare", "coordinator")[k]
                    blocks[kind].append(await sides[kind].run(block_rounds))
            rss_last = peak_rss_mb(procs["coordinator"].pid)
            for side in sides.values():
                await side.close()
        finally:
            for proc in procs.values():
                proc.terminate()
                proc.wait()
    return {
        "clients": clients,
        "d": d,
        "repeats": repeats,
        "block_rounds": block_rounds,
        **figures(blocks["bare"], blocks["coordinator"]),
        "update_bytes": 4 * d,
        "rss_after_first_round_mb": round(rss_first, 1),
        "rss_after_all_mb": round(rss_last, 1),
        "updates_at_first_mark": clients,
        "rss_ratio": round(rss_last / rss_first, 3),
        "excludes": EXCLUDES,
    }


def figures(bare: list[Block], coord: list[Block]) -> dict[str, Any]:
    """The side-by-side figures of paired blocks (``bare[i]`` beside ``coord[i]``)."""
    b_round = [b.whole.cpu_us_per_update() for b in bare]
    c_round = [b.whole.cpu_us_per_update() for b in coord]
    b_update = [b.update.cpu_us_per_update() for b in bare]
    c_update = [b.update.cpu_us_per_update() for b in coord]
    round_ratio = paired_ratios(b_round, c_round)
    update_ratio = paired_ratios(b_update, c_update)
    # The coordinator's CPU per update that falls outside update -> ack, within each block.
    outside = paired_ratios([c - u for c, u in zip(c_round, c_update, strict=True)], c_round)
    latencies = [x for b in bare for x in b.latencies]
    acks = [x for b in coord for x in b.latencies]
    c_updates = sum(b.whole.updates for b in coord)
    return {
        "updates": c_updates,
        # Whole round, check-in -> ack: server CPU per update.
        "round_bare_cpu_us_per_update": _median(b_round),
        "round_coordinator_cpu_us_per_update": _median(c_round),
        "round_server_cpu_ratio": round_ratio["median"],
        "round_server_cpu_ratio_spread": round_ratio,
        "coordinator_cpu_share_outside_update_to_ack": outside["median"],
        "round_bare_updates_per_s": _median([b.whole.updates_per_s() for b in bare]),
        "round_coordinator_updates_per_s": _median([b.whole.updates_per_s() for b in coord]),
        "round_bytes_per_update": {
            "bare": round(sum(b.moved for b in bare) / sum(b.whole.updates for b in bare)),
            "coordinator": round(sum(b.moved for b in coord) / c_updates),
        },
        # Update -> ack alone (the ingest window), labelled as such.
        "bare_server_cpu_us_per_update": _median(b_update),
        "coordinator_cpu_us_per_update": _median(c_update),
        "server_cpu_ratio": update_ratio["median"],
        "server_cpu_ratio_spread": update_ratio,
        "bare_updates_per_s": _median([b.update.updates_per_s() for b in bare]),
        "coordinator_updates_per_s": _median([b.update.updates_per_s() for b in coord]),
        "ingest_vs_bare": paired_ratios(
            [b.update.updates_per_s() for b in coord], [b.update.updates_per_s() for b in bare]
        )["median"],
        # An ack waits for the checkpoint that holds its update (at least k = 10 reports).
        "bare_answer_ms_median": _ms(latencies, 50),
        "coordinator_ack_ms_median": _ms(acks, 50),
        "coordinator_ack_ms_p95": _ms(acks, 95),
        "coordinator_bytes_written_per_update": round(sum(b.written for b in coord) / c_updates),
    }


def _median(values: list[float]) -> float:
    return round(float(np.median(values)), 1)


def _ms(values: list[float], q: float) -> float:
    return round(1000 * float(np.percentile(values, q)), 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=10, help="pairs of blocks [10]")
    parser.add_argument("--block-rounds", type=int, default=10, help="rounds per block [10]")
    parser.add_argument("--d", type=int, default=100_000)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.repeats < 2:
        parser.error("--repeats must be at least 2 (a spread needs more than one pair)")
    kernel = measure_kernel(args.d)
    print(f"kernel: {kernel}", file=sys.stderr)
    ingest = asyncio.run(measure_ingest(args.clients, args.repeats, args.block_rounds, args.d))
    for side, text in EXCLUDES.items():
        print(f"{side} leaves out: {text}", file=sys.stderr)
    print(f"ingest: {ingest}", file=sys.stderr)
    result = {"kernel_vs_copy": kernel["kernel_vs_copy"], **ingest, "kernel": kernel}
    print(json.dumps(result) if args.json else json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
