// relay dashboard: plain JavaScript modules, no build step, nothing loaded from elsewhere.
// Every piece of data comes from the /v1 API with the token kept in sessionStorage.
// Live updates: GET /v1/stream (Server-Sent Events), read with fetch() because EventSource
// cannot send an Authorization header. A job opens at #job=<id> (a link, a search, the back button).
"use strict";

import { closeJob, refresh, showJob, view } from "./job.js";
import {
  hideResults, loadDead, loadJobs, metadataQuery, queueDead, queueDeliveries, showResults, state, upsertJob,
} from "./jobs.js";
import { $, AuthError, TOKEN_KEY, headers, refreshTimes, say, token, watchScrolling } from "./util.js";

const JOB_ID = /^[0-9a-f]{32}$/;
let streamAbort = null;

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
  if (job.id === view.id) refresh();
}

function setConn(stateName, text) {
  const node = $("conn");
  node.dataset.state = stateName;
  node.textContent = text;
}

async function stream() {
  if (streamAbort) streamAbort.abort();
  const abort = new AbortController();
  streamAbort = abort;
  let delay = 1000;
  while (!abort.signal.aborted) {
    try {
      const resp = await fetch("/v1/stream?limit=50", {
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

// -- where the page is: the lists, or one job ----------------------------------------------------

async function route() {
  const match = /^#job=(.+)$/.exec(location.hash);
  if (!match) {
    closeJob();
    $("recent").hidden = false;
    $("dead-letters").hidden = false;
    if ($("results-query").textContent) $("results").hidden = false;
    else hideResults();
    return;
  }
  const id = decodeURIComponent(match[1]);
  say("");
  try {
    await showJob(id);
  } catch (err) {
    handleError(err.status === 404 ? new Error(`No job ${id} (or not one of this token's).`) : err);
    return;
  }
  $("list").hidden = true;
  $("results").hidden = true;
  $("recent").hidden = true;
  $("dead-letters").hidden = true;
  window.scrollTo(0, 0);
}

async function search(text) {
  say("");
  if (JOB_ID.test(text)) {
    location.hash = "#job=" + text;
    return;
  }
  const query = metadataQuery(text);
  if (!query) {
    say("Search by a job id (32 hexadecimal characters), or by metadata as key=value (several: a=1 b=2).");
    return;
  }
  await showResults(text, query);
  if (location.hash) location.hash = "";
}

// -- start -----------------------------------------------------------------------------------

function handleError(err) {
  if (err instanceof AuthError) {
    if (streamAbort) streamAbort.abort();
    $("content").hidden = true;
    $("search").hidden = true;
    $("token-form").hidden = false;
    $("forget").hidden = !token();
    setConn("idle", "not connected");
    say(token() ? "That token was not accepted." : "");
    $("token").focus();
    return;
  }
  say(String(err.message || err));
}
state.onError = handleError;

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
  $("search").hidden = false;
  $("forget").hidden = !token();
  watchScrolling();
  loadDead().catch(handleError);
  stream(); // its first messages bring every listed job, which fetches their deliveries
  route();
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
    if (streamAbort) streamAbort.abort();
    location.reload();
  });
  $("more").addEventListener("click", () => {
    loadJobs(state.nextCursor)
      .then((jobs) => jobs.forEach((job) => queueDeliveries(job.id)))
      .catch(handleError);
  });
  $("search").addEventListener("submit", (event) => {
    event.preventDefault();
    search($("query").value.trim()).catch(handleError);
  });
  document.querySelector("#results .clear").addEventListener("click", () => {
    $("results-query").textContent = "";
    $("query").value = "";
    hideResults();
  });
  window.addEventListener("hashchange", () => route());
  setInterval(refreshTimes, 5000);
  start();
});
