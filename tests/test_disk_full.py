"""A real full disk: the state file of a real ``dandelion serve`` process sits on a small tmpfs,
which a filler file fills up while workers report.

While the disk is full nothing is acknowledged: updates (and check-ins) are answered with
``error`` ``internal`` "try again later", nothing is counted that was not stored, /healthz says
503 degraded and the failure is logged once. Once the filler is deleted the same assignments
are handed back, the round completes, reports are acknowledged again and /healthz says 200.
Afterwards the state file is compared with what the clients were told: every acknowledged
(round, worker) has its "reported" event, nothing else has one, and every committed model is
exactly the mean of the updates of the round's reported workers.
"""

from __future__ import annotations

import asyncio
import errno
import os
import subprocess
import time
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import pytest

from dandelion.storage import SQLiteStore

from .conftest import RawClient, scaled, toy_task_file
from .test_coordinator_live import update_frame, update_msg
from .test_kill_restart import Server

pytestmark = pytest.mark.slow

PARAMS = 1000  # logreg of 999 features: 4 kB model frames, checkpoints and model versions
GOAL = 4
# The deadline is long enough that the round open during the fault is still open afterwards
# (the test hands its assignments back); rounds here always close by their goal.
TASK_FILE = toy_task_file(
    {"goal": GOAL, "min_reports": 2, "over_selection": 1.5, "deadline_s": 15.0},
    num_features=PARAMS - 1,
)
WORKERS = 6  # ceil(goal 4 x over_selection 1.5): every worker holds a slot of the same round
TMPFS_SIZE = "2m"


def _update(i: int) -> np.ndarray:
    """Worker i's distinctive update: one non-zero value, at index i (norm below clip_norm)."""
    values = np.zeros(PARAMS, dtype=np.float32)
    values[i] = 0.01 * (i + 1)
    return values


def _mount_tmpfs(where: Path) -> None:
    where.mkdir()
    try:
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={TMPFS_SIZE}", "tmpfs", str(where)],
            capture_output=True,
            text=True,
            check=False,
        )
    except OSError as exc:
        pytest.fail(f"cannot run mount(8) to make a full disk: {exc}")
    if done.returncode != 0:
        pytest.fail(
            f"cannot mount a {TMPFS_SIZE} tmpfs at {where} (this test needs root, or "
            f"CAP_SYS_ADMIN, to make a real full disk): {done.stderr.strip() or done.returncode}"
        )


def _unmount(where: Path) -> None:
    subprocess.run(["umount", "-l", str(where)], check=False, capture_output=True)


def _fill(path: Path) -> int:
    """Write ``path`` until the file system is full (ENOSPC); slowly at first, so that the
    workers' writes race it. Returns the bytes written."""
    written = 0
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        for size in (64 * 1024, 4096, 1):  # whole chunks, then whatever is left
            chunk = b"\xa5" * size
            while True:
                try:
                    written += os.write(fd, chunk)
                except OSError as exc:
                    if exc.errno != errno.ENOSPC:
                        raise
                    break
                if size > 4096:
                    time.sleep(0.003)
    finally:
        os.close(fd)
    return written


async def _health(server: Server) -> tuple[int, dict[str, Any]]:
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"http://127.0.0.1:{server.port}/healthz") as resp,
    ):
        return resp.status, await resp.json()


async def _task(client: RawClient) -> dict[str, Any]:
    """Check in until a task comes (a new round opens at the next tick)."""
    answers = []
    for _ in range(300):
        msg, frame = await client.checkin()
        if msg["type"] == "task":
            assert frame is not None
            return msg
        answers.append(msg)
        await asyncio.sleep(0.02)
    raise AssertionError(f"no task; last answers {answers[-3:]}")


async def _report(
    client: RawClient, task: dict[str, Any], values: np.ndarray, timeout: float = 20.0
) -> dict[str, Any]:
    """Send an update (with its frame) and wait for its answer: an ack waits for the
    checkpoint or commit that holds it."""
    await client.send(update_msg(task))
    await client.send(update_frame(task, values))
    return await client.recv_json(timeout)


