"""A task's life after it is created: edits (new config versions, from the next round on),
pause and resume, archive — in a real coordinator on a SQLite file driven in process, over the
admin API on loopback, and with the CLI beside a running coordinator; and after a restart."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import pytest

from dandelion.coordinator import (
    Coordinator,
    TaskChangeError,
    TaskConfig,
    change_status,
    create_task,
    edit_task,
)
from dandelion.protocol import (
    Ack,
    Checkin,
    ComeBack,
    FrameHeader,
    Hello,
    Task,
    TensorFrame,
    Update,
    decode_frame,
    encode_frame,
)
from dandelion.storage import LedgerEntry, MemoryStore, SQLiteStore
from dandelion.tasks_cli import list_tasks_in, task_rows
from dandelion.taskspec import register_objective
from dandelion.taskspec.objectives.page_examples import PageExamples

from .conftest import LiveFactory, scaled, small_task
from .dp_helpers import Clock, dp_config, file_coordinator, stop_coordinator
from .test_admin_api import _http, _token

PARAMS = 11  # small_task: logistic regression on 10 features


@register_objective("other_examples")
class OtherExamples(PageExamples):
    """Another objective with the same features: an edit may not switch to it."""


def _edited(config: TaskConfig, **tables: dict[str, Any]) -> TaskConfig:
    """``config`` with some keys of some tables replaced (``name=...`` etc. at the top)."""
    raw = config.to_dict()
    raw["model"].pop("param_count")  # follows from the spec
    for table, keys in tables.items():
        if isinstance(keys, dict):
            raw[table] = {**raw.get(table, {}), **keys}
        else:
            raw[table] = keys
    return TaskConfig.from_dict(raw)


async def _checkin(coordinator: Coordinator, worker: str) -> Task | ComeBack:
    await coordinator.on_hello(Hello(worker, {"kind": "cpython"}, "opted_in"))
    answer = (await coordinator.on_checkin(worker, Checkin())).message
    assert isinstance(answer, Task | ComeBack), answer
    return answer


def _frame(task: Task) -> TensorFrame:
    values = np.full(PARAMS, 0.1, dtype="<f4")
    header = FrameHeader("update", task.task, task.round, task.nonce, "float32", (PARAMS,))
    return decode_frame(encode_frame(header, values.tobytes()))


async def _report(coordinator: Coordinator, assigned: dict[str, Task]) -> None:
    """Every assigned worker reports at once (an ack waits for the commit that holds it)."""
    replies = await asyncio.gather(
        *(
            coordinator.on_update(
                w, Update(t.task, t.round, t.nonce, num_examples=4, unclipped=True), _frame(t)
            )
            for w, t in assigned.items()
        )
    )
    assert all(isinstance(r.message, Ack) for r in replies), replies


async def _settled(coordinator: Coordinator, name: str) -> None:
    """Wait until the task's round has been committed (nothing open or closing)."""
    runtime = coordinator.tasks[name]
    for _ in range(500):
        runtime = coordinator.tasks[name]
        if runtime.round is None and not runtime.closing:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"task {name}: the round did not end")


# -- edits -----------------------------------------------------------------------------------


