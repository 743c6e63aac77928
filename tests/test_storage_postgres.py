"""What only the PostgreSQL backend has: its schema beside SQLite's, refusing a database that is
not Dandelion's, reconnecting after the server drops a session, its URL checks, and its lease
(an advisory lock) — all against the real server the tests start (tests/pg_server.py)."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest

from dandelion.storage import (
    FencedError,
    RoundRecord,
    ShardCheckpoint,
    SQLiteStore,
    StorageError,
    TaskRecord,
)
from dandelion.storage.lease import LeaseHeldError
from dandelion.storage.location import StateURLError, check_url, open_state, redacted
from dandelion.storage.pg_lease import PostgresLease
from dandelion.storage.pg_migrations import PG_MIGRATIONS, SchemaError
from dandelion.storage.postgres import PostgresStore

from .conftest import free_port, scaled
from .pg_server import PostgresServer


def _sqlite_columns(path: Path) -> dict[str, set[str]]:
    with sqlite3.connect(path) as conn:
        tables = [
            name
            for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
            if not name.startswith(("sqlite_", "_sqlite"))
        ]
        return {t: {row[1] for row in conn.execute(f"PRAGMA table_info({t})")} for t in tables}


def _pg_columns(url: str) -> dict[str, set[str]]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT table_name, column_name FROM information_schema.columns "
            "WHERE table_schema = current_schema()"
        ).fetchall()
    columns: dict[str, set[str]] = {}
    for table, column in rows:
        columns.setdefault(str(table), set()).add(str(column))
    return columns


def test_the_schema_has_the_same_tables_and_columns_as_sqlite(
    postgres: PostgresServer, tmp_path: Path
) -> None:
    SQLiteStore(str(tmp_path / "s.db")).close()
    url = postgres.database()
    PostgresStore(url).close()
    lite = _sqlite_columns(tmp_path / "s.db")
    pg = _pg_columns(url)
    # Each engine records its migrations in a table of its own kind.
    assert "dandelion_migrations" in pg
    pg.pop("dandelion_migrations")
    lite = {t: c for t, c in lite.items() if "migrations" not in t}
    assert "tasks" in lite
    assert pg == lite


def test_migrations_run_once_and_a_reopen_finds_nothing_pending(postgres: PostgresServer) -> None:
    url = postgres.database()
    fresh = open_state(url, readonly=True)
    assert isinstance(fresh, PostgresStore)
    assert fresh.pending_migrations() == PG_MIGRATIONS.names
    assert fresh.applied_migrations() == ()
    fresh.close()
    PostgresStore(url).close()
    again = PostgresStore(url)
    assert again.pending_migrations() == ()
    assert again.applied_migrations() == PG_MIGRATIONS.names
    again.close()


def test_another_programs_database_is_refused_and_left_as_it_was(
    postgres: PostgresServer,
) -> None:
    url = postgres.database()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE invoices (id integer)")
    with pytest.raises(SchemaError, match="another program's tables"):
        PostgresStore(url)
    assert set(_pg_columns(url)) == {"invoices"}  # no table of Dandelion's was added


def test_a_newer_schema_is_refused(postgres: PostgresServer) -> None:
    url = postgres.database()
    PostgresStore(url).close()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO dandelion_migrations (id, name, applied_at) VALUES (999, 'm999_x', 0)"
        )
    with pytest.raises(SchemaError, match="newer version"):
        PostgresStore(url)


def test_a_dropped_session_is_opened_again_for_the_next_statement(
    postgres: PostgresServer,
) -> None:
    store = PostgresStore(postgres.database())
    store.create_task(TaskRecord("a", {}, "active", 1.0))
    with psycopg.connect(store.url, autocommit=True) as admin:
        ended = admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        ).fetchall()
    assert ended == [(True,)]
    with pytest.raises(StorageError):
        store.get_task("a")  # the statement that met the dropped session fails
    record = store.get_task("a")  # the next one reconnects
    assert record is not None and record.name == "a"
    store.close()


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("postgresql://u@127.0.0.1:notaport/db", "not a TCP port number"),
        ("postgresql://u@127.0.0.1:70000/db", "not a TCP port number"),
        ("postgresql://u@127.0.0.1/db?colour=blue", 'invalid URI query parameter: "colour"'),
        ("postgresql://u@[::1/db", "IPv6"),
    ],
)
def test_a_url_libpq_cannot_read_is_refused_before_connecting(url: str, says: str) -> None:
    with pytest.raises(StateURLError, match=says.replace("[", r"\[")):
        check_url(url)
    with pytest.raises(StateURLError):
        open_state(url)


def test_messages_never_show_the_password() -> None:
    assert redacted("postgresql://u:s3cret@h:5432/db") == "postgresql://u:***@h:5432/db"
    assert "s3cret" not in redacted("postgresql://u:s3cret@h:port/db")
    assert redacted("/var/lib/dandelion/dandelion.db") == "/var/lib/dandelion/dandelion.db"
    with pytest.raises(StorageError) as caught:
        open_state(f"postgresql://u:s3cret@127.0.0.1:{free_port()}/db")
    assert "s3cret" not in str(caught.value)
    assert "cannot connect to postgresql://u:***@127.0.0.1:" in str(caught.value)


def test_the_lease_is_held_once_per_database(postgres: PostgresServer) -> None:
    url, other = postgres.database(), postgres.database()
    first = PostgresLease(url, command="serve")
    holder = first.acquire()
    try:
        with pytest.raises(LeaseHeldError) as caught:
            PostgresLease(url, command="serve").acquire()
        seen = caught.value.holder
        assert seen is not None
        assert (seen.pid, seen.host, seen.command) == (holder.pid, holder.host, "serve")
        assert f"pid {holder.pid} on host {holder.host}" in str(caught.value)
        with PostgresLease(other) as elsewhere:  # another database: another lease
            assert elsewhere.held
    finally:
        first.release()
    with PostgresLease(url) as again:  # released: the next one takes it
        assert again.held


_HOLD = """
import sys, time
from dandelion.storage.pg_lease import PostgresLease
lease = PostgresLease(sys.argv[1], command="serve")
lease.acquire()
print("held", flush=True)
time.sleep(600)
"""


def test_a_holder_killed_by_sigkill_leaves_no_lease_behind(postgres: PostgresServer) -> None:
    url = postgres.database()
    proc = subprocess.Popen([sys.executable, "-c", _HOLD, url], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
        with pytest.raises(LeaseHeldError) as caught:
            PostgresLease(url).acquire()
        assert caught.value.holder is not None and caught.value.holder.pid == proc.pid
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert proc.stdout is not None
        proc.stdout.close()
    # The kernel closes the dead process's socket; the server ends its session and the lock.
    deadline = time.monotonic() + scaled(10)
    while True:
        lease = PostgresLease(url)
        try:
            lease.acquire()
            break
        except LeaseHeldError:
            assert time.monotonic() < deadline, "the lease outlived its SIGKILLed holder"
            time.sleep(0.05)
    assert lease.held
    lease.release()


def test_two_leaders_racing_to_commit_serialise_on_the_epoch(postgres: PostgresServer) -> None:
    """A newer leader's commit is open when a deposed one's arrives: the late one waits for the
    row, then reads the newer epoch and is refused (READ COMMITTED re-reads the updated row)."""
    url = postgres.database()
    newer, older = PostgresStore(url), PostgresStore(url)
    newer.create_task(TaskRecord("t1", {}, "active", 1.0))
    outcome: list[BaseException | None] = []

    def late() -> None:
        try:
            with older.transaction():
                older.fence("t1", 4)
            outcome.append(None)
        except BaseException as exc:
            outcome.append(exc)

    with newer.transaction():
        newer.fence("t1", 5)
        racer = threading.Thread(target=late)
        racer.start()
        racer.join(scaled(1.0))
        assert racer.is_alive()  # it waits on the row the open transaction holds
    racer.join(scaled(10))
    assert len(outcome) == 1 and isinstance(outcome[0], FencedError), outcome
    assert older.leader_epoch("t1") == 5
    newer.close()
    older.close()


def _racing(first: PostgresStore, second: Callable[[], object]) -> list[object]:
    """Run ``second`` in a thread while ``first`` holds a transaction open; it must wait for
    that transaction. Returns what ``second`` returned or raised."""
    outcome: list[object] = []

    def run() -> None:
        try:
            outcome.append(second())
        except BaseException as exc:
            outcome.append(exc)

    racer = threading.Thread(target=run)
    racer.start()
    racer.join(scaled(1.0))
    assert racer.is_alive()  # it waits on the round's row that the open transaction holds
    return outcome


def _open_round(store: PostgresStore) -> None:
    store.create_task(TaskRecord("t1", {}, "active", 1.0))
    store.open_round(RoundRecord("t1", 1, 0, "open", 1.0, None, 6))


def test_a_seal_waits_for_a_shard_checkpoint_being_written_and_merges_it(
    postgres: PostgresServer,
) -> None:
    """The leader seals while a shard's checkpoint is being committed: the seal waits for it
    and returns it — an update acknowledged after that commit is in the leader's merge."""
    url = postgres.database()
    shard, leader = PostgresStore(url), PostgresStore(url)
    _open_round(shard)
    with shard.transaction():
        shard.save_shard_checkpoint(ShardCheckpoint("t1", 1, "a", b"sum", 2, 0, 2.0))
        outcome = _racing(shard, lambda: leader.seal_round("t1", 1))
    deadline = time.monotonic() + scaled(10)
    while not outcome and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(outcome) == 1 and isinstance(outcome[0], list), outcome
    assert [c.shard for c in outcome[0]] == ["a"]
    shard.close()
    leader.close()


