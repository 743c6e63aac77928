"""The round aggregate: merging is adding, the byte form is exact, bad bytes are refused."""

from __future__ import annotations

import numpy as np
import pytest

from dandelion.aggregation import Aggregate, Contribution, UpdateRejected


def _filled(rng: np.random.Generator, n: int, d: int = 64) -> tuple[Aggregate, list[np.ndarray]]:
    agg = Aggregate(d)
    vectors = [rng.normal(size=d).astype(np.float32) for _ in range(n)]
    for i, v in enumerate(vectors):
        agg.add(v, Contribution(float(i + 1), i % 2, 0.5 + i, 0.25), bound=3.0)
    return agg, vectors


def test_merge_of_two_parts_equals_adding_everything_to_one() -> None:
    rng = np.random.default_rng(1)
    whole, vectors = _filled(rng, 20)
    first, second = Aggregate(64), Aggregate(64)
    for i, v in enumerate(vectors):
        part = first if i < 7 else second
        part.add(v, Contribution(float(i + 1), i % 2, 0.5 + i, 0.25), bound=3.0)
    first.merge(second)
    np.testing.assert_allclose(first.sum, whole.sum, rtol=1e-6, atol=1e-6)
    assert first.count == whole.count == 20
    assert first.weight == whole.weight
    assert first.metrics() == pytest.approx(whole.metrics())


def test_the_byte_form_round_trips_exactly() -> None:
    agg, _ = _filled(np.random.default_rng(2), 13)
    back = Aggregate.from_bytes(agg.to_bytes())
    assert back.sum.tobytes() == agg.sum.tobytes()
    assert (back.count, back.weight, back.clipped, back.unclipped_bits) == (
        agg.count,
        agg.weight,
        agg.clipped,
        agg.unclipped_bits,
    )
    assert back.metrics() == agg.metrics()
    mean = agg.mean()
    assert mean is not None
    np.testing.assert_array_equal(back.mean(), mean)


@pytest.mark.parametrize(
    "mangle",
    [
        lambda b: b"XXXX" + b[4:],  # not our magic
        lambda b: b[:-4],  # body too short
        lambda b: b[:8] + b"[" + b[9:],  # header not JSON
        lambda b: b[:6],  # truncated header length
    ],
)
def test_bytes_that_are_not_an_aggregate_are_refused(mangle: object) -> None:
    agg, _ = _filled(np.random.default_rng(3), 3)
    with pytest.raises(ValueError):
        Aggregate.from_bytes(mangle(agg.to_bytes()))  # type: ignore[operator]


def test_a_non_finite_update_changes_nothing() -> None:
    agg, _ = _filled(np.random.default_rng(4), 3)
    before = agg.to_bytes()
    bad = np.zeros(64, dtype=np.float32)
    bad[5] = np.inf
    with pytest.raises(UpdateRejected):
        agg.add(bad, Contribution(1.0), bound=1.0)
    assert agg.to_bytes() == before


def test_merging_different_sizes_is_an_error() -> None:
    with pytest.raises(ValueError):
        Aggregate(3).merge(Aggregate(4))