async def test_an_edit_applies_from_the_next_round_and_the_old_config_is_kept(
    tmp_path: Path,
) -> None:
    clock = Clock()
    coordinator = await file_coordinator(tmp_path / "state.db", clock)
    first = small_task(goal=2, min_reports=2, deadline_s=60.0)
    await coordinator.add_task(first)
    a = await _checkin(coordinator, "worker-a")
    assert isinstance(a, Task) and (a.round, a.hyper["learning_rate"]) == (1, 0.5)

    second = _edited(first, hyper={"learning_rate": 0.1}, rounds={"goal": 3, "min_reports": 3})
    version = await coordinator.edit_task("t1", second, reason="slower")
    assert version == 2
    # The open round finishes under the config it opened with: the old learning rate for a
    # worker that joins it now, and its old goal of 2 closes it.
    b = await _checkin(coordinator, "worker-b")
    assert isinstance(b, Task) and (b.round, b.hyper["learning_rate"]) == (1, 0.5)
    await _report(coordinator, {"worker-a": a, "worker-b": b})
    await _settled(coordinator, "t1")
    await coordinator.tick()
    runtime = coordinator.tasks["t1"]
    assert runtime.round is not None and runtime.round.number == 2
    assert (runtime.config_version, runtime.config.rounds.goal) == (2, 3)
    assert runtime.model_version == 1  # the model the first round made is the one trained on
    c = await _checkin(coordinator, "worker-c")
    assert isinstance(c, Task) and (c.round, c.hyper["learning_rate"]) == (2, 0.1)
    assert c.model_version == 1
    await stop_coordinator(coordinator)

    store = SQLiteStore(str(tmp_path / "state.db"))
    assert [(r.round, r.config_version, r.goal) for r in store.list_rounds("t1")] == [
        (2, 2, 3),
        (1, 1, 2),
    ]
    old, new = store.list_task_configs("t1")
    assert old.config == first.to_dict() and new.config == second.to_dict()
    assert "slower" in new.reason
    assert [(c.change, c.config_version) for c in store.task_log("t1")] == [
        ("created", 1),
        ("config", 2),
    ]
    store.close()


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"model": {"num_features": 12}, "features": {"num_features": 12}}, "model.num_features"),
        ({"model": {"kind": "mlp", "hidden": 2}}, "model.kind"),
        ({"objective": "other_examples"}, "objective"),
        ({"name": "t2"}, "name"),
        ({"init_seed": 7}, "init_seed"),
    ],
)
async def test_an_edit_that_cannot_apply_to_the_model_is_refused_naming_the_field(
    change: dict[str, Any], field: str
) -> None:
    store = MemoryStore()
    config = small_task()
    create_task(store, config, 1.0)
    edit = _edited(config, **change)
    with pytest.raises(TaskChangeError) as refused:
        edit_task(store, "t1", edit, 2.0)
    assert refused.value.field == field
    assert str(refused.value).startswith(f"{field}: ") and "\n" not in str(refused.value)
    record = store.get_task("t1")
    assert record is not None and record.config_version == 1 and record.config == config.to_dict()
    assert len(store.list_task_configs("t1")) == 1


def test_an_unchanged_file_records_nothing_and_an_optimizer_keeps_its_state() -> None:
    store = MemoryStore()
    config = _edited(small_task(), server={"optimizer": "fedavgm", "momentum": 0.9})
    create_task(store, config, 1.0)
    assert edit_task(store, "t1", config, 2.0) == 1
    assert len(store.task_log("t1")) == 1
    # Another momentum keeps the state's shape; FedAdam cannot take FedAvgM's momentum up
    # once a round has left some.
    assert edit_task(store, "t1", _edited(config, server={"momentum": 0.5}), 3.0) == 2
    from dandelion.aggregation.optimizers import encode_state
    from dandelion.storage import ModelVersion

    state = encode_state({"velocity": np.zeros(PARAMS, np.float32)})
    store.save_model_version(ModelVersion("t1", 1, 1, b"\0" * 44, state, 4.0, {}))
    adam = _edited(small_task(), server={"optimizer": "fedadam"})
    with pytest.raises(TaskChangeError) as refused:
        edit_task(store, "t1", adam, 5.0)
    assert refused.value.field == "server.optimizer"


def _released(store: MemoryStore, name: str, z: float) -> None:
    """Record one released DP round of ``name`` in its ledger."""
    store.add_ledger_entry(LedgerEntry(name, 1, z, 0.01, 0.5, 1e-5, "rdp", 1.0, 1.0, 2.0))


def test_a_privacy_change_after_a_release_must_be_allowed_and_some_never_are() -> None:
    store = MemoryStore()
    privacy = {"population": 1000, "noise_multiplier": 1.0, "epsilon": 10.0, "accountant": "rdp"}
    config = dp_config(privacy=privacy)
    create_task(store, config, 1.0)
    # Before anything was released the table changes freely.
    louder = _edited(config, privacy={**privacy, "noise_multiplier": 1.2})
    assert edit_task(store, "dp", louder, 2.0) == 2
    _released(store, "dp", 1.2)
    quieter = _edited(config, privacy={**privacy, "noise_multiplier": 0.8})
    with pytest.raises(TaskChangeError) as refused:
        edit_task(store, "dp", quieter, 3.0)
    assert refused.value.field == "privacy.noise_multiplier"
    assert "--allow-privacy-change" in str(refused.value)
    assert edit_task(store, "dp", quieter, 3.0, allow_privacy_change=True) == 3
    # Never, even allowed: another mechanism than the released rounds were accounted under.
    ftrl = _edited(config, privacy={**privacy, "mechanism": "dp_ftrl", "min_separation": 4})
    with pytest.raises(TaskChangeError) as refused:
        edit_task(store, "dp", ftrl, 4.0, allow_privacy_change=True)
    assert refused.value.field == "privacy.mechanism"
    # The round plan is not the privacy table: a new goal is accounted at its own q.
    assert edit_task(store, "dp", _edited(quieter, rounds={"goal": 12}), 5.0) == 4


