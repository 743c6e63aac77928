"""One contract, every backend: the SQLite file and the in-memory twin behave the same."""

from __future__ import annotations

from pathlib import Path

import pytest

from dandelion.storage import (
    ConflictError,
    EvaluationRecord,
    FencedError,
    LedgerEntry,
    ModelVersion,
    ParticipationEvent,
    RoundCheckpoint,
    RoundRecord,
    ShardCheckpoint,
    SQLiteStore,
    StateStore,
    TaskRecord,
)


def _task(store: StateStore, name: str = "t1") -> None:
    store.create_task(TaskRecord(name, {"objective": "x", "n": [1, 2]}, "active", 1.0))
    store.save_model_version(ModelVersion(name, 0, 0, b"\0" * 8, b"", 1.0, {}))


def _round(n: int, status: str = "open", task: str = "t1", config: int = 1) -> RoundRecord:
    return RoundRecord(task, n, 0, status, 10.0 + n, None, 5, config_version=config)


def _close(store: StateStore, n: int, status: str = "completed", **extra: object) -> None:
    store.commit_round_result(
        task="t1",
        round=n,
        status=status,
        closed_at=20.0 + n,
        assigned=5,
        reported=4,
        rejected=1,
        dropped=1,
        metrics={"loss": 0.5},
        **extra,  # type: ignore[arg-type]
    )


def test_a_deposed_leaders_commit_is_fenced_off_and_rolled_back(store: StateStore) -> None:
    _task(store)
    assert store.leader_epoch("t1") is None
    store.open_round(_round(1))
    with store.transaction():
        store.fence("t1", 3)
        _close(store, 1)
    store.fence("t1", 3)  # the same leader again
    assert store.leader_epoch("t1") == 3
    store.open_round(_round(2))

    # A leader of an older lease commits late: refused, and nothing of its transaction stays.
    def late_commit() -> None:
        with store.transaction():
            _close(store, 2)
            store.fence("t1", 2)

    with pytest.raises(FencedError, match="epoch 2 is fenced off by epoch 3"):
        late_commit()
    assert store.get_round("t1", 2).status == "open"  # type: ignore[union-attr]
    assert store.leader_epoch("t1") == 3
    with store.transaction():  # a newer leader's commit passes and raises the bar
        store.fence("t1", 4)
        _close(store, 2)
    assert store.get_round("t1", 2).status == "completed"  # type: ignore[union-attr]
    assert store.leader_epoch("t1") == 4
    with pytest.raises(FencedError):
        store.fence("t1", 3)
    with pytest.raises(ConflictError):
        store.fence("nope", 1)
    for bad in (0, -1, True, 2.5):
        with pytest.raises(ValueError, match="positive integer"):
            store.fence("t1", bad)  # type: ignore[arg-type]
    assert store.leader_epoch("t1") == 4


def test_tasks(store: StateStore) -> None:
    _task(store, "b")
    _task(store, "a")
    assert [t.name for t in store.list_tasks()] == ["a", "b"]
    record = store.get_task("a")
    assert record is not None
    assert record.config == {"objective": "x", "n": [1, 2]}
    with pytest.raises(ConflictError):
        store.create_task(TaskRecord("a", {}, "active", 2.0))
    store.set_task_status("a", "paused")
    assert store.get_task("a").status == "paused"  # type: ignore[union-attr]
    with pytest.raises(ValueError):
        store.set_task_status("a", "sleeping")
    with pytest.raises(KeyError):
        store.set_task_status("zzz", "paused")
    assert store.get_task("zzz") is None


