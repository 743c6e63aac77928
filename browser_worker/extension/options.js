// The options page: the user's choice (off by default) and, once they opted in, what the
// worker is doing, in words. It reads only chrome.storage.local, which the service worker
// keeps up to date; it never reads history itself.

const $ = (id) => document.getElementById(id);
const send = (type) => chrome.runtime.sendMessage({ target: "background", type });

const STATES = {
  idle: "Not started yet.",
  loading: "Starting: loading the Python runtime inside the browser.",
  connecting: "Connecting to the coordinator.",
  connected: "Connected to the coordinator.",
  training: "Training on this browser's history.",
  waiting: "Waiting for the next round.",
  rejected: "The coordinator declined this browser for now.",
  stopped: "Stopped.",
};

function ago(seconds) {
  if (seconds < 60) return "just now";
  if (seconds < 3600) return `${Math.round(seconds / 60)} min ago`;
  if (seconds < 86400) return `${Math.round(seconds / 3600)} h ago`;
  return `${Math.round(seconds / 86400)} days ago`;
}

function describe(status) {
  const headline = STATES[status.state] ?? status.state;
  // The worker's own sentence says more (which round, why it waits); show both when they differ.
  return status.detail && status.detail !== headline ? `${headline} ${status.detail}` : headline;
}

let notice = null; // what the last opt-out did, shown until the user opts in again

function render({ consent, status, optedInAt }) {
  const inNow = consent === "opted_in";
  $("opt-in").hidden = inNow;
  $("opt-out").hidden = !inNow;
  $("worker").hidden = !inNow;
  $("consent-text").textContent = inNow
    ? `You are taking part${optedInAt ? ` since ${new Date(optedInAt).toLocaleString()}` : ""}.`
    : (notice ?? "You are not taking part. Nothing is read and nothing is sent.");
  if (inNow) notice = null;
  if (!inNow || !status) return;
  $("state").textContent = describe(status);
  $("state").dataset.state = status.state;
  $("rounds").textContent = String(status.rounds_joined ?? 0);
  $("updates").textContent = String(status.updates_accepted ?? 0);
  const last = status.last_update_at;
  $("last-update").textContent = last
    ? `${new Date(last * 1000).toLocaleString()} (${ago(Date.now() / 1000 - last)})`
    : "None yet.";
  $("problem").hidden = !status.last_error;
  $("problem").textContent = status.last_error ? `Last problem: ${status.last_error}` : "";
}

async function refresh() {
  render(await chrome.storage.local.get(["consent", "status", "optedInAt"]));
}

async function act(button, type, after) {
  button.disabled = true;
  try {
    const reply = await send(type);
    if (!reply?.ok) throw new Error(reply?.error ?? "no answer from the extension");
    if (after) after(reply);
  } catch (error) {
    $("consent-text").textContent = `Something went wrong: ${error.message}`;
  } finally {
    button.disabled = false;
    await refresh();
  }
}

$("opt-in").addEventListener("click", () => act($("opt-in"), "opt_in"));
$("opt-out").addEventListener("click", () =>
  act($("opt-out"), "opt_out", (reply) => {
    notice = reply.told
      ? "You stopped taking part. The coordinator was told, training stopped and the data this extension kept was deleted."
      : "You stopped taking part. Training stopped and the data this extension kept was deleted (the coordinator could not be reached to be told).";
  }),
);

chrome.storage.onChanged.addListener((_changes, area) => {
  if (area === "local") refresh();
});
send("config").then((config) => { $("coordinator").textContent = config?.coordinatorUrl ?? "?"; });
// "3 min ago" should age while the page is open.
setInterval(refresh, 15000);
refresh();
