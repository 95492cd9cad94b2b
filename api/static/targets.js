/* The Polled servers pane: the targets clustermon polls, their last poll, and for admins a form
 * to add or change one (the API's refusals shown next to their fields) and a button to stop
 * polling one.
 *
 * URLs arrive with their secrets masked (***). Changing a target therefore never sends its URL
 * back unless the admin typed a new one: an empty URL field keeps the stored one, secret
 * included. */

import { api, hasToken } from "./api-client.js";
import { $, announce, isAdmin, setText, state } from "./page.js";
import { utc } from "./format.js";
import { setIcon } from "./servers-table.js";

const FIELDS = ["server", "url", "interval_seconds", "timeout_seconds", "verify_tls"];
const REFRESH_SECONDS = 10;  // a poll writes no event: re-read now and then to show it

var targets = [];
var loading = false;
var timer = null;
var removing = null;      // the server the confirmation dialog is about

export function loadTargets() {
  if (!hasToken() || loading) { return Promise.resolve(); }
  loading = true;
  return api("/api/v1/targets").then(function (answer) {
    targets = answer.targets || [];
    $("targets-error").textContent = "";
    renderTargets();
  }).catch(function (err) {
    if (err.status !== 401) {
      $("targets-error").textContent = "Could not read the polled servers: " + err.message;
    }
  }).then(function () { loading = false; });
}

export function startTargets() {
  stopTargets();
  timer = setInterval(function () { if (state.live) { loadTargets(); } }, REFRESH_SECONDS * 1000);
  return loadTargets();
}

export function stopTargets() {
  clearInterval(timer);
  timer = null;
  targets = [];
  $("targets-body").replaceChildren();
  clearForm();
}

// The live event stream names what changed: a target's own events re-read the list at once.
export function onTargetEvent(type) {
  if (/^(TargetConfigured|TargetRemoved|CollectionFailed)$/.test(type)) { loadTargets(); }
}

// In a past view the list still shows the targets now (it does not travel in time): say so.
export function renderTargetsMode() {
  setText($("targets-caption"), state.live ? "Targets now" :
          "Targets now (this list does not travel in time)");
}

function renderTargets() {
  var body = $("targets-body");
  var rows = targets.map(function (t) {
    var row = document.createElement("tr");
    row.dataset.server = t.server;
    var poll = t.last_poll;
    var result = !poll ? "unknown" : (poll.ok ? "ok" : "error");
    row.dataset.result = result;
    var name = document.createElement("th");
    name.scope = "row";
    name.textContent = t.server;
    var when = poll ? utc(poll.at) : "not polled yet";
    var resultCell = document.createElement("td");
    resultCell.className = "result";
    var inner = document.createElement("span");
    inner.className = "sync-inner";
    var slot = document.createElement("span");
    slot.className = "icon-slot";
    var text = document.createElement("span");
    text.textContent = !poll ? "–" : (poll.ok ? "OK" : "Failed");
    inner.append(slot, text);
    resultCell.appendChild(inner);
    setIcon(slot, result, "Last poll of " + t.server + ": " +
            (!poll ? "not polled yet" : (poll.ok ? "OK" : "failed")));
    row.append(
      name,
      cell("url", t.url),
      cell("every", t.interval_seconds + " s (timeout " + t.timeout_seconds + " s" +
           (t.verify_tls ? "" : ", TLS not verified") + ")"),
      cell("when", when),
      resultCell,
      cell("reason", reason(t)),
      actions(t)
    );
    return row;
  });
  body.replaceChildren.apply(body, rows);
  $("no-targets").hidden = targets.length > 0;
  renderTargetsMode();
}

function reason(t) {
  var poll = t.last_poll;
  var parts = [];
  if (poll && !poll.ok && poll.error) { parts.push(poll.error); }
  if (t.failure) {
    parts.push("failing since " + utc(t.failure.since) + " UTC (" + t.failure.kind + ")");
  }
  return parts.join("; ") || "–";
}

function cell(kind, text) {
  var td = document.createElement("td");
  td.className = kind;
  td.textContent = text;
  return td;
}

function actions(t) {
  var td = document.createElement("td");
  td.className = "target-actions admin-only";
  var change = document.createElement("button");
  change.type = "button";
  change.className = "link change live-only";
  change.textContent = "Change";
  change.dataset.server = t.server;
  change.setAttribute("aria-label", "Change the target " + t.server);
  var remove = document.createElement("button");
  remove.type = "button";
  remove.className = "link danger remove-target live-only";
  remove.textContent = "Stop polling";
  remove.dataset.server = t.server;
  remove.setAttribute("aria-label", "Stop polling " + t.server);
  td.append(change, remove);
  return td;
}

