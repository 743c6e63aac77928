"""``browser_worker/extension/signals.js`` under Node with a stand-in ``chrome`` (its storage,
tabs, windows, permissions and bookmarks) and a clock of our own: the page times and tab
events it records for a sequence of events, nothing before the opt-in or after the opt-out,
the cap on each list, one push for many new items, and the bookmarks it reads once the
optional permission is granted — which a test in Chromium cannot do, as no one can accept
the browser's permission prompt there. ``tests/browser/test_extension.py`` and
``test_worked_example_extension.py`` run the same file in Chromium."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
SIGNALS_JS = ROOT / "browser_worker" / "extension" / "signals.js"

# The stand-in and the story, as an ES module; it prints one JSON object of what it saw.
SCRIPT = r"""
const clock = { now: 1_700_000_000_000 };
Date.now = () => clock.now;
const timers = [];
globalThis.setTimeout = (fn) => { timers.push(fn); return timers.length; };
globalThis.clearTimeout = () => {};

function area() {
  const data = {};
  return {
    data,
    async get(keys) {
      if (keys === null) return structuredClone(data);
      const out = {};
      for (const k of [].concat(keys)) if (k in data) out[k] = structuredClone(data[k]);
      return out;
    },
    async set(items) { Object.assign(data, structuredClone(items)); },
    async remove(key) { delete data[key]; },
    async clear() { for (const k of Object.keys(data)) delete data[k]; },
  };
}
const listeners = {};
const event = (name) => ({ addListener: (fn) => { listeners[name] = fn; } });
const world = {
  windows: [{ id: 1, focused: true }],
  tabs: [{ id: 10, windowId: 1, active: true, url: "https://a.example/read" }],
  granted: false,
};
globalThis.chrome = {
  storage: { local: area(), session: area() },
  windows: {
    async getLastFocused() { return world.windows[0]; },
    onFocusChanged: event("focus"),
  },
  tabs: {
    async query({ active, windowId }) {
      return world.tabs.filter((t) => t.active === active && t.windowId === windowId);
    },
    async get(id) {
      const tab = world.tabs.find((t) => t.id === id);
      if (!tab) throw new Error("no tab");
      return tab;
    },
    onActivated: event("activated"),
    onCreated: event("created"),
    onRemoved: event("removed"),
    onUpdated: event("updated"),
  },
  permissions: {
    async contains() { return world.granted; },
    async remove() { world.granted = false; return true; },
  },
  bookmarks: {
    async getTree() {
      return [{ id: "0", title: "", children: [
        { id: "1", title: "Bar", children: [
          { id: "2", title: "A", url: "https://a.example/", dateAdded: 1_600_000_000_000 },
          { id: "3", title: "Folder", children: [
            { id: "4", title: "B", url: "http://b.example/x", dateAdded: 1_600_000_100_000 },
            { id: "5", title: "Settings", url: "chrome://settings", dateAdded: 1 },
          ] },
        ] },
      ] }];
    },
  },
};

const signals = await import(process.argv[2]);
const local = chrome.storage.local.data;
const session = chrome.storage.session.data;
const seen = {};
const activate = (id) => {
  for (const t of world.tabs) t.active = t.id === id;
  listeners.activated({ tabId: id, windowId: 1 });
};
let pushes = 0;
signals.whenRecorded(() => { pushes += 1; });

// Before the opt-in: events, and nothing is written.
world.tabs.push({ id: 9, windowId: 1, active: false, url: "https://z.example/" });
activate(9);
activate(10);
await signals.settled();
seen.beforeOptIn = { local: { ...local }, session: { ...session }, timers: timers.length };

// The opt-in: the page in front starts its time.
local.consent = "opted_in";
await signals.startAfresh();
seen.front = structuredClone(session.frontPage);

// Each step happens once the one before it was recorded, as events apart in time would.
const step = async (ms, fn) => {
  clock.now += ms;
  fn();
  await signals.settled();
};
// 5 s on a.example, then a new tab (not a web page yet) in front ...
const fresh = { id: 11, windowId: 1, active: false, url: "", pendingUrl: "chrome://newtab/" };
await step(5000, () => {
  world.tabs.push(fresh);
  listeners.created(fresh);
});
await step(0, () => activate(11));
// ... which goes to b.example 1 s later (the time on the new-tab page counts for nothing),
await step(1000, () => {
  fresh.url = "https://b.example/story";
  listeners.updated(11, { url: fresh.url }, fresh);
  listeners.updated(11, { status: "complete" }, fresh); // not an address change: ignored
});
// 3 s on it, then another application takes the focus for 10 s,
await step(3000, () => {
  world.windows[0].focused = false;
  listeners.focus(-1);
});
await step(10000, () => {
  world.windows[0].focused = true;
  listeners.focus(1);
});
// 2 s more on b.example, and its tab is closed: a.example is in front again.
await step(2000, () => {
  world.tabs = world.tabs.filter((t) => t.id !== 11);
  listeners.removed(11, { windowId: 1, isWindowClosing: false });
});
await step(0, () => activate(10));
seen.pageTimes = structuredClone(local.pageTimes);
seen.tabEvents = structuredClone(local.tabEvents);
seen.frontAfter = structuredClone(session.frontPage);
seen.timersScheduled = timers.length; // one push for all of these

