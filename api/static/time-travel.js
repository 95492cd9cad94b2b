/* Time travel: show the cluster as it was at a chosen time or log position (a past view, with
 * live updates paused), and come back to the live view. The address bar follows the view
 * (?at=… or ?position=…), so a past view can be shared and reloaded. */

import { api } from "./api-client.js";
import { $, announce, state } from "./page.js";
import { localInputValue, parseInputValue, utc } from "./format.js";
import { render } from "./cluster-view.js";
import { cancelDeadlineRefresh, refresh, renderLive } from "./live-updates.js";
import { range, renderRange } from "./log-range.js";
import { loadAudit } from "./audit.js";

var sliderTimer = null;

export function submitTime(event) {
  event.preventDefault();
  var at = parseInputValue($("tt-time").value);
  if (!at) {
    refuse("Enter a date and a 24-hour time in UTC as YYYY-MM-DD HH:MM:SS, e.g. " +
           utc(serverNow()) + ".");
    return;
  }
  if (at > serverNow()) {
    refuse(utc(at) + " UTC is in the future: the latest there is to see is now, the live view.");
    return;
  }
  if (range.first && at < range.first && !range.archived) {
    if (at >= wholeSecond(range.first) && range.firstPosition) {
      // The log's first second, typed without its fraction: the log's first event.
      travelToPosition(range.firstPosition);
      return;
    }
    refuse(utc(at) + " UTC is before the log, which starts at " + utc(range.first) +
           " UTC: nothing was recorded earlier. Choose a later time.");
    return;
  }
  travel(at);
}

function serverNow() { return new Date(Date.now() + state.clockOffset); }

function wholeSecond(d) { return new Date(Math.floor(d.getTime() / 1000) * 1000); }

function refuse(text) {
  $("tt-error").textContent = text;
  $("tt-time").setAttribute("aria-invalid", "true");
}

export function slide() {
  if (!range.first) { return; }
  var at = sliderTime();
  $("tt-time").value = localInputValue(at);
  $("tt-slider").setAttribute("aria-valuetext", utc(at) + " UTC");
  clearTimeout(sliderTimer);
  sliderTimer = setTimeout(function () { travel(at); }, 250);
}

function sliderTime() {
  var seconds = parseInt($("tt-slider").value, 10) || 0;
  return new Date(Math.floor(range.first.getTime() / 1000) * 1000 + seconds * 1000 + 999);
}

export function travel(at) {
  return show("at=" + encodeURIComponent(at.toISOString()), function () { return at; },
              "at=" + encodeURIComponent(utc(at).replace(" ", "T") + "Z"));
}

// The cluster just after the event at `position` (the event log's links).
export function travelToPosition(position) {
  return show("position=" + position, function (view) {
    return view.as_of && view.as_of.time ? new Date(view.as_of.time) : null;
  }, "position=" + position);
}

const BUSY_RETRIES = 3;

// Resolves true when the past view is shown. A past view is an expensive read, limited per
// token (429 while the audit pane reads too): wait a moment and ask again, a few times.
function show(query, timeOf, address) {
  var seq = ++state.travelSeq;
  $("tt-error").textContent = "";
  $("tt-time").removeAttribute("aria-invalid");
  return ask("/api/v1/cluster?" + query, seq, BUSY_RETRIES).then(function (view) {
    if (seq !== state.travelSeq) { return false; }
    var at = timeOf(view);
    state.live = false;
    state.at = at;
    cancelDeadlineRefresh();
    render(view);
    renderLive();
    if (window.location.search !== "?" + address) {
      window.history.replaceState(null, "", "?" + address);
    }
    if (at) {
      $("tt-time").value = localInputValue(at);
      if (range.first) {
        var seconds = Math.floor((at - Math.floor(range.first / 1000) * 1000) / 1000);
        $("tt-slider").value = String(Math.max(0, seconds));
        $("tt-slider").setAttribute("aria-valuetext", utc(at) + " UTC");
      }
    }
    announce("Showing the cluster as it was at " + utc(at) + " UTC");
    loadAudit();
    return true;
  }).catch(function (err) {
    if (seq !== state.travelSeq) { return false; }
    var problem = err.problem || {};
    // 410: archived. The problem says where that history went.
    var archive = problem.archive && err.message.indexOf(problem.archive) < 0 ?
      " Archive: " + problem.archive : "";
    refuse(err.message + archive);
    return false;
  });
}

function ask(path, seq, retries) {
  return api(path).catch(function (err) {
    if (err.status !== 429 || retries <= 0 || seq !== state.travelSeq) { throw err; }
    return new Promise(function (resolve) { setTimeout(resolve, 700); }).then(function () {
      return ask(path, seq, retries - 1);
    });
  });
}

export function backToLive() {
  state.travelSeq += 1;
  state.live = true;
  state.at = null;
  $("tt-error").textContent = "";
  $("tt-time").removeAttribute("aria-invalid");
  if (window.location.search) { window.history.replaceState(null, "", window.location.pathname); }
  renderRange();
  renderLive();
  announce("Back to the live view");
  return refresh().then(loadAudit);
}

// A page opened at ?position=N or ?at=TIME starts in that past view (resolves true if shown).
export function travelFromAddress() {
  var params = new URLSearchParams(window.location.search);
  var position = parseInt(params.get("position"), 10);
  if (position > 0) { return travelToPosition(position); }
  var at = parseInputValue(params.get("at") || "");
  if (at) { return travel(at); }
  return Promise.resolve(false);
}
