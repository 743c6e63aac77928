"""A worker whose selection into a secure round is still being stored when the round's cohort
closes is not one of the cohort: it is sent ``come_back`` (``round_full``), never a ``task``
whose ``secagg_setup`` would not come, and its slot is free again."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from dandelion.coordinator.secure_round import SecureRound
from dandelion.storage import ParticipationEvent

from .conftest import Live, LiveFactory, RawClient
from .secagg_live import Fleet, secure_config


async def test_a_selection_stored_after_the_cohort_closed_is_sent_come_back(
    live: LiveFactory,
) -> None:
    server: Live = await live()
    config = secure_config(4, min_reports=2, deadline_s=1.0)
    await server.coordinator.add_task(config)
    store = server.coordinator.store
    record = store.record_events
    held, go = asyncio.Event(), asyncio.Event()

    async def slow_for_the_late_one(events: Sequence[ParticipationEvent]) -> None:
        if any(e.worker_id == "worker-late" and e.event == "selected" for e in events):
            held.set()
            await go.wait()  # the state file is slow for this one write
        await record(events)

    store.record_events = slow_for_the_late_one  # type: ignore[method-assign]
    late = await RawClient.connect(server.url)
    fleet = Fleet(server.url)
    workers = [fleet.add(f"worker-{i:02d}", seed=i) for i in range(3)]
    runs: list[asyncio.Task[None]] = []
    try:
        assert (await late.hello("worker-late"))["type"] == "welcome"
        answer = asyncio.create_task(late.checkin())
        await asyncio.wait_for(held.wait(), 10)  # selected; its selection is being stored
        runs = [asyncio.create_task(w.run(max_updates=1)) for w in workers]
        runtime = server.coordinator.tasks["sec"]
        rnd = runtime.round
        assert isinstance(rnd, SecureRound)
        for _ in range(1000):  # the cohort closes at its deadline without the late one
            if rnd.started:
                break
            await asyncio.sleep(0.01)
        assert rnd.started
        assert "worker-late" not in rnd.index_of
        go.set()
        reply, frame = await asyncio.wait_for(answer, 10)
        assert (reply["type"], reply.get("reason")) == ("come_back", "round_full"), reply
        assert frame is None
        mine = rnd.assignment_of("worker-late")
        assert mine is not None
        assert mine.state == "released"  # its slot is free again
        await server.wait_rounds(1, timeout=30)
    finally:
        go.set()
        await Fleet.stop(workers, runs)
        await late.close()
    outcome = server.outcomes[0]
    assert (outcome.status, outcome.reported) == ("completed", 3)  # the three of the cohort
    assert all(w.status.updates_accepted == 1 for w in workers)
