/* The times of the log's first and last kept events: the span the time-travel slider covers.
 * After archiving, the first is the oldest event still in the database (GET /retention), and
 * the page says where the older history went. */

import { api } from "./api-client.js";
import { $, state } from "./page.js";
import { localInputValue, utc } from "./format.js";

export const range = { first: null, firstPosition: null, last: null, lastPosition: null,
                       archived: false };

export function loadRange() {
  return api("/api/v1/retention").then(function (retention) {
    var archives = retention.archives || [];
    range.archived = archives.length > 0;
    showArchives(archives);
    if (!retention.oldest_time) { return firstEvent(); }
    range.first = new Date(retention.oldest_time);
    range.firstPosition = retention.oldest_position || null;
    range.last = range.first;
    renderRange();
  }, function (err) {
    // A server without retention (404) or a viewer it refuses: the log's first event is the start.
    range.archived = false;
    showArchives([]);
    if (err.status === 401) { throw err; }
    return firstEvent();
  });
}

function firstEvent() {
  return api("/api/v1/events?limit=1").then(function (page) {
    var first = page.events[0];
    range.first = first ? new Date(first.recorded_at) : null;
    range.firstPosition = first ? first.position : null;
    range.last = range.first;
    renderRange();
  });
}

function showArchives(archives) {
  var note = $("tt-archived");
  if (!archives.length) { note.hidden = true; note.textContent = ""; return; }
  var newest = archives.reduce(function (a, b) {
    return (b.last_position || 0) > (a.last_position || 0) ? b : a;
  });
  var before = newest.before ? " before " + utc(newest.before) + " UTC" : "";
  note.textContent = "Older history archived to " + newest.path + " (" +
    archives.reduce(function (n, a) { return n + (a.events || 0); }, 0) + " events" + before +
    (archives.length > 1 ? ", in " + archives.length + " archives" : "") +
    "): the slider starts at the oldest event kept here.";
  note.hidden = false;
}

// The last event's time: from a stream event directly, else read it by its position.
export function extendRange(time, position) {
  if (time) {
    if (!range.first) { range.first = time; }
    if (!range.last || time > range.last) { range.last = time; }
    renderRange();
    return;
  }
  if (!position || position === range.lastPosition) { return; }
  range.lastPosition = position;
  api("/api/v1/events?limit=1&after=" + (position - 1)).then(function (page) {
    var e = page.events[0];
    if (e) { extendRange(new Date(e.recorded_at), null); }
    else if (!range.first) { loadRange(); }
  }).catch(function () { /* the range only refines the slider */ });
}

export function renderRange() {
  var slider = $("tt-slider");
  var first = range.first, last = range.last;
  var disabled = !first;
  slider.disabled = disabled;
  $("tt-time").disabled = disabled;
  if (disabled) { return; }
  var span = Math.max(0, Math.ceil((last - first) / 1000));
  slider.max = String(span);
  $("tt-first").textContent = (range.archived ? "oldest kept event " : "first event ") +
    utc(first) + " UTC";
  $("tt-last").textContent = "last event " + utc(last) + " UTC";
  if (state.live) {
    slider.value = String(span);
    slider.setAttribute("aria-valuetext", "now (live)");
    if (document.activeElement !== $("tt-time")) { $("tt-time").value = localInputValue(last); }
  }
}
