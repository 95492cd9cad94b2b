"""Pure rules over the folded state: staleness, health and the two "in sync" columns.

Every function takes `now` (or nothing time-related) as an argument; nothing here reads a clock.

Definitions (also in the README):
- A component is `current` while `now <= deadline`, where deadline = last heartbeat (our clock)
  + its timeout; Web uses the web window (default 24 h), Service the stale timeout (default
  5 min). After a monitor gap (`MonitorResumed`) the deadline counts from the resumption if that
  is later: components that could not reach us get one full timeout.
- Software version in sync: per product, the reference version is the one most current
  components report (all components when none is current; a tie goes to the highest version,
  compared numerically part by part). A server is in sync when every component of it that
  reports a version reports its product's reference; `None` when none reports one.
- Encryption key in sync: the reference fingerprint is the one most current components report
  (all components when none is current); with a tie there is no reference, and every server
  with a fingerprint is out of sync (the cluster disagrees and nothing says which key is
  right). `None` when no component reports one.
"""

from __future__ import annotations

import heapq
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from domain.durations import format_duration
from domain.state import ClusterState, ComponentState, Configuration, ServerState

SEVERITY = {"ok": 0, "warning": 1, "error": 2}


def timeout_seconds(component: str, config: Configuration) -> int:
    if component == "web":
        return config.web_stale_timeout_seconds
    return config.stale_timeout_seconds


def deadline(
    component: ComponentState, config: Configuration, monitor_resumed_at: datetime | None = None
) -> datetime | None:
    """The logical expiry of the component's last heartbeat under `config`."""
    if component.last_heartbeat_at is None:
        return None
    base = component.last_heartbeat_at
    if monitor_resumed_at is not None and monitor_resumed_at > base:
        base = monitor_resumed_at
    return base + timedelta(seconds=timeout_seconds(component.name, config))


@dataclass(frozen=True, slots=True)
class Heartbeat:
    state: str  # "current" or "stale"
    last_at: datetime | None
    age_seconds: float | None
    stale_since: datetime | None  # the logical expiry, when stale
    deadline: datetime | None


def heartbeat(
    component: ComponentState,
    config: Configuration,
    now: datetime,
    monitor_resumed_at: datetime | None = None,
) -> Heartbeat:
    expiry = deadline(component, config, monitor_resumed_at)
    last = component.last_heartbeat_at
    age = (now - last).total_seconds() if last is not None else None
    if component.timed_out_at is not None and (expiry is None or component.timed_out_at <= now):
        # A recorded timeout stands until the next heartbeat, even if the timeout was lengthened.
        return Heartbeat("stale", last, age, component.timed_out_at, expiry)
    if expiry is None or now > expiry:
        return Heartbeat("stale", last, age, expiry, expiry)
    return Heartbeat("current", last, age, None, expiry)


def stale_reason(component: ComponentState, config: Configuration, beat: Heartbeat) -> str:
    if beat.last_at is None:
        return "no heartbeat received"
    if component.name == "web":
        return (
            f"no web request since {beat.last_at.astimezone(UTC):%A %H:%M} UTC"
            f" ({format_duration(beat.age_seconds or 0)}; the web window is"
            f" {format_duration(config.web_stale_timeout_seconds)}) — a web component only reports"
            " when it serves requests, so a quiet period or a sticky load-balancer session"
            " can make a healthy node look stale"
        )
    return (
        f"no heartbeat for {format_duration(beat.age_seconds or 0)}"
        f" (stale timeout {format_duration(config.stale_timeout_seconds)})"
    )


def component_health(
    component: ComponentState, config: Configuration, beat: Heartbeat
) -> tuple[str, list[str]]:
    """Errors and failed verifications show whatever the heartbeat says; a stale Service is an
    error (work stops), a stale Web a warning (it may just be quiet)."""
    findings: list[tuple[str, str]] = []
    if component.status in ("error", "warning"):
        detail = f": {component.message}" if component.message else ""
        findings.append((component.status, f"component reports {component.status}{detail}"))
    if component.verification == "failed":
        findings.append(("error", "verification failed"))
    elif component.verification == "unverified":
        findings.append(("warning", "not verified"))
    if beat.state == "stale":
        level = "warning" if component.name == "web" else "error"
        findings.append((level, stale_reason(component, config, beat)))
    return _worst(findings), [reason for _, reason in findings]