def test_a_task_keeps_every_config_version_and_logs_each_change(store: StateStore) -> None:
    _task(store)
    record = store.get_task("t1")
    assert record is not None and record.config_version == 1
    assert [(c.version, c.config) for c in store.list_task_configs("t1")] == [
        (1, {"objective": "x", "n": [1, 2]})
    ]
    assert store.set_task_config("t1", {"objective": "x", "n": [3]}, at=5.0, reason="r") == 2
    store.set_task_status("t1", "paused", "held", at=6.0)
    store.set_task_status("t1", "archived", "done", at=7.0)
    record = store.get_task("t1")
    assert record is not None
    assert (record.config, record.config_version, record.status) == (
        {"objective": "x", "n": [3]},
        2,
        "archived",
    )
    first, second = store.list_task_configs("t1")
    assert (first.version, first.config, first.created_at) == (
        1,
        {"objective": "x", "n": [1, 2]},
        1.0,
    )
    assert (second.version, second.config, second.reason) == (2, {"objective": "x", "n": [3]}, "r")
    assert store.get_task_config("t1", 1) == first
    assert store.get_task_config("t1", 3) is None
    assert [
        (c.at, c.change, c.status, c.config_version, c.reason) for c in store.task_log("t1")
    ] == [
        (1.0, "created", "active", 1, ""),
        (5.0, "config", "active", 2, "r"),
        (6.0, "status", "paused", 2, "held"),
        (7.0, "status", "archived", 2, "done"),
    ]
    with pytest.raises(KeyError):
        store.set_task_config("nope", {}, at=1.0)
    assert store.list_task_configs("nope") == [] and store.task_log("nope") == []


def test_a_failed_edit_leaves_nothing_behind(store: StateStore) -> None:
    _task(store)

    def fails() -> None:
        with store.transaction():
            store.set_task_config("t1", {"objective": "y"}, at=2.0)
            raise RuntimeError("the caller's transaction fails")

    with pytest.raises(RuntimeError):
        fails()
    assert store.get_task("t1").config_version == 1  # type: ignore[union-attr]
    assert len(store.list_task_configs("t1")) == 1 and len(store.task_log("t1")) == 1


def test_model_versions(store: StateStore) -> None:
    _task(store)
    store.save_model_version(ModelVersion("t1", 1, 3, b"\1" * 8, b"state", 2.0, {"acc": 0.5}))
    latest = store.latest_model_version("t1")
    assert latest is not None
    assert (latest.version, latest.round, latest.params, latest.optimizer_state) == (
        1,
        3,
        b"\1" * 8,
        b"state",
    )
    assert store.get_model_version("t1", 0).params == b"\0" * 8  # type: ignore[union-attr]
    listed = store.list_model_versions("t1")
    assert [(v.version, v.size_bytes) for v in listed] == [(0, 8), (1, 8)]
    with pytest.raises(ConflictError):
        store.save_model_version(ModelVersion("t1", 1, 4, b"", b"", 3.0, {}))
    assert store.latest_model_version("nope") is None


def test_rounds_open_close_and_numbering(store: StateStore) -> None:
    _task(store)
    assert store.last_round_number("t1") == 0
    store.open_round(_round(1))
    store.open_round(_round(2, config=2))
    _close(store, 1, model_version=ModelVersion("t1", 1, 1, b"", b"", 21.0, {}))
    r1 = store.get_round("t1", 1)
    assert r1 is not None
    assert (r1.status, r1.reported, r1.dropped, r1.metrics) == ("completed", 4, 1, {"loss": 0.5})
    assert (r1.config_version, store.get_round("t1", 2).config_version) == (1, 2)  # type: ignore[union-attr]
    assert store.last_round_number("t1") == 2
    assert [r.round for r in store.list_rounds("t1", 10)] == [2, 1]
    assert store.mark_open_rounds_interrupted(99.0) == 1
    r2 = store.get_round("t1", 2)
    assert r2 is not None and (r2.status, r2.config_version) == ("interrupted", 2)
    assert store.mark_open_rounds_interrupted(99.0) == 0
    with pytest.raises(KeyError):
        _close(store, 7)
    with pytest.raises(ValueError):
        _close(store, 2, status="open")


