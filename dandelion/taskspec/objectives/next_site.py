"""The ``next_site`` objective: "which of my frequent sites comes next?".

The classes are ranks, not hosts: class k (0-based) is "my (k+1)-th most visited host", ranked
on the device over its own visit history, and class ``top_k`` is every other host. One global
model then fits every user ("after a typed visit to my 2nd site, in the evening, my 1st comes
next") and no host name is part of the model or leaves the device. Each visit after the first
``WARMUP`` is an example whose label is the class of the *next* visit's host: the label exists
as soon as the next visit happens, so a new install contributes on its first day.

The ranking (:func:`ranked_hosts`): visits per host over the whole history up to ``now``, ties
broken by the more recent last visit, then by host name. The same rule names the classes for
``predict()``: ``scores[k]`` is the probability that the next site is ``ranked_hosts(...)[k]``,
``scores[top_k]`` that it is none of them (a user with fewer than ``top_k`` hosts never sees
the classes past their last host).

Feature layout, C = ``top_k`` + 1 classes, T = ``len(TRANSITIONS)`` = 9
(``num_features = 5 + 4C + T + num_buckets``: 50 + ``num_buckets`` with ``top_k`` = 8):

==============  ===========================================================================
0-1             time of day, sin and cos (local time: ``visit_time`` + ``tz_offset_min``)
2-3             day of week, sin and cos (local time)
4               log1p(minutes since the previous visit) / 10, at most 1 (0 on the first)
5 …             the current host's class, one-hot (C)
5+C …           the previous visit's class, one-hot (C; none on the first visit)
5+2C …          the current visit's transition, one-hot in ``TRANSITIONS`` order (T)
5+2C+T …        log1p(earlier visits of each class in the hour before) / 3, at most 1 (C)
5+3C+T …        log1p(earlier visits of each class in the 24 hours before) / 5, at most 1 (C)
5+4C+T …        the current host's hashed bucket, one-hot (``num_buckets``; none if 0)
==============  ===========================================================================

Every value is in [-1, 1]; only the non-zero ones are stored (besides 0-4).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any, ClassVar

from ..models.spec import Example
from ..objective import Objective
from ..signals import TRANSITIONS, Signals, VisitRecord
from .cycles import time_cycles
from .revisit import host_bucket, host_of

__all__ = [
    "SESSION_ORDER",
    "WARMUP",
    "NextSite",
    "class_of",
    "layout",
    "next_site_examples",
    "ranked_hosts",
]

#: How ``synthetic()`` orders sessions: ``SyntheticConfig``'s ``open_with_habit`` and
#: ``stay_share`` (both 0 in the histories other objectives use).
SESSION_ORDER = (0.6, 0.4)
#: The first visits of a history make no example: their recent-history features are empty.
WARMUP = 3
_HOUR = 3600.0
_DAY = 86400.0
_TRANSITION_INDEX = {t: i for i, t in enumerate(TRANSITIONS)}


def layout(top_k: int) -> dict[str, int]:
    """Where each block of features starts, for ``top_k`` ranked hosts (see the module doc)."""
    c, t = top_k + 1, len(TRANSITIONS)
    return {
        "current": 5,
        "previous": 5 + c,
        "transition": 5 + 2 * c,
        "hour": 5 + 2 * c + t,
        "day": 5 + 3 * c + t,
        "bucket": 5 + 4 * c + t,
    }


def _hosted(visits: Sequence[VisitRecord], now: float) -> list[tuple[str, VisitRecord]]:
    ordered = sorted((v for v in visits if v.visit_time <= now), key=lambda v: v.visit_time)
    return [(host, v) for host, v in ((host_of(v.url), v) for v in ordered) if host]


def _rank(hosted: Sequence[tuple[str, VisitRecord]], top_k: int) -> list[str]:
    count: dict[str, int] = {}
    last: dict[str, float] = {}
    for host, visit in hosted:
        count[host] = count.get(host, 0) + 1
        last[host] = visit.visit_time
    order = sorted(count, key=lambda h: (-count[h], -last[h], h))
    return order[:top_k]


def ranked_hosts(visits: Sequence[VisitRecord], top_k: int = 8, now: float = math.inf) -> list[str]:
    """The user's ``top_k`` most visited hosts up to ``now``, most visited first: class k of
    ``next_site`` is ``ranked_hosts(...)[k]``. Runs on the device, for a page to name the
    scores ``predict()`` returns; fewer than ``top_k`` if the history has fewer hosts."""
    return _rank(_hosted(visits, now), top_k)


def class_of(host: str, ranked: Sequence[str], top_k: int) -> int:
    """The class of ``host``: its place in ``ranked`` (from :func:`ranked_hosts`), or the
    "other" class ``top_k`` when it is not there."""
    return ranked.index(host) if host in ranked else top_k


def next_site_examples(
    visits: Sequence[VisitRecord], top_k: int, num_buckets: int, now: float
) -> tuple[list[str], list[Example]]:
    """The ranked hosts and one example per visit up to ``now`` (oldest first), each labelled
    with the next visit's class; the latest visit's label is the "other" class, a placeholder
    (its next visit has not happened)."""
    hosted = _hosted(visits, now)
    ranked = _rank(hosted, top_k)
    index = {host: k for k, host in enumerate(ranked)}
    classes = [index.get(host, top_k) for host, _ in hosted]
    times = [v.visit_time for _, v in hosted]
    at = layout(top_k)
    c = top_k + 1
    hour, day = [0] * c, [0] * c
    out_h = out_d = 0
    buckets: dict[str, int] = {}
    examples: list[Example] = []
    for i, (host, visit) in enumerate(hosted):
        t = times[i]
        if i:
            hour[classes[i - 1]] += 1
            day[classes[i - 1]] += 1
        while out_h < i and times[out_h] <= t - _HOUR:
            hour[classes[out_h]] -= 1
            out_h += 1
        while out_d < i and times[out_d] <= t - _DAY:
            day[classes[out_d]] -= 1
            out_d += 1
        minutes = (t - times[i - 1]) / 60.0 if i else 0.0
        indices: list[int] = [0, 1, 2, 3, 4, at["current"] + classes[i]]
        values: list[float] = [*time_cycles(t, visit.tz_offset_min)]
        values += [min(math.log1p(minutes) / 10, 1.0), 1.0]
        if i:
            indices.append(at["previous"] + classes[i - 1])
            values.append(1.0)
        indices.append(
            at["transition"] + _TRANSITION_INDEX.get(visit.transition, len(TRANSITIONS) - 1)
        )
        values.append(1.0)
        for start, counts, scale in ((at["hour"], hour, 3.0), (at["day"], day, 5.0)):
            for k, n in enumerate(counts):
                if n:
                    indices.append(start + k)
                    values.append(min(math.log1p(n) / scale, 1.0))
        if num_buckets:
            bucket = buckets.get(host)
            if bucket is None:
                bucket = buckets[host] = host_bucket(host, num_buckets)
            indices.append(at["bucket"] + bucket)
            values.append(1.0)
        label = classes[i + 1] if i + 1 < len(hosted) else top_k
        examples.append(Example(tuple(indices), tuple(values), label))
    return ranked, examples


class NextSite(Objective):
    """``next_site``: the class (own host rank, or "other") of the visit after each visit; a
    ``top_k + 1``-class classification, labelled on the first day. ``predict()`` scores one
    item, ``"next"``: what follows the latest visit (``scores[k]``: the k-th of
    :func:`ranked_hosts`; the last score: any other host)."""

    signals = ("visits",)
    default_model = "softmax"
    defaults: ClassVar[Mapping[str, Any]] = {"top_k": 8, "num_buckets": 0}

    def configure(self, features: Mapping[str, Any]) -> dict[str, Any]:
        out = super().configure(features)
        if not 1 <= out["top_k"] <= 100:
            raise ValueError("top_k: an integer from 1 to 100")
        if not 0 <= out["num_buckets"] <= 1_000_000:
            raise ValueError("num_buckets: an integer from 0 (no host feature) to 1,000,000")
        return out

    def num_features(self, features: Mapping[str, Any]) -> int:
        return layout(int(features["top_k"]))["bucket"] + int(features["num_buckets"])

    def outputs(self, features: Mapping[str, Any]) -> list[str]:
        return [f"top_{k + 1}" for k in range(int(features["top_k"]))] + ["other"]

    def examples(self, signals: Signals, features: Mapping[str, Any], now: float) -> list[Example]:
        top_k, buckets = int(features["top_k"]), int(features["num_buckets"])
        _, rows = next_site_examples(signals.visits, top_k, buckets, now)
        return rows[WARMUP:-1]

    def predict_inputs(
        self, signals: Signals, features: Mapping[str, Any], now: float
    ) -> list[tuple[str, Example]]:
        top_k, buckets = int(features["top_k"]), int(features["num_buckets"])
        _, rows = next_site_examples(signals.visits, top_k, buckets, now)
        return [("next", rows[-1])] if rows else []

    def synthetic(
        self,
        user_seed: int,
        features: Mapping[str, Any],
        days: float,
        start: float,
        population: Mapping[str, Any],
    ) -> Signals:
        """Dandelion's history generator (habit domains, sessions, transitions) with ordered
        sessions: most open on a habit domain, and a visit often stays on the site before."""
        from ..synthetic import generate_history, synthetic_config

        opening, stay = SESSION_ORDER
        config = replace(synthetic_config(population), open_with_habit=opening, stay_share=stay)
        visits = generate_history(user_seed, days, config, start)
        return Signals(visits=tuple(visits))
