/* The servers table: one row per server, updated in place so that a live update never moves
 * the page, with icons that carry their own text. */

import { $, setText, state } from "./page.js";
import { COMPONENT_LABEL, duration, utc } from "./format.js";

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
  Array.prototype.forEach.call(body.rows, function (row) { existing[row.dataset.server] = row; });
  view.servers.forEach(function (server, index) {
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
  setText(box.querySelector(".comp-status"),
          (component.status || "no status") + " · " + (component.verification || "unverified"));
  box.querySelector(".comp-status").title = "status · verification";
  setText(box.querySelector(".comp-version"),
          [component.product, component.product_version].filter(Boolean).join(" ") || "–");
  var beat = component.heartbeat || {};
  var badge = box.querySelector(".beat-state");
  setText(badge, beat.state === "stale" ? "stale" : "current");
  badge.dataset.state = beat.state;
  badge.title = beat.state === "stale" && beat.stale_since ?
    "stale since " + utc(beat.stale_since) + " UTC" :
    (beat.deadline ? "current until " + utc(beat.deadline) + " UTC" : "");
  var age = box.querySelector(".beat-age");
  age.dataset.age = beat.age_seconds === null || beat.age_seconds === undefined ?
    "" : String(beat.age_seconds);
  age.title = beat.last_at ? "last heartbeat " + utc(beat.last_at) + " UTC" : "";
  updateAge(age);
  setReasons(box.querySelector(".reasons"), reasons);
}

// The age the view reported, grown by the time since it arrived (a past view stands still).
export function updateAge(node) {
  var base = node.dataset.age;
  if (base === "" || base === undefined) { setText(node, "never"); return; }
  var seconds = parseFloat(base);
  if (state.live) { seconds += (Date.now() - state.received) / 1000; }
  setText(node, duration(seconds) + " ago");
}
