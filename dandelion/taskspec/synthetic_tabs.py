"""Synthetic tab events, and the visits they make, with the structure of real tab switching.

One user (the history generator's profile: time zone, activity, habit domains, interests)
browses in sessions that peak in the local evening. In a session the user brings tabs to the
front one after another: a new tab (``created``, ``activated``, then ``updated`` with its URL
and a visit), or one of the open tabs (``activated``); now and then the tab in front navigates
(``updated`` and a visit, a link) or is closed (``closed``) when the user leaves it. How long a
tab stays in front is log-normal (sigma ``DWELL_SIGMA``) around a median that depends on

- the user's tempo: a per-user factor (log-normal, sigma 0.5) on ``DWELL_MEDIAN_S``;
- the host: some hosts are held longer, by a per-host factor from e^-1 to e^1 that is the same
  for every user (a stable hash of the host);
- the hour: ``EVENING`` longer from 19:00 to 23:00 local time;
- a tab just opened is held ``NEW_TAB`` longer, and a page the user typed or opened from a
  bookmark ``TYPED`` longer.

The last tab of a session stays in front until the next session. Standard library only and
deterministic per seed: the same events in CPython and Pyodide.
"""

from __future__ import annotations

import hashlib
import math
import random

from .signals import TabEvent, VisitRecord
from .synthetic import (
    _DIURNAL,
    _HABIT_CUM,
    _HABIT_TRANSITIONS,
    SyntheticConfig,
    _catalogue,
    _cumulative,
    _draw,
    _poisson,
    _zipf_cdf,
    user_profile,
)

__all__ = [
    "DWELL_MEDIAN_S",
    "DWELL_SIGMA",
    "EVENING",
    "NEW_TAB",
    "TYPED",
    "generate_tabs",
    "host_factor",
]

DWELL_MEDIAN_S = 30.0
DWELL_SIGMA = 0.6
EVENING = math.log(1.8)  # log-factors on the median
NEW_TAB = math.log(1.6)
TYPED = math.log(1.4)
_ACTIVATIONS_PER_SESSION = 10.0
_NEW_TAB_SHARE = 0.35
_NAVIGATE_SHARE = 0.25
_CLOSE_SHARE = 0.2
_MAX_OPEN = 12
_NEW_TAB_TRANSITIONS = ("typed", "auto_bookmark", "link", "generated")
_NEW_TAB_CUM = (4, 6, 9, 10)


def host_factor(host: str) -> float:
    """The host's log-factor on the median time in front, in [-1, 1]: the same for every user."""
    digest = hashlib.blake2b(b"dwell:" + host.encode(), digest_size=8).digest()
    return (int.from_bytes(digest, "little") % 10_001) / 5_000.0 - 1.0


def generate_tabs(
    user_seed: int, days: float, config: SyntheticConfig, start: float
) -> tuple[list[TabEvent], list[VisitRecord], int]:
    """``days`` of one user's tab events and visits from ``start`` (epoch seconds), each in
    time order, and the user's time zone (minutes east of UTC)."""
    profile = user_profile(user_seed, config)
    rng = random.Random(user_seed * 15_485_863 + 29)
    tempo = math.log(DWELL_MEDIAN_S) + rng.gauss(0.0, 0.5)
    names = _catalogue(config.categories, config.domains_per_category)
    zipf = _zipf_cdf(config.domains_per_category, config.zipf_s)
    cats = _cumulative(profile.interests)
    habit_cdf = _cumulative([h[2] for h in profile.habits])
    hours = _cumulative(_DIURNAL)
    tz = profile.tz_offset_min
    end = start + days * 86400.0
    events: list[TabEvent] = []
    visits: list[VisitRecord] = []
    open_tabs: dict[int, tuple[str, str]] = {}  # tab id -> (host, transition of its page)
    next_id = 1

    def site() -> tuple[str, str]:
        if profile.habits and rng.random() < config.habit_share:
            cat, rank, _ = profile.habits[_draw(rng, habit_cdf)]
            transition = rng.choices(_HABIT_TRANSITIONS, cum_weights=_HABIT_CUM)[0]
        else:
            cat, rank = _draw(rng, cats), _draw(rng, zipf)
            transition = rng.choices(_NEW_TAB_TRANSITIONS, cum_weights=_NEW_TAB_CUM)[0]
        return names[cat][rank], transition

    def visit(tab: int, host: str, t: float, transition: str) -> None:
        url = f"https://{host}/p{rng.randrange(1000)}"
        events.append(TabEvent("updated", tab, t, url, 1))
        visits.append(VisitRecord(url, f"{host} page", t, transition, tab, tz))

    sessions = []
    for day in range(math.ceil(days)):
        midnight_local = start + day * 86400.0 - tz * 60
        for _ in range(_poisson(rng, config.sessions_per_day * profile.activity)):
            hour = _draw(rng, hours)
            sessions.append(midnight_local + hour * 3600.0 + rng.random() * 3600.0)
    sessions.sort()
    for n, t in enumerate(sessions):
        stop = min(sessions[n + 1] if n + 1 < len(sessions) else end, end)
        current: int | None = None
        for _ in range(1 + _poisson(rng, _ACTIVATIONS_PER_SESSION - 1)):
            if t >= stop:
                break
            others = [tab for tab in open_tabs if tab != current]
            fresh = not others or rng.random() < _NEW_TAB_SHARE
            if fresh:
                tab, next_id = next_id, next_id + 1
                host, transition = site()
                events.append(TabEvent("created", tab, t, "", 1))
                events.append(TabEvent("activated", tab, t + 0.05, "", 1))
                visit(tab, host, t + 0.6, transition)
                open_tabs[tab] = (host, transition)
            else:
                tab = rng.choice(others)
                events.append(TabEvent("activated", tab, t, "", 1))
                host, transition = open_tabs[tab]
            current = tab
            hour_local = ((t + tz * 60) % 86400.0) / 3600.0
            mu = tempo + host_factor(host)
            mu += EVENING if 19 <= hour_local < 23 else 0.0
            mu += NEW_TAB if fresh else 0.0
            mu += TYPED if transition in ("typed", "auto_bookmark") else 0.0
            dwell = rng.lognormvariate(mu, DWELL_SIGMA)
            if rng.random() < _NAVIGATE_SHARE:
                # A link followed in the tab: later returns to it find the new page.
                host, _ = site()
                visit(tab, host, t + rng.random() * dwell + 0.7, "link")
                open_tabs[tab] = (host, "link")
            t += dwell + 0.05
            if t < stop and rng.random() < _CLOSE_SHARE and len(open_tabs) > 1:
                events.append(TabEvent("closed", tab, t, "", 1))
                del open_tabs[tab]
                current = None
            while len(open_tabs) > _MAX_OPEN:
                oldest = min(tab for tab in open_tabs if tab != current)
                events.append(TabEvent("closed", oldest, t, "", 1))
                del open_tabs[oldest]
    events = [e for e in events if e.time < end]
    events.sort(key=lambda e: e.time)
    visits = [v for v in visits if v.visit_time < end]
    visits.sort(key=lambda v: v.visit_time)
    return events, visits, tz
