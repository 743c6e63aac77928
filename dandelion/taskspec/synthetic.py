"""Synthetic browsing histories with the structure of real ones.

- A catalogue of ``categories x domains_per_category`` domains; within a category, popularity
  follows Zipf's law (rank^-zipf_s), so a few domains take most visits.
- Each user has an interest mixture over categories drawn from a Dirichlet with concentration
  ``heterogeneity``: small values give users with one or two interests (very non-IID), large
  values give users who look alike (near IID).
- Each user has a few habit domains (revisited daily or weekly), a time zone, and sessions that
  peak in the local evening, with a smaller lunchtime bump.
- Transitions are drawn as a browser would record them: habits are often typed or bookmarked,
  other visits mostly links, with reloads and form submissions.
- Optionally (both off by default, and then not a single draw differs), sessions have an order:
  a session opens on a habit domain with probability ``open_with_habit``, and a visit stays on
  the previous visit's domain (a link or a reload within the site) with probability
  ``stay_share``. ``next_site`` uses them: without them, which site comes next is independent
  of the site before.

Standard library only and deterministic per seed: the same history in CPython and Pyodide.
"""

from __future__ import annotations

import bisect
import functools
import math
import random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .signals import VisitRecord

__all__ = [
    "SyntheticConfig",
    "catalogue",
    "generate_history",
    "synthetic_config",
    "user_profile",
]

# Hour-of-day activity, local time: low at night, a lunchtime bump, an evening peak.
_DIURNAL = [
    0.3, 0.15, 0.08, 0.05, 0.05, 0.1, 0.3, 0.6, 0.8, 0.8, 0.8, 0.9,
    1.2, 1.1, 0.9, 0.8, 0.8, 0.9, 1.1, 1.5, 1.8, 1.8, 1.4, 0.8,
]  # fmt: skip
_TZ_OFFSETS_MIN = [-480, -420, -360, -300, -240, -180, 0, 60, 120, 180, 330, 480, 540, 600]
# Transitions and their weights, as cumulative weights (the same draws as plain weights).
_HABIT_TRANSITIONS = ("typed", "auto_bookmark", "link", "reload")
_HABIT_CUM = (5, 7, 10, 11)
_OTHER_TRANSITIONS = ("link", "typed", "reload", "form_submit", "generated", "keyword")
_OTHER_CUM = (14, 15, 16, 17, 18, 19)


@dataclass(frozen=True, slots=True)
class SyntheticConfig:
    categories: int = 12
    domains_per_category: int = 60
    zipf_s: float = 1.1
    heterogeneity: float = 0.5  # Dirichlet concentration of interests
    sessions_per_day: float = 2.5
    visits_per_session: float = 6.0
    habits: tuple[int, int] = (2, 7)  # min, max habit domains per user
    habit_share: float = 0.45  # share of visits that go to habit domains
    open_with_habit: float = 0.0  # chance that a session's first visit is to a habit domain
    stay_share: float = 0.0  # chance that a visit stays on the previous visit's domain


def synthetic_config(population: Mapping[str, Any]) -> SyntheticConfig:
    """The history generator's settings from a population's knobs (``heterogeneity``,
    ``zipf_s``; the defaults for any that are absent)."""
    return SyntheticConfig(
        heterogeneity=float(population.get("heterogeneity", 0.5)),
        zipf_s=float(population.get("zipf_s", 1.1)),
    )


@dataclass(frozen=True, slots=True)
class _Profile:
    interests: list[float]
    habits: list[tuple[int, int, float]]  # (category, rank, weight)
    tz_offset_min: int
    activity: float


def catalogue(config: SyntheticConfig) -> list[list[str]]:
    """Domain names by category, most popular first."""
    return [list(names) for names in _catalogue(config.categories, config.domains_per_category)]


@functools.cache
def _catalogue(categories: int, per_category: int) -> tuple[tuple[str, ...], ...]:
    # Made once per shape: the emulator builds thousands of users from one catalogue.
    return tuple(
        tuple(f"site{d:03d}.topic{c:02d}.example" for d in range(per_category))
        for c in range(categories)
    )


@functools.cache
def _zipf_cdf(n: int, s: float) -> list[float]:
    weights = [1.0 / (rank + 1) ** s for rank in range(n)]
    total = sum(weights)
    acc, cdf = 0.0, []
    for w in weights:
        acc += w / total
        cdf.append(acc)
    return cdf


def _draw(rng: random.Random, cdf: list[float]) -> int:
    # The first index whose cumulative weight reaches u (the last one at most).
    return bisect.bisect_left(cdf, rng.random() * cdf[-1], 0, len(cdf) - 1)


