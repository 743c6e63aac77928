"""Paired repeats (benchmarks/paired.py): one ratio per pair, the median with its spread."""

from __future__ import annotations

import pytest

from benchmarks.paired import pair_order, paired_ratios, spread


def test_the_figure_is_the_median_of_per_pair_ratios_not_a_ratio_of_medians() -> None:
    # Load moved between pairs: pair 2 ran on a machine twice as slow for both sides.
    ours = [10.0, 20.0, 10.0, 11.0, 10.0]
    theirs = [5.0, 10.0, 4.0, 5.5, 5.0]
    ratio = paired_ratios(ours, theirs)
    assert ratio["median"] == 2.0
    assert ratio["min"] == 2.0
    assert ratio["max"] == 2.5
    assert ratio["n"] == 5
    assert ratio["q1"] == 2.0 and ratio["q3"] == 2.0


def test_spread_quartiles_stay_within_the_values() -> None:
    figures = spread([1.0, 2.0, 3.0, 4.0])
    assert figures == {"median": 2.5, "q1": 1.75, "q3": 3.25, "min": 1.0, "max": 4.0, "n": 4}
    assert spread([7.0]) == {"median": 7.0, "q1": 7.0, "q3": 7.0, "min": 7.0, "max": 7.0, "n": 1}


def test_the_sides_take_turns_going_first() -> None:
    assert [pair_order(i) for i in range(4)] == [(0, 1), (1, 0), (0, 1), (1, 0)]


@pytest.mark.parametrize(
    ("ours", "theirs", "words"),
    [
        ([1.0, 2.0], [1.0], "not paired"),
        ([1.0], [0.0], "not positive"),
        ([], [], "no values"),
    ],
)
def test_repeats_that_cannot_be_paired_are_refused(
    ours: list[float], theirs: list[float], words: str
) -> None:
    with pytest.raises(ValueError, match=words):
        paired_ratios(ours, theirs)
