"""Dashboard latency under load: dashboard and admin-API requests while the coordinator
ingests updates from 1,000 emulated workers.

A real ``dandelion serve`` (its own process, SQLite state) runs a task whose rounds take every
worker; a second process runs the workers (the real ``browser_worker`` code over WebSockets,
each its own connection), reporting round after round. Meanwhile this process asks, over and
over, for what an open dashboard asks for — ``/api/v1/dashboard`` (the snapshot with its SVG
charts), ``/api/v1/participation`` and ``/metrics`` — and records each answer's latency. The
same requests are timed before the workers start (idle) for comparison.

    python benchmarks/dashboard_latency.py --json

With ``--json`` the last line is one JSON object with ``p95_ms_under_load`` (all three routes
together), per-route percentiles, the idle figures and the updates the coordinator accepted
during the measurement.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.ingest import _free_port  # noqa: E402

ROUTES = ("/api/v1/dashboard", "/api/v1/participation", "/metrics")


def _task(workers: int, d: int) -> str:
    return f"""
name = "load"
objective = "page_examples"
[model]
kind = "logreg"
num_features = {d}
[hyper]
learning_rate = 0.5
epochs = 1
batch_size = 8
clip_norm = 1.0
[rounds]
goal = {workers}
over_selection = 1.0
min_reports = {max(1, workers // 2)}
deadline_s = 30.0
"""


def run_workers(url: str, workers: int, updates: int, d: int) -> None:
    """The emulated population (runs in its own process)."""
    from browser_worker.host.cpython import CPythonHost
    from browser_worker.worker import Worker, WorkerConfig
    from dandelion.taskspec.models import Example

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, 4 * workers + 256)), hard))

    async def main() -> None:
        population = []
        for i in range(workers):
            data = [Example(((i + j) % d, (7 * j) % d), (1.0, 0.5), j % 2) for j in range(16)]
            config = WorkerConfig(url, worker_id=f"load-{i:05d}")
            population.append(Worker(CPythonHost(), config, lambda *_, data=data: data))
        await asyncio.gather(*(w.run(max_updates=updates) for w in population))

    asyncio.run(main())


async def _time_routes(
    base: str, token: str, seconds: float, stop: asyncio.Event | None
) -> dict[str, list[float]]:
    """Ask for each route in turn, as a dashboard would, for ``seconds`` (or until ``stop``)."""
    out: dict[str, list[float]] = {r: [] for r in ROUTES}
    deadline = time.monotonic() + seconds
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as http:
        while time.monotonic() < deadline and not (stop is not None and stop.is_set()):
            for route in ROUTES:
                t0 = time.perf_counter()
                async with http.get(base + route) as resp:
                    await resp.read()
                    assert resp.status == 200, (route, resp.status)
                out[route].append((time.perf_counter() - t0) * 1000)
            await asyncio.sleep(0.05)
    return out


def _percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {"n": 0}
    ordered = sorted(values)
    q = (
        statistics.quantiles(ordered, n=100, method="inclusive")
        if len(ordered) > 1
        else ordered * 99
    )
    return {
        "n": len(ordered),
        "p50_ms": q[49],
        "p95_ms": q[94],
        "p99_ms": q[98],
        "max_ms": ordered[-1],
    }


async def _accepted(base: str, token: str) -> float:
    auth = {"Authorization": f"Bearer {token}"}
    async with aiohttp.ClientSession(headers=auth) as http, http.get(base + "/metrics") as resp:
        text = await resp.text()
    for line in text.splitlines():
        if line.startswith('dandelion_updates_total{outcome="accepted"}'):
            return float(line.split()[-1])
    return 0.0


def _make_token(db: str) -> str:
    return subprocess.run(
        [sys.executable, "-m", "dandelion", "token", "create", "bench", "--db", db],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()


async def measure(workers: int, updates: int, d: int, idle_s: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="dandelion-dash-bench-") as tmp:
        db = str(Path(tmp) / "state.db")
        (Path(tmp) / "task.toml").write_text(_task(workers, d))
        token = _make_token(db)
        port = _free_port()
        server = subprocess.Popen(
            [
                *(sys.executable, "-m", "dandelion", "serve", "--port", str(port), "--db", db),
                *(
                    "--task",
                    str(Path(tmp) / "task.toml"),
                    "--pace-min-s",
                    "0.2",
                    "--pace-max-s",
                    "1",
                ),
                *("--log-level", "WARNING"),
                # Every emulated worker connects from 127.0.0.1.
                *("--max-connections-per-address", str(10 * workers)),
                *("--max-handshakes-per-address", str(10 * workers)),
            ],
        )
        base = f"http://127.0.0.1:{port}"
        try:
            async with aiohttp.ClientSession() as http:
                for _ in range(200):
                    try:
                        async with http.get(base + "/healthz") as resp:
                            if resp.status == 200:
                                break
                    except aiohttp.ClientError:
                        pass
                    await asyncio.sleep(0.1)
            idle = await _time_routes(base, token, idle_s, None)
            population = subprocess.Popen(
                [
                    sys.executable,
                    __file__,
                    "--run-workers",
                    f"ws://127.0.0.1:{port}/ws",
                    "--workers",
                    str(workers),
                    "--updates",
                    str(updates),
                    "--d",
                    str(d),
                ]
            )
            # Measure once the population is connected and reporting.
            while await _accepted(base, token) < workers:
                if population.poll() is not None:
                    raise RuntimeError("the workers exited early")
                await asyncio.sleep(0.5)
            start_accepted = await _accepted(base, token)
            stop = asyncio.Event()
            t0 = time.monotonic()

            async def watch() -> None:
                while population.poll() is None:
                    await asyncio.sleep(0.2)
                stop.set()

            watcher = asyncio.create_task(watch())
            loaded = await _time_routes(base, token, 3600.0, stop)
            wall = time.monotonic() - t0
            await watcher
            accepted = await _accepted(base, token) - start_accepted
        finally:
            server.terminate()
            server.wait(30)
    every_loaded = [v for vs in loaded.values() for v in vs]
    every_idle = [v for vs in idle.values() for v in vs]
    return {
        "workers": workers,
        "d": d,
        "p95_ms_under_load": _percentiles(every_loaded)["p95_ms"],
        "p95_ms_idle": _percentiles(every_idle)["p95_ms"],
        "under_load": {r: _percentiles(v) for r, v in loaded.items()},
        "idle": {r: _percentiles(v) for r, v in idle.items()},
        "updates_accepted_while_measured": accepted,
        "updates_per_s_while_measured": accepted / wall if wall else 0.0,
        "measured_s": wall,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=1000)
    parser.add_argument("--updates", type=int, default=4, help="updates per worker [4]")
    parser.add_argument("--d", type=int, default=1000, help="model size [1000]")
    parser.add_argument("--idle-s", type=float, default=10.0)
    parser.add_argument("--run-workers", metavar="URL", help=argparse.SUPPRESS)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.run_workers:
        run_workers(args.run_workers, args.workers, args.updates, args.d)
        return
    result = asyncio.run(measure(args.workers, args.updates, args.d, args.idle_s))
    rounded = json.loads(json.dumps(result), parse_float=lambda x: round(float(x), 2))
    print(json.dumps(rounded) if args.json else json.dumps(rounded, indent=2))


if __name__ == "__main__":
    main()
