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

// The time field is a datetime-local input that holds UTC, not the browser's local time.
export function localInputValue(d) { return d.toISOString().slice(0, 19); }

export function parseInputValue(value) {
  if (!value) { return null; }
  var withSeconds = value.length === 16 ? value + ":00" : value;
  var d = new Date(withSeconds + "Z");
  return isNaN(d.getTime()) ? null : d;
}
