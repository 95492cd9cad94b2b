/* The failovers and outages pane, read from the audit endpoints over the log up to the view's
 * time. */

import { api, hasToken } from "./api-client.js";
import { $, setText, state } from "./page.js";
import { COMPONENT_LABEL, duration, utc } from "./format.js";
import { range } from "./log-range.js";

const MAX_AUDIT_DAYS = 400;

var auditTimer = null;
var auditAvailable = true;

export function scheduleAudit() {
  if (auditTimer || !state.live) { return; }
  auditTimer = setTimeout(function () { auditTimer = null; loadAudit(); }, 2000);
}

// A server that did not offer the audit may offer it after the next sign-in.
export function resetAudit() { auditAvailable = true; }

function auditPeriod() {
  var until = state.live ? new Date(Date.now() + state.clockOffset) : state.at;
  var since = range.first;
  var floor = new Date(until.getTime() - MAX_AUDIT_DAYS * 86400000);
  if (!since || since < floor) { since = floor; }
  return { since: since, until: until };
}

export function loadAudit() {
  if (!auditAvailable || !hasToken()) { return Promise.resolve(); }
  var period = auditPeriod();
  if (!(period.since < period.until)) { return Promise.resolve(); }
  var query = "?since=" + encodeURIComponent(period.since.toISOString()) +
    (state.live ? "" : "&until=" + encodeURIComponent(period.until.toISOString()));
  return Promise.all([
    api("/api/v1/audit/failovers" + query),
    api("/api/v1/audit/outages" + query)
  ]).then(function (answers) {
    renderAudit(period, answers[0], answers[1]);
  }).catch(function (err) {
    if (err.status === 429) {
      // Busy (expensive reads are limited per token, e.g. while a past view loads): again soon.
      clearTimeout(auditTimer);
      auditTimer = setTimeout(function () { auditTimer = null; loadAudit(); }, 1000);
    } else if (err.status === 404) {
      auditAvailable = false;
      $("audit-period").textContent = "This server does not offer the audit endpoints.";
      $("audit-body").replaceChildren();
    } else {
      $("audit-period").textContent = "Could not read the audit: " + err.message;
    }
  });
}

function table(caption, headers, rows) {
  var t = document.createElement("table");
  t.className = "audit-table";
  var c = document.createElement("caption");
  c.textContent = caption;
  t.appendChild(c);
  var head = t.createTHead().insertRow();
  headers.forEach(function (h) {
    var th = document.createElement("th");
    th.scope = "col";
    th.textContent = h;
    head.appendChild(th);
  });
  var body = t.createTBody();
  rows.forEach(function (cells) {
    var tr = body.insertRow();
    cells.forEach(function (value, i) {
      var cell = document.createElement(i === 0 ? "th" : "td");
      if (i === 0) { cell.scope = "row"; }
      if (value && value.since) {
        cell.className = "running";  // an ongoing duration: the tick keeps it growing
        cell.dataset.since = value.since;
        cell.textContent = value.text;
      } else {
        cell.textContent = value;
      }
      tr.appendChild(cell);
    });
  });
  var wrap = document.createElement("div");
  wrap.className = "audit-scroll";
  wrap.appendChild(t);
  return wrap;
}

function renderAudit(period, failovers, outages) {
  $("audit-period").textContent = "From " + utc(period.since) + " to " +
    (state.live ? "now" : utc(period.until)) + " UTC (from the log).";
  var parts = [];
  var outageRows = (outages.outages || []).map(function (o) {
    // An outage ends when the component recovers or is removed by hand (`end_cause`).
    var end = o.ongoing ? "ongoing" :
      utc(o.end) + (o.end_cause === "removed" ? " (removed)" : "");
    return [o.server + " " + COMPONENT_LABEL[o.component], o.cause || "–", utc(o.start),
            end, ongoing(o.ongoing, o.start, o.duration_seconds)];
  });
  parts.push(outageRows.length ?
    table("Outages (" + outageRows.length + ")",
          ["Component", "Cause", "Start (UTC)", "End (UTC)", "Duration"], outageRows) :
    paragraph("No outage in this period."));
  var failoverRows = (failovers.failovers || []).map(function (f) {
    return [utc(f.at), f.server + " " + COMPONENT_LABEL[f.component],
            (f.taken_over_by || []).join(", ") || "–",
            f.recovered_at ? utc(f.recovered_at) :
              f.removed_at ? "removed " + utc(f.removed_at) : "not yet",
            ongoing(!f.recovered_at && !f.removed_at, f.at, f.outage_seconds)];
  });
  parts.push(failoverRows.length ?
    table("Failovers (" + failoverRows.length + ")",
          ["When (UTC)", "Service that failed", "Work taken over by", "Recovered (UTC)",
           "Outage"], failoverRows) :
    paragraph("No failover in this period."));
  var clusterRows = (failovers.cluster_outages || []).map(function (o) {
    return [utc(o.start), o.ongoing ? "ongoing" : utc(o.end),
            ongoing(o.ongoing, o.start, o.duration_seconds),
            (o.components || []).map(function (c) { return c.server; }).join(", ")];
  });
  if (clusterRows.length) {
    parts.push(table("Cluster outages: no Service component was current (" +
                     clusterRows.length + ")",
                     ["Start (UTC)", "End (UTC)", "Duration", "Services down"], clusterRows));
  }
  $("audit-body").replaceChildren.apply($("audit-body"), parts);
}

function ongoing(running, start, seconds) {
  if (!running || !state.live) { return duration(seconds); }
  return { text: duration(seconds), since: start };
}

export function updateRunning(node) {
  var seconds = (Date.now() + state.clockOffset - new Date(node.dataset.since)) / 1000;
  setText(node, duration(seconds));
}

function paragraph(text) {
  var p = document.createElement("p");
  p.className = "help";
  p.textContent = text;
  return p;
}
