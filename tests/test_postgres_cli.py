"""``--db postgresql://…`` through the command line, as an operator types it: every command that
takes ``--db`` works on a database of the real server the tests start; a URL that cannot be
read exits 2, a server that cannot be reached exits 1, each in one line that names the server
but never its password."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import secrets
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest
from safetensors.numpy import load_file

from dandelion.cli import main
from dandelion.storage.location import open_state

from .conftest import RawClient, free_port, scaled, toy_task_file, wait_for_port
from .pg_server import PostgresServer

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = str(ROOT / "examples" / "revisit-7d.toml")


def run(*args: str) -> tuple[int, str, str]:
    """``dandelion ARGS`` in this process: (status, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            status = main(list(args))
        except SystemExit as exc:  # argparse's own refusals
            status = int(exc.code or 0)
    return status, out.getvalue(), err.getvalue()


def test_the_state_commands_work_on_a_database(postgres: PostgresServer, tmp_path: Path) -> None:
    url = postgres.database()
    status, out, err = run("task", "create", EXAMPLE, "--db", url)
    assert (status, err) == (0, "") and "created task revisit-7d" in out
    status, _, err = run("task", "create", EXAMPLE, "--db", url)
    assert status == 2 and "exists already" in err
    status, out, _ = run("task", "list", "--json", "--db", url)
    assert [(t["name"], t["status"], t["model_version"]) for t in json.loads(out)] == [
        ("revisit-7d", "active", 0)
    ]
    status, _, _ = run("task", "pause", "revisit-7d", "--reason", "maintenance", "--db", url)
    assert status == 0
    edited = tmp_path / "edited.toml"
    edited.write_text(Path(EXAMPLE).read_text().replace("goal = 100", "goal = 90"))
    assert "goal = 90" in edited.read_text()
    status, _, err = run(
        "task", "edit", "revisit-7d", str(edited), "--reason", "smaller", "--db", url
    )
    assert status == 0, err
    status, out, _ = run("task", "show", "revisit-7d", "--json", "--db", url)
    shown = json.loads(out)
    assert (shown["status"], shown["config"]["rounds"]["goal"]) == ("paused", 90)
    status, out, _ = run("task", "history", "revisit-7d", "--json", "--db", url)
    assert status == 0 and "smaller" in out and "maintenance" in out
    status, out, err = run("token", "create", "ops", "--json", "--db", url)
    assert status == 0, err
    assert json.loads(out)["name"] == "ops"
    model = tmp_path / "m.safetensors"
    status, _, err = run(
        "model", "export", "revisit-7d", "--format", "safetensors", "--out", str(model), "--db", url
    )
    assert status == 0, err
    assert sum(v.size for v in load_file(str(model)).values()) == 1045
    # What the commands wrote is in the database, as the store reads it.
    store = open_state(url, readonly=True)
    try:
        record = store.get_task("revisit-7d")
        assert record is not None and record.config_version == 2
    finally:
        store.close()
    # Backups of a database are PostgreSQL's own tools' work.
    status, out, err = run("backup", str(tmp_path / "b.db"), "--db", url)
    assert status == 2 and "pg_dump" in err and not (tmp_path / "b.db").exists()
    status, out, err = run("restore", str(tmp_path / "b.db"), "--db", url)
    assert status == 2 and "pg_restore" in err
    # The demo keeps a state of its own, in a SQLite file.
    status, out, err = run("demo", "--db", url)
    assert status == 2 and "SQLite file" in err


@pytest.mark.parametrize(
    ("db", "status", "says"),
    [
        ("postgresql://u:pw@127.0.0.1:notaport/x", 2, "not a TCP port number"),
        ("postgresql://u:pw@127.0.0.1:5432/x?colour=blue", 2, "invalid URI query parameter"),
        ("postgresql://u:pw@127.0.0.1:{free}/x", 1, "Connection refused"),
    ],
)
def test_a_bad_url_or_an_unreachable_server_is_one_line(db: str, status: int, says: str) -> None:
    db = db.format(free=free_port())
    for command in (["task", "list"], ["token", "list"], ["serve", "--port", "0"]):
        got, _out, err = run(*command, "--db", db)
        assert got == status, (command, err)
        assert says in err, err
        assert "pw" not in err and "***" in err
        assert err.count("\n") == 1 or err.startswith("usage:"), err  # no traceback


def test_a_missing_database_is_named(postgres: PostgresServer) -> None:
    status, _, err = run("task", "list", "--db", postgres.url("nosuch"))
    assert status == 1
    assert 'database "nosuch" does not exist' in err


async def _checkin(port: int) -> str:
    """What a new worker's check-in for ``t1`` is answered with (a task, or come_back: why)."""
    client = await RawClient.connect(f"ws://127.0.0.1:{port}/ws")
    try:
        assert (await client.hello(f"pg-cli-{secrets.token_hex(4)}"))["type"] == "welcome"
        await client.send({"type": "checkin", "v": 1, "tasks": ["t1"]})
        answer = await client.recv_json()
        return str(answer["type"] if answer["type"] != "come_back" else answer["reason"])
    finally:
        await client.ws.close()


async def _paused(port: int) -> bool:
    """Whether check-ins are answered "paused" within a few seconds (the coordinator reads
    changes made beside it about every two)."""
    deadline = time.monotonic() + scaled(15)
    while time.monotonic() < deadline:
        if await _checkin(port) == "paused":
            return True
        await asyncio.sleep(0.2)
    return False


def _serve(url: str, port: int, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "dandelion", "serve", "--db", url, "--port", str(port), *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def test_serve_refuses_what_is_not_its_database_and_a_second_coordinator(
    postgres: PostgresServer, tmp_path: Path
) -> None:
    empty = postgres.database()
    status, _, err = run("serve", "--db", empty, "--port", "0")
    assert status == 2 and "holds no Dandelion state; pass --create" in err
    foreign = postgres.database()
    with psycopg.connect(foreign, autocommit=True) as conn:
        conn.execute("CREATE TABLE invoices (id integer)")
    status, _, err = run("serve", "--db", foreign, "--port", "0", "--create")
    assert status == 2 and "another program's tables (invoices)" in err
    status, _, err = run("task", "list", "--db", foreign)
    assert status == 2 and "another program's tables" in err

    task = tmp_path / "task.toml"
    task.write_text(toy_task_file({"goal": 3, "min_reports": 2, "deadline_s": 60.0}))
    port = free_port()
    first = _serve(empty, port, "--task", str(task))
    try:
        wait_for_port(port, first)
        second = subprocess.run(
            [sys.executable, "-m", "dandelion", "serve", "--db", empty, "--port", "0"],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert second.returncode == 1
        assert f"the database {empty} is held by pid {first.pid}" in second.stderr
        # The operator's commands run beside the coordinator, as with a SQLite file, and the
        # coordinator acts on them: a paused task assigns no more work.
        assert asyncio.run(_checkin(port)) == "task"
        status, _out, err = run("task", "pause", "t1", "--reason", "r", "--db", empty)
        assert status == 0, err
        assert asyncio.run(_paused(port))
    finally:
        first.terminate()
        output, _ = first.communicate(timeout=60)
    assert first.returncode == 0, output
    assert f"created a new state in {empty}" in output


def test_emulate_in_websocket_mode_runs_its_coordinator_on_a_database(
    postgres: PostgresServer,
) -> None:
    url = postgres.database()
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "dandelion",
            "emulate",
            "--mode",
            "websocket",
            "--workers",
            "20",
            "--rounds",
            "3",
            "--cohort",
            "5",
            "--db",
            url,
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=scaled(300),
    )
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert (summary["rounds"], summary["reports"]) == (3, 15)
    # The rounds it reports are the ones the coordinator committed to the database.
    store = open_state(url, readonly=True)
    try:
        (task,) = store.list_tasks()
        completed = [r for r in store.list_rounds(task.name, 100) if r.status == "completed"]
        assert len(completed) >= 3
        assert [v.version for v in store.list_model_versions(task.name)][:4] == [0, 1, 2, 3]
    finally:
        store.close()