def _is_try_later(answer: dict[str, Any]) -> bool:
    return (
        answer.get("type") == "error"
        and answer.get("code") == "internal"
        and answer.get("fatal") is False
        and "try again later" in str(answer.get("detail"))
    )


class Tally:
    """What the workers were told: acks and "try again later" errors, by (round, worker)."""

    def __init__(self) -> None:
        self.acked: list[tuple[int, str]] = []
        self.errored: list[tuple[int, str]] = []

    def note(self, worker: str, task: dict[str, Any], answer: dict[str, Any]) -> str:
        if answer["type"] == "ack":
            assert (answer["round"], answer["nonce"]) == (task["round"], task["nonce"]), answer
            self.acked.append((task["round"], worker))
        elif _is_try_later(answer):
            self.errored.append((task["round"], worker))
        else:
            raise AssertionError(f"{worker}: neither an ack nor try-again-later: {answer}")
        return str(answer["type"])


async def test_a_full_disk_acknowledges_nothing_and_recovers(tmp_path: Path) -> None:
    mnt = tmp_path / "small-disk"
    _mount_tmpfs(mnt)
    server = Server(
        tmp_path, TASK_FILE, "--monitor-k", "2", "--max-messages-per-s", "1000"
    )  # its task file and its log stay off the small disk
    server.db = mnt / "state.db"
    filler = mnt / "filler"
    names = [f"disk-worker-{i}" for i in range(WORKERS)]
    updates = {name: _update(i) for i, name in enumerate(names)}
    tally = Tally()
    workers: list[RawClient] = []

    def alive() -> None:
        assert server.proc is not None
        assert server.proc.poll() is None, "the coordinator died:\n" + server.log.read_text()

    async def together(chosen: list[int], tasks: dict[int, dict[str, Any]]) -> list[str]:
        answers = await asyncio.gather(
            *(_report(workers[i], tasks[i], updates[names[i]]) for i in chosen)
        )
        return [tally.note(names[i], tasks[i], a) for i, a in zip(chosen, answers, strict=True)]

    try:
        await server.start()
        for name in names:
            client = await RawClient.connect(server.url)
            workers.append(client)
            assert (await client.hello(name))["type"] == "welcome"

        # Round 1, healthy: four reports together, four acks, model version 1.
        tasks = {i: await _task(workers[i]) for i in range(4)}
        assert {t["round"] for t in tasks.values()} == {1}
        assert await together([0, 1, 2, 3], tasks) == ["ack"] * 4
        assert (await _health(server))[0] == 200

        # Round 2: all six workers hold an assignment. Workers 0 and 1 report while the filler
        # fills the disk and workers 4 and 5 keep checking in (each check-in is a write): their
        # checkpoint lands before the disk is full, or fails — either way the two agree.
        tasks = {i: await _task(workers[i]) for i in range(WORKERS)}
        fault_round = tasks[0]["round"]
        assert {t["round"] for t in tasks.values()} == {fault_round} and fault_round == 2
        filling = asyncio.create_task(asyncio.to_thread(_fill, filler))

        async def chatter(i: int) -> None:
            while not filling.done():
                msg, _frame = await workers[i].checkin()
                assert msg["type"] == "task" or _is_try_later(msg), msg
                await asyncio.sleep(0.02)

        first, *_ = await asyncio.gather(together([0, 1], tasks), chatter(4), chatter(5))
        filled = await filling
        assert filled > 0 and os.statvfs(mnt).f_bavail == 0, (filled, os.statvfs(mnt))
        assert first in (["ack", "ack"], ["error", "error"]), first
        stored_before = 2 if first[0] == "ack" else 0
        alive()

        # The disk is full: every update, sent again or not, and every check-in is answered
        # "try again later", never acknowledged.
        assert await together([2, 3], tasks) == ["error", "error"]
        assert await together([4, 5], tasks) == ["error", "error"]
        assert await together([2, 3], tasks) == ["error", "error"]  # sent again, still full
        for i, client in enumerate(workers):
            msg, _frame = await client.checkin()
            assert _is_try_later(msg), (names[i], msg)
        status, body = await _health(server)
        assert (status, body["status"]) == (503, "degraded"), body
        assert "not writable" in body.get("storage", ""), body
        newcomer = await RawClient.connect(server.url)
        assert _is_try_later(await newcomer.hello("disk-newcomer")), "a hello cannot be stored"
        await newcomer.close()
        await asyncio.sleep(scaled(1.5))  # ticks fail quietly meanwhile
        status, body = await _health(server)
        assert (status, body["status"]) == (503, "degraded"), body
        alive()

        # Space again. The workers told to try again check in: the same assignment, the same
        # nonce, in the same round. Exactly enough of them send their update again to reach
        # the goal: the round completes (model version 2), and they are acknowledged.
        filler.unlink()
        errored = sorted({i for i in range(WORKERS) if (fault_round, names[i]) in tally.errored})
        assert errored == (list(range(2, 6)) if stored_before else list(range(6))), tally.errored
        for i in errored:
            again = await _task(workers[i])
            assert (again["round"], again["nonce"]) == (fault_round, tasks[i]["nonce"]), again
        resend = errored[: GOAL - stored_before]
        assert await together(resend, tasks) == ["ack"] * len(resend)
        left_out = [names[i] for i in errored if i not in resend]  # never sent again

        # Round 3, healthy again: four acks.
        tasks = {i: await _task(workers[i]) for i in range(4)}
        assert {t["round"] for t in tasks.values()} == {fault_round + 1}
        assert await together([0, 1, 2, 3], tasks) == ["ack"] * 4

        # /healthz says 200 once writes have succeeded for a couple of seconds.
        end = time.monotonic() + scaled(10)
        while (health := await _health(server))[0] != 200 and time.monotonic() < end:
            await workers[5].checkin()  # a write
            await asyncio.sleep(0.1)
        assert health[0] == 200 and health[1]["status"] == "ok", health
        alive()

        # The state file against what the workers were told.
        store = SQLiteStore(str(server.db), readonly=True)
        try:
            reported = [
                (e.round, e.worker_id)
                for e in store.iter_events("t1")
                if e.event == "reported" and e.worker_id in updates
            ]
            rounds = {r.round: r for r in store.list_rounds("t1")}
            versions = {
                v.version: store.get_model_version("t1", v.version)
                for v in store.list_model_versions("t1")
            }
        finally:
            store.close()
        assert len(reported) == len(set(reported)), reported  # nothing counted twice
        assert sorted(reported) == sorted(tally.acked), (reported, tally.acked)
        for worker in left_out:  # told "try again later", never sent again: not counted
            assert (fault_round, worker) not in reported
        assert sorted(versions) == [0, 1, 2, 3], sorted(versions)
        for number in (1, 2, 3):
            version = versions[number]
            previous = versions[number - 1]
            assert version is not None and previous is not None
            record = rounds[version.round]
            reporters = sorted(w for r, w in reported if r == version.round)
            assert record.status == "completed" and record.reported == len(reporters) == GOAL
            # FedAvg, server_lr 1, equal weights: the new model is the old one plus the mean
            # update of exactly the round's reported workers.
            delta = np.frombuffer(version.params, "<f4") - np.frombuffer(previous.params, "<f4")
            mean = np.mean([updates[w] for w in reporters], axis=0)
            np.testing.assert_allclose(delta, mean, atol=1e-6, err_msg=f"round {version.round}")

        log = server.log.read_text()
        assert log.count("cannot be written") == 1, log
        assert "writable again" in log, log
        alive()
    finally:
        for client in workers:
            await client.close()
        if server.proc is not None and server.proc.poll() is None:
            server.proc.terminate()
            try:
                server.proc.wait(timeout=scaled(10))
            except subprocess.TimeoutExpired:
                server.proc.kill()
                server.proc.wait()
        _unmount(mnt)
