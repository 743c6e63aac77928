"""One way to turn a run's round marks into figures, used for every side of a side-by-side.

Every framework reports when it started timing (``start``: its own set-up done, the first round
about to begin) and when each round closed (``ends``). The first round also carries each side's
start-up — Ray actors starting and loading data, emulated workers opening their sessions and
building their examples, pfl's first user datasets — so it is reported apart; the steady state is
rounds 2..R, from the first round's close to the last one's. Both sides of a ratio are cut the
same way here, so they time the same span.

Rules of this file: arithmetic on numbers handed in; no clock, no I/O.
"""

from __future__ import annotations

import itertools
import statistics
from collections.abc import Sequence
from typing import Any

__all__ = ["MIN_ROUNDS", "round_figures", "speedup"]

#: Rounds a side-by-side needs: the first round and at least four steady ones.
MIN_ROUNDS = 5


def round_figures(n: int, start: float, ends: Sequence[float]) -> dict[str, Any]:
    """Figures of a run of ``len(ends)`` closed rounds of ``n`` clients each.

    ``first_round_s`` is ``ends[0] - start``; ``steady_clients_per_s`` is ``n * (R - 1)`` over
    ``ends[-1] - ends[0]``; ``steady_round_clients_per_s`` holds the min, median and max of the
    steady rounds' own rates (the spread). Raises ValueError when the marks are out of order or
    fewer than two rounds closed (no steady state to time)."""
    marks = [start, *ends]
    if any(b < a for a, b in itertools.pairwise(marks)):
        raise ValueError("round marks must not go backwards")
    if len(ends) < 2:
        raise ValueError(f"{len(ends)} round(s) closed: a steady state needs at least 2")
    steady = ends[-1] - ends[0]
    per_round = [n / (b - a) if b > a else float("inf") for a, b in itertools.pairwise(ends)]
    return {
        "rounds": len(ends),
        "first_round_s": round(ends[0] - start, 3),
        "first_round_clients_per_s": round(n / (ends[0] - start), 1) if ends[0] > start else None,
        "steady_rounds": len(ends) - 1,
        "steady_s": round(steady, 3),
        "steady_clients_per_s": round(n * (len(ends) - 1) / steady, 1) if steady > 0 else None,
        "steady_round_clients_per_s": {
            "min": round(min(per_round), 1),
            "median": round(statistics.median(per_round), 1),
            "max": round(max(per_round), 1),
        },
    }


def speedup(ours: dict[str, Any], theirs: dict[str, Any]) -> dict[str, Any] | None:
    """Our steady rate over theirs, with its spread: the lowest of our steady rounds' rates over
    their highest, and our highest over their lowest (None if either side has no steady
    state); the first round's ratio beside it."""
    a, b = ours.get("steady_clients_per_s"), theirs.get("steady_clients_per_s")
    if not a or not b:
        return None
    ra, rb = ours["steady_round_clients_per_s"], theirs["steady_round_clients_per_s"]
    fa, fb = ours.get("first_round_clients_per_s"), theirs.get("first_round_clients_per_s")
    return {
        "steady": round(a / b, 2),
        "steady_range": [round(ra["min"] / rb["max"], 2), round(ra["max"] / rb["min"], 2)],
        "first_round": round(fa / fb, 2) if fa and fb else None,
    }
