/* The Notifications pane: the channels (addresses masked by the API), the recent deliveries
 * with their state and error, and the silences; for admins a "Send test message" button per
 * channel, an "End now" button per silence, and the "Silence…" action of each server row.
 *
 * Channels and silences change by events, which the live stream announces; deliveries are the
 * notifier's own table (no event), so they are re-read every few seconds while the view is
 * live. Like the polled servers, this pane shows the present and does not travel in time. */

import { api, hasToken } from "./api-client.js";
import { $, announce, isAdmin, setText, state } from "./page.js";
import { COMPONENT_LABEL, utc } from "./format.js";

const RECENT = 20;              // deliveries shown
const PAGE = 1000;              // the API's largest page
const REFRESH_SECONDS = 10;
const STATE_LABEL = { pending: "Pending", sent: "Sent", failed: "Failed", suppressed: "Not sent" };

var channels = [];
var deliveries = [];            // the newest RECENT, oldest first
var cursor = 0;                 // the `after` reached in the deliveries
var silences = [];
var timer = null;
var silencing = null;           // the server the silence dialog is about
var generation = 0;             // bumped at sign-out: late answers are dropped

export function startNotifications() {
  stopNotifications();
  timer = setInterval(function () {
    if (state.live) { loadDeliveries(); }
  }, REFRESH_SECONDS * 1000);
  return Promise.all([loadChannels(), loadDeliveries(), loadSilences()]);
}

export function stopNotifications() {
  clearInterval(timer);
  timer = null;
  generation += 1;
  channels = [];
  deliveries = [];
  silences = [];
  cursor = 0;
  ["channels-body", "deliveries-body", "silences-body"].forEach(function (id) {
    $(id).replaceChildren();
  });
  ["channel-status", "channels-error", "silences-error"].forEach(function (id) {
    $(id).textContent = "";
  });
}

// The live stream names what changed: a channel's or a silence's events re-read its list.
export function onNotificationEvent(type) {
  if (/^Channel(Configured|Removed)$/.test(type)) { loadChannels(); }
  if (/^Silence(Created|Ended)$/.test(type)) { loadSilences(); }
}

function guarded(promise, onAnswer, errorSlot, what) {
  var mine = generation;
  return promise.then(function (answer) {
    if (mine !== generation) { return; }
    if (errorSlot) { $(errorSlot).textContent = ""; }
    onAnswer(answer);
  }).catch(function (err) {
    if (mine !== generation || err.status === 401) { return; }
    if (errorSlot) { $(errorSlot).textContent = "Could not read the " + what + ": " + err.message; }
  });
}

export function loadChannels() {
  if (!hasToken()) { return Promise.resolve(); }
  return guarded(api("/api/v1/notifications/channels"), function (answer) {
    channels = answer.channels || [];
    renderChannels();
  }, "channels-error", "channels");
}

export function loadSilences() {
  if (!hasToken()) { return Promise.resolve(); }
  return guarded(api("/api/v1/silences"), function (answer) {
    silences = answer.silences || [];
    renderSilences();
  }, "silences-error", "silences");
}

// Reads from just before the oldest delivery shown (so a pending one shows when it is sent)
// to the end, page by page, and keeps the newest RECENT.
export function loadDeliveries() {
  if (!hasToken()) { return Promise.resolve(); }
  var start = deliveries.length ? deliveries[0].seq - 1 : cursor;
  var fetched = [];
  function page(after) {
    return api("/api/v1/notifications/deliveries?limit=" + PAGE + "&after=" + after)
      .then(function (answer) {
        fetched = fetched.concat(answer.deliveries).slice(-RECENT);
        if (answer.deliveries.length === PAGE) { return page(answer.next_after); }
        return answer.next_after;
      });
  }
  return guarded(page(start), function (reached) {
    cursor = reached;
    if (fetched.length) { deliveries = fetched; }
    renderDeliveries();
  }, "channels-error", "deliveries");
}

function cell(text, className) {
  var td = document.createElement("td");
  if (className) { td.className = className; }
  td.textContent = text;
  return td;
}

function rowHead(text) {
  var th = document.createElement("th");
  th.scope = "row";
  th.textContent = text;
  return th;
}

function actionButton(label, className, ariaLabel, data) {
  var button = document.createElement("button");
  button.type = "button";
  button.className = "link live-only " + className;
  button.textContent = label;
  button.setAttribute("aria-label", ariaLabel);
  Object.keys(data).forEach(function (k) { button.dataset[k] = data[k]; });
  var td = document.createElement("td");
  td.className = "notify-actions admin-only";
  td.appendChild(button);
  return td;
}

function servers(list) { return list === null || list === undefined ? "All" : list.join(", "); }

