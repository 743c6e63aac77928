// Dandelion's module Web Worker: boots Pyodide from the bundle it was served with, installs the
// worker wheel offline (integrity-checked, unpacked into site-packages), and runs the Python
// worker's async loop on this worker's event loop. Nothing is fetched from anywhere but the
// bundle's own origin.
//
// Messages in:  {type: "boot", installWorker}        boot only (benchmarks: with/without wheel)
//               {type: "start", config, signals, storage}
//               {type: "signals", signals} | {type: "stop"}
//               {type: "opt_out", config?, storage?}   (config when no worker was started)
//               {type: "predict", id, model, weights, signals?}  (signals: else the running worker's)
// Messages out: {type: "booted", timings} | {type: "status", status} | {type: "kv", op, key, value}
//               {type: "log", level, message} | {type: "error", message} | {type: "stopped"}
//               {type: "opted_out", delivered} | {type: "predicted", id, result | error}

const base = new URL("./", import.meta.url);
let booting = null;
let entry = null;
let optedOut = false;
let started = false;
let latestSignals = null; // signals that came while Pyodide was still loading
const kv = new Map();

function post(message) {
  self.postMessage(message);
}

function status(state, detail) {
  post({ type: "status", status: { state, detail, rounds_joined: 0, updates_accepted: 0 } });
}

// The integrity attribute fetch() checks: "sha256-" and the digest in base64.
function integrity(hexDigest) {
  const bytes = hexDigest.match(/../g).map((h) => parseInt(h, 16));
  return "sha256-" + btoa(String.fromCharCode(...bytes));
}

async function boot(installWorker) {
  const t0 = performance.now();
  const manifest = await (await fetch(new URL("bundle.json", base))).json();
  const indexURL = new URL(manifest.pyodide.path, base).href;
  // The wheel downloads while Pyodide boots; the browser checks it against the bundle's
  // sha256 (a mismatch rejects the fetch).
  const wheel = installWorker
    ? fetch(new URL(manifest.worker.wheel, base), {
        integrity: integrity(manifest.files[manifest.worker.wheel].sha256),
      }).then((response) => {
        if (!response.ok) throw new Error(`worker wheel: HTTP ${response.status}`);
        return response.arrayBuffer();
      })
    : null;
  wheel?.catch(() => {}); // awaited below; not an unhandled rejection meanwhile
  const { loadPyodide } = await import(new URL("pyodide.mjs", indexURL).href);
  const pyodide = await loadPyodide({
    indexURL,
    // The bundle's lock file lists only our wheel: nothing can be looked up elsewhere.
    lockFileURL: new URL("pyodide-lock.json", indexURL).href,
    packageBaseUrl: indexURL,
    cdnUrl: indexURL, // never a third-party CDN: a package missing here is simply missing
    stdout: (line) => post({ type: "log", level: "info", message: line }),
    stderr: (line) => post({ type: "log", level: "warning", message: line }),
  });
  const t1 = performance.now();
  const timings = { fetch_and_boot_ms: t1 - t0 };
  if (installWorker) {
    // A pure-Python wheel is a zip: unpacked into site-packages, it is installed. (The same
    // wheel also loads with pyodide.loadPackage("dandelion-worker") through the lock file;
    // unpacking it directly skips the package manager's bookkeeping, about 130 ms.)
    pyodide.unpackArchive(await wheel, "wheel");
    entry = pyodide.pyimport(manifest.worker.module);
    timings.install_and_import_ms = performance.now() - t1;
  }
  timings.total_ms = performance.now() - t0;
  timings.python = pyodide.runPython("import sys; sys.version.split()[0]");
  timings.wasm_memory_bytes = pyodide._module?.HEAP8?.buffer?.byteLength ?? null;
  return { pyodide, timings };
}

function ensureBooted(installWorker = true) {
  booting ??= boot(installWorker);
  return booting;
}

const bridge = {
  kvGet: (key) => (kv.has(key) ? kv.get(key) : undefined),
  kvSet: (key, value) => {
    kv.set(key, value);
    post({ type: "kv", op: "set", key, value });
  },
  kvDelete: (key) => {
    kv.delete(key);
    post({ type: "kv", op: "delete", key });
  },
  kvClear: () => {
    kv.clear();
    post({ type: "kv", op: "clear" });
  },
  status: (json) => post({ type: "status", status: JSON.parse(json) }),
  log: (level, message) => post({ type: "log", level, message }),
};

// An error for the page, in one line: a Python exception arrives as its whole traceback, of
// which the last line ("ValueError: why") is what a person needs.
function inWords(error) {
  const text = String(error?.message ?? error).trim();
  if (error?.name !== "PythonError") return text;
  const lines = text.split("\n").filter((line) => line.trim() !== "");
  return lines[lines.length - 1] ?? text;
}

async function handle(message) {
  switch (message.type) {
    case "boot": {
      const { timings } = await ensureBooted(message.installWorker !== false);
      post({ type: "booted", timings });
      break;
    }
    case "start": {
      for (const [key, value] of Object.entries(message.storage ?? {})) kv.set(key, value);
      status("loading", "Loading the Python runtime.");
      const { timings } = await ensureBooted(true);
      post({ type: "booted", timings });
      if (optedOut) break; // withdrawn while Pyodide was loading: never start
      const signals = latestSignals ?? message.signals ?? {};
      latestSignals = null;
      entry.start(JSON.stringify(message.config), JSON.stringify(signals), bridge);
      started = true;
      break;
    }
    case "signals":
      // Before the worker started (Pyodide still loading), the newest signals wait for it.
      if (started) entry.set_signals(JSON.stringify(message.signals ?? {}));
      else latestSignals = message.signals ?? {};
      break;
    case "stop":
      if (entry) entry.stop();
      started = false;
      post({ type: "stopped" });
      break;
    case "opt_out":
      // Also while booting, or with no worker running: the Python side then connects only to
      // announce the withdrawal under the stored id.
      optedOut = true;
      for (const [key, value] of Object.entries(message.storage ?? {})) kv.set(key, value);
      let delivered = false;
      try {
        await ensureBooted(true);
        const config = message.config ? JSON.stringify(message.config) : null;
        delivered = Boolean(await entry.opt_out(config, bridge));
      } finally {
        kv.clear();
        post({ type: "opted_out", delivered });
      }
      break;
    case "predict":
      try {
        await ensureBooted(true);
        const signals = message.signals ? JSON.stringify(message.signals) : null;
        const answer = entry.predict(
          JSON.stringify(message.model),
          new Uint8Array(message.weights),
          signals,
        );
        post({ type: "predicted", id: message.id, result: JSON.parse(answer) });
      } catch (error) {
        post({ type: "predicted", id: message.id, error: inWords(error) });
      }
      break;
    default:
      post({ type: "error", message: `unknown message type ${JSON.stringify(message.type)}` });
  }
}

self.onmessage = (event) => {
  handle(event.data).catch((error) => post({ type: "error", message: inWords(error) }));
};
