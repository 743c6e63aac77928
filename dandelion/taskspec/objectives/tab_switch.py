"""The ``tab_switch`` objective: "how long until I switch tabs?".

Each time a tab is brought to the front (a tab event of kind ``"activated"``) is an example;
its target is log1p(seconds until the next activation), capped at ``cap_s`` (the tab stayed in
front that long, or the browser was left). The target is known as soon as the user switches
again, so a new install contributes on its first day. A regression: the model's one output,
``log_seconds_to_switch``, is in log1p-seconds; ``math.expm1(score)`` turns it into seconds.

The URL of an activated tab is the latest a tab event or a visit with that ``tabId`` gave it,
and its transition that of the latest visit in the tab (by ``tabId``, else by URL). A tab with
no URL yet (a new tab gets its URL just after it is activated) takes the first URL, and the
first visit's transition, that it gets in the ``SETTLE_S`` seconds after its activation.

Feature layout (``num_features = 11 + len(TRANSITIONS) + num_buckets``, 20 + ``num_buckets``),
L = log1p(``cap_s``):

=====  =============================================================================
0-1    time of day, sin and cos (local time: ``time`` + the signals' ``tzOffsetMin``)
2-3    day of week, sin and cos (local time)
4      log1p(seconds the previous tab stayed in front, at most ``cap_s``) / L (0 first)
5      mean over the last 20 switches of log1p(seconds in front) / L: the user's rhythm
6      log1p(tabs created in the 10 minutes before) / 3, at most 1
7      log1p(tabs closed in the 10 minutes before) / 3, at most 1
8      log1p(activations in the 10 minutes before) / 4, at most 1
9      1 if the tab was created in the ``SETTLE_S`` seconds before, else 0
10     1 if the tab's host is known, else 0
11-19  transition of the tab's latest visit, one-hot in ``TRANSITIONS`` order (none if unknown)
20-    hashed host bucket of the tab's URL, one-hot (none if unknown or ``num_buckets`` = 0)
=====  =============================================================================

Every value is in [-1, 1]; only the non-zero ones are stored (besides 0-5).
"""

from __future__ import annotations

import bisect
import math
from collections import deque
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from ..models.spec import Example
from ..objective import Objective
from ..signals import TRANSITIONS, Signals, TabEvent, VisitRecord
from .cycles import time_cycles
from .revisit import host_bucket, host_of

__all__ = ["NUM_DENSE", "RHYTHM", "SETTLE_S", "WINDOW_S", "TabSwitch", "tab_switch_examples"]

#: Dense features before the transition one-hot and the host buckets.
NUM_DENSE = 11
#: How long after its activation a tab's first URL still counts as its URL, and how recently a
#: tab must have been created to count as just created.
SETTLE_S = 10.0
#: The window of the created / closed / activated counts.
WINDOW_S = 600.0
#: How many earlier switches the rhythm feature averages.
RHYTHM = 20
_TRANSITION_INDEX = {t: i for i, t in enumerate(TRANSITIONS)}


def _timeline(signals: Signals, now: float) -> list[tuple[float, int, Any]]:
    # Visits and tab events in one time order; at one instant visits first, then tab events in
    # their given order (a tab's URL is then known when it is activated).
    rows: list[tuple[float, int, Any]] = []
    rows += [(v.visit_time, 0, v) for v in signals.visits if v.visit_time <= now]
    rows += [(e.time, 1, e) for e in signals.tabs if e.time <= now]
    rows.sort(key=lambda r: (r[0], r[1]))
    return rows


def _pages_given(rows: Sequence[tuple[float, int, Any]]) -> dict[int, list[tuple[float, int]]]:
    # Each tab's URLs as they came (time, position in ``rows``), oldest first: to look a few
    # seconds past the activation of a tab that has none yet.
    out: dict[int, list[tuple[float, int]]] = {}
    for n, (t, _, item) in enumerate(rows):
        if isinstance(item, TabEvent) and item.kind == "closed":
            continue
        if item.tab_id is not None and item.url:
            out.setdefault(item.tab_id, []).append((t, n))
    return out


def _settled(
    rows: Sequence[tuple[float, int, Any]], given: Sequence[tuple[float, int]], t: float
) -> tuple[str, str | None]:
    # The first URL a tab gets in the SETTLE_S seconds from ``t``, and the transition of the
    # first visit in it then (None if none).
    k = bisect.bisect_left(given, (t, -1))
    url, transition = "", None
    for when, n in given[k:]:
        if when > t + SETTLE_S:
            break
        item = rows[n][2]
        url = url or item.url
        if isinstance(item, VisitRecord):
            transition = item.transition
            break
    return url, transition


