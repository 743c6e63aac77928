"""The privacy ledger in storage: same contract on every backend, written with the round's model
in one transaction, and migrated into databases made before it existed."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlite_utils import Database
from sqlite_utils.migrations import Migrations

from dandelion.storage import (
    ConflictError,
    LedgerEntry,
    ModelVersion,
    RoundRecord,
    SQLiteStore,
    StateStore,
    TaskRecord,
)
from dandelion.storage.migrations import m001_initial


def _entry(n: int, eps: float) -> LedgerEntry:
    return LedgerEntry("t1", n, 1.0, 0.01, eps, 1e-6, "pld", 2.0, 1.9, 100.0 + n)


def _setup(store: StateStore) -> None:
    store.create_task(TaskRecord("t1", {"objective": "x"}, "active", 1.0))
    store.save_model_version(ModelVersion("t1", 0, 0, b"\0" * 4, b"", 1.0, {}))
    for n in (1, 2):
        store.open_round(RoundRecord("t1", n, n - 1, "open", 10.0 + n, None, 5))


def _commit(store: StateStore, n: int, entry: LedgerEntry | None, version: int) -> None:
    store.commit_round_result(
        task="t1",
        round=n,
        status="completed",
        closed_at=20.0 + n,
        assigned=5,
        reported=5,
        rejected=0,
        dropped=0,
        metrics={"epsilon": entry.epsilon if entry else 0.0},
        model_version=ModelVersion("t1", version, n, b"\1" * 4, b"", 20.0 + n, {}),
        ledger=entry,
    )


def test_ledger_entries_are_kept_in_round_order(store: StateStore) -> None:
    _setup(store)
    _commit(store, 2, _entry(2, 0.7), 1)
    _commit(store, 1, _entry(1, 0.5), 2)
    assert store.list_ledger("t1") == [_entry(1, 0.5), _entry(2, 0.7)]
    assert store.list_ledger("other") == []
    with pytest.raises(ConflictError):
        store.add_ledger_entry(_entry(1, 0.9))


def test_the_ledger_entry_commits_with_the_model_or_not_at_all(store: StateStore) -> None:
    _setup(store)
    _commit(store, 1, _entry(1, 0.5), 1)
    with pytest.raises(ConflictError):  # model version 1 exists: the whole commit fails
        _commit(store, 2, _entry(2, 0.7), 1)
    assert store.list_ledger("t1") == [_entry(1, 0.5)]
    round2 = store.get_round("t1", 2)
    assert round2 is not None and round2.status == "open"


def test_task_status_carries_its_reason(store: StateStore) -> None:
    _setup(store)
    assert store.get_task("t1").reason == ""  # type: ignore[union-attr]
    store.set_task_status("t1", "budget_exhausted", "privacy budget exhausted: ε 8.1 > 8")
    record = store.get_task("t1")
    assert record is not None
    assert (record.status, record.reason) == (
        "budget_exhausted",
        "privacy budget exhausted: ε 8.1 > 8",
    )
    store.set_task_status("t1", "active")
    assert store.list_tasks()[0].reason == ""


def test_ledger_and_reason_survive_reopening_the_file(tmp_path: Path) -> None:
    path = str(tmp_path / "state.db")
    first = SQLiteStore(path)
    _setup(first)
    _commit(first, 1, _entry(1, 0.5), 1)
    first.set_task_status("t1", "budget_exhausted", "why")
    first.close()
    again = SQLiteStore(path)
    assert again.list_ledger("t1") == [_entry(1, 0.5)]
    assert again.get_task("t1").reason == "why"  # type: ignore[union-attr]
    again.close()


def test_a_database_from_before_the_ledger_is_migrated(tmp_path: Path) -> None:
    path = str(tmp_path / "old.db")
    old = Migrations("dandelion")  # the migration set as it stood before the ledger
    old()(m001_initial)
    db = Database(path)
    old.apply(db)
    db["tasks"].insert(  # type: ignore[union-attr]
        {"name": "t1", "config": "{}", "status": "active", "created_at": 1.0}
    )
    db.close()
    store = SQLiteStore(path)
    record = store.get_task("t1")
    assert record is not None and (record.status, record.reason) == ("active", "")
    store.add_ledger_entry(_entry(1, 0.25))
    assert store.list_ledger("t1") == [_entry(1, 0.25)]
    store.close()
