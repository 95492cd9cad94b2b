/* The configuration form: an admin saves only what changed, and the API's refusals are shown
 * next to their fields. Its values are filled by cluster-view.js. */

import { api } from "./api-client.js";
import { $, isAdmin, state } from "./page.js";
import { refresh } from "./live-updates.js";

const SAVED_SECONDS = 4;
var savedTimer = null;

// "Saved." is news about one click: it goes after a few seconds and with any new edit.
function showSaved() {
  $("config-status").textContent = "Saved.";
  clearTimeout(savedTimer);
  savedTimer = setTimeout(function () {
    if ($("config-status").textContent === "Saved.") { $("config-status").textContent = ""; }
  }, SAVED_SECONDS * 1000);
}

export function noteEdit(event) {
  if (event.target.name) {
    state.dirty[event.target.name] = true;
    $("config-status").textContent = "";
  }
}

function clearConfigErrors() {
  Array.prototype.forEach.call(document.querySelectorAll("#config-form .field-error"),
                               function (p) { p.textContent = ""; });
  Array.prototype.forEach.call(document.querySelectorAll("#config-form [aria-invalid]"),
                               function (i) { i.removeAttribute("aria-invalid"); });
}

export function saveConfiguration(event) {
  event.preventDefault();
  if (!isAdmin() || !state.live || !state.view) { return; }
  clearConfigErrors();
  var config = state.view.configuration;
  var changes = {};
  Array.prototype.forEach.call($("config-form").elements, function (input) {
    if (!input.name || !(input.name in config)) { return; }
    var value = input.type === "checkbox" ? input.checked :
      (input.value.trim() === "" ? null : Number(input.value));
    if (value !== config[input.name]) { changes[input.name] = value; }
  });
  if (!Object.keys(changes).length) {
    $("config-status").textContent = "Nothing changed.";
    return;
  }
  $("config-status").textContent = "Saving…";
  api("/api/v1/cluster/configuration", { method: "PUT", body: changes }).then(function () {
    state.dirty = {};
    showSaved();
    return refresh();
  }).catch(function (err) {
    $("config-status").textContent = "";
    var errors = (err.problem && err.problem.errors) || {};
    var first = null;
    Object.keys(errors).forEach(function (field) {
      var messages = [].concat(errors[field]).join(" ");
      var slot = $("error-" + field);
      var input = $("cfg-" + field);
      if (slot && input) {
        slot.textContent = messages;
        input.setAttribute("aria-invalid", "true");
        first = first || input;
      } else {
        $("config-error").textContent += messages + " ";
      }
    });
    if (!Object.keys(errors).length) { $("config-error").textContent = err.message; }
    if (first) { first.focus(); }
  });
}
