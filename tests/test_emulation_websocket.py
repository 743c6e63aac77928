"""WebSocket mode: hundreds of emulated workers, each on its own real socket, one coordinator."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from dandelion.emulation import EmulateOptions, PopulationConfig, PopulationConfigError, emulate
from dandelion.emulation.population import Dist, default_task

from .conftest import free_port, scaled, wait_for_port


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
    # The coordinator in this process tells what each round's dropped is made of.
    for r in result.rounds:
        assert r.left is not None and r.unfinished is not None and r.rejected is not None
        assert r.left + r.unfinished + r.rejected == r.dropped


def test_a_second_run_against_the_same_coordinator_counts_only_its_own_rounds(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`--url` and `--db` of a coordinator that already ran rounds: the run trains its own
    rounds (the file's earlier ones are not reported as this run's), and `--db` alone on a file
    that holds the task is refused in words, not a traceback."""
    task = default_task(20, 1)
    task["features"] = {"num_buckets": 32}
    task["rounds"].update(deadline_s=scaled(20.0), min_reports=20, max_rounds=5)
    config = PopulationConfig(
        size=30, seed=4, rounds=1, history_days=9.0, test_users=5, dropout=0.0,
        startup_s=Dist(0.2), straggler_share=0.0,
    )  # fmt: skip
    db = str(tmp_path / "state.db")
    quick = {"progress": False, "max_wall_s": scaled(120.0)}
    first = emulate(config, EmulateOptions(mode="websocket", db=db, **quick), task=task)
    assert [r.round for r in first.rounds] == [1]

    with pytest.raises(PopulationConfigError, match=r"exists already.*--url"):
        emulate(config, EmulateOptions(mode="websocket", db=db, **quick), task=task)

    port = free_port()
    serve = subprocess.Popen(
        [sys.executable, "-m", "dandelion", "serve", "--db", db, "--port", str(port),
         "--pace-min-s=1.0", "--pace-max-s=30.0", "--tick-s=0.1"],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        wait_for_port(port, serve)
        url = f"ws://127.0.0.1:{port}/ws"
        capsys.readouterr()
        for forced in ("FORCE_COLOR", "TTY_COMPATIBLE"):  # standard error is no terminal
            monkeypatch.delenv(forced, raising=False)
        watched = {**quick, "progress": True}
        second = emulate(
            config, EmulateOptions(mode="websocket", url=url, db=db, **watched), task=task
        )
        shown = capsys.readouterr().err
    finally:
        serve.terminate()
        serve.wait(30)
    assert [(r.round, r.status) for r in second.rounds] == [(2, "completed")]
    assert second.counters["trained"] >= 20
    assert second.summary()["final_accuracy"] is not None
    # Progress against --url, on standard error; the state file keeps only dropped's sum.
    assert "1/1 rounds, round 2 completed" in shown, shown
    assert second.rounds[0].left is None and second.summary()["dropped_by"]["left"] is None
    assert second.stopped == "rounds_completed"


_EVALUATED_TASK = """
name = "emulated"
objective = "revisit_7d"
[features]
num_buckets = 32
horizon_days = 7.0
[model]
kind = "logreg"
[hyper]
learning_rate = 0.3
epochs = 2
batch_size = 16
clip_norm = 10.0
[rounds]
goal = 20
min_reports = 20
deadline_s = 20.0
max_rounds = 10
[evaluation]
every = 1
holdout = 0.2
goal = 20
min_reports = 20
"""


def test_against_a_task_with_evaluation_only_training_rounds_are_the_runs_rounds(
    tmp_path: Path,
) -> None:
    """`--url` of a coordinator serving a task with `[evaluation]`: the devices hold out and
    answer its evaluation rounds, which are counted apart; the run's rounds are the training
    rounds, each trained and scored on the emulator's held-out users."""
    task_file = tmp_path / "task.toml"
    task_file.write_text(_EVALUATED_TASK)
    db = str(tmp_path / "state.db")
    port = free_port()
    serve = subprocess.Popen(
        [sys.executable, "-m", "dandelion", "serve", "--db", db, "--port", str(port),
         "--task", str(task_file), "--pace-min-s=1.0", "--pace-max-s=30.0", "--tick-s=0.1"],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    task = default_task(20, 2)
    task["features"] = {"num_buckets": 32}
    config = PopulationConfig(
        size=30, seed=5, rounds=2, history_days=9.0, test_users=5, dropout=0.0,
        startup_s=Dist(0.2), straggler_share=0.0,
    )  # fmt: skip
    try:
        wait_for_port(port, serve)
        result = emulate(
            config,
            EmulateOptions(
                mode="websocket", url=f"ws://127.0.0.1:{port}/ws", db=db, progress=False,
                max_wall_s=scaled(120.0),
            ),
            task=task,
        )  # fmt: skip
    finally:
        serve.terminate()
        serve.wait(30)
    summary = result.summary()
    assert [(r.round, r.status) for r in result.rounds] == [(1, "completed"), (3, "completed")]
    assert summary["rounds"] == 2
    assert result.counters["evaluation_rounds_completed"] >= 1
    assert result.counters["trained"] >= 40  # held-out devices train as plain lists too
    assert summary["final_accuracy"] is not None
    assert all(r.accuracy is not None for r in result.rounds)
