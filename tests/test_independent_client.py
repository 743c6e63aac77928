"""A real coordinator process against the independent client (tests/independent_client), which
was written from schemas/README.md alone. The coordinator's SQLite file is read, read-only, only
to check that the round completed."""

from __future__ import annotations

import asyncio
import math
import sqlite3
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from tests.conftest import free_port
from tests.independent_client.client import (
    Client,
    Message,
    encode_frame,
    new_worker_id,
    pack_values,
    run_once,
    train,
)

ROOT = Path(__file__).resolve().parent.parent
TASK = "indep"


@dataclass
class Coordinator:
    url: str
    db: Path


def _healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as r:
            return bool(r.status == 200)
    except OSError:
        return False


@pytest.fixture
def coordinator(tmp_path: Path) -> Iterator[Coordinator]:
    (tmp_path / "task.toml").write_text(
        f'name = "{TASK}"\nobjective = "revisit_7d"\n\n[features]\nnum_buckets = 16\n\n'
        '[model]\nkind = "logreg"\n\n[hyper]\nlearning_rate = 0.5\nclip_norm = 1.0\n\n'
        "[rounds]\ngoal = 1\nmin_reports = 1\ndeadline_s = 60\n"
    )
    port, db = free_port(), tmp_path / "state.db"
    cmd = [sys.executable, "-m", "dandelion", "serve", "--port", str(port), "--db", str(db)]
    cmd += ["--task", str(tmp_path / "task.toml"), "--pace-min-s", "0.5", "--pace-max-s", "2"]
    with (tmp_path / "serve.log").open("wb") as log:
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 10
        while not _healthy(port):
            assert proc.poll() is None, (tmp_path / "serve.log").read_text()
            assert time.monotonic() < deadline, "coordinator did not answer /healthz"
            time.sleep(0.1)
        yield Coordinator(f"ws://127.0.0.1:{port}/ws", db)
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _round_row(db: Path, rnd: int) -> tuple[str, int] | None:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as con:
        row = con.execute(
            "SELECT status, reported FROM rounds WHERE task = ? AND round = ?", (TASK, rnd)
        ).fetchone()
    return None if row is None else (str(row[0]), int(row[1]))


def _has_version(db: Path, version: int) -> bool:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as con:
        row = con.execute(
            "SELECT 1 FROM model_versions WHERE task = ? AND version = ?", (TASK, version)
        ).fetchone()
    return row is not None


async def _wait_completed(db: Path, rnd: int, timeout: float = 5.0) -> tuple[str, int] | None:
    stop = time.monotonic() + timeout
    row = _round_row(db, rnd)
    while (row is None or row[0] != "completed") and time.monotonic() < stop:
        await asyncio.sleep(0.1)
        row = _round_row(db, rnd)
    return row


async def test_update_is_acknowledged_and_round_completes(coordinator: Coordinator) -> None:
    out = await run_once(coordinator.url)
    assert out.welcome["v"] == 1
    assert out.task["task"] == TASK and out.task["round"] == 1
    assert len(out.model) == out.task["model"]["param_count"] == 16 + 20 + 1
    # The task file gives only num_buckets: the task carries the pipeline's defaults too.
    assert out.task["features"] == {"num_buckets": 16, "horizon_days": 7.0}
    assert all(math.isfinite(x) for x in out.model)
    assert out.answer == {
        **out.answer,
        "type": "ack",
        "v": 1,
        "task": TASK,
        "round": 1,
        "nonce": out.task["nonce"],
    }
    row = await _wait_completed(coordinator.db, 1)
    assert row is not None and row[0] == "completed" and row[1] == 1, row
    assert _has_version(coordinator.db, 1)


async def _closed_code(client: Client, timeout: float = 5.0) -> int | None:
    """Read until the coordinator closes; the close code it sent."""
    try:
        while True:
            await client.recv(timeout)
    except ConnectionClosed as exc:
        return None if exc.rcvd is None else exc.rcvd.code


def _is_bad_frame(msg: Message) -> bool:
    # README, step 5: a broken frame is answered with a non-fatal error bad_frame, no ref_type.
    return (msg["type"], msg.get("code"), msg.get("fatal"), "ref_type" in msg) == (
        "error",
        "bad_frame",
        False,
        False,
    )


