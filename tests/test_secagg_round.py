"""Secure rounds in process: n clients and the server, dropouts injected in each phase. The
unmasked sum equals the plaintext sum exactly (mod 2^32, then decoded); a round that could
not finish is abandoned before anyone is asked for a share."""

from __future__ import annotations

import numpy as np
import pytest

from dandelion.protocol.secagg import decode_sum
from dandelion.protocol.secagg.client import ClientState
from dandelion.protocol.secagg.messages import Abort, Reveal, Unmask
from dandelion.protocol.secagg.server import Phase

from .secagg_harness import PHASES, Round


def _assert_exact(r: Round) -> None:
    assert r.server.phase is Phase.DONE, r.server.abandon_reason
    assert r.server.live[3] == r.sent_masked
    assert r.server.result == r.expected_total()
    got = r.server.decoded_sum()
    assert got == decode_sum(r.expected_total(), r.params.scale_bits)
    plain = np.sum([r.updates[i] for i in r.sent_masked], axis=0)
    step = len(r.sent_masked) * 2.0 ** -(r.params.scale_bits + 1)
    assert np.max(np.abs(np.array(got) - plain)) <= step


async def test_a_round_without_dropouts_sums_exactly() -> None:
    r = Round(12)
    assert (r.params.degree, r.params.threshold) == (8, 5)
    await r.run()
    _assert_exact(r)
    assert r.sent_masked == set(range(1, 13))
    assert all(c.state is ClientState.DONE for c in r.clients.values())


async def test_the_complete_graph_is_bonawitz_et_al_s_protocol() -> None:
    r = Round(5)
    assert r.params.degree == 4
    await r.run({Phase.MASKED: {2}})
    _assert_exact(r)
    assert r.sent_masked == {1, 3, 4, 5}


@pytest.mark.parametrize("phase", PHASES, ids=lambda p: p.value)
async def test_dropouts_in_one_phase_leave_the_sum_exact(phase: Phase) -> None:
    r = Round(24)  # k = 10, t = 6
    await r.run({phase: {3, 11}})
    _assert_exact(r)
    in_sum = {Phase.ADVERTISE: 22, Phase.SHARE: 22, Phase.MASKED: 22, Phase.UNMASK: 24}
    assert len(r.sent_masked) == in_sum[phase]


async def test_dropouts_in_every_phase_at_once() -> None:
    r = Round(40, d=100, clip=2.0)  # k = 12, t = 7
    await r.run(
        {
            Phase.ADVERTISE: {1, 17},
            Phase.SHARE: {5, 30},
            Phase.MASKED: {8, 22, 39},
            Phase.UNMASK: {2, 33},
        }
    )
    _assert_exact(r)
    assert len(r.sent_masked) == 40 - 7
    assert r.server.live[4] == r.sent_masked - {2, 33}


async def test_too_few_surviving_neighbours_of_a_dropped_client_abandon_the_round() -> None:
    r = Round(24)
    k, t = r.params.degree, r.params.threshold
    victim = 1
    # The victim drops with k - t + 1 of its neighbours: t - 1 of them survive.
    dropped = {victim, *sorted(r.graph[victim])[: k - t + 1]}
    await r.run({Phase.MASKED: dropped})
    assert r.server.phase is Phase.ABANDONED
    assert r.server.abandon_reason == "too_few_survivors"
    assert r.server.result is None
    with pytest.raises(LookupError):
        r.server.decoded_sum()
    # Nothing revealed: no one was asked for a share, no share left a client.
    assert not any(isinstance(m, Unmask) for _, m in r.received)
    assert r.server.live[3] == r.sent_masked
    told = {i for i, m in r.received if isinstance(m, Abort)}
    assert told == r.server.live[2]
    for i in r.sent_masked:
        assert r.clients[i].state is ClientState.ABORTED
        assert r.clients[i].abort_reason == "too_few_survivors"


async def test_too_few_reveals_abandon_the_round_at_the_last_close() -> None:
    r = Round(24)
    k, t = r.params.degree, r.params.threshold
    silent = set(sorted(r.graph[1])[: k - t + 1])  # the holders of 1's self-mask seed shares
    await r.run({Phase.UNMASK: silent})
    assert r.server.phase is Phase.ABANDONED
    assert r.server.abandon_reason == "too_few_shares"
    assert r.server.result is None
    # It revealed its shares, but too few others did: it is told the round failed.
    assert r.clients[1].state is ClientState.ABORTED
    assert r.clients[1].abort_reason == "too_few_shares"


async def test_a_client_left_with_fewer_than_t_neighbours_is_pruned_before_sharing() -> None:
    """On the ring, once one participant falls below t (t > k/2), its ring neighbours do too:
    the pruning reaches everyone and the round ends before any key is handed out."""
    r = Round(24)
    k, t = r.params.degree, r.params.threshold
    await r.run({Phase.ADVERTISE: set(sorted(r.graph[1])[: k - t + 1])})
    assert r.clients[1].state is ClientState.ABORTED
    assert r.clients[1].abort_reason == "too_few_neighbours"
    assert r.server.phase is Phase.ABANDONED
    assert r.server.abandon_reason == "too_few_survivors"
    assert not any(m.TYPE in ("secagg_keys", "secagg_relay") for _, m in r.received)
    assert r.sent_masked == set()


async def test_losing_fewer_than_k_minus_t_plus_one_neighbours_prunes_no_one() -> None:
    r = Round(24)
    k, t = r.params.degree, r.params.threshold
    await r.run({Phase.ADVERTISE: set(sorted(r.graph[1])[: k - t])})
    assert not any(isinstance(m, Abort) for _, m in r.received)
    _assert_exact(r)
    assert 1 in r.sent_masked


async def test_masked_vectors_do_not_resemble_the_updates() -> None:
    r = Round(12, d=256)
    await r.run()
    from dandelion.protocol.frames import decode_frame
    from dandelion.protocol.secagg import encode

    for i, frame in r.masked_frames.items():
        masked = np.frombuffer(decode_frame(frame).payload, "<u4").astype(np.float64)
        plain = np.frombuffer(encode(r.updates[i], r.clip, r.params.scale_bits), "<u4")
        assert np.count_nonzero(masked == plain) <= 2
        assert abs(np.corrcoef(masked, plain.astype(np.float64))[0, 1]) < 0.3
    reveals = [m for _, m in r.received if isinstance(m, Reveal)]
    assert reveals == []  # the server receives reveals; the clients never do