def _worst(findings) -> str:
    worst = "ok"
    for level, _ in findings:
        if SEVERITY[level] > SEVERITY[worst]:
            worst = level
    return worst


def _version_key(version: str):
    return [(0, int(p)) if p.isdigit() else (1, p) for p in re.split(r"(\d+)", version) if p]


@dataclass(frozen=True, slots=True)
class References:
    versions: dict[str, str]  # product -> reference version
    fingerprint: str | None
    fingerprint_tie: bool


def references(state: ClusterState, current: set[tuple[str, str]]) -> References:
    """Reference version per product and reference key fingerprint, from current components
    (from all components when none is current)."""
    components = [c for c in state.components() if (c.server, c.name) in current]
    if not components:
        components = list(state.components())
    by_product: dict[str, dict[str, int]] = {}
    keys: dict[str, int] = {}
    for c in components:
        count_for_references(c, by_product, keys)
    return choose_references(by_product, keys)


def count_for_references(c: ComponentState, by_product: dict, keys: dict, step: int = 1) -> None:
    """Add `c` to (step -1: take it from) the counts `choose_references` takes; a count that
    drops to zero is deleted. Shared by `references` and the incremental renderer."""
    if c.product and c.product_version:
        versions = by_product.get(c.product)
        if versions is None:
            versions = by_product[c.product] = {}
        n = versions.get(c.product_version, 0) + step
        if n:
            versions[c.product_version] = n
        else:
            del versions[c.product_version]
            if not versions:
                del by_product[c.product]
    fingerprint = c.encryption_key_fingerprint
    if fingerprint:
        n = keys.get(fingerprint, 0) + step
        if n:
            keys[fingerprint] = n
        else:
            del keys[fingerprint]


def choose_references(
    by_product: Mapping[str, Mapping[str, int]], keys: Mapping[str, int]
) -> References:
    """The references from counts of the components they are drawn from (positive counts:
    product -> version -> count, fingerprint -> count). Split from `references` so that a
    caller keeping the counts up to date (projections/readmodel/rendered.py) chooses the same
    way."""
    versions = {
        # The string itself breaks ties between spellings of one version ("1.0", "1.00"), so
        # the reference never depends on the order the components were read in.
        product: max(counts, key=lambda v: (counts[v], _version_key(v), v))
        for product, counts in by_product.items()
        if counts
    }
    ranked = heapq.nlargest(2, keys.items(), key=lambda item: item[1])
    tie = len(ranked) == 2 and ranked[0][1] == ranked[1][1]
    fingerprint = ranked[0][0] if ranked and not tie else None
    return References(versions, fingerprint, tie)


def version_in_sync(server: ServerState, refs: References) -> bool | None:
    # Plain loops: this runs for every server on every read.
    result = None
    for c in server.components.values():
        if c.product and c.product_version:
            if refs.versions.get(c.product) != c.product_version:
                return False
            result = True
    return result


def key_in_sync(server: ServerState, refs: References) -> bool | None:
    result = None
    for c in server.components.values():
        if c.encryption_key_fingerprint:
            if c.encryption_key_fingerprint != refs.fingerprint:
                return False
            result = True
    return result


def server_health(
    component_findings: list[tuple[str, str, list[str]]],
    version_ok: bool | None,
    key_ok: bool | None,
    refs: References,
) -> tuple[str, list[str]]:
    """Worst of its components, and of the two sync checks."""
    findings = [
        (health, f"{name}: {reason}")
        for name, health, reasons in component_findings
        for reason in reasons
    ]
    if key_ok is False:
        why = (
            "servers report different encryption keys and none is in the majority"
            if refs.fingerprint_tie
            else "encryption key differs from the rest of the cluster"
        )
        findings.append(("error", f"{why}: decryption fails and users are asked to log in again"))
    if version_ok is False:
        findings.append(("warning", "software version differs from the rest of the cluster"))
    return _worst(findings), [reason for _, reason in findings]