def test_a_shard_checkpoint_after_the_seal_is_refused_once_it_commits(
    postgres: PostgresServer,
) -> None:
    """A shard's checkpoint arrives while the seal is open: it waits for the seal, then finds
    the round sealed and is refused — its updates are never acknowledged, never lost."""
    url = postgres.database()
    shard, leader = PostgresStore(url), PostgresStore(url)
    _open_round(leader)
    late = ShardCheckpoint("t1", 1, "b", b"sum", 2, 0, 3.0)
    with leader.transaction():
        assert leader.seal_round("t1", 1) == []
        outcome = _racing(leader, lambda: shard.save_shard_checkpoint(late))
    deadline = time.monotonic() + scaled(10)
    while not outcome and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(outcome) == 1 and isinstance(outcome[0], KeyError), outcome
    assert "sealed" in str(outcome[0])
    assert leader.list_shard_checkpoints("t1", 1) == []
    shard.close()
    leader.close()


def test_a_sqlite_state_never_loads_the_postgresql_driver(tmp_path: Path) -> None:
    """psycopg is an optional extra: the commands on a SQLite file must not import it."""
    code = (
        "import sys\n"
        "from dandelion.cli import main\n"
        f"assert main(['task', 'list', '--db', {str(tmp_path / 's.db')!r}]) == 0\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'psycopg'))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert done.stdout.strip().splitlines()[-1] == "[]"
