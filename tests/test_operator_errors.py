"""An operator's mistakes end `dandelion serve` (and the other commands) with one line, never a
traceback, and touch nothing: a port in use or out of range, a missing, corrupt or foreign
state file, a missing folder, an unreadable task file."""

from __future__ import annotations

import hashlib
import signal
import socket
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest

from dandelion.storage import SQLiteStore
from dandelion.storage.lease import lease_path
from dandelion.storage.statefile import StateFileError, inspect_state_file, pending_migrations

from .test_single_writer import Serve, dandelion, one_line

Setup = Callable[[Path], list[str]]


def _state_file(path: Path, events: int = 0) -> Path:
    """A real state file (every migration applied), with ``events`` rows to fill pages."""
    SQLiteStore(str(path)).close()
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA journal_mode = DELETE")  # one self-contained file to damage
        conn.executemany(
            "INSERT INTO events (worker_id, task, round, event, at) VALUES (?, ?, ?, ?, ?)",
            [(f"worker-{i:06d}" * 3, "t1", 1, "reported", float(i)) for i in range(events)],
        )
    return path


def _corrupt(tmp: Path) -> list[str]:
    db = _state_file(tmp / "state.db", events=5000)
    data = bytearray(db.read_bytes())
    page = 4096
    middle = len(data) // page // 2
    for p in range(middle, middle + 3):  # scribble over three b-tree pages' cells
        data[p * page + 8 : p * page + 200] = bytes(range(192))
    db.write_bytes(bytes(data))
    return ["--db", str(db)]


def _not_sqlite(tmp: Path) -> list[str]:
    (tmp / "state.db").write_text("these are my notes, not a database\n" * 50)
    return ["--db", str(tmp / "state.db")]


def _foreign(tmp: Path) -> list[str]:
    with sqlite3.connect(tmp / "state.db") as conn:
        conn.execute("CREATE TABLE invoices (id INTEGER PRIMARY KEY, total REAL)")
        conn.execute("INSERT INTO invoices (total) VALUES (12.5)")
    return ["--db", str(tmp / "state.db")]


def _missing(tmp: Path) -> list[str]:
    return ["--db", str(tmp / "typo.db")]


def _no_folder(tmp: Path) -> list[str]:
    return ["--db", str(tmp / "no-such-folder" / "state.db"), "--create"]


def _port_out_of_range(tmp: Path) -> list[str]:
    return ["--db", str(_state_file(tmp / "state.db")), "--port", "70000"]


def _bad_proxies(tmp: Path) -> list[str]:
    return ["--db", str(_state_file(tmp / "state.db")), "--trusted-proxies", "10.0.0.1,nginx"]


def _task_missing(tmp: Path) -> list[str]:
    return ["--db", str(tmp / "state.db"), "--task", str(tmp / "nope.toml")]


def _task_is_a_folder(tmp: Path) -> list[str]:
    (tmp / "tasks").mkdir()
    return ["--db", str(tmp / "state.db"), "--task", str(tmp / "tasks")]


def _task_not_text(tmp: Path) -> list[str]:
    (tmp / "task.toml").write_bytes(bytes(range(256)) * 4)
    return ["--db", str(tmp / "state.db"), "--task", str(tmp / "task.toml")]


@pytest.mark.parametrize(
    ("setup", "status", "expected"),
    [
        (_corrupt, 2, "is corrupt: PRAGMA quick_check says "),
        (_not_sqlite, 2, "state.db is not a SQLite database"),
        (_foreign, 2, "is a SQLite database of another program (tables invoices)"),
        (_missing, 2, "typo.db does not exist; pass --create to make it"),
        (_no_folder, 2, "no-such-folder of the state file"),
        (_port_out_of_range, 2, "port 70000 is out of range"),
        (_bad_proxies, 2, "trusted_proxies: 'nginx' is not an address or network"),
        (_task_missing, 2, "nope.toml: [Errno 2] No such file or directory"),
        (_task_is_a_folder, 2, "tasks: [Errno 21] Is a directory"),
        (_task_not_text, 2, "task.toml: not a UTF-8 text file"),
    ],
)
def test_serve_refuses_in_one_line_and_touches_nothing(
    tmp_path: Path, setup: Setup, status: int, expected: str
) -> None:
    args = setup(tmp_path)
    before = _tree(tmp_path)
    result = dandelion("serve", "--port", "0", *args)
    assert result.returncode == status, result.stderr
    line = one_line(result)
    assert line.startswith("dandelion serve: ") and expected in line, line
    assert _tree(tmp_path) == before  # no state file made, none changed


