// relay dashboard: plain JavaScript, no build step, nothing loaded from elsewhere.
// Every piece of data comes from the /v1 API with the token kept in sessionStorage.
// Live updates: GET /v1/stream (Server-Sent Events), read with fetch() because EventSource
// cannot send an Authorization header.
"use strict";

const TOKEN_KEY = "relay.token";
const PAGE = 50;
const RECENT_DELIVERIES = 25;

const state = {
  jobs: new Map(), // id -> job view
  attempts: new Map(), // job id -> delivery attempts
  nextCursor: null,
  streamAbort: null,
  pendingDeliveries: new Set(),
  deliveryTimer: null,
  deadTimer: null,
};

class AuthError extends Error {}

const $ = (id) => document.getElementById(id);

function token() {
  return sessionStorage.getItem(TOKEN_KEY) || "";
}

function headers(accept) {
  const h = { Accept: accept || "application/json" };
  const t = token();
  if (t) h.Authorization = "Bearer " + t;
  return h;
}

async function api(method, path) {
  const resp = await fetch(path, { method, headers: headers(), cache: "no-store" });
  if (resp.status === 401) throw new AuthError("unauthorized");
  const body = resp.status === 204 ? null : await resp.json().catch(() => null);
  if (!resp.ok) throw new Error((body && (body.detail || body.title)) || resp.statusText);
  return body;
}

function say(text) {
  const el = $("message");
  el.textContent = text || "";
  el.hidden = !text;
}

function setConn(stateName, text) {
  const el = $("conn");
  el.dataset.state = stateName;
  el.textContent = text;
}

function el(tag, text, className) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (className) node.className = className;
  return node;
}

function shortId(id) {
  const code = el("code", id.slice(0, 8));
  code.title = id;
  return code;
}

function when(iso) {
  if (!iso) return "";
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? iso : d.toLocaleString();
}

// -- jobs ------------------------------------------------------------------------------------

function jobRow(job) {
  const tr = document.createElement("tr");
  tr.dataset.jobId = job.id;
  tr.append(el("td"), el("td"), el("td"), el("td"), el("td"), el("td"), el("td"));
  tr.cells[0].append(shortId(job.id));
  const bar = document.createElement("progress");
  bar.max = 100;
  tr.cells[3].append(bar, el("span", "", "pct"));
  fillJobRow(tr, job);
  return tr;
}

function fillJobRow(tr, job) {
  // a job whose DriveItem request was refused waits for a PATCHed authorization: say so, it needs the app
  const waiting = job.phase === "awaitingAuthorization";
  const shown = waiting ? "waiting for authorization" : job.status;
  const status = el("span", shown, "badge status s-" + (waiting ? "awaitingAuthorization" : job.status));
  if (waiting && job.authorizationWaitUntil) {
    status.title = "PATCH /v1/jobs/" + job.id + " with a fresh authorization before " + job.authorizationWaitUntil;
  }
  tr.cells[1].replaceChildren(status);
  tr.cells[2].textContent = job.operation || "";
  const pct = Number(job.percentageComplete) || 0;
  const bar = tr.cells[3].querySelector("progress");
  bar.value = pct;
  bar.setAttribute("aria-valuenow", String(pct));
  tr.cells[3].querySelector(".pct").textContent = pct.toFixed(1) + "%";
  tr.cells[4].textContent = job.sequence;
  tr.cells[5].textContent = job.pollCount;
  tr.cells[6].textContent = when(job.createdDateTime);
  tr.dataset.status = job.status;
}

function upsertJob(job) {
  state.jobs.set(job.id, job);
  const tbody = $("jobs").tBodies[0];
  let tr = tbody.querySelector(`tr[data-job-id="${CSS.escape(job.id)}"]`);
  if (tr) {
    fillJobRow(tr, job);
  } else {
    tr = jobRow(job);
    // newest first: before the first row created earlier than this job
    const before = Array.from(tbody.rows).find(
      (row) => (state.jobs.get(row.dataset.jobId)?.createdDateTime || "") < job.createdDateTime,
    );
    tbody.insertBefore(tr, before || null);
  }
  $("jobs-empty").hidden = tbody.rows.length > 0;
}