def test_an_open_round_keeps_its_checkpoint_until_it_closes(store: StateStore) -> None:
    _task(store)
    store.open_round(_round(1))
    with pytest.raises(KeyError):  # only an open round has a checkpoint
        store.save_round_checkpoint(RoundCheckpoint("t1", 9, "key", None, 0, 1.0))
    store.save_round_checkpoint(RoundCheckpoint("t1", 1, "key", None, 0, 1.0))
    store.record_events(
        [
            ParticipationEvent("w1", "t1", 1, "selected", 1.0),
            ParticipationEvent("w2", "t1", 1, "selected", 1.0),
            ParticipationEvent("w2", "t1", 1, "reported", 2.0),
            ParticipationEvent("w3", "t1", 2, "reported", 2.0),  # another round
        ]
    )
    with store.transaction():
        store.save_round_checkpoint(RoundCheckpoint("t1", 1, "key", b"sum", 3, 2.0))
    cp = store.get_round_checkpoint("t1", 1)
    assert cp is not None and (cp.secret, cp.aggregate, cp.rejected) == ("key", b"sum", 3)
    assert store.round_participants("t1", 1) == ({"w1", "w2"}, {"w2"})
    _close(store, 1)
    assert store.get_round_checkpoint("t1", 1) is None  # closing deletes it
    with pytest.raises(KeyError):
        store.save_round_checkpoint(RoundCheckpoint("t1", 1, "key", b"sum", 3, 3.0))


def test_shard_checkpoints_until_the_seal_then_none_until_the_close(store: StateStore) -> None:
    _task(store)
    store.open_round(_round(1))
    with pytest.raises(KeyError):  # only an open round takes shard checkpoints
        store.save_shard_checkpoint(ShardCheckpoint("t1", 9, "a", b"x", 2, 0, 1.0))
    store.save_shard_checkpoint(ShardCheckpoint("t1", 1, "b", b"b1", 2, 0, 1.0))
    store.save_shard_checkpoint(ShardCheckpoint("t1", 1, "a", b"a1", 2, 1, 1.0))
    store.save_shard_checkpoint(ShardCheckpoint("t1", 1, "b", b"b2", 4, 0, 2.0))  # replaces
    sealed = store.seal_round("t1", 1)
    assert [(c.shard, c.aggregate, c.reports, c.rejected) for c in sealed] == [
        ("a", b"a1", 2, 1),
        ("b", b"b2", 4, 0),
    ]
    with pytest.raises(KeyError, match="sealed"):  # the leader is closing it: nothing more
        store.save_shard_checkpoint(ShardCheckpoint("t1", 1, "c", b"c1", 2, 0, 3.0))
    assert store.seal_round("t1", 1) == sealed  # a new leader finishing the close
    assert store.list_shard_checkpoints("t1", 1) == sealed
    _close(store, 1)
    assert store.list_shard_checkpoints("t1", 1) == []  # closing deletes them and the seal
    with pytest.raises(KeyError):
        store.seal_round("t1", 1)


def test_a_task_secret_is_made_once_and_kept(store: StateStore) -> None:
    _task(store)
    assert store.task_secret("t1", "ftrl", "first") == "first"
    assert store.task_secret("t1", "ftrl", "second") == "first"
    assert store.task_secret("t1", "other", "x") == "x"


def test_round_result_is_all_or_nothing(store: StateStore) -> None:
    _task(store)
    store.open_round(_round(1))
    duplicate = ModelVersion("t1", 0, 1, b"", b"", 5.0, {})  # version 0 exists: the save fails
    with pytest.raises(ConflictError):
        _close(store, 1, model_version=duplicate)
    assert store.get_round("t1", 1).status == "open"  # type: ignore[union-attr]
    assert len(store.list_model_versions("t1")) == 1


def _evaluation(n: int, withheld: bool = False) -> EvaluationRecord:
    sums = (None,) * 5 if withheld else (120.0, 48.0, 90.0, 0.4, 0.75)
    return EvaluationRecord("t1", n, 1, 12, withheld, *sums, None, 10.0 + n, 20.0 + n)


