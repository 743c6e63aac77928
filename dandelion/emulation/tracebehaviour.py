"""The behaviour model with availability, bandwidth and speed replayed from a session trace.

A device is online exactly in its trace sessions (``Trace.next_online``, ``online_until``);
its binary frames take the bandwidth and latency of the session it is in when they are sent,
and its training the speed of the session it is in when training starts. What a session leaves
out, and everything a trace does not describe (start-up time, stragglers, dropouts, consent,
eligibility), stays the population file's draw for that device (:class:`Behaviour`).

Times are the emulation's clock: seconds since the run's start, which in-process is the
virtual event loop's ``time()``; frames and training read it from the running loop.
"""

from __future__ import annotations

import asyncio

from .behaviour import Behaviour
from .population import PopulationConfig
from .trace import Trace

__all__ = ["TraceBehaviour"]


def _now() -> float:
    try:
        return asyncio.get_running_loop().time()
    except RuntimeError:  # outside a loop (a direct call): the run's start
        return 0.0


class TraceBehaviour(Behaviour):
    def __init__(self, config: PopulationConfig, epoch: float, trace: Trace) -> None:
        super().__init__(config, epoch)
        self.trace = trace

    def next_online(self, device: int, t: float) -> float:
        return self.trace.next_online(device, t)

    def online_until(self, device: int, t: float) -> float:
        return self.trace.online_until(device, t)

    def link_at(self, device: int, at: float, *, upload: bool) -> tuple[float, float]:
        """(Mbit/s, latency in seconds) of a frame sent at ``at``: the session's, where it
        gives them, else the population file's draw."""
        mbps, latency = super().link(device, upload=upload)
        session = self.trace.at(device, at)
        if session is not None:
            given = session.up_mbps if upload else session.down_mbps
            mbps = given if given is not None else mbps
            if session.latency_ms is not None:
                latency = session.latency_ms / 1000.0
        return mbps, latency

    def link(self, device: int, *, upload: bool) -> tuple[float, float]:
        return self.link_at(device, _now(), upload=upload)

    def speed_at(self, device: int, at: float) -> float:
        session = self.trace.at(device, at)
        if session is not None and session.examples_per_s is not None:
            return session.examples_per_s
        return super().speed(device)

    def speed(self, device: int) -> float:
        return self.speed_at(device, _now())
