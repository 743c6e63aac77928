"""WebSocket mode: N emulated workers, each on its own real WebSocket, against a coordinator.

The coordinator is ``dandelion serve`` started here in its own process (the default), the same
application in this process (``coordinator="inprocess"``, for tests), or one already running
(``url``; several, comma-separated, for the shards of a cluster: device ``i`` connects to
the ``i mod K``-th, so the devices are spread evenly — or give the cluster's load balancer's
URL once). Each device runs the real ``Worker`` on the real CPython host (the ``websockets``
client), in real time; training goes through the same ``BatchTrainer`` as in virtual time, so
startup, speed, stragglers and dropouts follow the population file. Availability over the day,
consent churn and bandwidth act on hours and days or need a real network: rehearse them in
virtual time (``inprocess``); here every device stays online and connected, which is what
tests a server: all N connections open at once.

A disconnect the emulator did not ask for (closed by the coordinator, a failed handshake, a
missed pong) is counted in ``unexpected_disconnects``. A ``dandelion serve`` started here that
exits, or an assignment of another task than the run's (``served.py``), stops the run with an
``EmulationError`` in one line.
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
from typing import TYPE_CHECKING, Any

import numpy as np

from browser_worker.host import ConnectFailed, Connection, ConnectionClosed, Host, KeyValueStore
from browser_worker.host.cpython import CPythonHost
from browser_worker.worker import NoLocalData, Worker, WorkerConfig

from ..coordinator import Coordinator, RoundOutcome
from ..storage.location import open_state
from .behaviour import Behaviour
from .feasibility import AbandonWatch
from .localdata import DataCache, DeviceData
from .memory import peak_rss_mb, tree_rss_mb
from .plan import EmulationPlan, Evaluator, worker_rng
from .population import PopulationConfigError
from .progress import Progress
from .results import RoundRecord, RunResult
from .run import EmulationError
from .served import ServedTaskCheck, ServeOutput, bundle_with, exited, wait_port
from .trainer import BatchTrainer, LocalBackend

if TYPE_CHECKING:
    from ..plugins import PluginPackage
    from ..protocol import Assigned, RetryWindow, WorkerSession

__all__ = ["WebSocketOptions", "raise_open_files_limit", "run_websocket", "worker_urls"]

#: Coordinator settings for a socket emulation: short retry windows (workers keep their socket
#: open through them) and rounds checked often.
SOCKET_SETTINGS: dict[str, Any] = {"pace_min_s": 1.0, "pace_max_s": 30.0, "tick_s": 0.1}


def worker_urls(given: str) -> list[str]:
    """The worker URLs in ``given``: one, or several separated by commas (a cluster's shards).
    Raises EmulationError for an empty one or one that is not ws:// or wss://."""
    urls = [u.strip() for u in given.split(",")]
    for url in urls:
        if not url.startswith(("ws://", "wss://")) or len(url) <= len("wss://"):
            raise EmulationError(
                f"--url {given!r}: each coordinator URL is ws://… or wss://… (a shard's /ws), "
                "several separated by commas"
            )
    return urls


@dataclass(frozen=True)
class WebSocketOptions:
    url: str | None = None  # an existing coordinator (or shards, comma-separated); None: start one
    db: str | None = None  # its state file, to follow rounds (given or started here)
    coordinator: str = "subprocess"  # subprocess | inprocess (when url is None)
    ramp_s: float = 0.0  # open the connections over this long (0: size / 500 seconds)
    progress: bool = True
    max_wall_s: float = 600.0
    settings: dict[str, Any] = field(default_factory=dict)
    doomed: bool = False  # the start-up check says rounds cannot meet their minimum
    plugins: tuple[PluginPackage, ...] = ()  # --with: bundled for the coordinator started here


@dataclass(frozen=True, slots=True)
class _Closed:
    """A round the coordinator closed, as the emulator learns of it: from the coordinator's
    listener (in this process) or its state file. ``dropped_by`` is None from the state file,
    which keeps only the sum."""

    round: int
    status: str
    assigned: int
    reported: int
    dropped: int
    dropped_by: dict[str, int] | None
    metrics: dict[str, float]
    params: np.ndarray | None
    model_version: int | None
    epsilon: float | None  # the task's ledger after the round (None: no privacy)
    kind: str = "train"  # ``evaluate``: an evaluation round of a task with ``[evaluation]``


#: The rounds closed so far, and the task's status and reason (None: not known).
_Follow = tuple[list[_Closed], tuple[str, str] | None]


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


class _RunWorker(Worker):
    """The real worker, refusing an assignment of another task than the run's before it reads
    the task's model spec or examples: neither would fit (``ServedTaskCheck`` says so and the
    run stops)."""

    def __init__(self, *args: Any, check: ServedTaskCheck, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.check = check

    async def _train_and_report(
        self, conn: Connection, session: WorkerSession, event: Assigned
    ) -> RetryWindow | None:
        # Every assignment, training or evaluation, starts here.
        if not self.check.matches(event.task):
            raise NoLocalData
        return await super()._train_and_report(conn, session, event)


def run_websocket(plan: EmulationPlan, options: WebSocketOptions) -> RunResult:
    return asyncio.run(_run(plan, options))


async def _run(plan: EmulationPlan, options: WebSocketOptions) -> RunResult:
    size = plan.size
    limit = raise_open_files_limit(size + 1000)
    if limit < size + 100:
        raise RuntimeError(f"open-files limit {limit} is too low for {size} connections")
    async with contextlib.AsyncExitStack() as stack:
        url, rounds_of = await stack.enter_async_context(_coordinator(plan, options))
        return await _emulate(plan, options, worker_urls(url), rounds_of)
    raise AssertionError("unreachable")  # pragma: no cover


@contextlib.asynccontextmanager
async def _coordinator(plan: EmulationPlan, options: WebSocketOptions) -> Any:
    """Yield (worker URL, a function that returns the rounds closed so far and the task's
    status)."""
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
        yield options.url, (lambda: _rounds_in(given, plan)) if given else (lambda: ([], None))
        return
    with tempfile.TemporaryDirectory(prefix="dandelion-emulate-") as tmp:
        db = options.db or str(Path(tmp) / "state.db")
        if options.coordinator == "inprocess":
            from aiohttp import web

            from ..app import make_app
            from ..settings import load_settings

            outcomes: list[_Closed] = []
            running: list[Coordinator] = []

            def follow(c: Coordinator) -> None:
                running.append(c)
                c.add_listener(lambda o: outcomes.append(_from_outcome(o, c)))

            def state() -> _Follow:
                if not running or plan.task.name not in running[0].tasks:
                    return list(outcomes), None
                runtime = running[0].tasks[plan.task.name]
                return list(outcomes), (runtime.status, runtime.reason)

            resolved = load_settings(environ={}, overrides={**settings, "db": db, "port": 0})
            app = make_app(resolved, on_coordinator=follow, tasks=[plan.task])
            runner = web.AppRunner(app, handle_signals=False)
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0, backlog=4096)
            await site.start()
            port = runner.addresses[0][1]
            try:
                yield f"ws://127.0.0.1:{port}/ws", state
            finally:
                await runner.cleanup()
            return
        # Before the state file gets the task: a refused bundle leaves --db as it was.
        if options.plugins and "bundle_dir" not in options.settings:
            settings["bundle_dir"] = await asyncio.to_thread(
                bundle_with, Path(tmp) / "bundle", options.plugins
            )
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
            stderr=subprocess.PIPE,
            text=True,
        )
        assert proc.stderr is not None
        output = ServeOutput(proc.stderr)

        def rounds_while_up() -> _Follow:
            if proc.poll() is not None:
                raise exited(proc.returncode, output.last_line())
            return _rounds_in(db, plan)

        try:
            await wait_port(port, proc, output)
            output.pass_through()
            yield f"ws://127.0.0.1:{port}/ws", rounds_while_up
        finally:
            proc.terminate()
            try:
                await asyncio.to_thread(proc.wait, 30)
            except subprocess.TimeoutExpired:
                proc.kill()
                await asyncio.to_thread(proc.wait)
            await asyncio.to_thread(output.close)


