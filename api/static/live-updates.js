/* Keeps the live view current.
 *
 * The event stream tells us something changed: a plain EventSource opened with a one-use
 * stream ticket (POST /api/v1/events/stream/tickets), so no long-lived token sits in a URL; on
 * a server without tickets, SSE read over fetch with the bearer header (EventSource cannot
 * send it). Either way, we then re-read /api/v1/cluster, which is the only source of what is
 * shown. Without the stream we poll. Staleness needs no event: the page also re-reads the view
 * when the earliest heartbeat deadline passes.
 */

import { api, authorization, hasToken } from "./api-client.js";
import { $, announce, setText, state } from "./page.js";
import { render } from "./cluster-view.js";
import { extendRange } from "./log-range.js";

const POLL_SECONDS = 5;
const RECONNECT_MAX_SECONDS = 30;

var refreshing = false;
var refreshAgain = false;
var refreshTimer = null;
var deadlineTimer = null;
var stream = { controller: null, source: null, tickets: null, attempt: 0, connected: false,
               after: 0, retryTimer: null, retries: 0, reason: "" };
var poll = { timer: null, nextAt: 0 };
var streamListeners = [];

// Called with each stream event's type and its parsed data (null when it has none).
export function onStreamEvent(listener) { streamListeners.push(listener); }

export function refresh() {
  if (!state.live || !hasToken()) { return Promise.resolve(); }
  if (refreshing) { refreshAgain = true; return Promise.resolve(); }
  refreshing = true;
  state.attempted = Date.now();
  var seq = state.travelSeq;
  return api("/api/v1/cluster").then(function (view) {
    if (state.live && seq === state.travelSeq && hasToken()) {  // not signed out meanwhile
      render(view);
      scheduleDeadlineRefresh(view);
      extendRange(null, view.as_of.position);
    }
  }).catch(function (err) {
    if (err.status !== 401) { announce("Could not read the cluster: " + err.message); }
  }).then(function () {
    refreshing = false;
    if (refreshAgain) {
      refreshAgain = false;
      requestRefresh();
    }
  });
}

export function requestRefresh() {
  if (refreshTimer) { return; }
  refreshTimer = setTimeout(function () {
    refreshTimer = null;
    refresh();
  }, 150);
}

// Re-read the view when the earliest current deadline passes: the page turns a component
// stale on time even when no event arrives (no scheduler, or a lost stream).
function scheduleDeadlineRefresh(view) {
  clearTimeout(deadlineTimer);
  if (!state.live) { return; }
  var earliest = null;
  view.servers.forEach(function (server) {
    server.components.forEach(function (c) {
      if (c.heartbeat && c.heartbeat.state === "current" && c.heartbeat.deadline) {
        var t = new Date(c.heartbeat.deadline).getTime();
        if (earliest === null || t < earliest) { earliest = t; }
      }
    });
  });
  if (earliest === null) { return; }
  var wait = earliest - (Date.now() + state.clockOffset) + 300;
  deadlineTimer = setTimeout(requestRefresh, Math.min(Math.max(wait, 300), 2147483000));
}

export function cancelDeadlineRefresh() { clearTimeout(deadlineTimer); }

// Follows the log from `after`, the position of the view just read.
export function startLiveUpdates(after) {
  stream.after = after;
  startStream();
  renderLive();
}

export function stopLiveUpdates() {
  stopStream();
  stopPolling();
  clearTimeout(deadlineTimer);
  stream.connected = false;
  stream.after = 0;
}

function startStream() {
  stopStream();
  if (!hasToken()) { return; }
  if (stream.tickets === false) { startFetchStream(); return; }
  var attempt = stream.attempt;
  api("/api/v1/events/stream/tickets", { method: "POST" }).then(function (answer) {
    if (attempt !== stream.attempt || !hasToken()) { return; }
    stream.tickets = true;
    openEventSource(answer.stream_url ||
                    "/api/v1/events/stream?ticket=" + encodeURIComponent(answer.ticket));
  }, function (err) {
    if (attempt !== stream.attempt) { return; }
    if (err.status === 404 || err.status === 405) {  // a server without tickets
      stream.tickets = false;
      startFetchStream();
    } else if (err.status !== 401) {  // 401: api-client.js signs out
      setConnected(false, "no stream ticket: " + err.message);
      scheduleReconnect();
    }
  });
}

// Every type the log may send: the stream names each event by its type, and an EventSource
// hears a named event only through a listener for that name (the event log's filter lists them).
function eventTypes() {
  return Array.prototype.map.call(document.querySelectorAll("#eventlog-type option[value]"),
                                  function (o) { return o.value; }).filter(Boolean);
}

