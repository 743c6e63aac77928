"""Pace steering: retry windows that spread a fleet's check-ins over time.

A worker told to come back picks a uniformly random moment inside its window, so the window's
width sets how thinly the fleet is spread. The width follows demand: with ``W`` workers recently
sent away and a target check-in rate ``r``, windows span about ``W / r`` seconds (never less than
``pace_min_s``, never more than ``pace_max_s``). The window's start follows the work: a worker
that already reported is asked back after its round's deadline.

Workers turned away from a full round are ranked by arrival (after Bonawitz et al. 2019, §2.3:
ask back about as many as the next step needs, not everybody). The first ``soon`` of them — about
as many as slots are expected to free up as assignments lapse — are asked back soon, in a narrow
window. The next ``HEADROOM`` times the next round's need are asked back when the round is
expected to close (the next one opens then), over a window wide enough that they arrive at the
target rate. Everybody after that is asked back then too, spread as wide as the demand says (up
to ``max_s``), so a large fleet checks in about once per window instead of once per round. Until
the coordinator has an estimate of when the round closes, all are asked back soon.

Never reads the clock: ``now`` is passed in.
"""

from __future__ import annotations

import math

from ..protocol import RetryWindow

__all__ = ["HEADROOM", "PaceSteering"]

#: How many times the next round's need is asked back for its opening: some of them will be
#: offline, opted out or busy by then.
HEADROOM = 2.0


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
        are asked back at the same instant, and no wider than ``cap_s`` when given.
        """
        self._decay(now)
        self._waiting += 1.0
        start = self.min_s if not_before is None else max(0.0, not_before - now)
        width = self.spread(now)
        if cap_s is not None:
            width = min(width, max(self.min_s, cap_s))
        return self._span(start, width)

    def turned_away(
        self, now: float, *, rank: int, soon: int, closes_at: float | None, need: int
    ) -> RetryWindow:
        """A window for the worker turned away from a full round in ``rank``-th place (0: the
        first). ``soon``: slots expected to free up in the round; ``closes_at``: when it is
        expected to close (None: not known yet); ``need``: the next round's assignments."""
        if closes_at is None or rank < soon:
            return self.window(now, cap_s=4 * self.min_s)
        self._decay(now)
        self._waiting += 1.0
        start = max(closes_at - now, self.min_s)
        # The next round's share arrives at the target rate; the rest no faster than that.
        width = max(4 * self.min_s, HEADROOM * need / self.target_rate)
        if rank >= soon + HEADROOM * need:
            width = max(width, self.spread(now))
        return self._span(start, width)

    def _span(self, start: float, width: float) -> RetryWindow:
        start = min(start, self.max_s - self.min_s)
        hi = min(start + width, self.max_s)
        return RetryWindow(round(start, 3), round(max(hi, start + self.min_s), 3))
