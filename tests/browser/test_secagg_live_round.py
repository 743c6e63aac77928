"""A secure round through the live coordinator, mixed: workers in Pyodide in real headless
Chromium (each a page embedding the worker bundle that ``dandelion serve`` serves; WebCrypto
and typed arrays) and CPython workers (``cryptography``, numpy), all over real WebSockets to
one ``dandelion serve`` process, with dropouts in every phase. The committed model is the
fixed-point sum of the survivors' own clipped updates, exactly."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import numpy as np

from dandelion.coordinator import load_task_file
from dandelion.taskspec.registry import objective
from dandelion.taskspec.signals import parse_signals

from ..conftest import scaled
from ..secagg_live import LEAVE_AT, Fleet, expected_step
from .harness import PageServer, embed_page, synthetic_signals, task_toml

BROWSERS = 6  # two of them leave: one in the share phase, one in the unmask phase
CPYTHON = 24  # four leave, one in each phase
N = BROWSERS + CPYTHON
BROWSER_LEAVES = {4: "share", 5: "unmask"}
CPYTHON_LEAVES = {20: "advertise", 21: "share", 22: "masked", 23: "unmask"}


#: The neighbourhood graph's degree. Six of the 30 leave, two of them after their masked
#: vector: at worst all six are among one participant's k neighbours, which leaves it k - 6
#: holders of its shares, and t = k/2 + 1 of them must reveal. At n = 30 the default k = 10
#: (t = 6) loses that draw for about one random graph in seven — the round is then rightly
#: abandoned (too_few_shares), which is not what this test is about; k = 14 (t = 8) never does.
DEGREE = 14


def _task() -> str:
    # Generous phase timeouts: a phase closes as soon as everyone still there answered, so they
    # only matter on a loaded machine (six Pyodide pages and 24 workers on two cores).
    phase = round(scaled(60))
    keys = ("advertise", "share", "masked", "unmask")
    table = "".join(f"{key}_timeout_s = {phase}\n" for key in keys) + f"degree = {DEGREE}\n"
    leavers = len(BROWSER_LEAVES) + len(CPYTHON_LEAVES)
    assert DEGREE - leavers >= DEGREE // 2 + 1  # no graph can leave anyone short of holders
    return task_toml(goal=N, min_reports=10, deadline_s=scaled(120)) + (
        "[secure_aggregation]\n" + table
    )


def _cpython_data(seed: int) -> Any:
    signals = parse_signals(synthetic_signals(seed=seed))

    def data(name: str, features: dict[str, Any], now: float) -> Any:
        task_objective = objective(name)
        return task_objective.examples(signals, task_objective.configure(features), now)

    return data


async def test_a_live_secure_round_of_chromium_and_cpython_workers_with_dropouts(
    coordinator: Any, browser: Any, tmp_path: Any
) -> None:
    text = _task()
    coord = await coordinator(text)
    pages: list[PageServer] = []
    contexts: list[Any] = []
    fleet = Fleet(coord.ws)
    workers = [
        fleet.add(
            f"cpython-{i:02d}",
            seed=i,
            leave_at=LEAVE_AT[CPYTHON_LEAVES[i]] if i in CPYTHON_LEAVES else None,
            data=_cpython_data(1000 + i),
        )
        for i in range(CPYTHON)
    ]
    runs = [asyncio.create_task(w.run(max_updates=1)) for w in workers]
    try:
        for b in range(BROWSERS):
            hooks: dict[str, Any] = {"logUpdates": True}
            if b in BROWSER_LEAVES:
                hooks["secaggLeaveAt"] = LEAVE_AT[BROWSER_LEAVES[b]]
            html = embed_page(coord.http + "/worker/", coord.ws, {"testHooks": hooks})
            server = PageServer(html, synthetic_signals(seed=b))
            await server.start()
            pages.append(server)
            context = await browser.new_context()  # its own storage: its own worker id
            contexts.append(context)
            page = await context.new_page()
            await page.goto(server.url)
        deadline = time.monotonic() + scaled(240)
        while time.monotonic() < deadline:
            rows = coord.sql("select status, reported, assigned from rounds where round = 1")
            if rows and rows[0][0] != "open":
                break
            await asyncio.sleep(0.25)
        else:
            raise AssertionError(f"round 1 did not end; coordinator log: {coord.log()}")
        if rows[0][0] != "completed":
            print(coord.log())  # shown with the failure
        assert rows[0][0] == "completed", rows
        # The acks are pushed once the commit is stored: wait for the pages to have them.
        for _ in range(100):
            statuses = [await c.pages[0].evaluate("window.__status") for c in contexts]
            if all(s["updates_accepted"] >= 1 for s in statuses[:4]):
                break
            await asyncio.sleep(0.1)
        in_browser_pages = [await c.pages[0].evaluate("window.__log") for c in contexts]
        booted = [await c.pages[0].evaluate("window.__booted") for c in contexts]
    finally:
        await Fleet.stop(workers, runs)
        for context in contexts:
            await context.close()
        for server in pages:
            await server.stop()

    assert all(b and b["python"].startswith("3.14") for b in booted), booted  # really Pyodide
    # The survivors' own clipped updates: the CPython workers recorded theirs; each page
    # logged its own (testHooks.logUpdates: it never left the page).
    browser_updates = []
    for b, log in enumerate(in_browser_pages):
        lines = [
            json.loads(x.split("update ", 1)[1]) for x in log if x.startswith("log info: update ")
        ]
        lines = [x for x in lines if x["round"] == 1]
        if b == 4:
            assert lines == []  # left before training
        else:
            assert len(lines) == 1, log
            browser_updates.append(lines[0]["values"])
    cpython_updates = [
        fleet.updates[(f"cpython-{i:02d}", 1)]
        for i in range(CPYTHON)
        if CPYTHON_LEAVES.get(i) in (None, "unmask")
    ]
    survivors = BROWSERS - 1 + CPYTHON - 3
    assert len(browser_updates) + len(cpython_updates) == survivors
    assert rows[0][1:] == (survivors, N)
    config = load_task_file_text(text, tmp_path)
    plan = config.secure_aggregation
    assert plan is not None
    bits = plan.params(N, config.model.param_count, config.clip_norm).scale_bits
    (before,), (after,) = (
        coord.sql("select params from model_versions where version = ?", v)[0] for v in (0, 1)
    )
    expected = expected_step(
        browser_updates + cpython_updates, config.clip_norm, bits, np.frombuffer(before, "<f4")
    )
    np.testing.assert_array_equal(np.frombuffer(after, "<f4"), expected)
    # The pages that stayed got the ack: their masked update is in the committed model.
    accepted = [s["updates_accepted"] for s in statuses]
    assert accepted == [1, 1, 1, 1, 0, 0], statuses


def load_task_file_text(text: str, tmp_path: Any) -> Any:
    path = tmp_path / "task-copy.toml"
    path.write_text(text)
    return load_task_file(path)