async function loadJobs(cursor) {
  const query = new URLSearchParams({ limit: String(PAGE) });
  if (cursor) query.set("cursor", cursor);
  const page = await api("GET", "/v1/jobs?" + query);
  for (const job of page.jobs) upsertJob(job);
  state.nextCursor = page.nextCursor;
  $("more").hidden = !page.nextCursor;
  $("jobs-empty").hidden = state.jobs.size > 0;
  return page.jobs;
}

// -- deliveries and dead letters ---------------------------------------------------------------

function queueDeliveries(jobId) {
  state.pendingDeliveries.add(jobId);
  if (state.deliveryTimer) return;
  state.deliveryTimer = setTimeout(flushDeliveries, 250);
}

async function flushDeliveries() {
  const ids = Array.from(state.pendingDeliveries);
  state.pendingDeliveries.clear();
  // a few at a time: the browser has only six connections to this host and the stream holds one
  for (let i = 0; i < ids.length; i += 4) {
    await Promise.all(
      ids.slice(i, i + 4).map(async (id) => {
        try {
          const body = await api("GET", `/v1/jobs/${encodeURIComponent(id)}/deliveries`);
          state.attempts.set(id, body.deliveries.map((d) => ({ ...d, jobId: id })));
        } catch (err) {
          if (err instanceof AuthError) throw err;
          state.attempts.delete(id); // expired or gone
        }
      }),
    ).catch(handleError);
  }
  state.deliveryTimer = null;
  if (state.pendingDeliveries.size) state.deliveryTimer = setTimeout(flushDeliveries, 250);
  renderDeliveries();
}

function renderDeliveries() {
  const all = [];
  for (const list of state.attempts.values()) all.push(...list);
  all.sort((a, b) => (a.time < b.time ? 1 : a.time > b.time ? -1 : 0));
  const rows = all.slice(0, RECENT_DELIVERIES).map((d) => {
    const tr = document.createElement("tr");
    tr.dataset.jobId = d.jobId;
    tr.dataset.outcome = d.outcome;
    const job = el("td");
    job.append(shortId(d.jobId));
    const outcome = el("td");
    outcome.append(el("span", d.outcome, "badge outcome o-" + d.outcome));
    const answer = d.status != null ? d.status : d.error || "";
    tr.append(
      el("td", when(d.time)),
      job,
      el("td", d.type),
      el("td", d.sequence ?? ""),
      el("td", d.attempt),
      outcome,
      el("td", answer, "mono"),
      el("td", d.durationMs != null ? Math.round(d.durationMs) : ""),
    );
    return tr;
  });
  $("deliveries").tBodies[0].replaceChildren(...rows);
  $("deliveries-empty").hidden = rows.length > 0;
}

function queueDead() {
  if (state.deadTimer) return;
  state.deadTimer = setTimeout(() => {
    state.deadTimer = null;
    loadDead().catch(handleError);
  }, 300);
}

async function loadDead() {
  const body = await api("GET", "/v1/dead-letters");
  const rows = body.deadLetters.map((d) => {
    const tr = document.createElement("tr");
    tr.dataset.eventId = d.eventId;
    const job = el("td");
    job.append(shortId(d.jobId));
    const action = el("td");
    const button = el("button", "Redeliver", "redeliver");
    button.type = "button";
    if (d.terminal) {
      button.addEventListener("click", () => redeliver(d.jobId, button));
    } else {
      button.disabled = true;
      button.title = "only a job's final event can be redelivered";
    }
    action.append(button);
    tr.append(el("td", when(d.deadDateTime)), job, el("td", d.type), el("td", d.sequence), el("td", d.attempts), action);
    return tr;
  });
  $("dead").tBodies[0].replaceChildren(...rows);
  $("dead-empty").hidden = rows.length > 0;
}

