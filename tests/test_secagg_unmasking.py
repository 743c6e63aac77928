"""The unmasking off the event loop: the coordinator rebuilds the dropped participants' masks
and the survivors' self masks on a thread of its own, so every other connection is answered
meanwhile; while it runs, the round's server changes nothing (a late answer is refused as after
any phase's close, a tick or a dropout does nothing) and the sum comes out exact."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable

import numpy as np
import pytest

from dandelion.crypto import CryptographyHost, NumpyMod32
from dandelion.protocol.secagg import CryptoHost, Mod32Ops, SecAggViolation
from dandelion.protocol.secagg.messages import Unmask
from dandelion.protocol.secagg.server import Phase

from .conftest import Live, LiveFactory, RawClient
from .secagg_harness import Round, wire
from .secagg_live import Fleet, expected_step, local_data, secure_config
from .test_secagg_round import _assert_exact


async def test_while_unmasking_the_server_refuses_a_late_reveal_and_ignores_ticks() -> None:
    release = asyncio.Event()
    entered: list[str] = []

    async def held(work: Callable[[], Awaitable[bytearray]]) -> bytearray:
        entered.append("unmasking")
        await release.wait()  # the caller's side runs meanwhile, as on the coordinator's loop
        return await work()

    r = Round(12, d=64)
    r.server._offload = held
    for _ in range(3):  # setup, keys, relay and the masked vectors
        await r.phase()
    assert r.server.phase is Phase.UNMASK
    late = 5  # silent in the unmasking: the phase closes at its deadline
    closing = asyncio.create_task(r.phase(drop={late}))
    while not entered:
        await asyncio.sleep(0)
    assert r.server.unmasking and r.server.phase is Phase.UNMASK
    asked = next(m for i, m in r.received if i == late and isinstance(m, Unmask))
    (reveal,) = await r.clients[late].receive(wire(asked))
    with pytest.raises(SecAggViolation, match="being unmasked"):
        await r.server.receive(late, wire(reveal), r.now)
    await r.server.tick(r.now + 1e6)  # no second close of the phase
    await r.server.drop(3, r.now + 1e6)  # gone now: too late to change anything
    assert r.server.expected() == set()
    assert len(r.server.live) == 5  # U0 … U4: the phase closed once
    release.set()
    await closing
    assert not r.server.unmasking
    r.gone.discard(late)
    _assert_exact(r)  # its masked vector is in the sum; its late reveal is not needed


class _GatedHost(CryptographyHost):
    """The coordinator's crypto host, whose first AES-CTR keystream (the coordinator expands
    masks only in the unmasking) waits until the test lets it go."""

    def __init__(self, events: list[str]) -> None:
        self.events = events
        self.entered = threading.Event()
        self.go = threading.Event()

    async def aes_ctr_keystream(self, key: bytes, length: int) -> bytes:
        if not self.entered.is_set():
            self.events.append("unmasking")
            self.entered.set()
            # On the event loop this would stall every connection until the timeout.
            self.events.append("resumed" if self.go.wait(timeout=10) else "gate timed out")
        return await super().aes_ctr_keystream(key, length)


async def test_another_connection_is_answered_while_a_secure_round_unmasks(
    live: LiveFactory,
) -> None:
    server: Live = await live()
    n, features = 5, 20_000
    config = secure_config(n, min_reports=2, num_features=features)
    events: list[str] = []
    gated = _GatedHost(events)

    def hosts() -> tuple[CryptoHost, Mod32Ops]:
        return gated, NumpyMod32()

    server.coordinator.secure._crypto = hosts
    await server.coordinator.add_task(config)
    fleet = Fleet(server.url)
    workers = [
        fleet.add(
            f"worker-{i:02d}",
            seed=i,
            leave_at="secagg_relay" if i == 0 else None,  # its s key is rebuilt
            data=lambda *_, i=i: local_data(i, features=features),  # type: ignore[misc]
        )
        for i in range(n)
    ]
    runs = [asyncio.create_task(w.run(max_updates=1)) for w in workers]
    other = await RawClient.connect(server.url)
    try:
        assert (await other.hello("worker-other"))["type"] == "welcome"
        while not gated.entered.is_set():  # the unmasking began
            await asyncio.sleep(0.01)
        answer, _frame = await other.checkin()  # the round is under way: come back later
        events.append(f"checkin answered: {answer['type']}")
        gated.go.set()
        await server.wait_rounds(1, timeout=30)
        events.append("committed")
        await asyncio.wait_for(asyncio.gather(*runs), 30)
    finally:
        gated.go.set()
        await Fleet.stop(workers, runs)
        await other.close()
    assert events == [
        "unmasking",
        "checkin answered: come_back",
        "resumed",
        "committed",
    ]
    # The result is the plaintext computation of the survivors' own clipped updates, exactly.
    outcome = server.outcomes[0]
    assert (outcome.status, outcome.assigned, outcome.reported) == ("completed", n, n - 1)
    plan = config.secure_aggregation
    assert plan is not None
    bits = plan.params(n, config.model.param_count, config.clip_norm).scale_bits
    in_sum = [f"worker-{i:02d}" for i in range(1, n)]
    stored = [await server.store.read(lambda s, v=v: s.get_model_version("sec", v)) for v in (0, 1)]
    before, after = (np.frombuffer(m.params, dtype="<f4") for m in stored if m is not None)
    expected = expected_step(
        [fleet.updates[(w, 1)] for w in in_sum], config.clip_norm, bits, before
    )
    np.testing.assert_array_equal(after, expected)
