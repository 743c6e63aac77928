"""The ``revisit_7d`` objective: "will this site be visited again within N days?".

Runs inside the worker: URLs and titles go in, only hashed indices and numbers come out, and
those never leave the device except as the trained model's clipped update.

Feature layout (``num_features(config) = NUM_DENSE + num_buckets``):

====  ==========================================================================
0-1   time of day, sin and cos (local time: ``visit_time`` + ``tz_offset_min``)
2-3   day of week, sin and cos (local time)
4     log1p(earlier visits to this host) / 4
5     1 if this is the first visit to this host in the history, else 0
6     log1p(hours since the previous visit to this host) / 7 (0 on a first visit)
7     log1p(distinct earlier days this host was visited) / 3
8     path depth of the URL, capped at 5, / 5
9     log1p(visits to this host in the 24 hours before) / 3
10    log1p(visits to any host in the 24 hours before) / 6
11-19 transition one-hot, in ``TRANSITIONS`` order
20-   hashed host bucket (one-hot; blake2b of the host, stable across runs and runtimes)
====  ==========================================================================
"""

from __future__ import annotations

import bisect
import hashlib
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from ..models.spec import Example
from ..objective import Objective
from ..signals import TRANSITIONS, Signals, VisitRecord

__all__ = [
    "NUM_DENSE",
    "TRANSITIONS",
    "FeatureConfig",
    "Revisit",
    "VisitRecord",
    "extract_examples",
    "host_bucket",
    "host_of",
    "num_features",
]

_TRANSITION_INDEX = {t: i for i, t in enumerate(TRANSITIONS)}
NUM_DENSE = 11 + len(TRANSITIONS)
_DAY = 86400.0
_HOUR = 3600.0
_TAU = 2 * math.pi


@dataclass(frozen=True, slots=True)
class FeatureConfig:
    num_buckets: int = 1024
    horizon_days: float = 7.0

    def to_dict(self) -> dict[str, Any]:
        return {"num_buckets": self.num_buckets, "horizon_days": self.horizon_days}

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> FeatureConfig:
        config = cls(
            num_buckets=int(raw.get("num_buckets", 1024)),
            horizon_days=float(raw.get("horizon_days", 7.0)),
        )
        if config.num_buckets < 1 or config.horizon_days <= 0:
            raise ValueError("need num_buckets >= 1 and horizon_days > 0")
        return config


def num_features(config: FeatureConfig) -> int:
    return NUM_DENSE + config.num_buckets


_split: Any = None


def _urlsplit(url: str) -> Any:
    # urllib.parse is imported on first use: in Pyodide it costs ~90 ms, which the worker
    # should not pay before its first check-in (it needs it only to turn visits into examples).
    global _split
    if _split is None:
        from urllib.parse import urlsplit

        _split = urlsplit
    return _split(url)


def host_of(url: str) -> str:
    """The URL's host, lower case, without a leading ``www.``; "" if it has none."""
    return _host_and_depth(url)[0]


# A URL with nothing urlsplit would have to untangle (no user, port, query, fragment, escape or
# whitespace): host and path are read off directly, with the same result urlsplit gives.
_PLAIN_URL = re.compile(r"https?://([A-Za-z0-9.-]+)((?:/[A-Za-z0-9._~-]*)*)")


def _host_and_depth(url: str) -> tuple[str, int]:
    """``host_of(url)`` and the path depth, from one parse; ("", 0) if it does not parse."""
    plain = _PLAIN_URL.fullmatch(url)
    if plain is not None:
        host = plain.group(1).lower()
        depth = len([p for p in plain.group(2).split("/") if p])
        return (host[4:] if host.startswith("www.") else host), depth
    try:
        parts = _urlsplit(url)
    except ValueError:
        return "", 0
    host = parts.hostname or ""
    depth = len([p for p in parts.path.split("/") if p])
    return (host[4:] if host.startswith("www.") else host), depth


