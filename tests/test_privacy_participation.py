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

from .dp_helpers import Clock, dp_config, finish_round, frame_of

EAGER = LAZY = 12
TRIES_EAGER = 10


def _config(privacy: dict[str, Any], goal: int, name: str = "dp") -> TaskConfig:
    return dp_config(3, name=name, goal=goal, privacy=privacy, deadline_s=10.0)


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
        await finish_round(coordinator, clock, config, joined)
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
    taken, per_round, ledger = await _rounds(config, rounds)
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
    # A round whose coins all said no (0.75^24, about once in 1,000) is abandoned, not released.
    assert len(ledger.events) == sum(1 for joined in per_round if joined)
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


async def test_coins_and_separations_survive_a_restart(tmp_path: Any) -> None:
    """A restarted coordinator resumes the open round with its secret (the same coins: a
    worker told ``not_sampled`` is told so again) and rebuilds DP-FTRL's separations from the
    participation events, with the same tree-noise key."""
    from dandelion.coordinator import SeededEntropy
    from dandelion.storage import SQLiteStore

    db = str(tmp_path / "state.db")
    poisson = _config(
        {"population": 40, "noise_multiplier": 1.0, "epsilon": 1e6, "mechanism": "poisson"},
        goal=10,
    )
    ftrl = _config(
        {
            "population": 1000,
            "noise_multiplier": 2.0,
            "epsilon": 1e6,
            "mechanism": "dp_ftrl",
            "min_separation": 3,
        },
        goal=4,
        name="ftrl",
    )
    workers = [f"w-{i:02d}" for i in range(EAGER)]

    async def start(clock: Clock, seed: int = 7) -> tuple[Coordinator, AsyncStore]:
        store = AsyncStore(lambda: SQLiteStore(db))
        # Seeded round secrets: with random ones, all 12 coins of q = 1/4 fall the same way in
        # about 3 % of runs (0.75^12), and the check below would not hold. A restart draws
        # from another seed, so what it keeps must come from storage, not from the seed.
        settings = load_settings(environ={}, overrides={"monitor_k": 2})
        c = Coordinator(store, settings, clock=clock, entropy=SeededEntropy(seed))
        await c.start()
        for w in workers:
            await c.on_hello(Hello(w, {"kind": "cpython"}, "opted_in"))
        return c, store

    async def answers(c: Coordinator, task: str) -> dict[str, str]:
        out = {}
        for w in workers:
            got = (await c.on_checkin(w, Checkin())).message
            out[w] = got.task if isinstance(got, Task) else got.reason  # type: ignore[union-attr]
        return {w: a for w, a in out.items() if a in (task, "not_sampled", "separation")}

    clock = Clock()
    c, store = await start(clock)
    await c.add_task(poisson)
    before = await answers(c, "dp")
    assert "not_sampled" in before.values() and "dp" in before.values(), before
    open_round = c.tasks["dp"].round
    assert open_round is not None
    assert "Poisson participation: closes at its deadline" in open_round.waiting(clock(), 2)
    await c.close()
    await store.close()
    c, store = await start(clock, seed=8)
    assert await answers(c, "dp") == before  # the same coins, not a new flip
    await c.close()
    await store.close()

    # DP-FTRL: one released round with four workers, then a restart.
    clock = Clock()
    db = str(tmp_path / "ftrl.db")
    c, store = await start(clock)
    await c.add_task(ftrl)
    runtime = c.tasks["ftrl"]
    key = runtime.tree_noise._node(0, 0, 0) if runtime.tree_noise else None
    joined = {}
    for w in workers:
        got = (await c.on_checkin(w, Checkin())).message
        if isinstance(got, Task):
            joined[w] = got
    assert len(joined) == 4
    pending = [
        asyncio.ensure_future(
            c.on_update(
                w,
                Update("ftrl", t.round, t.nonce, num_examples=1, unclipped=True),
                frame_of(ftrl, t.nonce, np.full(4, 0.1, dtype=np.float32)),
            )
        )
        for w, t in joined.items()
    ]
    await asyncio.gather(*pending)
    while runtime.closing or runtime.released < 1:
        await asyncio.sleep(0.001)
    await c.close()
    await store.close()
    clock.now += 1
    c, store = await start(clock, seed=8)
    runtime = c.tasks["ftrl"]
    await c.tick()  # opens round 2
    while runtime.opening or runtime.round is None:
        await asyncio.sleep(0.001)
    assert runtime.tree_noise is not None and key is not None
    assert np.array_equal(runtime.tree_noise._node(0, 0, 0), key)  # the same stored key
    for w in workers:
        got = (await c.on_checkin(w, Checkin())).message
        if w in joined:
            assert isinstance(got, ComeBack) and got.reason == "separation", (w, got)
    await c.close()
    await store.close()
