"""What each emulated device does and when: derived from the population file and the device's
number alone, so nothing per device is stored and every process agrees.

Every draw is a hash of (seed, device, what, when) turned into a uniform number; log-normal
values take its normal quantile. A device's day is a grid of hours shifted by a per-device phase
(so a fleet does not change state on the hour): in each hour it is online with probability
``peak_online x profile[local hour] / max(profile) x activity``, where ``activity`` is the
device's own log-normal factor and the local hour follows its time zone.

Times here are seconds on the emulation's clock (0 = start); ``epoch`` maps them to UTC.
"""

from __future__ import annotations

import math
from statistics import NormalDist

from .population import Dist, PopulationConfig

__all__ = ["Behaviour"]

_MASK = (1 << 64) - 1
_HOUR = 3600.0
_DAY = 86400.0
_SCAN_HOURS = 24 * 14  # look this far ahead for a device's next online hour
_NORMAL = NormalDist()
_SALTS = {
    name: i + 1
    for i, name in enumerate(
        (
            "tz",
            "phase",
            "activity",
            "online",
            "opt_in",
            "opt_out",
            "startup",
            "speed",
            "straggler",
            "drop",
            "drop_at",
            "down",
            "up",
            "latency",
            "idle",
            "charging",
            "unmetered",
            "reconnect",
            "jitter",
        )
    )
}


def _hour_of(t: float, phase: float) -> int:
    # The device hour holding t; the nudge keeps an hour's own start (as next_online returns
    # it, rounded) inside that hour.
    return math.floor((t - phase) / _HOUR + 1e-9)


def _mix(x: int) -> int:
    """splitmix64's finalizer: a well-spread 64-bit hash of ``x``."""
    x = (x + 0x9E3779B97F4A7C15) & _MASK
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK
    return x ^ (x >> 31)


class Behaviour:
    """The population file's behaviour model for devices ``0 .. size-1``."""

    def __init__(self, config: PopulationConfig, epoch: float) -> None:
        self.config = config
        self.epoch = epoch
        self._seed = _mix(config.seed * 0x100000001B3 + 7)
        top = max(config.profile)
        self._hourly = [config.peak_online * p / top if top > 0 else 0.0 for p in config.profile]

    # -- draws ---------------------------------------------------------------------------------

    def uniform(self, device: int, what: str, k: int = 0) -> float:
        """A uniform number in (0, 1), fixed for (device, what, k)."""
        h = _mix(self._seed ^ _mix((device << 20) ^ (_SALTS[what] << 8) ^ (k * 0x9E3779B1)))
        return ((h >> 11) + 0.5) / 9007199254740992.0

    def lognormal(self, dist: Dist, device: int, what: str, k: int = 0) -> float:
        if dist.sigma == 0:
            return dist.median
        z = _NORMAL.inv_cdf(self.uniform(device, what, k))
        return dist.median * math.exp(dist.sigma * z)

    # -- availability --------------------------------------------------------------------------

    def tz_offset_min(self, device: int) -> int:
        zones = self.config.time_zones
        return zones[int(self.uniform(device, "tz") * len(zones))]

    def _phase(self, device: int) -> float:
        return self.uniform(device, "phase") * _HOUR

    def _online_hour(self, device: int, hour: int, phase: float, tz_s: float, act: float) -> bool:
        local = int(((hour * _HOUR + phase + self.epoch + tz_s) % _DAY) // _HOUR)
        return self.uniform(device, "online", hour) < min(1.0, self._hourly[local] * act)

    def _hours(self, device: int) -> tuple[float, float, float]:
        activity = self.lognormal(Dist(1.0, self.config.activity_sigma), device, "activity")
        return self._phase(device), self.tz_offset_min(device) * 60.0, activity

    def next_online(self, device: int, t: float) -> float:
        """The first moment at or after ``t`` the device is online (inf: not within 14 days)."""
        if self.config.availability == "always":
            return t
        phase, tz_s, act = self._hours(device)
        first = _hour_of(t, phase)
        for hour in range(first, first + _SCAN_HOURS):
            if self._online_hour(device, hour, phase, tz_s, act):
                return max(t, hour * _HOUR + phase)
        return math.inf

    def online_until(self, device: int, t: float) -> float:
        """When the online stretch that holds ``t`` ends (``t`` itself if offline at ``t``)."""
        if self.config.availability == "always":
            return math.inf
        phase, tz_s, act = self._hours(device)
        hour = _hour_of(t, phase)
        end = t
        for h in range(hour, hour + _SCAN_HOURS):
            if not self._online_hour(device, h, phase, tz_s, act):
                break
            end = (h + 1) * _HOUR + phase
        return end

    # -- consent -------------------------------------------------------------------------------

    def opt_in_at(self, device: int) -> float:
        c = self.config
        if self.uniform(device, "opt_in") < c.initially_opted_in:
            return 0.0
        if c.opt_in_per_day <= 0:
            return math.inf
        u = self.uniform(device, "opt_in", 1)
        return -math.log(u) / c.opt_in_per_day * _DAY

    def opt_out_at(self, device: int) -> float:
        c = self.config
        if c.opt_out_per_day <= 0:
            return math.inf
        return (
            self.opt_in_at(device)
            - math.log(self.uniform(device, "opt_out")) / (c.opt_out_per_day) * _DAY
        )

    # -- one assignment ------------------------------------------------------------------------

    def startup_s(self, device: int, round_: int) -> float:
        """Time from receiving the model to training: loading, reading the history."""
        return self.lognormal(self.config.startup_s, device, "startup", round_)

    def speed(self, device: int) -> float:
        """Training speed: examples x epochs per second."""
        return self.lognormal(self.config.examples_per_s, device, "speed")

    def train_s(self, device: int, round_: int, examples: int, epochs: int) -> float:
        seconds = examples * epochs / self.speed(device)
        if self.uniform(device, "straggler", round_) < self.config.straggler_share:
            seconds = (seconds + self.startup_s(device, round_)) * self.config.straggler_slowdown
        return seconds

    def dropout_at(self, device: int, round_: int) -> float | None:
        """If the device goes away during this assignment: the fraction of its startup time
        after which it does; None if it stays."""
        if self.uniform(device, "drop", round_) >= self.config.dropout:
            return None
        return self.uniform(device, "drop_at", round_)

    def reconnect_s(self, device: int, k: int) -> float:
        return self.lognormal(self.config.reconnect_s, device, "reconnect", k)

    def jitter_s(self, device: int, k: int) -> float:
        """A small start-up delay, so devices online at the start do not all knock at once."""
        return self.uniform(device, "jitter", k) * 30.0

    # -- network -------------------------------------------------------------------------------

    def link(self, device: int, *, upload: bool) -> tuple[float, float]:
        """(bandwidth in Mbit/s, latency in seconds) of the device's frames one way."""
        c = self.config
        mbps = self.lognormal(
            c.up_mbps if upload else c.down_mbps, device, "up" if upload else "down"
        )
        return mbps, self.lognormal(c.latency_ms, device, "latency") / 1000.0

    def transfer_s(self, device: int, nbytes: int, *, upload: bool) -> float:
        mbps, latency = self.link(device, upload=upload)
        return latency + nbytes * 8.0 / (mbps * 1e6)

    def eligibility(self, device: int) -> dict[str, bool]:
        c = self.config
        return {
            "idle": self.uniform(device, "idle") < c.idle,
            "charging": self.uniform(device, "charging") < c.charging,
            "unmetered": self.uniform(device, "unmetered") < c.unmetered,
        }