def host_bucket(host: str, num_buckets: int) -> int:
    """A stable bucket for ``host``: the same in every process and in Pyodide."""
    digest = hashlib.blake2b(host.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") % num_buckets


def _path_depth(url: str) -> int:
    return _host_and_depth(url)[1]


def extract_examples(
    visits: Sequence[VisitRecord], config: FeatureConfig, now: float, *, all_visits: bool = False
) -> list[Example]:
    """One example per visit whose horizon has fully passed by ``now``; label 1 if the same host
    was visited again within the horizon after it. With ``all_visits``, one per visit (to a
    host) whatever its age, labels as far as known: what ``predict()`` scores."""
    horizon = config.horizon_days * _DAY
    ordered = sorted(visits, key=lambda v: v.visit_time)
    parsed = [_host_and_depth(v.url) for v in ordered]
    hosts = [host for host, _ in parsed]
    buckets: dict[str, int] = {}
    times_of: dict[str, list[float]] = {}
    for host, visit in zip(hosts, ordered, strict=True):
        times_of.setdefault(host, []).append(visit.visit_time)
    all_times = [v.visit_time for v in ordered]
    seen_count: dict[str, int] = {}
    seen_days: dict[str, set[int]] = {}
    examples: list[Example] = []
    for n, (host, visit) in enumerate(zip(hosts, ordered, strict=True)):
        t = visit.visit_time
        prior = seen_count.get(host, 0)
        days = seen_days.setdefault(host, set())
        if host and (all_visits or t <= now - horizon):
            times = times_of[host]
            k = bisect.bisect_right(times, t)
            label = int(k < len(times) and times[k] <= t + horizon)
            previous = None
            if prior:
                # The latest earlier visit; earlier visits at this same instant count as 0 h ago.
                before = bisect.bisect_left(times, t)
                previous = times[before - 1] if before else t
            bucket = buckets.get(host)
            if bucket is None:
                bucket = buckets[host] = host_bucket(host, config.num_buckets)
            examples.append(
                _example(
                    visit,
                    parsed[n][1],
                    bucket,
                    prior,
                    previous,
                    len(days),
                    n,
                    all_times,
                    times,
                    label,
                )
            )
        seen_count[host] = prior + 1
        days.add(int((t + visit.tz_offset_min * 60) // _DAY))
    return examples


def _example(
    visit: VisitRecord,
    depth: int,
    bucket: int,
    prior: int,
    previous: float | None,
    distinct_days: int,
    position: int,
    all_times: list[float],
    host_times: list[float],
    label: int,
) -> Example:
    t = visit.visit_time
    local = t + visit.tz_offset_min * 60
    day_frac = (local % _DAY) / _DAY
    week_frac = ((local / _DAY + 3) % 7) / 7  # 1970-01-01 was a Thursday: +3 makes Monday 0
    since = (t - previous) / _HOUR if previous is not None else 0.0
    host_day = bisect.bisect_left(host_times, t) - bisect.bisect_left(host_times, t - _DAY)
    any_day = position - bisect.bisect_left(all_times, t - _DAY)
    dense = [
        math.sin(_TAU * day_frac),
        math.cos(_TAU * day_frac),
        math.sin(_TAU * week_frac),
        math.cos(_TAU * week_frac),
        math.log1p(prior) / 4,
        1.0 if prior == 0 else 0.0,
        math.log1p(since) / 7,
        math.log1p(distinct_days) / 3,
        min(depth, 5) / 5,
        math.log1p(host_day) / 3,
        math.log1p(any_day) / 6,
    ]
    indices = list(range(len(dense)))
    values = dense
    indices.append(11 + _TRANSITION_INDEX.get(visit.transition, len(TRANSITIONS) - 1))
    values.append(1.0)
    indices.append(NUM_DENSE + bucket)
    values.append(1.0)
    return Example(tuple(indices), tuple(values), label)


class Revisit(Objective):
    """``revisit_7d``: for each visit whose horizon has passed, was the same host visited again
    within ``horizon_days``? A binary classification; labels need the horizon to pass, so a new
    install contributes after ``horizon_days``. ``predict()`` scores the latest visit of each of
    the 50 most recently visited hosts: the probability that it is visited again in time."""

    signals = ("visits",)
    default_model = "logreg"
    defaults: ClassVar[Mapping[str, Any]] = {"num_buckets": 1024, "horizon_days": 7.0}

    def configure(self, features: Any) -> dict[str, Any]:
        out = super().configure(features)
        FeatureConfig.from_dict(out)  # raises ValueError for out-of-range values
        return out

    def num_features(self, features: Any) -> int:
        return num_features(FeatureConfig.from_dict(dict(features)))

    def outputs(self, features: Any) -> list[str]:
        return ["not_revisited", "revisited"]

    def examples(self, signals: Signals, features: Any, now: float) -> list[Example]:
        return extract_examples(signals.visits, FeatureConfig.from_dict(dict(features)), now)

    def predict_inputs(
        self, signals: Signals, features: Any, now: float
    ) -> list[tuple[str, Example]]:
        config = FeatureConfig.from_dict(dict(features))
        visits = sorted(signals.visits, key=lambda v: v.visit_time)
        hosts = [host_of(v.url) for v in visits]
        examples = extract_examples(visits, config, now, all_visits=True)
        latest: dict[str, Example] = {}
        for host, ex in zip((h for h in hosts if h), examples, strict=True):
            latest.pop(host, None)
            latest[host] = ex  # insertion order: most recent last
        return list(latest.items())[-50:][::-1]

    def synthetic(
        self, user_seed: int, features: Any, days: float, start: float, population: Any
    ) -> Signals:
        from ..synthetic import generate_history, synthetic_config

        visits = generate_history(user_seed, days, synthetic_config(population), start)
        return Signals(visits=tuple(visits))
