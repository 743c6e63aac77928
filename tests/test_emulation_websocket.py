"""WebSocket mode: hundreds of emulated workers, each on its own real socket, one coordinator."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from dandelion.bundle import assemble_bundle
from dandelion.coordinator import load_task_file
from dandelion.emulation import (
    EmulateOptions,
    EmulationError,
    PopulationConfig,
    PopulationConfigError,
    emulate,
)
from dandelion.emulation.feasibility import start_check
from dandelion.emulation.plan import make_plan
from dandelion.emulation.population import Dist, default_task
from dandelion.plugins import find_package

from .conftest import free_port, scaled, wait_for_port
from .test_single_writer import dandelion, one_line

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "engagement"


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


def test_the_start_up_check_counts_every_device_online_in_websocket_mode() -> None:
    """14 devices and a round that needs 10: in virtual time the diurnal availability leaves
    about 9 online at once (warned of); WebSocket mode keeps all 14 online, so it warns of
    nothing and the round completes. Eligibility counts in both modes."""
    task = default_task(10, 1)
    task["features"] = {"num_buckets": 32}
    task["rounds"].update(min_reports=10, deadline_s=scaled(30.0))
    config = PopulationConfig(
        size=14, seed=2, rounds=1, history_days=9.0, test_users=5, dropout=0.0,
        startup_s=Dist(0.2), straggler_share=0.0,
    )  # fmt: skip
    plan = make_plan(config, task=task)
    virtual = start_check(plan)
    assert virtual.doomed and "at most about 9 of the 14 devices" in virtual.warnings[0]
    live = start_check(plan, "websocket")
    assert live.warnings == [] and not live.doomed
    charging = make_plan(
        config.replace(charging=0.5), task={**task, "eligibility": {"charging": True}}
    )
    [warning] = start_check(charging, "websocket").warnings
    assert "at most about 7 of the 14 devices" in warning

    options = EmulateOptions(
        mode="websocket", coordinator="inprocess", progress=False, max_wall_s=scaled(90.0)
    )
    result = emulate(config, options, task=task)
    assert result.warnings == []
    assert result.summary()["rounds"] == 1 and result.stopped == "rounds_completed"


_SERVED = {
    # A built-in objective of another width, and a package of the user's own that the
    # emulator's process does not even know (its model kind is unknown here).
    "builtin": (
        ROOT / "examples" / "tab-switch.toml",
        "task 'tab-switch' (objective tab_switch, features cap_s=3600.0 num_buckets=256, "
        "model linreg over 276 features)",
    ),
    "own-package": (
        EXAMPLE / "task.toml",
        "task 'long-read' (objective long_read, features num_buckets=256 threshold_s=30.0, "
        "model relu_net over 263 features)",
    ),
}


@pytest.mark.parametrize("served", sorted(_SERVED))
def test_against_a_coordinator_serving_another_task_the_run_stops_in_one_line(
    tmp_path: Path, served: str
) -> None:
    """`--url` without `--task`: the devices' data is built for the default revisit task, the
    coordinator serves another objective and width. The first assignment stops the run with
    one line naming both tasks and the fix, exit 2: no traceback, no hang."""
    task_file, described = _SERVED[served]
    bundle = tmp_path / "bundle"
    assemble_bundle(bundle, plugins=[find_package(str(EXAMPLE / "engagement"))])
    port = free_port()
    serve = subprocess.Popen(
        [sys.executable, "-m", "dandelion", "serve", "--db", str(tmp_path / "state.db"),
         "--create", "--port", str(port), "--task", str(task_file), "--bundle-dir", str(bundle),
         "--pace-min-s=1.0", "--pace-max-s=30.0", "--tick-s=0.1"],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        wait_for_port(port, serve)
        run = dandelion(
            "emulate", "--mode", "websocket", "--url", f"ws://127.0.0.1:{port}/ws",
            "--workers", "20", "--rounds", "1", "--max-wall-s", str(scaled(60.0)),
        )  # fmt: skip
    finally:
        serve.terminate()
        serve.wait(30)
    assert run.returncode == 2, run.stderr
    assert one_line(run) == (
        f"dandelion emulate: the coordinator at ws://127.0.0.1:{port}/ws assigned {described}, "
        "but the devices' data is built for task 'emulated' (objective revisit_7d, features "
        "horizon_days=7.0 num_buckets=1024, model logreg over 1044 features): pass --task FILE "
        "with the served task's file (and --with PACKAGE for its objective's package, when it "
        "is your own)"
    )


def test_with_a_package_of_your_own_the_started_coordinator_serves_it(tmp_path: Path) -> None:
    """Without `--url`, `--with` builds a worker bundle with the package for the `dandelion
    serve` the run starts: the package's task trains there."""
    run = dandelion(
        "emulate", "--mode", "websocket", "--task", str(EXAMPLE / "task.toml"),
        "--with", str(EXAMPLE / "engagement"), "--workers", "12", "--cohort", "8",
        "--rounds", "1", "--max-wall-s", str(scaled(90.0)), "--json",
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert "Traceback" not in run.stderr and "warning" not in run.stderr
    summary = json.loads(run.stdout)
    assert summary["rounds"] == 1 and summary["reports"] >= 8
    assert summary["final_accuracy"] is not None


def test_a_coordinator_that_refuses_to_start_is_one_line_with_its_own_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The `dandelion serve` a run starts refuses the task (no bundle holds its package): the
    run ends with an EmulationError carrying serve's own line, and nothing else is printed."""
    monkeypatch.syspath_prepend(str(EXAMPLE))
    __import__("engagement")
    task = load_task_file(str(EXAMPLE / "task.toml")).to_dict()
    task["rounds"].update(goal=8, min_reports=6)
    config = PopulationConfig(size=12, seed=1, rounds=1, history_days=9.0, test_users=5)
    empty = tmp_path / "no-bundle"
    empty.mkdir()
    options = EmulateOptions(
        mode="websocket", progress=False, max_wall_s=scaled(60.0),
        settings={"bundle_dir": str(empty)},
    )  # fmt: skip
    with pytest.raises(EmulationError) as raised:
        emulate(config, options, task=task)
    message = str(raised.value)
    assert message.startswith("the dandelion serve started for the run exited with status 2: ")
    assert message.endswith(
        "task long-read: objective 'long_read' and model 'relu_net' not known here and no "
        "bundle is served (dandelion bundle --with PACKAGE)"
    )
    assert "\n" not in message and capsys.readouterr().err == ""


def _serving(db: Path) -> int | None:
    """The pid of the `dandelion serve` holding ``db``, if one runs."""
    for proc in Path("/proc").iterdir():
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"serve" in argv and str(db).encode() in argv:
            return int(proc.name)
    return None


def test_a_started_coordinator_killed_mid_run_ends_the_run_in_one_line(tmp_path: Path) -> None:
    """The `dandelion serve` the run started dies (SIGKILL) while devices wait for a round that
    cannot fill: the run stops at once with an EmulationError naming the exit, not at its
    wall limit."""
    task = default_task(20, 1)
    task["features"] = {"num_buckets": 32}
    task["rounds"].update(min_reports=20, deadline_s=600.0)
    config = PopulationConfig(size=5, seed=7, rounds=1, history_days=9.0, test_users=5)
    db = tmp_path / "state.db"
    options = EmulateOptions(mode="websocket", db=str(db), progress=False, max_wall_s=600.0)
    failed: list[BaseException] = []

    def run() -> None:
        try:
            emulate(config, options, task=task)
        except BaseException as exc:  # handed to the test's thread
            failed.append(exc)

    runner = threading.Thread(target=run)
    runner.start()
    deadline = time.monotonic() + scaled(60.0)
    pid = None
    while pid is None and time.monotonic() < deadline:
        time.sleep(0.2)
        pid = _serving(db)
    assert pid is not None
    time.sleep(2.0)  # the devices are connected and waiting
    os.kill(pid, signal.SIGKILL)
    runner.join(scaled(60.0))
    assert not runner.is_alive()
    [error] = failed
    assert isinstance(error, EmulationError), error
    assert str(error).startswith("the dandelion serve started for the run exited with status -9")


def test_a_package_the_worker_cannot_import_is_refused_before_the_coordinator_starts(
    tmp_path: Path,
) -> None:
    """`--with` a package that imports numpy at module level: building the bundle for the
    started serve is refused in one line, with the import error, and no serve is started."""
    heavy = tmp_path / "heavy"
    heavy.mkdir()
    (heavy / "__init__.py").write_text("import numpy\n")
    task = default_task(4, 1)
    task["features"] = {"num_buckets": 32}
    config = PopulationConfig(size=5, seed=8, rounds=1, history_days=9.0, test_users=5)
    db = tmp_path / "state.db"
    options = EmulateOptions(
        mode="websocket", db=str(db), progress=False, plugins=(find_package(str(heavy)),)
    )
    with pytest.raises(EmulationError) as raised:
        emulate(config, options, task=task)
    message = str(raised.value)
    assert message.startswith("building a worker bundle with heavy for the coordinator failed")
    assert "No module named 'numpy'" in message and "\n" not in message
    assert not db.exists()  # nothing was written into the state file
