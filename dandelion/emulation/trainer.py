"""The emulated workers' trainer: gathers assignments, trains them in batches, and hands each
result back at the virtual moment its device would have finished.

It is what an emulated ``Worker`` awaits instead of ``train_pure`` (the worker's own code does
everything else: the session, the update message and frame, the retry windows). A device that
gets its model at ``t`` needs ``startup_s`` (load, read the history) before training can end,
so every assignment received before the earliest such deadline is trained in the same batch;
the result is delivered at ``t + startup_s + train_s`` (the device's speed, straggling), unless
the device drops out or goes offline first. Training is a pure function of the job, so where
it runs — here, in processes, on Ray — changes nothing but the wall-clock time.

Backends (``train(spec, hyper, params, [(device, training rng)])`` -> results in order, ``None``
for a device without examples): ``LocalBackend`` here; ``ProcessBackend`` below;
``RayBackend`` in ``ray_backend.py``.
"""

from __future__ import annotations

import abc
import asyncio
import concurrent.futures
import multiprocessing
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from browser_worker.training import Hyper, LocalResult
from browser_worker.worker import NoLocalData, train_pure
from dandelion.protocol import TensorFrame
from dandelion.taskspec.models import ModelSpec

from .behaviour import Behaviour
from .fasttrain import SparseResult, TrainJob, train_many
from .localdata import DataCache, DataSource, DeviceData

__all__ = [
    "Backend",
    "BatchTrainer",
    "Item",
    "LocalBackend",
    "ProcessBackend",
    "TrainerStats",
    "train_items",
]

#: One device's share of a batch: its number and its training ``random.Random`` (which pickles
#: as its state when the batch goes to a process or an actor).
Item = tuple[int, random.Random]
Collect = Callable[[], list[SparseResult | None]]


def train_items(
    cache: DataCache, spec: ModelSpec, hyper: Hyper, params: np.ndarray, items: Sequence[Item]
) -> list[SparseResult | None]:
    """Build each device's data (through ``cache``) and train those that have examples."""
    jobs: list[TrainJob] = []
    where: list[int] = []
    for n, (device, rng) in enumerate(items):
        data = cache.get(device)
        if len(data):
            jobs.append(TrainJob(data, params, rng))
            where.append(n)
    out: list[SparseResult | None] = [None] * len(items)
    for n, result in zip(where, train_many(spec, hyper, jobs), strict=True):
        out[n] = result
    return out


class Backend(abc.ABC):
    """Where batches are trained."""

    workers: int = 1

    @abc.abstractmethod
    def submit(
        self, spec: ModelSpec, hyper: Hyper, params: np.ndarray, items: Sequence[Item]
    ) -> Collect:
        """Start training ``items``; the returned callable waits for and returns the results."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release processes or actors."""


class LocalBackend(Backend):
    """Trains in this process, at once."""

    def __init__(self, cache: DataCache) -> None:
        self.cache = cache

    def submit(
        self, spec: ModelSpec, hyper: Hyper, params: np.ndarray, items: Sequence[Item]
    ) -> Collect:
        results = train_items(self.cache, spec, hyper, params, items)
        return lambda: results


_PROCESS_CACHE: DataCache | None = None


def _process_init(source: DataSource, capacity: int) -> None:
    global _PROCESS_CACHE
    from dandelion.aggregation import single_threaded_blas

    single_threaded_blas()
    _PROCESS_CACHE = DataCache(source, capacity)


def _process_train(
    spec: ModelSpec, hyper: Hyper, params: bytes, items: list[Item]
) -> list[SparseResult | None]:
    assert _PROCESS_CACHE is not None
    return train_items(_PROCESS_CACHE, spec, hyper, np.frombuffer(params, "<f4"), items)


def shards(items: Sequence[Item], count: int) -> list[list[int]]:
    """Positions of ``items`` for each of ``count`` shards (device number modulo count)."""
    out: list[list[int]] = [[] for _ in range(count)]
    for n, (device, _) in enumerate(items):
        out[device % count].append(n)
    return out


def gather(
    size: int, parts: Sequence[tuple[list[int], list[SparseResult | None]]]
) -> list[SparseResult | None]:
    out: list[SparseResult | None] = [None] * size
    for positions, results in parts:
        for n, result in zip(positions, results, strict=True):
            out[n] = result
    return out


