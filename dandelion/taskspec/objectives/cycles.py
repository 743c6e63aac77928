"""Time of day and day of week as points on circles: what every built-in objective's first four
features are (midnight sits next to 23:59, Sunday next to Monday)."""

from __future__ import annotations

import math

__all__ = ["time_cycles"]

_DAY = 86400.0
_TAU = 2 * math.pi


def time_cycles(t: float, tz_offset_min: int) -> tuple[float, float, float, float]:
    """sin and cos of the local time of day, then of the local day of week (Monday 00:00 is
    angle 0), for ``t`` seconds since the epoch (UTC) and local time = UTC + ``tz_offset_min``."""
    local = t + tz_offset_min * 60
    day = (local % _DAY) / _DAY
    week = ((local / _DAY + 3) % 7) / 7  # 1970-01-01 was a Thursday: +3 makes Monday 0
    return (
        math.sin(_TAU * day),
        math.cos(_TAU * day),
        math.sin(_TAU * week),
        math.cos(_TAU * week),
    )
