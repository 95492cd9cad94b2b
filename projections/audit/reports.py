"""Availability reports over a period, computed from the log only, and their renderings.

A report over [since, until) folds every event recorded before `until` (at or below the log
position it is computed at) and nothing else, so recomputing a past period, at any later time,
gives identical numbers. Definitions (per component, over its observed span in the period,
i.e. from max(since, its first heartbeat) to until, less the time it was removed by hand: a
removed component is out of the cluster, neither up nor down):
- `outages`: outage episodes overlapping the period (timeouts; one ends at the component's
  removal, if it is removed while stale);
- `outage_seconds`: their total overlap with the period; `uptime_percent` = 100 x (observed -
  outage) / observed;
- `longest_outage_seconds`: the longest such overlap;
- `mttr_seconds`: mean full duration (start to recovery) of the episodes that ended by a
  recovery inside the period (one ended by a removal was never repaired); null when none did;
- `removals`: removals by hand in the period; `removed_seconds`: the time it spent removed;
- `failovers`: timeouts of this (Service) component while another Service component was current;
- `outages_during_maintenance`: those of its outages that overlap a silence covering it (a
  maintenance window): counted like every other outage, and marked.
Cluster-wide: failovers starting in the period, cluster outages overlapping it (with seconds),
and per server the periods with the software version or the encryption key out of sync.
A component that was absent for the whole period (removed before it, not back) is left out.
"""

from __future__ import annotations

import csv
import html
import io
from collections.abc import Callable
from datetime import datetime
from typing import Any

from domain.durations import format_duration
from eventstore.store import EventStore
from projections.audit.episode_pass import build
from projections.audit.episodes import Result


