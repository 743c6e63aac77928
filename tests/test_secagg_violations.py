"""Secure-aggregation messages that break the protocol are refused with a reason. On the
server the sender leaves the round, which goes on and still sums exactly; on the client the
round is aborted and its secrets forgotten."""

from __future__ import annotations

import dataclasses
import math

import pytest

from dandelion.protocol.errors import FrameError, LocalProtocolError
from dandelion.protocol.frames import decode_frame, encode_frame
from dandelion.protocol.secagg import CryptoError, SecAggConfigError, SecAggViolation
from dandelion.protocol.secagg.client import ClientState, SecAggClient
from dandelion.protocol.secagg.messages import (
    Advertise,
    EncryptedShare,
    NeighbourKeys,
    NeighbourKeysMessage,
    Relay,
    Reveal,
    SecAggMessage,
    Setup,
    Shares,
    Unmask,
)
from dandelion.protocol.secagg.server import Phase

from .secagg_harness import HOST, Round, wire
from .test_secagg_round import _assert_exact

# -- the server ---------------------------------------------------------------------------------


async def test_shares_for_the_wrong_neighbours_drop_the_sender_only() -> None:
    r = Round(24)

    def skip_one(msg: SecAggMessage, frame: bytes | None) -> tuple[SecAggMessage, bytes | None]:
        assert isinstance(msg, Shares)
        return dataclasses.replace(msg, shares=msg.shares[1:]), frame

    r.tamper[(4, "secagg_shares")] = skip_one
    await r.run()
    assert isinstance(r.refused[4], SecAggViolation)
    assert "but the keys sent were of" in r.refused[4].detail
    assert 4 not in r.server.live[2]
    assert 4 in r.server.live[1]
    assert r.clients[4].state is ClientState.SHARED  # it never hears of the round again
    _assert_exact(r)
    assert 4 not in r.sent_masked


async def test_a_masked_frame_with_another_nonce_is_refused_and_its_masks_cancelled() -> None:
    r = Round(24)

    def renonce(msg: SecAggMessage, frame: bytes | None) -> tuple[SecAggMessage, bytes | None]:
        assert frame is not None
        tensor = decode_frame(frame)
        header = dataclasses.replace(tensor.header, nonce="someone-else")
        return msg, encode_frame(header, tensor.payload)

    r.tamper[(6, "secagg_masked")] = renonce
    await r.run()
    assert "participant's nonce" in r.refused[6].detail
    assert 6 in r.server.live[2] and 6 not in r.server.live[3]
    _assert_exact(r)  # its neighbours' pairwise masks with it were rebuilt and cancelled


@pytest.mark.parametrize(
    ("change", "error", "match"),
    [
        (lambda m, f: (m, None), SecAggViolation, "without its masked frame"),
        (lambda m, f: (m, f[:-4]), FrameError, "header announces"),
        (lambda m, f: (m, b"\x00"), FrameError, "shorter than its length prefix"),
        (lambda m, f: (dataclasses.replace(m, round=8), f), SecAggViolation, "round 8"),
    ],
    ids=["no frame", "short frame", "no header", "other round"],
)
async def test_broken_masked_inputs_are_refused(change: object, error: type, match: str) -> None:
    r = Round(24)
    r.tamper[(9, "secagg_masked")] = change  # type: ignore[assignment]
    await r.run()
    assert isinstance(r.refused[9], error)
    assert match in r.refused[9].detail
    _assert_exact(r)
    assert 9 not in r.sent_masked


async def test_a_reveal_with_a_share_not_asked_for_is_refused() -> None:
    r = Round(24)

    def extra(msg: SecAggMessage, frame: bytes | None) -> tuple[SecAggMessage, bytes | None]:
        assert isinstance(msg, Reveal)
        (j, share), *_ = msg.b_shares.items()
        return dataclasses.replace(msg, s_shares={**msg.s_shares, j: share}), frame

    r.tamper[(2, "secagg_reveal")] = extra
    await r.run()
    assert "exactly the shares asked for" in r.refused[2].detail
    assert 2 in r.server.live[3] and 2 not in r.server.live[4]
    _assert_exact(r)
    assert 2 in r.sent_masked  # its vector is in the sum; only its shares were refused


async def test_messages_out_of_turn_or_from_strangers_change_nothing() -> None:
    r = Round(12)
    server = r.server
    first = Advertise("demo", 7, bytes(32), bytes(32))
    with pytest.raises(SecAggViolation, match="secagg_shares from 1 is not expected"):
        await server.receive(1, Shares("demo", 7, ()), 0.0)
    with pytest.raises(SecAggViolation, match="from 99 is not expected"):
        await server.receive(99, first, 0.0)
    await server.receive(1, first, 0.0)
    with pytest.raises(SecAggViolation, match="secagg_advertise from 1 is not expected"):
        await server.receive(1, first, 0.0)  # a second advertisement
    assert server.expected() == set(range(2, 13))
    with pytest.raises(SecAggViolation, match="not demo round 7"):
        await server.receive(2, dataclasses.replace(first, round=6), 0.0)
    assert server.expected() == set(range(3, 13))  # the sender left the round
    assert server.phase is Phase.ADVERTISE


async def test_a_late_answer_is_refused_after_the_phase_closed() -> None:
    r = Round(12)
    await r.phase(drop={5})  # 5 stays silent; the phase closes at its deadline
    assert r.server.phase is Phase.SHARE
    late = Advertise("demo", 7, bytes(32), bytes(32))
    with pytest.raises(SecAggViolation, match="not expected in phase share"):
        await r.server.receive(5, late, r.now)


