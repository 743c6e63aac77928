"""The streaming clipped sum: properties that must hold for any updates."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from dandelion.aggregation import (
    StreamingSum,
    UpdateRejected,
    clip_factor,
    decode_update,
    l2_norm,
    update_weight,
)

D = 16
finite = st.floats(-1e6, 1e6, width=32, allow_nan=False, allow_infinity=False)
vectors = arrays(np.float32, D, elements=finite)
bounds = st.floats(0.01, 100.0)


@settings(max_examples=60, deadline=None)
@given(st.lists(vectors, min_size=2, max_size=8), st.randoms(use_true_random=False), bounds)
def test_order_does_not_matter(updates: list[np.ndarray], rnd: object, bound: float) -> None:
    forward, shuffled = StreamingSum(D), StreamingSum(D)
    order = list(range(len(updates)))
    rnd.shuffle(order)  # type: ignore[attr-defined]
    for u in updates:
        forward.add(u, weight=1.0, bound=bound)
    for i in order:
        shuffled.add(updates[i], weight=1.0, bound=bound)
    np.testing.assert_allclose(forward.mean(), shuffled.mean(), rtol=1e-4, atol=1e-5 * bound)


@settings(max_examples=60, deadline=None)
@given(vectors, st.integers(1, 20), st.floats(1.0, 50.0))
def test_identical_updates_average_to_themselves(u: np.ndarray, n: int, weight: float) -> None:
    bound = max(1.0, l2_norm(u)) * 2  # wide enough that nothing is clipped
    acc = StreamingSum(D)
    for _ in range(n):
        acc.add(u, weight=weight, bound=bound)
    np.testing.assert_allclose(acc.mean(), u, rtol=1e-4, atol=1e-3)


@settings(max_examples=100, deadline=None)
@given(vectors, bounds)
def test_clipping_never_raises_a_norm_and_respects_the_bound(u: np.ndarray, bound: float) -> None:
    acc = StreamingSum(D)
    result = acc.add(u, weight=1.0, bound=bound)
    added = l2_norm(np.asarray(acc.sum))
    assert added <= l2_norm(u) * (1 + 1e-5) + 1e-6
    assert added <= bound * (1 + 1e-5)
    assert result.clipped == (l2_norm(u) > bound)


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_updates_never_reach_the_sum(bad: float) -> None:
    acc = StreamingSum(D)
    acc.add(np.ones(D, np.float32), weight=1.0, bound=10.0)
    before = np.array(acc.sum)
    u = np.zeros(D, np.float32)
    u[5] = bad
    with pytest.raises(UpdateRejected) as info:
        acc.add(u, weight=1.0, bound=10.0)
    assert info.value.reason == "non_finite"
    np.testing.assert_array_equal(acc.sum, before)
    assert acc.count == 1


def test_a_huge_finite_update_adds_at_most_the_bound() -> None:
    acc = StreamingSum(D)
    u = np.full(D, 1e30, np.float32)  # its squared norm overflows float32
    assert math.isfinite(l2_norm(u))
    result = acc.add(u, weight=1.0, bound=2.0)
    assert result.clipped
    assert l2_norm(np.asarray(acc.sum)) == pytest.approx(2.0, rel=1e-5)


def test_wrong_length_is_rejected_before_touching_the_sum() -> None:
    acc = StreamingSum(D)
    with pytest.raises(UpdateRejected) as info:
        acc.add(np.ones(D + 1, np.float32), weight=1.0, bound=1.0)
    assert info.value.reason == "wrong_shape"
    assert acc.count == 0


def test_decode_is_zero_copy_for_float32() -> None:
    buf = bytearray(np.arange(D, dtype="<f4").tobytes())
    values = decode_update(memoryview(buf), "float32", D)
    buf[0:4] = np.float32(42.0).tobytes()
    assert values[0] == 42.0


def test_decode_widens_float16_and_refuses_wrong_lengths() -> None:
    raw = np.array([1.5, -2.0], dtype="<f2").tobytes()
    np.testing.assert_array_equal(decode_update(raw, "float16", 2), [1.5, -2.0])
    assert decode_update(raw, "float16", 2).dtype == np.float32
    with pytest.raises(UpdateRejected):
        decode_update(raw, "float32", 2)
    with pytest.raises(UpdateRejected):
        decode_update(raw, "float64", 1)


def test_example_weighted_and_uniform_means() -> None:
    a, b = np.full(D, 1.0, np.float32), np.full(D, 4.0, np.float32)
    weighted, uniform = StreamingSum(D), StreamingSum(D)
    for u, n in ((a, 1), (b, 3)):
        weighted.add(u, weight=update_weight(n, "examples"), bound=100.0)
        uniform.add(u, weight=update_weight(n, "uniform"), bound=100.0)
    np.testing.assert_allclose(weighted.mean(), (1 * 1 + 3 * 4) / 4)
    np.testing.assert_allclose(uniform.mean(), (1 + 4) / 2)
    assert update_weight(5000, "examples", 100) == 100.0
    with pytest.raises(ValueError):
        update_weight(1, "median")


def test_clip_factor() -> None:
    assert clip_factor(0.0, 1.0) == 1.0
    assert clip_factor(0.5, 1.0) == 1.0
    assert clip_factor(4.0, 1.0) == 0.25


def test_empty_mean_is_an_error_and_reset_empties() -> None:
    acc = StreamingSum(D)
    with pytest.raises(ValueError):
        acc.mean()
    acc.add(np.ones(D, np.float32), weight=2.0, bound=100.0)
    acc.reset()
    assert acc.count == 0 and not np.asarray(acc.sum).any()