def test_a_dp_ftrl_task_keeps_its_tree_once_it_released_a_round() -> None:
    store = MemoryStore()
    privacy = {
        "population": 1000,
        "noise_multiplier": 3.0,
        "epsilon": 10.0,
        "mechanism": "dp_ftrl",
        "min_separation": 4,
    }
    config = dp_config(privacy=privacy)
    create_task(store, config, 1.0)
    _released(store, "dp", 3.0)
    for change, field in (
        ({"privacy": {**privacy, "noise_multiplier": 4.0}}, "privacy.noise_multiplier"),
        ({"privacy": {**privacy, "min_separation": 8}}, "privacy.min_separation"),
        ({"hyper": {"clip_norm": 2.0}}, "hyper.clip_norm"),
    ):
        with pytest.raises(TaskChangeError) as refused:
            edit_task(store, "dp", _edited(config, **change), 2.0, allow_privacy_change=True)
        assert refused.value.field == field
    # The budget is not the tree: allowed, explicitly.
    bigger = _edited(config, privacy={**privacy, "epsilon": 20.0})
    assert edit_task(store, "dp", bigger, 3.0, allow_privacy_change=True) == 2


def test_privacy_cannot_be_added_to_a_task_that_released_models_without_it() -> None:
    from dandelion.storage import ModelVersion

    store = MemoryStore()
    config = small_task()
    create_task(store, config, 1.0)
    store.save_model_version(ModelVersion("t1", 1, 1, b"\0" * 44, b"", 2.0, {}))
    private = _edited(
        config,
        server={"weighting": "uniform"},
        privacy={"population": 1000, "noise_multiplier": 1.0, "epsilon": 10.0},
    )
    with pytest.raises(TaskChangeError) as refused:
        edit_task(store, "t1", private, 3.0, allow_privacy_change=True)
    assert refused.value.field == "privacy"


async def test_an_allowed_privacy_change_keeps_each_released_round_at_its_own_cost(
    tmp_path: Path,
) -> None:
    db = tmp_path / "state.db"
    privacy = {"population": 1000, "noise_multiplier": 1.0, "epsilon": 10.0, "accountant": "rdp"}
    config = dp_config(privacy=privacy)
    setup = SQLiteStore(str(db))
    create_task(setup, config, 1.0)
    setup.add_ledger_entry(LedgerEntry("dp", 1, 1.0, 0.01, 0.5, 1e-5, "rdp", 1.0, 1.0, 2.0))
    setup.close()
    coordinator = await file_coordinator(db, Clock())
    louder = _edited(config, privacy={**privacy, "noise_multiplier": 2.0})
    await coordinator.edit_task("dp", louder, allow_privacy_change=True)
    ledger = coordinator.tasks["dp"].ledger
    assert ledger is not None and ledger.config.noise_multiplier == 2.0
    assert [(e.q, e.z) for e in ledger.events] == [(0.01, 1.0)]  # charged as it was released
    assert ledger.next_event().z == 2.0
    await stop_coordinator(coordinator)


# -- pause, resume, archive --------------------------------------------------------------------


