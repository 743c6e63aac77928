// The browser's own signals, as the extension may read them, for the worker's objectives
// (docs/tasks.md, "Signals"). Nothing here runs before the user opts in, and nothing read here
// leaves the browser: it goes to the worker, which turns it into numbers and trains on them.
//
//   visits     chrome.history (permission "history"): each visit's time and transition
//   tabs       chrome.tabs events (permission "tabs"): activated, created, closed, updated
//   pageTimes  time a page was in front: from tab activation, navigation and window focus
//   bookmarks  chrome.bookmarks, only if the user granted the optional "bookmarks" permission
//
// Tab events and page times are recorded as they happen into chrome.storage.local ("tabLog"),
// capped, and only while opted in; opting out clears chrome.storage.local, and them with it.

const HISTORY_DAYS = 90;
const MAX_URLS = 2000; // distinct pages read from history, newest first
const MAX_EVENTS = 5000; // tab events and page times kept, newest
const MAX_BOOKMARKS = 2000;

async function optedIn() {
  const { consent } = await chrome.storage.local.get("consent");
  return consent === "opted_in";
}

const web = (url) => /^https?:/.test(url ?? "");

// One change to the tab log at a time: the listeners below fire together.
let queue = Promise.resolve();
function edit(change) {
  queue = queue.then(async () => {
    if (!(await optedIn())) return;
    const { tabLog = { tabs: [], pageTimes: [], front: null } } =
      await chrome.storage.local.get("tabLog");
    change(tabLog, Date.now());
    tabLog.tabs = tabLog.tabs.slice(-MAX_EVENTS);
    tabLog.pageTimes = tabLog.pageTimes.slice(-MAX_EVENTS);
    await chrome.storage.local.set({ tabLog });
  }).catch(() => {});
  return queue;
}

// The page in front ends (another tab, another page, the window lost focus).
function closeFront(log, now) {
  const front = log.front;
  log.front = null;
  if (front && web(front.url) && now > front.start) {
    log.pageTimes.push({ url: front.url, start: front.start, ms: now - front.start });
  }
}

function openFront(log, now, tab) {
  closeFront(log, now);
  if (tab && web(tab.url)) log.front = { url: tab.url, tabId: tab.id, start: now };
}

async function tabOrNull(tabId) {
  try {
    return await chrome.tabs.get(tabId);
  } catch {
    return null; // closed meanwhile
  }
}

/** Record tab events and page times from now on (call once, at the service worker's start). */
export function watchTabs() {
  chrome.tabs.onActivated.addListener(async ({ tabId, windowId }) => {
    const tab = await tabOrNull(tabId);
    edit((log, now) => {
      log.tabs.push({ kind: "activated", tabId, windowId, time: now, url: web(tab?.url) ? tab.url : undefined });
      openFront(log, now, tab);
    });
  });
  chrome.tabs.onCreated.addListener((tab) => {
    edit((log, now) => log.tabs.push({ kind: "created", tabId: tab.id, windowId: tab.windowId, time: now }));
  });
  chrome.tabs.onRemoved.addListener((tabId, { windowId }) => {
    edit((log, now) => {
      log.tabs.push({ kind: "closed", tabId, windowId, time: now });
      if (log.front?.tabId === tabId) closeFront(log, now);
    });
  });
  chrome.tabs.onUpdated.addListener((tabId, change, tab) => {
    if (!change.url) return;
    edit((log, now) => {
      log.tabs.push({ kind: "updated", tabId, windowId: tab.windowId, time: now, url: web(change.url) ? change.url : undefined });
      if (log.front?.tabId === tabId) openFront(log, now, tab);
    });
  });
  chrome.windows.onFocusChanged.addListener(async (windowId) => {
    if (windowId === chrome.windows.WINDOW_ID_NONE) {
      edit((log, now) => closeFront(log, now));
      return;
    }
    const [tab] = await chrome.tabs.query({ active: true, windowId });
    edit((log, now) => openFront(log, now, tab));
  });
}

async function readVisits() {
  const items = await chrome.history.search({
    text: "",
    startTime: Date.now() - HISTORY_DAYS * 864e5,
    maxResults: MAX_URLS,
  });
  const openTabs = new Map();
  for (const tab of await chrome.tabs.query({})) if (tab.url) openTabs.set(tab.url, tab.id);
  const visits = [];
  for (const item of items) {
    if (!web(item.url)) continue;
    for (const visit of await chrome.history.getVisits({ url: item.url })) {
      visits.push({
        url: item.url,
        title: item.title ?? "",
        visitTime: visit.visitTime,
        transition: visit.transition,
        tabId: openTabs.get(item.url),
      });
    }
  }
  return visits;
}

async function readBookmarks() {
  if (!(await chrome.permissions.contains({ permissions: ["bookmarks"] }))) return [];
  const out = [];
  const walk = (nodes) => {
    for (const node of nodes) {
      if (node.url && web(node.url)) out.push({ url: node.url, title: node.title ?? "", dateAdded: node.dateAdded });
      if (node.children) walk(node.children);
    }
  };
  walk(await chrome.bookmarks.getTree());
  return out.slice(-MAX_BOOKMARKS);
}

/** Everything the worker may train on, read now; empty before the opt-in. */
export async function readSignals() {
  const tzOffsetMin = -new Date().getTimezoneOffset();
  if (!(await optedIn())) return { visits: [], tzOffsetMin };
  await queue;
  const { tabLog = { tabs: [], pageTimes: [], front: null } } = await chrome.storage.local.get("tabLog");
  // The page in front now is not included: its time is not known yet.
  return {
    visits: await readVisits(),
    tabs: tabLog.tabs,
    pageTimes: tabLog.pageTimes,
    bookmarks: await readBookmarks(),
    tzOffsetMin,
  };
}
