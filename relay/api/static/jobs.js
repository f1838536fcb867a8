// The lists: jobs (live from the stream), search results, recent delivery attempts, dead letters.
"use strict";

import {
  $, AuthError, api, badge, compactJson, el, fullId, say, statusBadge, statusOf, watchScrolling, when,
} from "./util.js";

const PAGE = 50;
const RECENT_DELIVERIES = 25;

export const state = {
  jobs: new Map(), // id -> job view
  attempts: new Map(), // job id -> delivery attempts
  nextCursor: null,
  pendingDeliveries: new Set(),
  deliveryTimer: null,
  deadTimer: null,
  onError: (err) => say(String(err.message || err)),
};

// -- jobs ------------------------------------------------------------------------------------

function jobRow(job) {
  const tr = document.createElement("tr");
  tr.dataset.jobId = job.id;
  tr.append(el("td"), el("td"), el("td"), el("td"), el("td", "", "meta"), el("td"));
  tr.cells[0].append(fullId(job.id, "#job=" + encodeURIComponent(job.id)));
  const bar = document.createElement("progress");
  bar.max = 100;
  tr.cells[2].append(bar, el("span", "", "pct"));
  fillJobRow(tr, job);
  return tr;
}

export function fillJobRow(tr, job) {
  const shown = statusOf(job);
  tr.cells[1].replaceChildren(statusBadge(job));
  const pct = Number(job.percentageComplete) || 0;
  const bar = tr.cells[2].querySelector("progress");
  bar.value = pct;
  bar.setAttribute("aria-valuenow", String(pct));
  tr.cells[2].querySelector(".pct").textContent = pct.toFixed(1) + "%";
  tr.cells[3].textContent = job.operation || "";
  tr.cells[4].textContent = compactJson(job.metadata);
  tr.cells[5].textContent = when(job.createdDateTime);
  tr.dataset.status = job.status;
  tr.dataset.delivery = shown.delivery;
}

export function upsertJob(job) {
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
  const found = $("results-jobs").tBodies[0].querySelector(`tr[data-job-id="${CSS.escape(job.id)}"]`);
  if (found) fillJobRow(found, job);
  $("jobs-empty").hidden = tbody.rows.length > 0;
  watchScrolling();
}

export async function loadJobs(cursor) {
  const query = new URLSearchParams({ limit: String(PAGE) });
  if (cursor) query.set("cursor", cursor);
  const page = await api("GET", "/v1/jobs?" + query);
  for (const job of page.jobs) upsertJob(job);
  state.nextCursor = page.nextCursor;
  $("more").hidden = !page.nextCursor;
  $("jobs-empty").hidden = state.jobs.size > 0;
  return page.jobs;
}

// "order=A-1 customer=contoso": the metadata filters of a search, or null when it is not written so
export function metadataQuery(text) {
  const pairs = text.split(/\s+/).filter(Boolean);
  if (!pairs.length || !pairs.every((pair) => /^[^=\[\]]+=./.test(pair))) return null;
  const query = new URLSearchParams({ limit: String(PAGE) });
  for (const pair of pairs) {
    const at = pair.indexOf("=");
    query.set(`metadata[${pair.slice(0, at)}]`, pair.slice(at + 1));
  }
  return query;
}

export async function showResults(text, query) {
  const page = await api("GET", "/v1/jobs?" + query);
  $("results-query").textContent = text;
  $("results-jobs").tBodies[0].replaceChildren(...page.jobs.map(jobRow));
  $("results-empty").hidden = page.jobs.length > 0;
  $("results").hidden = false;
  $("list").hidden = true;
  watchScrolling();
}

export function hideResults() {
  $("results").hidden = true;
  $("list").hidden = false;
}

// -- recent deliveries and dead letters ----------------------------------------------------------

export function queueDeliveries(jobId) {
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
    ).catch(state.onError);
  }
  state.deliveryTimer = null;
  if (state.pendingDeliveries.size) state.deliveryTimer = setTimeout(flushDeliveries, 250);
  renderDeliveries();
}

// One delivery attempt as a table row; ``withJob``: a column naming its job.
export function attemptRow(d, withJob) {
  const tr = document.createElement("tr");
  tr.dataset.jobId = d.jobId || "";
  tr.dataset.outcome = d.outcome;
  const cells = [el("td", when(d.time))];
  if (withJob) {
    const job = el("td");
    job.append(fullId(d.jobId, "#job=" + encodeURIComponent(d.jobId)));
    cells.push(job);
  }
  const outcome = el("td");
  outcome.append(badge(d.outcome, "outcome o-" + d.outcome));
  cells.push(
    el("td", d.type),
    el("td", d.sequence ?? ""),
    el("td", d.attempt),
    outcome,
    el("td", d.error || (d.status != null ? d.status : ""), "mono answer"),
    el("td", d.durationMs != null ? Math.round(d.durationMs) : ""),
  );
  tr.append(...cells);
  return tr;
}

// Progress events a newer event replaced before they were tried are not attempts: one line says how many.
export function supersededNote(node, count) {
  node.textContent = count
    ? `${count} progress event${count === 1 ? "" : "s"} superseded by a newer one before being sent (not tried).`
    : "";
  node.hidden = !count;
}

function renderDeliveries() {
  const all = [];
  for (const list of state.attempts.values()) all.push(...list);
  const tried = all.filter((d) => d.outcome !== "superseded");
  tried.sort((a, b) => (a.time < b.time ? 1 : a.time > b.time ? -1 : 0));
  const rows = tried.slice(0, RECENT_DELIVERIES).map((d) => attemptRow(d, true));
  $("deliveries").tBodies[0].replaceChildren(...rows);
  $("deliveries-empty").hidden = rows.length > 0;
  supersededNote($("deliveries-superseded"), all.length - tried.length);
  watchScrolling();
}

export function queueDead() {
  if (state.deadTimer) return;
  state.deadTimer = setTimeout(() => {
    state.deadTimer = null;
    loadDead().catch(state.onError);
  }, 300);
}

export async function loadDead() {
  const body = await api("GET", "/v1/dead-letters");
  const rows = body.deadLetters.map((d) => {
    const tr = document.createElement("tr");
    tr.dataset.eventId = d.eventId;
    const job = el("td");
    job.append(fullId(d.jobId, "#job=" + encodeURIComponent(d.jobId)));
    const action = el("td");
    const button = el("button", "Redeliver", "redeliver");
    button.type = "button";
    button.addEventListener("click", () => redeliver(d.jobId, d.eventId, d.type, button));
    action.append(button);
    tr.append(el("td", when(d.deadDateTime)), job, el("td", d.type), el("td", d.sequence), el("td", d.attempts), action);
    return tr;
  });
  $("dead").tBodies[0].replaceChildren(...rows);
  $("dead-empty").hidden = rows.length > 0;
  watchScrolling();
}

// Any event of a job, sent again with its webhook-id (POST /v1/jobs/{id}/redeliver {"eventId"}).
export async function redeliver(jobId, eventId, type, button) {
  button.disabled = true;
  try {
    await api("POST", `/v1/jobs/${encodeURIComponent(jobId)}/redeliver`, { eventId });
    say(`Queued ${type} ${eventId} of job ${jobId} again, with the same webhook-id.`);
    queueDead();
    queueDeliveries(jobId);
    return true;
  } catch (err) {
    button.disabled = false;
    state.onError(err);
    return false;
  }
}
