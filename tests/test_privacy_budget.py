"""The ε budget: a round that would pass it is not started, the task says why, and that holds
after a restart — of the Coordinator object on the same SQLite file, and of `dandelion serve`."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from dandelion.coordinator import Coordinator, TaskConfig
from dandelion.privacy import epsilon_after
from dandelion.protocol import Ack, Checkin, ComeBack, Hello, Task, Update
from dandelion.storage import SQLiteStore

from .conftest import RawClient, scaled, toy_task_file
from .dp_helpers import Clock, file_coordinator, frame_of, stop_coordinator
from .test_coordinator_live import report_together
from .test_kill_restart import Server

GOAL, POPULATION, Z = 3, 30, 1.5
Q, DELTA = GOAL / POPULATION, 1e-3 / POPULATION


def _budget_for(rounds: int, accountant: str) -> float:
    """A budget that fits exactly ``rounds`` rounds."""
    fits = epsilon_after(Q, Z, rounds, DELTA, accountant)
    over = epsilon_after(Q, Z, rounds + 1, DELTA, accountant)
    assert fits < over
    return round((fits + over) / 2, 4)


def _config(budget: float, accountant: str, clipping: str = "fixed") -> TaskConfig:
    privacy: dict[str, Any] = {
        "population": POPULATION,
        "noise_multiplier": Z,
        "epsilon": budget,
        "delta": DELTA,
        "accountant": accountant,
        "clipping": clipping,
    }
    if clipping == "adaptive":
        privacy["bit_noise_std"] = 1.0
    return TaskConfig.from_dict(
        {
            "name": "dp",
            "objective": "page_examples",
            "model": {"kind": "logreg", "num_features": 10},
            "hyper": {"clip_norm": 1.0},
            "server": {"weighting": "uniform"},
            "rounds": {"goal": GOAL, "over_selection": 1.0, "min_reports": GOAL},
            "privacy": privacy,
        }
    )


async def _one_round(coordinator: Coordinator, tag: str) -> list[float]:
    """Workers check in until GOAL of them are sampled (each worker's coin for the round has
    probability q), those report, the deadline closes the round; wait for the commit. Returns
    the clip norms sent."""
    runtime = coordinator.tasks["dp"]
    clips = []
    reports = []
    for i in range(100 * POPULATION):
        if len(reports) == GOAL:
            break
        worker = f"w-{tag}-{i:05d}"
        await coordinator.on_hello(Hello(worker, {"kind": "cpython"}, "opted_in"))
        task = (await coordinator.on_checkin(worker, Checkin())).message
        if isinstance(task, ComeBack):
            assert task.reason == "not_sampled", task
            continue
        assert isinstance(task, Task), task
        clips.append(task.hyper["clip_norm"])
        values = np.full(11, 0.1 * (len(reports) + 1), dtype=np.float32)
        update = Update("dp", task.round, task.nonce, num_examples=3, unclipped=True)
        frame = frame_of(runtime.config, task.nonce, values)
        reports.append(asyncio.ensure_future(coordinator.on_update(worker, update, frame)))
    assert len(reports) == GOAL
    # Under Poisson participation the round closes at its deadline, and acknowledges then.
    await asyncio.sleep(0)
    assert runtime.round is not None
    coordinator.clock.now = runtime.round.deadline + 1  # type: ignore[attr-defined]
    await coordinator.tick()
    for reply in await asyncio.gather(*reports):
        assert isinstance(reply.message, Ack), reply
    for _ in range(500):
        if runtime.round is None and not runtime.closing:
            return clips
        await asyncio.sleep(0.01)
    raise AssertionError("the round did not commit")


async def _tick(coordinator: Coordinator) -> None:
    await coordinator.tick()
    for _ in range(200):  # an opening round runs the accountant in a thread
        if not coordinator.tasks["dp"].opening:
            return
        await asyncio.sleep(0.01)


@pytest.mark.parametrize(("accountant", "clipping"), [("rdp", "fixed"), ("pld", "adaptive")])
async def test_the_round_past_the_budget_is_refused_also_after_a_restart(
    tmp_path: Path, accountant: str, clipping: str
) -> None:
    db, clock = tmp_path / "state.db", Clock()
    budget = _budget_for(2, accountant)
    coordinator = await file_coordinator(db, clock)
    await coordinator.add_task(_config(budget, accountant, clipping))
    sent = [await _one_round(coordinator, "a")]
    await _tick(coordinator)
    sent.append(await _one_round(coordinator, "b"))
    await _tick(coordinator)  # round 3 would pass the budget
    runtime = coordinator.tasks["dp"]
    assert runtime.round is None
    assert runtime.status == "budget_exhausted"
    assert "privacy budget exhausted" in runtime.reason
    assert f"budget {budget:g}" in runtime.reason
    refused = (await coordinator.on_checkin("w-late", Checkin())).message
    assert isinstance(refused, ComeBack) and refused.reason == "budget_exhausted"
    if clipping == "adaptive":  # the second round used the C the first one chose
        assert sent[0] == [1.0] * GOAL and sent[1][0] != 1.0
    clip_before = runtime.clip_norm
    await stop_coordinator(coordinator)

    store = SQLiteStore(str(db))
    ledger = store.list_ledger("dp")
    assert [e.round for e in ledger] == [1, 2]
    assert ledger[-1].epsilon == pytest.approx(epsilon_after(Q, Z, 2, DELTA, accountant))
    assert ledger[-1].epsilon <= budget
    assert {(e.sampling_rate, e.noise_multiplier) for e in ledger} == {(Q, Z)}
    record = store.get_task("dp")
    assert record is not None and record.status == "budget_exhausted"
    assert record.reason == runtime.reason
    rounds = store.list_rounds("dp")
    assert [r.round for r in rounds] == [2, 1]
    # Only released figures are kept under DP: no worker loss, accuracy or norms.
    assert set(rounds[0].metrics) <= {
        "clip_norm",
        "noise_std",
        "next_clip_norm",
        "unclipped_fraction_noised",
        "epsilon",
    }
    assert rounds[0].metrics["epsilon"] == ledger[-1].epsilon
    # An operator resumes the task by hand: the coordinator asks the ledger again and refuses.
    store.set_task_status("dp", "active")
    store.close()

    clock.now += 60
    again = await file_coordinator(db, clock)
    assert again.tasks["dp"].ledger is not None
    assert again.tasks["dp"].ledger.spent == ledger[-1].epsilon
    assert again.tasks["dp"].clip_norm == pytest.approx(clip_before)
    for _ in range(3):
        await _tick(again)
        clock.now += 1
    assert again.tasks["dp"].round is None
    assert again.tasks["dp"].status == "budget_exhausted"
    await stop_coordinator(again)
    store = SQLiteStore(str(db))
    assert store.last_round_number("dp") == 2
    assert [e.round for e in store.list_ledger("dp")] == [1, 2]
    store.close()


async def test_an_abandoned_round_spends_nothing(tmp_path: Path) -> None:
    db, clock = tmp_path / "state.db", Clock()
    coordinator = await file_coordinator(db, clock)
    await coordinator.add_task(_config(_budget_for(1, "rdp"), "rdp"))
    runtime = coordinator.tasks["dp"]
    assert runtime.round is not None
    clock.now += 1000  # the deadline passes with no report
    await coordinator.tick()
    for _ in range(200):
        if runtime.round is None and not runtime.closing:
            break
        await asyncio.sleep(0.01)
    await _tick(coordinator)  # the retry may open: nothing was released
    assert runtime.ledger is not None and runtime.ledger.events == []
    assert runtime.status == "active" and runtime.round is not None
    await _one_round(coordinator, "a")
    await _tick(coordinator)
    assert runtime.status == "budget_exhausted"
    await stop_coordinator(coordinator)


def _dandelion(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dandelion", *args], capture_output=True, text=True, timeout=120
    )


def _dp_task_file(budget: float) -> str:
    return toy_task_file(
        {"goal": 3, "min_reports": 3, "over_selection": 1.0, "deadline_s": 3.0},
        server={"weighting": "uniform"},
        privacy={
            "population": 30,
            "noise_multiplier": 1.5,
            "delta": DELTA,
            "epsilon": budget,
            "accountant": "pld",
        },
    )


async def _assigned(client: RawClient) -> dict[str, Any] | None:
    """The client's task, None once the budget is spent, or {} when its coin says no."""
    for _ in range(100):
        msg, _frame = await client.checkin()
        if msg["type"] == "task":
            return msg
        if msg["reason"] == "budget_exhausted":
            return None
        if msg["reason"] == "not_sampled":
            return {}
        await asyncio.sleep(0.02)
    raise AssertionError("neither a task nor budget_exhausted")