async def test_pause_stops_assignments_and_new_rounds_and_resume_restarts_them(
    tmp_path: Path,
) -> None:
    clock = Clock()
    coordinator = await file_coordinator(tmp_path / "state.db", clock)
    await coordinator.add_task(small_task(goal=2, min_reports=1, deadline_s=30.0))
    a = await _checkin(coordinator, "worker-a")
    assert isinstance(a, Task)
    assert await coordinator.change_status("t1", "pause", reason="maintenance") == "paused"
    refused = await _checkin(coordinator, "worker-b")
    assert isinstance(refused, ComeBack) and refused.reason == "paused"
    # The open round ends by its own rule: the assigned worker's report counts, and the
    # deadline closes it (one report is its minimum).
    pending = asyncio.ensure_future(_report(coordinator, {"worker-a": a}))
    await asyncio.sleep(0.05)
    clock.now += 31
    await coordinator.tick()
    await pending
    await _settled(coordinator, "t1")
    for _ in range(3):
        clock.now += 1
        await coordinator.tick()
    runtime = coordinator.tasks["t1"]
    assert runtime.round is None and runtime.last_round == 1 and runtime.model_version == 1
    still = await _checkin(coordinator, "worker-b")
    assert isinstance(still, ComeBack) and still.reason == "paused"

    assert await coordinator.change_status("t1", "resume") == "active"
    await coordinator.tick()
    b = await _checkin(coordinator, "worker-b")
    assert isinstance(b, Task) and b.round == 2
    store = coordinator.store
    log = await store.read(lambda s: s.task_log("t1"))
    assert [(c.change, c.status) for c in log] == [
        ("created", "active"),
        ("status", "paused"),
        ("status", "active"),
    ]
    assert "maintenance" in log[1].reason and log[1].at == clock.now - 34
    await stop_coordinator(coordinator)


async def test_an_archived_task_opens_no_round_is_hidden_and_keeps_its_models(
    tmp_path: Path,
) -> None:
    db = tmp_path / "state.db"
    clock = Clock()
    coordinator = await file_coordinator(db, clock)
    await coordinator.add_task(small_task("t1", goal=1, deadline_s=10.0))
    await coordinator.add_task(small_task("t2", goal=1, deadline_s=10.0))
    first = await _checkin(coordinator, "worker-a")
    assert isinstance(first, Task)
    await _report(coordinator, {"worker-a": first})
    await _settled(coordinator, first.task)
    archived = first.task
    other = "t2" if archived == "t1" else "t1"
    assert await coordinator.change_status(archived, "archive") == "archived"
    for i in range(6):
        clock.now += 11  # deadlines pass; only the other task opens rounds again
        await coordinator.tick()
        answer = await _checkin(coordinator, f"worker-{i}")
        assert not (isinstance(answer, Task) and answer.task == archived)
    assert coordinator.tasks[archived].round is None
    assert coordinator.tasks[archived].last_round == 1
    for action in ("resume", "pause"):
        with pytest.raises(TaskChangeError, match="archived"):
            await coordinator.change_status(archived, action)
    with pytest.raises(TaskChangeError, match="archived"):
        await coordinator.edit_task(archived, small_task(archived, goal=5))
    assert await coordinator.change_status(archived, "archive") == "archived"  # no-op
    await stop_coordinator(coordinator)

    assert [r["name"] for r in list_tasks_in(str(db))] == [other]
    assert [r["name"] for r in list_tasks_in(str(db), archived=True)] == sorted([archived, other])
    store = SQLiteStore(str(db))
    assert [v.version for v in store.list_model_versions(archived)] == [0, 1]
    assert store.get_model_version(archived, 1) is not None
    (when,) = [c.at for c in store.task_log(archived) if c.status == "archived"]
    assert when == clock.now - 66
    store.close()


def test_the_status_table_refuses_what_it_does_not_list() -> None:
    store = MemoryStore()
    create_task(store, small_task(), 1.0)
    assert change_status(store, "t1", "resume", 2.0) == "active"  # already: nothing logged
    assert len(store.task_log("t1")) == 1
    with pytest.raises(TaskChangeError) as refused:
        change_status(store, "t1", "stop", 3.0)
    assert refused.value.field == "action"
    with pytest.raises(KeyError):
        change_status(store, "nope", "pause", 3.0)
    store.set_task_status("t1", "budget_exhausted", "ε", at=4.0)
    # The budget check before the next round decides again (test_privacy_budget.py).
    assert change_status(store, "t1", "resume", 5.0) == "active"


# -- restarts ----------------------------------------------------------------------------------


