"""One writer per state file: the lease `dandelion serve` holds, and what it refuses.

Real `dandelion serve` processes on loopback (``--port 0``: the port is read from the line the
coordinator prints), real workers, real signals.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import websockets

from dandelion.storage.lease import Holder, LeaseError, LeaseHeldError, StateLease, lease_path

from .conftest import RawClient, scaled, toy_task_file
from .test_coordinator_live import assigned, report

TASK_FILE = toy_task_file({"goal": 2, "min_reports": 2, "over_selection": 1.0, "deadline_s": 120.0})


def dandelion(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dandelion", *args],
        capture_output=True,
        text=True,
        timeout=scaled(timeout),
    )


def one_line(result: subprocess.CompletedProcess[str]) -> str:
    """The single line a refused command prints on standard error (never a traceback)."""
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


class Serve:
    """``dandelion serve`` in its own process, its output in files."""

    def __init__(self, tmp: Path, db: Path, *flags: str) -> None:
        self.tmp = tmp
        self.db = db
        self.flags = flags
        self.proc: subprocess.Popen[bytes] | None = None
        self.started = 0

    def start(self) -> Serve:
        self.started += 1
        self.out = self.tmp / f"serve-{self.started}.out"
        self.err = self.tmp / f"serve-{self.started}.err"
        cmd = [sys.executable, "-m", "dandelion", "serve", "--db", str(self.db), "--port", "0"]
        cmd += ["--tick-s", "0.02", "--pace-min-s", "0.01", "--pace-max-s", "0.2", *self.flags]
        with self.out.open("wb") as out, self.err.open("wb") as err:
            self.proc = subprocess.Popen(cmd, stdout=out, stderr=err)
        return self

    async def ready(self) -> str:
        """The worker URL, once the coordinator says it listens."""
        assert self.proc is not None
        deadline = time.monotonic() + scaled(30)
        while time.monotonic() < deadline:
            found = re.search(r"coordinator on http://([^ ]+) ", self.out.read_text())
            if found:
                return f"ws://{found.group(1)}/ws"
            assert self.proc.poll() is None, self.err.read_text()
            await asyncio.sleep(0.05)
        raise AssertionError("coordinator did not start:\n" + self.err.read_text())

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def signal(self, sig: int) -> int:
        assert self.proc is not None
        self.proc.send_signal(sig)
        return self.proc.wait(timeout=scaled(60))

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def serving(tmp_path: Path) -> Iterator[Callable[..., Serve]]:
    """``serving(db, *flags)`` makes a Serve; every one still running is killed at the end."""
    made: list[Serve] = []

    def make(db: Path, *flags: str) -> Serve:
        server = Serve(tmp_path, db, *flags)
        made.append(server)
        return server

    yield make
    for server in made:
        server.close()


def _task_file(tmp: Path) -> Path:
    path = tmp / "task.toml"
    path.write_text(TASK_FILE)
    return path


def _versions(db: Path) -> list[int]:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        return [v for (v,) in conn.execute("SELECT version FROM model_versions ORDER BY version")]


async def _worker(url: str, name: str) -> RawClient:
    client = await RawClient.connect(url)
    assert (await client.hello(name))["type"] == "welcome"
    return client


async def _drain(client: RawClient) -> None:
    """Read past anything the coordinator sent, until the connection closes."""
    while True:
        await client.recv(timeout=10)


async def _report_all(*jobs: tuple[RawClient, dict[str, object]]) -> list[object]:
    """Every worker reports at once (acks wait for the round's first checkpoint, which needs
    its minimum of reports); the answers' types."""
    answers = await asyncio.gather(*(report(c, t, np.full(11, 0.1)) for c, t in jobs))
    return [answer["type"] for answer in answers]


async def test_a_second_serve_is_refused_and_the_first_carries_on(
    tmp_path: Path, serving: Callable[..., Serve]
) -> None:
    db, task = tmp_path / "state.db", _task_file(tmp_path)
    first = serving(db, "--task", str(task)).start()
    url = await first.ready()
    a = await _worker(url, "worker-aaaa")
    task_a = await assigned(a)  # the round is open, one of its two workers assigned

    second = dandelion("serve", "--db", str(db), "--port", "0", "--task", str(task))
    assert second.returncode == 1
    line = one_line(second)
    assert line == (
        f"dandelion serve: state file {db} is held by pid {first.pid} on host "
        f"{socket.gethostname()} since {line.split(' since ')[1].split(';')[0]}; "
        "stop that coordinator first"
    )
    assert re.search(r"since \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ;", line)

    # The first coordinator never noticed: the open round takes a second worker and commits.
    b = await _worker(url, "worker-bbbb")
    task_b = await assigned(b)
    assert task_b["round"] == task_a["round"]
    assert await _report_all((a, task_a), (b, task_b)) == ["ack", "ack"]
    for _ in range(200):
        if _versions(db) == [0, 1]:
            break
        await asyncio.sleep(0.05)
    assert _versions(db) == [0, 1]
    assert first.proc.poll() is None
    await a.close()
    await b.close()


