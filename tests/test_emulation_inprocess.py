"""In-process emulation on virtual time: the real worker and coordinator, churn included;
the same model from every backend."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import numpy as np
import pytest

from dandelion.emulation import EmulateOptions, PopulationConfig, RunResult, emulate
from dandelion.emulation.clock import run_virtual
from dandelion.emulation.population import default_task
from dandelion.emulation.store import EmulationStore
from dandelion.storage import ParticipationEvent


def _task(goal: int, rounds: int, **hyper: Any) -> dict[str, Any]:
    task = default_task(goal, rounds)
    task["features"] = {"num_buckets": 64}
    task["hyper"].update(hyper)
    return task


def _run(config: PopulationConfig, goal: int, **options: Any) -> RunResult:
    options.setdefault("progress", False)
    return emulate(config, EmulateOptions(**options), task=_task(goal, config.rounds))


CHURNY = PopulationConfig(
    size=600,
    seed=4,
    rounds=3,
    history_days=9.0,
    test_users=20,
    dropout=0.2,
    straggler_share=0.1,
    opt_out_per_day=100.0,  # a mean of about 15 minutes opted in: churn within the run
    initially_opted_in=0.8,
    opt_in_per_day=100.0,
    peak_online=0.9,
)


@pytest.fixture(scope="module")
def churny() -> RunResult:
    return _run(CHURNY, goal=40)


def test_rounds_complete_through_the_real_coordinator(churny: RunResult) -> None:
    summary = churny.summary()
    c = churny.counters
    assert summary["rounds"] == 3
    assert c.get("protocol_error", 0) == 0
    assert c.get("worker_errors", 0) == 0
    # Every report the rounds counted was acknowledged by the coordinator, one by one.
    assert c["ack"] >= sum(r.reported for r in churny.completed) == summary["reports"]
    assert all(r.reported >= 32 for r in churny.completed)  # min_reports = 80% of 40
    assert c["trained"] >= c["ack"]
    assert summary["final_accuracy"] is not None and 0.6 < summary["final_accuracy"] <= 1.0
    assert summary["clients_per_s"] > 0 and summary["peak_rss_mb"] > 0


def test_churn_happens_as_the_population_file_says(churny: RunResult) -> None:
    c = churny.counters
    assert c["dropouts"] > 0 and c["left_dropout"] == c["dropouts"]
    assert c["opted_out"] > 0 and c.get("opt_out", 0) + c.get("reject_not_opted_in", 0) > 0
    assert c["hello"] > 0 and c["sessions"] >= c["hello"] - c.get("reject_not_opted_in", 0)
    # Over-selection absorbs dropouts: more assigned than reported.
    assert all(r.assigned > r.reported for r in churny.completed)


def test_virtual_time_runs_far_faster_than_the_wall_clock(churny: RunResult) -> None:
    assert churny.virtual_s > 5 * churny.wall_s


def test_a_run_is_reproducible_and_the_seed_matters() -> None:
    config = PopulationConfig(size=200, seed=11, rounds=2, history_days=9.0, test_users=10)
    a = _run(config, goal=20)
    b = _run(config, goal=20)
    c = _run(config.replace(seed=12), goal=20)
    assert np.array_equal(a.params, b.params)
    assert not np.array_equal(a.params, c.params)


def test_ray_backend_gives_the_single_process_model() -> None:
    config = PopulationConfig(size=300, seed=21, rounds=2, history_days=9.0, test_users=10)
    local = _run(config, goal=30)
    spread = _run(config, goal=30, backend="ray", processes=2)
    assert local.summary()["rounds"] == spread.summary()["rounds"] == 2
    assert np.allclose(local.params, spread.params, rtol=0, atol=1e-6)
    assert spread.counters["trained"] == local.counters["trained"]


def test_process_backend_gives_the_single_process_model() -> None:
    config = PopulationConfig(size=200, seed=22, rounds=2, history_days=9.0, test_users=10)
    local = _run(config, goal=20)
    spread = _run(config, goal=20, backend="processes", processes=2)
    assert np.allclose(local.params, spread.params, rtol=0, atol=1e-6)


def test_virtual_clock_jumps_and_waits_for_threads() -> None:
    async def main() -> tuple[float, float, float]:
        loop = asyncio.get_running_loop()
        await asyncio.sleep(86400.0)
        day = loop.time()
        stamp = await asyncio.to_thread(lambda: (time.sleep(0.05), loop.time())[1])
        return day, stamp, loop.time()

    started = time.perf_counter()
    day, stamp, end = run_virtual(main())
    assert day == pytest.approx(86400.0)
    assert stamp == end == pytest.approx(86400.0)  # no jump while the thread ran
    assert time.perf_counter() - started < 5.0


def test_emulation_store_counts_events_without_keeping_them() -> None:
    store = EmulationStore()
    store.record_events(
        [ParticipationEvent(f"w{i:07d}", "t", 1, "reported", 90.0) for i in range(500)]
    )
    store.set_consent("w0000001", "opted_out", 1.0)
    assert store.count_events(event="reported") == 500
    assert store.event_counts("t") == {"reported": 500}
    assert store.event_histogram(since=0.0, bucket_s=60.0) == [(60.0, "reported", 500)]
    assert list(store.iter_events()) == []
    assert store.get_consent("w0000001") == "opted_out"
    assert store.consent_counts() == {"opted_out": 1}