async def test_a_restart_keeps_the_status_and_the_config_version(tmp_path: Path) -> None:
    db, clock = tmp_path / "state.db", Clock()
    coordinator = await file_coordinator(db, clock)
    config = small_task(goal=2, min_reports=2, deadline_s=60.0)
    await coordinator.add_task(config)
    a = await _checkin(coordinator, "worker-a")
    assert isinstance(a, Task)
    await coordinator.edit_task("t1", _edited(config, hyper={"learning_rate": 0.2}))
    await stop_coordinator(coordinator)  # round 1 stays open, under config version 1

    again = await file_coordinator(db, clock)
    runtime = again.tasks["t1"]
    assert runtime.round is not None and runtime.round.number == 1
    assert (runtime.config_version, runtime.config.hyper["learning_rate"]) == (1, 0.5)
    assert runtime.reload  # version 2 waits for round 1 to end
    b = await _checkin(again, "worker-b")
    assert isinstance(b, Task) and b.hyper["learning_rate"] == 0.5
    a_again = await _checkin(again, "worker-a")  # handed its assignment back
    assert isinstance(a_again, Task) and a_again.nonce == a.nonce
    await _report(again, {"worker-a": a_again, "worker-b": b})
    await _settled(again, "t1")
    await again.tick()
    assert again.tasks["t1"].config_version == 2
    await again.change_status("t1", "pause")
    await stop_coordinator(again)

    third = await file_coordinator(db, clock)
    runtime = third.tasks["t1"]
    assert (runtime.status, runtime.config_version) == ("paused", 2)
    assert runtime.config.hyper["learning_rate"] == 0.2 and runtime.model_version == 1
    await stop_coordinator(third)


# -- the admin API over HTTP, and the CLI beside a running coordinator -----------------------


async def test_the_admin_api_edits_pauses_archives_and_shows_history(
    live: LiveFactory, clients: Any
) -> None:
    server = await live()
    config = small_task(goal=2, deadline_s=60.0)
    await server.coordinator.add_task(config)
    await server.coordinator.add_task(small_task("t2"))
    auth = {"Authorization": f"Bearer {await _token(server)}"}
    base = _http(server) + "/api/v1"
    as_json = {"Content-Type": "application/json"}
    async with aiohttp.ClientSession(headers=auth) as http:
        body = json.dumps(_edited(config, hyper={"learning_rate": 0.25}).to_dict())
        async with http.put(f"{base}/tasks/t1?reason=tuning", data=body, headers=as_json) as r:
            assert r.status == 200, await r.text()
            shown = await r.json()
        assert shown["config_version"] == 2 and shown["config"]["hyper"]["learning_rate"] == 0.25
        assert server.coordinator.tasks["t1"].reload  # round 1 is open: it finishes under v1
        bad = json.dumps(
            _edited(config, model={"num_features": 3}, features={"num_features": 3}).to_dict()
        )
        async with http.put(f"{base}/tasks/t1", data=bad, headers=as_json) as r:
            assert r.status == 409
            assert (await r.json())["error"]["message"].startswith("model.num_features: ")
        async with http.put(f"{base}/tasks/t1?allow_privacy_change=maybe", data=body) as r:
            assert r.status == 400
        async with http.put(f"{base}/tasks/nope", data=body, headers=as_json) as r:
            assert r.status == 404

        async with http.post(f"{base}/tasks/t1/pause") as r:
            assert (await r.json())["status"] == "paused"
        assert server.coordinator.tasks["t1"].status == "paused"  # at once, live
        worker = await clients(server.url)
        await worker.hello("worker-w")
        await worker.send({"type": "checkin", "v": 1, "tasks": ["t1"]})
        answer = await worker.recv_json()
        assert (answer["type"], answer["reason"]) == ("come_back", "paused")

        async with http.post(f"{base}/tasks/t2/archive") as r:
            assert (await r.json())["status"] == "archived"
        async with http.get(f"{base}/tasks") as r:
            assert [t["name"] for t in (await r.json())["tasks"]] == ["t1"]
        async with http.get(f"{base}/tasks?all=true") as r:
            rows = {t["name"]: t["status"] for t in (await r.json())["tasks"]}
        assert rows == {"t1": "paused", "t2": "archived"}
        async with http.post(f"{base}/tasks/t2/resume") as r:
            assert r.status == 409 and "archived" in (await r.json())["error"]["message"]
        async with http.get(f"{base}/tasks/t2/models/latest") as r:
            assert r.status == 200  # its models stay readable

        async with http.get(f"{base}/tasks/t1/history") as r:
            history = await r.json()
        assert [(c["change"], c["status"], c["config_version"]) for c in history["changes"]] == [
            ("created", "active", 1),
            ("config", "active", 2),
            ("status", "paused", 2),
        ]
        assert "by ops: tuning" in history["changes"][1]["reason"]
        assert [v["version"] for v in history["configs"]] == [1, 2]
        assert history["configs"][0]["first_round"] == 1
        assert history["configs"][1]["config"]["hyper"]["learning_rate"] == 0.25
        async with http.get(f"{base}/dashboard") as r:
            statuses = {t["name"]: t["status"] for t in (await r.json())["tasks"]}
        assert statuses == {"t1": "paused", "t2": "archived"}


