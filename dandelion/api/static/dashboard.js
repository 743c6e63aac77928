// The dashboard: snapshots from /api/v1/stream (server-sent events, read with fetch so the
// bearer token can go in a header), drawn as they arrive. The token comes from the address's
// #token=… fragment (never sent to a server, removed from the address bar at once) or from the
// form, and is kept in sessionStorage only.

const $ = (id) => document.getElementById(id);
const LABELS = {
  opted_in: "opted in",
  connected_now: "connected now",
  checked_in: "checked in",
  selected: "selected",
  reported: "reported",
  dropped: "dropped",
  opted_out: "opted out",
};

function takeToken() {
  const match = location.hash.match(/token=([^&]+)/);
  if (match) {
    sessionStorage.setItem("dandelion.token", decodeURIComponent(match[1]));
    history.replaceState(null, "", location.pathname);
  }
  return sessionStorage.getItem("dandelion.token");
}

// A count, or "<k" when it is withheld.
function count(value, k) {
  return value === null || value === undefined ? `<${k}` : value.toLocaleString("en");
}

function figure(value, digits = 3) {
  return value === null || value === undefined ? "—" : Number(value).toPrecision(digits);
}

function minutes(seconds) {
  return seconds % 60 === 0 ? `${seconds / 60} min` : `${seconds} s`;
}

function el(tag, attrs = {}, text) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, value);
  if (text !== undefined) node.textContent = text;
  return node;
}

function render(snapshot) {
  const k = snapshot.k;
  $("overview").hidden = false;
  $("k").textContent = $("k2").textContent = String(k);
  $("bucket").textContent = minutes(snapshot.bucket_s);
  $("window").textContent = `(last ${minutes(snapshot.window_s)})`;
  $("window2").textContent = minutes(snapshot.window_s);
  $("as-of").textContent = `as of ${new Date(snapshot.as_of * 1000).toISOString().slice(11, 16)} UTC`;
  const funnel = $("funnel");
  funnel.replaceChildren(
    ...snapshot.funnel_order.map((stage) => {
      const value = snapshot.funnel[stage];
      const box = el("div", { class: "stage", "data-stage": stage });
      box.append(
        el("div", { class: "n", "data-withheld": String(value === null) }, count(value, k)),
        el("div", { class: "label" }, LABELS[stage] ?? stage),
      );
      return box;
    }),
  );
  $("funnel-chart").innerHTML = snapshot.charts.funnel;
  renderCluster(snapshot.cluster, k);
  const tasks = $("tasks");
  tasks.replaceChildren(...snapshot.tasks.map((task) => renderTask(task, snapshot.charts.tasks[task.name], k)));
}

// A shard of a cluster: every live shard, its connections and the tasks it leads.
function renderCluster(cluster, k) {
  $("cluster").hidden = !cluster;
  if (!cluster) return;
  $("cluster-shard").textContent = `(this page from shard ${cluster.shard}; ${count(cluster.connections, k)} connected in all)`;
  const head = el("tr");
  for (const h of ["shard", "connected now", "leads"]) head.append(el("th", {}, h));
  const rows = cluster.shards.map((s) => {
    const row = el("tr", { "data-shard": s.shard });
    for (const c of [s.shard, count(s.connections, k), s.leads.join(", ") || "—"]) row.append(el("td", {}, String(c)));
    return row;
  });
  $("shards").replaceChildren(head, ...rows);
}

