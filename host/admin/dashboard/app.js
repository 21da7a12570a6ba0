// The dashboard: plain JavaScript over the admin API, no build step.
//
// Everything a plugin or a source can influence (keys, properties, errors, names) is put
// on the page as text (`textContent`), never parsed as HTML: a hostile plugin must not be
// able to run script in a page that holds the admin token. The page's Content-Security-
// Policy forbids inline script as a second wall.
"use strict";

const TOKEN_KEY = "synchro-admin-token";
const FEED_ROWS = 200;
const REFRESH_MS = 2000;

const $ = (selector) => document.querySelector(selector);

// The token comes in the link's fragment (never sent to a server, so never in a log) and
// stays in this tab's session storage; the address bar forgets it at once.
function takeToken() {
  const hash = new URLSearchParams(location.hash.slice(1));
  if (hash.has("token")) {
    sessionStorage.setItem(TOKEN_KEY, hash.get("token"));
    history.replaceState(null, "", location.pathname + location.search);
  }
  return sessionStorage.getItem(TOKEN_KEY);
}

class Unauthorized extends Error {}

async function api(method, path) {
  const response = await fetch(path, {
    method,
    headers: { Authorization: "Bearer " + sessionStorage.getItem(TOKEN_KEY) },
    cache: "no-store",
  });
  if (response.status === 401) throw new Unauthorized("the token was refused");
  const body = await response.text();
  const json = body ? JSON.parse(body) : null;
  if (!response.ok) throw new Error((json && json.error) || response.status + " " + response.statusText);
  return json;
}

// An element with text (never HTML) and attributes.
function el(tag, text, attributes) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  for (const [name, value] of Object.entries(attributes || {})) node.setAttribute(name, value);
  return node;
}

function row(cells) {
  const tr = el("tr");
  for (const cell of cells) {
    if (cell instanceof Node) {
      const td = el("td");
      td.append(cell);
      tr.append(td);
    } else {
      tr.append(el("td", cell));
    }
  }
  return tr;
}

const time = (millis) => new Date(millis).toLocaleTimeString();

function say(text, isError) {
  const message = $("#message");
  message.textContent = text;
  message.className = isError ? "error" : "";
}

function showLogin(error) {
  $("#app").hidden = true;
  $("#login").hidden = false;
  $("#login-error").textContent = error || "";
  $("#host-state").textContent = "no token";
}

// ---- plugins ----------------------------------------------------------------------

function healthText(plugin) {
  switch (plugin.state) {
    case "recoverable-error": return `recoverable error after ${plugin.failures} failures: ${plugin["last-error"]}`;
    case "permanent-error": return `permanent error after ${plugin.failures} failures (check its grants and limits): ${plugin["last-error"]}`;
    case "quarantined": return `quarantined after ${plugin.failures} failures: ${plugin.reason}`;
    case "stopped": return `stopped: ${plugin.reason}`;
    default: return plugin.state;
  }
}

function runSummary(run) {
  if (run.kind === "pass") {
    return `${run.role} pass over ${run.entities} entities: ${run.done} done, ${run.failed} failed, ` +
      `${run.held} held (${run.ms} ms)`;
  }
  if (run.error) return `failed: ${run.error}`;
  return `${run.entities} entities, +${run.created} ~${run.updated} −${run.deleted}` +
    (run.held ? `, ${run.held} held` : "") + ` (${run["collect-ms"]} ms)`;
}

function runText(run) {
  return run ? `${time(run.started)}: ${runSummary(run)}` : "—";
}

function counterText(counters) {
  return Object.entries(counters).filter(([, value]) => value > 0)
    .map(([name, value]) => `${name} ${value}`).join(", ") || "—";
}

function actionButton(name, action, label, query) {
  const button = el("button", label, { "data-action": action, type: "button" });
  button.addEventListener("click", () => act(name, action, query));
  return button;
}

async function act(name, action, query) {
  const path = `/v1/plugins/${encodeURIComponent(name)}/${action}` + (query ? "?" + new URLSearchParams(query) : "");
  try {
    const answer = await api("POST", path);
    const done = {
      reload: () => `reloaded ${name}: version ${answer.version}${answer.cached ? " (cached)" : ""} in ${answer["elapsed-ms"]} ms`,
      release: () => `released ${name}`,
      pause: () => `paused ${name}`,
      resume: () => `resumed ${name}`,
      collect: () => `${name} collected ${answer.entities} entities: +${answer.created} ~${answer.updated} −${answer.deleted}`,
      "approve-deletes": () => `deleted ${answer.deleted} entities of ${name}`,
    }[action];
    say(done ? done() : `${action} ${name}: done`);
  } catch (error) {
    if (error instanceof Unauthorized) return showLogin(error.message);
    say(`${action} ${name}: ${error.message}`, true);
  }
  refresh();
}