class ProcessBackend(Backend):
    """Trains in ``processes`` worker processes on this machine, devices sharded by number."""

    def __init__(self, source: DataSource, processes: int, cache_capacity: int) -> None:
        self.workers = processes
        self._pool = concurrent.futures.ProcessPoolExecutor(
            processes,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_process_init,
            initargs=(source, max(1, cache_capacity // processes)),
        )

    def submit(
        self, spec: ModelSpec, hyper: Hyper, params: np.ndarray, items: Sequence[Item]
    ) -> Collect:
        blob = params.tobytes()
        parts = []
        for positions in shards(items, self.workers):
            if positions:
                chunk = [items[n] for n in positions]
                parts.append(
                    (positions, self._pool.submit(_process_train, spec, hyper, blob, chunk))
                )
        size = len(items)
        return lambda: gather(size, [(pos, fut.result()) for pos, fut in parts])

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


@dataclass
class TrainerStats:
    assignments: int = 0
    trained: int = 0
    batches: int = 0
    dropouts: int = 0
    offline: int = 0
    no_data: int = 0
    largest_batch: int = 0


@dataclass(slots=True)
class _Request:
    device: int
    round: int
    submitted: float
    startup: float
    rng: random.Random
    future: asyncio.Future[LocalResult]


_Key = tuple[ModelSpec, Hyper, str, int]


class BatchTrainer:
    """The ``trainer`` of emulated workers. ``drop(device, reason)`` is called when a device
    must leave mid-assignment (dropout, end of its online time); it cancels the worker."""

    def __init__(
        self,
        backend: Backend,
        behaviour: Behaviour,
        drop: Callable[[int, str], None],
        *,
        dispatch_at: int = 256,
    ) -> None:
        self.backend = backend
        self.behaviour = behaviour
        self.drop = drop
        self.dispatch_at = dispatch_at
        self.stats = TrainerStats()
        self._pending: dict[_Key, list[_Request]] = {}
        self._frames: dict[_Key, TensorFrame] = {}
        self._count = 0
        self._inflight: list[tuple[_Key, list[_Request], Collect]] = []
        self._timer: asyncio.TimerHandle | None = None

    async def __call__(
        self,
        spec: ModelSpec,
        frame: TensorFrame,
        examples: Sequence[Any],
        hyper: Hyper,
        rng: random.Random,
    ) -> LocalResult:
        if not isinstance(examples, DeviceData):
            # A task with ``[evaluation]``: the worker split its examples (training part, held
            # out part) into plain lists, which train one by one as in a browser.
            self.stats.assignments += 1
            result = await train_pure(spec, frame, examples, hyper, rng)
            self.stats.trained += 1
            return result
        loop = asyncio.get_running_loop()
        now = loop.time()
        device, rnd = examples.device, frame.header.round
        startup = self.behaviour.startup_s(device, rnd)
        future: asyncio.Future[LocalResult] = loop.create_future()
        key = (spec, hyper, frame.header.task, rnd)
        self._pending.setdefault(key, []).append(_Request(device, rnd, now, startup, rng, future))
        self._frames[key] = frame
        self._count += 1
        self.stats.assignments += 1
        leave = self.behaviour.dropout_at(device, rnd)
        if leave is not None:
            loop.call_at(now + leave * startup, self._leave, device, future, "dropout")
        self._arm(loop, now + startup)
        if self._count >= self.dispatch_at:
            self._dispatch()
        return await future

    def _leave(self, device: int, future: asyncio.Future[LocalResult], why: str) -> None:
        if future.done():
            return
        if why == "dropout":
            self.stats.dropouts += 1
        else:
            self.stats.offline += 1
        self.drop(device, why)

    def _arm(self, loop: asyncio.AbstractEventLoop, when: float) -> None:
        timer = self._timer
        if timer is not None and timer.when() <= when:
            return
        if timer is not None:
            timer.cancel()
        self._timer = loop.call_at(when, self._flush)

    def _dispatch(self) -> None:
        for key, requests in self._pending.items():
            live = [r for r in requests if not r.future.done()]
            if not live:
                continue
            spec, hyper, _, _ = key
            frame = self._frames[key]
            params = np.frombuffer(frame.payload, dtype="<f4")
            collect = self.backend.submit(spec, hyper, params, [(r.device, r.rng) for r in live])
            self._inflight.append((key, live, collect))
            self.stats.batches += 1
            self.stats.largest_batch = max(self.stats.largest_batch, len(live))
        self._pending.clear()
        self._count = 0

    def _flush(self) -> None:
        self._timer = None
        self._dispatch()
        loop = asyncio.get_running_loop()
        now = loop.time()
        inflight, self._inflight = self._inflight, []
        behaviour = self.behaviour
        for key, requests, collect in inflight:
            spec, hyper, _, _ = key
            d = spec.param_count
            for req, result in zip(requests, collect(), strict=True):
                ready = req.submitted + req.startup
                if result is None:
                    self.stats.no_data += 1
                    loop.call_at(max(now, ready), _fail, req.future)
                    continue
                self.stats.trained += 1
                train = behaviour.train_s(req.device, req.round, result.num_examples, hyper.epochs)
                due = ready + train
                until = behaviour.online_until(req.device, req.submitted)
                if due > until:
                    loop.call_at(max(now, until), self._leave, req.device, req.future, "offline")
                    continue
                loop.call_at(due, _deliver, req.future, result, d)
        self._frames = {k: f for k, f in self._frames.items() if k in self._pending}


def _deliver(future: asyncio.Future[LocalResult], result: SparseResult, d: int) -> None:
    if not future.done():
        future.set_result(result.dense(d))


def _fail(future: asyncio.Future[LocalResult]) -> None:
    if not future.done():
        future.set_exception(NoLocalData())