def test_evaluation_rounds_keep_their_kind_and_their_result(store: StateStore) -> None:
    _task(store)
    store.open_round(_round(1))
    store.open_round(RoundRecord("t1", 2, 1, "open", 12.0, None, 5, kind="evaluate"))
    with pytest.raises(ValueError):
        store.open_round(RoundRecord("t1", 3, 1, "open", 13.0, None, 5, kind="guess"))
    with pytest.raises(KeyError):  # round 1 trains: it has no evaluation result
        store.save_evaluation(_evaluation(1))
    entry = LedgerEntry("t1", 2, 0.577, 1.0, 1.5, 1e-5, "pld", 1.0, 1.0, 22.0, "evaluate")
    _close(store, 2, evaluation=_evaluation(2), ledger=entry)
    r2 = store.get_round("t1", 2)
    assert r2 is not None and (r2.kind, r2.status) == ("evaluate", "completed")
    assert store.get_round("t1", 1).kind == "train"  # type: ignore[union-attr]
    assert [r.round for r in store.list_rounds("t1", 10, kind="evaluate")] == [2]
    assert [r.round for r in store.list_rounds("t1", 10, kind="train")] == [1]
    assert store.list_evaluations("t1") == [_evaluation(2)]
    assert store.list_ledger("t1")[0].kind == "evaluate"
    with pytest.raises(ConflictError):
        store.save_evaluation(_evaluation(2))
    # A withheld result keeps no figure; the latest comes first.
    store.open_round(RoundRecord("t1", 4, 1, "open", 14.0, None, 5, kind="evaluate"))
    _close(store, 4, evaluation=_evaluation(4, withheld=True))
    latest, older = store.list_evaluations("t1")
    assert latest.withheld and latest.count is None and latest.loss is None
    assert older.round == 2 and store.list_evaluations("t1", limit=1) == [latest]


def test_an_evaluation_result_commits_with_its_round_or_not_at_all(store: StateStore) -> None:
    _task(store)
    store.open_round(RoundRecord("t1", 1, 0, "open", 11.0, None, 5, kind="evaluate"))
    bad = LedgerEntry("t1", 1, 0.5, 1.0, 1.0, 1e-5, "pld", 1.0, 1.0, 2.0, "sideways")
    with pytest.raises(ValueError):
        _close(store, 1, evaluation=_evaluation(1), ledger=bad)
    assert store.get_round("t1", 1).status == "open"  # type: ignore[union-attr]
    assert store.list_evaluations("t1") == []


def test_events_and_consent(store: StateStore) -> None:
    _task(store)
    events = [
        ParticipationEvent("w1", None, None, "connected", 1.0),
        ParticipationEvent("w1", "t1", 1, "selected", 2.0),
        ParticipationEvent("w2", "t1", 1, "selected", 3.0),
        ParticipationEvent("w1", "t1", 1, "reported", 4.0),
    ]
    store.record_events(events)
    store.record_events([])
    assert store.count_events() == 4
    assert store.count_events(task="t1", event="selected") == 2
    assert store.count_events(since=3.0) == 2
    assert store.event_counts("t1") == {"selected": 2, "reported": 1}
    assert next(iter(store.iter_events("t1"))) == events[1]
    assert store.get_consent("w1") is None
    store.set_consent("w1", "opted_in", 1.0)
    store.set_consent("w1", "opted_out", 2.0)
    assert store.get_consent("w1") == "opted_out"


