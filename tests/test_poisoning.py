"""A worker sending an update of norm 10⁶ (and lying about it) moves the model no more than
one clipped update allows."""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
import pytest

from dandelion.coordinator import TaskConfig

from .conftest import LiveFactory
from .test_coordinator_live import assigned, joined, report

CLIP = 1.0
HONEST = 4


def _task(weighting: str) -> TaskConfig:
    return TaskConfig.from_dict(
        {
            "name": "t1",
            "objective": "page_examples",
            "model": {"kind": "logreg", "num_features": 10},
            "hyper": {"learning_rate": 0.5, "epochs": 1, "batch_size": 4, "clip_norm": CLIP},
            "server": {"weighting": weighting, "max_examples": 100},
            "rounds": {"goal": HONEST + 1, "min_reports": HONEST + 1, "deadline_s": 10.0},
        }
    )


@pytest.mark.parametrize("weighting", ["uniform", "examples"])
async def test_a_huge_update_moves_the_model_by_at_most_one_clipped_update(
    live: LiveFactory, clients: Any, weighting: str
) -> None:
    server = await live()
    await server.coordinator.add_task(_task(weighting))
    before = server.coordinator.tasks["t1"].params.copy()
    honest = np.zeros(11, dtype=np.float32)  # the honest workers agree: nothing to change
    attack = np.zeros(11, dtype=np.float32)
    attack[3] = 1e6
    workers = [await joined(server, clients, f"worker-{i:04d}") for i in range(HONEST + 1)]
    tasks = [await assigned(w) for w in workers]
    # Everyone reports at once (an ack waits for the round's commit, which needs all five).
    # The attacker claims its update is already clipped, and a huge number of examples.
    *honest_answers, answer = await asyncio.gather(
        *(report(w, t, honest) for w, t in zip(workers[:HONEST], tasks[:HONEST], strict=True)),
        report(workers[-1], tasks[-1], attack, unclipped=True, num_examples=10**9),
    )
    assert [a["type"] for a in honest_answers] == ["ack"] * HONEST
    assert answer["type"] == "ack"  # accepted — clipped by the server, not refused
    await server.wait_rounds(1)
    after = server.coordinator.tasks["t1"].params
    moved = float(np.linalg.norm(after.astype(np.float64) - before))
    # FedAvg with server learning rate 1: the new model is the weighted mean of the clipped
    # updates. Uniform: the attacker has weight 1/5, so the model moves at most C/5. By
    # examples: its claim is capped at max_examples (100, as the honest workers' 10 each are
    # far below), weight 100/140, so at most C * 100/140. Never more than C.
    bound = CLIP / (HONEST + 1) if weighting == "uniform" else CLIP * 100 / (100 + 10 * HONEST)
    assert moved <= bound * (1 + 1e-5), (moved, bound)
    assert moved >= bound * 0.99  # the clipped attack did arrive: the bound is tight, not vacuous
    assert np.all(np.isfinite(after))
