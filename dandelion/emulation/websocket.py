"""WebSocket mode: N emulated workers, each on its own real WebSocket, against a coordinator.

The coordinator is ``dandelion serve`` started here in its own process (the default), the same
application in this process (``coordinator="inprocess"``, for tests), or one already running
(``url``). Each device runs the real ``Worker`` on the real CPython host (the ``websockets``
client), in real time; training goes through the same ``BatchTrainer`` as in virtual time, so
startup, speed, stragglers and dropouts follow the population file. Availability over the day,
consent churn and bandwidth act on hours and days or need a real network: rehearse them in
virtual time (``inprocess``); here every device stays online and connected, which is what
tests a server: all N connections open at once.

A disconnect the emulator did not ask for (closed by the coordinator, a failed handshake, a
missed pong) is counted in ``unexpected_disconnects``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import resource
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from browser_worker.host import ConnectFailed, Connection, ConnectionClosed, Host, KeyValueStore
from browser_worker.host.cpython import CPythonHost
from browser_worker.worker import Worker, WorkerConfig

from ..coordinator import RoundOutcome
from ..storage import SQLiteStore
from .behaviour import Behaviour
from .localdata import DataCache, DeviceData
from .plan import EmulationPlan, Evaluator, worker_rng
from .population import PopulationConfigError
from .results import Progress, RoundRecord, RunResult, peak_rss_mb, tree_rss_mb
from .trainer import BatchTrainer, LocalBackend

__all__ = ["WebSocketOptions", "raise_open_files_limit", "run_websocket"]

#: Coordinator settings for a socket emulation: short retry windows (workers keep their socket
#: open through them) and rounds checked often.
SOCKET_SETTINGS: dict[str, Any] = {"pace_min_s": 1.0, "pace_max_s": 30.0, "tick_s": 0.1}


@dataclass(frozen=True)
class WebSocketOptions:
    url: str | None = None  # an existing coordinator; None: start one
    db: str | None = None  # its state file, to follow rounds (given or started here)
    coordinator: str = "subprocess"  # subprocess | inprocess (when url is None)
    ramp_s: float = 0.0  # open the connections over this long (0: size / 500 seconds)
    progress: bool = True
    max_wall_s: float = 600.0
    settings: dict[str, Any] = field(default_factory=dict)


def raise_open_files_limit(needed: int) -> int:
    """Raise the soft limit on open files towards the hard one; return the soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = hard if hard != resource.RLIM_INFINITY else max(soft, needed)
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
        soft = want
    return soft


#: The first message of each kind of failure, for the run's report.
_FIRST_ERRORS: dict[str, str] = {}


class _Watched(Connection):
    def __init__(self, inner: Connection, host: _SocketHost) -> None:
        self.inner = inner
        self.host = host

    async def send(self, message: str | bytes) -> None:
        try:
            await self.inner.send(message)
        except ConnectionClosed:
            self.host.lost()
            raise

    async def receive(self) -> str | bytes:
        try:
            return await self.inner.receive()
        except ConnectionClosed:
            self.host.lost()
            raise

    async def close(self, code: int = 1000, reason: str = "") -> None:
        self.host.closing = True
        await self.inner.close(code, reason)


class _SocketHost(Host):
    """The CPython host, with every connection watched for disconnects nobody asked for."""

    runtime_kind = "emulated"

    def __init__(self, counts: Counter[str]) -> None:
        self.inner = CPythonHost(open_timeout=60.0)
        self.runtime_version = self.inner.runtime_version
        self.counts = counts
        self.closing = False

    def lost(self) -> None:
        if not self.closing:
            self.counts["unexpected_disconnects"] += 1
            self.closing = True

    async def connect(self, url: str) -> Connection:
        self.closing = False
        try:
            conn = await self.inner.connect(url)
        except ConnectFailed as exc:
            self.counts["connect_failed"] += 1
            _FIRST_ERRORS.setdefault("connect_failed", str(exc)[:300])
            raise
        self.counts["connections"] += 1
        return _Watched(conn, self)

    def now(self) -> float:
        return time.time()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)

    @property
    def storage(self) -> KeyValueStore:
        return self.inner.storage


