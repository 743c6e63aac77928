"""Local browsing signals, as a page or an extension hands them over, and their types.

The JS side passes one JSON object (``browser_worker/js/dandelion.mjs``; every list optional)::

    {"visits":    [{"url", "title", "visitTime": ms since the epoch,
                    "transition": chrome.history TransitionType, "tabId": int?}, ...],
     "tabs":      [{"kind": "activated" | "created" | "closed" | "updated", "tabId": int,
                    "time": ms, "url": str?, "windowId": int?}, ...],
     "pageTimes": [{"url", "start": ms, "ms": time the page was in front}, ...],
     "bookmarks": [{"url", "title", "dateAdded": ms}, ...],
     "tzOffsetMin": local time minus UTC, in minutes,
     "<your type>": [...]}                       # see register_signal

Everything stays inside the worker: this module only reads. Entries that are not web pages
(``chrome://``, ``file:``, ...) or that are malformed are skipped, not fatal, and each list is
capped (``MAX_ITEMS``, the newest kept) so a huge profile cannot exhaust a tab. What an
extension may collect depends on its permissions and the user's consent (docs/browser.md).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "MAX_ITEMS",
    "MAX_VISITS",
    "SIGNAL_TYPES",
    "TAB_EVENTS",
    "TRANSITIONS",
    "Bookmark",
    "PageTime",
    "Signals",
    "SignalsError",
    "TabEvent",
    "VisitRecord",
    "parse_signals",
    "register_signal",
    "unknown_signal_keys",
    "visits_from_signals",
]

MAX_ITEMS = 20_000
MAX_VISITS = MAX_ITEMS
TRANSITIONS = (
    "link",
    "typed",
    "auto_bookmark",
    "reload",
    "form_submit",
    "generated",
    "auto_toplevel",
    "keyword",
    "other",
)
TAB_EVENTS = ("activated", "created", "closed", "updated")
_TRANSITION_ALIASES = {
    # chrome.history reports subframe navigations too; they are not visits a user chose.
    "auto_subframe": None,
    "manual_subframe": None,
    "keyword_generated": "keyword",
    "start_page": "auto_toplevel",
}


class SignalsError(ValueError):
    """The signals object is not shaped as documented."""


@dataclass(frozen=True, slots=True)
class VisitRecord:
    """One visit, as ``chrome.history`` reports it (VisitItem + the page's URL and title)."""

    url: str
    title: str
    visit_time: float  # seconds since the epoch, UTC
    transition: str = "link"
    tab_id: int | None = None
    tz_offset_min: int = 0  # local time = UTC + this offset


@dataclass(frozen=True, slots=True)
class TabEvent:
    """A tab was activated (brought to the front), created, closed or navigated (updated), as
    ``chrome.tabs`` events report it."""

    kind: str
    tab_id: int
    time: float  # seconds since the epoch, UTC
    url: str = ""
    window_id: int | None = None


@dataclass(frozen=True, slots=True)
class PageTime:
    """Time a page spent in front (the extension measures it from tab activation and window
    focus; a page alone can measure only itself)."""

    url: str
    start: float  # seconds since the epoch, UTC
    seconds: float


@dataclass(frozen=True, slots=True)
class Bookmark:
    url: str
    title: str
    added: float  # seconds since the epoch, UTC


@dataclass(frozen=True, slots=True)
class Signals:
    """All local signals of one browser, each list oldest first."""

    visits: tuple[VisitRecord, ...] = ()
    tabs: tuple[TabEvent, ...] = ()
    page_times: tuple[PageTime, ...] = ()
    bookmarks: tuple[Bookmark, ...] = ()
    tz_offset_min: int = 0
    extra: Mapping[str, tuple[Any, ...]] = field(default_factory=dict)

    def __len__(self) -> int:
        """How many usable items there are, of every type."""
        n = len(self.visits) + len(self.tabs) + len(self.page_times) + len(self.bookmarks)
        return n + sum(len(v) for v in self.extra.values())


def _web_url(raw: Any) -> str | None:
    if not isinstance(raw, str) or not raw.startswith(("http://", "https://")):
        return None
    return raw[:2048]


def _time(raw: Any) -> float | None:
    if isinstance(raw, bool) or not isinstance(raw, int | float):
        return None
    if not math.isfinite(raw) or raw <= 0:
        return None
    return float(raw) / 1000.0


def _int(raw: Any) -> int | None:
    """An integer (a JSON number without a fraction, not a boolean), else None."""
    return raw if isinstance(raw, int) and not isinstance(raw, bool) else None


def _transition(raw: Any) -> str | None:
    name = str(raw or "link").lower()
    if name in _TRANSITION_ALIASES:
        return _TRANSITION_ALIASES[name]
    return name if name in TRANSITIONS else "other"


def _visit(item: dict[str, Any], tz: int) -> VisitRecord | None:
    url, when = _web_url(item.get("url")), _time(item.get("visitTime"))
    transition = _transition(item.get("transition"))
    if url is None or when is None or transition is None:
        return None
    title, tab = item.get("title"), item.get("tabId")
    return VisitRecord(
        url=url,
        title=title[:512] if isinstance(title, str) else "",
        visit_time=when,
        transition=transition,
        tab_id=_int(tab),
        tz_offset_min=tz,
    )


def _tab(item: dict[str, Any], tz: int) -> TabEvent | None:
    kind, tab, when = item.get("kind"), _int(item.get("tabId")), _time(item.get("time"))
    if kind not in TAB_EVENTS or tab is None:
        return None
    if when is None:
        return None
    window = item.get("windowId")
    return TabEvent(
        kind=kind,
        tab_id=tab,
        time=when,
        url=_web_url(item.get("url")) or "",
        window_id=_int(window),
    )


def _page_time(item: dict[str, Any], tz: int) -> PageTime | None:
    url, start, ms = _web_url(item.get("url")), _time(item.get("start")), item.get("ms")
    if url is None or start is None or isinstance(ms, bool) or not isinstance(ms, int | float):
        return None
    if not math.isfinite(ms) or ms < 0:
        return None
    return PageTime(url, start, float(ms) / 1000.0)


def _bookmark(item: dict[str, Any], tz: int) -> Bookmark | None:
    url, added, title = _web_url(item.get("url")), _time(item.get("dateAdded")), item.get("title")
    if url is None or added is None:
        return None
    return Bookmark(url, title[:512] if isinstance(title, str) else "", added)


#: One item's parser: ``(item dict, tzOffsetMin) -> object`` or None to skip it.
ItemParser = Callable[[dict[str, Any], int], Any]
_BUILTIN: dict[str, tuple[str, ItemParser, Callable[[Any], float]]] = {
    "visits": ("visits", _visit, lambda v: v.visit_time),
    "tabs": ("tabs", _tab, lambda t: t.time),
    "pageTimes": ("page_times", _page_time, lambda p: p.start),
    "bookmarks": ("bookmarks", _bookmark, lambda b: b.added),
}
#: Signal types a plugin added: JSON key -> item parser (see register_signal).
SIGNAL_TYPES: dict[str, ItemParser] = {}


def register_signal(key: str, parse_item: ItemParser) -> None:
    """Add a signal type: the list under ``key`` in the signals object is parsed item by item
    with ``parse_item(item, tz_offset_min)`` (return None to skip an item) and handed to
    objectives as ``signals.extra[key]``. Raises ValueError for a built-in key."""
    if key in _BUILTIN or key == "tzOffsetMin" or not key.isidentifier():
        raise ValueError(f"signal type {key!r}: an identifier that is not a built-in key")
    SIGNAL_TYPES[key] = parse_item


def _items(raw: Any, key: str) -> list[dict[str, Any]]:
    value = raw.get(key, [])
    if not isinstance(value, list):
        raise SignalsError(f"signals.{key} must be a list")
    return [item for item in value if isinstance(item, dict)]


def parse_signals(signals: str | Mapping[str, Any]) -> Signals:
    """Parse the signals object (JSON text or a dict). Raises SignalsError when it is not an
    object or one of its lists is not a list; skips malformed items."""
    raw = json.loads(signals) if isinstance(signals, str) else signals
    if not isinstance(raw, Mapping):
        raise SignalsError("signals must be an object with lists such as 'visits'")
    tz = raw.get("tzOffsetMin", 0)
    tz_ok = isinstance(tz, int | float) and not isinstance(tz, bool) and abs(tz) <= 14 * 60
    tz_offset = int(tz) if tz_ok else 0
    lists: dict[str, tuple[Any, ...]] = {}
    for key, (attr, parse, when) in _BUILTIN.items():
        parsed = [p for p in (parse(item, tz_offset) for item in _items(raw, key)) if p]
        parsed.sort(key=when)
        lists[attr] = tuple(parsed[-MAX_ITEMS:])
    extra: dict[str, tuple[Any, ...]] = {}
    for key, parse in SIGNAL_TYPES.items():
        if key in raw:
            items = [p for p in (parse(item, tz_offset) for item in _items(raw, key)) if p]
            extra[key] = tuple(items[-MAX_ITEMS:])
    return Signals(tz_offset_min=tz_offset, extra=extra, **lists)


def unknown_signal_keys(signals: str | Mapping[str, Any]) -> list[str]:
    """One line per key of the signals object that nothing reads (not a built-in type, not
    ``tzOffsetMin``, not a registered one): :func:`parse_signals` ignores those, and a
    misspelt ``tab`` for ``tabs`` would otherwise go unnoticed."""
    from .tables import nearest

    raw = json.loads(signals) if isinstance(signals, str) else signals
    if not isinstance(raw, Mapping):
        return []
    known = sorted([*_BUILTIN, "tzOffsetMin", *SIGNAL_TYPES])
    out = []
    for key in raw:
        if key in known:
            continue
        near = nearest(str(key), known)
        hint = f"; did you mean {near!r}?" if near else ""
        out.append(f"signals: unknown key {key!r} ignored{hint} (known: {', '.join(known)})")
    return out


def visits_from_signals(signals: str | Mapping[str, Any]) -> list[VisitRecord]:
    """The visit records of ``signals``, oldest first (see :func:`parse_signals`)."""
    return list(parse_signals(signals).visits)
