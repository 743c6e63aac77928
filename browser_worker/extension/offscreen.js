// The offscreen document: hosts Dandelion's module Web Worker (Pyodide) through the bundle's
// page API, and relays to the service worker, which owns chrome.storage (an offscreen
// document may only use chrome.runtime).
import { events, optOut, predict, start, stop, updateSignals } from "./worker/dandelion.mjs";

const toBackground = (message) =>
  chrome.runtime.sendMessage({ target: "background", ...message }).catch(() => {});

// The worker's state lives in chrome.storage.local through the service worker.
function extensionStorage(snapshot) {
  return {
    load: () => ({ ...snapshot }),
    set: (key, value) => toBackground({ type: "kv", op: "set", key, value }),
    delete: (key) => toBackground({ type: "kv", op: "delete", key }),
    clear: () => toBackground({ type: "kv", op: "clear" }),
  };
}

events.addEventListener("status", (e) => toBackground({ type: "status", status: e.detail }));
events.addEventListener("error", (e) => console.error("dandelion:", e.detail.message));

let running = false;
const handlers = {
  async start(message) {
    if (running) return updateSignals(message.signals);
    running = true;
    await start({
      coordinatorUrl: message.coordinatorUrl,
      consent: "opted_in", // the service worker sends "start" only after the user opted in
      signals: message.signals,
      storage: extensionStorage(message.storage),
    });
  },
  signals: (message) => updateSignals(message.signals),
  // The task's released model, fetched from the coordinator's public endpoint, on the signals
  // the service worker read: {task, version, objective, outputs, predictions, now}.
  predict: (message) =>
    predict({
      task: message.task,
      coordinatorUrl: message.coordinatorUrl,
      signals: message.signals,
    }),
  async stop() {
    await stop(); // the Web Worker ends; "start" makes a new one (a new coordinator address)
    running = false;
  },
  async opt_out(message) {
    const storage = extensionStorage(message.storage);
    const result = await optOut({ coordinatorUrl: message.coordinatorUrl, storage });
    running = false;
    return result;
  },
};

chrome.runtime.onMessage.addListener((message, sender, reply) => {
  if (sender.id !== chrome.runtime.id || message?.target !== "offscreen") return false;
  const handler = handlers[message.type];
  if (!handler) return false;
  Promise.resolve(handler(message)).then(
    (result) => reply({ ok: true, ...(result ?? {}) }),
    (error) => reply({ ok: false, error: String(error?.message ?? error) }),
  );
  return true;
});

toBackground({ type: "offscreen_ready" });
