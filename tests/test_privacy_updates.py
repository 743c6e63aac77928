"""Hostile updates in a DP round: NaN, infinities and huge values never reach the sum
unclipped, so the noise is always calibrated to what one user can add."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dandelion.aggregation import UpdateRejected, l2_norm

from .dp_helpers import dp_config, feed, new_round

D = 64
CLIP = 1.5


def _sum_norm(rnd: object) -> float:
    return l2_norm(rnd.current.sum.copy())  # type: ignore[attr-defined]


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_updates_are_rejected_before_the_sum(bad: float) -> None:
    rnd = new_round(dp_config(D - 1, clip=CLIP))
    feed(rnd, np.full(D, 0.01))
    before = rnd.current.sum.copy()
    values = np.zeros(D)
    values[7] = bad
    with pytest.raises(UpdateRejected) as caught:
        feed(rnd, values)
    assert caught.value.reason == "non_finite"
    assert np.array_equal(rnd.current.sum, before)
    assert (rnd.current.count, rnd.reported, rnd.current.unclipped_bits) == (1, 1, 1)


def test_float16_infinity_is_rejected_too() -> None:
    config = dataclasses.replace(dp_config(D - 1, clip=CLIP), update_dtype="float16")
    rnd = new_round(config)
    half = np.zeros(D, dtype="<f2")
    half[3] = np.inf
    with pytest.raises(UpdateRejected, match="NaN or infinite"):
        feed(rnd, half.tobytes(), dtype="float16")
    assert not rnd.current.sum.any()


@pytest.mark.parametrize("scale", [1e3, 1e19, 3e38])
def test_huge_updates_are_clipped_to_the_rounds_bound(scale: float) -> None:
    rnd = new_round(dp_config(D - 1, clip=CLIP), clip_norm=CLIP)
    values = np.full(D, scale, dtype=np.float32)  # squares overflow float32 from 1e19 on
    feed(rnd, values, unclipped=True)  # a worker lying about its bit changes nothing here
    assert _sum_norm(rnd) == pytest.approx(CLIP, rel=1e-5)
    assert rnd.current.clipped == 1
    assert rnd.current.unclipped_bits == 0  # arrived far outside C: the server knows better


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.lists(
            st.floats(allow_nan=True, allow_infinity=True, width=32)
            | st.sampled_from([3.4e38, -3.4e38, 1e-45, 0.0]),
            min_size=D,
            max_size=D,
        ),
        min_size=1,
        max_size=6,
    )
)
def test_whatever_arrives_each_report_adds_at_most_the_clip_norm(
    updates: list[list[float]],
) -> None:
    rnd = new_round(dp_config(D - 1, clip=CLIP))
    for values in updates:
        arr = np.asarray(values, dtype=np.float32)
        if np.isfinite(arr).all():
            feed(rnd, arr)
        else:
            with pytest.raises(UpdateRejected, match="NaN or infinite"):
                feed(rnd, arr)
    assert np.isfinite(rnd.current.sum).all()
    assert _sum_norm(rnd) <= rnd.current.count * CLIP * (1 + 1e-5)