def _cumulative(weights: list[float]) -> list[float]:
    acc, out = 0.0, []
    for w in weights:
        acc += w
        out.append(acc)
    return out


def user_profile(user_seed: int, config: SyntheticConfig) -> _Profile:
    rng = random.Random(user_seed * 7919 + 17)
    alpha = max(config.heterogeneity, 1e-3)
    raw = [rng.gammavariate(alpha, 1.0) + 1e-12 for _ in range(config.categories)]
    total = sum(raw)
    interests = [r / total for r in raw]
    zipf = _zipf_cdf(config.domains_per_category, config.zipf_s)
    cats = _cumulative(interests)
    habits = []
    for _ in range(rng.randint(*config.habits)):
        cat = _draw(rng, cats)
        habits.append((cat, _draw(rng, zipf), rng.choice((3.0, 1.0, 0.3))))
    tz = rng.choice(_TZ_OFFSETS_MIN)
    activity = rng.lognormvariate(0.0, 0.4)
    return _Profile(interests, habits, tz, activity)


def _poisson(rng: random.Random, lam: float) -> int:
    threshold, k, p = math.exp(-lam), 0, 1.0
    while True:
        p *= rng.random()
        if p <= threshold:
            return k
        k += 1


def generate_history(
    user_seed: int, days: float, config: SyntheticConfig, start: float
) -> list[VisitRecord]:
    """``days`` of one user's visits starting at ``start`` (epoch seconds), in time order."""
    profile = user_profile(user_seed, config)
    rng = random.Random(user_seed * 104_729 + 3)
    names = _catalogue(config.categories, config.domains_per_category)
    zipf = _zipf_cdf(config.domains_per_category, config.zipf_s)
    cats = _cumulative(profile.interests)
    habit_cdf = _cumulative([h[2] for h in profile.habits])
    hours = _cumulative(_DIURNAL)
    offset = profile.tz_offset_min * 60
    visits: list[VisitRecord] = []
    for day in range(math.ceil(days)):
        midnight_local = start + day * 86400.0 - offset
        for _ in range(_poisson(rng, config.sessions_per_day * profile.activity)):
            hour = _draw(rng, hours)
            t = midnight_local + hour * 3600.0 + rng.random() * 3600.0
            previous: VisitRecord | None = None
            for _ in range(1 + _poisson(rng, config.visits_per_session - 1)):
                t += rng.expovariate(1 / 90.0)
                if t >= start + days * 86400.0:
                    break
                # Each knob draws only when it is on: with both off, histories stay as they were.
                if previous is not None and config.stay_share and rng.random() < config.stay_share:
                    visit = _stay(rng, previous, t)
                else:
                    share = config.habit_share
                    if previous is None and config.open_with_habit:
                        share = 1.0 if rng.random() < config.open_with_habit else share
                    visit = _visit(rng, profile, names, zipf, cats, habit_cdf, t, share)
                visits.append(visit)
                previous = visit
    visits.sort(key=lambda v: v.visit_time)
    return visits


def _visit(
    rng: random.Random,
    profile: _Profile,
    names: tuple[tuple[str, ...], ...],
    zipf: list[float],
    cats: list[float],
    habit_cdf: list[float],
    t: float,
    habit_share: float,
) -> VisitRecord:
    if profile.habits and rng.random() < habit_share:
        cat, rank, _ = profile.habits[_draw(rng, habit_cdf)]
        transition = rng.choices(_HABIT_TRANSITIONS, cum_weights=_HABIT_CUM)[0]
    else:
        cat, rank = _draw(rng, cats), _draw(rng, zipf)
        transition = rng.choices(_OTHER_TRANSITIONS, cum_weights=_OTHER_CUM)[0]
    return _page(rng, names[cat][rank], t, transition, profile.tz_offset_min)


def _page(rng: random.Random, domain: str, t: float, transition: str, tz: int) -> VisitRecord:
    depth = rng.choice((0, 1, 1, 2, 2, 3))
    path = "".join(f"/p{rng.randrange(1000)}" for _ in range(depth))
    title = f"{domain} page {rng.randrange(10_000)}"
    return VisitRecord(f"https://{domain}{path}", title, t, transition, None, tz)


def _stay(rng: random.Random, previous: VisitRecord, t: float) -> VisitRecord:
    domain = previous.url.split("/", 3)[2]
    transition = "reload" if rng.random() < 0.15 else "link"
    return _page(rng, domain, t, transition, previous.tz_offset_min)
