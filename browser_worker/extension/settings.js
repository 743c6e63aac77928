// The coordinator's address, in one place for the service worker and the options page: the one
// the user set on the options page (chrome.storage.local "coordinatorUrl"), else the one the
// extension was built with (config.json; null when it was built without one, and then the
// options page asks for one before the user can take part).

let builtIn; // config.json's address, read once

export async function builtInCoordinator() {
  if (builtIn === undefined) {
    const config = await (await fetch(chrome.runtime.getURL("config.json"))).json();
    builtIn = config.coordinatorUrl ?? null;
  }
  return builtIn;
}

/** {url, builtIn, chosen}: the address in use (or null), the built-in one, and whether the
 *  user chose the one in use. */
export async function coordinator() {
  const { coordinatorUrl } = await chrome.storage.local.get("coordinatorUrl");
  const fallback = await builtInCoordinator();
  return { url: coordinatorUrl ?? fallback, builtIn: fallback, chosen: coordinatorUrl != null };
}

/** Check what the user typed: {url} (normalised), with a `warning` for plain ws:// to another
 *  machine, or {problem} saying what is wrong, in words. */
export function checkCoordinatorUrl(text) {
  const typed = String(text ?? "").trim();
  const example = "for example wss://fl.example.org/ws";
  if (!typed) return { problem: `Enter the coordinator's address, ${example}.` };
  let url;
  try {
    url = new URL(typed);
  } catch {
    return { problem: `"${typed}" is not an address: ${example}.` };
  }
  if (url.protocol !== "ws:" && url.protocol !== "wss:") {
    const scheme = `${url.protocol}//`;
    return { problem: `The address must start with wss:// or ws://, not ${scheme}.` };
  }
  if (!url.hostname) return { problem: `The address names no host: ${example}.` };
  if (url.username || url.password) {
    return { problem: "The address must not hold a user name or a password." };
  }
  if (url.hash) return { problem: "The address must not end in a #fragment." };
  const local = ["localhost", "127.0.0.1", "[::1]"].includes(url.hostname);
  const warning =
    url.protocol === "ws:" && !local
      ? "ws:// is not encrypted: use wss:// unless the coordinator runs on this machine."
      : undefined;
  return { url: url.href, warning };
}
