/* Availability strips (issue #20, item 2): per component, a strip of its states over the last
 * 24 hours or 7 days (current, stale, removed, monitor gap) with its uptime beside it, from
 * GET /api/v1/availability. Worst uptime first; each segment's times and reason show on hover
 * (its title) and, for the segments worth a look, on keyboard focus too.
 *
 * A module of its own: it builds its panel inside the page's #availability section, watches
 * the sign-in state and refreshes itself; nothing else on the page calls it. Drawing is plain
 * divs placed with CSSOM (the page's Content-Security-Policy allows no inline style). */

import { api } from "./api-client.js";
import { $, state } from "./page.js";
import { COMPONENT_LABEL, duration, utc } from "./format.js";

const REFRESH_MS = 60000;
const SHOWN_FIRST = 20;         // rows shown before "Show all": the worst ones
const PAGE = 1000;              // servers per request (the API's most)
const MAX_PAGES = 10;
const STATE_LABEL = { current: "Current", stale: "Stale", removed: "Removed", gap: "Monitor gap" };

var panel = null;
var loadedAt = 0;
var loading = false;
var showAll = false;
var answer = null;

function el(tag, className, text) {
  var node = document.createElement(tag);
  if (className) { node.className = className; }
  if (text !== undefined) { node.textContent = text; }
  return node;
}

function build(container) {
  var head = el("div", "av-head");
  var title = el("h2", null, "Availability");
  title.id = "availability-title";
  var label = el("label", null, "Over ");
  var select = el("select");
  select.id = "availability-window";
  [["24h", "the last 24 hours"], ["7d", "the last 7 days"]].forEach(function (o) {
    var option = el("option", null, o[1]);
    option.value = o[0];
    select.appendChild(option);
  });
  label.htmlFor = select.id;
  select.addEventListener("change", function () { load(); });
  var legend = el("p", "av-legend");
  Object.keys(STATE_LABEL).forEach(function (s) {
    var key = el("span", "av-key");
    var swatch = el("span", "av-swatch");
    swatch.dataset.state = s;
    key.append(swatch, document.createTextNode(STATE_LABEL[s]));
    legend.appendChild(key);
  });
  head.append(title, label, select, legend);
  var caption = el("p", "help", "–");
  caption.id = "availability-caption";
  var detail = el("p", "av-detail");
  detail.id = "availability-detail";
  detail.setAttribute("role", "status");
  var rows = el("div", "av-rows");
  rows.id = "availability-rows";
  rows.setAttribute("role", "list");
  rows.setAttribute("aria-label", "Availability per component, worst uptime first");
  rows.addEventListener("focusin", function (event) {
    var text = event.target.getAttribute && event.target.getAttribute("title");
    if (text) { detail.textContent = text; }
  });
  var more = el("button", "av-more");
  more.type = "button";
  more.id = "availability-more";
  more.hidden = true;
  more.addEventListener("click", function () { showAll = !showAll; render(); });
  var error = el("p", "field-error");
  error.id = "availability-error";
  error.setAttribute("role", "alert");
  container.append(head, caption, error, rows, more, detail);
  return { select: select, caption: caption, rows: rows, more: more, error: error,
           detail: detail };
}

function fetchAll(windowName) {
  var merged = null;
  function page(after, count) {
    var query = "?window=" + windowName + "&limit=" + PAGE +
      (after ? "&after=" + encodeURIComponent(after) : "");
    return api("/api/v1/availability" + query).then(function (body) {
      if (!merged) {
        merged = body;
      } else {  // the reasons table is per answer: renumber this page's into the first's
        var ids = {};
        body.reasons.forEach(function (r) {
          var same = merged.reasons.find(function (m) { return m.state === r.state && m.text === r.text; });
          if (!same) { same = { id: merged.reasons.length, state: r.state, text: r.text }; merged.reasons.push(same); }
          ids[r.id] = same.id;
        });
        body.components.forEach(function (c) {
          c.segments.forEach(function (s) { s[3] = ids[s[3]]; });
          merged.components.push(c);
        });
      }
      if (body.next_after && count + 1 < MAX_PAGES) { return page(body.next_after, count + 1); }
      return merged;
    });
  }
  return page(null, 0);
}

