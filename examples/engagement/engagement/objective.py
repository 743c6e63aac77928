"""``long_read``: will a page stay in front for at least ``threshold_s`` seconds?

Labelled on the first day: the time a page spent in front is known as soon as the user leaves
it (the extension measures it, signals type ``pageTimes``), so a new install contributes at
once. Only numbers leave this module; hosts are hashed into buckets.

Features (``num_features = 7 + num_buckets``):

===  ======================================================================
0-1  time of day, sin and cos (local time)
2-3  day of week, sin and cos (local time)
4    log1p(earlier page times on this host) / 4
5    log1p(mean earlier seconds in front on this host) / 6 (0 if none)
6    share of earlier page times on this host that were long reads
7-   hashed host bucket (one-hot)
===  ======================================================================
"""

from __future__ import annotations

import hashlib
import math
import random
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from dandelion.taskspec import Example, Objective, PageTime, Signals, register_objective

__all__ = ["LongRead"]

_DAY = 86400.0
_TAU = 2 * math.pi
_DENSE = 7


def _host(url: str) -> str:
    rest = url.split("://", 1)[-1]
    host = rest.split("/", 1)[0].split(":", 1)[0].lower()
    return host[4:] if host.startswith("www.") else host


def _bucket(host: str, buckets: int) -> int:
    digest = hashlib.blake2b(host.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") % buckets


@register_objective("long_read")
class LongRead(Objective):
    signals = ("pageTimes",)
    default_model = "relu_net"
    defaults: ClassVar[Mapping[str, Any]] = {"num_buckets": 256, "threshold_s": 30.0}

    def configure(self, features: Mapping[str, Any]) -> dict[str, Any]:
        out = super().configure(features)
        if out["num_buckets"] < 1:
            raise ValueError("num_buckets: an integer >= 1")
        if out["threshold_s"] <= 0:
            raise ValueError("threshold_s: a number > 0")
        return out

    def num_features(self, features: Mapping[str, Any]) -> int:
        return _DENSE + int(features["num_buckets"])

    def outputs(self, features: Mapping[str, Any]) -> list[str]:
        return ["short", "long"]

    def _rows(
        self, pages: Sequence[PageTime], tz_min: int, features: Mapping[str, Any]
    ) -> list[tuple[str, Example]]:
        threshold = float(features["threshold_s"])
        buckets = int(features["num_buckets"])
        seen: dict[str, list[float]] = {}
        rows = []
        for page in sorted(pages, key=lambda p: p.start):
            host = _host(page.url)
            if not host:
                continue
            earlier = seen.setdefault(host, [])
            rows.append(
                (
                    host,
                    self._example(
                        host, page.start, earlier, tz_min, threshold, buckets, page.seconds
                    ),
                )
            )
            earlier.append(page.seconds)
        return rows

    @staticmethod
    def _example(
        host: str,
        when: float,
        earlier: list[float],
        tz_min: int,
        threshold: float,
        buckets: int,
        seconds: float,
    ) -> Example:
        local = when + tz_min * 60
        day = (local % _DAY) / _DAY
        week = ((local / _DAY + 3) % 7) / 7
        mean = sum(earlier) / len(earlier) if earlier else 0.0
        share = sum(s >= threshold for s in earlier) / len(earlier) if earlier else 0.0
        dense = [
            math.sin(_TAU * day),
            math.cos(_TAU * day),
            math.sin(_TAU * week),
            math.cos(_TAU * week),
            math.log1p(len(earlier)) / 4,
            math.log1p(mean) / 6,
            share,
        ]
        indices = (*range(_DENSE), _DENSE + _bucket(host, buckets))
        return Example(indices, (*dense, 1.0), int(seconds >= threshold))

    def examples(self, signals: Signals, features: Mapping[str, Any], now: float) -> list[Example]:
        return [ex for _, ex in self._rows(signals.page_times, signals.tz_offset_min, features)]

    def predict_inputs(
        self, signals: Signals, features: Mapping[str, Any], now: float
    ) -> list[tuple[str, Example]]:
        """For each of the 20 hosts last read: a visit to it now, would it be a long read?"""
        threshold = float(features["threshold_s"])
        buckets = int(features["num_buckets"])
        history: dict[str, list[float]] = {}
        for page in sorted(signals.page_times, key=lambda p: p.start):
            host = _host(page.url)
            if host:
                history.pop(host, None)
                history[host] = [*history.get(host, []), page.seconds]
        recent = list(history.items())[-20:][::-1]
        tz = signals.tz_offset_min
        return [
            (host, self._example(host, now, times, tz, threshold, buckets, 0.0))
            for host, times in recent
        ]

    def synthetic(
        self,
        user_seed: int,
        features: Mapping[str, Any],
        days: float,
        start: float,
        population: Mapping[str, Any],
    ) -> Signals:
        """Visits from Dandelion's history generator, each with a time in front drawn from a
        log-normal whose mean depends on the host (some are for reading, some for glancing)
        and on the hour (longer in the evening)."""
        from dandelion.taskspec.synthetic import generate_history, synthetic_config

        visits = generate_history(user_seed, days, synthetic_config(population), start)
        rng = random.Random(user_seed * 7919 + 11)
        taste = rng.gauss(0.0, 0.3)
        pages = []
        for visit in visits:
            host = _host(visit.url)
            readiness = (_bucket(host, 1000) / 1000.0 - 0.5) * 3.0
            hour = ((visit.visit_time + visit.tz_offset_min * 60) % _DAY) / 3600.0
            evening = 0.6 if 18 <= hour < 23 else 0.0
            mu = math.log(20.0) + readiness + evening + taste
            pages.append(PageTime(visit.url, visit.visit_time, rng.lognormvariate(mu, 0.6)))
        return Signals(visits=tuple(visits), page_times=tuple(pages), tz_offset_min=0)
