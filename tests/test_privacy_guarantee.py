"""ε is never shown alone, and the ε shown is dp-accounting's for the events composed.

Two DP tasks — one Poisson, one DP-FTRL — release rounds through the real coordinator on a real
SQLite file. Then every place that shows ε — ``dandelion task show`` (text and ``--json``),
``task list --json``, the admin API's task list, task detail and privacy ledger, and the
dashboard's data — is read, and each gives the same ε, with δ, mechanism, unit, neighbouring
relation and assumption; the ε equals what dp-accounting computes, called here directly, for
the rounds the ledger holds.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from dandelion.api.auth import hash_token, new_token
from dandelion.coordinator import Coordinator, TaskConfig
from dandelion.privacy import PrivacyConfig
from dandelion.privacy.guarantee import UNIT, guarantee
from dandelion.protocol import Checkin, ComeBack, Hello, Task
from dandelion.settings import load_settings
from dandelion.storage import AsyncStore, SQLiteStore

from .conftest import LiveFactory
from .dp_helpers import Clock, dp_config, finish_round

ROOT = Path(__file__).resolve().parent.parent
WORKERS = 16
ROUNDS = 3


def _config(name: str, privacy: dict[str, Any], goal: int) -> TaskConfig:
    return dp_config(3, name=name, goal=goal, privacy=privacy, deadline_s=10.0)


POISSON = _config(
    "poisson-task",
    {"population": 16, "noise_multiplier": 1.2, "epsilon": 1e4, "mechanism": "poisson"},
    goal=8,
)
FTRL = _config(
    "ftrl-task",
    {
        "population": 100,
        "noise_multiplier": 2.0,
        "epsilon": 1e4,
        "mechanism": "dp_ftrl",
        "min_separation": 2,
    },
    goal=4,
)


async def _release_rounds(db: str) -> None:
    """``ROUNDS`` released rounds of each task, every worker checking in once per round."""
    clock = Clock(1_800_000_000.0)
    store = AsyncStore(lambda: SQLiteStore(db))
    coordinator = Coordinator(
        store, load_settings(environ={}, overrides={"monitor_k": 2}), clock=clock
    )
    await coordinator.start()
    for config in (POISSON, FTRL):
        await coordinator.add_task(config)
    workers = [f"worker-{i:02d}" for i in range(WORKERS)]
    for w in workers:
        await coordinator.on_hello(Hello(w, {"kind": "cpython"}, "opted_in"))
    for config in (POISSON, FTRL):
        runtime = coordinator.tasks[config.name]
        released = 0
        while released < ROUNDS:
            rnd = runtime.round
            assert rnd is not None
            joined: dict[str, Task] = {}
            for w in workers:
                answer = (await coordinator.on_checkin(w, Checkin())).message
                if isinstance(answer, Task) and answer.task == config.name:
                    joined[w] = answer
                else:
                    assert isinstance(answer, ComeBack | Task), answer
            await finish_round(coordinator, clock, config, joined)
            released = len(runtime.ledger.events) if runtime.ledger else 0
    await coordinator.close()
    await store.close()


def _expected_epsilon(config: TaskConfig, rounds: int) -> float:
    """dp-accounting, called directly, for the events the coordinator composed."""
    import dp_accounting
    from dp_accounting import pld, rdp

    privacy = config.privacy
    assert privacy is not None
    if privacy.ftrl:
        acct = rdp.RdpAccountant(
            neighboring_relation=dp_accounting.NeighboringRelation.REPLACE_SPECIAL
        )
        full, last = divmod(rounds, privacy.min_separation)
        tree = dp_accounting.SingleEpochTreeAggregationDpEvent
        if full:
            acct.compose(tree(privacy.noise_multiplier, privacy.min_separation), full)
        if last:
            acct.compose(tree(privacy.noise_multiplier, last))
        return float(acct.get_epsilon(privacy.delta))
    event = dp_accounting.PoissonSampledDpEvent(
        privacy.sampling_rate, dp_accounting.GaussianDpEvent(privacy.noise_multiplier)
    )
    pld_acct = pld.PLDAccountant(value_discretization_interval=1e-4)
    pld_acct.compose(event, rounds)
    return float(pld_acct.get_epsilon(privacy.delta))


def _check(shown: dict[str, Any], config: TaskConfig, expected: float, where: str) -> None:
    privacy = config.privacy
    assert privacy is not None
    assert shown["epsilon"] == pytest.approx(expected, rel=1e-9), where
    assert shown["delta"] == pytest.approx(privacy.delta, rel=1e-12), where
    assert shown["mechanism"] == privacy.mechanism, where
    assert shown["unit"] == UNIT, where
    assert shown["accountant"] == privacy.accountant, where
    statement = shown["statement"]
    assert f"{expected:.4g}" in statement and f"{privacy.delta:.3g}" in statement, where
    assert UNIT in statement and shown["assumption"] in statement, where
    if privacy.ftrl:
        assert "zero update" in shown["neighbouring"], where
        assert f"once every {privacy.min_separation} rounds" in shown["assumption"], where
    else:
        assert shown["neighbouring"] == "add or remove one worker", where
        assert f"q = {privacy.sampling_rate:.4g}" in shown["assumption"], where


def _dandelion(db: str, *args: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "dandelion", *args, "--db", db],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


async def test_every_place_shows_the_same_epsilon_with_its_guarantee(
    tmp_path: Path, live: LiveFactory
) -> None:
    db = str(tmp_path / "state.db")
    await _release_rounds(db)
    expected = {c.name: _expected_epsilon(c, ROUNDS) for c in (POISSON, FTRL)}
    configs = {c.name: c for c in (POISSON, FTRL)}
    # The ledger holds ROUNDS released rounds of each, and its ε is dp-accounting's.
    store = SQLiteStore(db)
    for name in configs:
        ledger = store.list_ledger(name)
        assert len(ledger) == ROUNDS
        assert ledger[-1].epsilon == pytest.approx(expected[name], rel=1e-9)
    store.close()

    # dandelion task show (text and --json) and task list --json.
    for name, config in configs.items():
        shown = json.loads(_dandelion(db, "task", "show", name, "--json"))
        assert shown["privacy"]["epsilon_spent"] == pytest.approx(expected[name], rel=1e-9)
        _check(shown["privacy"]["guarantee"], config, expected[name], "task show --json")
        text = _dandelion(db, "task", "show", name)
        first = text.splitlines()[0]
        assert first == f"guarantee: {shown['privacy']['guarantee']['statement']}"
    rows = {r["name"]: r for r in json.loads(_dandelion(db, "task", "list", "--json"))}
    for name, config in configs.items():
        _check(rows[name]["guarantee"], config, expected[name], "task list --json")

    # The admin API and the dashboard's data, from a coordinator serving that file.
    server = await live(db=db, dashboard_refresh_s=0.1)
    token = new_token()
    await server.store.write(lambda s: s.add_admin_token("ops", hash_token(token), time.time()))
    base = server.url.replace("ws://", "http://").removesuffix("/ws") + "/api/v1"
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as http:

        async def get(path: str) -> Any:
            async with http.get(base + path) as r:
                assert r.status == 200, (path, await r.text())
                return await r.json()

        listed = {t["name"]: t for t in (await get("/tasks"))["tasks"]}
        dashboard = {t["name"]: t for t in (await get("/dashboard"))["tasks"]}
        for name, config in configs.items():
            _check(listed[name]["guarantee"], config, expected[name], "GET /tasks")
            detail = await get(f"/tasks/{name}")
            _check(detail["privacy"]["guarantee"], config, expected[name], "GET /tasks/{name}")
            ledger = await get(f"/tasks/{name}/privacy")
            _check(ledger["privacy"]["guarantee"], config, expected[name], "GET …/privacy")
            _check(dashboard[name]["guarantee"], config, expected[name], "GET /dashboard")
            assert dashboard[name]["epsilon_spent"] == pytest.approx(expected[name], rel=1e-9)


def test_the_guarantee_is_worded_for_each_mechanism() -> None:
    poisson = PrivacyConfig.from_dict(
        {"population": 1000, "noise_multiplier": 1.0, "epsilon": 4.0}, expected_reports=100
    )
    ftrl = PrivacyConfig.from_dict(
        {
            "population": 1000,
            "noise_multiplier": 3.0,
            "epsilon": 4.0,
            "mechanism": "dp_ftrl",
            "min_separation": 8,
        },
        expected_reports=100,
    )
    g = guarantee(poisson, 1.25)
    assert g["epsilon"] == 1.25 and g["mechanism"] == "poisson" and g["accountant"] == "pld"
    assert "q = 0.1" in g["assumption"] and "coin" in g["assumption"]
    assert g["statement"].startswith(f"ε = 1.25 at δ = {poisson.delta:.3g}")
    f = guarantee(ftrl, 2.5)
    assert f["mechanism"] == "dp_ftrl" and f["accountant"] == "rdp"
    assert "no assumption about how workers are sampled" in f["assumption"]
    assert "at most once every 8 rounds" in f["assumption"]
    assert "zero update" in f["neighbouring"]
    # An unbounded ε is said so, and stays strict JSON (null, not Infinity).
    u = guarantee(poisson, math.inf)
    assert u["epsilon"] is None and "ε unbounded" in u["statement"]
    json.dumps(u, allow_nan=False)
