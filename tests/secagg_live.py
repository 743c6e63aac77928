"""Secure rounds through a live coordinator: a task with ``[secure_aggregation]``, CPython
workers (``browser_worker.Worker`` on ``CPythonHost``) that record on their own side the clipped
update they mask, and the sum the committed model must hold, computed from those updates."""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from browser_worker.host.cpython import CPythonHost
from browser_worker.training import Hyper, LocalResult
from browser_worker.worker import DataProvider, Worker, WorkerConfig, train_pure
from dandelion.coordinator import TaskConfig
from dandelion.protocol import TensorFrame
from dandelion.protocol.secagg import encode
from dandelion.taskspec.models import Example, ModelSpec

from .conftest import scaled

#: The message a worker leaves at (closing its socket instead of answering), by the phase it
#: then drops out of: it never advertises, never shares, never sends its masked vector, or
#: sends it and never reveals (its update is in the sum).
LEAVE_AT = {
    "advertise": "secagg_setup",
    "share": "secagg_keys",
    "masked": "secagg_relay",
    "unmask": "secagg_unmask",
}
IN_THE_SUM_AFTER = ("unmask",)  # who leaves in these phases is in the sum all the same


def secure_config(
    goal: int,
    *,
    min_reports: int = 2,
    deadline_s: float = 5.0,
    table: dict[str, Any] | None = None,
    privacy: dict[str, Any] | None = None,
    name: str = "sec",
    num_features: int = 10,
    server: dict[str, Any] | None = None,
) -> TaskConfig:
    raw: dict[str, Any] = {
        "name": name,
        "objective": "page_examples",
        "model": {"kind": "logreg", "num_features": num_features},
        "hyper": {"learning_rate": 0.5, "epochs": 1, "batch_size": 4, "clip_norm": 1.0},
        "rounds": {
            "goal": goal,
            "over_selection": 1.0,
            "min_reports": min_reports,
            "deadline_s": deadline_s,
        },
        "secure_aggregation": {
            "advertise_timeout_s": 5,
            "share_timeout_s": 5,
            "masked_timeout_s": 5,
            "unmask_timeout_s": 5,
            **(table or {}),
        },
    }
    if privacy is not None:
        raw["privacy"] = privacy
    if server is not None:
        raw["server"] = server
    return TaskConfig.from_dict(raw)


def local_data(seed: int, n: int = 12, features: int = 10) -> list[Example]:
    rng = random.Random(seed)
    return [
        Example(
            tuple(sorted(rng.sample(range(features), 3))),
            tuple(rng.uniform(0.0, 2.0) for _ in range(3)),
            rng.randrange(2),
        )
        for _ in range(n)
    ]


@dataclass
class Fleet:
    """CPython workers of one live coordinator; ``updates`` holds, by worker id and round,
    the clipped update each trained (recorded on the worker's side, before masking)."""

    url: str
    updates: dict[tuple[str, int], list[float]] = field(default_factory=dict)
    workers: dict[str, Worker] = field(default_factory=dict)

    def add(
        self,
        worker_id: str,
        seed: int,
        leave_at: str | None = None,
        features: int = 10,
        data: DataProvider | None = None,
    ) -> Worker:
        examples = local_data(seed, n=max(12, features // 4), features=features)

        async def trainer(
            spec: ModelSpec,
            frame: TensorFrame,
            examples: Any,
            hyper: Hyper,
            rng: random.Random,
        ) -> LocalResult:
            result = await train_pure(spec, frame, examples, hyper, rng)
            self.updates[(worker_id, frame.header.round)] = list(result.clipped_delta)
            return result

        worker = Worker(
            CPythonHost(),
            WorkerConfig(self.url, worker_id=worker_id, secagg_leave_at=leave_at),
            data or (lambda *_: examples),
            trainer=trainer,
        )
        self.workers[worker_id] = worker
        return worker

    async def run(self, workers: list[Worker], updates: int = 1, timeout: float = 30.0) -> None:
        """Run ``workers`` until each has ``updates`` accepted (or left)."""
        runs = [asyncio.create_task(w.run(max_updates=updates)) for w in workers]
        try:
            await asyncio.wait_for(asyncio.gather(*runs), scaled(timeout))
        finally:
            await self.stop(workers, runs)

    @staticmethod
    async def stop(workers: list[Worker], runs: list[asyncio.Task[Any]]) -> None:
        for w in workers:
            w.stop()
        await asyncio.gather(*runs, return_exceptions=True)


def expected_step(
    updates: list[list[float]], clip: float, scale_bits: int, before: np.ndarray
) -> np.ndarray:
    """The model the coordinator must commit from these clipped updates under FedAvg with
    server learning rate 1: the fixed-point sum mod 2^32 (docs/secure_aggregation.md), read as
    signed 32-bit, over 2^f, divided by the count, added to ``before``."""
    total = np.zeros(len(updates[0]), dtype=np.uint32)
    for values in updates:
        total += np.frombuffer(encode(values, clip, scale_bits), dtype="<u4")
    summed = (total.view(np.int32) / float(2**scale_bits)).astype(np.float32)
    mean = (summed / np.float32(len(updates))).astype(np.float32)
    return (before + np.float32(1.0) * mean).astype(np.float32)
