/* The times of the log's first and last events: the span the time-travel slider covers. */

import { api } from "./api-client.js";
import { $, state } from "./page.js";
import { localInputValue, utc } from "./format.js";

export const range = { first: null, last: null, lastPosition: null };

export function loadRange() {
  return api("/api/v1/events?limit=1").then(function (page) {
    var first = page.events[0];
    range.first = first ? new Date(first.recorded_at) : null;
    range.last = range.first;
    renderRange();
  });
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
  $("tt-first").textContent = "first event " + utc(first) + " UTC";
  $("tt-last").textContent = "last event " + utc(last) + " UTC";
  var min = localInputValue(new Date(Math.floor(first / 1000) * 1000));
  $("tt-time").min = min;
  if (state.live) {
    slider.value = String(span);
    slider.setAttribute("aria-valuetext", "now (live)");
    if (document.activeElement !== $("tt-time")) { $("tt-time").value = localInputValue(last); }
  }
}
