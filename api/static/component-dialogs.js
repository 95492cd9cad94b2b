/* The two dialogs a component's buttons open: confirm its removal (admin), and its history. */

import { api } from "./api-client.js";
import { $, announce, state } from "./page.js";
import { COMPONENT_LABEL, utc } from "./format.js";
import { eventLabel } from "./event-log.js";
import { requestRefresh } from "./live-updates.js";

var removeTarget = null;
var historyOf = null;       // the component whose history dialog is open
var historyTimer = null;

// The buttons are created with each row, so one listener on the table serves them all.
export function openFromTable(event) {
  var button = event.target.closest("button");
  if (!button) { return; }
  if (button.classList.contains("remove")) {
    askRemove(button.dataset.server, button.dataset.component);
  } else if (button.classList.contains("history")) {
    showHistory(button.dataset.server, button.dataset.component);
  }
}

function askRemove(server, component) {
  removeTarget = { server: server, component: component };
  var label = COMPONENT_LABEL[component];
  $("confirm-title").textContent = "Remove the " + label + " component of " + server + "?";
  $("confirm-text").textContent = "The " + label + " component of server " + server +
    " will be removed from the cluster. It disappears from this table until it sends a " +
    "heartbeat again; its history stays in the log.";
  $("confirm-ok").textContent = "Remove " + label + " of " + server;
  $("confirm-error").textContent = "";
  $("confirm-remove").showModal();
}

export function confirmRemove() {
  var target = removeTarget;
  if (!target) { return; }
  var path = "/api/v1/servers/" + encodeURIComponent(target.server) + "/components/" +
    encodeURIComponent(target.component);
  $("confirm-ok").disabled = true;
  api(path, { method: "DELETE" }).then(function () {
    $("confirm-remove").close();
    announce("Removed the " + COMPONENT_LABEL[target.component] + " component of " +
             target.server);
    requestRefresh();
  }).catch(function (err) {
    $("confirm-error").textContent = err.message;
  }).then(function () {
    $("confirm-ok").disabled = false;
  });
}

function showHistory(server, component) {
  var label = COMPONENT_LABEL[component];
  $("history-title").textContent = "History of the " + label + " component of " + server;
  $("history-note").textContent = "Loading…";
  $("history-body").replaceChildren();
  $("history-dialog").showModal();
  historyOf = { server: server, component: component };
  loadHistory(server, component);
}

// While the dialog is open, the component's own events reload it: its history is live too.
export function reloadOpenHistory(event) {
  var open = historyOf;
  if (open && event && event.stream === open.server + "/" + open.component &&
      $("history-dialog").open) {
    if (!historyTimer) {  // at most one reload a second, however fast it beats
      historyTimer = setTimeout(function () {
        historyTimer = null;
        if ($("history-dialog").open) { loadHistory(open.server, open.component); }
      }, 1000);
    }
  }
}

// A transition in words: "Timed out", with who detected it as a detail under the label.
function split(t) {
  var label = eventLabel(t.event);
  var why = t.reason || "";
  if (t.event === "HeartbeatRecorded") {
    label = /^first heartbeat/.test(why) ? "First heartbeat" :
      /after removal/.test(why) ? "Back in the cluster" : "Changed";
  }
  var detail = "";
  var m = /;? ?detected by (.+)$/.exec(why);
  if (m) {
    detail = "detected by " + m[1];
    why = why.slice(0, m.index).replace(/[;,]\s*$/, "");
  }
  return { label: label, why: why, detail: detail };
}

function loadHistory(server, component) {
  var path = "/api/v1/servers/" + encodeURIComponent(server) + "/components/" +
    encodeURIComponent(component) + "/history";
  api(path).then(function (data) {
    var rows = data.transitions.slice().reverse();
    $("history-note").textContent = rows.length +
      (rows.length === 1 ? " transition" : " transitions") + ", newest first." +
      (state.live ? "" : " Rows after the past view's time are marked “later”.");
    $("history-body").replaceChildren.apply($("history-body"), rows.map(function (t) {
      var tr = document.createElement("tr");
      var later = !state.live && new Date(t.at) > state.at;
      if (later) { tr.className = "later"; }
      var said = split(t);
      [utc(t.at) + (later ? " (later)" : ""), said.label, t.state, t.health || "–", said.why]
        .forEach(function (text, i) {
          var cell = document.createElement(i === 0 ? "th" : "td");
          if (i === 0) { cell.scope = "row"; }
          cell.textContent = text;
          if (i === 1) {
            cell.className = "what";
            cell.title = t.event;
            if (said.detail) {
              var small = document.createElement("small");
              small.className = "detail";
              small.textContent = said.detail;
              cell.append(document.createElement("br"), small);
            }
          }
          tr.appendChild(cell);
        });
      return tr;
    }));
  }).catch(function (err) {
    $("history-note").textContent = err.message;
  });
}