def run_websocket(plan: EmulationPlan, options: WebSocketOptions) -> RunResult:
    return asyncio.run(_run(plan, options))


async def _run(plan: EmulationPlan, options: WebSocketOptions) -> RunResult:
    size = plan.size
    limit = raise_open_files_limit(size + 1000)
    if limit < size + 100:
        raise RuntimeError(f"open-files limit {limit} is too low for {size} connections")
    async with contextlib.AsyncExitStack() as stack:
        url, rounds_of = await stack.enter_async_context(_coordinator(plan, options))
        return await _emulate(plan, options, url, rounds_of)
    raise AssertionError("unreachable")  # pragma: no cover


@contextlib.asynccontextmanager
async def _coordinator(plan: EmulationPlan, options: WebSocketOptions) -> Any:
    """Yield (worker URL, a function that returns the rounds closed so far)."""
    from ..tasks_cli import create_task_in

    # Every emulated worker connects from 127.0.0.1: lift the per-address connection limit.
    settings = {
        **SOCKET_SETTINGS,
        "log_level": "WARNING",
        "max_connections_per_address": 2 * plan.size + 100,
        "max_handshakes_per_address": 2 * plan.size + 100,
        **options.settings,
    }
    if options.url is not None:
        given = options.db
        yield options.url, (lambda: _rounds_in(given, plan)) if given else list
        return
    with tempfile.TemporaryDirectory(prefix="dandelion-emulate-") as tmp:
        db = options.db or str(Path(tmp) / "state.db")
        if options.coordinator == "inprocess":
            from aiohttp import web

            from ..app import make_app
            from ..settings import load_settings

            outcomes: list[RoundOutcome] = []
            resolved = load_settings(environ={}, overrides={**settings, "db": db, "port": 0})
            app = make_app(
                resolved,
                on_coordinator=lambda c: c.add_listener(outcomes.append),
                tasks=[plan.task],
            )
            runner = web.AppRunner(app, handle_signals=False)
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0, backlog=4096)
            await site.start()
            port = runner.addresses[0][1]
            try:
                yield f"ws://127.0.0.1:{port}/ws", lambda: [_from_outcome(o) for o in outcomes]
            finally:
                await runner.cleanup()
            return
        try:
            create_task_in(db, plan.task)
        except ValueError as exc:  # the task is in that file already
            raise PopulationConfigError(
                f"{db}: {exc}; emulate into a new state file, or serve that one and pass --url"
            ) from None
        port = _free_port()
        flags = [f"--{k.replace('_', '-')}={v}" for k, v in settings.items()]
        proc = subprocess.Popen(  # noqa: ASYNC220 - started once, before any worker runs
            [sys.executable, "-m", "dandelion", "serve", "--db", db, "--port", str(port), *flags],
            stdout=subprocess.DEVNULL,
        )
        try:
            await _wait_port(port, proc)
            yield f"ws://127.0.0.1:{port}/ws", lambda: _rounds_in(db, plan)
        finally:
            proc.terminate()
            try:
                await asyncio.to_thread(proc.wait, 30)
            except subprocess.TimeoutExpired:
                proc.kill()


def _from_outcome(o: RoundOutcome) -> tuple[int, str, int, int, int, dict[str, float], np.ndarray]:
    return (o.round, o.status, o.assigned, o.reported, o.dropped, o.metrics, o.params)


def _rounds_in(db: str, plan: EmulationPlan) -> list[Any]:
    """Closed rounds from the coordinator's state file (read-only), with each model."""
    store = SQLiteStore(db)
    try:
        name = plan.task.name
        out = []
        versions = {v.round: v.version for v in store.list_model_versions(name)}
        for r in sorted(store.list_rounds(name, limit=100_000), key=lambda r: r.round):
            if r.status not in ("completed", "abandoned"):
                continue
            params = None
            if r.round in versions:
                mv = store.get_model_version(name, versions[r.round])
                assert mv is not None
                params = np.frombuffer(mv.params, dtype="<f4")
            out.append((r.round, r.status, r.assigned, r.reported, r.dropped, r.metrics, params))
        return out
    finally:
        store.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _wait_port(port: int, proc: subprocess.Popen[bytes]) -> None:
    for _ in range(300):
        if proc.poll() is not None:
            raise RuntimeError(f"the coordinator exited with status {proc.returncode}")
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            return
        except OSError:
            await asyncio.sleep(0.1)
    raise RuntimeError("the coordinator did not start listening")