def _dandelion(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dandelion", *args], capture_output=True, text=True, timeout=120
    )


async def test_the_cli_changes_a_task_beside_a_running_coordinator(
    live: LiveFactory, tmp_path: Path
) -> None:
    server = await live()
    config = small_task(goal=2, deadline_s=60.0)
    await server.coordinator.add_task(config)
    db = server.settings.db
    edited = tmp_path / "t1.toml"
    edited.write_text(_toml(_edited(config, rounds={"goal": 4})))
    wrong = tmp_path / "wrong.toml"
    wrong.write_text(
        _toml(_edited(config, model={"num_features": 4}, features={"num_features": 4}))
    )

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return _dandelion("task", *args, "--db", db)

    done = await asyncio.to_thread(run, "edit", "t1", str(edited), "--reason", "bigger")
    assert done.returncode == 0, done.stderr
    assert "config version 2" in done.stdout
    refused = await asyncio.to_thread(run, "edit", "t1", str(wrong))
    assert refused.returncode == 2
    assert refused.stderr.startswith("dandelion task edit: model.num_features: ")
    assert len(refused.stderr.strip().splitlines()) == 1
    paused = await asyncio.to_thread(run, "pause", "t1")
    assert paused.returncode == 0 and "paused" in paused.stdout
    missing = await asyncio.to_thread(run, "pause", "nope")
    assert missing.returncode == 1 and "no task 'nope'" in missing.stderr

    async def followed() -> None:  # the coordinator looks at the state file every two seconds
        while not (
            server.coordinator.tasks["t1"].status == "paused"
            and server.coordinator.tasks["t1"].reload
        ):
            await asyncio.sleep(0.05)

    await asyncio.wait_for(followed(), scaled(10))
    history = await asyncio.to_thread(run, "history", "t1", "--json")
    changes = json.loads(history.stdout)["changes"]
    assert [(c["change"], c["status"]) for c in changes] == [
        ("created", "active"),
        ("config", "active"),
        ("status", "paused"),
    ]
    text = await asyncio.to_thread(run, "history", "t1")
    assert "config v2" in text.stdout and "bigger" in text.stdout
    archived = await asyncio.to_thread(run, "archive", "t1")
    assert archived.returncode == 0
    listed = await asyncio.to_thread(run, "list", "--json")
    assert json.loads(listed.stdout) == []
    everything = await asyncio.to_thread(run, "list", "--all", "--json")
    (row,) = json.loads(everything.stdout)
    assert (row["status"], row["config_version"]) == ("archived", 2)
    shown = await asyncio.to_thread(run, "show", "t1", "--json")
    assert json.loads(shown.stdout)["config_version"] == 2
    again = await asyncio.to_thread(run, "resume", "t1")
    assert again.returncode == 2 and "archived" in again.stderr


def _toml(config: TaskConfig) -> str:
    """A task file for ``config`` (TOML: tables of scalars, as task files are)."""
    lines, tables = [], []
    for key, value in config.to_dict().items():
        if isinstance(value, dict):
            tables.append((key, value))
        else:
            lines.append(f"{key} = {json.dumps(value)}")
    for table, keys in tables:
        lines.append(f"[{table}]")
        lines.extend(f"{key} = {json.dumps(value)}" for key, value in keys.items())
    return "\n".join(lines) + "\n"


def test_task_rows_hide_archived_tasks_unless_asked() -> None:
    store = MemoryStore()
    create_task(store, small_task("a"), 1.0)
    create_task(store, small_task("b"), time.time())
    change_status(store, "b", "archive", 2.0)
    assert [r["name"] for r in task_rows(store, archived=False)] == ["a"]
    assert [(r["name"], r["status"]) for r in task_rows(store)] == [
        ("a", "active"),
        ("b", "archived"),
    ]