function renderPlugins(report) {
  const body = $("#plugins tbody");
  body.replaceChildren();
  const held = [];
  for (const plugin of report.plugins) {
    const health = el("span", healthText(plugin), { class: "health " + plugin.state });
    const actions = el("span", null, { class: "actions" });
    actions.append(actionButton(plugin.name, "reload", "Reload"));
    if (plugin.state === "quarantined") actions.append(actionButton(plugin.name, "release", "Release"));
    if (plugin.roles.includes("collector")) {
      actions.append(plugin.state === "paused"
        ? actionButton(plugin.name, "resume", "Resume")
        : actionButton(plugin.name, "pause", "Pause"));
      actions.append(actionButton(plugin.name, "collect", "Collect now"));
    }
    const runs = el("button", "Runs", { "data-action": "runs", type: "button" });
    runs.addEventListener("click", () => showRuns(plugin.name));
    actions.append(runs);
    const name = el("span", `${plugin.name} ${plugin.version}`);
    const tr = row([name, plugin.roles.join(", "), health, runText(plugin["last-run"]), counterText(plugin.counters), actions]);
    tr.dataset.plugin = plugin.name;
    if (plugin["reload-error"]) tr.append(el("td", "last reload refused: " + plugin["reload-error"], { class: "error" }));
    body.append(tr);
    if (plugin["held-deletes"]) held.push([plugin.name, plugin["held-deletes"]]);
  }
  renderHeld(held);
  const manifests = $("#manifests");
  manifests.replaceChildren();
  for (const loading of report.loading) {
    manifests.append(el("li", `${loading.manifest}: loading for ${Math.round(loading["elapsed-ms"] / 1000)} s`, { class: "loading" }));
  }
  for (const refused of report.refused) {
    manifests.append(el("li", `${refused.manifest} refused: ${refused.error}`, { class: "error" }));
  }
  $("#outbox").textContent = `change stream at #${report.outbox.last}`;
}

function renderHeld(held) {
  $("#held").hidden = held.length === 0;
  const body = $("#held tbody");
  body.replaceChildren();
  for (const [name, deletes] of held) {
    const approve = actionButton(name, "approve-deletes", `Approve ${deletes.count} deletes`, { held: deletes.id });
    const tr = row([name, `${deletes.count} of ${deletes.baseline} held since ${time(deletes.since)}: ${deletes.reason}`,
      deletes.sample.join(", "), approve]);
    tr.dataset.plugin = name;
    body.append(tr);
  }
}

let runsOf = null;

async function showRuns(name) {
  runsOf = name;
  $("#runs").hidden = false;
  $("#runs-of").textContent = name;
  try {
    const runs = await api("GET", `/v1/plugins/${encodeURIComponent(name)}/runs`);
    const body = $("#runs tbody");
    body.replaceChildren();
    for (const run of runs.slice().reverse()) {
      body.append(row([new Date(run.started).toLocaleString(), run.kind === "pass" ? run.role : "collect",
        runSummary(run)]));
    }
  } catch (error) {
    say(`runs of ${name}: ${error.message}`, true);
  }
}

async function refresh() {
  try {
    const report = await api("GET", "/v1/plugins");
    renderPlugins(report);
    // Ready as `/v1/ready` says it: no manifest still loading.
    const ready = report.loading.length === 0;
    $("#host-state").textContent = ready ? "ready" : "loading plugins";
    $("#host-state").className = "badge " + (ready ? "ready" : "loading");
    if (runsOf) showRuns(runsOf);
    browse(modelAfter);
  } catch (error) {
    if (error instanceof Unauthorized) return showLogin(error.message);
    $("#host-state").textContent = "unreachable: " + error.message;
    $("#host-state").className = "badge quarantined";
  }
}

// ---- the change feed --------------------------------------------------------------

let feed = null; // the AbortController of the running subscription

function feedQuery() {
  const form = new FormData($("#feed-filter"));
  const query = new URLSearchParams();
  for (const name of ["kind", "operation", "plugin"]) {
    const value = String(form.get(name) || "").trim();
    if (value) query.set(name, value);
  }
  return query;
}

