/* Shows one view of the cluster (live or past): its configuration, its servers, and which
 * view it is. */

import { $, isAdmin, state } from "./page.js";
import { utc } from "./format.js";
import { renderServers } from "./servers-table.js";
import { renderTargetsMode } from "./targets.js";

export function render(view) {
  state.view = view;
  state.received = Date.now();
  if (view.as_of && view.as_of.time) {
    state.clockOffset = new Date(view.as_of.time).getTime() - state.received;
  }
  renderConfiguration(view);
  renderServers(view);
  renderMode();
  renderTargetsMode();
}

function renderMode() {
  var view = state.view;
  var mode = $("mode");
  var position = view && view.as_of ? view.as_of.position : 0;
  mode.dataset.mode = state.live ? "live" : "past";
  mode.dataset.position = String(position);
  document.body.classList.toggle("past", !state.live);
  $("tt-live").disabled = state.live;
  var use = mode.querySelector("use");
  if (state.live) {
    use.setAttribute("href", "#i-ok");
    $("mode-text").textContent = "Live view: the cluster now (log position " + position + ")";
    $("as-of").textContent = "Servers now, as of log position " + position;
  } else {
    $("config-status").textContent = "";  // a past view has nothing saved to report
    use.setAttribute("href", "#i-warning");
    $("mode-text").textContent = "Past view: the cluster as it was at " + utc(state.at) +
      " UTC (log position " + position + "). Live updates are paused; choose Back to live" +
      " to return.";
    $("as-of").textContent = "Servers as they were at " + utc(state.at) + " UTC";
  }
}

function renderConfiguration(view) {
  var config = view.configuration || {};
  $("server-count").textContent = String(view.server_count);
  var editable = isAdmin() && state.live;
  Array.prototype.forEach.call($("config-form").elements, function (input) {
    if (!input.name || !(input.name in config)) { return; }
    input.disabled = !editable;
    if (state.dirty[input.name] && state.live) { return; }  // never overwrite typing
    if (input.type === "checkbox") {
      input.checked = !!config[input.name];
    } else {
      input.value = String(config[input.name]);
    }
  });
  $("config-save").disabled = !editable;
}
