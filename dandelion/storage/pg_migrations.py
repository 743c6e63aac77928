"""Schema changes of the PostgreSQL backend, in order. Never ALTER a table anywhere else.

The same schema as ``migrations.py`` makes in SQLite — the same tables, the same columns, the
same keys — in PostgreSQL's types: ``double precision`` for times and figures, ``bigint`` for
counts, ``bytea`` for blobs, ``text COLLATE "C"`` for names (so that names sort by their bytes,
as SQLite sorts them, whatever the database's locale). ``m001_initial`` is the schema SQLite
reached at ``m007_evaluation``: PostgreSQL state begins there. A schema change adds a migration
to both files; ``tests/test_storage_postgres.py`` fails when their tables or columns differ.

Rules of this file: a migration is a function of an open connection, added at the end with
``@PG_MIGRATIONS()``; it runs once per database, inside the transaction that records it in
``dandelion_migrations``, and PostgreSQL's DDL is transactional, so a failed migration leaves
nothing. Migrators take a transaction-scoped advisory lock first: two processes opening a new
database at once migrate it once.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .errors import StorageError

if TYPE_CHECKING:
    import psycopg
    from psycopg.rows import TupleRow

    Connection = psycopg.Connection[TupleRow]

__all__ = ["MIGRATION_LOCK", "PG_MIGRATIONS", "PgMigration", "PgMigrations", "SchemaError"]

#: The advisory lock key that serialises migrators (any fixed 64-bit number of our own).
MIGRATION_LOCK = 0x44414E444D494752  # "DANDMIGR"

_TABLE = "dandelion_migrations"


class SchemaError(StorageError):
    """The database is not a usable Dandelion state: another program's tables, or a schema
    written by a newer version."""


@dataclass(frozen=True, slots=True)
class PgMigration:
    name: str
    fn: Callable[[Connection], None]


class PgMigrations:
    """An ordered list of migrations and what a database has of them."""

    def __init__(self) -> None:
        self.migrations: list[PgMigration] = []

    def __call__(
        self,
    ) -> Callable[
        [Callable[[Connection], None]],
        Callable[[Connection], None],
    ]:
        def register(
            fn: Callable[[Connection], None],
        ) -> Callable[[Connection], None]:
            self.migrations.append(PgMigration(fn.__name__, fn))
            return fn

        return register

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(m.name for m in self.migrations)

    def applied(self, conn: Connection) -> tuple[str, ...]:
        """The migrations recorded in the database, in the order they ran (none for a new one).

        Raises SchemaError for another program's tables or a newer version's schema."""
        rows = conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()"
        ).fetchall()
        tables = {str(r[0]) for r in rows}
        if _TABLE not in tables:
            if tables:  # as with a SQLite file: Dandelion's migrations never write among others'
                shown = ", ".join(sorted(tables)[:3]) + (", …" if len(tables) > 3 else "")
                raise SchemaError(
                    f"the database holds another program's tables ({shown}) and no {_TABLE}: "
                    "not a Dandelion state; give Dandelion a database of its own (createdb)"
                )
            return ()
        done = tuple(
            str(r[0]) for r in conn.execute(f"SELECT name FROM {_TABLE} ORDER BY id").fetchall()
        )
        newer = [name for name in done if name not in self.names]
        if newer:
            raise SchemaError(
                f"the database was written by a newer version of Dandelion (schema {newer[-1]}); "
                "run that version, or restore a dump made before the upgrade"
            )
        return done

    def pending(self, conn: Connection) -> tuple[str, ...]:
        done = set(self.applied(conn))
        return tuple(name for name in self.names if name not in done)

    def apply(self, conn: Connection) -> tuple[str, ...]:
        """Run every pending migration (the connection is in autocommit mode); return their
        names. Raises SchemaError, psycopg.Error."""
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
            self.applied(conn)  # SchemaError for another program's tables, before adding ours
            conn.execute(
                f"CREATE TABLE IF NOT EXISTS {_TABLE} (id integer PRIMARY KEY, "
                'name text COLLATE "C" NOT NULL UNIQUE, applied_at double precision NOT NULL)'
            )
            done = set(self.applied(conn))
            ran = []
            for number, migration in enumerate(self.migrations, 1):
                if migration.name in done:
                    continue
                migration.fn(conn)
                conn.execute(
                    f"INSERT INTO {_TABLE} (id, name, applied_at) VALUES (%s, %s, %s)",
                    (number, migration.name, time.time()),
                )
                ran.append(migration.name)
        return tuple(ran)


PG_MIGRATIONS = PgMigrations()

_NAME = 'text COLLATE "C"'
_TASK = f"{_NAME} NOT NULL REFERENCES tasks (name)"


@PG_MIGRATIONS()
def m001_initial(conn: Connection) -> None:
    # SQLite's m001 to m007 in one: see that file for why each table and column exists.
    statements = [
        f"""CREATE TABLE tasks (
            name {_NAME} PRIMARY KEY, config text NOT NULL, status {_NAME} NOT NULL,
            created_at double precision NOT NULL, reason text NOT NULL DEFAULT '',
            config_version bigint NOT NULL DEFAULT 1)""",
        f"""CREATE TABLE model_versions (
            task {_TASK}, version bigint NOT NULL, round bigint, params bytea,
            optimizer_state bytea, created_at double precision, metrics text,
            PRIMARY KEY (task, version))""",
        f"""CREATE TABLE rounds (
            task {_TASK}, round bigint NOT NULL, model_version bigint, status {_NAME},
            opened_at double precision, closed_at double precision, goal bigint,
            assigned bigint, reported bigint, rejected bigint, dropped bigint, metrics text,
            config_version bigint NOT NULL DEFAULT 1, kind {_NAME} NOT NULL DEFAULT 'train',
            PRIMARY KEY (task, round))""",
        "CREATE INDEX idx_rounds_status ON rounds (status)",
        # Participation events: a pseudonymous id, what happened, when. No address, no content.
        f"""CREATE TABLE events (
            id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, worker_id {_NAME},
            task {_NAME}, round bigint, event {_NAME}, at double precision)""",
        "CREATE INDEX idx_events_task_event ON events (task, event)",
        "CREATE INDEX idx_events_at ON events (at)",
        "CREATE INDEX idx_events_task_round_event ON events (task, round, event)",
        f"""CREATE TABLE consent (
            worker_id {_NAME} PRIMARY KEY, state {_NAME}, updated_at double precision)""",
        f"""CREATE TABLE privacy_ledger (
            task {_TASK}, round bigint NOT NULL, noise_multiplier double precision,
            sampling_rate double precision, epsilon double precision, delta double precision,
            accountant text, clip_norm double precision, next_clip_norm double precision,
            created_at double precision, kind {_NAME} NOT NULL DEFAULT 'train',
            PRIMARY KEY (task, round))""",
        f"""CREATE TABLE admin_tokens (
            name {_NAME} PRIMARY KEY, token_hash {_NAME} UNIQUE,
            created_at double precision)""",
        f"""CREATE TABLE open_rounds (
            task {_TASK}, round bigint NOT NULL, secret text, aggregate bytea,
            rejected bigint, updated_at double precision, PRIMARY KEY (task, round))""",
        f"""CREATE TABLE task_secrets (
            task {_TASK}, name {_NAME} NOT NULL, secret text, PRIMARY KEY (task, name))""",
        f"""CREATE TABLE task_configs (
            task {_TASK}, version bigint NOT NULL, config text, created_at double precision,
            reason text, PRIMARY KEY (task, version))""",
        f"""CREATE TABLE task_log (
            id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, task {_TASK},
            at double precision, change {_NAME}, status {_NAME}, config_version bigint,
            reason text)""",
        "CREATE INDEX idx_task_log_task_id ON task_log (task, id)",
        f"""CREATE TABLE evaluations (
            task {_TASK}, round bigint NOT NULL, model_version bigint, reports bigint,
            withheld bigint, count double precision, loss_sum double precision,
            correct double precision, loss double precision, accuracy double precision,
            noise_multiplier double precision, opened_at double precision,
            closed_at double precision, PRIMARY KEY (task, round))""",
    ]
    for statement in statements:
        conn.execute(statement)  # our own literal DDL


@PG_MIGRATIONS()
def m002_leader_epochs(conn: Connection) -> None:
    # SQLite's m008: the fencing epoch each task last committed with (see migrations.py).
    conn.execute(f"CREATE TABLE leader_epochs (task {_TASK} PRIMARY KEY, epoch bigint NOT NULL)")


@PG_MIGRATIONS()
def m003_shard_checkpoints(conn: Connection) -> None:
    # SQLite's m009: each cluster shard's partial aggregate of an open round, and the seal the
    # leader puts on a round it closes (see migrations.py).
    conn.execute(
        f"""CREATE TABLE shard_checkpoints (
            task {_TASK}, round bigint NOT NULL, shard {_NAME} NOT NULL, aggregate bytea,
            reports bigint, rejected bigint, updated_at double precision,
            PRIMARY KEY (task, round, shard))"""
    )
    conn.execute(
        f"""CREATE TABLE sealed_rounds (
            task {_TASK}, round bigint NOT NULL, sealed_at double precision,
            PRIMARY KEY (task, round))"""
    )
