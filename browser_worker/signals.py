"""Browsing signals as a page or an extension hands them over, turned into visit records.

The JS side passes one JSON object (see ``browser_worker/js/dandelion.mjs``)::

    {"visits": [{"url": str, "title": str, "visitTime": ms since the epoch,
                 "transition": chrome.history TransitionType, "tabId": int?}, ...],
     "tzOffsetMin": local time minus UTC, in minutes}

Everything stays inside the worker: this module only reads. Entries that are not web pages
(``chrome://``, ``file:``, ...) or that are malformed are skipped, not fatal, and the history
is capped at ``MAX_VISITS`` (the newest kept) so a huge profile cannot exhaust a tab.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any

from .features import TRANSITIONS, VisitRecord
from .models import Example
from .objectives import OBJECTIVES

__all__ = ["MAX_VISITS", "SignalsError", "examples_for", "visits_from_signals"]

MAX_VISITS = 20_000
_TRANSITION_ALIASES = {
    # chrome.history reports subframe navigations too; they are not visits a user chose.
    "auto_subframe": None,
    "manual_subframe": None,
    "keyword_generated": "keyword",
    "start_page": "auto_toplevel",
}


class SignalsError(ValueError):
    """The signals object is not shaped as documented."""


def _transition(raw: Any) -> str | None:
    name = str(raw or "link").lower()
    if name in _TRANSITION_ALIASES:
        return _TRANSITION_ALIASES[name]
    return name if name in TRANSITIONS else "other"


def visits_from_signals(signals: str | dict[str, Any]) -> list[VisitRecord]:
    """Visit records, oldest first. Raises SignalsError when ``signals`` is not an object with
    a list of visits."""
    raw = json.loads(signals) if isinstance(signals, str) else signals
    if not isinstance(raw, dict) or not isinstance(raw.get("visits", []), list):
        raise SignalsError("signals must be an object with a list 'visits'")
    tz = raw.get("tzOffsetMin", 0)
    tz_offset = int(tz) if isinstance(tz, int | float) and abs(tz) <= 14 * 60 else 0
    out: list[VisitRecord] = []
    for item in raw.get("visits", []):
        if not isinstance(item, dict):
            continue
        url, when = item.get("url"), item.get("visitTime")
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            continue
        if not isinstance(when, int | float) or not math.isfinite(when) or when <= 0:
            continue
        transition = _transition(item.get("transition"))
        if transition is None:
            continue
        title = item.get("title")
        tab = item.get("tabId")
        out.append(
            VisitRecord(
                url=url[:2048],
                title=title[:512] if isinstance(title, str) else "",
                visit_time=float(when) / 1000.0,
                transition=transition,
                tab_id=tab if isinstance(tab, int) else None,
                tz_offset_min=tz_offset,
            )
        )
    out.sort(key=lambda v: v.visit_time)
    return out[-MAX_VISITS:]


def examples_for(
    visits: Sequence[VisitRecord], objective: str, features: dict[str, Any], now: float
) -> list[Example]:
    """The local examples a task's ``objective`` asks for; [] for an objective this worker does
    not know (it then lets the assignment lapse)."""
    pipeline = OBJECTIVES.get(objective)
    return pipeline(visits, features, now) if pipeline is not None else []
