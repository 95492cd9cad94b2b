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
- Encryption key in sync: per product, as each product has its own key by design (a
  BuildMaster server beside ProGet ones is not out of sync). The reference fingerprint of a
  product is the one most current components of that product report (all its components when
  none of them is current); with a tie there is no reference, and every component of that
  product with a fingerprint is out of sync (they disagree and nothing says which key is
  right). Components that name no product are compared with the cluster-wide reference, drawn
  the same way from every component. A server is in sync when every component of it that
  reports a fingerprint reports its reference; `None` when none reports one.
- A polled server (a target) whose polls fail has a reason on each of its components saying
  since when and why, and their health is at least `warning`: the heartbeats stop, and the
  components go stale by the normal rules, but the reason says why before they do.
- Clock skew: a component whose last heartbeat's `sent_at` (its clock) differs from our
  `recorded_at` by more than max(heartbeat frequency, 60 s) is at least `warning` ("its clock
  is 10 days behind ours"). Transit takes far less than that, so the difference is the clock,
  which the products' own cluster page cannot show. A heartbeat an agent kept on disk while we
  were unreachable arrives with its old `sent_at` and reads as skew until its next fresh one.
"""

from __future__ import annotations

import heapq
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from domain.durations import format_duration
from domain.state import (
    ClusterState,
    CollectionFailure,
    ComponentState,
    Configuration,
    ServerState,
)

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


def collection_reason(failure: CollectionFailure) -> str:
    """Why the poller has no heartbeat for a target's components, e.g. "polling /health fails
    since 2026-11-27 10:03:02 UTC: connection refused (refused)"."""
    detail = f": {failure.detail}" if failure.detail else ""
    since = failure.at.astimezone(UTC)
    return f"polling /health fails since {since:%Y-%m-%d %H:%M:%S} UTC{detail} ({failure.kind})"


SKEW_FLOOR_SECONDS = 60  # below this, a clock difference is transit time and jitter


def clock_skew_seconds(component: ComponentState) -> float | None:
    """Our clock minus the sender's at its last heartbeat: positive when its clock is behind
    ours; None before any heartbeat."""
    sent, recorded = component.last_sent_at, component.last_heartbeat_at
    if sent is None or recorded is None:
        return None
    return (recorded - sent).total_seconds()


def skew_limit_seconds(config: Configuration) -> int:
    """How far a component's clock may be from ours before it is a finding."""
    return max(config.heartbeat_frequency_seconds, SKEW_FLOOR_SECONDS)


def clock_skew_reason(component: ComponentState, config: Configuration) -> str | None:
    """The reason ("its clock is 10 days behind ours") when the skew is beyond the limit."""
    skew = clock_skew_seconds(component)
    if skew is None or abs(skew) <= skew_limit_seconds(config):
        return None
    side = "behind" if skew > 0 else "ahead of"
    return f"its clock is {format_duration(abs(skew))} {side} ours"


def component_health(
    component: ComponentState,
    config: Configuration,
    beat: Heartbeat,
    collection: CollectionFailure | None = None,
) -> tuple[str, list[str]]:
    """Errors and failed verifications show whatever the heartbeat says; a stale Service is an
    error (work stops), a stale Web a warning (it may just be quiet). `collection`: the failure
    of the polls of the component's server, if it is a target whose polls fail (a warning: the
    component may be fine, but nothing vouches for it any more). A clock skew beyond the
    limit is a warning (see the module's docstring)."""
    findings: list[tuple[str, str]] = []
    if collection is not None:
        findings.append(("warning", collection_reason(collection)))
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
    skew = clock_skew_reason(component, config)
    if skew is not None:
        findings.append(("warning", skew))
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
    fingerprint: str | None  # cluster-wide: for components that name no product
    fingerprint_tie: bool
    # product -> its reference fingerprint (None: a tie, no reference)
    fingerprints: dict[str, str | None] = field(default_factory=dict)

    def key_reference(self, product: str | None) -> str | None:
        """The fingerprint a component of `product` (None: no product named) must report."""
        if product:
            return self.fingerprints.get(product)
        return self.fingerprint


def references(state: ClusterState, current: set[tuple[str, str]]) -> References:
    """Reference version and key fingerprint per product, and the cluster-wide reference key
    fingerprint, from current components (from all components when none is current; a
    product's key from all its components when none of them is current)."""
    components = [c for c in state.components() if (c.server, c.name) in current]
    everyone: dict[tuple[str | None, str], int] = {}
    for c in state.components():
        count_key(c, everyone)
    if not components:
        components = list(state.components())
    by_product: dict[str, dict[str, int]] = {}
    keys: dict[tuple[str | None, str], int] = {}
    for c in components:
        count_for_references(c, by_product, keys)
    return choose_references(by_product, keys, everyone)


def count_for_references(c: ComponentState, by_product: dict, keys: dict, step: int = 1) -> None:
    """Add `c` to (step -1: take it from) the counts `choose_references` takes; a count that
    drops to zero is deleted. Shared by `references` and the incremental renderer. `keys` counts
    (product or None, fingerprint) pairs: the reference of each product and the cluster-wide one
    are both drawn from them."""
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
    count_key(c, keys, step)


def count_key(c: ComponentState, keys: dict, step: int = 1) -> None:
    """The key part of `count_for_references`: `keys` counts (product or None, fingerprint)."""
    fingerprint = c.encryption_key_fingerprint
    if fingerprint:
        key = (c.product or None, fingerprint)
        n = keys.get(key, 0) + step
        if n:
            keys[key] = n
        else:
            del keys[key]


def choose_references(
    by_product: Mapping[str, Mapping[str, int]],
    keys: Mapping[tuple[str | None, str], int],
    every_key: Mapping[tuple[str | None, str], int] | None = None,
) -> References:
    """The references from counts of the components they are drawn from (positive counts:
    product -> version -> count, (product or None, fingerprint) -> count). Split from
    `references` so that a caller keeping the counts up to date (projections/readmodel/
    rendered.py) chooses the same way. `every_key`: the key counts of all components, when
    `keys` counts only the current ones: a product none of whose components is current draws
    its reference key from all of them (its servers did not change keys by going quiet)."""
    versions = {
        # The string itself breaks ties between spellings of one version ("1.0", "1.00"), so
        # the reference never depends on the order the components were read in.
        product: max(counts, key=lambda v: (counts[v], _version_key(v), v))
        for product, counts in by_product.items()
        if counts
    }
    everyone: dict[str, int] = {}
    per_product: dict[str, dict[str, int]] = {}
    for (product, fingerprint), n in keys.items():
        everyone[fingerprint] = everyone.get(fingerprint, 0) + n
        if product is not None:
            counts = per_product.get(product)
            if counts is None:
                counts = per_product[product] = {}
            counts[fingerprint] = counts.get(fingerprint, 0) + n
    if every_key is not None:
        quiet: dict[str, dict[str, int]] = {}
        for (product, fingerprint), n in every_key.items():
            if product is not None and product not in per_product:
                counts = quiet.get(product)
                if counts is None:
                    counts = quiet[product] = {}
                counts[fingerprint] = counts.get(fingerprint, 0) + n
        per_product.update(quiet)
    reference, tie = majority(everyone)
    fingerprints = {product: majority(counts)[0] for product, counts in per_product.items()}
    return References(versions, reference, tie, fingerprints)


def majority(counts: Mapping[str, int]) -> tuple[str | None, bool]:
    """The value counted most often, and whether another one is counted as often (then there
    is no such value: None)."""
    ranked = heapq.nlargest(2, counts.items(), key=lambda item: item[1])
    tie = len(ranked) == 2 and ranked[0][1] == ranked[1][1]
    return (ranked[0][0] if ranked and not tie else None), tie


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
            if c.encryption_key_fingerprint != refs.key_reference(c.product):
                return False
            result = True
    return result


def key_mismatch(server: ServerState, refs: References) -> str:
    """Why `server`'s key is out of sync (`key_in_sync` is False), naming the product whose
    servers it is compared with."""
    for name in sorted(server.components):
        c = server.components[name]
        fingerprint = c.encryption_key_fingerprint
        if not fingerprint or fingerprint == refs.key_reference(c.product):
            continue
        if c.product:
            if refs.fingerprints.get(c.product) is None:
                return (
                    f"{c.product} servers report different encryption keys and none is in the"
                    " majority"
                )
            return f"encryption key differs from the rest of the {c.product} servers"
        break
    if refs.fingerprint_tie:
        return "servers report different encryption keys and none is in the majority"
    return "encryption key differs from the rest of the cluster"


def server_health(
    component_findings: list[tuple[str, str, list[str]]],
    version_ok: bool | None,
    key_ok: bool | None,
    refs: References,
    server: ServerState,
) -> tuple[str, list[str]]:
    """Worst of its components, and of the two sync checks."""
    findings = [
        (health, f"{name}: {reason}")
        for name, health, reasons in component_findings
        for reason in reasons
    ]
    if key_ok is False:
        why = key_mismatch(server, refs)
        findings.append(("error", f"{why}: decryption fails and users are asked to log in again"))
    if version_ok is False:
        findings.append(("warning", "software version differs from the rest of the cluster"))
    return _worst(findings), [reason for _, reason in findings]
