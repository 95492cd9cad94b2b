"""What-if replay: the episodes the real heartbeats would have produced under another timeout,
beside the ones that did happen, so an operator can tune the timeout before changing it.

One pass over the log feeds two builders: the actual one (recorded timeouts and recoveries)
and a simulated one with the overridden settings pinned (see projections/audit/episodes.py).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from eventstore.store import EventStore
from projections.audit.episodes import EpisodeBuilder, Result


def replay(
    store: EventStore,
    until: datetime,
    overrides: Mapping[str, int],
    *,
    progress: Callable[[int], None] | None = None,
) -> tuple[Result, Result]:
    """(actual, what-if) results over every event recorded before `until`."""
    actual, simulated = EpisodeBuilder(), EpisodeBuilder(overrides)
    count = 0
    for recorded in store.iter_all(until=until):
        actual.feed(recorded)
        simulated.feed(recorded)
        count += 1
        if progress is not None and count == 10_000:
            progress(count)
            count = 0
    if progress is not None and count:
        progress(count)
    return actual.finish(until), simulated.finish(until)


def totals(result: Result, since: datetime, until: datetime) -> dict[str, Any]:
    episodes = result.episodes_in(since, until)
    outages = result.cluster_outages_in(since, until)
    return {
        "episodes": len(episodes),
        "outage_seconds": round(sum(e.overlap(since, until) for e in episodes), 3),
        "failovers": len(result.failovers_in(since, until)),
        "cluster_outages": len(outages),
        "cluster_outage_seconds": round(sum(o.overlap(since, until) for o in outages), 3),
    }


def listing(result: Result, since: datetime, until: datetime) -> dict[str, Any]:
    horizon = result.horizon
    return {
        "episodes": [e.to_dict(horizon) for e in result.episodes_in(since, until)],
        "failovers": [f.to_dict(horizon) for f in result.failovers_in(since, until)],
        "cluster_outages": [o.to_dict(horizon) for o in result.cluster_outages_in(since, until)],
    }


def compare(actual: Result, simulated: Result, since: datetime, until: datetime) -> dict[str, Any]:
    config = actual.state.configuration
    keys = sorted(
        {(e.server, e.component) for r in (actual, simulated) for e in r.episodes_in(since, until)}
    )
    per_component = []
    for server, component in keys:
        row: dict[str, Any] = {"server": server, "component": component}
        for name, result in (("actual", actual), ("what_if", simulated)):
            mine = [
                e
                for e in result.episodes_in(since, until)
                if (e.server, e.component) == (server, component)
            ]
            row[name] = {
                "episodes": len(mine),
                "outage_seconds": round(sum(e.overlap(since, until) for e in mine), 3),
            }
        per_component.append(row)
    return {
        "period": {"since": since, "until": until},
        "position": actual.position,
        "settings": {
            "actual": {
                "stale_timeout_seconds": config.stale_timeout_seconds,
                "web_stale_timeout_seconds": config.web_stale_timeout_seconds,
            },
            "what_if": dict(simulated.overrides),
        },
        "summary": {
            "actual": totals(actual, since, until),
            "what_if": totals(simulated, since, until),
        },
        "components": per_component,
        "actual": listing(actual, since, until),
        "what_if": listing(simulated, since, until),
    }


def what_if(
    store: EventStore,
    since: datetime,
    until: datetime,
    overrides: Mapping[str, int],
    *,
    progress: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    actual, simulated = replay(store, until, overrides, progress=progress)
    return compare(actual, simulated, since, until)
