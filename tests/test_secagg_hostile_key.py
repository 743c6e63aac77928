"""A survivor's public key that agrees on nothing (a low-order X25519 point: every agreement
with it is all zeros, which X25519 refuses) reaches the unmasking: the dropped participant's
masks cannot be rebuilt, and the round is abandoned (``reconstruction_failed``) — everyone in
it is told to abort, nothing is revealed — instead of the error escaping the phase's close."""

from __future__ import annotations

import dataclasses

import pytest

from dandelion.protocol.secagg import CryptoError
from dandelion.protocol.secagg.messages import Abort, Advertise, NeighbourKeysMessage
from dandelion.protocol.secagg.server import Phase

from .secagg_harness import HOST, Round

LOW_ORDER = bytes(32)  # u = 0: a point of small order


async def test_a_low_order_key_really_agrees_on_nothing() -> None:
    with pytest.raises(CryptoError, match="agreement failed"):
        await HOST.x25519_agree(HOST.random_bytes(32), LOW_ORDER)


async def test_a_survivor_key_that_agrees_on_nothing_abandons_the_unmasking() -> None:
    r = Round(12)
    hostile = 1
    dropped = min(r.graph[hostile])  # a neighbour of it that leaves before its masked vector
    real: dict[str, bytes] = {}

    def low_order(msg: object, frame: bytes | None) -> tuple[Advertise, bytes | None]:
        assert isinstance(msg, Advertise)
        real["s_pk"] = msg.s_pk
        return dataclasses.replace(msg, s_pk=LOW_ORDER), frame

    r.tamper[(hostile, "secagg_advertise")] = low_order
    await r.phase()  # advertise: the coordinator holds the low-order key
    # Its neighbours are handed its real key (honest neighbours given the low-order one could
    # not mask and would leave in phase 3): the round reaches the unmasking, where only the
    # coordinator's agreement with the advertised key fails.
    outbox = r.server.outbox
    for n, (i, msg) in enumerate(outbox):
        if isinstance(msg, NeighbourKeysMessage):
            keys = tuple(
                dataclasses.replace(k, s_pk=real["s_pk"]) if k.index == hostile else k
                for k in msg.neighbours
            )
            outbox[n] = (i, dataclasses.replace(msg, neighbours=keys))
    await r.phase()  # share
    await r.phase(drop={dropped})  # masked: its pair mask with the hostile one is in the sum
    assert r.server.phase is Phase.UNMASK
    assert hostile in r.server.live[3]  # a survivor
    await r.phase()  # unmask: the dropped one's s key is rebuilt, and agrees with nothing
    assert not r.refused  # nothing escaped the phase's close
    assert r.server.phase is Phase.ABANDONED
    assert r.server.abandon_reason == "reconstruction_failed"
    assert r.server.result is None
    with pytest.raises(LookupError):
        r.server.decoded_sum()
    told = {i for i, m in r.server.take_outbox() if isinstance(m, Abort)}
    assert told == r.server.live[3], "everyone in the sum is told to abort"