def test_sqlite_migrations_are_idempotent_and_state_survives_reopen(tmp_path: Path) -> None:
    path = str(tmp_path / "state.db")
    first = SQLiteStore(path)
    _task(first)
    first.save_model_version(ModelVersion("t1", 1, 1, b"\7" * 4, b"", 2.0, {}))
    first.close()
    again = SQLiteStore(path)
    applied = [m["name"] for m in again.db["_sqlite_migrations"].rows]  # type: ignore[union-attr]
    assert applied == [
        "m001_initial",
        "m002_privacy_ledger",
        "m003_admin_tokens",
        "m004_durable_rounds",
        "m005_task_secrets",
        "m006_task_lifecycle",
        "m007_evaluation",
        "m008_leader_epochs",
        "m009_shard_checkpoints",
    ]
    assert again.latest_model_version("t1").params == b"\7" * 4  # type: ignore[union-attr]
    mode = again.conn.execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"
    again.close()


def test_m006_gives_older_tasks_a_first_config_version_and_a_log(tmp_path: Path) -> None:
    """A state file written before task lifecycles: its tasks get config version 1 and a log
    that starts at their creation; "stopped" becomes "archived"."""
    import sqlite3

    from sqlite_utils import Database

    from dandelion.storage.migrations import MIGRATIONS

    path = str(tmp_path / "old.db")
    conn = sqlite3.connect(path)
    db = Database(conn)
    MIGRATIONS.apply(db, stop_before="m006_task_lifecycle")  # a file as an older version left it
    conn.execute(
        "INSERT INTO tasks (name, config, status, created_at, reason) VALUES "
        "('a', '{\"k\": 1}', 'active', 1.0, ''), ('b', '{}', 'stopped', 2.0, 'by ops')"
    )
    conn.commit()
    conn.close()
    store = SQLiteStore(path)
    a, b = store.list_tasks()
    assert (a.config_version, a.status, b.status) == (1, "active", "archived")
    assert [(c.version, c.config) for c in store.list_task_configs("a")] == [(1, {"k": 1})]
    assert [(c.change, c.status) for c in store.task_log("a")] == [("created", "active")]
    assert [(c.change, c.status) for c in store.task_log("b")] == [
        ("created", "active"),
        ("status", "archived"),
    ]
    store.close()


def test_m007_marks_every_earlier_round_as_training(tmp_path: Path) -> None:
    """A state file as the task-lifecycle release left it (migrations up to m006): after the
    evaluation migration its rounds are of kind "train", the evaluations table is empty, and
    the rest (config versions) is as it was."""
    import sqlite3

    from sqlite_utils import Database

    from dandelion.storage.migrations import MIGRATIONS

    path = str(tmp_path / "m006.db")
    conn = sqlite3.connect(path)
    db = Database(conn)
    MIGRATIONS.apply(db, stop_before="m007_evaluation")
    conn.execute(
        "INSERT INTO tasks (name, config, status, created_at, reason, config_version) VALUES "
        "('a', '{}', 'active', 1.0, '', 2)"
    )
    conn.execute(
        "INSERT INTO rounds (task, round, model_version, status, opened_at, goal, assigned, "
        "reported, rejected, dropped, metrics, config_version) VALUES "
        "('a', 1, 0, 'completed', 2.0, 3, 3, 3, 0, 0, '{}', 2)"
    )
    conn.commit()
    assert "kind" not in {c.name for c in db["rounds"].columns}  # type: ignore[union-attr]
    conn.close()
    store = SQLiteStore(path)
    (r,) = store.list_rounds("a")
    assert (r.kind, r.config_version, r.status) == ("train", 2, "completed")
    assert store.list_evaluations("a") == []
    assert store.get_task("a").config_version == 2  # type: ignore[union-attr]
    store.close()


def test_migrations_apply_in_order_on_a_fresh_file(tmp_path: Path) -> None:
    from dandelion.storage.migrations import MIGRATIONS

    store = SQLiteStore(str(tmp_path / "fresh.db"))
    applied = [m["name"] for m in store.db["_sqlite_migrations"].rows]  # type: ignore[union-attr]
    assert applied == sorted(applied) == [m.name for m in MIGRATIONS._migrations]
    columns = {c.name for c in store.db["rounds"].columns}  # type: ignore[union-attr]
    assert {"config_version", "kind"} <= columns
    store.close()
