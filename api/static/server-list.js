/* Which servers the table shows, in which order: trouble first (errors, warnings, then ok; by
 * name within each), narrowed by the filter box and cut into pages, so that the failing server
 * of a 1,000-server cluster is on the first screen instead of 10,000 px down. */

export const PAGE_SIZE = 50;
export const RANK = { error: 0, warning: 1, ok: 2 };

export const list = { filter: "", page: 0 };

export function byTrouble(a, b) {
  var ra = a.health in RANK ? RANK[a.health] : 3;
  var rb = b.health in RANK ? RANK[b.health] : 3;
  if (ra !== rb) { return ra - rb; }
  return a.name < b.name ? -1 : a.name > b.name ? 1 : 0;
}

// Everything a user may type to find a server: its name, address and OS, each component's
// product, version, status, verification, heartbeat state and health.
function words(server) {
  var parts = [server.name, server.ip, server.os, server.os_version, server.health];
  (server.components || []).forEach(function (c) {
    parts.push(c.name, c.product, c.product_version, c.status, c.verification, c.health,
               c.heartbeat && c.heartbeat.state);
  });
  if (server.version_in_sync === false) { parts.push("version out of sync"); }
  if (server.encryption_key_in_sync === false) { parts.push("key out of sync"); }
  return parts.filter(Boolean).join(" ").toLowerCase();
}

// Every word of the filter must appear somewhere in the server's words.
export function matches(server, filter) {
  var terms = filter.toLowerCase().split(/\s+/).filter(Boolean);
  if (!terms.length) { return true; }
  var text = words(server);
  return terms.every(function (t) { return text.indexOf(t) >= 0; });
}

// The servers of the current page, and what the pager needs to say.
export function pageOf(servers) {
  var shown = servers.filter(function (s) { return matches(s, list.filter); }).sort(byTrouble);
  var pages = Math.max(1, Math.ceil(shown.length / PAGE_SIZE));
  list.page = Math.min(Math.max(0, list.page), pages - 1);
  var start = list.page * PAGE_SIZE;
  return { rows: shown.slice(start, start + PAGE_SIZE), matching: shown.length, start: start,
           pages: pages };
}

// Servers per health and stale components: the counts line, the tab title and the favicon.
export function tally(servers) {
  var t = { error: 0, warning: 0, ok: 0, stale: 0, total: servers.length };
  servers.forEach(function (s) {
    if (s.health in t) { t[s.health] += 1; }
    (s.components || []).forEach(function (c) {
      if (c.heartbeat && c.heartbeat.state === "stale") { t.stale += 1; }
    });
  });
  return t;
}
