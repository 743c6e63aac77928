// Dandelion in a page or an extension: start a federated-learning worker in a module Web
// Worker, feed it the browser's own signals, and follow its status.
//
//   import { start, stop, optOut, events } from "/worker/dandelion.mjs";
//   const worker = start({
//     coordinatorUrl: "wss://fl.example.org/ws",
//     consent: "opted_in",                    // required: nothing runs without an opt-in
//     signals: { visits: [{ url, title, visitTime, transition }], tzOffsetMin },
//   });
//   events.addEventListener("status", (e) => console.log(e.detail.state, e.detail.detail));
//   const { outputs, predictions } = await predict({ task: "revisit-7d" });
//
// The signals never leave the Web Worker: only the clipped model update does. State the
// worker keeps (its pseudonymous id) goes through `storage` — localStorage by default, or any
// object with load(), set(key, value), delete(key) and clear().

/** Status changes of the running worker: CustomEvent "status" with the status as `detail`;
 *  "booted" with Pyodide's timings; "log" with {level, message}; "stopped"; "error". */
export const events = new EventTarget();

let current = null;
let lastStatus = { state: "idle", detail: "Not started.", rounds_joined: 0, updates_accepted: 0 };

function emit(type, detail) {
  events.dispatchEvent(new CustomEvent(type, { detail }));
}

/** The default storage: localStorage keys under "dandelion.", or memory where there is none. */
export function localStorageAdapter(prefix = "dandelion.") {
  const ls = globalThis.localStorage;
  if (!ls) return memoryAdapter();
  return {
    load() {
      const out = {};
      for (let i = 0; i < ls.length; i++) {
        const key = ls.key(i);
        if (key.startsWith(prefix)) out[key.slice(prefix.length)] = ls.getItem(key);
      }
      return out;
    },
    set: (key, value) => ls.setItem(prefix + key, value),
    delete: (key) => ls.removeItem(prefix + key),
    clear() {
      for (const key of Object.keys(this.load())) ls.removeItem(prefix + key);
    },
  };
}

export function memoryAdapter() {
  const data = {};
  return {
    load: () => ({ ...data }),
    set: (key, value) => { data[key] = value; },
    delete: (key) => { delete data[key]; },
    clear: () => { for (const key of Object.keys(data)) delete data[key]; },
  };
}

const START_OPTIONS = [
  "coordinatorUrl", "consent", "signals", "storage", "tasks", "eligibility", "workerUrl", "onStatus",
  "testHooks",
];
const PREDICT_OPTIONS = ["task", "coordinatorUrl", "modelUrl", "signals", "workerUrl"];

