"""Pace steering: retry windows that spread a fleet's check-ins over time.

A worker told to come back picks a uniformly random moment inside its window, so the window's
width sets how thinly the fleet is spread. The width follows demand: with ``W`` workers recently
sent away and a target check-in rate ``r``, windows span about ``W / r`` seconds (never less than
``pace_min_s``, never more than ``pace_max_s``). The window's start follows the work: a worker
that already reported is asked back after its round's deadline; one turned away from a full
round, soon (slots free up as assignments lapse), in a narrow window.

Never reads the clock: ``now`` is passed in.
"""

from __future__ import annotations

import math

from ..protocol import RetryWindow

__all__ = ["PaceSteering"]


class PaceSteering:
    """Computes retry windows from recent demand. O(1) state."""

    def __init__(self, *, min_s: float, max_s: float, target_rate: float) -> None:
        self.min_s = min_s
        self.max_s = max_s
        self.target_rate = target_rate
        # An exponentially decaying count of workers sent away: O(1), no per-worker memory.
        self._waiting = 0.0
        self._stamp = 0.0

    def _decay(self, now: float) -> None:
        horizon = max(self.max_s, 1.0)
        if now > self._stamp:
            self._waiting *= math.exp(-(now - self._stamp) / horizon)
            self._stamp = now

    def spread(self, now: float) -> float:
        self._decay(now)
        return min(self.max_s, max(self.min_s, self._waiting / self.target_rate))

    def window(
        self, now: float, *, not_before: float | None = None, cap_s: float | None = None
    ) -> RetryWindow:
        """A window for one worker sent away now.

        It starts at ``not_before`` (absolute time: when the work it waits for is expected) or,
        without one, ``min_s`` from now; it is always at least ``min_s`` wide, so no two workers
        are asked back at the same instant, and no wider than ``cap_s`` when given (a worker
        turned away from a full round comes back soon: slots free up as assignments lapse).
        """
        self._decay(now)
        self._waiting += 1.0
        start = self.min_s if not_before is None else max(0.0, not_before - now)
        start = min(start, self.max_s - self.min_s)
        width = self.spread(now)
        if cap_s is not None:
            width = min(width, max(self.min_s, cap_s))
        hi = min(start + width, self.max_s)
        return RetryWindow(round(start, 3), round(max(hi, start + self.min_s), 3))
