"""The span every side-by-side benchmark times (benchmarks/steady.py): round 1 apart, rounds
2..R as the steady state, the same cut for both sides of a ratio."""

from __future__ import annotations

import pytest

from benchmarks.steady import round_figures, speedup


def test_first_round_is_apart_and_steady_is_rounds_two_to_r() -> None:
    # Round 1 takes 10 s (start-up), then four rounds of 100 clients in 1, 2, 1, 1 s.
    figures = round_figures(100, start=50.0, ends=[60.0, 61.0, 63.0, 64.0, 65.0])
    assert figures["first_round_s"] == 10.0
    assert figures["first_round_clients_per_s"] == 10.0
    assert figures["steady_rounds"] == 4
    assert figures["steady_s"] == 5.0
    assert figures["steady_clients_per_s"] == 80.0  # 400 clients in 5 s, round 1 left out
    assert figures["steady_round_clients_per_s"] == {"min": 50.0, "median": 100.0, "max": 100.0}


def test_speedup_is_steady_over_steady_with_its_spread() -> None:
    ours = round_figures(100, 0.0, [1.0, 1.1, 1.2, 1.3, 1.4])  # 1,000/s steady
    theirs = round_figures(100, 0.0, [20.0, 21.0, 23.0, 24.0, 25.0])  # 80/s steady
    ratio = speedup(ours, theirs)
    assert ratio is not None
    assert ratio["steady"] == 12.5
    assert ratio["steady_range"] == [10.0, 20.0]  # our slowest over their fastest, and back
    assert ratio["first_round"] == 20.0


def test_a_side_without_a_steady_state_has_no_ratio() -> None:
    ours = round_figures(100, 0.0, [1.0, 2.0])
    assert speedup(ours, {"steady_clients_per_s": None}) is None


@pytest.mark.parametrize(
    ("start", "ends", "words"),
    [
        (0.0, [1.0], "a steady state needs at least 2"),
        (0.0, [], "a steady state needs at least 2"),
        (5.0, [4.0, 6.0], "must not go backwards"),
        (0.0, [2.0, 1.0], "must not go backwards"),
    ],
)
def test_marks_that_cannot_be_timed_are_refused(
    start: float, ends: list[float], words: str
) -> None:
    with pytest.raises(ValueError, match=words):
        round_figures(100, start, ends)