def _from_outcome(o: RoundOutcome, coordinator: Coordinator) -> _Closed:
    runtime = coordinator.tasks.get(o.task)
    ledger = runtime.ledger if runtime is not None else None
    return _Closed(
        o.round,
        o.status,
        o.assigned,
        o.reported,
        o.dropped,
        dict(o.dropped_by),
        o.metrics,
        o.params if o.status == "completed" else None,
        o.model_version,
        ledger.spent if ledger is not None else None,
        o.kind,
    )


def _rounds_in(db: str, plan: EmulationPlan) -> _Follow:
    """Closed rounds from the coordinator's state file (read-only), with each model and the
    ε its ledger says after each (what `dandelion task show` reads); the task's status."""
    store = open_state(db)
    try:
        name = plan.task.name
        record = store.get_task(name)
        private = plan.task.privacy is not None
        ledger = [(e.round, e.epsilon) for e in store.list_ledger(name)] if private else []
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
            spent = [eps for n, eps in ledger if n <= r.round]
            epsilon = (spent[-1] if spent else 0.0) if private else None
            out.append(
                _Closed(
                    r.round,
                    r.status,
                    r.assigned,
                    r.reported,
                    r.dropped,
                    None,
                    r.metrics,
                    params,
                    versions.get(r.round),
                    epsilon,
                    r.kind,
                )
            )
        return out, (record.status, record.reason) if record is not None else None
    finally:
        store.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _emulate(
    plan: EmulationPlan, options: WebSocketOptions, urls: list[str], rounds_of: Any
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

    check = ServedTaskCheck(plan.task, ", ".join(urls))

    def start(device: int) -> None:
        counts["sessions"] += 1
        host = _SocketHost(counts)
        worker = _RunWorker(
            host,
            WorkerConfig(
                urls[device % len(urls)],  # spread evenly over a cluster's shards
                worker_id=f"emu{config.seed:04d}d{device:08d}",
                eligibility=behaviour.eligibility(device),
                keep_open_s=3600.0,
            ),
            lambda objective, features, at: DeviceData(device, cache),
            rng=worker_rng(config.seed, device, counts["sessions"]),
            trainer=trainer,
            check=check,
        )
        workers[device] = worker
        tasks[device] = loop.create_task(worker.run())

    # A coordinator that ran before (``--url`` and ``--db`` of an earlier run) has closed rounds
    # of its own: only rounds closed from now on are this run's.
    earlier = {r.round for r in (await asyncio.to_thread(rounds_of))[0]}
    for device in range(plan.size):
        loop.call_later(ramp * device / plan.size, start, device)
    progress = Progress(config.rounds) if options.progress else None
    watch = AbandonWatch(doomed=options.doomed, virtual=False)
    records: list[RoundRecord] = []
    handled = 0  # closed rounds (training and evaluation) looked at so far
    warnings: list[str] = []
    final: np.ndarray | None = None
    version = 0
    peak_open = 0
    stopped: list[str] = []  # why the run ends, once it does

    def stop(why: str, warning: str = "") -> None:
        stopped.append(why)
        if why != "rounds_completed":
            counts[f"stopped_{why}"] = 1
        if warning:
            warnings.append(warning)
            if progress is not None:
                progress.say(f"warning: {warning}")

    try:
        while not stopped:
            if time.perf_counter() - started >= options.max_wall_s:
                stop("wall_limit")
                break
            await asyncio.sleep(0.5)
            if check.found is not None:
                raise EmulationError(check.found)
            peak_open = max(peak_open, sum(1 for t in tasks.values() if not t.done()))
            seen, status = await asyncio.to_thread(rounds_of)
            closed = [r for r in seen if r.round not in earlier]
            for c in closed[handled:]:
                handled += 1
                if c.kind == "evaluate":
                    # A round that scores the model on the devices' held-out examples: not a
                    # training round of this run (its released means are in the coordinator's
                    # rounds, `dandelion task show`).
                    counts[f"evaluation_rounds_{c.status}"] += 1
                    continue
                loss, accuracy = evaluate(c.params) if c.params is not None else (None, None)
                if c.params is not None:
                    final, version = c.params, c.model_version or version + 1
                split = c.dropped_by or {}
                record = RoundRecord(
                    round=c.round,
                    status=c.status,
                    assigned=c.assigned,
                    reported=c.reported,
                    dropped=c.dropped,
                    left=split.get("left"),
                    unfinished=split.get("unfinished"),
                    rejected=split.get("rejected"),
                    accuracy=accuracy,
                    loss=loss,
                    train_loss=c.metrics.get("loss"),
                    epsilon=c.epsilon,
                    virtual_s=0.0,
                    sessions=peak_open,
                    wall_s=time.perf_counter() - started,
                )
                records.append(record)
                done = sum(r.status == "completed" for r in records)
                if progress is not None:
                    progress.update(done, record, f", {counts['connections']} connections")
                if done >= config.rounds:
                    stop("rounds_completed")
                    break
                given_up = watch.closed(record)
                if given_up is not None:
                    stop("rounds_abandoned", given_up)
                    break
            if stopped:
                break
            if status is not None and status[0] != "active":
                why = f": {status[1]}" if status[1] else ""
                stop("task_stopped", f"task {plan.task.name} is {status[0]}{why}")
            elif progress is not None:
                progress.status(
                    f"{counts['connections']} connections, {trainer.stats.trained} updates trained"
                )
    finally:
        wall = time.perf_counter() - started
        if progress is not None:
            progress.close()
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
        model_version=version,
        stopped=stopped[0] if stopped else "",
        warnings=warnings,
    )