def tab_switch_examples(
    signals: Signals, num_buckets: int, cap_s: float, now: float
) -> list[tuple[Example, bool]]:
    """One example per activation up to ``now``, oldest first, each with whether its target is
    known (a later activation happened): the target is then log1p(seconds to it, at most
    ``cap_s``), else 0."""
    rows = _timeline(signals, now)
    ahead = _pages_given(rows)
    scale = math.log1p(cap_s)
    tz = signals.tz_offset_min
    url_of: dict[int, str] = {}
    created_at: dict[int, float] = {}
    transition_by_tab: dict[int, str] = {}
    transition_by_url: dict[str, str] = {}
    created: deque[float] = deque()
    closed: deque[float] = deque()
    activations: deque[float] = deque()
    rhythm: deque[float] = deque()
    hosts: dict[str, str] = {}
    buckets: dict[str, int] = {}
    starts: list[float] = []
    pending: list[tuple[list[int], list[float]]] = []
    for t, _, item in rows:
        if isinstance(item, VisitRecord):
            transition_by_url[item.url] = item.transition
            if item.tab_id is not None:
                url_of[item.tab_id] = item.url
                transition_by_tab[item.tab_id] = item.transition
            continue
        tab = item.tab_id
        if item.url and item.kind != "closed":
            url_of[tab] = item.url
        if item.kind == "created":
            created.append(t)
            created_at[tab] = t
        elif item.kind == "closed":
            closed.append(t)
            url_of.pop(tab, None)
        if item.kind != "activated":
            continue
        for window in (created, closed, activations):
            while window and window[0] <= t - WINDOW_S:
                window.popleft()
        if starts:
            rhythm.append(math.log1p(min(t - starts[-1], cap_s)) / scale)
            if len(rhythm) > RHYTHM:
                rhythm.popleft()
        url = url_of.get(tab, "")
        transition = transition_by_tab.get(tab) or transition_by_url.get(url)
        if not url:
            url, transition = _settled(rows, ahead.get(tab, ()), t)
        indices = [0, 1, 2, 3, 4, 5]
        values = [
            *time_cycles(t, tz),
            rhythm[-1] if rhythm else 0.0,
            sum(rhythm) / len(rhythm) if rhythm else 0.0,
        ]
        counts = ((6, created, 3.0), (7, closed, 3.0), (8, activations, 4.0))
        for i, window, divisor in counts:
            if window:
                indices.append(i)
                values.append(min(math.log1p(len(window)) / divisor, 1.0))
        if t - created_at.get(tab, -math.inf) <= SETTLE_S:
            indices.append(9)
            values.append(1.0)
        host = hosts.get(url)
        if host is None:
            host = hosts[url] = host_of(url) if url else ""
        if host:
            indices.append(10)
            values.append(1.0)
        if transition is not None:
            indices.append(NUM_DENSE + _TRANSITION_INDEX.get(transition, len(TRANSITIONS) - 1))
            values.append(1.0)
        if host and num_buckets:
            bucket = buckets.get(host)
            if bucket is None:
                bucket = buckets[host] = host_bucket(host, num_buckets)
            indices.append(NUM_DENSE + len(TRANSITIONS) + bucket)
            values.append(1.0)
        activations.append(t)
        starts.append(t)
        pending.append((indices, values))
    out = []
    for n, (indices, values) in enumerate(pending):
        known = n + 1 < len(starts)
        target = math.log1p(min(starts[n + 1] - starts[n], cap_s)) if known else 0.0
        out.append((Example(tuple(indices), tuple(values), 0, target), known))
    return out


class TabSwitch(Objective):
    """``tab_switch``: log1p(seconds until the next tab switch) after each activation, capped
    at ``cap_s``; a regression, labelled on the first day. ``predict()`` scores one item,
    ``"current tab"``: the tab activated last (``math.expm1(score)`` is the predicted seconds
    it stays in front, counted from its activation)."""

    task = "regression"
    signals = ("tabs", "visits")
    default_model = "linreg"
    defaults: ClassVar[Mapping[str, Any]] = {"num_buckets": 256, "cap_s": 3600.0}

    def configure(self, features: Mapping[str, Any]) -> dict[str, Any]:
        out = super().configure(features)
        if not 0 <= out["num_buckets"] <= 1_000_000:
            raise ValueError("num_buckets: an integer from 0 (no host feature) to 1,000,000")
        if not 60.0 <= out["cap_s"] <= 86400.0:
            raise ValueError("cap_s: seconds from 60 to 86400")
        return out

    def num_features(self, features: Mapping[str, Any]) -> int:
        return NUM_DENSE + len(TRANSITIONS) + int(features["num_buckets"])

    def outputs(self, features: Mapping[str, Any]) -> list[str]:
        return ["log_seconds_to_switch"]

    def _rows(self, signals: Signals, features: Mapping[str, Any], now: float) -> Any:
        return tab_switch_examples(
            signals, int(features["num_buckets"]), float(features["cap_s"]), now
        )

    def examples(self, signals: Signals, features: Mapping[str, Any], now: float) -> list[Example]:
        return [ex for ex, known in self._rows(signals, features, now) if known]

    def predict_inputs(
        self, signals: Signals, features: Mapping[str, Any], now: float
    ) -> list[tuple[str, Example]]:
        rows = self._rows(signals, features, now)
        return [("current tab", rows[-1][0])] if rows else []

    def synthetic(
        self,
        user_seed: int,
        features: Mapping[str, Any],
        days: float,
        start: float,
        population: Mapping[str, Any],
    ) -> Signals:
        """Tab events and visits from :mod:`dandelion.taskspec.synthetic_tabs`."""
        from ..synthetic import synthetic_config
        from ..synthetic_tabs import generate_tabs

        tabs, visits, tz = generate_tabs(user_seed, days, synthetic_config(population), start)
        return Signals(visits=tuple(visits), tabs=tuple(tabs), tz_offset_min=tz)
