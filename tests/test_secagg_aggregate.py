"""The secure round's aggregate behind the aggregator seam: it holds only the masked sum until
the unmasking, checkpoints and merges as masked sums, and ends with the exact decoded sum."""

from __future__ import annotations

import numpy as np
import pytest

from dandelion.aggregation import Contribution, SecureAggregate, UpdateRejected
from dandelion.protocol.frames import decode_frame
from dandelion.protocol.secagg import SecAggParams, SecAggViolation, decode_sum, encode
from dandelion.protocol.secagg.server import Phase

from .secagg_harness import PHASES, Round


class _Watched(SecureAggregate):
    """Records the held bytes after every masked vector."""

    def __init__(self, d: int, scale_bits: int) -> None:
        super().__init__(d, scale_bits)
        self.snapshots: list[bytes] = []

    def add_masked(self, payload: bytes | bytearray | memoryview) -> None:
        super().add_masked(payload)
        self.snapshots.append(self.to_bytes())


def _round(n: int = 16, d: int = 64) -> tuple[Round, _Watched]:
    bits = SecAggParams.choose(n, d, 1.0).scale_bits
    agg = _Watched(d, bits)
    return Round(n, d=d, sink=agg), agg


async def test_the_aggregate_ends_with_the_exact_sum_of_the_survivors() -> None:
    r, agg = _round()
    await r.run({Phase.MASKED: {4, 9}, Phase.UNMASK: {12}})
    assert r.server.phase is Phase.DONE
    assert agg.count == len(r.sent_masked) == 14
    expected = np.array(decode_sum(r.expected_total(), r.params.scale_bits), dtype=np.float32)
    assert np.array_equal(agg.sum, expected)
    mean = agg.mean()
    assert mean is not None
    assert np.allclose(mean, expected / 14)
    assert agg.metrics() == {}


async def test_before_the_unmasking_it_holds_nothing_like_a_plaintext_sum() -> None:
    r, agg = _round()
    for _ in PHASES[:3]:
        await r.phase()
    assert r.server.phase is Phase.UNMASK
    with pytest.raises(LookupError, match="before the round's unmasking"):
        _ = agg.sum
    assert agg.mean() is None
    order = list(r.masked_frames)  # the order the server added them in
    plain = np.zeros(r.d, dtype="<u4")
    for i, snapshot in zip(order, agg.snapshots, strict=True):
        plain += np.frombuffer(encode(r.updates[i], r.clip, r.params.scale_bits), "<u4")
        held = np.frombuffer(snapshot[-4 * r.d :], "<u4")
        assert np.count_nonzero(held == plain) <= 2


async def test_a_checkpoint_of_the_masked_sum_resumes_to_the_same_result() -> None:
    r, agg = _round()
    for _ in PHASES[:3]:
        await r.phase()
    restored = SecureAggregate.from_bytes(agg.to_bytes())
    assert restored.count == agg.count
    r.server.sink = restored
    await r.phase()
    await r.deliver_rest()
    assert r.server.phase is Phase.DONE
    assert np.array_equal(
        restored.sum, np.array(decode_sum(r.expected_total(), r.params.scale_bits), np.float32)
    )


async def test_shards_merge_their_masked_sums_into_the_whole() -> None:
    r, agg = _round()
    for _ in PHASES[:3]:
        await r.phase()
    shards = [SecureAggregate(r.d, r.params.scale_bits) for _ in range(3)]
    for k, frame in enumerate(r.masked_frames.values()):
        shards[k % 3].add_masked(decode_frame(frame).payload)
    whole = shards[0]
    whole.merge(shards[1])
    whole.merge(shards[2])
    assert whole.to_bytes() == agg.to_bytes()


def test_it_refuses_plaintext_and_what_does_not_hold_up() -> None:
    agg = SecureAggregate(4, 10)
    with pytest.raises(UpdateRejected, match="masked vectors only") as caught:
        agg.add(np.zeros(4, np.float32), Contribution(1.0), 1.0)
    assert caught.value.reason == "wrong_shape"
    with pytest.raises(SecAggViolation, match="holds 16 bytes, not 12"):
        agg.add_masked(bytes(12))
    with pytest.raises(ValueError, match="other sizes or scales"):
        agg.merge(SecureAggregate(4, 11))
    with pytest.raises(ValueError, match="bad magic"):
        SecureAggregate.from_bytes(b"DAG1" + bytes(8))
    with pytest.raises(ValueError, match="is not 4 values"):
        SecureAggregate.from_bytes(agg.to_bytes()[:-1])
    agg.add_masked(np.array([1, 2, 3, 2**32 - 1], "<u4").tobytes())
    agg.unmask(np.array([0, 0, 0, 0], "<u4").tobytes())
    assert agg.sum.tolist() == [1 / 1024, 2 / 1024, 3 / 1024, -1 / 1024]
    with pytest.raises(ValueError, match="unmasked or discarded"):
        agg.add_masked(bytes(16))
    with pytest.raises(ValueError):
        agg.to_bytes()
    with pytest.raises(ValueError):
        agg.sum[0] = 1.0  # read-only


async def test_an_abandoned_round_discards_the_masked_sum() -> None:
    r, agg = _round(24)
    k, t = r.params.degree, r.params.threshold
    await r.run({Phase.MASKED: {1, *sorted(r.graph[1])[: k - t + 1]}})
    assert r.server.phase is Phase.ABANDONED
    with pytest.raises(ValueError, match="unmasked or discarded"):
        agg.to_bytes()
    assert agg.count == 0
