// The signals the extension records itself, from the opt-in on: tab events (chrome.tabs) and
// how long each page was in front — the active tab of the focused window, from the moment it
// became that (or its address changed) until it stopped being it. Both are kept in
// chrome.storage.local, the newest MAX_ITEMS of each:
//
//   tabEvents  [{kind: "activated" | "created" | "closed" | "updated", tabId, time, url?, windowId?}]
//   pageTimes  [{url, start, ms}]              times in ms since the epoch; web pages only
//
// and, in chrome.storage.session (kept while the browser runs, so a service worker stopped
// when idle finds it again; gone when the browser closes, whose moment is not known, so the
// page then in front gets no time):
//
//   frontPage  {tabId, windowId, url, start}   the page in front now, its time still running
//
// Every listener checks the consent first and writes nothing without it: nothing is recorded
// before the opt-in, and after the opt-out (which clears both storage areas once the writes
// under way have ended: see `settled`) nothing is written again. Only addresses of web pages
// (http, https) are kept; other tabs count as events without an address.
//
// Bookmarks are read, not recorded: `readBookmarks` gives them when the user granted the
// optional `bookmarks` permission on the options page.

const MAX_ITEMS = 5000;
const PUSH_DELAY_MS = 2000; // new items reach the running worker at most this long after
const BOOKMARKS = { permissions: ["bookmarks"] };

let onRecorded = () => {};
let pushTimer = null;
let chain = Promise.resolve(); // one change at a time: every change reads and writes storage

function webUrl(url) {
  return /^https?:/.test(url ?? "") ? url.slice(0, 2048) : undefined;
}

function serially(work) {
  const run = chain.then(work);
  chain = run.catch((error) => console.error("dandelion signals:", error));
  return run;
}

/** Resolves once every change already under way has been written (or dropped). */
export function settled() {
  return chain;
}

/** `callback()` runs about PUSH_DELAY_MS after new items were recorded (once for many). */
export function whenRecorded(callback) {
  onRecorded = callback;
}

/** The opt-out: no push is pending any more (the listeners stop writing on their own). */
export function stopPushing() {
  clearTimeout(pushTimer);
  pushTimer = null;
}

function pushSoon() {
  pushTimer ??= setTimeout(() => {
    pushTimer = null;
    Promise.resolve(onRecorded()).catch((error) => console.warn("dandelion signals:", error));
  }, PUSH_DELAY_MS);
}

/** The active tab of the focused window, or null when no browser window has the focus (the
 *  user is in another application, or a browser dialog is in front). */
async function inFront() {
  let win;
  try {
    win = await chrome.windows.getLastFocused({});
  } catch {
    return null; // no window at all
  }
  if (!win?.focused) return null;
  const [tab] = await chrome.tabs.query({ active: true, windowId: win.id });
  if (!tab) return null;
  return { tabId: tab.id, windowId: win.id, url: webUrl(tab.url) ?? null };
}

const samePage = (a, b) =>
  a?.tabId === b?.tabId && a?.windowId === b?.windowId && a?.url === b?.url;

/** Record `event` (a tab event, or null) at `time`, and end the page time of the page that was
 *  in front if another one is now. `restart`: forget the stored page in front without a time
 *  (the opt-in, and a new browser session, whose predecessor's end is not known). */
async function record(time, event, { restart = false } = {}) {
  const stored = await chrome.storage.local.get(["consent", "tabEvents", "pageTimes"]);
  if (stored.consent !== "opted_in") return;
  const { frontPage } = await chrome.storage.session.get("frontPage");
  const before = restart ? null : frontPage;
  const now = await inFront();
  const lists = {};
  let front;
  if (event) {
    const item = Object.fromEntries(Object.entries(event).filter(([, v]) => v !== undefined));
    lists.tabEvents = [...(stored.tabEvents ?? []), { ...item, time }].slice(-MAX_ITEMS);
  }
  if (restart || !samePage(before, now)) {
    if (before?.url && time > before.start) {
      const page = { url: before.url, start: before.start, ms: time - before.start };
      lists.pageTimes = [...(stored.pageTimes ?? []), page].slice(-MAX_ITEMS);
    }
    front = now ? { ...now, start: time } : null;
  }
  const added = Object.keys(lists).length > 0;
  if (!added && front === undefined) return;
  // The consent again, right before writing: an opt-out waits for this write (`settled`)
  // before it clears everything, so this is the last moment a write can still happen.
  if ((await chrome.storage.local.get("consent")).consent !== "opted_in") return;
  if (added) await chrome.storage.local.set(lists);
  if (front !== undefined) await chrome.storage.session.set({ frontPage: front });
  if (added) pushSoon();
}

/** Run `work(time)` in turn, with the time the event happened (not the time its turn comes). */
function at(work) {
  const time = Date.now();
  return serially(() => work(time));
}

async function urlOf(tabId) {
  try {
    return webUrl((await chrome.tabs.get(tabId)).url);
  } catch {
    return undefined; // closed meanwhile
  }
}

/** The opt-in, and a new browser session: the page in front now starts its time (the one
 *  stored from the last session, whose end is not known, gets none). */
export function startAfresh() {
  return at((time) => record(time, null, { restart: true }));
}

/** What was recorded: `{tabs, pageTimes}` in the signals object's shape. */
export async function recordedSignals() {
  const { tabEvents = [], pageTimes = [] } = await chrome.storage.local.get([
    "tabEvents",
    "pageTimes",
  ]);
  return { tabs: tabEvents, pageTimes };
}

/** Whether the user granted the optional `bookmarks` permission. */
export function bookmarksAllowed() {
  return chrome.permissions.contains(BOOKMARKS);
}

/** The bookmarks of web pages, `[{url, title, dateAdded}]`, or [] without the permission. */
export async function readBookmarks() {
  if (!(await bookmarksAllowed())) return [];
  const out = [];
  const walk = (nodes) => {
    for (const node of nodes ?? []) {
      const url = webUrl(node.url);
      if (url) out.push({ url, title: node.title ?? "", dateAdded: node.dateAdded });
      walk(node.children);
    }
  };
  walk(await chrome.bookmarks.getTree());
  return out;
}

/** Give the optional permission back (the opt-out). */
export function forgetBookmarks() {
  return chrome.permissions.remove(BOOKMARKS).catch(() => false);
}

// Registered at the top level, so that these events wake a stopped service worker.
chrome.tabs.onActivated.addListener(({ tabId, windowId }) =>
  at(async (time) => record(time, { kind: "activated", tabId, windowId, url: await urlOf(tabId) })),
);
chrome.tabs.onCreated.addListener((tab) => {
  const url = webUrl(tab.pendingUrl ?? tab.url);
  at((time) => record(time, { kind: "created", tabId: tab.id, windowId: tab.windowId, url }));
});
chrome.tabs.onRemoved.addListener((tabId, { windowId }) =>
  at((time) => record(time, { kind: "closed", tabId, windowId })),
);
chrome.tabs.onUpdated.addListener((tabId, change, tab) => {
  if (change.url === undefined) return; // loading states, titles, favicons: not a new page
  const url = webUrl(change.url);
  at((time) => record(time, { kind: "updated", tabId, windowId: tab.windowId, url }));
});
chrome.windows.onFocusChanged.addListener(() => at((time) => record(time, null)));
