// Dandelion's service worker. It holds the user's choice and is the only part that reads the
// browser's history, tabs and bookmarks — and only after the user opted in on the options
// page (signals.js records tab switches and time on page from then on). The worker itself
// (Pyodide in a module Web Worker) lives in an offscreen document, because a service worker
// cannot start Web Workers; this file relays between the two and keeps the worker's state in
// chrome.storage.local:
//
//   consent         "opted_in" once the user opted in; absent otherwise (the default: off)
//   coordinatorUrl  the coordinator the user chose on the options page; absent: the built-in one
//   kv              the worker's own key-value state (its pseudonymous id)
//   status          the worker's latest status, for the options page
//   tabEvents, pageTimes   what signals.js records (and, in chrome.storage.session, the page
//                          in front now)
//
// Opting out tells the coordinator, stops the worker, closes the offscreen document and
// clears chrome.storage.local and .session: nothing of Dandelion's is left in the browser.
//
// Any page of the extension (the options page, a popup) may ask for the task's released model
// on this browser's signals: chrome.runtime.sendMessage({type: "dandelion.predict", task})
// answers {ok: true, task, version, objective, outputs, predictions, now} or {ok: false, error}.
import { builtInCoordinator, checkCoordinatorUrl, coordinator } from "./settings.js";
import {
  forgetBookmarks,
  readBookmarks,
  recordedSignals,
  settled,
  startAfresh,
  stopPushing,
  whenRecorded,
} from "./signals.js";

const OFFSCREEN = "offscreen.html";
const HISTORY_DAYS = 90;
const MAX_URLS = 2000; // distinct pages read from history, newest first
const REFRESH_MINUTES = 30;

async function optedIn() {
  const { consent } = await chrome.storage.local.get("consent");
  return consent === "opted_in";
}

async function hasOffscreen() {
  const contexts = await chrome.runtime.getContexts({ contextTypes: ["OFFSCREEN_DOCUMENT"] });
  return contexts.length > 0;
}

let creating = null;
async function ensureOffscreen() {
  if (await hasOffscreen()) return false;
  creating ??= chrome.offscreen
    .createDocument({
      url: OFFSCREEN,
      reasons: ["WORKERS"],
      justification: "Runs the federated-learning worker (Python in a Web Worker).",
    })
    .finally(() => { creating = null; });
  await creating;
  return true;
}

// Visits with their times and transitions, and the tab of those pages still open.
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
    if (!/^https?:/.test(item.url ?? "")) continue;
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

// The history as last read, for the pushes of new tab events and page times in between (the
// history itself is read again at each start and every REFRESH_MINUTES).
let visitsRead = null;

// The browser's own signals: visits, the tab events and page times recorded since the opt-in,
// bookmarks if the user allowed them. Read only after opt-in; handed to the worker, never sent
// on. `fresh`: read the history again rather than reuse the last reading.
async function readSignals({ fresh = true } = {}) {
  if (!(await optedIn())) return { visits: [], tzOffsetMin: 0 };
  if (fresh || !visitsRead) visitsRead = await readVisits();
  const [{ tabs, pageTimes }, bookmarks] = await Promise.all([recordedSignals(), readBookmarks()]);
  const tzOffsetMin = -new Date().getTimezoneOffset();
  return { visits: visitsRead, tabs, pageTimes, bookmarks, tzOffsetMin };
}

// New tab events or page times (or bookmarks allowed or taken back): the running worker gets
// the whole signals object again; a worker not running reads them when it starts.
async function pushSignals() {
  if (!(await optedIn()) || !(await hasOffscreen())) return;
  const signals = await readSignals({ fresh: false });
  await toOffscreen({ type: "signals", signals }).catch(() => {}); // a document closing now
}

function toOffscreen(message) {
  return chrome.runtime.sendMessage({ target: "offscreen", ...message });
}

async function startWorker() {
  const { url } = await coordinator();
  if (!url || !(await optedIn())) return;
  if (await ensureOffscreen()) return; // a new document says "ready", which starts it
  const { kv = {} } = await chrome.storage.local.get("kv");
  const signals = await readSignals();
  await toOffscreen({ type: "start", coordinatorUrl: url, signals, storage: kv });
}

// A new address while taking part: the worker stops and starts again against it, with the same
// pseudonymous id (a coordinator that moved knows this browser as before; to start afresh with
// another one, the user stops taking part first, which deletes the id).
async function setCoordinator(text) {
  const builtIn = await builtInCoordinator();
  const blank = !String(text ?? "").trim();
  const checked = blank && builtIn ? { url: builtIn } : checkCoordinatorUrl(text);
  if (checked.problem) return { ok: false, error: checked.problem };
  const before = (await coordinator()).url;
  if (blank) await chrome.storage.local.remove("coordinatorUrl"); // back to the built-in one
  else await chrome.storage.local.set({ coordinatorUrl: checked.url });
  const restarted = checked.url !== before && (await optedIn());
  if (restarted) {
    if (await hasOffscreen()) await toOffscreen({ type: "stop" });
    const detail = "Switching to the new coordinator.";
    await setStatus({ state: "loading", detail, rounds_joined: 0, updates_accepted: 0 });
    await startWorker();
  }
  return { ok: true, url: checked.url, warning: checked.warning, restarted };
}

