"""Pace steering for a full round: only as many workers as may get a slot are asked back soon;
the next round's share when the round is expected to close, everybody else spread wider.
Unit-level on ``PaceSteering``, then through a real coordinator on a SQLite file."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest

from dandelion.coordinator import HEADROOM, Coordinator, PaceSteering
from dandelion.protocol import (
    Checkin,
    ComeBack,
    FrameHeader,
    Hello,
    Task,
    Update,
    decode_frame,
    encode_frame,
)

from .conftest import small_task
from .dp_helpers import Clock, file_coordinator, stop_coordinator

PARAMS = 11  # small_task: logistic regression on 10 features


def test_without_an_estimate_every_turned_away_worker_comes_back_soon() -> None:
    pace = PaceSteering(min_s=5.0, max_s=600.0, target_rate=50.0)
    for rank in (0, 10, 10_000):
        window = pace.turned_away(100.0, rank=rank, soon=3, closes_at=None, need=13)
        assert window.min_s == pytest.approx(5.0)
        assert window.max_s <= 5.0 + 20.0


def test_the_ranks_decide_soon_next_round_or_spread() -> None:
    pace = PaceSteering(min_s=5.0, max_s=600.0, target_rate=50.0)
    now, closes_at, soon, need = 100.0, 160.0, 300, 1300
    windows = [
        pace.turned_away(now, rank=rank, soon=soon, closes_at=closes_at, need=need)
        for rank in range(40_000)
    ]
    first = windows[:soon]
    assert all(w.min_s == pytest.approx(5.0) and w.max_s <= 25.0 for w in first)
    share = windows[soon : soon + int(HEADROOM * need)]
    # They arrive from the expected close on, at about the target rate.
    assert all(w.min_s == pytest.approx(60.0) for w in share)
    assert all(w.max_s - w.min_s == pytest.approx(HEADROOM * need / 50.0) for w in share)
    rest = windows[soon + int(HEADROOM * need) :]
    assert all(w.min_s == pytest.approx(60.0) for w in rest)
    assert rest[-1].max_s == pytest.approx(600.0)  # tens of thousands waiting: as wide as allowed
    assert all(r.max_s >= share[0].max_s for r in rest)


def test_an_expected_close_in_the_past_still_waits_the_narrowest_window() -> None:
    pace = PaceSteering(min_s=5.0, max_s=600.0, target_rate=50.0)
    window = pace.turned_away(100.0, rank=50, soon=2, closes_at=90.0, need=10)
    assert window.min_s == pytest.approx(5.0)
    assert window.max_s - window.min_s >= 20.0


async def _checkin(coordinator: Coordinator, worker: str) -> Task | ComeBack:
    await coordinator.on_hello(Hello(worker, {"kind": "cpython"}, "opted_in"))
    answer = (await coordinator.on_checkin(worker, Checkin())).message
    assert isinstance(answer, Task | ComeBack), answer
    return answer


def _update(coordinator: Coordinator, worker: str, task: Task) -> asyncio.Task[object]:
    values = np.full(PARAMS, 0.1, dtype="<f4")
    header = FrameHeader("update", task.task, task.round, task.nonce, "float32", (PARAMS,))
    frame = decode_frame(encode_frame(header, values.tobytes()))
    update = Update(task.task, task.round, task.nonce, num_examples=4, unclipped=True)
    return asyncio.ensure_future(coordinator.on_update(worker, update, frame))


async def test_a_full_round_asks_back_soon_only_its_margin(tmp_path: Path) -> None:
    clock = Clock()
    coordinator = await file_coordinator(tmp_path / "state.db", clock)
    try:
        # goal 10, 12 assigned: a margin of 2 slots that may free up.
        await coordinator.add_task(
            small_task(goal=10, over_selection=1.2, min_reports=10, deadline_s=300.0)
        )
        assigned = {}
        for i in range(12):
            answer = await _checkin(coordinator, f"w{i}")
            assert isinstance(answer, Task), answer
            assigned[f"w{i}"] = answer
        # Full before any report: nobody knows when it closes, so all are asked back soon.
        early = await _checkin(coordinator, "early")
        assert isinstance(early, ComeBack) and early.reason == "round_full"
        assert early.retry_window.max_s <= 5 * coordinator.settings.pace_min_s
        # Six reports, 40 s after their assignments: the round should close in about 40 s.
        clock.now += 40.0
        pending = [_update(coordinator, w, t) for w, t in list(assigned.items())[:6]]
        for _ in range(20):
            await asyncio.sleep(0)
        away = [await _checkin(coordinator, f"late{i}") for i in range(60)]
        assert all(isinstance(a, ComeBack) and a.reason == "round_full" for a in away)
        windows = [a.retry_window for a in away if isinstance(a, ComeBack)]
        # "early" took the first of the 2 soon ranks; one more is asked back soon.
        assert windows[0].min_s == pytest.approx(coordinator.settings.pace_min_s)
        share = windows[1 : 1 + int(HEADROOM * 12)]
        assert all(w.min_s == pytest.approx(40.0) for w in share), share
        assert all(w.min_s == pytest.approx(40.0) for w in windows[1 + int(HEADROOM * 12) :])
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
    finally:
        await stop_coordinator(coordinator)


async def test_the_next_round_uses_the_last_rounds_latency_before_its_own(
    tmp_path: Path,
) -> None:
    clock = Clock()
    coordinator = await file_coordinator(tmp_path / "state.db", clock)
    try:
        await coordinator.add_task(
            small_task(goal=2, over_selection=1.0, min_reports=2, deadline_s=300.0)
        )
        first = {f"w{i}": await _checkin(coordinator, f"w{i}") for i in range(2)}
        clock.now += 30.0
        acks = [_update(coordinator, w, t) for w, t in first.items() if isinstance(t, Task)]
        await asyncio.gather(*acks)
        runtime = coordinator.tasks["t1"]
        for _ in range(500):
            if runtime.round is not None and runtime.round.number == 2:
                break
            await coordinator.tick()
            await asyncio.sleep(0.01)
        assert runtime.report_latency_s == pytest.approx(30.0)
        for i in range(2):
            assert isinstance(await _checkin(coordinator, f"v{i}"), Task)
        # Full, no report of its own yet: the margin is 1 slot, then the last round's 30 s.
        soon, later = [await _checkin(coordinator, f"x{i}") for i in range(2)]
        assert isinstance(soon, ComeBack) and isinstance(later, ComeBack)
        assert soon.retry_window.min_s == pytest.approx(coordinator.settings.pace_min_s)
        assert later.retry_window.min_s == pytest.approx(30.0)
    finally:
        await stop_coordinator(coordinator)
