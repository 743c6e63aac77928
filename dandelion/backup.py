"""Backups of the state file with SQLite's online backup API, safe while the coordinator runs.

``backup(db, dest)`` copies the live database page by page (readers and the writer carry on;
pages changed during the copy are copied again), then checks the copy: ``integrity_check``
and the schema migrations it holds. ``restore(backup, db)`` checks a backup and copies it over
the state file while holding the state file's lease (``storage/lease.py``): a running
coordinator holds that lease, so a restore under it is refused with ``LeaseHeldError`` instead
of being overwritten by the coordinator's in-memory state.
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

from .storage.lease import StateLease

__all__ = ["BackupError", "BackupInfo", "backup", "restore", "verify"]

_PAGES_PER_STEP = 1024


class BackupError(Exception):
    """The backup could not be made, or a file is not a sound Dandelion state file."""


@dataclass(frozen=True, slots=True)
class BackupInfo:
    path: str
    bytes: int
    seconds: float
    tasks: int
    model_versions: int
    events: int
    migrations: list[str]


def _connect(path: str | Path, *, readonly: bool) -> sqlite3.Connection:
    uri = f"file:{path}?mode=ro" if readonly else f"file:{path}"
    try:
        conn = sqlite3.connect(uri, uri=True, timeout=30.0)
    except sqlite3.Error as exc:
        raise BackupError(f"cannot open {path}: {exc}") from None
    conn.execute("PRAGMA busy_timeout = 30000")
    return conn


def verify(path: str | Path) -> BackupInfo:
    """Check that ``path`` is a sound state file; describe what it holds."""
    if not Path(path).is_file():
        raise BackupError(f"{path}: no such file")
    started = time.perf_counter()
    with contextlib.closing(_connect(path, readonly=True)) as conn:
        try:
            status = conn.execute("PRAGMA integrity_check").fetchone()[0]
            migrations = [
                row[0]
                for row in conn.execute(
                    "SELECT name FROM _sqlite_migrations WHERE migration_set = 'dandelion' "
                    "ORDER BY id"
                )
            ]
            counts = [
                conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
                for table in ("tasks", "model_versions", "events")
            ]
        except sqlite3.Error as exc:
            raise BackupError(f"{path} is not a Dandelion state file: {exc}") from None
    if status != "ok":
        raise BackupError(f"{path} fails its integrity check: {status}")
    return BackupInfo(
        str(path),
        Path(path).stat().st_size,
        time.perf_counter() - started,
        counts[0],
        counts[1],
        counts[2],
        migrations,
    )


def _copy(source: sqlite3.Connection, dest_path: Path) -> None:
    tmp = dest_path.with_name(dest_path.name + ".partial")
    tmp.unlink(missing_ok=True)
    with contextlib.closing(sqlite3.connect(tmp)) as dest:
        source.backup(dest, pages=_PAGES_PER_STEP, sleep=0.005)
        # A backup is one self-contained file: no WAL beside it.
        dest.execute("PRAGMA journal_mode = DELETE")
    tmp.replace(dest_path)


def backup(db: str | Path, dest: str | Path) -> BackupInfo:
    """Copy the (possibly live) state file ``db`` to ``dest`` and verify the copy."""
    dest_path = Path(dest)
    if dest_path.resolve() == Path(db).resolve():
        raise BackupError("the backup would overwrite the state file itself")
    if not Path(db).is_file():
        raise BackupError(f"{db}: no such state file")
    dest_path.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    with contextlib.closing(_connect(db, readonly=True)) as source:
        try:
            _copy(source, dest_path)
        except sqlite3.Error as exc:
            raise BackupError(f"backup of {db} failed: {exc}") from None
    elapsed = time.perf_counter() - started
    info = verify(dest_path)
    return BackupInfo(
        info.path,
        info.bytes,
        elapsed,
        info.tasks,
        info.model_versions,
        info.events,
        info.migrations,
    )


def restore(source: str | Path, db: str | Path) -> BackupInfo:
    """Replace the state file ``db`` by the backup ``source``, holding ``db``'s lease.

    Raises BackupError for an unsound backup or a failed copy, and
    :class:`~dandelion.storage.lease.LeaseError` (``LeaseHeldError``: a coordinator or another
    restore holds ``db``) before anything is touched.
    """
    verify(source)
    target = Path(db)
    with StateLease(target, command="restore"):
        for suffix in ("-wal", "-shm"):  # a stale WAL beside the old file must not be replayed
            Path(f"{target}{suffix}").unlink(missing_ok=True)
        with contextlib.closing(_connect(source, readonly=True)) as conn:
            try:
                _copy(conn, target)
            except sqlite3.Error as exc:
                raise BackupError(f"restore into {db} failed: {exc}") from None
        return verify(target)