async def test_dandelion_serve_keeps_refusing_after_a_kill_and_restart(tmp_path: Path) -> None:
    server = Server(tmp_path)
    budget = _budget_for(1, "pld")
    server.task_file.write_text(_dp_task_file(budget))
    try:
        await server.start()
        clients, tasks, others = [], [], []
        for i in range(100 * POPULATION):  # until GOAL workers' coins said yes
            if len(clients) == GOAL:
                break
            client = await RawClient.connect(server.url)
            assert (await client.hello(f"worker-{i}"))["type"] == "welcome"
            task = await _assigned(client)
            assert task is not None
            (clients if task else others).append(client)
            if task:
                tasks.append(task)
        for client in others:
            await client.close()
        # The deadline (3 s) closes the round: Poisson participation has no goal count.
        replies = await report_together(zip(clients, tasks, strict=True), np.full(11, 0.05))
        assert [r["type"] for r in replies] == ["ack"] * GOAL, replies
        # Round 2 would pass the budget: it is never offered.
        assert await _assigned(clients[0]) is None
        for client in clients:
            await client.close()
        server.kill()

        await server.start()  # the same state file and task file
        client = await RawClient.connect(server.url)
        assert (await client.hello("worker-after"))["type"] == "welcome"
        assert await _assigned(client) is None
        await client.close()
        shown = json.loads(
            _dandelion("task", "show", "t1", "--json", "--db", str(server.db)).stdout
        )
        assert shown["status"] == "budget_exhausted"
        assert "privacy budget exhausted" in shown["status_reason"]
        privacy = shown["privacy"]
        expected = epsilon_after(Q, Z, 1, DELTA, "pld")
        assert privacy["epsilon_spent"] == pytest.approx(expected)
        assert privacy["epsilon_budget"] == budget
        assert privacy["rounds_released"] == 1
        assert [e["round"] for e in privacy["ledger"]] == [1]
        listed = json.loads(_dandelion("task", "list", "--json", "--db", str(server.db)).stdout)
        assert listed[0]["epsilon_spent"] == pytest.approx(expected)
        text = _dandelion("task", "show", "t1", "--db", str(server.db)).stdout
        assert "epsilon_spent" in text and "budget_exhausted" in text
    finally:
        if server.proc is not None and server.proc.poll() is None:
            server.proc.terminate()
            server.proc.wait(timeout=scaled(10))
