"""Building blocks for the privacy tests: a DP task, a round, and reports fed straight in."""

from __future__ import annotations

import asyncio
import os
from typing import Any

import numpy as np

from dandelion.coordinator import Coordinator, RoundState, TaskConfig
from dandelion.privacy import secure_generator
from dandelion.protocol import (
    Ack,
    FrameHeader,
    Task,
    TensorFrame,
    Update,
    decode_frame,
    encode_frame,
)
from dandelion.settings import load_settings
from dandelion.storage import AsyncStore, SQLiteStore


class Clock:
    """A clock the test moves: the coordinator's ``clock``."""

    def __init__(self, now: float = 1_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


async def file_coordinator(db: str | os.PathLike[str], clock: Clock) -> Coordinator:
    """A started coordinator on the SQLite file ``db``, on the test's clock."""
    store = AsyncStore(lambda: SQLiteStore(str(db)))
    coordinator = Coordinator(store, load_settings(environ={}), clock=clock)
    await coordinator.start()
    return coordinator


async def stop_coordinator(coordinator: Coordinator) -> None:
    await coordinator.close()
    await coordinator.store.close()


def dp_config(
    features: int = 10,
    *,
    name: str = "dp",
    goal: int = 10,
    clip: float = 1.0,
    privacy: dict[str, Any] | None = None,
    **rounds: Any,
) -> TaskConfig:
    plan = {"goal": goal, "over_selection": 1.0, "min_reports": 1, "deadline_s": 5.0}
    plan.update(rounds)
    return TaskConfig.from_dict(
        {
            "name": name,
            "objective": "page_examples",
            "model": {"kind": "logreg", "num_features": features},
            "hyper": {"learning_rate": 0.5, "epochs": 1, "batch_size": 4, "clip_norm": clip},
            "server": {"weighting": "uniform"},
            "rounds": plan,
            "privacy": privacy
            if privacy is not None
            else {"population": 100 * goal, "noise_multiplier": 1.0, "epsilon": 10.0},
        }
    )


def new_round(config: TaskConfig, clip_norm: float | None = None) -> RoundState:
    return RoundState(config, 1, 0, b"", 0.0, secret="test", step=1, clip_norm=clip_norm)


def close(rnd: RoundState, rng: np.random.Generator | None = None) -> np.ndarray | None:
    """Close ``rnd`` and return what the server optimizer would apply (None: abandoned)."""
    rnd.close()
    return rnd.result(rng if rng is not None else secure_generator())


def frame_of(
    config: TaskConfig, nonce: str, values: np.ndarray | bytes, dtype: str = "float32"
) -> TensorFrame:
    payload = values if isinstance(values, bytes) else np.asarray(values, dtype="<f4").tobytes()
    count = config.model.param_count
    header = FrameHeader("update", config.name, 1, nonce, dtype, (count,))  # type: ignore[arg-type]
    return decode_frame(encode_frame(header, payload))


def feed(rnd: RoundState, values: np.ndarray | bytes, *, unclipped: bool = True, **kw: Any) -> str:
    """Assign a fresh worker and add its report; return the nonce. Raises UpdateRejected."""
    worker = f"worker-{rnd.assigned:06d}"
    nonce = rnd.assign(worker, 0.0).nonce
    update = Update(rnd.config.name, 1, nonce, num_examples=5, unclipped=unclipped)
    rnd.add(worker, update, frame_of(rnd.config, nonce, values, **kw), 0.0)
    return nonce


async def handed_in(pending: list[asyncio.Future[Any]], rnd: Any, timeout: float = 30.0) -> None:
    """Wait until the coordinator holds every pending report (counted in the round, or
    answered), so that moving the clock to the deadline cannot overtake a report in flight."""

    async def wait() -> None:
        while rnd.open and not all(p.done() for p in pending):
            refused = sum(
                1 for p in pending if p.done() and not isinstance(p.result().message, Ack)
            )
            if rnd.reported + refused >= len(pending):
                return
            await asyncio.sleep(0.001)

    await asyncio.wait_for(wait(), timeout)


async def finish_round(
    coordinator: Coordinator, clock: Clock, config: TaskConfig, joined: dict[str, Task]
) -> None:
    """Every joined worker reports (the same small update); once the coordinator holds the
    reports the clock passes the deadline, the round closes, and the next one opens."""
    runtime = coordinator.tasks[config.name]
    rnd = runtime.round
    pending = [
        asyncio.ensure_future(
            coordinator.on_update(
                w,
                Update(config.name, t.round, t.nonce, num_examples=1, unclipped=True),
                frame_of(config, t.nonce, np.full(config.model.param_count, 0.1, np.float32)),
            )
        )
        for w, t in joined.items()
    ]
    await handed_in(pending, rnd)
    clock.now += config.rounds.deadline_s + 1  # a Poisson round closes at its deadline
    await coordinator.tick()
    await asyncio.gather(*pending)
    while runtime.closing or runtime.round is rnd:
        await asyncio.sleep(0.001)
    clock.now += 1
    await coordinator.tick()  # opens the next round (after the budget check)
    while runtime.opening:
        await asyncio.sleep(0.001)
