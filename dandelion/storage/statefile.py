"""What a state file is, found out before a store opens it.

Opening a :class:`~dandelion.storage.sqlite.SQLiteStore` applies every pending migration, which
writes: into somebody else's SQLite database it would add Dandelion's tables, and under a
running coordinator of an older version it would change the schema beneath it. So the commands
look first, through a read-only connection that changes nothing:

- :func:`inspect_state_file` — is it SQLite, is it Dandelion's (or empty), which migrations
  has it (one this version does not know: a newer version wrote it, refused), and, with
  ``quick_check=True``, does ``PRAGMA quick_check`` pass;
- :func:`pending_migrations` — the migrations opening it would apply (all of them for a file
  that does not exist yet).

Raises :class:`StateFileError` (a :class:`~dandelion.storage.errors.StorageError`) for a file
that is not SQLite, is another program's database, is corrupt, or cannot be read; its message
is one line that names the file.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from sqlite_utils import Database

from .errors import StorageError
from .location import is_postgres_url, open_state
from .migrations import MIGRATIONS

__all__ = ["StateFileError", "StateFileInfo", "inspect_state_file", "pending_migrations"]

# Problems quick_check reports before it stops: the first one is shown, the rest counted.
_QUICK_CHECK_ROWS = 20


class StateFileError(StorageError):
    """The file is not a usable Dandelion state file (not SQLite, foreign, corrupt, unreadable)."""


@dataclass(frozen=True, slots=True)
class StateFileInfo:
    """What :func:`inspect_state_file` found."""

    path: str
    empty: bool  # SQLite with no tables at all (a new file): the migrations will make them
    applied: tuple[str, ...]  # Dandelion's migrations recorded in it, in order
    pending: tuple[str, ...]  # the migrations opening it would apply


def _connect_readonly(path: Path) -> sqlite3.Connection:
    # mode=ro: nothing here may create, migrate or even journal the file.
    uri = f"file:{quote(str(path.absolute()))}?mode=ro"
    try:
        conn = sqlite3.connect(uri, uri=True, timeout=30.0)
        conn.execute("PRAGMA busy_timeout = 30000")
    except sqlite3.Error as exc:
        raise StateFileError(f"cannot open {path}: {exc}") from None
    return conn


def _error(exc: sqlite3.Error, path: Path) -> StateFileError:
    if "not a database" in str(exc):
        return StateFileError(f"{path} is not a SQLite database")
    if "malformed" in str(exc):
        return StateFileError(f"{path} is corrupt: {exc}; restore a backup (dandelion restore)")
    return StateFileError(f"{path} cannot be read: {exc}")


def _tables(conn: sqlite3.Connection, path: Path) -> set[str]:
    try:
        rows = conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
    except sqlite3.Error as exc:
        raise _error(exc, path) from None
    return {name for (name,) in rows if not name.startswith("sqlite_")}


def _quick_check(conn: sqlite3.Connection, path: Path) -> None:
    try:
        rows = conn.execute(f"PRAGMA quick_check({_QUICK_CHECK_ROWS})").fetchall()
    except sqlite3.Error as exc:
        raise _error(exc, path) from None
    problems = [
        line.strip()
        for (text,) in rows
        for line in str(text).splitlines()
        if line.strip() and not line.startswith("***")
    ]
    if problems != ["ok"]:
        more = f" (and {len(problems) - 1} more problems)" if len(problems) > 1 else ""
        raise StateFileError(
            f"{path} is corrupt: PRAGMA quick_check says {problems[0]}{more}; "
            "restore a backup (dandelion restore)"
        )


def inspect_state_file(path: str | os.PathLike[str], *, quick_check: bool = False) -> StateFileInfo:
    """Check that the existing file ``path`` is an empty SQLite database or Dandelion's.

    Raises StateFileError when it is not (or, with ``quick_check``, when it is corrupt).
    """
    file = Path(path)
    if not file.is_file():
        raise StateFileError(f"{file} is not a file")
    with contextlib.closing(_connect_readonly(file)) as conn:
        tables = _tables(conn, file)
        db = Database(conn, execute_plugins=False)
        try:
            applied = tuple(m.name for m in MIGRATIONS.applied(db))
            pending = tuple(m.name for m in MIGRATIONS.pending(db))
        except sqlite3.Error as exc:
            raise _error(exc, file) from None
        if tables and not applied:
            shown = ", ".join(sorted(tables)[:3]) + (", …" if len(tables) > 3 else "")
            raise StateFileError(
                f"{file} is a SQLite database of another program (tables {shown}), "
                "not a Dandelion state file"
            )
        known = set(_all_migrations())
        newer = [name for name in applied if name not in known]
        if newer:
            raise StateFileError(
                f"{file} was written by a newer version of Dandelion (schema {newer[-1]}); "
                "run that version, or restore a backup made before the upgrade"
            )
        if quick_check:
            _quick_check(conn, file)
    return StateFileInfo(str(file), not tables, applied, pending)


def _all_migrations() -> tuple[str, ...]:
    """Every migration this version knows, in order (all are pending on an empty database)."""
    with contextlib.closing(sqlite3.connect(":memory:")) as conn:
        return tuple(m.name for m in MIGRATIONS.pending(Database(conn, execute_plugins=False)))


def pending_migrations(path: str | os.PathLike[str]) -> tuple[str, ...]:
    """The migrations that opening ``path`` would apply: all of them if it does not exist.

    Read-only. Raises StateFileError for a file that is not SQLite or not Dandelion's; for a
    ``postgresql://`` URL, the database's pending migrations (SchemaError for a database that
    is not Dandelion's, StorageError when it cannot be reached).
    """
    if is_postgres_url(str(path)):
        from .postgres import PostgresStore

        store = open_state(str(path), readonly=True)
        try:
            assert isinstance(store, PostgresStore)
            return store.pending_migrations()
        finally:
            store.close()
    if not Path(path).exists():
        return _all_migrations()
    return inspect_state_file(path).pending
