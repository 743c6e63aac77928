"""In-process emulation on virtual time: the real coordinator and the real worker code, joined
by in-memory connections, on an event loop whose clock jumps to the next thing that happens.

Each device is a number; what it is and does (time zone, availability, speed, bandwidth,
dropouts, consent) comes from ``Behaviour``. A device that is online and opted in runs a real
``browser_worker.worker.Worker`` on an in-memory host: hello, check-in, task, training, update,
ack, and the coordinator's retry windows, through the real ``CoordinatorSession`` (schema
validation included) and the real ``Coordinator`` (selection, pace steering, server-side
clipping, streaming aggregation, the optimizer). When the worker would sleep with no
connection open — until the end of a long retry window — its session ends and the device waits
in one heap until then; so memory holds only devices in a session, and per-message work does
not depend on how many devices there are.

Training goes through ``BatchTrainer``: many devices' assignments in one vectorized batch, the
result delivered at the moment the device would have finished.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import heapq
import math
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from browser_worker.host import Connection, Host, KeyValueStore, MemoryKV
from browser_worker.worker import Worker, WorkerConfig

from ..aggregation import single_threaded_blas
from ..coordinator import Coordinator, RoundOutcome, SeededEntropy
from ..settings import load_settings
from ..transport import MemoryTransport, SchemaValidator
from .clock import run_virtual
from .feasibility import AbandonWatch
from .links import DirectLink
from .localdata import DataCache, DeviceData
from .memory import TreeMemory, peak_rss_mb
from .plan import EmulationPlan, Evaluator, worker_rng
from .progress import Progress
from .results import RoundRecord, RunResult
from .store import EmulationStore, InlineStore
from .trainer import Backend, BatchTrainer, LocalBackend, ProcessBackend

__all__ = ["InProcessOptions", "run_inprocess", "run_inprocess_async"]

_URL = "memory://coordinator"
#: Loop passes between the run's end and the sessions' end: a released ack goes out in two.
_ACK_PASSES = 8
#: Coordinator settings of an emulation (every other setting at its default).
EMULATION_SETTINGS: dict[str, Any] = {"tick_s": 1.0}


@dataclass(frozen=True)
class InProcessOptions:
    backend: str = "local"  # local | processes | ray
    processes: int = 2  # processes or Ray actors
    ray_address: str | None = None
    cache_devices: int = 2000  # devices whose examples are kept between assignments
    progress: bool = True
    settings: dict[str, Any] = field(default_factory=dict)
    max_wall_s: float = 0.0  # 0: no limit
    doomed: bool = False  # the start-up check says rounds cannot meet their minimum


def run_inprocess(plan: EmulationPlan, options: InProcessOptions) -> RunResult:
    """Run the emulation to ``config.rounds`` completed rounds (or a limit) on virtual time."""
    return run_virtual(run_inprocess_async(plan, options))


async def run_inprocess_async(plan: EmulationPlan, options: InProcessOptions) -> RunResult:
    emulation = _Emulation(plan, options)
    with _few_collections():
        return await emulation.run()


#: The cyclic collector's thresholds during a run. Each message allocates dozens of small
#: objects that die young; at the default (700, 10, 10) the collector ran about every 20
#: messages and walked the older generations (every live session, timer and cached device)
#: every few hundred: 10-25 % of a run at N = 1,000. A first generation of 50,000 objects is a
#: few megabytes; the older ones are collected as often as before relative to it.
_RUN_THRESHOLDS = (50_000, 20, 100)


@contextlib.contextmanager
def _few_collections() -> Iterator[None]:
    """Run with the collector's thresholds at ``_RUN_THRESHOLDS`` and what exists before the
    run (modules, the data table) set aside from its walks; both undone afterwards."""
    before = gc.get_threshold()
    gc.collect()
    gc.freeze()
    gc.set_threshold(*_RUN_THRESHOLDS)
    try:
        yield
    finally:
        gc.set_threshold(*before)
        gc.unfreeze()


class _Host(Host):
    """One device's surroundings for one session: in-memory connections with its link speed,
    the virtual clock, and a ``sleep`` that ends the session when no connection is open."""

    runtime_kind = "emulated"
    runtime_version = "virtual"

    def __init__(self, em: _Emulation, device: int) -> None:
        self.em = em
        self.device = device
        self.worker: Worker | None = None
        self.conn: DirectLink | None = None
        self._storage = MemoryKV()

    async def connect(self, url: str) -> Connection:
        em, device = self.em, self.device
        behaviour = em.behaviour
        link = DirectLink(
            em.endpoint.driver,
            lambda n: behaviour.transfer_s(device, n, upload=True),
            lambda n: behaviour.transfer_s(device, n, upload=False),
        )
        self.conn = link
        return link

    def now(self) -> float:
        return self.em.clock()

    async def sleep(self, seconds: float) -> None:
        em, loop = self.em, asyncio.get_running_loop()
        now = loop.time()
        if self.conn is None or self.conn.closed:
            # Between sessions: the device waits in the emulator's heap, not in a coroutine.
            em.park(self.device, now + seconds)
            assert self.worker is not None
            self.worker.stop()  # cancels this very sleep: the worker's loop ends
            await asyncio.sleep(0)
            return
        until = em.behaviour.online_until(self.device, now)
        if now + seconds > until:
            await asyncio.sleep(max(0.0, until - now))
            em.leave(self.device, "offline_idle")
            await asyncio.sleep(0)
            return
        await asyncio.sleep(seconds)

    @property
    def storage(self) -> KeyValueStore:
        return self._storage


class _Emulation:
    def __init__(self, plan: EmulationPlan, options: InProcessOptions) -> None:
        self.plan = plan
        self.options = options
        self.config = plan.config
        self.behaviour = plan.behaviour()
        self.settings = load_settings(
            environ={}, overrides={**EMULATION_SETTINGS, **options.settings}
        )
        self.cache = DataCache(plan.source, options.cache_devices)
        self.counters: Counter[str] = Counter()
        self.sessions: dict[int, tuple[asyncio.Task[Any], int]] = {}
        self.leaving: dict[int, str] = {}
        self.heap: list[tuple[float, int]] = []
        self.session_count = 0
        self.records: list[RoundRecord] = []
        self.watch = AbandonWatch(doomed=options.doomed, virtual=True)
        self.stopped = ""
        self.warnings: list[str] = []
        self._wake: asyncio.TimerHandle | None = None
        self._done = asyncio.Event()
        self._started = 0.0
        self._loop: asyncio.AbstractEventLoop | None = None

    def clock(self) -> float:
        assert self._loop is not None
        return self.plan.epoch + self._loop.time()

    # -- the run -------------------------------------------------------------------------------

    async def run(self) -> RunResult:
        single_threaded_blas()
        self._loop = asyncio.get_running_loop()
        plan, options = self.plan, self.options
        store = InlineStore(EmulationStore())
        self.coordinator = Coordinator(
            store,
            self.settings,
            clock=self.clock,
            rng=_rng(plan),
            entropy=SeededEntropy(plan.config.seed),  # round secrets and DP noise: reproducible
        )
        self.endpoint = MemoryTransport(self.coordinator, self.settings, SchemaValidator())
        self.backend = _backend(plan, options, self.cache)
        # With worker processes or actors, memory is the whole process tree's, sampled.
        tree = TreeMemory() if options.backend != "local" else None
        # Remote backends get small batches early, so they train while this process talks;
        # here, larger batches mean fewer numpy calls per device (a cohort of 1,000 is one).
        dispatch = 1024 if options.backend == "local" else 32
        self.trainer = BatchTrainer(self.backend, self.behaviour, self.leave, dispatch_at=dispatch)
        self.evaluate = Evaluator(plan.task.model, plan.source.test_set())
        self.progress = Progress(self.config.rounds) if options.progress else None
        self.coordinator.add_listener(self._on_round)
        await self.coordinator.start()
        await self.coordinator.add_task(plan.task)
        self._started = time.perf_counter()
        for device in range(self.config.size):
            first = self.behaviour.opt_in_at(device) + self.behaviour.jitter_s(device, 0)
            if math.isfinite(first):
                self.heap.append((first, device))
        heapq.heapify(self.heap)
        self._arm()
        ticker = asyncio.get_running_loop().create_task(self._tick())
        try:
            await self._wait()
            # The last round's commit released its reporters' acks: let them reach their
            # workers (a few loop passes, no virtual time) before the sessions are ended.
            for _ in range(_ACK_PASSES):
                await asyncio.sleep(0)
        finally:
            if self.progress is not None:
                self.progress.close()
            ticker.cancel()
            if self._wake is not None:
                self._wake.cancel()
            tasks = [task for task, _ in self.sessions.values()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self.endpoint.close()
            await self.coordinator.close()
            await store.close()
            self.backend.close()
        runtime = self.coordinator.tasks[plan.task.name]
        self.counters.update(self.endpoint.counters.outcomes)
        stats = self.trainer.stats
        self.counters.update(
            {
                "sessions": self.session_count,
                "assignments": stats.assignments,
                "trained": stats.trained,
                "train_batches": stats.batches,
                "largest_batch": stats.largest_batch,
                "dropouts": stats.dropouts,
                "went_offline_training": stats.offline,
                "no_data": stats.no_data,
                "data_built": self.cache.built,
            }
        )
        rss = peak_rss_mb()
        if tree is not None:
            rss = max(rss, tree.stop())
        return RunResult(
            mode="inprocess",
            backend=options.backend,
            population=self.config.size,
            rounds=self.records,
            wall_s=time.perf_counter() - self._started,
            virtual_s=asyncio.get_running_loop().time(),
            peak_rss_mb=rss,
            counters=dict(self.counters),
            params=runtime.params,
            model_version=runtime.model_version,
            stopped=self.stopped,
            warnings=self.warnings,
        )

    async def _wait(self) -> None:
        """Until the rounds are done or a limit stops the run; ``stopped`` says which."""
        limit_v = self.config.max_virtual_s
        limit_w = self.options.max_wall_s
        loop = asyncio.get_running_loop()
        runtime = self.coordinator.tasks[self.plan.task.name]
        while not self._done.is_set():
            step = 3600.0 if not limit_v else max(1.0, min(3600.0, limit_v - loop.time()))
            if limit_w:
                step = min(step, 60.0)  # look at the wall clock often enough
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._done.wait(), step)
            if self._done.is_set():
                return
            if limit_v and loop.time() >= limit_v:
                self._stop("virtual_limit")
            elif limit_w and time.perf_counter() - self._started >= limit_w:
                self._stop("wall_limit")
            elif not self.heap and not self.sessions:
                self._stop("no_devices_left")
            elif runtime.status != "active" and runtime.idle:
                why = f": {runtime.reason}" if runtime.reason else ""
                self._stop("task_stopped", f"task {runtime.name} is {runtime.status}{why}")
            else:
                continue
            return

    def _stop(self, why: str, warning: str = "") -> None:
        self.stopped = why
        self.counters[f"stopped_{why}"] = 1
        if warning:
            self.warnings.append(warning)
            if self.progress is not None:
                self.progress.say(f"warning: {warning}")
        self._done.set()

    async def _tick(self) -> None:
        while True:
            await self.coordinator.tick()
            await asyncio.sleep(self.settings.tick_s)

    def _on_round(self, outcome: RoundOutcome) -> None:
        completed = outcome.status == "completed"
        loss, accuracy = self.evaluate(outcome.params) if completed else (None, None)
        loop = asyncio.get_running_loop()
        ledger = self.coordinator.tasks[outcome.task].ledger
        split = outcome.dropped_by
        record = RoundRecord(
            round=outcome.round,
            status=outcome.status,
            assigned=outcome.assigned,
            reported=outcome.reported,
            dropped=outcome.dropped,
            left=split.get("left"),
            unfinished=split.get("unfinished"),
            rejected=split.get("rejected"),
            accuracy=accuracy,
            loss=loss,
            train_loss=outcome.metrics.get("loss"),
            # The ledger's ε after this round: what `dandelion task show` reports as spent.
            epsilon=ledger.spent if ledger is not None else None,
            virtual_s=loop.time(),
            sessions=len(self.sessions),
            wall_s=time.perf_counter() - self._started,
        )
        self.records.append(record)
        done = len(self._completed())
        if self.progress is not None:
            self.progress.update(done, record, f", {len(self.sessions)} in session")
        if done >= self.config.rounds:
            self.stopped = "rounds_completed"
            self._done.set()
            return
        given_up = self.watch.closed(record)
        if given_up is not None:
            self._stop("rounds_abandoned", given_up)

    def _completed(self) -> list[RoundRecord]:
        return [r for r in self.records if r.status == "completed"]

    # -- devices -------------------------------------------------------------------------------

    def park(self, device: int, when: float) -> None:
        """The device's session ended; it comes back at ``when`` (or when next online)."""
        heapq.heappush(self.heap, (when, device))
        if self._wake is None or when < self._wake.when():
            self._arm()

    def leave(self, device: int, why: str) -> None:
        """End the device's session now (dropout, offline): its worker is cancelled."""
        session = self.sessions.get(device)
        if session is None:
            return
        self.leaving[device] = why
        self.counters[f"left_{why}"] += 1
        session[0].cancel()

    def _arm(self) -> None:
        if self._wake is not None:
            self._wake.cancel()
            self._wake = None
        if self.heap:
            loop = asyncio.get_running_loop()
            self._wake = loop.call_at(max(self.heap[0][0], loop.time()), self._wake_due)

    def _wake_due(self) -> None:
        self._wake = None
        now = asyncio.get_running_loop().time()
        heap = self.heap
        while heap and heap[0][0] <= now:
            _, device = heapq.heappop(heap)
            self._start(device, now)
        self._arm()

    def _start(self, device: int, now: float) -> None:
        if device in self.sessions:
            return
        behaviour = self.behaviour
        online = behaviour.next_online(device, now)
        if online > now:
            if math.isfinite(online):
                heapq.heappush(self.heap, (online, device))
            return
        self.session_count += 1
        host = _Host(self, device)
        worker = Worker(
            host,
            WorkerConfig(
                _URL,
                worker_id=f"emu{self.config.seed:04d}d{device:08d}",
                eligibility=behaviour.eligibility(device),
                keep_open_s=self.config.keep_open_s,
            ),
            lambda objective, features, at: DeviceData(device, self.cache),
            rng=worker_rng(self.config.seed, device, self.session_count),
            trainer=self.trainer,
        )
        host.worker = worker
        opting_out = now >= behaviour.opt_out_at(device)
        coro = _opt_out(worker) if opting_out else worker.run()
        task = asyncio.get_running_loop().create_task(coro)
        if opting_out:
            self.counters["opted_out"] += 1
        self.sessions[device] = (task, self.session_count)
        task.add_done_callback(lambda t: self._ended(device, t, opting_out))

    def _ended(self, device: int, task: asyncio.Task[Any], opted_out: bool) -> None:
        self.sessions.pop(device, None)
        why = self.leaving.pop(device, None)
        if not task.cancelled() and task.exception() is not None:
            self.counters["worker_errors"] += 1
            return
        if opted_out or why is None:
            return  # parked by its own sleep, or gone for good
        now = asyncio.get_running_loop().time()
        if why == "dropout":
            self.park(device, now + self.behaviour.reconnect_s(device, self.session_count))
        else:
            self.park(device, now + 1.0)  # offline: it is woken when next online


async def _opt_out(worker: Worker) -> None:
    await worker.opt_out()


def _rng(plan: EmulationPlan) -> Any:
    import random

    return random.Random(plan.config.seed)


def _backend(plan: EmulationPlan, options: InProcessOptions, cache: DataCache) -> Backend:
    if options.backend == "local":
        return LocalBackend(cache)
    if options.backend == "processes":
        return ProcessBackend(plan.source, options.processes, options.cache_devices)
    if options.backend == "ray":
        from .ray_backend import RayBackend

        return RayBackend(
            plan.source, options.processes, options.cache_devices, options.ray_address
        )
    raise ValueError(f"backend must be local, processes or ray, not {options.backend!r}")