function renderChannels() {
  var body = $("channels-body");
  body.replaceChildren.apply(body, channels.map(function (c) {
    var row = document.createElement("tr");
    row.dataset.channel = c.name;
    row.dataset.enabled = String(c.enabled);
    var sends = c.on.join(", ");
    if (c.min_outage_seconds) { sends += " (stale after " + c.min_outage_seconds + " s)"; }
    row.append(
      rowHead(c.name),
      cell(c.kind),
      cell(c.target, "target"),
      cell(sends),
      cell(servers(c.servers)),
      cell(c.enabled ? "Enabled" : "Disabled"),
      actionButton("Send test message", "test-channel", "Send a test message to " + c.name,
                   { channel: c.name })
    );
    return row;
  }));
  $("no-channels").hidden = channels.length > 0;
}

function about(d) {
  var subject = d.server ?
    d.server + (d.component ? " " + (COMPONENT_LABEL[d.component] || d.component) : "") :
    "the cluster";
  return d.trigger.replace(/_/g, " ") + (d.trigger === "test" ? "" : " · " + subject);
}

function renderDeliveries() {
  var body = $("deliveries-body");
  var newestFirst = deliveries.slice().reverse();
  body.replaceChildren.apply(body, newestFirst.map(function (d) {
    var row = document.createElement("tr");
    row.dataset.state = d.state;
    row.dataset.seq = String(d.seq);
    var stateText = STATE_LABEL[d.state] || d.state;
    if (d.state === "pending" && d.attempts) { stateText += " (tried " + d.attempts + "×)"; }
    if (d.state === "sent" && d.sent_at) { stateText += " " + utc(d.sent_at); }
    var why = d.last_error || (d.suppressed_by ? "suppressed: " + d.suppressed_by : "–");
    row.append(
      rowHead(utc(d.created_at)),
      cell(d.channel),
      cell(about(d)),
      cell(stateText, "state"),
      cell(why, "why")
    );
    return row;
  }));
  $("no-deliveries").hidden = deliveries.length > 0;
}

function renderSilences() {
  var body = $("silences-body");
  var now = Date.now() + state.clockOffset;
  body.replaceChildren.apply(body, silences.map(function (s) {
    var row = document.createElement("tr");
    row.dataset.silence = s.id;
    var active = new Date(s.starts_at).getTime() <= now;
    row.dataset.active = String(active);
    var components = s.components === null || s.components === undefined ? "All" :
      s.components.map(function (c) { return COMPONENT_LABEL[c] || c; }).join(", ");
    row.append(
      rowHead(servers(s.servers)),
      cell(components),
      cell(utc(s.starts_at) + (active ? " (active)" : "")),
      cell(utc(s.ends_at)),
      cell(s.comment || "–"),
      actionButton("End now", "end-silence", "End the silence of " + servers(s.servers) +
                   " until " + utc(s.ends_at) + " now", { silence: s.id })
    );
    return row;
  }));
  $("no-silences").hidden = silences.length > 0;
}

// One listener on each table serves every row's button.
export function channelAction(event) {
  var button = event.target.closest("button.test-channel");
  if (!button || !isAdmin() || !state.live) { return; }
  var name = button.dataset.channel;
  button.disabled = true;
  setText($("channel-status"), "Sending a test message to " + name + "…");
  $("channels-error").textContent = "";
  api("/api/v1/notifications/channels/" + encodeURIComponent(name) + "/test",
      { method: "POST" })
    .then(function () {
      setText($("channel-status"), "The test message reached " + name + ".");
    }).catch(function (err) {
      setText($("channel-status"), "");
      $("channels-error").textContent = "The test message did not reach " + name + ": " +
        err.message;
    }).then(function () {
      button.disabled = false;
      return loadDeliveries();
    });
}

export function silenceAction(event) {
  var button = event.target.closest("button.end-silence");
  if (!button || !isAdmin() || !state.live) { return; }
  button.disabled = true;
  api("/api/v1/silences/" + encodeURIComponent(button.dataset.silence), { method: "DELETE" })
    .then(function () {
      announce("Silence ended.");
      return loadSilences();
    }).catch(function (err) {
      button.disabled = false;
      $("silences-error").textContent = "Could not end the silence: " + err.message;
    });
}

// The "Silence…" button of a server row (servers table).
export function silenceFromTable(event) {
  var button = event.target.closest("button.silence");
  if (!button || !isAdmin() || !state.live) { return; }
  silencing = button.dataset.server;
  setText($("silence-title"), "Silence " + silencing);
  $("silence-error").textContent = "";
  $("silence-comment").value = "";
  $("silence-dialog").showModal();
}

export function cancelSilence() { $("silence-dialog").close(); }

export function submitSilence(event) {
  event.preventDefault();
  var server = silencing;
  if (!server) { return; }
  var body = {
    servers: [server],
    duration_seconds: Number($("silence-duration").value),
    comment: $("silence-comment").value.trim() || null
  };
  $("silence-ok").disabled = true;
  api("/api/v1/silences", { method: "POST", body: body }).then(function (created) {
    $("silence-dialog").close();
    silencing = null;
    announce("Notifications about " + server + " are silenced until " + utc(created.ends_at) +
             " UTC.");
    return loadSilences();
  }).catch(function (err) {
    $("silence-error").textContent = err.message;
  }).then(function () {
    $("silence-ok").disabled = false;
  });
}