function renderTask(task, charts, k) {
  const box = el("section", { class: "task", "data-task": task.name });
  const title = el("h2", {}, `Task ${task.name} `);
  title.append(el("span", { class: "status", "data-status": task.status }, task.status.replace("_", " ")));
  box.append(title);
  const facts = [`model version ${task.model_version ?? "—"}`];
  if (task.goal) facts.push(`goal ${task.goal} reports per round`);
  if (task.epsilon_budget !== null) {
    facts.push(`ε spent ${figure(task.epsilon_spent)} of ${task.epsilon_budget} (δ = ${task.delta.toExponential(1)})`);
  }
  if (task.reason) facts.push(task.reason);
  box.append(el("p", { class: "facts" }, facts.join(" · ")));
  // What that ε promises, in the coordinator's words (dandelion/privacy/guarantee.py).
  if (task.guarantee) {
    const g = task.guarantee;
    const line = el("p", { class: "guarantee", "data-guarantee": g.mechanism }, "Guarantee: ");
    line.append(el("span", {}, g.statement));
    box.append(line);
  }
  // Why the open round is still open, in the coordinator's words (counts below k say "<k").
  if (task.open_round) {
    const o = task.open_round;
    box.append(el("p", { class: "facts", "data-open-round": String(o.round) }, `Round ${o.round} open: ${count(o.reported, k)} reports so far`));
  }
  if (task.waiting) box.append(el("p", { class: "waiting", "data-waiting": "true" }, `Waiting: ${task.waiting}`));
  const grid = el("div", { class: "charts" });
  for (const svg of Object.values(charts ?? {})) {
    const holder = el("div", { class: "chart-box" });
    holder.innerHTML = svg;
    grid.append(holder);
  }
  box.append(grid);
  const table = el("table", { class: "rounds" });
  const head = el("tr");
  for (const h of ["round", "status", "goal", "reported", "dropped", "duration, s", "loss", "accuracy", "clip norm", "ε"]) {
    head.append(el("th", {}, h));
  }
  table.append(head);
  for (const r of [...task.rounds].reverse().slice(0, 10)) {
    const row = el("tr", { "data-round": String(r.round) });
    const cells = [r.round, r.status, r.goal, count(r.reported, k), count(r.dropped, k),
      r.duration_s ?? "—", figure(r.loss), figure(r.accuracy), figure(r.clip_norm), figure(r.epsilon)];
    for (const c of cells) row.append(el("td", {}, String(c)));
    table.append(row);
  }
  box.append(table);
  // Evaluation rounds: the latest model scored on examples the workers never trained on.
  if (task.evaluations && task.evaluations.length) {
    const evals = el("table", { class: "rounds evaluations" });
    const top = el("tr");
    for (const h of ["evaluation round", "model version", "reports", "held-out loss", "held-out accuracy"]) {
      top.append(el("th", {}, h));
    }
    evals.append(top);
    for (const e of [...task.evaluations].reverse().slice(0, 10)) {
      const row = el("tr", { "data-evaluation": String(e.round), "data-withheld": String(e.withheld) });
      const cells = [e.round, e.model_version, count(e.reports, k),
        e.withheld ? "withheld" : figure(e.loss), e.withheld ? "withheld" : figure(e.accuracy)];
      for (const c of cells) row.append(el("td", {}, String(c)));
      evals.append(row);
    }
    box.append(evals);
  }
  return box;
}

function setLive(state, text) {
  $("live").dataset.state = state;
  $("live").textContent = text;
}

async function follow(token) {
  for (;;) {
    try {
      const response = await fetch("/api/v1/stream", { headers: { Authorization: `Bearer ${token}` } });
      if (response.status === 401) return showLogin("That token was not accepted.");
      if (!response.ok) throw new Error(`HTTP ${response.status}`);
      setLive("live", "live");
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += value;
        let end;
        while ((end = buffer.indexOf("\n\n")) >= 0) {
          const block = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          const data = block.split("\n").filter((l) => l.startsWith("data: ")).map((l) => l.slice(6)).join("\n");
          if (data) {
            const snapshot = JSON.parse(data);
            window.__snapshot = snapshot;
            window.__renders = (window.__renders ?? 0) + 1;
            render(snapshot);
          }
        }
      }
    } catch (error) {
      console.warn("dashboard stream:", error);
    }
    setLive("lost", "reconnecting…");
    await new Promise((resolve) => setTimeout(resolve, 2000));
  }
}

function showLogin(message) {
  sessionStorage.removeItem("dandelion.token");
  $("login").hidden = false;
  $("overview").hidden = true;
  setLive("lost", "not signed in");
  if (message) {
    $("login-error").hidden = false;
    $("login-error").textContent = message;
  }
}

$("login").addEventListener("submit", (event) => {
  event.preventDefault();
  sessionStorage.setItem("dandelion.token", $("token").value.trim());
  $("login").hidden = true;
  follow($("token").value.trim());
});

const token = takeToken();
if (token) follow(token);
else showLogin();