function showChange(seq, change) {
  const entity = change.vertex || change.edge;
  const body = $("#feed tbody");
  const tr = row([seq, time(change.timestamp), change.operation, entity.type, entity.key, change.source,
    JSON.stringify(entity.properties)]);
  tr.className = change.operation.toLowerCase();
  tr.dataset.key = entity.key;
  body.prepend(tr);
  while (body.rows.length > FEED_ROWS) body.deleteRow(-1);
}

// Server-Sent Events over fetch, so that the token goes in a header (EventSource cannot
// send one); a dropped connection resumes after the last event seen (`Last-Event-ID`).
async function follow() {
  if (feed) feed.abort();
  const controller = new AbortController();
  feed = controller;
  $("#feed tbody").replaceChildren();
  const query = feedQuery().toString();
  let last = null;
  while (!controller.signal.aborted) {
    const headers = { Authorization: "Bearer " + sessionStorage.getItem(TOKEN_KEY) };
    if (last !== null) headers["Last-Event-ID"] = last;
    try {
      const response = await fetch("/v1/changes" + (query ? "?" + query : ""), { headers, signal: controller.signal });
      if (response.status === 401) return showLogin("the token was refused");
      if (response.status === 409) {
        $("#feed-state").textContent = "changes were trimmed while disconnected; following from now";
        last = null;
        continue;
      }
      if (!response.ok) {
        const error = await response.json().catch(() => ({}));
        $("#feed-state").textContent = error.error || response.statusText;
        $("#feed-state").className = "error";
        return;
      }
      $("#feed-state").textContent = "following";
      $("#feed-state").className = "";
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += value;
        let end;
        while ((end = buffer.indexOf("\n\n")) >= 0) {
          const event = { event: "message", data: "", id: null };
          for (const line of buffer.slice(0, end).split("\n")) {
            const colon = line.indexOf(":");
            if (colon <= 0) continue;
            const field = line.slice(0, colon);
            const text = line.slice(colon + 1).replace(/^ /, "");
            if (field === "data") event.data += text;
            else if (field === "id") event.id = text;
            else if (field === "event") event.event = text;
          }
          buffer = buffer.slice(end + 2);
          if (event.event === "change") {
            last = event.id;
            showChange(event.id, JSON.parse(event.data));
          } else if (event.event === "lost") {
            $("#feed-state").textContent = "this page fell behind and missed changes; following from now";
            last = null;
          }
        }
      }
    } catch (error) {
      if (controller.signal.aborted) return;
      $("#feed-state").textContent = "reconnecting: " + error.message;
    }
    await new Promise((resume) => setTimeout(resume, 1000));
  }
}

// ---- the model browser ------------------------------------------------------------

let modelNext = null;
let modelAfter = null; // where the page shown starts: it is read again at each refresh

async function browse(after) {
  modelAfter = after;
  const form = new FormData($("#model-filter"));
  const query = new URLSearchParams({ limit: "50" });
  for (const name of ["kind", "owner"]) {
    const value = String(form.get(name) || "").trim();
    if (value) query.set(name, value);
  }
  if (form.get("only")) query.set("only", form.get("only"));
  if (after) {
    query.set("after-kind", after.kind);
    query.set("after-key", after.key);
  }
  try {
    const page = await api("GET", "/v1/model?" + query);
    const body = $("#model tbody");
    body.replaceChildren();
    for (const entity of page.entities) {
      const tr = row([entity.kind, entity.key, entity.owner || "", entity.bookkeeping.sync.state,
        JSON.stringify(entity.properties)]);
      tr.dataset.key = entity.key;
      body.append(tr);
    }
    modelNext = page.next || null;
    $("#model-next").disabled = !modelNext;
  } catch (error) {
    if (error instanceof Unauthorized) return showLogin(error.message);
    say("model: " + error.message, true);
  }
}

// ---- start ------------------------------------------------------------------------

let refreshing = null;

function start() {
  $("#login").hidden = true;
  $("#app").hidden = false;
  refresh();
  if (refreshing === null) refreshing = setInterval(refresh, REFRESH_MS);
  follow();
}

$("#login").addEventListener("submit", (event) => {
  event.preventDefault();
  sessionStorage.setItem(TOKEN_KEY, $("#token").value.trim());
  start();
});
$("#feed-filter").addEventListener("submit", (event) => {
  event.preventDefault();
  follow();
});
$("#model-filter").addEventListener("submit", (event) => {
  event.preventDefault();
  browse(null);
});
$("#model-next").addEventListener("click", () => browse(modelNext));

if (takeToken()) start();
else showLogin();