timers.shift()();
await new Promise((r) => setImmediate(r));
seen.pushes = pushes;
seen.recorded = await signals.recordedSignals();

// Bookmarks: none without the permission, web pages of the whole tree with it.
seen.bookmarksBefore = await signals.readBookmarks();
world.granted = true;
seen.bookmarks = await signals.readBookmarks();
await signals.forgetBookmarks();
seen.grantedAfterForget = world.granted;

// The newest 5,000 of each list are kept.
local.tabEvents = Array.from({ length: 5000 }, (_, i) => ({
  kind: "created", tabId: i, time: i + 1,
}));
await step(1000, () => activate(10));
seen.capped = { length: local.tabEvents.length, first: local.tabEvents[0].tabId };

// The opt-out while an event is on its way: the consent goes first, the writes under way
// end (`settled`), then everything is cleared, and later events write nothing.
await step(1000, () => {
  activate(9);
  delete local.consent;
});
signals.stopPushing();
await chrome.storage.local.clear();
await chrome.storage.session.clear();
await step(1000, () => activate(10));
await step(1000, () => listeners.focus(1));
seen.afterOptOut = { local: { ...local }, session: { ...session } };

console.log(JSON.stringify(seen));
"""


@pytest.fixture(scope="module")
def seen(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is not installed: run scripts/test, which installs it with apt")
    folder = tmp_path_factory.mktemp("signals")
    module = folder / "signals.mjs"  # an ES module to Node whatever the package says
    shutil.copyfile(SIGNALS_JS, module)
    (folder / "story.mjs").write_text(SCRIPT)
    ran = subprocess.run(
        [node, str(folder / "story.mjs"), module.as_uri()],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert ran.returncode == 0, ran.stderr
    return dict(json.loads(ran.stdout))


T0 = 1_700_000_000_000


def test_nothing_is_recorded_before_the_opt_in(seen: dict[str, Any]) -> None:
    assert seen["beforeOptIn"] == {"local": {}, "session": {}, "timers": 0}
    assert seen["front"] == {
        "tabId": 10,
        "windowId": 1,
        "url": "https://a.example/read",
        "start": T0,
    }


def test_page_times_follow_the_tab_and_window_in_front(seen: dict[str, Any]) -> None:
    assert seen["pageTimes"] == [
        {"url": "https://a.example/read", "start": T0, "ms": 5000},
        {"url": "https://b.example/story", "start": T0 + 6000, "ms": 3000},  # until focus left
        {"url": "https://b.example/story", "start": T0 + 19000, "ms": 2000},  # back, closed
    ]
    assert seen["frontAfter"] == {
        "tabId": 10,
        "windowId": 1,
        "url": "https://a.example/read",
        "start": T0 + 21000,
    }


def test_tab_events_have_times_and_web_addresses_only(seen: dict[str, Any]) -> None:
    assert seen["tabEvents"] == [
        {"kind": "created", "tabId": 11, "windowId": 1, "time": T0 + 5000},  # chrome://newtab
        {"kind": "activated", "tabId": 11, "windowId": 1, "time": T0 + 5000},
        {
            "kind": "updated",
            "tabId": 11,
            "windowId": 1,
            "url": "https://b.example/story",
            "time": T0 + 6000,
        },
        {"kind": "closed", "tabId": 11, "windowId": 1, "time": T0 + 21000},
        {
            "kind": "activated",
            "tabId": 10,
            "windowId": 1,
            "url": "https://a.example/read",
            "time": T0 + 21000,
        },
    ]


def test_new_items_are_pushed_once_for_many(seen: dict[str, Any]) -> None:
    assert seen["timersScheduled"] == 1 and seen["pushes"] == 1
    assert seen["recorded"] == {"tabs": seen["tabEvents"], "pageTimes": seen["pageTimes"]}


def test_bookmarks_are_read_only_with_the_permission(seen: dict[str, Any]) -> None:
    assert seen["bookmarksBefore"] == []
    assert seen["bookmarks"] == [
        {"url": "https://a.example/", "title": "A", "dateAdded": 1_600_000_000_000},
        {"url": "http://b.example/x", "title": "B", "dateAdded": 1_600_000_100_000},
    ]
    assert seen["grantedAfterForget"] is False


def test_each_list_keeps_its_newest_items(seen: dict[str, Any]) -> None:
    assert seen["capped"] == {"length": 5000, "first": 1}


def test_nothing_is_written_after_the_opt_out(seen: dict[str, Any]) -> None:
    assert seen["afterOptOut"] == {"local": {}, "session": {}}