def test_a_port_in_use_is_one_line_and_no_state_file_is_made(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        db = tmp_path / "state.db"
        result = dandelion("serve", "--db", str(db), "--create", "--port", str(port))
    assert result.returncode == 1
    assert one_line(result) == (
        f"dandelion serve: cannot listen on 127.0.0.1:{port}: the port is in use by another "
        "process (choose another with --port)"
    )
    assert not db.exists()  # the port is bound before the state file is created


async def test_a_new_state_file_is_made_only_when_asked_and_said_so(tmp_path: Path) -> None:
    db = tmp_path / "fresh.db"
    server = Serve(tmp_path, db, "--create")
    try:
        server.start()
        await server.ready()
        assert f"dandelion: created a new state file {db}\n" in server.out.read_text()
        assert pending_migrations(db) == ()
        assert server.signal(signal.SIGTERM) == 0
        # It exists now: the next start, without --create, says nothing about creating it.
        server.flags = ()
        server.start()
        await server.ready()
        assert "created" not in server.out.read_text()
        assert server.signal(signal.SIGTERM) == 0
    finally:
        server.close()


def test_other_commands_refuse_a_foreign_file_instead_of_migrating_it(tmp_path: Path) -> None:
    _foreign(tmp_path)
    db = tmp_path / "state.db"
    before = db.read_bytes()
    for args in (("task", "list"), ("token", "create", "ops")):
        result = dandelion(*args, "--db", str(db))
        assert result.returncode == 2
        assert "is a SQLite database of another program" in one_line(result)
    assert db.read_bytes() == before
    bad = tmp_path / "task.toml"
    bad.write_bytes(b"\xff\xfe\x00garbage")
    result = dandelion("task", "create", str(bad), "--db", str(tmp_path / "other.db"))
    assert result.returncode == 2 and "not a UTF-8 text file" in one_line(result)


def test_state_file_inspection(tmp_path: Path) -> None:
    fresh = tmp_path / "fresh.db"
    everything = pending_migrations(fresh)
    assert everything[0] == "m001_initial" and not fresh.exists()
    sqlite3.connect(fresh).close()  # an empty SQLite file: every migration still to come
    assert inspect_state_file(fresh).empty and pending_migrations(fresh) == everything
    db = _state_file(tmp_path / "state.db")
    info = inspect_state_file(db, quick_check=True)
    assert info.applied == everything and info.pending == () and not info.empty
    _corrupt(tmp_path)
    with pytest.raises(StateFileError, match="corrupt"):
        inspect_state_file(db, quick_check=True)
    assert not lease_path(db).exists()


def _tree(folder: Path) -> dict[str, str]:
    """Every file's digest and every folder's name; an empty lease sidecar does not count
    (a refused start may leave one, released: it is never deleted, see storage/lease.py)."""
    files = {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and not (p.suffix == ".lock" and p.stat().st_size == 0)
    }
    return files | {"(folders)": ",".join(sorted(str(p) for p in folder.rglob("*") if p.is_dir()))}


def test_a_state_file_from_a_newer_version_is_refused_in_one_line(tmp_path: Path) -> None:
    db = _state_file(tmp_path / "state.db")
    with sqlite3.connect(db) as conn:  # as a later version's migration would leave it
        conn.execute(
            "INSERT INTO _sqlite_migrations (migration_set, name, applied_at) "
            "VALUES ('dandelion', 'm999_from_the_future', '2027-01-01')"
        )
    conn.close()
    with pytest.raises(StateFileError, match="newer version"):
        inspect_state_file(db)
    result = dandelion("serve", "--db", str(db), "--port", "0")
    assert result.returncode != 0
    assert "newer version" in one_line(result)
