"""Participation that the privacy guarantee rests on, enforced by the coordinator.

Eager workers check in ten times a round, lazy ones once. Under Poisson participation each
worker's participation in a round is its own coin of probability q, decided once: eager and
lazy workers take part at the same rate, within sampling error of q (the old first-come rule
let the eager ones into nearly every round). Under DP-FTRL no worker takes part twice within
``min_separation`` released rounds, however eagerly it checks in. In both, the ε in the ledger
is dp-accounting's for the events actually composed.
"""

from __future__ import annotations

import asyncio
import math
from collections import Counter
from typing import Any

import numpy as np
import pytest

from dandelion.coordinator import Coordinator, TaskConfig
from dandelion.protocol import Checkin, ComeBack, Hello, Task, Update
from dandelion.settings import load_settings
from dandelion.storage import AsyncStore, MemoryStore

from .dp_helpers import frame_of

EAGER = LAZY = 12
TRIES_EAGER = 10


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


def _config(privacy: dict[str, Any], goal: int) -> TaskConfig:
    return TaskConfig.from_dict(
        {
            "name": "dp",
            "objective": "toy",
            "model": {"kind": "logreg", "num_features": 3},
            "hyper": {"clip_norm": 1.0},
            "server": {"weighting": "uniform"},
            "rounds": {"goal": goal, "min_reports": 1, "deadline_s": 10.0, "over_selection": 1.0},
            "privacy": privacy,
        }
    )


async def _rounds(config: TaskConfig, rounds: int) -> tuple[Counter[str], list[list[str]], Any]:
    """Run ``rounds`` rounds; who took part (by worker), and who in each round."""
    clock = Clock()
    store = AsyncStore(lambda: MemoryStore())
    coordinator = Coordinator(
        store, load_settings(environ={}, overrides={"monitor_k": 2}), clock=clock
    )
    await coordinator.start()
    await coordinator.add_task(config)
    runtime = coordinator.tasks["dp"]
    workers = [f"eager-{i:02d}" for i in range(EAGER)] + [f"lazy-{i:02d}" for i in range(LAZY)]
    for w in workers:
        await coordinator.on_hello(Hello(w, {"kind": "cpython"}, "opted_in"))
    taken: Counter[str] = Counter()
    per_round: list[list[str]] = []
    for _ in range(rounds):
        rnd = runtime.round
        assert rnd is not None
        joined: dict[str, Task] = {}
        for w in workers:
            for _try in range(TRIES_EAGER if w.startswith("eager") else 1):
                answer = (await coordinator.on_checkin(w, Checkin())).message
                if isinstance(answer, Task):
                    joined[w] = answer
                    break
                assert isinstance(answer, ComeBack)
                assert answer.reason in ("not_sampled", "separation", "round_full"), answer
        reports = [
            coordinator.on_update(
                w,
                Update("dp", t.round, t.nonce, num_examples=1, unclipped=True),
                frame_of(config, t.nonce, np.full(4, 0.1, dtype=np.float32)),
            )
            for w, t in joined.items()
        ]
        pending = [asyncio.ensure_future(r) for r in reports]
        await asyncio.sleep(0)
        clock.now += config.rounds.deadline_s + 1  # the round closes at its deadline
        await coordinator.tick()
        await asyncio.gather(*pending)
        while runtime.closing or runtime.round is rnd:
            await asyncio.sleep(0.001)
        clock.now += 1
        await coordinator.tick()
        while runtime.opening:
            await asyncio.sleep(0.001)
        taken.update(joined.keys())
        per_round.append(sorted(joined))
    ledger = runtime.ledger
    await coordinator.close()
    await store.close()
    return taken, per_round, ledger


async def test_poisson_participation_is_the_same_for_eager_and_lazy_workers() -> None:
    rounds, q = 60, 0.25
    population = 100
    config = _config(
        {
            "population": population,
            "noise_multiplier": 1.0,
            "epsilon": 1e6,
            "accountant": "rdp",
            "mechanism": "poisson",
        },
        goal=int(q * population),
    )
    taken, _, ledger = await _rounds(config, rounds)
    eager = sum(n for w, n in taken.items() if w.startswith("eager")) / (EAGER * rounds)
    lazy = sum(n for w, n in taken.items() if w.startswith("lazy")) / (LAZY * rounds)
    sigma = math.sqrt(q * (1 - q) / (EAGER * rounds))
    # Within 4 standard errors of q each (the old first-come rule: eager ≈ 1, lazy ≈ 0).
    assert abs(eager - q) < 4 * sigma, (eager, q, sigma)
    assert abs(lazy - q) < 4 * sigma, (lazy, q, sigma)
    assert abs(eager - lazy) < 4 * math.sqrt(2) * sigma
    # ε is dp-accounting's for the rounds released: Poisson-sampled Gaussian, q = goal/population.
    import dp_accounting
    from dp_accounting import rdp

    acct = rdp.RdpAccountant()
    event = dp_accounting.PoissonSampledDpEvent(q, dp_accounting.GaussianDpEvent(1.0))
    acct.compose(event, len(ledger.events))
    assert len(ledger.events) == rounds
    assert ledger.spent == pytest.approx(acct.get_epsilon(config.privacy.delta), rel=1e-9)


async def test_dp_ftrl_never_lets_a_worker_in_twice_within_its_separation() -> None:
    separation, rounds = 4, 16
    config = _config(
        {
            "population": 1000,
            "noise_multiplier": 2.0,
            "epsilon": 1e6,
            "mechanism": "dp_ftrl",
            "min_separation": separation,
        },
        goal=5,
    )
    taken, per_round, ledger = await _rounds(config, rounds)
    last: dict[str, int] = {}
    for index, joined in enumerate(per_round, start=1):
        for w in joined:
            if w in last:
                assert index - last[w] >= separation, (w, last[w], index)
            last[w] = index
    # Bounded by the separation, and the eager ones do not crowd out the lazy ones for good.
    assert max(taken.values()) <= math.ceil(rounds / separation)
    assert any(w.startswith("lazy") for w in taken)
    # ε is dp-accounting's for the trees released: rounds / separation full trees of
    # `separation` steps, node noise multiplier 2, neighbouring relation REPLACE_SPECIAL.
    import dp_accounting
    from dp_accounting import rdp

    assert len(ledger.events) == rounds
    acct = rdp.RdpAccountant(neighboring_relation=dp_accounting.NeighboringRelation.REPLACE_SPECIAL)
    tree = dp_accounting.SingleEpochTreeAggregationDpEvent(2.0, separation)
    acct.compose(tree, rounds // separation)
    assert ledger.spent == pytest.approx(acct.get_epsilon(config.privacy.delta), rel=1e-9)