def compute(
    store: EventStore,
    since: datetime,
    until: datetime,
    *,
    up_to: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    result = build(store, until, since=since, up_to=up_to, track_sync=True, progress=progress)
    return summarize(result, since, until)


def _r(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def summarize(result: Result, since: datetime, until: datetime) -> dict[str, Any]:
    episodes = result.episodes_in(since, until)
    absences = result.absences_in(since, until)
    failovers = result.failovers_in(since, until)
    outages = result.cluster_outages_in(since, until)
    by_key: dict[tuple[str, str], list] = {}
    for e in episodes:
        by_key.setdefault((e.server, e.component), []).append(e)
    away: dict[tuple[str, str], list] = {}
    for a in absences:
        away.setdefault((a.server, a.component), []).append(a)
    failover_counts: dict[tuple[str, str], int] = {}
    for f in failovers:
        key = (f.episode.server, f.episode.component)
        failover_counts[key] = failover_counts.get(key, 0) + 1

    components = []
    for key in sorted(result.first_seen):
        first = result.first_seen[key]
        mine, gone = by_key.get(key, []), away.get(key, [])
        if first >= until or _absent_throughout(gone, since, until):
            continue
        removed = sum(a.overlap(since, until) for a in gone)
        observed = (until - max(since, first)).total_seconds() - removed
        overlaps = [e.overlap(since, until) for e in mine]
        down = sum(overlaps)
        ended = [
            e.seconds(until)
            for e in mine
            if e.end is not None and since < e.end <= until and e.end_cause != "removed"
        ]
        silenced = [e for e in mine if _in_maintenance(e, result.state.silences.values(), until)]
        components.append(
            {
                "server": key[0],
                "component": key[1],
                "observed_seconds": _r(observed),
                "uptime_percent": _r(100 * (observed - down) / observed) if observed else None,
                "outages": len(mine),
                "outage_seconds": _r(down),
                "mttr_seconds": _r(sum(ended) / len(ended)) if ended else None,
                "longest_outage_seconds": _r(max(overlaps, default=0.0)),
                "failovers": failover_counts.get(key, 0),
                "removals": sum(1 for a in gone if since <= a.start < until),
                "removed_seconds": _r(removed),
                "outages_during_maintenance": len(silenced),
            }
        )

    sync = [p for p in result.sync_periods if p.overlaps(since, until)]
    servers: dict[str, dict[str, Any]] = {}
    for p in sync:
        row = servers.setdefault(
            p.server,
            {
                "server": p.server,
                "version_out_of_sync_periods": 0,
                "version_out_of_sync_seconds": 0.0,
                "key_out_of_sync_periods": 0,
                "key_out_of_sync_seconds": 0.0,
            },
        )
        row[f"{p.kind}_out_of_sync_periods"] += 1
        row[f"{p.kind}_out_of_sync_seconds"] = _r(
            row[f"{p.kind}_out_of_sync_seconds"] + p.overlap(since, until)
        )
    return {
        "period": {
            "since": since,
            "until": until,
            "seconds": _r((until - since).total_seconds()),
        },
        "last_position": result.position,
        "components": components,
        "cluster": {
            "failovers": len(failovers),
            "cluster_outages": len(outages),
            "cluster_outage_seconds": _r(sum(o.overlap(since, until) for o in outages)),
            "longest_cluster_outage_seconds": _r(
                max((o.overlap(since, until) for o in outages), default=0.0)
            ),
        },
        "servers": [servers[name] for name in sorted(servers)],
        "failovers": [f.to_dict(until) for f in failovers],
        "cluster_outages": [o.to_dict(until) for o in outages],
        # Clipped to the period, so the numbers do not depend on where the pass began.
        "out_of_sync": [
            {
                "server": p.server,
                "kind": p.kind,
                "start": max(p.start, since),
                "end": p.end if p.end is not None and p.end < until else None,
                "began_before": p.start < since,
                "seconds": _r(p.overlap(since, until)),
                "opened_position": p.opened_position if p.start >= since else None,
                "closed_position": p.closed_position
                if p.end is not None and p.end < until
                else None,
            }
            for p in sync
        ],
        "episodes": [e.to_dict(until) for e in episodes],
        "absences": [a.to_dict(until) for a in absences],
    }


def _in_maintenance(episode, silences, until: datetime) -> bool:
    """Whether an outage overlaps a silence that covers its component."""
    end = episode.end or until
    return any(
        s.matches(episode.server, episode.component)
        and s.starts_at < end
        and episode.start < s.ends_at
        for s in silences
    )


def _absent_throughout(absences, since, until) -> bool:
    return any(a.start <= since and (a.end is None or a.end >= until) for a in absences)


# --- renderings -------------------------------------------------------------------------------

CSV_COLUMNS = (
    "scope",
    "server",
    "component",
    "observed_seconds",
    "uptime_percent",
    "outages",
    "outage_seconds",
    "mttr_seconds",
    "longest_outage_seconds",
    "failovers",
    "removals",
    "removed_seconds",
    "outages_during_maintenance",
    "cluster_outages",
    "cluster_outage_seconds",
    "version_out_of_sync_seconds",
    "key_out_of_sync_seconds",
)


def to_csv(report: dict[str, Any]) -> str:
    """One table: a row per component, per server with sync findings, and one for the cluster."""
    data = report["data"]
    out = io.StringIO()
    writer = csv.DictWriter(out, CSV_COLUMNS, extrasaction="ignore", lineterminator="\r\n")
    writer.writeheader()
    for row in data["components"]:
        writer.writerow({"scope": "component", **_blank_none(row)})
    for row in data["servers"]:
        writer.writerow({"scope": "server", **row})
    cluster = data["cluster"]
    writer.writerow(
        {
            "scope": "cluster",
            "failovers": cluster["failovers"],
            "cluster_outages": cluster["cluster_outages"],
            "cluster_outage_seconds": cluster["cluster_outage_seconds"],
        }
    )
    return out.getvalue()


def _blank_none(row: dict[str, Any]) -> dict[str, Any]:
    return {k: ("" if v is None else v) for k, v in row.items()}


def _percent(value: float | None) -> str:
    return "—" if value is None else f"{value:.3f} %"


def _maintenance(component: dict[str, Any]) -> str:
    n = component.get("outages_during_maintenance", 0)  # reports stored before it have none
    return f" ({n} during maintenance)" if n else ""


def _t(value) -> str:
    return value.isoformat() if isinstance(value, datetime) else str(value or "")


def to_html(report: dict[str, Any]) -> str:
    """A standalone page: summary tables and an inline SVG timeline (no external assets)."""
    data = report["data"]
    e = html.escape
    period = data["period"]
    title = f"clustermon {report['kind']} report: {_t(period['since'])} to {_t(period['until'])}"
    rows = "".join(
        "<tr>"
        f"<td>{e(c['server'])}</td><td>{e(c['component'])}</td>"
        f"<td>{_percent(c['uptime_percent'])}</td>"
        f"<td>{c['outages']}{_maintenance(c)}</td><td>{format_duration(c['outage_seconds'])}</td>"
        f"<td>{format_duration(c['mttr_seconds'])}</td><td>{format_duration(c['longest_outage_seconds'])}</td>"
        f"<td>{c['failovers']}</td></tr>"
        for c in data["components"]
    )
    sync_rows = "".join(
        f"<tr><td>{e(p['server'])}</td><td>{e(p['kind'])}</td><td>{e(_t(p['start']))}</td>"
        f"<td>{e(_t(p['end'])) or 'ongoing'}</td><td>{format_duration(p['seconds'])}</td></tr>"
        for p in data["out_of_sync"]
    )
    cluster = data["cluster"]
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{e(title)}</title>
<style>
body{{font:14px system-ui,sans-serif;margin:2em;color:#222}}
table{{border-collapse:collapse;margin:1em 0}}
td,th{{border:1px solid #ccc;padding:.3em .6em;text-align:left}}
th{{background:#f3f3f3}}
</style></head><body>
<h1>{e(title)}</h1>
<p>Computed at {e(_t(report.get("computed_at")))} from the log up to position
{report.get("position")} (last event in the period: {data["last_position"]}).
Failovers: {cluster["failovers"]}. Cluster outages: {cluster["cluster_outages"]}
({format_duration(cluster["cluster_outage_seconds"])}).</p>
<h2>Timeline</h2>
{timeline_svg(data)}
<h2>Components</h2>
<table><tr><th>server</th><th>component</th><th>uptime</th><th>outages</th><th>downtime</th>
<th>MTTR</th><th>longest</th><th>failovers</th></tr>{rows}</table>
<h2>Out of sync</h2>
<table><tr><th>server</th><th>what</th><th>from</th><th>to</th><th>in period</th></tr>
{sync_rows or '<tr><td colspan="5">none</td></tr>'}</table>
</body></html>
"""


def timeline_svg(data: dict[str, Any]) -> str:
    """One lane per component (red: outage, orange: removed by hand) and one for the cluster
    (dark red: cluster outage, blue ticks: failovers)."""
    e = html.escape
    since = _dt(data["period"]["since"])
    until = _dt(data["period"]["until"])
    span = max((until - since).total_seconds(), 1.0)
    label_w, chart_w, lane_h = 190, 720, 18
    lanes = [(c["server"], c["component"]) for c in data["components"]]
    height = (len(lanes) + 1) * lane_h + 30

    def x(value) -> float:
        at = _dt(value) if value is not None else until
        offset = min(max((at - since).total_seconds(), 0.0), span)
        return round(label_w + chart_w * offset / span, 2)

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{label_w + chart_w + 10}"'
        f' height="{height}" role="img" aria-label="outage timeline">'
    ]
    y = 0
    for i in range(5):
        tick = label_w + chart_w * i / 4
        at = since + (until - since) * i / 4
        parts.append(
            f'<line x1="{tick:.2f}" y1="0" x2="{tick:.2f}" y2="{height - 20}" stroke="#ddd"/>'
            f'<text x="{tick:.2f}" y="{height - 5}" font-size="10" text-anchor="middle">'
            f"{e(at.strftime('%m-%d %H:%M'))}</text>"
        )
    lane_of = {key: n for n, key in enumerate(lanes)}
    for n, (server, component) in enumerate(lanes):
        y = n * lane_h
        parts.append(
            f'<text x="0" y="{y + 13}" font-size="11">{e(server)}/{e(component)}</text>'
            f'<rect x="{label_w}" y="{y + 3}" width="{chart_w}" height="{lane_h - 6}"'
            ' fill="#cfe8cf"/>'
        )
    # Reports stored before absences had them as episodes of cause "removed".
    for ep in [*data["episodes"], *data.get("absences", ())]:
        lane = lane_of.get((ep["server"], ep["component"]))
        if lane is None:
            continue
        x0, x1 = x(ep["start"]), x(ep["end"])
        color = "#e67e22" if ep["cause"] == "removed" else "#d9534f"
        parts.append(
            f'<rect x="{x0}" y="{lane * lane_h + 3}" width="{max(x1 - x0, 1):.2f}"'
            f' height="{lane_h - 6}" fill="{color}"><title>{e(ep["cause"])}'
            f" {e(_t(ep['start']))} to {e(_t(ep['end'])) or 'ongoing'}</title></rect>"
        )
    y = len(lanes) * lane_h
    parts.append(
        f'<text x="0" y="{y + 13}" font-size="11" font-weight="bold">cluster (service)</text>'
        f'<rect x="{label_w}" y="{y + 3}" width="{chart_w}" height="{lane_h - 6}" fill="#eee"/>'
    )
    for o in data["cluster_outages"]:
        x0, x1 = x(o["start"]), x(o["end"])
        parts.append(
            f'<rect x="{x0}" y="{y + 3}" width="{max(x1 - x0, 1):.2f}" height="{lane_h - 6}"'
            f' fill="#8b0000"><title>cluster outage {e(_t(o["start"]))}</title></rect>'
        )
    for f in data["failovers"]:
        fx = x(f["at"])
        parts.append(
            f'<line x1="{fx}" y1="{y + 1}" x2="{fx}" y2="{y + lane_h - 1}" stroke="#1f6fb2"'
            f' stroke-width="2"><title>failover from {e(f["server"])}</title></line>'
        )
    parts.append("</svg>")
    return "".join(parts)


def _dt(value) -> datetime:
    return value if isinstance(value, datetime) else datetime.fromisoformat(value)
