/* The browser tab carries the worst state of the view shown: its title ("2 stale · 1 error ·
 * clustermon") and its favicon, a coloured dot drawn as a data: URL (the page's CSP allows
 * data: images), so a tab in the background still says when something is wrong. */

import { count } from "./format.js";

const BASE_TITLE = "clustermon";
const COLOURS = { error: "#b42318", warning: "#e0a100", ok: "#1d7a3a", none: "#8a96a3" };

function summary(t) {
  var parts = [];
  if (t.stale) { parts.push(t.stale + " stale"); }
  if (t.error) { parts.push(count(t.error, "error")); }
  if (t.warning) { parts.push(count(t.warning, "warning")); }
  if (!parts.length) { parts.push(t.total ? "all OK" : "no server yet"); }
  return parts.join(" · ");
}

function worst(t) {
  if (t.error) { return "error"; }
  if (t.warning) { return "warning"; }
  return t.total ? "ok" : "none";
}

function favicon(kind) {
  var svg = '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 16 16">' +
    '<circle cx="8" cy="8" r="7" fill="' + COLOURS[kind] + '"/></svg>';
  return "data:image/svg+xml," + encodeURIComponent(svg);
}

// `t` is server-list.js's tally of the view, or null when no view is shown (signed out).
export function showTabStatus(t, past) {
  var title = t ? (past ? "Past view: " : "") + summary(t) + " · " + BASE_TITLE :
    "Cluster Management · " + BASE_TITLE;
  if (document.title !== title) { document.title = title; }
  var link = document.querySelector('link[rel="icon"]');
  var href = favicon(t ? worst(t) : "none");
  if (link && link.getAttribute("href") !== href) {
    link.setAttribute("href", href);
    link.dataset.state = t ? worst(t) : "none";
  }
}