# -- the client ---------------------------------------------------------------------------------


async def _advertised() -> tuple[Round, SecAggClient, Setup]:
    r = Round(24)
    (i, setup), *_ = r.server.take_outbox()
    assert isinstance(setup, Setup)
    client = r.clients[i]
    await client.receive(wire(setup))
    return r, client, setup


async def test_keys_of_a_non_neighbour_abort_the_client() -> None:
    r, client, setup = await _advertised()
    strangers = set(range(1, 25)) - r.graph[setup.index] - {setup.index}
    key = await HOST.x25519_public(bytes(range(32)))
    keys = NeighbourKeysMessage("demo", 7, tuple(_nk(j, key) for j in sorted(strangers)[:7]))
    with pytest.raises(SecAggViolation, match="keys of non-neighbours"):
        await client.receive(keys)
    assert client.state is ClientState.ABORTED
    assert client.abort_reason == "violation"
    with pytest.raises(SecAggViolation, match="not expected in state aborted"):
        await client.receive(keys)


def _nk(j: int, key: bytes) -> NeighbourKeys:
    return NeighbourKeys(j, key, key)


async def test_fewer_keys_than_the_threshold_abort_the_client() -> None:
    r, client, setup = await _advertised()
    key = await HOST.x25519_public(bytes(range(32)))
    few = sorted(r.graph[setup.index])[: r.params.threshold - 1]
    with pytest.raises(SecAggViolation, match="threshold 6"):
        await client.receive(NeighbourKeysMessage("demo", 7, tuple(_nk(j, key) for j in few)))


async def _relayed_pair() -> tuple[Round, int, Relay]:
    """A full round up to the relays; returns one client's relay, undelivered."""
    r = Round(12)
    await r.phase()  # advertise
    await r.phase()  # share
    relays = r.server.take_outbox()
    i, relay = relays[0]
    assert isinstance(relay, Relay)
    return r, i, relay


async def test_a_relayed_ciphertext_that_does_not_authenticate_aborts_the_client() -> None:
    r, i, relay = await _relayed_pair()
    first = relay.shares[0]
    flipped = bytes([first.ciphertext[0] ^ 1]) + first.ciphertext[1:]
    broken = dataclasses.replace(
        relay, shares=(EncryptedShare(first.peer, flipped), *relay.shares[1:])
    )
    with pytest.raises(CryptoError, match="does not authenticate"):
        await r.clients[i].receive(wire(broken))
    assert r.clients[i].state is ClientState.ABORTED


async def test_a_ciphertext_relayed_under_another_sender_aborts_the_client() -> None:
    r, i, relay = await _relayed_pair()
    a, b = relay.shares[0], relay.shares[1]
    swapped = dataclasses.replace(
        relay,
        shares=(
            EncryptedShare(a.peer, b.ciphertext),
            EncryptedShare(b.peer, a.ciphertext),
            *relay.shares[2:],
        ),
    )
    with pytest.raises(CryptoError):
        await r.clients[i].receive(wire(swapped))


async def test_mask_before_the_relay_or_with_bad_values() -> None:
    r, i, relay = await _relayed_pair()
    client = r.clients[i]
    with pytest.raises(LocalProtocolError, match="state shared"):
        await client.mask(r.updates[i])
    await client.receive(wire(relay))
    with pytest.raises(SecAggConfigError, match="not finite"):
        await client.mask([math.nan] * r.d)
    with pytest.raises(SecAggConfigError, match="an update of 16 values"):
        await client.mask([0.0] * 3)
    assert client.state is ClientState.RELAYED  # bad values lose nothing: try again
    msg, frame = await client.mask(r.updates[i])
    assert decode_frame(frame).header.type == "masked"
    assert msg.nonce == decode_frame(frame).header.nonce


async def _unmasking() -> tuple[Round, int, Unmask]:
    r = Round(12)
    for _ in range(3):
        await r.phase()
    i, unmask = r.server.take_outbox()[0]
    assert isinstance(unmask, Unmask)
    return r, i, unmask


async def test_an_unmask_request_naming_one_neighbour_both_ways_is_refused() -> None:
    r, i, unmask = await _unmasking()
    both = dataclasses.replace(unmask, dropped=unmask.survivors[:1])
    with pytest.raises(SecAggViolation, match="named both dropped and surviving"):
        await r.clients[i].receive(wire(both))
    assert r.clients[i].state is ClientState.ABORTED  # and it revealed nothing


async def test_an_unmask_request_naming_a_stranger_is_refused() -> None:
    r, i, unmask = await _unmasking()
    stranger = min(set(range(1, 13)) - r.graph[i] - {i})
    with pytest.raises(SecAggViolation, match="not neighbours this worker masked with"):
        await r.clients[i].receive(wire(dataclasses.replace(unmask, dropped=(stranger,))))


async def test_the_client_answers_the_unmask_request_once() -> None:
    r, i, unmask = await _unmasking()
    (reveal,) = await r.clients[i].receive(wire(unmask))
    assert isinstance(reveal, Reveal)
    assert set(reveal.b_shares) == set(unmask.survivors)
    with pytest.raises(SecAggViolation, match="not expected in state done"):
        await r.clients[i].receive(wire(unmask))


async def test_a_setup_the_protocol_cannot_run_is_refused() -> None:
    r = Round(12)
    (_, setup), *_ = r.server.take_outbox()
    assert isinstance(setup, Setup)
    client = SecAggClient(HOST)
    with pytest.raises(SecAggViolation, match="setup parameters refused: threshold"):
        await client.receive(dataclasses.replace(setup, threshold=4))
    assert client.state is ClientState.ABORTED
