/* The servers table: one row per server, updated in place so that a live update never moves
 * the page, with icons that carry their own text. */

import { $, setText, state } from "./page.js";
import { COMPONENT_LABEL, count, duration, utc } from "./format.js";
import { PAGE_SIZE, list, pageOf, tally } from "./server-list.js";
import { showTabStatus } from "./tab-status.js";

const HEALTH_LABEL = { ok: "OK", warning: "Warning", error: "Error", unknown: "Unknown" };
const SVG = "http://www.w3.org/2000/svg";

function icon(kind, label, title) {
  var svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("class", "icon icon-" + kind);
  svg.setAttribute("role", "img");
  svg.setAttribute("aria-label", label);
  var t = document.createElementNS(SVG, "title");
  t.textContent = title || label;
  svg.appendChild(t);
  var use = document.createElementNS(SVG, "use");
  use.setAttribute("href", "#i-" + kind);
  svg.appendChild(use);
  return svg;
}

export function setIcon(slot, kind, label, title) {
  var key = kind + "|" + label + "|" + (title || "");
  if (slot.dataset.key === key) { return; }
  slot.dataset.key = key;
  slot.replaceChildren(icon(kind, label, title));
}

function setReasons(details, reasons) {
  var list = details.querySelector("ul");
  var text = reasons.join("\n");
  if (details.dataset.text !== text) {
    details.dataset.text = text;
    list.replaceChildren.apply(list, reasons.map(function (r) {
      var li = document.createElement("li");
      li.textContent = r;
      return li;
    }));
  }
  // The summary keeps its place when empty, so a row never changes height on an update.
  details.classList.toggle("empty", reasons.length === 0);
  details.querySelector("summary").setAttribute("aria-hidden", reasons.length ? "false" : "true");
  details.querySelector("summary").tabIndex = reasons.length ? 0 : -1;
  if (!reasons.length) { details.open = false; }
  details.title = text;
}

export function renderServers(view) {
  var body = $("servers-body");
  var existing = {};
  var page = pageOf(view.servers);
  Array.prototype.forEach.call(body.rows, function (row) { existing[row.dataset.server] = row; });
  page.rows.forEach(function (server, index) {
    var row = existing[server.name];
    if (row) {
      delete existing[server.name];
    } else {
      row = $("row-template").content.firstElementChild.cloneNode(true);
      row.dataset.server = server.name;
      var silence = row.querySelector("button.silence");
      silence.dataset.server = server.name;
      silence.setAttribute("aria-label", "Silence notifications about " + server.name);
    }
    fillRow(row, server);
    if (body.rows[index] !== row) { body.insertBefore(row, body.rows[index] || null); }
  });
  Object.keys(existing).forEach(function (name) { existing[name].remove(); });
  $("no-servers").hidden = view.servers.length > 0;
  $("no-match").hidden = !view.servers.length || page.matching > 0;
  renderPager(page);
  var t = tally(view.servers);
  renderCounts(t);
  showTabStatus(t, !state.live);
}

// The filter or the page changed: show the same view again through them.
export function reshowServers() { if (state.view) { renderServers(state.view); } }

export function filterServers() {
  list.filter = $("server-filter").value;
  list.page = 0;
  reshowServers();
}

export function turnPage(step) {
  list.page += step;
  reshowServers();
  $("servers-title").scrollIntoView({ block: "start" });
}

function renderPager(page) {
  $("servers-pager").hidden = page.matching <= PAGE_SIZE;
  setText($("servers-page"), "Servers " + (page.matching ? page.start + 1 : 0) + "–" +
          (page.start + page.rows.length) + " of " + page.matching +
          (list.filter ? " matching" : "") + " · page " + (list.page + 1) + " of " + page.pages);
  $("servers-prev").disabled = list.page === 0;
  $("servers-next").disabled = list.page >= page.pages - 1;
}

function renderCounts(t) {
  var line = $("health-counts");
  var parts = [["error", count(t.error, "error")], ["warning", count(t.warning, "warning")],
               ["ok", t.ok + " OK"]];
  var key = [t.total, t.error, t.warning, t.ok, t.stale].join("|");
  if (line.dataset.key === key) { return; }
  line.dataset.key = key;
  var nodes = [document.createTextNode(count(t.total, "server") + ": ")];
  parts.forEach(function (part, i) {
    var span = document.createElement("span");
    span.className = "count";
    span.dataset.health = part[0];
    // The words say it: the icon is decoration here.
    var mark = icon(part[0], "");
    mark.removeAttribute("role");
    mark.removeAttribute("aria-label");
    mark.setAttribute("aria-hidden", "true");
    mark.replaceChildren(mark.lastChild);  // no <title>: it would be read as text
    span.append(mark, document.createTextNode(part[1]));
    nodes.push(span);
    if (i < parts.length - 1) { nodes.push(document.createTextNode(" · ")); }
  });
  if (t.stale) { nodes.push(document.createTextNode(" — " + t.stale + " stale " +
                                                    (t.stale === 1 ? "component" : "components"))); }
  line.replaceChildren.apply(line, nodes);
}

