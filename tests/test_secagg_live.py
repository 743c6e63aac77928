"""Secure rounds in the live coordinator: CPython workers over real WebSockets on loopback run
SecAgg+ with the coordinator of ``make_app``; dropouts are real (a worker closes its socket in
the phase), the committed model is the plaintext computation exactly, an abandoned round
reveals nothing, and under ``[privacy]`` ε is charged once per committed round."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import numpy as np
import pytest

from browser_worker.host import MemoryHost
from browser_worker.worker import Worker, WorkerConfig
from dandelion.app import ENDPOINT
from dandelion.coordinator.secure_round import SecureRound
from dandelion.transport import MemoryTransport

from .conftest import Live, LiveFactory, RawClient, toy_task_file
from .secagg_live import (
    IN_THE_SUM_AFTER,
    LEAVE_AT,
    Fleet,
    expected_step,
    local_data,
    secure_config,
)
from .test_kill_restart import Server, _snapshot


async def _model(server: Live, task: str, version: int) -> np.ndarray:
    stored = await server.store.read(lambda s: s.get_model_version(task, version))
    assert stored is not None
    return np.frombuffer(stored.params, dtype="<f4").copy()


async def test_a_secure_round_with_dropouts_in_every_phase_commits_the_exact_sum(
    live: LiveFactory,
) -> None:
    server: Live = await live()
    n = 20
    config = secure_config(n, min_reports=10)
    await server.coordinator.add_task(config)
    fleet = Fleet(server.url)
    leaving = {f"worker-leave-{phase}": phase for phase in LEAVE_AT}
    workers = [fleet.add(f"worker-{i:02d}", seed=i) for i in range(n - len(leaving))] + [
        fleet.add(w, seed=100 + j, leave_at=LEAVE_AT[p]) for j, (w, p) in enumerate(leaving.items())
    ]
    await fleet.run(workers)
    await server.wait_rounds(1)
    outcome = server.outcomes[0]
    assert outcome.status == "completed"
    assert outcome.assigned == n
    in_sum = [w for w in fleet.workers if leaving.get(w) in (None, *IN_THE_SUM_AFTER)]
    assert outcome.reported == len(in_sum) == n - 3
    # The model is the plaintext computation of the survivors' own clipped updates, exactly.
    plan = config.secure_aggregation
    assert plan is not None
    params = plan.params(n, config.model.param_count, config.clip_norm)
    before = await _model(server, "sec", 0)
    expected = expected_step(
        [fleet.updates[(w, 1)] for w in in_sum], config.clip_norm, params.scale_bits, before
    )
    after = await _model(server, "sec", 1)
    np.testing.assert_array_equal(after, expected)
    plain_mean = np.mean([fleet.updates[(w, 1)] for w in in_sum], axis=0)
    assert np.abs(after - before - plain_mean).max() <= 2.0 ** -(params.scale_bits + 1) * 2
    assert not np.array_equal(after, before)
    # Acks went to those in the sum that stayed; the ones that left got none.
    for w, worker in fleet.workers.items():
        assert worker.status.updates_accepted == (1 if w not in leaving else 0), w
    # The survivors' "reported" events committed with the round; nobody else's.
    events = await server.store.read(lambda s: s.round_participants("sec", 1))
    assert events[1] == set(in_sum)


async def test_an_abandoned_secure_round_reveals_nothing_and_is_retried(
    live: LiveFactory,
) -> None:
    server: Live = await live()
    n = 8
    # k = 6, t = 4 at n = 8: with 5 of 8 gone before their masked vectors the round cannot
    # finish (below min_survivors): it is abandoned before anyone is asked for a share.
    config = secure_config(n, min_reports=2, table={"min_survivors": 4})
    await server.coordinator.add_task(config)
    fleet = Fleet(server.url)
    workers = [fleet.add(f"worker-{i:02d}", seed=i) for i in range(3)] + [
        fleet.add(f"worker-gone-{i}", seed=10 + i, leave_at="secagg_relay") for i in range(5)
    ]
    runs = [asyncio.create_task(w.run(max_updates=1)) for w in workers]
    try:
        await server.wait_rounds(1, status="abandoned")
        runtime = server.coordinator.tasks["sec"]
        for _ in range(500):  # the round is retried: the next one opens
            if isinstance(runtime.round, SecureRound) and runtime.round.number == 2:
                break
            await asyncio.sleep(0.01)
        assert isinstance(runtime.round, SecureRound)
        assert runtime.round.number == 2
    finally:
        await fleet.stop(workers, runs)
    first = server.outcomes[0]
    assert (first.round, first.status, first.assigned, first.reported) == (1, "abandoned", 8, 0)
    # Three masked vectors arrived; nobody was asked for a share, nobody revealed one.
    seen = server.app[ENDPOINT].counters.outcomes
    assert seen["secagg_masked"] == 3
    assert seen["secagg_reveal"] == 0
    assert all(w.status.updates_accepted == 0 for w in fleet.workers.values())
    assert runtime.model_version == 0  # nothing committed


async def test_with_privacy_epsilon_is_charged_once_per_secure_round(live: LiveFactory) -> None:
    server: Live = await live()
    n = 10
    # Poisson participation with q = goal / population = 1: every worker's coin says yes, and
    # the cohort closes at the round's deadline.
    privacy = {"population": n, "noise_multiplier": 1.0, "epsilon": 50.0}
    config = secure_config(n, min_reports=5, deadline_s=1.0, privacy=privacy)
    await server.coordinator.add_task(config)
    fleet = Fleet(server.url)
    workers = [fleet.add(f"worker-{i:02d}", seed=i) for i in range(n)]
    await fleet.run(workers, updates=2, timeout=40)
    await server.wait_rounds(2)
    ledger = await server.store.read(lambda s: s.list_ledger("sec"))
    committed = [o for o in server.outcomes if o.status == "completed"]
    assert len(committed) >= 2
    assert [e.round for e in ledger] == [o.round for o in committed]
    assert all(e.epsilon > 0 for e in ledger)
    assert ledger[1].epsilon > ledger[0].epsilon
    # Noised once: the step is not the plain mean of the survivors' updates.
    before, after = await _model(server, "sec", 0), await _model(server, "sec", 1)
    plain = np.mean([fleet.updates[(w, 1)] for w in fleet.workers], axis=0)
    assert np.abs((after - before) - plain).max() > 1e-3


async def test_a_secure_round_under_way_when_the_coordinator_is_killed_is_interrupted(
    tmp_path: Path,
) -> None:
    """SIGKILL ``dandelion serve`` in the middle of a secure round: at restart that round is
    closed as interrupted (its masked sum and secrets were in memory only), nothing of it was
    acknowledged or committed, and the task goes on with the next round."""
    task = toy_task_file({"goal": 4, "min_reports": 2, "over_selection": 1.0, "deadline_s": 60})
    server = Server(tmp_path, task + "[secure_aggregation]\nadvertise_timeout_s = 60\n")
    await server.start()
    fleet = Fleet(server.url)
    workers = [fleet.add(f"worker-{i:02d}", seed=i) for i in range(3)]
    runs = [asyncio.create_task(w.run(max_updates=1)) for w in workers]
    silent = await RawClient.connect(server.url)
    try:
        assert (await silent.hello("worker-silent"))["type"] == "welcome"
        for _ in range(200):
            msg, _frame = await silent.checkin()
            if msg["type"] == "task":
                break
            await asyncio.sleep(0.05)
        assert msg.get("secure") is True, msg
        setup = await silent.recv_json(timeout=20)  # the cohort closed: the protocol started
        assert setup["type"] == "secagg_setup", setup
        server.kill()  # the others advertised; the round waits for this one's keys
    finally:
        await Fleet.stop(workers, runs)
        await silent.close()
    assert all(w.status.updates_accepted == 0 for w in workers)
    await server.start()
    try:
        for _ in range(200):
            snapshot = _snapshot(server.state)
            if snapshot["rounds"].get(1) != "open" and 2 in snapshot["rounds"]:
                break
            await asyncio.sleep(0.05)
        assert snapshot["rounds"][1] == "interrupted", snapshot
        assert snapshot["rounds"][2] == "open"
        assert snapshot["versions"] == [0]
        assert snapshot["reported"] == 0
    finally:
        server.kill(signal.SIGTERM)


async def test_a_participant_that_reconnects_mid_round_is_a_dropout(live: LiveFactory) -> None:
    """Its secrets were in the old connection's worker: the round goes on without it at once
    (not at the phase's deadline), and its new connection is pushed nothing of the round."""
    server: Live = await live()
    config = secure_config(4, min_reports=2, table={"advertise_timeout_s": 60})
    await server.coordinator.add_task(config)
    fleet = Fleet(server.url)
    workers = [fleet.add(f"worker-{i:02d}", seed=i) for i in range(3)]
    runs = [asyncio.create_task(w.run(max_updates=1)) for w in workers]
    old = await RawClient.connect(server.url)
    try:
        assert (await old.hello("worker-again"))["type"] == "welcome"
        for _ in range(200):
            msg, _frame = await old.checkin()
            if msg["type"] == "task":
                break
            await asyncio.sleep(0.02)
        assert (await old.recv_json(timeout=10))["type"] == "secagg_setup"
        new = await RawClient.connect(server.url)
        assert (await new.hello("worker-again"))["type"] == "welcome"  # the old one is closed
        await server.wait_rounds(1, timeout=20)  # long before the 60 s advertise deadline
        await Fleet.stop(workers, runs)  # round 2's cohort does not fill
        reply, _frame = await new.checkin()
        assert reply["type"] == "come_back" or reply["round"] == 2, reply
        with pytest.raises(TimeoutError):
            await new.recv(timeout=0.5)  # nothing of round 1: no secagg message, no ack
    finally:
        await Fleet.stop(workers, runs)
        await old.close()
    outcome = server.outcomes[0]
    assert (outcome.status, outcome.assigned, outcome.reported) == ("completed", 4, 3)
    assert all(w.status.updates_accepted == 1 for w in workers)


async def test_workers_clip_to_the_rounds_bound_the_server_sets(live: LiveFactory) -> None:
    """The coordinator cannot clip a masked update: the task message carries the round's C
    ([server] clip_norm here, below the hyper-parameters' 1.0) and each worker clips to it."""
    server: Live = await live()
    config = secure_config(5, min_reports=2, server={"clip_norm": 0.01})
    assert config.clip_norm == 0.01
    await server.coordinator.add_task(config)
    fleet = Fleet(server.url)
    await fleet.run([fleet.add(f"worker-{i:02d}", seed=i) for i in range(5)])
    await server.wait_rounds(1)
    norms = [float(np.linalg.norm(u)) for u in fleet.updates.values()]
    assert len(norms) == 5
    assert max(norms) <= 0.01 + 1e-9
    assert min(norms) > 0.009  # the bound binds: the unclipped updates are longer


async def test_a_participant_too_slow_for_a_phase_is_told_the_round_went_on_without_it(
    live: LiveFactory,
) -> None:
    """Connected but silent past the advertise deadline: it is dropped from the round, which
    completes without it, and it is told so (``reject`` ``stale_round``), not left waiting."""
    server: Live = await live()
    config = secure_config(4, min_reports=2, table={"advertise_timeout_s": 0.5})
    await server.coordinator.add_task(config)
    fleet = Fleet(server.url)
    workers = [fleet.add(f"worker-{i:02d}", seed=i) for i in range(3)]
    runs = [asyncio.create_task(w.run(max_updates=1)) for w in workers]
    slow = await RawClient.connect(server.url)
    try:
        assert (await slow.hello("worker-slow"))["type"] == "welcome"
        for _ in range(200):
            task, _frame = await slow.checkin()
            if task["type"] == "task":
                break
            await asyncio.sleep(0.02)
        assert (await slow.recv_json(timeout=10))["type"] == "secagg_setup"
        told = await slow.recv_json(timeout=10)  # it never advertised
        assert (told["type"], told["reason"]) == ("reject", "stale_round"), told
        assert told["nonce"] == task["nonce"]
        await server.wait_rounds(1)
    finally:
        await Fleet.stop(workers, runs)
        await slow.close()
    assert server.outcomes[0].reported == 3
    assert all(w.status.updates_accepted == 1 for w in workers)


async def test_a_host_without_secure_aggregation_crypto_leaves_the_round_at_once(
    live: LiveFactory,
) -> None:
    """The in-memory host has no crypto: its worker closes its connection when handed a
    secure task, and says why; its assignment is released at once (it left), and the others'
    round completes at the cohort's deadline. The in-memory transport and the WebSocket
    endpoint serve one coordinator side by side."""
    server: Live = await live()
    config = secure_config(4, min_reports=2, deadline_s=0.5)
    await server.coordinator.add_task(config)
    transport = MemoryTransport(server.coordinator, server.coordinator.settings, None)
    memory = Worker(
        MemoryHost(transport.serve),
        WorkerConfig("memory://", worker_id="worker-memory"),
        lambda *_: local_data(9),
    )
    fleet = Fleet(server.url)
    workers = [fleet.add(f"worker-{i:02d}", seed=i) for i in range(3)]
    runs = [asyncio.create_task(w.run(max_updates=1)) for w in [*workers, memory]]
    try:
        for _ in range(500):
            if memory.status.detail == "This host cannot run secure rounds.":
                break
            await asyncio.sleep(0.01)
        assert memory.status.detail == "This host cannot run secure rounds.", memory.status
        assert "no crypto for secure aggregation" in (memory.status.last_error or "")
        await server.wait_rounds(1, timeout=20)
    finally:
        await Fleet.stop([*workers, memory], runs)
    outcome = server.outcomes[0]
    assert (outcome.assigned, outcome.reported, outcome.dropped_by["left"]) == (4, 3, 1)
    assert all(w.status.updates_accepted == 1 for w in workers)


async def test_survivors_of_a_sum_below_the_rounds_minimum_are_told_it_was_not_used(
    live: LiveFactory,
) -> None:
    """The protocol sums the 8 who stayed, but the round's minimum is 9: the round is
    abandoned at its commit, and each survivor gets ``reject`` ``stale_round`` rather than
    waiting for an ack that never comes."""
    server: Live = await live()
    n = 10  # k = 8, t = 5: two dropouts leave every participant at least 6 live neighbours
    config = secure_config(n, min_reports=9)
    await server.coordinator.add_task(config)
    fleet = Fleet(server.url)
    workers = [fleet.add(f"worker-{i:02d}", seed=i) for i in range(n - 2)] + [
        fleet.add(f"worker-gone-{i}", seed=10 + i, leave_at="secagg_relay") for i in range(2)
    ]
    runs = [asyncio.create_task(w.run(max_updates=1)) for w in workers]
    counters = server.app[ENDPOINT].counters
    try:
        await server.wait_rounds(1, status="abandoned")
        for _ in range(500):
            if counters.outcomes["update_rejected_stale_round"] >= n - 2:
                break
            await asyncio.sleep(0.01)
    finally:
        await fleet.stop(workers, runs)
    first = server.outcomes[0]
    assert (first.round, first.status, first.assigned) == (1, "abandoned", n)
    assert counters.outcomes["secagg_reveal"] == n - 2  # the protocol finished: a sum of 8
    assert counters.outcomes["update_rejected_stale_round"] == n - 2
    assert counters.outcomes["ack"] == 0