async function setStatus(status) {
  if (await optedIn()) await chrome.storage.local.set({ status });
}

async function editKv(op, key, value) {
  if (!(await optedIn())) return; // after an opt-out nothing is written back
  const { kv = {} } = await chrome.storage.local.get("kv");
  if (op === "set") kv[key] = value;
  else if (op === "delete") delete kv[key];
  else for (const k of Object.keys(kv)) delete kv[k];
  await chrome.storage.local.set({ kv });
}

async function optIn() {
  if (!(await coordinator()).url) {
    return { ok: false, error: "Set the coordinator's address first." };
  }
  await chrome.storage.local.set({
    consent: "opted_in",
    optedInAt: Date.now(),
    status: { state: "loading", detail: "Starting.", rounds_joined: 0, updates_accepted: 0 },
  });
  await startAfresh(); // from here on the page in front is timed
  await chrome.alarms.create("refresh-signals", { periodInMinutes: REFRESH_MINUTES });
  await startWorker();
  return { ok: true };
}

async function optOut() {
  const { url: coordinatorUrl } = await coordinator();
  const { kv = {} } = await chrome.storage.local.get("kv");
  await chrome.storage.local.remove("consent"); // first: nothing restarts from here on
  stopPushing();
  visitsRead = null;
  await settled(); // the tab events and page times being written now, before the clear below
  await chrome.alarms.clear("refresh-signals");
  let told = false;
  try {
    await ensureOffscreen();
    const reply = await toOffscreen({ type: "opt_out", coordinatorUrl, storage: kv });
    told = Boolean(reply?.ok && reply.delivered);
  } finally {
    if (await hasOffscreen()) await chrome.offscreen.closeDocument();
    await forgetBookmarks(); // the optional permission goes back, too
    await chrome.storage.local.clear();
    await chrome.storage.session.clear();
  }
  return { ok: true, told };
}

// The task's released model on this browser's signals, in the offscreen document (which
// fetches the model document and its weights from the coordinator's public endpoint).
async function predictHere(task) {
  if (typeof task !== "string" || !task.trim()) {
    return { ok: false, error: 'Name the task: {type: "dandelion.predict", task: "<name>"}.' };
  }
  if (!(await optedIn())) {
    return {
      ok: false,
      error: "Dandelion is off: the user has not opted in on its options page, so it reads nothing and predicts nothing.",
    };
  }
  const { url } = await coordinator();
  if (!url) return { ok: false, error: "No coordinator address is set." };
  await ensureOffscreen();
  const signals = await readSignals({ fresh: false });
  return toOffscreen({ type: "predict", task, coordinatorUrl: url, signals });
}

// A message from a page of this extension itself: not from another extension, nor from a
// content script (there is none) on somebody's web page.
const fromOurPages = (sender) =>
  sender.id === chrome.runtime.id && String(sender.url ?? "").startsWith(chrome.runtime.getURL(""));

chrome.runtime.onMessage.addListener((message, sender, reply) => {
  if (!fromOurPages(sender)) return false;
  if (message?.type === "dandelion.predict") {
    predictHere(message.task).then(reply, (error) =>
      reply({ ok: false, error: String(error?.message ?? error) }),
    );
    return true;
  }
  if (message?.target !== "background") return false;
  const work = {
    opt_in: () => optIn(),
    opt_out: () => optOut(),
    offscreen_ready: () => startWorker().then(() => ({ ok: true })),
    status: () => setStatus(message.status).then(() => ({ ok: true })),
    kv: () => editKv(message.op, message.key, message.value).then(() => ({ ok: true })),
    set_coordinator: () => setCoordinator(message.url),
  }[message.type];
  if (!work) return false;
  work().then(reply, (error) => reply({ ok: false, error: String(error?.message ?? error) }));
  return true; // the reply comes asynchronously
});

chrome.alarms.onAlarm.addListener(async (alarm) => {
  if (alarm.name !== "refresh-signals" || !(await optedIn())) return;
  if (!(await hasOffscreen())) return startWorker();
  await toOffscreen({ type: "signals", signals: await readSignals() });
});

chrome.action.onClicked.addListener(() => chrome.runtime.openOptionsPage());
chrome.runtime.onStartup.addListener(async () => {
  await startAfresh(); // a new browser session: time the page in front from now
  await startWorker();
});
chrome.runtime.onInstalled.addListener(startWorker);
chrome.permissions.onAdded.addListener(pushSignals);
chrome.permissions.onRemoved.addListener(pushSignals);
whenRecorded(pushSignals);