function openEventSource(url) {
  var source = new EventSource(url + "&after=" + stream.after);
  stream.source = source;
  source.onopen = function () { if (stream.source === source) { setConnected(true); } };
  // A ticket opens one stream once: never let the browser retry with it, ask for a new one.
  source.onerror = function () {
    if (stream.source !== source) { return; }
    source.close();
    stream.source = null;
    setConnected(false, "the stream was interrupted");
    scheduleReconnect();
  };
  function deliver(e) { handleEvent(e.lastEventId, e.type, e.data); }
  source.addEventListener("message", deliver);
  eventTypes().forEach(function (type) { source.addEventListener(type, deliver); });
}

function startFetchStream() {
  var controller = new AbortController();
  stream.controller = controller;
  fetch("/api/v1/events/stream?after=" + stream.after, {
    headers: { "Authorization": authorization(), "Accept": "text/event-stream" },
    cache: "no-store",
    signal: controller.signal
  }).then(function (response) {
    if (!response.ok || !response.body) {
      throw new Error("the stream answered HTTP " + response.status);
    }
    setConnected(true);
    var reader = response.body.getReader();
    var decoder = new TextDecoder();
    var buffer = "";
    function pump() {
      return reader.read().then(function (chunk) {
        if (chunk.done) { throw new Error("the stream ended"); }
        buffer += decoder.decode(chunk.value, { stream: true }).replace(/\r\n?/g, "\n");
        var cut;
        while ((cut = buffer.indexOf("\n\n")) >= 0) {
          handleBlock(buffer.slice(0, cut));
          buffer = buffer.slice(cut + 2);
        }
        return pump();
      });
    }
    return pump();
  }).catch(function (err) {
    if (controller.signal.aborted) { return; }
    stream.controller = null;
    setConnected(false, err && err.message ? err.message : String(err));
    scheduleReconnect();
  });
}

function stopStream() {
  stream.attempt += 1;  // a ticket still on its way opens nothing
  if (stream.controller) { stream.controller.abort(); }
  stream.controller = null;
  if (stream.source) { stream.source.close(); }
  stream.source = null;
  clearTimeout(stream.retryTimer);
}

function handleBlock(block) {
  var id = null, type = "message", data = "";
  block.split("\n").forEach(function (line) {
    if (!line || line.charAt(0) === ":") { return; }
    var colon = line.indexOf(":");
    var field = colon < 0 ? line : line.slice(0, colon);
    var value = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
    if (field === "id") { id = value; }
    else if (field === "event") { type = value; }
    else if (field === "data") { data += (data ? "\n" : "") + value; }
  });
  handleEvent(id, type, data);
}

function handleEvent(id, type, data) {
  if (id === null || id === "") { return; }
  stream.after = parseInt(id, 10);
  var event = null;
  try { event = JSON.parse(data); } catch (e) { event = null; }
  extendRange(event && event.recorded_at ? new Date(event.recorded_at) : null, stream.after);
  if (state.live) { requestRefresh(); }
  streamListeners.forEach(function (listener) { listener(type, event); });
}

function setConnected(connected, reason) {
  stream.connected = connected;
  stream.reason = reason || "";
  if (connected) {
    stream.retries = 0;
    stopPolling();
    requestRefresh();  // catch up on what happened while we were away
  } else {
    startPolling();
  }
  renderLive();
}

function scheduleReconnect() {
  clearTimeout(stream.retryTimer);
  var seconds = Math.min(RECONNECT_MAX_SECONDS, 2 * Math.pow(2, stream.retries));
  stream.retries += 1;
  stream.retryTimer = setTimeout(startStream, seconds * 1000);
}

function startPolling() {
  if (poll.timer) { return; }
  poll.nextAt = Date.now() + POLL_SECONDS * 1000;
  poll.timer = setInterval(function () {
    poll.nextAt = Date.now() + POLL_SECONDS * 1000;
    refresh();
  }, POLL_SECONDS * 1000);
}

function stopPolling() {
  clearInterval(poll.timer);
  poll.timer = null;
}

export function renderLive() {
  var live = $("live");
  var text, next = "";
  if (!hasToken()) {
    live.dataset.state = "off";
    text = "Not connected";
  } else if (!state.live) {
    // The same words as the past-view banner: nothing shown here is live.
    live.dataset.state = "paused";
    text = "Live updates: paused — past view";
    live.title = "";
  } else if (stream.connected) {
    live.dataset.state = "connected";
    text = "Live updates: connected";
  } else {
    live.dataset.state = "polling";
    var seconds = Math.max(0, Math.ceil((poll.nextAt - Date.now()) / 1000));
    text = "Live updates: disconnected — polling every " + POLL_SECONDS + " s";
    next = "(next in " + seconds + " s)";
    live.title = stream.reason ? "stream: " + stream.reason : "";
  }
  setText($("live-text"), text);
  setText($("live-next"), next);
}
