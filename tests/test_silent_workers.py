"""Over-selection with silent workers: a round does not wait for its deadline.

Forty workers on real WebSockets; goal 10, over-selection 1.3 (13 assignments at a time). In
the second run 30 % of the assignments go to workers that take the task and then say nothing
more — their connections stay open and answer pings, so only the round's report timeout can
tell. Their slots are released and given to workers that were turned away from the full round
(asked back soon), and the round completes by its goal: the median round is within 2x of the
run without silent workers, and no round reaches its deadline.
"""

from __future__ import annotations

import asyncio
import random
import statistics

import numpy as np
import websockets

from .conftest import LiveFactory, RawClient, small_task
from .test_coordinator_live import report

WORKERS = 40
ROUNDS = 6
DEADLINE_S = 20.0


async def _worker(
    url: str, name: str, silent: float, rng: random.Random, stop: asyncio.Event
) -> None:
    try:
        client = await RawClient.connect(url)
        assert (await client.hello(name))["type"] == "welcome"
        while not stop.is_set():
            msg, _ = await client.checkin()
            if msg["type"] != "task":
                await asyncio.sleep(
                    rng.uniform(msg["retry_window"]["min_s"], msg["retry_window"]["max_s"])
                )
                continue
            if rng.random() < silent:
                # Takes the task, then says nothing more until the run ends (pings answered).
                await stop.wait()
                break
            await asyncio.sleep(rng.uniform(0.2, 0.4))  # training
            reply = await report(client, msg, np.zeros(11), num_examples=1)
            window = reply.get("retry_window") or {"min_s": 0.01, "max_s": 0.05}
            await asyncio.sleep(min(0.2, rng.uniform(window["min_s"], window["max_s"])))
        await client.close()
    except (websockets.ConnectionClosed, OSError, TimeoutError):
        return


async def _run(live: LiveFactory, silent: float, seed: int) -> list[float]:
    server = await live(monitor_k=2, pace_min_s=0.05, pace_max_s=1.0)
    task = small_task(goal=10, over_selection=1.3, min_reports=5, deadline_s=DEADLINE_S)
    await server.coordinator.add_task(task)
    stop = asyncio.Event()
    rng = random.Random(seed)
    workers = [
        asyncio.create_task(
            _worker(server.url, f"worker-{seed}-{i:03d}", silent, random.Random(rng.random()), stop)
        )
        for i in range(WORKERS)
    ]
    try:
        await server.wait_rounds(ROUNDS, timeout=ROUNDS * DEADLINE_S)
    finally:
        stop.set()
        await asyncio.wait(workers, timeout=10)
    done = [o for o in server.outcomes if o.status == "completed"][:ROUNDS]
    return [o.closed_at - o.opened_at for o in done]


async def test_silent_workers_do_not_make_rounds_wait_for_their_deadline(
    live: LiveFactory,
) -> None:
    quiet = await _run(live, 0.0, 1)
    silent = await _run(live, 0.3, 2)
    ratio = statistics.median(silent) / statistics.median(quiet)
    print(f"median round: {statistics.median(quiet):.2f} s, with 30 % silent")
    print(f"{statistics.median(silent):.2f} s (ratio {ratio:.2f}); longest {max(silent):.2f} s")
    assert max(silent) < DEADLINE_S / 2, silent  # no round waited for its deadline
    assert ratio <= 2.0, (ratio, quiet, silent)