// The edit distance of two short names (for "did you mean").
function distance(a, b) {
  let row = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const next = [i];
    for (let j = 1; j <= b.length; j++) {
      next[j] = Math.min(row[j] + 1, next[j - 1] + 1, row[j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    row = next;
  }
  return row[b.length];
}

/** Throw for an option `fn` does not take, naming the nearest one it does. */
function checkOptions(fn, options, known) {
  for (const key of Object.keys(options ?? {})) {
    if (known.includes(key)) continue;
    const near = known.reduce((best, k) => (distance(key, k) < distance(key, best) ? k : best));
    const hint = distance(key, near) <= 2 ? `; did you mean ${JSON.stringify(near)}?` : "";
    throw new Error(`${fn}: unknown option ${JSON.stringify(key)}${hint} (known: ${known.join(", ")})`);
  }
}

/** Start the worker. Throws unless `consent` is "opted_in" and `coordinatorUrl` is ws(s)://,
 *  and for an option it does not know. Resolves once the Web Worker is started (before Pyodide
 *  has booted: the status says "loading" until then). */
export async function start(options = {}) {
  checkOptions("start()", options, START_OPTIONS);
  const {
    coordinatorUrl,
    signals = { visits: [] },
    consent,
    storage = localStorageAdapter(),
    tasks,
    eligibility,
    workerUrl = new URL("./dandelion-worker.mjs", import.meta.url),
    onStatus,
    testHooks,
  } = options;
  if (consent !== "opted_in") {
    throw new Error("Dandelion runs only after the user opts in: pass consent: \"opted_in\".");
  }
  if (!/^wss?:\/\//.test(coordinatorUrl ?? "")) {
    throw new Error("coordinatorUrl must be a ws:// or wss:// URL.");
  }
  if (current) throw new Error("A Dandelion worker is already running: stop() it first.");
  const worker = makeWorker(new URL(workerUrl, import.meta.url));
  const snapshot = await storage.load();
  const config = { coordinatorUrl, tasks, eligibility, testHooks };
  current = { worker, storage, config, waiters: [] };
  worker.onmessage = (event) => {
    const message = event.data;
    switch (message.type) {
      case "status":
        lastStatus = message.status;
        if (onStatus) onStatus(lastStatus);
        emit("status", lastStatus);
        break;
      case "kv":
        if (message.op === "set") storage.set(message.key, message.value);
        else if (message.op === "delete") storage.delete(message.key);
        else storage.clear();
        break;
      case "booted":
        emit("booted", message.timings);
        break;
      case "log":
        emit("log", { level: message.level, message: message.message });
        break;
      case "error":
        emit("error", { message: message.message });
        break;
      default:
        for (const waiter of current?.waiters ?? []) waiter(message);
    }
  };
  worker.onerror = (event) => emit("error", { message: event.message ?? "worker failed" });
  worker.postMessage({
    type: "start",
    config,
    signals,
    storage: snapshot,
  });
  return { events, status: () => lastStatus, stop, optOut, updateSignals };
}

// A Worker script must come from the page's own origin. A page elsewhere (the coordinator
// serves the bundle from its own port) starts a one-line module worker from a blob: URL that
// imports the real one; the bundle is served with CORS for this.
function makeWorker(url) {
  if (globalThis.location === undefined || url.origin === globalThis.location.origin) {
    return new Worker(url, { type: "module" });
  }
  const shim = new Blob([`import ${JSON.stringify(url.href)};`], { type: "text/javascript" });
  return new Worker(URL.createObjectURL(shim), { type: "module" });
}

function waitFor(type, timeoutMs) {
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(null), timeoutMs);
    current.waiters.push((message) => {
      if (message.type === type) {
        clearTimeout(timer);
        resolve(message);
      }
    });
  });
}

function finish(state, detail) {
  if (!current) return;
  current.worker.terminate();
  current = null;
  lastStatus = { ...lastStatus, state, detail };
  emit("status", lastStatus);
  emit("stopped", lastStatus);
}

/** Stop taking part (consent is kept; start() again resumes). */
export async function stop() {
  if (!current) return;
  current.worker.postMessage({ type: "stop" });
  await waitFor("stopped", 2000);
  finish("stopped", "Stopped.");
}

/** The user withdrew consent: the coordinator is told, training stops at once and the
 *  worker's local state is deleted (even if the coordinator cannot be reached).
 *
 *  With no worker running, pass `{coordinatorUrl, storage}`: a worker is started only to
 *  announce the withdrawal under the stored pseudonymous id, then the state is deleted.
 *  Resolves to {delivered}: whether the coordinator was told. */
export async function optOut({ coordinatorUrl, storage = localStorageAdapter(), workerUrl } = {}) {
  if (!current) {
    if (!/^wss?:\/\//.test(coordinatorUrl ?? "")) {
      storage.clear();
      return { delivered: false };
    }
    const url = workerUrl ?? new URL("./dandelion-worker.mjs", import.meta.url);
    const worker = makeWorker(new URL(url, import.meta.url));
    current = { worker, storage, waiters: [] };
    worker.onmessage = (event) => {
      for (const waiter of current?.waiters ?? []) waiter(event.data);
    };
    worker.postMessage({ type: "opt_out", config: { coordinatorUrl }, storage: await storage.load() });
  } else {
    current.worker.postMessage({ type: "opt_out", config: current.config });
  }
  const { storage: kept } = current;
  const answer = await waitFor("opted_out", 15000);
  kept.clear();
  finish("stopped", "You opted out. Training stopped; local data deleted.");
  return { delivered: Boolean(answer?.delivered) };
}