// One listener on the table serves every row's buttons.
export function targetAction(event) {
  var button = event.target.closest("button");
  if (!button || !isAdmin() || !state.live) { return; }
  var target = targets.filter(function (t) { return t.server === button.dataset.server; })[0];
  if (!target) { return; }
  if (button.classList.contains("change")) { editTarget(target); }
  if (button.classList.contains("remove-target")) { askRemove(target); }
}

function editTarget(t) {
  clearForm();
  $("target-server").value = t.server;
  $("target-url").value = "";
  $("target-url").placeholder = t.url;
  $("target-url-keep").textContent = "leave it empty to keep " + t.url + "; ";
  $("target-interval_seconds").value = String(t.interval_seconds);
  $("target-timeout_seconds").value = String(t.timeout_seconds);
  $("target-verify_tls").checked = !!t.verify_tls;
  $("target-url").focus();
}

function clearErrors() {
  FIELDS.forEach(function (field) {
    $("target-error-" + field).textContent = "";
    $("target-" + field).removeAttribute("aria-invalid");
  });
  $("target-form-error").textContent = "";
}

export function clearForm() {
  $("target-form").reset();
  $("target-url").placeholder = "";
  $("target-url-keep").textContent = "";
  clearErrors();
  $("target-status").textContent = "";
}

function numberOrText(input) {
  var text = input.value.trim();
  // What the admin typed, as a number when it is one: the API says what is wrong with it.
  return text === "" ? null : (isNaN(Number(text)) ? text : Number(text));
}

export function saveTarget(event) {
  event.preventDefault();
  if (!isAdmin() || !state.live) { return; }
  clearErrors();
  var server = $("target-server").value.trim();
  if (!server) {
    showErrors({ server: ["Enter the server's name."] });
    return;
  }
  var body = {
    interval_seconds: numberOrText($("target-interval_seconds")),
    timeout_seconds: numberOrText($("target-timeout_seconds")),
    verify_tls: $("target-verify_tls").checked
  };
  var url = $("target-url").value.trim();
  // An existing target keeps its URL (secrets included) unless a new one is typed; a new one
  // without a URL is refused by the API, which says so next to the field.
  if (url) { body.url = url; }
  Object.keys(body).forEach(function (k) { if (body[k] === null) { delete body[k]; } });
  $("target-status").textContent = "Saving…";
  api("/api/v1/targets/" + encodeURIComponent(server), { method: "PUT", body: body })
    .then(function (saved) {
      clearForm();
      $("target-status").textContent = "Saved " + saved.server + ".";
      announce("Target " + saved.server + " saved.");
      return loadTargets();
    }).catch(function (err) {
      $("target-status").textContent = "";
      var errors = (err.problem && err.problem.errors) || {};
      if (!Object.keys(errors).length) {
        $("target-form-error").textContent = err.message;
        return;
      }
      showErrors(errors);
    });
}

function showErrors(errors) {
  var first = null;
  Object.keys(errors).forEach(function (field) {
    var messages = [].concat(errors[field]).join(" ");
    var slot = $("target-error-" + field);
    var input = $("target-" + field);
    if (slot && input) {
      slot.textContent = messages;
      input.setAttribute("aria-invalid", "true");
      first = first || input;
    } else {
      $("target-form-error").textContent += (field === "_schema" ? "" : field + ": ") +
        messages + " ";
    }
  });
  if (first) { first.focus(); }
}

function askRemove(t) {
  removing = t.server;
  $("confirm-target-text").textContent = "clustermon will stop polling " + t.server + " (" +
    t.url + "). The server stays in the cluster: its components go stale unless an agent " +
    "reports them.";
  $("confirm-target-error").textContent = "";
  $("confirm-target-ok").setAttribute("aria-label", "Stop polling " + t.server + " now");
  $("confirm-target-remove").showModal();
}

export function confirmTargetRemoval() {
  var server = removing;
  if (!server) { return; }
  api("/api/v1/targets/" + encodeURIComponent(server), { method: "DELETE" }).then(function () {
    removing = null;
    $("confirm-target-remove").close();
    announce("Stopped polling " + server + ".");
    return loadTargets();
  }).catch(function (err) {
    $("confirm-target-error").textContent = err.message;
  });
}
