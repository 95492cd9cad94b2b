/* Time travel: show the cluster as it was at a chosen time (a past view, with live updates
 * paused), and come back to the live view. */

import { api } from "./api-client.js";
import { $, announce, state } from "./page.js";
import { localInputValue, parseInputValue, utc } from "./format.js";
import { render } from "./cluster-view.js";
import { cancelDeadlineRefresh, refresh } from "./live-updates.js";
import { range, renderRange } from "./log-range.js";
import { loadAudit } from "./audit.js";

var sliderTimer = null;

export function submitTime(event) {
  event.preventDefault();
  var at = parseInputValue($("tt-time").value);
  if (!at) {
    $("tt-error").textContent = "Enter a date and time (UTC).";
    return;
  }
  travel(at);
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

function travel(at) {
  var seq = ++state.travelSeq;
  $("tt-error").textContent = "";
  $("tt-time").removeAttribute("aria-invalid");
  return api("/api/v1/cluster?at=" + encodeURIComponent(at.toISOString())).then(function (view) {
    if (seq !== state.travelSeq) { return; }
    state.live = false;
    state.at = at;
    cancelDeadlineRefresh();
    render(view);
    $("tt-time").value = localInputValue(at);
    if (range.first) {
      var seconds = Math.floor((at - Math.floor(range.first / 1000) * 1000) / 1000);
      $("tt-slider").value = String(Math.max(0, seconds));
      $("tt-slider").setAttribute("aria-valuetext", utc(at) + " UTC");
    }
    announce("Showing the cluster as it was at " + utc(at) + " UTC");
    loadAudit();
  }).catch(function (err) {
    if (seq !== state.travelSeq) { return; }
    $("tt-error").textContent = err.message;
    $("tt-time").setAttribute("aria-invalid", "true");
  });
}

export function backToLive() {
  state.travelSeq += 1;
  state.live = true;
  state.at = null;
  $("tt-error").textContent = "";
  renderRange();
  announce("Back to the live view");
  return refresh().then(loadAudit);
}
