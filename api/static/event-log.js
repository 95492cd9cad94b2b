/* The event log pane: GET /api/v1/events a page at a time, filtered by type and server, in
 * words, each row linking to the cluster as it was just after that event (time travel by
 * position). The API pages forward from a position (?after=), so "Earlier" keeps the pages
 * already seen; unfiltered, the newest page starts `PAGE` positions before the head. */

import { api, hasToken } from "./api-client.js";
import { $, setText, state } from "./page.js";
import { COMPONENT_LABEL, duration, utc } from "./format.js";
import { travelToPosition } from "./time-travel.js";

const PAGE = 50;

// `following`: the reader is at the newest page, so new events come in; paging stops that.
var log = { after: 0, earlier: [], filter: { type: "", server: "" }, seq: 0, events: [],
            following: true };
var refreshTimer = null;

// The page's words for each type: the filter's own options (api/dashboard.py writes them).
export function eventLabel(type) {
  var option = $("eventlog-type").querySelector('option[value="' + CSS.escape(type) + '"]');
  return option ? option.textContent : type;
}

function head() { return state.view && state.view.as_of ? state.view.as_of.position : 0; }

function filtered() { return !!(log.filter.type || log.filter.server); }

export function submitEventFilter(event) {
  event.preventDefault();
  log.filter = { type: $("eventlog-type").value, server: $("eventlog-server").value.trim() };
  showNewest();
}

// The newest page: unfiltered it is the last PAGE positions; filtered, the API can only page
// forward, so the matches are read from the start of the log.
export function showNewest() {
  log.earlier = [];
  log.following = true;
  return load(filtered() ? 0 : Math.max(0, head() - PAGE));
}

export function showEarlier() {
  log.following = false;
  if (log.earlier.length) { return load(log.earlier.pop(), true); }
  if (!filtered() && log.after > 0) { return load(Math.max(0, log.after - PAGE), true); }
  return Promise.resolve();
}

export function showLater() {
  if (!log.events.length) { return Promise.resolve(); }
  log.following = false;
  log.earlier.push(log.after);
  return load(log.events[log.events.length - 1].position);
}

// A new event arrived: a reader at the newest page sees it come in.
export function onLogEvent() {
  if (!hasToken() || refreshTimer) { return; }
  refreshTimer = setTimeout(function () {
    refreshTimer = null;
    if (atNewest()) { showNewest(); }
  }, 1000);
}

// Filtered, the newest page is read from the log's start: worth re-reading while it is short.
function atNewest() {
  return log.following && (!filtered() || log.events.length < PAGE);
}

export function resetEventLog() {
  log = { after: 0, earlier: [], filter: { type: "", server: "" }, seq: 0, events: [],
          following: true };
  $("eventlog-body").replaceChildren();
}

function load(after, backwards) {
  var seq = ++log.seq;
  var query = "?after=" + after + "&limit=" + PAGE +
    (log.filter.type ? "&type=" + encodeURIComponent(log.filter.type) : "") +
    (log.filter.server ? "&server=" + encodeURIComponent(log.filter.server) : "");
  $("eventlog-error").textContent = "";
  $("eventlog-server").removeAttribute("aria-invalid");
  return api("/api/v1/events" + query).then(function (page) {
    if (seq !== log.seq) { return; }
    if (backwards === undefined && log.events.length && !page.events.length && after > 0) {
      return;  // "Later" at the end of the log: stay on the last page
    }
    log.after = after;
    log.events = page.events;
    render();
  }).catch(function (err) {
    if (seq !== log.seq) { return; }
    var errors = (err.problem && err.problem.errors) || {};
    $("eventlog-error").textContent = errors.server ? "Server: " + [].concat(errors.server)
      .join(" ") : err.message;
    if (errors.server) { $("eventlog-server").setAttribute("aria-invalid", "true"); }
  });
}

function render() {
  var events = log.events;
  var body = $("eventlog-body");
  body.replaceChildren.apply(body, events.map(row));
  $("no-events").hidden = events.length > 0;
  var what = (log.filter.type ? "“" + eventLabel(log.filter.type) + "” events" : "Events") +
    (log.filter.server ? " of " + log.filter.server : "");
  setText($("eventlog-caption"), events.length ?
    what + " at positions " + events[0].position + "–" + events[events.length - 1].position +
    " of " + head() + ", oldest first" : what + ": none here");
  $("eventlog-earlier").disabled = !log.earlier.length && (filtered() || log.after === 0);
  $("eventlog-later").disabled = events.length < PAGE;
}

function row(event) {
  var tr = document.createElement("tr");
  tr.dataset.position = String(event.position);
  tr.dataset.type = event.type;
  var th = document.createElement("th");
  th.scope = "row";
  th.textContent = String(event.position);
  tr.appendChild(th);
  [utc(event.recorded_at), eventLabel(event.type), where(event), details(event)]
    .forEach(function (text, i) {
      var td = document.createElement("td");
      td.textContent = text;
      if (i === 1) { td.className = "what"; td.title = event.type; }
      tr.appendChild(td);
    });
  var cell = document.createElement("td");
  var link = document.createElement("a");
  link.href = "?position=" + event.position;
  link.className = "travel";
  link.dataset.position = String(event.position);
  link.textContent = "Cluster then";
  link.setAttribute("aria-label", "The cluster just after event " + event.position);
  cell.appendChild(link);
  tr.appendChild(cell);
  return tr;
}

// A link opens the past view in place (the address changes, the page does not reload).
export function followTravelLink(event) {
  var link = event.target.closest("a.travel");
  if (!link || event.ctrlKey || event.metaKey || event.shiftKey) { return; }
  event.preventDefault();
  travelToPosition(parseInt(link.dataset.position, 10)).then(function () {
    $("mode").scrollIntoView({ block: "start" });
  });
}

function where(event) {
  var d = event.data || {};
  if (d.server && d.component) {
    return d.server + " " + (COMPONENT_LABEL[d.component] || d.component);
  }
  if (d.server) { return d.server; }
  return event.stream === "cluster" ? "the cluster" : event.stream;
}

function actor(event) {
  var m = event.metadata || {};
  return m.actor ? "by " + m.actor : "";
}

function details(event) {
  var d = event.data || {};
  var parts;
  switch (event.type) {
    case "HeartbeatRecorded":
      parts = [[d.status, d.verification].filter(Boolean).join(" · "),
               [d.product, d.product_version].filter(Boolean).join(" "), d.message];
      break;
    case "ComponentTimedOut":
      parts = ["expired at " + utc(d.expired_at) + " UTC",
               d.timeout_seconds ? "timeout " + duration(d.timeout_seconds) : "",
               d.detector ? "detected by " + d.detector : ""];
      break;
    case "ComponentRecovered":
      parts = [d.outage_seconds !== undefined ?
               "after " + duration(d.outage_seconds) + " without a heartbeat" : ""];
      break;
    case "ComponentRemoved":
      parts = [d.reason, actor(event)];
      break;
    case "ConfigurationChanged":
      parts = [Object.keys(d.changes || d).filter(function (k) { return k !== "version"; })
        .map(function (k) { return k + " = " + JSON.stringify((d.changes || d)[k]); }).join(", "),
               actor(event)];
      break;
    case "MonitorResumed":
      parts = ["not watching from " + utc(d.down_since) + " to " + utc(d.resumed_at) + " UTC"];
      break;
    case "CollectionFailed":
      parts = [d.kind, d.detail];
      break;
    default:
      parts = [actor(event)];
  }
  return parts.filter(Boolean).join("; ") || "–";
}
