/* How times, durations and component names are written on the page. */

export const COMPONENT_LABEL = { web: "Web", service: "Service" };

function pad(n) { return (n < 10 ? "0" : "") + n; }

export function utc(value) {
  if (!value) { return "–"; }
  var d = value instanceof Date ? value : new Date(value);
  return d.getUTCFullYear() + "-" + pad(d.getUTCMonth() + 1) + "-" + pad(d.getUTCDate()) +
    " " + pad(d.getUTCHours()) + ":" + pad(d.getUTCMinutes()) + ":" + pad(d.getUTCSeconds());
}

export function duration(seconds) {
  seconds = Math.max(0, Math.floor(seconds));
  if (seconds < 120) { return seconds + " s"; }
  if (seconds < 7200) { return Math.floor(seconds / 60) + " min"; }
  if (seconds < 172800) {
    return Math.floor(seconds / 3600) + " h " + Math.floor((seconds % 3600) / 60) + " min";
  }
  return Math.floor(seconds / 86400) + " days";
}

// The time field is plain text in the one format the page writes: "YYYY-MM-DD HH:MM:SS", UTC,
// 24-hour. A "T" for the space, missing seconds and a trailing "Z" or "UTC" are accepted too.
export function localInputValue(d) { return utc(d); }

const TYPED_TIME = /^(\d{4})-(\d{2})-(\d{2})[ T](\d{2}):(\d{2})(?::(\d{2}))?(?:\s*(?:Z|UTC))?$/i;

export function parseInputValue(value) {
  var m = TYPED_TIME.exec((value || "").trim());
  if (!m) { return null; }
  var parts = m.slice(1, 7).map(function (v) { return parseInt(v || "0", 10); });
  var d = new Date(Date.UTC(parts[0], parts[1] - 1, parts[2], parts[3], parts[4], parts[5]));
  // Date.UTC rolls 2026-02-31 over to March: refuse what the calendar does not have.
  if (d.getUTCMonth() !== parts[1] - 1 || d.getUTCDate() !== parts[2] || parts[3] > 23 ||
      parts[4] > 59 || parts[5] > 59) {
    return null;
  }
  return d;
}

// "1 server", "2 servers".
export function count(n, one, many) { return n + " " + (n === 1 ? one : (many || one + "s")); }