async function redeliver(jobId, button) {
  button.disabled = true;
  try {
    await api("POST", `/v1/jobs/${encodeURIComponent(jobId)}/redeliver`);
    say(`Queued the final event of job ${jobId.slice(0, 8)} again.`);
    queueDead();
    queueDeliveries(jobId);
  } catch (err) {
    button.disabled = false;
    handleError(err);
  }
}

// -- the stream ------------------------------------------------------------------------------

function parseBlock(block) {
  const msg = { event: "message", data: [], id: null, fields: {} };
  for (const line of block.split("\n")) {
    if (!line || line.startsWith(":")) continue;
    const colon = line.indexOf(":");
    const name = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (name === "data") msg.data.push(value);
    else if (name === "event") msg.event = value;
    else if (name === "id") msg.id = value;
    else msg.fields[name] = value;
  }
  return msg;
}

function onMessage(msg) {
  if (msg.event !== "job" || !msg.data.length) return;
  const job = JSON.parse(msg.data.join("\n"));
  upsertJob(job);
  queueDeliveries(job.id);
  queueDead();
}

async function stream() {
  if (state.streamAbort) state.streamAbort.abort();
  const abort = new AbortController();
  state.streamAbort = abort;
  let delay = 1000;
  while (!abort.signal.aborted) {
    try {
      const resp = await fetch(`/v1/stream?limit=${PAGE}`, {
        headers: headers("text/event-stream"),
        signal: abort.signal,
        cache: "no-store",
      });
      if (resp.status === 401) throw new AuthError("unauthorized");
      if (!resp.ok || !resp.body) throw new Error("stream answered " + resp.status);
      setConn("live", "live");
      delay = 1000;
      const reader = resp.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer = (buffer + value).replace(/\r\n?/g, "\n");
        let end;
        while ((end = buffer.indexOf("\n\n")) >= 0) {
          const block = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          onMessage(parseBlock(block));
        }
      }
    } catch (err) {
      if (abort.signal.aborted) return;
      if (err instanceof AuthError) {
        handleError(err);
        return;
      }
    }
    setConn("error", "reconnecting…");
    await new Promise((resolve) => setTimeout(resolve, delay));
    delay = Math.min(delay * 2, 15000);
  }
}

// -- start -----------------------------------------------------------------------------------

function handleError(err) {
  if (err instanceof AuthError) {
    if (state.streamAbort) state.streamAbort.abort();
    $("content").hidden = true;
    $("token-form").hidden = false;
    $("forget").hidden = !token();
    setConn("idle", "not connected");
    say(token() ? "That token was not accepted." : "");
    $("token").focus();
    return;
  }
  say(String(err.message || err));
}

async function start() {
  say("");
  try {
    await loadJobs(null);
  } catch (err) {
    handleError(err);
    return;
  }
  $("token-form").hidden = true;
  $("content").hidden = false;
  $("forget").hidden = !token();
  loadDead().catch(handleError);
  stream(); // its first messages bring every listed job, which fetches their deliveries
}

document.addEventListener("DOMContentLoaded", () => {
  $("token-form").addEventListener("submit", (event) => {
    event.preventDefault();
    sessionStorage.setItem(TOKEN_KEY, $("token").value.trim());
    $("token").value = "";
    start();
  });
  $("forget").addEventListener("click", () => {
    sessionStorage.removeItem(TOKEN_KEY);
    if (state.streamAbort) state.streamAbort.abort();
    location.reload();
  });
  $("more").addEventListener("click", () => {
    loadJobs(state.nextCursor)
      .then((jobs) => jobs.forEach((job) => queueDeliveries(job.id)))
      .catch(handleError);
  });
  start();
});
