"""The cluster view as the API shows it: the folded state with the rules evaluated at `now`.

This is the hot path of every read (10,000 servers = 20,000 components per request), so the
common case — a current, ok, verified component — is evaluated inline; anything else goes
through the rules in rules.py, which define the semantics. tests/unit/test_view.py checks the
two against each other on random states.

The pieces (`Judge.beat`, `server_entry`) are shared with rendered.py, which keeps
the serialized view of each server and re-evaluates only what changed.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from fnmatch import translate
from itertools import islice
from typing import Any

from domain import rules
from domain.state import (
    ClusterState,
    CollectionFailure,
    ComponentState,
    Configuration,
    ServerState,
)

# (state, stale_since, deadline) of a component's heartbeat at some `now`.
Beat = tuple[str, datetime | None, datetime | None]


class Judge:
    """The heartbeat rule (rules.heartbeat) inlined for one configuration and monitor gap."""

    __slots__ = ("resumed", "service_window", "web_window")

    def __init__(self, config: Configuration, resumed: datetime | None):
        self.resumed = resumed
        self.service_window = timedelta(seconds=config.stale_timeout_seconds)
        self.web_window = timedelta(seconds=config.web_stale_timeout_seconds)

    def deadline(self, c: ComponentState) -> datetime | None:
        last = c.last_heartbeat_at
        if last is None:
            return None
        resumed = self.resumed
        base = resumed if resumed is not None and resumed > last else last
        return base + (self.web_window if c.name == "web" else self.service_window)

    def beat(self, c: ComponentState, now: datetime) -> Beat:
        expiry = self.deadline(c)
        timed_out = c.timed_out_at
        if timed_out is not None and (expiry is None or timed_out <= now):
            # A recorded timeout stands until the next heartbeat (see rules.heartbeat).
            return ("stale", timed_out, expiry)
        if expiry is None or now > expiry:
            return ("stale", expiry, expiry)
        return ("current", None, expiry)


def server_entry(
    server: ServerState,
    judged: list[tuple[ComponentState, Beat]],
    refs: rules.References,
    config: Configuration,
    now: datetime,
    collection: CollectionFailure | None = None,
) -> dict[str, Any]:
    """One server of the view; `judged` are its components sorted by name with their beats;
    `collection` the failure of its polls, if it is a target whose polls fail."""
    components, findings = [], []
    all_ok = True
    skew_limit = rules.skew_limit_seconds(config)
    # rules.version_in_sync / key_in_sync, in the same pass over the components.
    versions, key_reference = refs.versions, refs.key_reference
    version_ok = key_ok = None
    for component, (beat_state, stale_since, expiry) in judged:
        if component.product and component.product_version and version_ok is not False:
            version_ok = versions.get(component.product) == component.product_version
        if component.encryption_key_fingerprint and key_ok is not False:
            key_ok = component.encryption_key_fingerprint == key_reference(component.product)
        last = component.last_heartbeat_at
        age = (now - last).total_seconds() if last is not None else None
        sent = component.last_sent_at
        # Our clock minus the sender's: how far off the agent's clock is (rules.clock_skew_seconds).
        skew = (last - sent).total_seconds() if sent is not None and last is not None else None
        if (
            beat_state == "current"
            and component.status == "ok"
            and component.verification == "verified"
            and collection is None
            and (skew is None or -skew_limit <= skew <= skew_limit)
        ):
            reasons: list[str]
            health, reasons = "ok", []
        else:
            beat = rules.Heartbeat(beat_state, last, age, stale_since, expiry)
            health, reasons = rules.component_health(component, config, beat, collection)
            all_ok = all_ok and health == "ok"
        findings.append((component.name, health, reasons))
        components.append(
            {
                "name": component.name,
                "status": component.status,
                "verification": component.verification,
                "product": component.product,
                "product_version": component.product_version,
                "message": component.message,
                "health": health,
                "reasons": reasons,
                "heartbeat": {
                    "last_at": last,
                    "age_seconds": round(age, 3) if age is not None else None,
                    "state": beat_state,
                    "stale_since": stale_since,
                    "deadline": expiry,
                    "last_position": component.last_heartbeat_position,
                    "sender_clock_skew_seconds": round(skew, 3) if skew is not None else None,
                },
            }
        )
    if all_ok and version_ok is not False and key_ok is not False:
        health, reasons = "ok", []
    else:
        health, reasons = rules.server_health(findings, version_ok, key_ok, refs, server)
    return {
        "name": server.name,
        "os": server.os,
        "os_version": server.os_version,
        "ip": server.ip,
        "health": health,
        "reasons": reasons,
        "version_in_sync": version_ok,
        "encryption_key_in_sync": key_ok,
        "components": components,
    }


def collection_failure(state: ClusterState, server: str) -> CollectionFailure | None:
    """The failure of the polls of `server`, if it is a target whose polls fail."""
    target = state.targets.get(server)
    return target.failure if target is not None else None


def live_time(state: ClusterState, now: datetime) -> datetime:
    """The time the current view is evaluated at: the whole second of `now` (one rendering
    serves every request of that second), or, when the newest event folded was recorded later
    than that, its recorded_at rounded up to the whole millisecond (the renderer's fast path:
    rendered.py). The view at `as_of.time` is then the fold of the events recorded
    at or before it, as `?at=` computes it (up to commits in flight at that moment): an event
    recorded earlier in this second is never shown with a negative age, nor left out of the
    view of its own time."""
    whole_second = now.replace(microsecond=0)
    newest = state.recorded_at
    if newest is not None and newest > whole_second:
        return newest + timedelta(microseconds=-newest.microsecond % 1000)
    return whole_second


def header(state: ClusterState, now: datetime, server_count: int) -> dict[str, Any]:
    config = state.configuration
    return {
        "as_of": {"position": state.position, "time": now},
        "configuration": {**config.settings(), "version": config.version},
        "server_count": server_count,
    }


def cluster_view(state: ClusterState, now: datetime) -> dict[str, Any]:
    config = state.configuration
    judge = Judge(config, state.monitor_resumed_at)

    # Heartbeat state of every component first: the sync references count the current ones.
    judged_servers = []
    by_product: dict[str, dict[str, int]] = {}
    keys: dict[tuple[str | None, str], int] = {}
    every_key: dict[tuple[str | None, str], int] = {}
    any_current = False
    for name in sorted(state.servers):
        server = state.servers[name]
        judged = []
        for component_name in sorted(server.components):
            component = server.components[component_name]
            beat = judge.beat(component, now)
            judged.append((component, beat))
            if component.encryption_key_fingerprint:
                rules.count_key(component, every_key)
            if beat[0] == "current":
                any_current = True
                rules.count_for_references(component, by_product, keys)
        judged_servers.append((server, judged))
    if any_current:
        refs = rules.choose_references(by_product, keys, every_key)
    else:  # none is current: the references come from all components
        refs = rules.references(state, set())

    servers = [
        server_entry(s, judged, refs, config, now, collection_failure(state, s.name))
        for s, judged in judged_servers
    ]
    return {**header(state, now, len(servers)), "servers": servers}


# page_member(servers shown, next_after) -> the `page` member of a paged view.
PageMember = Callable[[int, str | None], dict[str, Any]]


@dataclass(frozen=True, slots=True)
class ServerSelection:
    """Which servers of the view to show, for large clusters: `server` is a case-insensitive
    substring of the name or, with a wildcard (`*`, `?`, `[...]`), a shell-style pattern
    (fnmatch) the whole name must match; `after` keeps only names sorting after it (keyset
    paging: a server added or removed between two pages shifts nothing, and none is shown
    twice); `limit` keeps at most that many."""

    server: str | None = None
    after: str | None = None
    limit: int | None = None

    def pick(self, names: Sequence[str]) -> tuple[list[str], str | None]:
        """The selected names among `names` (sorted), and the `after` of the next page: the
        last name shown when more would match, else None."""
        start = bisect_right(names, self.after) if self.after is not None else 0
        candidates: Iterator[str] = islice(names, start, None)
        if self.server is not None:
            if set("*?[") & set(self.server):
                match = re.compile(translate(self.server), re.IGNORECASE).match
            else:
                match = re.compile(re.escape(self.server), re.IGNORECASE).search
            candidates = (name for name in candidates if match(name))
        if self.limit is None:
            return list(candidates), None
        picked = list(islice(candidates, self.limit + 1))
        if len(picked) > self.limit:
            del picked[self.limit :]
            return picked, picked[-1]
        return picked, None


def page_of(view: dict[str, Any], selection: ServerSelection, page: PageMember) -> dict[str, Any]:
    """A view (`cluster_view`'s shape) with only the servers `selection` picks, and its `page`
    member. `server_count` stays the whole cluster's."""
    servers = view["servers"]
    names, next_after = selection.pick([s["name"] for s in servers])
    shown = set(names)
    return {
        **view,
        "servers": [s for s in servers if s["name"] in shown],
        "page": page(len(names), next_after),
    }
