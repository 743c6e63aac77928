"""WebSocket mode: hundreds of emulated workers, each on its own real socket, one coordinator."""

from __future__ import annotations

from dandelion.emulation import EmulateOptions, PopulationConfig, emulate
from dandelion.emulation.population import Dist, default_task

from .conftest import scaled


def test_500_workers_over_real_websockets_complete_rounds() -> None:
    task = default_task(150, 2)
    task["features"] = {"num_buckets": 64}
    task["rounds"].update(deadline_s=scaled(20.0), min_reports=120)
    config = PopulationConfig(
        size=500,
        seed=3,
        rounds=2,
        history_days=9.0,
        test_users=10,
        dropout=0.0,
        startup_s=Dist(0.5),
        straggler_share=0.0,
    )
    result = emulate(
        config,
        EmulateOptions(
            mode="websocket", coordinator="inprocess", progress=False, max_wall_s=scaled(150.0)
        ),
        task=task,
    )
    summary = result.summary()
    c = result.counters
    assert summary["rounds"] == 2, c
    assert c["unexpected_disconnects"] == 0
    assert c.get("connect_failed", 0) == 0
    assert c["peak_concurrent_workers"] == 500  # every worker connected at once
    assert summary["final_accuracy"] is not None
