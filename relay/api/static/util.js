// What every part of the dashboard shares: the API with the token, building the page, times, ids with a copy
// button, tables that scroll with a cue, and how a job's state reads.
"use strict";

export const TOKEN_KEY = "relay.token";

export class AuthError extends Error {}

export const $ = (id) => document.getElementById(id);

export function token() {
  return sessionStorage.getItem(TOKEN_KEY) || "";
}

export function headers(accept) {
  const h = { Accept: accept || "application/json" };
  const t = token();
  if (t) h.Authorization = "Bearer " + t;
  return h;
}

// A problem+json answer as one line: its detail (or title) and the fields it names.
function problemText(problem) {
  if (!problem) return "";
  const fields = (problem.errors || []).map((e) => `${e.field}: ${e.message}`).join("; ");
  return [problem.detail || problem.title, fields].filter(Boolean).join(" — ");
}

export async function api(method, path, body) {
  const init = { method, headers: headers(), cache: "no-store" };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const resp = await fetch(path, init);
  if (resp.status === 401) throw new AuthError("unauthorized");
  const data = resp.status === 204 ? null : await resp.json().catch(() => null);
  if (!resp.ok) {
    const err = new Error(problemText(data) || resp.statusText);
    err.status = resp.status;
    throw err;
  }
  return data;
}

export function say(text) {
  const node = $("message");
  node.textContent = text || "";
  node.hidden = !text;
}

export function el(tag, text, className) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (className) node.className = className;
  return node;
}

export function when(iso) {
  if (!iso) return "";
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? iso : d.toLocaleString();
}

// "in 4 min 58 s", "now", "3 min ago": how far an ISO time is from now.
export function relative(iso) {
  const ms = new Date(iso).getTime() - Date.now();
  if (Number.isNaN(ms)) return "";
  const s = Math.round(Math.abs(ms) / 1000);
  if (s < 2) return "now";
  const text = s < 60 ? `${s} s` : s < 3600 ? `${Math.floor(s / 60)} min ${s % 60} s` : `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
  return ms > 0 ? `in ${text}` : `${text} ago`;
}

// A time with how far it is from now, kept fresh by refreshTimes().
export function timeWithRelative(iso) {
  const node = el("span", "", "time");
  node.dataset.iso = iso;
  fillTime(node);
  return node;
}

function fillTime(node) {
  node.textContent = `${when(node.dataset.iso)} (${relative(node.dataset.iso)})`;
}

export function refreshTimes() {
  document.querySelectorAll("span.time[data-iso]").forEach(fillTime);
}

// An id in full, with a button that copies it.
export function fullId(id, link) {
  const wrap = el("span", null, "id");
  const code = el(link ? "a" : "code", id, link ? "mono" : null);
  if (link) code.href = link;
  wrap.append(code, copyButton(id));
  return wrap;
}

export function copyButton(text) {
  const button = el("button", "Copy", "copy");
  button.type = "button";
  button.title = "Copy " + text;
  button.setAttribute("aria-label", "Copy " + text);
  button.addEventListener("click", async (event) => {
    event.stopPropagation();
    try {
      await navigator.clipboard.writeText(text);
      button.textContent = "Copied";
    } catch {
      // no clipboard (an insecure origin): select the id so Ctrl-C copies it
      const range = document.createRange();
      range.selectNodeContents(button.previousSibling);
      getSelection().removeAllRanges();
      getSelection().addRange(range);
      button.textContent = "Selected";
    }
    setTimeout(() => (button.textContent = "Copy"), 1500);
  });
  return button;
}

export function badge(text, className) {
  return el("span", text, "badge " + className);
}

// How a job's state reads: its status, and, when its webhooks are not delivered, that they are not. A completed
// job whose job.completed still waits (or died) is not the same as one the app has been told about.
export function statusOf(job) {
  if (job.phase === "awaitingAuthorization") {
    return { text: "waiting for authorization", className: "s-awaitingAuthorization", delivery: "" };
  }
  const d = job.delivery;
  const state = d ? d.state : "";
  const ended = job.status === "completed" || job.status === "failed";
  let suffix = "";
  if (state === "dead") suffix = "delivery failed";
  else if (state === "gone") suffix = "callback gone (410)";
  else if (state === "retrying") suffix = "delivery retrying";
  else if (state === "pending" && ended) suffix = "delivery pending";
  if (!suffix || job.status === "cancelled") return { text: job.status, className: "s-" + job.status, delivery: state };
  const bad = state === "dead" || state === "gone";
  return {
    text: `${job.status} · ${suffix}`,
    className: bad ? "s-deliveryFailed" : "s-deliveryPending",
    delivery: state,
  };
}

export function statusBadge(job) {
  const shown = statusOf(job);
  const node = badge(shown.text, "status " + shown.className);
  if (job.phase === "awaitingAuthorization" && job.authorizationWaitUntil) {
    node.title = "PATCH /v1/jobs/" + job.id + " with a fresh authorization before " + job.authorizationWaitUntil;
  } else if (job.error) {
    const why = [job.error.code, job.error.errorCode, job.error.message].filter(Boolean).join(" — ");
    node.title = why + (job.delivery && job.delivery.nextAttemptDateTime ? `; next delivery attempt ${when(job.delivery.nextAttemptDateTime)}` : "");
  } else if (job.delivery && job.delivery.nextAttemptDateTime) {
    node.title = `next delivery attempt ${when(job.delivery.nextAttemptDateTime)}`;
  }
  return node;
}

// Tables scroll inside their box on a narrow screen; a shadow at the clipped edge and a "scroll" hint say so.
const watched = new WeakSet();
const resizes = new ResizeObserver((entries) => entries.forEach((entry) => markOverflow(entry.target)));

export function markOverflow(box) {
  const over = box.scrollWidth > box.clientWidth + 1;
  box.dataset.overflow = String(over);
  box.dataset.atEnd = String(box.scrollLeft + box.clientWidth >= box.scrollWidth - 1);
}

// after rows change: every table box says again whether it overflows (and is watched from then on)
export function watchScrolling() {
  document.querySelectorAll("div.scroll").forEach((box) => {
    if (!watched.has(box)) {
      watched.add(box);
      resizes.observe(box);
      box.addEventListener("scroll", () => markOverflow(box), { passive: true });
    }
    markOverflow(box);
  });
}

export function compactJson(value) {
  if (value === null || value === undefined) return "";
  return JSON.stringify(value);
}