function fillRow(row, server) {
  row.dataset.health = server.health;
  row.querySelector(".name").textContent = server.name;
  var reasons = server.reasons || [];
  setIcon(row.querySelector(".server-cell .icon-slot"), server.health,
          "Server " + HEALTH_LABEL[server.health], reasons.join("\n"));
  setReasons(row.querySelector(".server-cell .reasons"), reasons);
  setText(row.querySelector(".os"), [server.os, server.os_version].filter(Boolean).join(" ") ||
          "–");
  setText(row.querySelector(".ip"), server.ip || "–");
  ["web", "service"].forEach(function (name) {
    var cell = row.querySelector('.component[data-component="' + name + '"]');
    var component = (server.components || []).filter(function (c) {
      return c.name === name;
    })[0];
    fillComponent(cell, server, name, component);
  });
  fillSync(row.querySelector('[data-sync="version"]'), server.version_in_sync, "warning",
           "Software version");
  fillSync(row.querySelector('[data-sync="key"]'), server.encryption_key_in_sync, "error",
           "Encryption key");
}

function fillSync(cell, value, badKind, what) {
  var kind = value === true ? "ok" : value === false ? badKind : "unknown";
  var text = value === true ? "In sync" : value === false ? "Out of sync" : "Not reported";
  var slot = cell.querySelector(".icon-slot");
  if (!slot) {
    var inner = document.createElement("span");
    inner.className = "sync-inner";
    slot = document.createElement("span");
    slot.className = "icon-slot";
    var label = document.createElement("span");
    label.className = "sync-text";
    inner.append(slot, label);
    cell.replaceChildren(inner);
  }
  cell.dataset.value = String(value);
  setIcon(slot, kind, what + ": " + text);
  setText(cell.querySelector(".sync-text"), text);
}

function fillComponent(cell, server, name, component) {
  cell.dataset.state = component ? component.heartbeat.state : "absent";
  cell.dataset.health = component ? component.health : "absent";
  if (!component) {
    if (!cell.querySelector(".absent")) {
      cell.replaceChildren($("absent-template").content.firstElementChild.cloneNode(true));
      setIcon(cell.querySelector(".icon-slot"), "unknown",
              COMPONENT_LABEL[name] + " component not in the cluster");
    }
    return;
  }
  var box = cell.querySelector(".comp");
  if (!box) {
    box = $("component-template").content.firstElementChild.cloneNode(true);
    cell.replaceChildren(box);
    box.querySelector(".history").setAttribute(
      "aria-label", "History of the " + COMPONENT_LABEL[name] + " component of " + server.name);
    box.querySelector(".remove").setAttribute(
      "aria-label", "Remove the " + COMPONENT_LABEL[name] + " component of " + server.name);
    box.querySelector(".history").dataset.server = server.name;
    box.querySelector(".remove").dataset.server = server.name;
    box.querySelector(".history").dataset.component = name;
    box.querySelector(".remove").dataset.component = name;
  }
  var reasons = component.reasons || [];
  var title = reasons.length ? reasons.join("\n") : "Healthy";
  setIcon(box.querySelector(".icon-slot"), component.health,
          COMPONENT_LABEL[name] + " " + HEALTH_LABEL[component.health], title);
  var beat = component.heartbeat || {};
  var reported = (component.status || "no status") + " · " +
    (component.verification || "unverified");
  // A stale component's status is only what it said last: never "ok" next to a red mark.
  setText(box.querySelector(".comp-status"),
          beat.state === "stale" ? "stale — last reported " + reported : reported);
  box.querySelector(".comp-status").title = "status · verification";
  setText(box.querySelector(".comp-version"),
          [component.product, component.product_version].filter(Boolean).join(" ") || "–");
  var badge = box.querySelector(".beat-state");
  setText(badge, beat.state === "stale" ? "stale" : "current");
  badge.dataset.state = beat.state;
  badge.title = beat.state === "stale" && beat.stale_since ?
    "stale since " + utc(beat.stale_since) + " UTC" :
    (beat.deadline ? "current until " + utc(beat.deadline) + " UTC" : "");
  var age = box.querySelector(".beat-age");
  age.dataset.age = beat.age_seconds === null || beat.age_seconds === undefined ?
    "" : String(beat.age_seconds);
  // Stale for = the heartbeat's age minus how long it was current (stale_since - last_at).
  age.dataset.currentFor = beat.state === "stale" && beat.stale_since && beat.last_at ?
    String((new Date(beat.stale_since) - new Date(beat.last_at)) / 1000) : "";
  age.title = beat.last_at ? "last heartbeat " + utc(beat.last_at) + " UTC" : "";
  updateAge(age);
  setReasons(box.querySelector(".reasons"), reasons);
}

// The age the view reported, grown by the time since it arrived (a past view stands still):
// "stale for 63 s · last heartbeat 93 s ago".
export function updateAge(node) {
  var base = node.dataset.age;
  var staleFor = node.parentNode.querySelector(".beat-for");
  if (base === "" || base === undefined) {
    setText(staleFor, "");
    setText(node, "no heartbeat yet");
    return;
  }
  var seconds = parseFloat(base);
  if (state.live) { seconds += (Date.now() - state.received) / 1000; }
  var currentFor = node.dataset.currentFor;
  setText(staleFor, currentFor ? " for " + duration(seconds - parseFloat(currentFor)) : "");
  setText(node, "last heartbeat " + duration(seconds) + " ago");
}