async def test_restore_is_refused_while_serving_and_light_commands_still_work(
    tmp_path: Path, serving: Callable[..., Serve]
) -> None:
    db, task = tmp_path / "state.db", _task_file(tmp_path)
    server = serving(db, "--task", str(task)).start()
    await server.ready()
    copy = tmp_path / "backup.db"
    assert dandelion("backup", str(copy), "--db", str(db)).returncode == 0
    # Reads and small writes go through SQLite's own locking beside the coordinator.
    made = dandelion("token", "create", "after-backup", "--db", str(db))
    assert made.returncode == 0, made.stderr
    listed = dandelion("task", "list", "--json", "--db", str(db))
    assert [t["name"] for t in json.loads(listed.stdout)] == ["t1"]
    assert dandelion("task", "show", "t1", "--db", str(db)).returncode == 0

    refused = dandelion("restore", str(copy), "--db", str(db))
    assert refused.returncode == 1
    line = one_line(refused)
    assert line.startswith(f"dandelion restore: state file {db} is held by pid {server.pid}")
    assert line.endswith("stop that coordinator first")
    demo = dandelion("demo", "--db", str(db), "--workers", "2", "--rounds", "1")
    assert demo.returncode == 1 and "is held by pid" in one_line(demo)
    tokens = json.loads(dandelion("token", "list", "--json", "--db", str(db)).stdout)
    assert [t["name"] for t in tokens] == ["after-backup"]  # nothing was rolled back

    # Stopped, the coordinator lets go: the restore goes through and rolls the token back.
    assert server.signal(signal.SIGTERM) == 0
    restored = dandelion("restore", str(copy), "--db", str(db))
    assert restored.returncode == 0, restored.stderr
    assert json.loads(dandelion("token", "list", "--json", "--db", str(db)).stdout) == []


async def test_a_command_that_would_migrate_is_refused_while_serving(
    tmp_path: Path, serving: Callable[..., Serve]
) -> None:
    db, task = tmp_path / "state.db", _task_file(tmp_path)
    server = serving(db, "--task", str(task)).start()
    await server.ready()
    # As if this CLI were a newer version: its last migration is not yet in the file.
    with sqlite3.connect(db) as conn:
        row = conn.execute("SELECT * FROM _sqlite_migrations ORDER BY id DESC LIMIT 1").fetchone()
        conn.execute("DELETE FROM _sqlite_migrations WHERE id = ?", (row[0],))
    name = row[2]
    for args in (("task", "list"), ("token", "create", "ops"), ("task", "show", "t1")):
        result = dandelion(*args, "--db", str(db))
        assert result.returncode == 1, result
        line = one_line(result)
        assert f"state file {db} needs schema migrations ({name}) and is held by pid" in line
        assert line.startswith(f"dandelion {args[0]} {args[1]}: ")
    assert dandelion("backup", str(tmp_path / "b.db"), "--db", str(db)).returncode == 0
    with sqlite3.connect(db) as conn:  # the same version again: nothing to migrate
        conn.execute("INSERT INTO _sqlite_migrations VALUES (?, ?, ?, ?)", row)
    assert dandelion("task", "list", "--db", str(db)).returncode == 0
    assert server.proc.poll() is None


async def test_the_lease_ends_with_the_process_on_sigterm_sigint_and_sigkill(
    tmp_path: Path, serving: Callable[..., Serve]
) -> None:
    db, task = tmp_path / "state.db", _task_file(tmp_path)
    server = serving(db, "--task", str(task)).start()
    url = await server.ready()
    workers = [await _worker(url, f"worker-term-{i}") for i in range(2)]
    jobs = [(w, await assigned(w)) for w in workers]
    assert await _report_all(*jobs) == ["ack", "ack"]
    holder = Holder.from_json(lease_path(db).read_text())
    assert holder is not None and holder.pid == server.pid and holder.command == "serve"
    idle = await _worker(url, "worker-idle")  # connected, between rounds

    # SIGTERM: workers are told the coordinator is going away (1001), the process exits 0, and
    # what was acknowledged is in the file (the store was drained, as run_app did).
    assert server.signal(signal.SIGTERM) == 0
    for client in [*workers, idle]:
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await _drain(client)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1001
    assert _versions(db) == [0, 1]
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        reported = conn.execute("SELECT count(*) FROM events WHERE event = 'reported'")
        assert reported.fetchone()[0] == 2
    assert lease_path(db).read_text() == ""  # a clean stop clears its name

    server.start()
    await server.ready()
    assert server.signal(signal.SIGINT) == 0
    server.start()
    await server.ready()
    killed = server.pid
    assert server.signal(signal.SIGKILL) == -signal.SIGKILL
    # A killed holder leaves its name in the sidecar, but not the lock: the next one starts.
    stale = Holder.from_json(lease_path(db).read_text())
    assert stale is not None and stale.pid == killed
    server.start()
    await server.ready()
    holder = Holder.from_json(lease_path(db).read_text())
    assert holder is not None and holder.pid == server.pid != killed


def test_the_lease_is_exclusive_and_names_its_holder(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    serve = StateLease(db)
    me = serve.acquire()
    assert me.pid == os.getpid() and serve.held
    # flock locks belong to an open file: a second lease in this very process is refused too.
    restore = StateLease(db, command="restore")
    with pytest.raises(LeaseHeldError) as held:
        restore.acquire()
    assert held.value.holder == me
    assert str(held.value) == (
        f"state file {db} is held by {me.describe()}; stop that coordinator first"
    )
    assert not restore.held
    serve.release()
    serve.release()  # idempotent
    with restore, pytest.raises(LeaseHeldError) as again:
        StateLease(db).acquire()
    assert str(again.value).endswith("wait for that `dandelion restore` to finish")
    assert not restore.held
    with pytest.raises(LeaseError, match="does not exist"):
        StateLease(tmp_path / "no" / "such" / "state.db").acquire()
    assert Holder(1, "h", 1796285700.0).describe() == "pid 1 on host h since 2026-12-03T08:15:00Z"
