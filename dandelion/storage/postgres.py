"""The PostgreSQL backend, through psycopg 3: ``--db postgresql://…``.

The queries are ``sql.py``'s, shared with SQLite; the schema is ``pg_migrations.py``'s, applied
on open. Like every backend it is synchronous: :class:`~dandelion.storage.writer.AsyncStore`
runs it on its writer thread (group commit: one transaction for every job queued) and its
reader thread, one connection each. A commit returns once PostgreSQL has made it durable
(``synchronous_commit`` as the server sets it, ``on`` by default), so "committed before
acknowledged" holds as with SQLite.

Rules of this file: one connection per store, in autocommit mode; :meth:`transaction` opens a
transaction (a savepoint when nested). A connection that broke (the server restarted, the
network dropped) is opened again before the next statement that is not inside a transaction;
the one that broke fails with :class:`~dandelion.storage.errors.StorageError`.

Raises StorageError for an unreachable server or a failing statement,
:class:`~dandelion.storage.errors.ConflictError` for a duplicate or a broken reference, and
:class:`~dandelion.storage.pg_migrations.SchemaError` for a database that is not Dandelion's.
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Iterator, Sequence
from typing import Any

import psycopg
from psycopg.rows import TupleRow

from .errors import ConflictError, StorageError
from .location import is_postgres_url, redacted
from .pg_migrations import PG_MIGRATIONS
from .records import ParticipationEvent
from .sql import SQLStore

__all__ = ["PostgresStore", "connect"]

_CONNECT_TIMEOUT_S = 10


@contextlib.contextmanager
def _translated() -> Iterator[None]:
    try:
        yield
    except psycopg.IntegrityError as exc:
        raise ConflictError(_first_line(exc)) from exc
    except psycopg.Error as exc:
        raise StorageError(f"{type(exc).__name__}: {_first_line(exc)}") from exc


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def connect(url: str, name: str) -> psycopg.Connection[TupleRow]:
    """An autocommit connection to ``url`` that names itself ``name`` in
    ``pg_stat_activity``. Raises StorageError naming the server (never its password)."""
    try:
        return psycopg.connect(
            url, autocommit=True, connect_timeout=_CONNECT_TIMEOUT_S, application_name=name[:63]
        )
    except psycopg.Error as exc:
        raise StorageError(f"cannot connect to {redacted(url)}: {_first_line(exc)}") from None


class PostgresStore(SQLStore):
    """State in one PostgreSQL database. One instance per thread (one connection each)."""

    # SQLite's CAST truncates toward zero; PostgreSQL's rounds: trunc says what is meant.
    _BUCKET = "trunc(at / ?)::bigint"
    _FOR_SHARE = " FOR SHARE"
    _FOR_UPDATE = " FOR UPDATE"

    def __init__(self, url: str, *, readonly: bool = False, command: str = "") -> None:
        if not is_postgres_url(url):
            raise ValueError(f"not a postgresql:// URL: {url!r}")
        self.url = url
        self._name = f"dandelion {command or 'state'} {os.getpid()}@{socket.gethostname()}"
        self._depth = 0  # transactions open on this connection (nested ones are savepoints)
        self._sql: dict[str, str] = {}
        self._pg = self._connect()
        if not readonly:
            try:
                with _translated():
                    PG_MIGRATIONS.apply(self._pg)
            except BaseException:
                self._pg.close()  # a refused database keeps no session of ours open
                raise

    def _connect(self) -> psycopg.Connection[TupleRow]:
        return connect(self.url, self._name)

    def _connection(self) -> psycopg.Connection[TupleRow]:
        if self._pg.broken and self._depth == 0:
            self._pg.close()
            self._pg = self._connect()
        return self._pg

    def close(self) -> None:
        self._pg.close()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        conn = self._connection()
        self._depth += 1
        try:
            with _translated(), conn.transaction():
                yield
        finally:
            self._depth -= 1

    def _pg_sql(self, sql: str) -> str:
        # The shared statements use "?"; psycopg's placeholder is "%s" (and "%" is special).
        text = self._sql.get(sql)
        if text is None:
            if "%" in sql:
                raise ValueError(f"a literal % in a shared statement: {sql!r}")
            text = self._sql[sql] = sql.replace("?", "%s")
        return text

    def _exec(self, sql: str, params: Sequence[Any] = ()) -> psycopg.Cursor[TupleRow]:
        with _translated():
            return self._connection().execute(self._pg_sql(sql), params)

    def _exec_many(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        # psycopg pipelines executemany: one round trip for the batch, not one per row.
        with _translated():
            self._connection().cursor().executemany(self._pg_sql(sql), rows)

    def record_events(self, events: Sequence[ParticipationEvent]) -> None:
        if not events:
            return
        # The hot path: COPY streams the batch as one statement; the shared INSERT's
        # executemany took about 7 ms for 100 rows here, COPY about 1 ms.
        with (
            _translated(),
            self._connection().cursor() as cur,
            cur.copy("COPY events (worker_id, task, round, event, at) FROM STDIN") as copy,
        ):
            for e in events:
                copy.write_row((e.worker_id, e.task, e.round, e.event, e.at))

    # -- what the commands ask of a database before they use it ----------------------------------

    def pending_migrations(self) -> tuple[str, ...]:
        with _translated():
            return PG_MIGRATIONS.pending(self._connection())

    def applied_migrations(self) -> tuple[str, ...]:
        with _translated():
            return PG_MIGRATIONS.applied(self._connection())

    def lock_tasks(self) -> None:
        """Inside :meth:`transaction`: hold the tasks table against other writers until it
        ends (SQLite's ``BEGIN IMMEDIATE``, for a command that reads a task, then changes it)."""
        if self._depth == 0:
            raise RuntimeError("lock_tasks outside a transaction")
        self._exec("LOCK TABLE tasks IN SHARE ROW EXCLUSIVE MODE")
