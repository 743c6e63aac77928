"""Adaptive clipping (Andrew et al. 2021, "Differentially private learning with adaptive
clipping"): the clip norm C follows a chosen quantile gamma of the users' update norms.

Each reporting user contributes one bit, "my update's norm was ≤ C" (the *unclipped* bit).
The server adds Gaussian noise to the sum of the centred bits (b - 1/2), divides by the fixed
denominator, adds 1/2 back and moves C geometrically: ``C ← C · exp(-η (b̄ - gamma))``. Too
many users under C (b̄ > gamma): C shrinks; too few: C grows. One user moves the centred sum by
at most 1/2, whatever it claims, so its privacy does not depend on the bit being honest
(``mechanism.py`` does the noising).

Which bit counts: the coordinator sees each update as it arrives, after the worker clipped it
to C. An update that arrives clearly inside the ball was not clipped (its bit is 1); one that
arrives clearly outside was not clipped by the worker and is longer than C (its bit is 0); only
on the sphere (norm within ``tolerance`` of C) can the arrival not tell "clipped" from "exactly
C", and there the worker's own bit decides. So the server uses its own observation wherever it
has one, and a worker cannot move C by misreporting its bit except by one vote on the sphere.
"""

from __future__ import annotations

import math

__all__ = ["BIT_TOLERANCE", "next_clip_norm", "observed_bit"]

#: Relative width of the band around C where the arrival cannot tell a clipped update: wide
#: enough for float16 rounding of a vector clipped to exactly C (about 5e-4 relative).
BIT_TOLERANCE = 1e-3


def observed_bit(
    norm: float, clip_norm: float, claimed: bool, tolerance: float = BIT_TOLERANCE
) -> bool:
    """The unclipped bit of an update that arrived with L2 ``norm`` in a round clipping at
    ``clip_norm``: decided by the norm when it can be, by the worker's ``claimed`` bit on the
    sphere. A non-finite norm never counts as unclipped."""
    if not math.isfinite(norm):
        return False
    if norm > clip_norm * (1 + tolerance):
        return False
    if norm < clip_norm * (1 - tolerance):
        return True
    return bool(claimed)


def next_clip_norm(
    clip_norm: float, unclipped_fraction: float, target_quantile: float, learning_rate: float
) -> float:
    """The geometric update ``C · exp(-η (b̄ - gamma))``, with b̄ the noised fraction of updates
    that were within C. Raises ValueError for a non-positive clip norm."""
    if not (clip_norm > 0 and math.isfinite(clip_norm)):
        raise ValueError(f"clip norm must be a positive number, got {clip_norm}")
    return clip_norm * math.exp(-learning_rate * (unclipped_fraction - target_quantile))
