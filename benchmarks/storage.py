"""State backends side by side: the SQLite file and a PostgreSQL database, through the same
``AsyncStore`` (one writer thread, group commit) the coordinator uses.

Two measurements, interleaved repeat by repeat (SQLite, PostgreSQL, SQLite, …) in one run, after
one repeat of each that warms them up and is not counted:

(a) events: ``callers`` concurrent tasks each await ``record_events`` of one participation event,
    ``per_caller`` times — what acknowledging reports asks of the store (each caller is answered
    only after its COMMIT; callers queued meanwhile share the next transaction).
(b) checkpoints: one round checkpoint of a ``d``-float32 aggregate with the events of the reports
    it covers, in one transaction, awaited one after another — a round's durable step.
(c) ingest: the real coordinator (``dandelion serve`` in its own process) on each backend, both
    running at once, fed by ``benchmarks/ingest.py``'s clients (``ingest_rounds.Side``: each
    round every client checks in, takes the model, sends one update and waits for its ack;
    the update -> ack window is timed), ``ingest_rounds`` rounds a side per repeat, in
    alternating order.

    python benchmarks/storage.py --json                  # a temporary PostgreSQL is started
    python benchmarks/storage.py --pg-url postgresql://… # or an existing, empty database

With ``--json`` the last line is one JSON object with ``pg_vs_sqlite_events`` (events per second,
PostgreSQL / SQLite: the median of the per-repeat ratios, and their range) and
``pg_vs_sqlite_checkpoint`` (checkpoint time, PostgreSQL / SQLite) and ``pg_vs_sqlite_ingest``
(the coordinator's acknowledged updates per second, PostgreSQL / SQLite).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.ingest import _task_file, _wait_healthy  # noqa: E402
from benchmarks.ingest_rounds import Side  # noqa: E402
from benchmarks.paired import pair_order  # noqa: E402
from dandelion.storage import (  # noqa: E402
    AsyncStore,
    ModelVersion,
    ParticipationEvent,
    RoundCheckpoint,
    RoundRecord,
    StateStore,
    TaskRecord,
)
from dandelion.storage.location import open_state  # noqa: E402


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _prepare(store: StateStore, d: int) -> None:
    store.create_task(TaskRecord("bench", {"objective": "x"}, "active", 1.0))
    store.save_model_version(ModelVersion("bench", 0, 0, b"\0" * (4 * d), b"", 1.0, {}))
    store.open_round(RoundRecord("bench", 1, 0, "open", 1.0, None, 100))


async def _events(store: AsyncStore, callers: int, per_caller: int, first: int) -> float:
    async def caller(index: int) -> None:
        for j in range(per_caller):
            worker = f"w{first}-{index}-{j}"
            await store.record_events([ParticipationEvent(worker, "bench", 1, "reported", 1.0)])

    start = time.perf_counter()
    await asyncio.gather(*(caller(i) for i in range(callers)))
    return callers * per_caller / (time.perf_counter() - start)


async def _checkpoints(store: AsyncStore, count: int, d: int, events: int, first: int) -> float:
    blob = bytes(4 * d)
    times = []
    for n in range(count):
        batch = [
            ParticipationEvent(f"c{first}-{n}-{i}", "bench", 1, "reported", 1.0)
            for i in range(events)
        ]
        checkpoint = RoundCheckpoint("bench", 1, "secret", blob, 0, float(n))

        def job(
            s: StateStore, b: list[ParticipationEvent] = batch, c: RoundCheckpoint = checkpoint
        ) -> None:
            s.record_events(b)
            s.save_round_checkpoint(c)

        start = time.perf_counter()
        await store.write(job)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _serve(db: str, folder: Path, clients: int, d: int) -> tuple[list[str], int]:
    port = _free_port()
    cmd = [sys.executable, "-m", "dandelion", "serve", "--port", str(port), "--db", db]
    cmd += ["--task", str(_task_file(folder, d, clients))]
    cmd += ["--tick-s", "0.01", "--pace-min-s", "0.005", "--pace-max-s", "0.05"]
    cmd += ["--log-level", "WARNING", "--max-handshakes-per-address", str(2 * clients + 100)]
    return cmd, port


async def _ingest(
    dbs: dict[str, str], folder: Path, clients: int, rounds: int, repeats: int, d: int
) -> dict[str, list[float]]:
    """Both coordinators at once, one per state; ``repeats`` interleaved blocks of ``rounds``
    rounds a side after one untimed round: acknowledged updates per second (update -> ack)."""
    procs: dict[str, subprocess.Popen[bytes]] = {}
    rates: dict[str, list[float]] = {name: [] for name in dbs}
    try:
        sides: dict[str, Side] = {}
        for name, db in dbs.items():
            cmd, port = _serve(db, folder, clients, d)
            procs[name] = subprocess.Popen(cmd, cwd=ROOT)
            await _wait_healthy(port, procs[name])
            sides[name] = Side(
                f"ws://127.0.0.1:{port}/ws", procs[name].pid, clients, d, welcomes=True
            )
            await sides[name].connect()
        for side in sides.values():
            await side.run(1)
        names = list(dbs)
        for rep in range(repeats):
            for k in pair_order(rep):
                block = await sides[names[k]].run(rounds)
                rates[names[k]].append(block.update.updates_per_s())
        for side in sides.values():
            await side.close()
    finally:
        for proc in procs.values():
            proc.terminate()
            proc.wait()
    return rates


def _spread(values: list[float]) -> dict[str, float]:
    return {
        "median": round(statistics.median(values), 3),
        "min": round(min(values), 3),
        "max": round(max(values), 3),
    }


async def _run(args: argparse.Namespace, pg_url: str, folder: Path) -> dict[str, Any]:
    locations = {"sqlite": str(folder / "bench.db"), "postgresql": pg_url}
    stores: dict[str, AsyncStore] = {}
    for name, db in locations.items():
        prepared = open_state(db)
        _prepare(prepared, args.d)
        prepared.close()
        stores[name] = AsyncStore(_factory(db))
    rates: dict[str, list[float]] = {name: [] for name in stores}
    checkpoints: dict[str, list[float]] = {name: [] for name in stores}
    try:
        for repeat in range(-1, args.repeats):  # repeat -1 warms both up and is not counted
            for name, store in stores.items():
                rate = await _events(store, args.callers, args.per_caller, (repeat + 1) * 10**6)
                took = await _checkpoints(store, args.checkpoints, args.d, args.reports, repeat)
                if repeat >= 0:
                    rates[name].append(rate)
                    checkpoints[name].append(took)
    finally:
        for store in stores.values():
            await store.close()
    ingest: dict[str, list[float]] = {name: [] for name in stores}
    if args.ingest_rounds:
        dbs = {"sqlite": str(folder / "ingest.db"), "postgresql": args.ingest_pg_url}
        ingest = await _ingest(dbs, folder, args.clients, args.ingest_rounds, args.repeats, args.d)
    event_ratio = [p / s for p, s in zip(rates["postgresql"], rates["sqlite"], strict=True)]
    ckpt_ratio = [
        p / s for p, s in zip(checkpoints["postgresql"], checkpoints["sqlite"], strict=True)
    ]
    result: dict[str, Any] = {
        "callers": args.callers,
        "events_per_repeat": args.callers * args.per_caller,
        "d": args.d,
        "reports_per_checkpoint": args.reports,
        "repeats": args.repeats,
        "sqlite_events_per_s": _spread(rates["sqlite"]),
        "pg_events_per_s": _spread(rates["postgresql"]),
        "pg_vs_sqlite_events": _spread(event_ratio),
        "sqlite_checkpoint_ms": _spread([t * 1000 for t in checkpoints["sqlite"]]),
        "pg_checkpoint_ms": _spread([t * 1000 for t in checkpoints["postgresql"]]),
        "pg_vs_sqlite_checkpoint": _spread(ckpt_ratio),
    }
    if args.ingest_rounds:
        result.update(
            ingest_clients=args.clients,
            ingest_rounds=args.ingest_rounds,
            sqlite_ingest_updates_per_s=_spread(ingest["sqlite"]),
            pg_ingest_updates_per_s=_spread(ingest["postgresql"]),
            pg_vs_sqlite_ingest=_spread(
                [p / q for p, q in zip(ingest["postgresql"], ingest["sqlite"], strict=True)]
            ),
        )
    return result


def _factory(db: str) -> Callable[[], StateStore]:
    return lambda: open_state(db, command="bench")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pg-url", help="an empty PostgreSQL database [a temporary server]")
    parser.add_argument("--callers", type=int, default=100)
    parser.add_argument("--per-caller", type=int, default=20)
    parser.add_argument("--checkpoints", type=int, default=20)
    parser.add_argument("--reports", type=int, default=10, help="events per checkpoint")
    parser.add_argument("--d", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--clients", type=int, default=100, help="ingest: WebSocket clients")
    parser.add_argument(
        "--ingest-rounds", type=int, default=10, help="ingest: rounds per repeat (0: skip)"
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="dandelion-bench-storage-") as tmp:
        server = None
        url = args.pg_url
        if url is None:
            from tests.pg_server import PostgresServer

            server = PostgresServer(_free_port())
            server.start()
            url = server.database()
            args.ingest_pg_url = server.database()
        else:
            args.ingest_pg_url = None
            args.ingest_rounds = 0  # an existing database holds one state: (a) and (b) only
        try:
            result = asyncio.run(_run(args, url, Path(tmp)))
        finally:
            if server is not None:
                server.stop()
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key}: {value}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
