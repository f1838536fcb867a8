// The job view: every field of one job, its metadata, why it failed, where its webhooks stand and when the next
// attempt comes, its events (each redeliverable) and its delivery attempts.
"use strict";

import { attemptRow, queueDeliveries, redeliver, supersededNote, upsertJob } from "./jobs.js";
import { $, api, badge, el, fullId, statusBadge, timeWithRelative, watchScrolling, when } from "./util.js";

export const view = { id: null, timer: null };

// the job's fields in this order, with what they mean; anything else the API adds comes after them
const FIELDS = [
  ["status", "status"],
  ["phase", "what relay is doing"],
  ["operation", "operation"],
  ["percentageComplete", "progress"],
  ["monitorStatus", "monitor's status"],
  ["statusDescription", "monitor's description"],
  ["resourceId", "resource id"],
  ["driveItem", "DriveItem"],
  ["resolutionError", "DriveItem not fetched"],
  ["error", "failure"],
  ["createdDateTime", "created"],
  ["lastPolledDateTime", "last poll"],
  ["nextPollDateTime", "next poll"],
  ["pollCount", "polls"],
  ["callbackUrl", "callback"],
  ["driveItemUrl", "DriveItem URL"],
  ["monitorHost", "monitor host"],
  ["sequence", "events so far"],
  ["progressInterval", "progress interval (s)"],
  ["authorizationWaitUntil", "PATCH authorization before"],
];
const SHOWN_ELSEWHERE = new Set(["id", "metadata", "delivery"]);
const TIMES = new Set(["createdDateTime", "lastPolledDateTime", "nextPollDateTime", "authorizationWaitUntil"]);

function value(name, v) {
  if (v === null || v === undefined || v === "") return el("span", "—", "none");
  if (TIMES.has(name)) return el("span", when(v));
  if (typeof v === "object") return el("pre", JSON.stringify(v, null, 2), "json");
  return el("span", String(v));
}

function pair(list, label, node, key) {
  const dt = el("dt", label);
  const dd = el("dd");
  if (key) dd.dataset.field = key;
  dd.append(node);
  list.append(dt, dd);
}

// Why a job ended as it did, in words: the failure's code, the monitor's errorCode and message; a completion
// without its DriveItem; a webhook that is not delivered.
function explain(job) {
  const box = $("detail-explain");
  box.replaceChildren();
  const error = job.error;
  if (error) {
    const p = el("p", null, "explain bad");
    p.dataset.kind = "failure";
    p.append(el("strong", `Failed: ${error.code}`));
    if (error.errorCode) p.append(" — errorCode ", el("code", error.errorCode));
    if (error.httpStatus >= 400) p.append(` — HTTP ${error.httpStatus}`);
    if (error.message) p.append(el("span", ` — ${error.message}`, "message"));
    box.append(p);
  }
  const missing = job.resolutionError;
  if (missing) {
    const p = el("p", null, "explain warn");
    p.append(el("strong", `Completed without its DriveItem: ${missing.code}`));
    if (missing.httpStatus) p.append(` — HTTP ${missing.httpStatus}`);
    if (missing.message) p.append(` — ${missing.message}`);
    box.append(p);
  }
  const d = job.delivery;
  if (d && d.state !== "delivered") {
    const p = el("p", null, d.state === "dead" || d.state === "gone" ? "explain bad" : "explain warn");
    p.dataset.kind = "delivery";
    p.append(el("strong", `${d.type} not delivered (${d.state})`));
    if (d.lastError) p.append(" — last attempt: ", el("span", d.lastError, "mono"));
    if (d.nextAttemptDateTime) p.append(" — next attempt ", timeWithRelative(d.nextAttemptDateTime));
    if (d.state === "dead") p.append(" — the schedule is exhausted: redeliver it below");
    box.append(p);
  }
}