export function load() {
  if (!panel || loading) { return Promise.resolve(); }
  loading = true;
  loadedAt = Date.now();
  return fetchAll(panel.select.value).then(function (body) {
    answer = body;
    panel.error.textContent = "";
    render();
  }).catch(function (err) {
    panel.error.textContent = "Availability could not be read: " + err.message;
  }).then(function () { loading = false; });
}

function order(a, b) {
  var ua = a.uptime_percent === null ? 101 : a.uptime_percent;
  var ub = b.uptime_percent === null ? 101 : b.uptime_percent;
  if (ua !== ub) { return ua - ub; }
  if (a.server !== b.server) { return a.server < b.server ? -1 : 1; }
  return a.component < b.component ? -1 : 1;
}

function segmentText(since, seg, reasons) {
  var from = new Date(since.getTime() + seg[0] * 1000);
  var to = new Date(since.getTime() + seg[1] * 1000);
  var reason = reasons[seg[3]];
  return STATE_LABEL[seg[2]] + " from " + utc(from) + " to " + utc(to) + " UTC (" +
    duration(seg[1] - seg[0]) + ")" + (reason ? ": " + reason.text : "");
}

function row(component, since, span, reasons) {
  var item = el("div", "av-row");
  item.setAttribute("role", "listitem");
  item.dataset.server = component.server;
  item.dataset.component = component.component;
  var name = component.server + " · " + (COMPONENT_LABEL[component.component] || component.component);
  var label = el("span", "av-name", name);
  if (!component.present) { label.appendChild(el("span", "av-gone", " (removed)")); }
  var strip = el("div", "av-strip");
  component.segments.forEach(function (seg) {
    var part = el("span", "av-seg");
    part.dataset.state = seg[2];
    part.style.left = (100 * seg[0] / span) + "%";
    part.style.width = (100 * (seg[1] - seg[0]) / span) + "%";
    var text = segmentText(since, seg, reasons);
    part.title = text;
    if (seg[2] !== "current") {  // the news: reachable from the keyboard, read out on focus
      part.tabIndex = 0;
      part.setAttribute("role", "img");
      part.setAttribute("aria-label", name + ": " + text);
    }
    strip.appendChild(part);
  });
  var uptime = el("span", "av-uptime", component.uptime_percent === null ? "–" :
    component.uptime_percent.toFixed(component.uptime_percent === 100 ? 0 : 2) + " %");
  item.append(label, strip, uptime);
  return item;
}

export function render() {
  if (!panel || !answer) { return; }
  var started = performance.now();
  var since = new Date(answer.since);
  var until = new Date(answer.until);
  var span = Math.max(1, (until - since) / 1000);
  var reasons = {};
  answer.reasons.forEach(function (r) { reasons[r.id] = r; });
  var components = answer.components.slice().sort(order);
  var shown = showAll ? components : components.slice(0, SHOWN_FIRST);
  var fragment = document.createDocumentFragment();
  shown.forEach(function (c) { fragment.appendChild(row(c, since, span, reasons)); });
  panel.rows.replaceChildren(fragment);
  panel.caption.textContent = components.length ?
    utc(since) + " to " + utc(until) + " UTC · " + components.length + " components, worst " +
    "uptime first" : "No component reported in this period.";
  panel.more.hidden = components.length <= SHOWN_FIRST;
  panel.more.textContent = showAll ? "Show the worst " + SHOWN_FIRST :
    "Show all " + components.length;
  performance.measure("availability-render", { start: started, end: performance.now() });
}

function tick() {
  var container = $("availability");
  if (!container) { return; }
  if (!state.principal) {
    if (panel) { panel.rows.replaceChildren(); answer = null; loadedAt = 0; }
    return;
  }
  if (!panel) { panel = build(container); }
  if (Date.now() - loadedAt > REFRESH_MS) { load(); }
}

setInterval(tick, 1000);
tick();
