// The options page: the user's choice (off by default), the coordinator's address, the optional
// permission to read bookmarks and, once they opted in, what the worker is doing, in words. It
// reads only chrome.storage.local, which the service worker keeps up to date; it never reads
// history or bookmarks itself.
import { checkCoordinatorUrl, coordinator } from "./settings.js";

const $ = (id) => document.getElementById(id);
const send = (type, fields = {}) =>
  chrome.runtime.sendMessage({ target: "background", type, ...fields });

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

let editing = false; // the user is typing an address: refreshes leave the field alone

function renderCoordinator({ url, builtIn, chosen }) {
  $("coordinator").textContent = url ?? "None set.";
  if (!editing) $("coordinator-url").value = url ?? "";
  const back = builtIn ? ` Save an empty field to go back to the built-in one, ${builtIn}.` : "";
  $("coordinator-source").textContent = chosen
    ? `You set this address.${back}`
    : builtIn
      ? "This extension came with this address; you can change it."
      : "This extension came without one: enter the address you were given.";
}

function render({ consent, status, optedInAt }, { url }) {
  const inNow = consent === "opted_in";
  $("opt-in").hidden = inNow;
  $("opt-in").disabled = !url;
  $("opt-out").hidden = !inNow;
  $("worker").hidden = !inNow;
  const idle = url
    ? "You are not taking part. Nothing is read and nothing is sent."
    : "You are not taking part. Before you can, enter the coordinator's address below.";
  $("consent-text").textContent = inNow
    ? `You are taking part${optedInAt ? ` since ${new Date(optedInAt).toLocaleString()}` : ""}.`
    : (notice ?? idle);
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
  const setting = await coordinator();
  renderCoordinator(setting);
  render(await chrome.storage.local.get(["consent", "status", "optedInAt"]), setting);
}

function say(text, problem = false) {
  $("coordinator-message").textContent = text;
  $("coordinator-message").classList.toggle("problem", problem);
  $("coordinator-url").setAttribute("aria-invalid", String(problem));
}

async function saveCoordinator(event) {
  event.preventDefault();
  say(""); // a message is about this attempt only
  const typed = $("coordinator-url").value;
  const { builtIn } = await coordinator();
  // Checked here for a quick answer, and again by the service worker, which decides.
  const checked = !typed.trim() && builtIn ? {} : checkCoordinatorUrl(typed);
  if (checked.problem) {
    say(checked.problem, true);
    $("coordinator-url").focus();
    return;
  }
  $("coordinator-save").disabled = true;
  let answer;
  try {
    const reply = await send("set_coordinator", { url: typed });
    if (!reply?.ok) throw new Error(reply?.error ?? "no answer from the extension");
    editing = false;
    const done = reply.restarted ? "Saved: the worker is starting again with it." : "Saved.";
    answer = [reply.warning ? `${done} ${reply.warning}` : done, false];
  } catch (error) {
    answer = [error.message, true];
  } finally {
    $("coordinator-save").disabled = false;
    await refresh();
  }
  say(...answer); // last, once the page shows the address in use
}

async function act(button, type, after) {
  button.disabled = true;
  try {
    const reply = await send(type);
    if (!reply?.ok) throw new Error(reply?.error ?? "no answer from the extension");
    if (after) after(reply);
  } catch (error) {
    notice = `Something went wrong: ${error.message}`; // shown by the refresh below
  } finally {
    button.disabled = false;
    await refresh();
  }
}

// The optional `bookmarks` permission: asked for only on the user's click (Chrome shows its
// own prompt), given back with the other button or by stopping to take part.
const BOOKMARKS = { permissions: ["bookmarks"] };

async function renderBookmarks() {
  const allowed = await chrome.permissions.contains(BOOKMARKS);
  $("bookmarks-allow").hidden = allowed;
  $("bookmarks-revoke").hidden = !allowed;
  $("bookmarks-state").textContent = allowed
    ? "Allowed: while you take part, the extension reads your bookmarks."
    : "Not allowed: the extension does not read your bookmarks.";
}

async function bookmarks(button, change) {
  button.disabled = true;
  try {
    await change(BOOKMARKS); // the request must come straight from the click
  } catch (error) {
    $("bookmarks-state").textContent = `Something went wrong: ${error.message}`;
    return;
  } finally {
    button.disabled = false;
  }
  await renderBookmarks();
}

$("bookmarks-allow").addEventListener("click", () =>
  bookmarks($("bookmarks-allow"), (p) => chrome.permissions.request(p)),
);
$("bookmarks-revoke").addEventListener("click", () =>
  bookmarks($("bookmarks-revoke"), (p) => chrome.permissions.remove(p)),
);
chrome.permissions.onAdded.addListener(renderBookmarks);
chrome.permissions.onRemoved.addListener(renderBookmarks);
renderBookmarks();

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
$("coordinator-form").addEventListener("submit", saveCoordinator);
$("coordinator-url").addEventListener("input", () => { editing = true; });
// "3 min ago" should age while the page is open.
setInterval(refresh, 15000);
refresh();