async def _emulate(
    plan: EmulationPlan, options: WebSocketOptions, url: str, rounds_of: Any
) -> RunResult:
    config = plan.config
    behaviour = Behaviour(config.replace(availability="always"), plan.epoch)
    cache = DataCache(plan.source, plan.size)
    counts: Counter[str] = Counter()
    tasks: dict[int, asyncio.Task[Any]] = {}
    workers: dict[int, Worker] = {}

    def drop(device: int, why: str) -> None:
        counts[f"left_{why}"] += 1
        task = tasks.get(device)
        if task is not None:
            task.cancel()
            loop.call_later(behaviour.reconnect_s(device, counts["sessions"]) / 60.0, start, device)

    trainer = BatchTrainer(LocalBackend(cache), behaviour, drop, dispatch_at=64)
    evaluate = Evaluator(plan.task.model, plan.source.test_set())
    loop = asyncio.get_running_loop()
    started = time.perf_counter()
    ramp = options.ramp_s or plan.size / 500.0

    def start(device: int) -> None:
        counts["sessions"] += 1
        host = _SocketHost(counts)
        worker = Worker(
            host,
            WorkerConfig(
                url,
                worker_id=f"emu{config.seed:04d}d{device:08d}",
                eligibility=behaviour.eligibility(device),
                keep_open_s=3600.0,
            ),
            lambda objective, features, at: DeviceData(device, cache),
            rng=worker_rng(config.seed, device, counts["sessions"]),
            trainer=trainer,
        )
        workers[device] = worker
        tasks[device] = loop.create_task(worker.run())

    # A coordinator that ran before (``--url`` and ``--db`` of an earlier run) has closed rounds
    # of its own: only rounds closed from now on are this run's.
    earlier = {r[0] for r in await asyncio.to_thread(rounds_of)}
    for device in range(plan.size):
        loop.call_later(ramp * device / plan.size, start, device)
    progress = Progress(config.rounds) if options.progress else None
    records: list[RoundRecord] = []
    final: np.ndarray | None = None
    peak_open = 0
    try:
        while time.perf_counter() - started < options.max_wall_s:
            await asyncio.sleep(0.5)
            peak_open = max(peak_open, sum(1 for t in tasks.values() if not t.done()))
            closed = [r for r in await asyncio.to_thread(rounds_of) if r[0] not in earlier]
            for rnd, status, assigned, reported, dropped, metrics, params in closed[len(records) :]:
                loss, accuracy = evaluate(params) if params is not None else (None, None)
                final = params if params is not None else final
                record = RoundRecord(
                    rnd,
                    status,
                    assigned,
                    reported,
                    dropped,
                    accuracy,
                    loss,
                    metrics.get("loss"),
                    0.0,
                    time.perf_counter() - started,
                    peak_open,
                )
                records.append(record)
                done = sum(r.status == "completed" for r in records)
                if progress is not None:
                    progress.update(done, record, f", {counts['connections']} connections")
            if sum(r.status == "completed" for r in records) >= config.rounds:
                break
        else:
            counts["stopped_at_wall_limit"] = 1
    finally:
        wall = time.perf_counter() - started
        for task in tasks.values():
            task.cancel()
        await asyncio.gather(*tasks.values(), return_exceptions=True)
    counts["peak_concurrent_workers"] = peak_open
    counts["unexpected_disconnects"] += 0
    counts["trained"] = trainer.stats.trained
    return RunResult(
        mode="websocket",
        backend="local",
        population=plan.size,
        rounds=records,
        wall_s=wall,
        virtual_s=0.0,
        peak_rss_mb=max(peak_rss_mb(), tree_rss_mb(os.getpid())),
        counters=dict(counts),
        params=final,
    )
