"""Backups of a live state file, and restoring one: the round trip loses nothing committed."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from dandelion.backup import BackupError, backup, restore, verify
from dandelion.cli import main
from dandelion.storage import SQLiteStore
from dandelion.storage.lease import LeaseHeldError, StateLease

from .conftest import LiveFactory, RawClient, small_task
from .test_coordinator_live import assigned, report_together


def _rows(db: Path) -> dict[str, list[tuple[object, ...]]]:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        return {
            "versions": list(
                conn.execute("SELECT task, version, params FROM model_versions ORDER BY 1, 2")
            ),
            "events": list(
                conn.execute("SELECT worker_id, task, round, event FROM events ORDER BY id")
            ),
            "rounds": list(conn.execute("SELECT task, round, status FROM rounds ORDER BY 1, 2")),
        }


async def test_backup_while_serving_and_restore_round_trip(
    live: LiveFactory, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "live.db"
    server = await live(db=str(db))
    await server.coordinator.add_task(small_task(goal=2, min_reports=2))
    workers = [await RawClient.connect(server.url) for _ in range(2)]
    for i, w in enumerate(workers):
        assert (await w.hello(f"backup-worker-{i}"))["type"] == "welcome"

    async def one_round() -> None:
        tasks = [await assigned(w) for w in workers]
        replies = await report_together(zip(workers, tasks, strict=True), np.full(11, 0.01))
        assert [r["type"] for r in replies] == ["ack", "ack"], replies

    await one_round()
    await server.wait_rounds(1)
    # Back up while the coordinator keeps writing (a second round runs meanwhile).
    busy = asyncio.create_task(one_round())
    copy = tmp_path / "backups" / "b1.db"
    info = await asyncio.to_thread(backup, db, copy)
    await busy
    await server.wait_rounds(2)
    assert info.tasks == 1 and info.model_versions >= 2
    assert info.migrations[0] == "m001_initial"
    snapshot = _rows(copy)
    assert len(snapshot["versions"]) == info.model_versions
    assert not Path(f"{copy}-wal").exists()  # one self-contained file

    # The CLI does the same and says so in JSON.
    assert main(["backup", str(tmp_path / "b2.db"), "--db", str(db), "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["tasks"] == 1 and printed["model_versions"] >= 2
    for w in workers:
        await w.close()

    # Restore into a fresh place and into the original (as after a disk loss), then open it.
    target = tmp_path / "restored.db"
    restored = restore(copy, target)
    assert restored.model_versions == info.model_versions
    assert _rows(target) == snapshot
    store = SQLiteStore(str(target))  # opens, migrates (nothing to do), serves
    assert store.latest_model_version("t1") is not None
    store.close()
    server2 = await live(db=str(target))
    assert server2.coordinator.tasks["t1"].model_version == info.model_versions - 1


def test_bad_backups_are_refused(tmp_path: Path) -> None:
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"not a database" * 100)
    with pytest.raises(BackupError):
        verify(junk)
    with pytest.raises(BackupError, match="no such"):
        backup(tmp_path / "missing.db", tmp_path / "out.db")
    good = tmp_path / "good.db"
    SQLiteStore(str(good)).close()
    with pytest.raises(BackupError, match="overwrite"):
        backup(good, good)
    other = tmp_path / "other.db"
    with sqlite3.connect(other) as conn:
        conn.execute("CREATE TABLE x (y)")
    with pytest.raises(BackupError, match="not a Dandelion state file"):
        restore(other, tmp_path / "target.db")
    assert not (tmp_path / "target.db").exists()  # nothing was touched
    assert main(["restore", str(junk), "--db", str(tmp_path / "t.db")]) == 1


def test_restore_holds_the_lease_and_is_refused_while_another_holds_it(tmp_path: Path) -> None:
    copy, target = tmp_path / "copy.db", tmp_path / "state.db"
    SQLiteStore(str(copy)).close()
    store = SQLiteStore(str(target))
    store.add_admin_token("made-after-the-backup", "0" * 64, 1.0)
    store.close()
    with StateLease(target), pytest.raises(LeaseHeldError, match="stop that coordinator first"):
        restore(copy, target)  # as under a running `dandelion serve`
    store = SQLiteStore(str(target))
    assert [name for name, _ in store.list_admin_tokens()] == ["made-after-the-backup"]
    store.close()
    assert restore(copy, target).tasks == 0  # released: the restore goes through
    store = SQLiteStore(str(target))
    assert store.list_admin_tokens() == []
    store.close()
