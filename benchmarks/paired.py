"""Ratios of paired repeats and their spread, used by every side-by-side that repeats.

A side-by-side on a shared machine runs its two sides in pairs close in time (A, B, A, B …, or
B, A in every other pair), so a burst of load from elsewhere falls on both sides of one pair.
Each pair gives one ratio; the figure is the median of those ratios, with its quartiles and its
extremes as the spread. A ratio of medians would mix pairs measured under different loads.

Rules of this file: arithmetic on numbers handed in; no clock, no I/O.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import Any

__all__ = ["pair_order", "paired_ratios", "spread"]


def pair_order(index: int) -> tuple[int, int]:
    """The order of pair ``index``'s two sides: (0, 1) for even pairs, (1, 0) for odd ones, so
    neither side always runs first (a side that runs second inherits the first's warm caches)."""
    return (0, 1) if index % 2 == 0 else (1, 0)


def spread(values: Sequence[float], digits: int = 3) -> dict[str, Any]:
    """Median, quartiles (``q1``, ``q3``: the inclusive method, so a few values still give
    quartiles inside their range), extremes and count of ``values``. Raises ValueError when
    ``values`` is empty."""
    if not values:
        raise ValueError("no values to summarise")
    ordered = sorted(values)
    if len(ordered) == 1:
        q1 = q3 = ordered[0]
    else:
        q1, _, q3 = statistics.quantiles(ordered, n=4, method="inclusive")
    return {
        "median": round(statistics.median(ordered), digits),
        "q1": round(q1, digits),
        "q3": round(q3, digits),
        "min": round(ordered[0], digits),
        "max": round(ordered[-1], digits),
        "n": len(ordered),
    }


def paired_ratios(
    numerators: Sequence[float], denominators: Sequence[float], digits: int = 3
) -> dict[str, Any]:
    """The spread of ``numerators[i] / denominators[i]`` over the pairs. Raises ValueError
    when the two sides hold different numbers of repeats, none, or a denominator that is not
    positive."""
    if len(numerators) != len(denominators):
        raise ValueError(f"{len(numerators)} against {len(denominators)} repeats: not paired")
    if any(b <= 0 for b in denominators):
        raise ValueError("a denominator is not positive")
    return spread([a / b for a, b in zip(numerators, denominators, strict=True)], digits)