/** Replace the local history the next round trains on. */
export function updateSignals(signals) {
  if (current) current.worker.postMessage({ type: "signals", signals });
}

/** The public model URL of `task` at the coordinator of `coordinatorUrl`: its WebSocket path
 *  ".../ws" becomes ".../models/<task>", ws(s) becomes http(s). */
export function modelUrlFor(coordinatorUrl, task) {
  const url = new URL(coordinatorUrl);
  url.protocol = url.protocol === "wss:" ? "https:" : "http:";
  url.pathname = url.pathname.replace(/\/ws\/?$/, "") + `/models/${encodeURIComponent(task)}`;
  url.search = "";
  return url.href;
}

// The coordinator's own words for a failed request ({"error": {"message"}}), with the status.
async function httpError(response) {
  try {
    const message = (await response.json())?.error?.message;
    if (typeof message === "string" && message) return `${message} (HTTP ${response.status})`;
  } catch {
    // not JSON: the status is all there is
  }
  return `HTTP ${response.status}`;
}

async function sha256Hex(buffer) {
  const digest = await crypto.subtle.digest("SHA-256", buffer);
  return [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, "0")).join("");
}

let predictor = null; // a worker kept for predict() when none is training
let requests = 0;

function ask(worker, message, answerType, timeoutMs = 120000) {
  const id = ++requests;
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      worker.removeEventListener("message", listen);
      reject(new Error(`${message.type}: no answer in ${timeoutMs / 1000} s`));
    }, timeoutMs);
    function listen(event) {
      const answer = event.data;
      if (answer?.id !== id || answer.type !== answerType) return;
      clearTimeout(timer);
      worker.removeEventListener("message", listen);
      if (answer.error) reject(new Error(answer.error));
      else resolve(answer.result);
    }
    worker.addEventListener("message", listen);
    worker.postMessage({ ...message, id });
  });
}

/** Score this browser's own signals with the task's latest released model, here: the model's
 *  spec and weights are fetched from the coordinator's public endpoint (`GET /models/<task>`,
 *  cacheable; the weights are checked against their sha256), the objective and model code are
 *  the ones inside the worker bundle, and nothing about the signals leaves the browser.
 *
 *  `signals` defaults to the running worker's. Resolves to
 *  {task, version, objective, outputs: [names], predictions: [{item, scores}], now}: `now`
 *  is the moment (seconds since the epoch) the features describe, so the same model and
 *  signals give the same scores elsewhere. */
export async function predict(options = {}) {
  checkOptions("predict()", options, PREDICT_OPTIONS);
  const {
    task,
    coordinatorUrl = current?.config?.coordinatorUrl,
    modelUrl,
    signals,
    workerUrl = new URL("./dandelion-worker.mjs", import.meta.url),
  } = options;
  if (!task && !modelUrl) throw new Error("predict() needs a task (or a modelUrl).");
  if (!modelUrl && !/^wss?:\/\//.test(coordinatorUrl ?? "")) {
    throw new Error("predict() needs coordinatorUrl (ws:// or wss://) or modelUrl.");
  }
  const url = modelUrl ?? modelUrlFor(coordinatorUrl, task);
  const response = await fetch(url);
  if (!response.ok) throw new Error(`model of ${task ?? url}: ${await httpError(response)}`);
  const model = await response.json();
  const weightsResponse = await fetch(new URL(model.weights, url));
  if (!weightsResponse.ok) throw new Error(`model weights: ${await httpError(weightsResponse)}`);
  const weights = await weightsResponse.arrayBuffer();
  if (model.sha256 && (await sha256Hex(weights)) !== model.sha256) {
    throw new Error("model weights: sha256 mismatch");
  }
  let worker = current?.worker;
  if (!worker) {
    predictor ??= makeWorker(new URL(workerUrl, import.meta.url));
    worker = predictor;
  }
  return ask(worker, { type: "predict", model, weights, signals }, "predicted");
}

/** The worker's latest status: {state, detail, rounds_joined, updates_accepted, last_update_at}. */
export function status() {
  return lastStatus;
}