function renderFields(job) {
  const list = $("detail-fields");
  list.replaceChildren();
  const known = new Set(FIELDS.map(([name]) => name));
  for (const [name, label] of FIELDS) {
    if (!(name in job)) continue;
    if (name === "status") pair(list, label, statusBadge(job), name);
    else if (name === "percentageComplete") {
      const bar = document.createElement("progress");
      bar.max = 100;
      bar.value = Number(job[name]) || 0;
      const wrap = el("span");
      wrap.append(bar, el("span", `${(Number(job[name]) || 0).toFixed(1)}%`, "pct"));
      pair(list, label, wrap, name);
    } else pair(list, label, value(name, job[name]), name);
  }
  for (const [name, v] of Object.entries(job)) {
    if (!known.has(name) && !SHOWN_ELSEWHERE.has(name)) pair(list, name, value(name, v), name);
  }
  $("detail-metadata").textContent = job.metadata ? JSON.stringify(job.metadata, null, 2) : "none";
}

function renderDelivery(job, deliveries) {
  const list = $("detail-delivery");
  list.replaceChildren();
  const d = job.delivery;
  if (!d) {
    pair(list, "events", el("span", "none yet", "none"));
    return;
  }
  pair(list, "newest event", el("span", `${d.type} #${d.sequence}`));
  pair(list, "its state", badge(d.state, "outcome o-" + d.state), "deliveryState");
  pair(list, "attempts", el("span", String(d.attempts)));
  pair(list, "waiting", el("span", `${d.waiting} event${d.waiting === 1 ? "" : "s"}`));
  pair(list, "last error", d.lastError ? el("span", d.lastError, "mono") : el("span", "—", "none"), "lastError");
  const next = deliveries.nextAttemptDateTime || d.nextAttemptDateTime;
  pair(list, "next attempt", next ? timeWithRelative(next) : el("span", "none scheduled", "none"), "nextAttempt");
}

function renderEvents(job, deliveries) {
  const last = new Map(); // event id -> its newest attempt
  for (const a of deliveries.deliveries) if (a.outcome !== "superseded") last.set(a.eventId, a);
  const rows = deliveries.events.map((e) => {
    const tr = document.createElement("tr");
    tr.dataset.eventId = e.eventId;
    tr.dataset.state = e.state;
    const state = el("td");
    state.append(badge(e.state, "outcome o-" + e.state));
    const answer = last.get(e.eventId);
    const id = el("td");
    id.append(fullId(e.eventId));
    const action = el("td");
    const button = el("button", "Redeliver", "redeliver");
    button.type = "button";
    button.title = "Send this event again with the same webhook-id";
    button.addEventListener("click", async () => {
      if (await redeliver(job.id, e.eventId, e.type, button)) setTimeout(() => refresh(), 300);
    });
    action.append(button);
    tr.append(
      el("td", e.sequence),
      el("td", e.type),
      state,
      el("td", e.attempts),
      el("td", answer ? answer.error || answer.status : "", "mono answer"),
      id,
      action,
    );
    return tr;
  });
  $("detail-events").tBodies[0].replaceChildren(...rows);
}

function renderAttempts(deliveries) {
  const tried = deliveries.deliveries.filter((d) => d.outcome !== "superseded");
  const rows = tried.slice().reverse().map((d) => attemptRow(d, false));
  $("detail-attempts").tBodies[0].replaceChildren(...rows);
  supersededNote($("detail-superseded"), deliveries.deliveries.length - tried.length);
}

export async function showJob(id) {
  view.id = id;
  const path = `/v1/jobs/${encodeURIComponent(id)}`;
  const [job, deliveries] = await Promise.all([api("GET", path), api("GET", path + "/deliveries")]);
  if (view.id !== id) return; // another job was opened meanwhile
  upsertJob(job);
  $("detail-id").replaceChildren(fullId(job.id));
  $("detail-status").replaceChildren(statusBadge(job));
  $("detail").dataset.jobId = job.id;
  explain(job);
  renderFields(job);
  renderDelivery(job, deliveries);
  renderEvents(job, deliveries);
  renderAttempts(deliveries);
  $("detail").hidden = false;
  watchScrolling();
  queueDeliveries(job.id);
}

// the open job changed (a stream message, a redelivery): draw it again, at most every half second
export function refresh() {
  if (!view.id || view.timer) return;
  view.timer = setTimeout(() => {
    view.timer = null;
    if (view.id) showJob(view.id).catch(() => {});
  }, 500);
}

export function closeJob() {
  view.id = null;
  $("detail").hidden = true;
}
