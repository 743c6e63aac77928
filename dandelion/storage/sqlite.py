"""The embedded SQLite backend (the default), through sqlite-utils.

WAL mode so readers never wait for the writer; ``synchronous=NORMAL``: in WAL mode a process
crash (even SIGKILL) loses no committed transaction, only a power cut can lose the last few —
and it makes each commit cheap enough to commit every acknowledged event. The schema comes only
from ``migrations.py``, applied on open; the queries are ``sql.py``'s, shared with PostgreSQL.

Raises :class:`~dandelion.storage.errors.StorageError` when the file cannot be written (disk full,
read-only) and :class:`~dandelion.storage.errors.ConflictError` for duplicates.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator, Sequence
from typing import Any

from sqlite_utils import Database

from .errors import ConflictError, StorageError
from .migrations import MIGRATIONS
from .sql import SQLStore

__all__ = ["SQLiteStore"]


@contextlib.contextmanager
def _translated() -> Iterator[None]:
    try:
        yield
    except sqlite3.IntegrityError as exc:
        raise ConflictError(str(exc)) from exc
    except sqlite3.Error as exc:
        raise StorageError(f"{type(exc).__name__}: {exc}") from exc


class SQLiteStore(SQLStore):
    """State in one SQLite file. One instance per thread (the connection is not shared)."""

    def __init__(self, path: str, *, readonly: bool = False) -> None:
        self.path = path
        with _translated():
            conn = sqlite3.connect(path, timeout=30.0, check_same_thread=False)
            # Driver-level autocommit: a statement outside transaction() commits at once, and
            # transaction() issues BEGIN/COMMIT itself (sqlite-utils' atomic()).
            conn.isolation_level = None
            self.db = Database(conn, execute_plugins=False)
            conn.execute("PRAGMA busy_timeout = 30000")
            if not readonly:
                conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.execute("PRAGMA foreign_keys = ON")
            if not readonly:
                MIGRATIONS.apply(self.db)
        self.conn = conn

    def close(self) -> None:
        self.conn.close()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        with _translated(), self.db.atomic():
            yield

    def _exec(self, sql: str, params: Sequence[Any] = ()) -> sqlite3.Cursor:
        with _translated():
            return self.conn.execute(sql, params)

    def _exec_many(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        # Plain executemany: a third of the cost of sqlite-utils' insert_all, which inspects
        # the table on every call.
        with _translated():
            self.conn.executemany(sql, rows)