async def test_malformed_messages_get_documented_answers(coordinator: Coordinator) -> None:
    url = coordinator.url
    # hello refusals: reject, then close 1008.
    for consent, versions, reason in [("opted_out", [1], "not_opted_in"), ("opted_in", [99], None)]:
        c = await Client.open(url)
        refusal = await c.hello(consent=consent, versions=versions)
        assert refusal["type"] == "reject", refusal
        if reason is None:
            assert refusal["reason"] == "unsupported_version" and 1 in refusal["versions"]
        else:
            assert refusal["reason"] == reason
        assert await _closed_code(c) == 1008
    # permessage-deflate offered: the coordinator does not take it, the session works.
    async with connect(url, compression="deflate") as ws:
        assert ws.response is not None
        assert "deflate" not in (ws.response.headers.get("Sec-WebSocket-Extensions") or "")
        assert (await Client(ws, new_worker_id()).hello())["type"] == "welcome"

    a, b = await Client.open(url), await Client.open(url)
    for c in (a, b):
        assert (await c.hello())["type"] == "welcome"
    task_a, model = await a.checkin()
    task_b, _ = await b.checkin()
    assert task_a["round"] == task_b["round"] == 1 and task_a["nonce"] != task_b["nonce"]
    good = train(task_a, model)
    msg, frame = a.update_message(task_a, good), a.update_frame(task_a, good.delta)
    n = task_a["model"]["param_count"]
    errors = 0  # error messages a has received: the tenth is fatal

    async def answer(*out: Message | str | bytes) -> Message:
        nonlocal errors
        for m in out:
            await (a.send(m) if isinstance(m, dict) else a.ws.send(m))
        got = await a.recv_control()
        errors += got["type"] == "error"
        return got

    err = await answer("{not json")
    assert (err["type"], err["code"], err["fatal"]) == ("error", "malformed", False)
    err = await answer(frame)  # a frame with no update before it
    assert (err["type"], err["code"], err["fatal"]) == ("error", "unexpected_message", False)
    err = await answer({**msg, "num_examples": 0})
    assert (err["type"], err["code"], err.get("ref_type")) == ("error", "malformed", "update")
    assert "num_examples" in err["detail"]
    err = await answer(msg, {"type": "checkin", "v": 1})  # a message between update and frame
    assert (err["type"], err["code"], err.get("ref_type")) == (
        "error",
        "unexpected_message",
        "checkin",
    )

    header = {"v": 1, "type": "update", "task": TASK, "round": 1, "nonce": task_a["nonce"]}
    header |= {"dtype": "float32", "shape": [n]}
    values = pack_values(good.delta, "float32")
    for broken in (
        encode_frame(header, values, header_len=4000),  # header lies about its length
        frame[:-3],  # truncated values
        encode_frame({**header, "scale": 2}, values),  # unknown header field
        encode_frame({**header, "nonce": "X" * 16}, values),  # header disagrees with update
    ):
        got = await answer(msg, broken)
        assert _is_bad_frame(got), got

    def reject(got: Message, reason: str, rnd: int = 1) -> bool:
        echo = (got.get("task"), got.get("round"), got.get("nonce"))
        return (got["type"], got.get("reason"), echo) == (
            "reject",
            reason,
            (TASK, rnd, task_a["nonce"]),
        )

    got = await answer({**msg, "round": 8}, encode_frame({**header, "round": 8}, values))
    assert reject(got, "not_assigned", 8), got
    for shape, vals, reason in [
        ([n - 1], good.delta[1:], "wrong_shape"),
        ([n], [math.nan, *good.delta[1:]], "non_finite"),
    ]:
        got = await answer(
            msg, encode_frame({**header, "shape": shape}, pack_values(vals, "float32"))
        )
        assert reject(got, reason), got

    # b reports; goal = 1 closes round 1; a's update, well-formed, is now late.
    assert (await b.send_update(task_b, train(task_b, model)))["type"] == "ack"
    row = await _wait_completed(coordinator.db, 1)
    assert row is not None and row[0] == "completed", row
    assert reject(got := await answer(msg, frame), "stale_round"), got
    assert reject(got := await answer(msg, frame), "stale_round"), got  # a reject keeps it open

    # Errors on one connection: non-fatal up to the ninth, the tenth fatal, then close 1008.
    assert 0 < errors < 10
    while errors < 10:
        err = await answer("nope")
        assert (err["type"], err["fatal"]) == ("error", errors == 10), (errors, err)
    assert await _closed_code(a) == 1008

    # NaN is not JSON; after the welcome every message carries the connection's v.
    c = await Client.open(url)
    assert (await c.hello())["type"] == "welcome"
    nan_update = (
        f'{{"type":"update","v":1,"task":"{TASK}","round":1,"nonce":"{"N" * 16}",'
        '"num_examples":1,"metrics":{"loss":NaN},"unclipped":true}'
    )
    for text, code in [
        (nan_update, "malformed"),
        ('{"type":"checkin","v":2}', "unsupported_version"),
    ]:
        await c.ws.send(text)
        err = await c.recv_control()
        assert (err["type"], err["code"], err["fatal"]) == ("error", code, False), err
    assert "version 1" in err["detail"]
    await c.close()

    # Same worker id again: the newest connection is kept, the old one closed with 1008.
    c1 = await Client.open(url, wid := new_worker_id())
    assert (await c1.hello())["type"] == "welcome"
    c2 = await Client.open(url, wid)
    assert (await c2.hello())["type"] == "welcome"
    assert await _closed_code(c1) == 1008
    await c2.send({"type": "opt_out", "v": 1, "reason": "test"})
    assert await _closed_code(c2) == 1000
    await b.close()
