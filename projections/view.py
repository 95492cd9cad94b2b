"""The cluster view as the API shows it: the folded state with the rules evaluated at `now`.

This is the hot path of every read (10,000 servers = 20,000 components per request), so the
common case — a current, ok, verified component — is evaluated inline; anything else goes
through the rules in rules.py, which define the semantics. tests/unit/test_view.py checks the
two against each other on random states.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from projections import rules
from projections.state import ClusterState


def cluster_view(state: ClusterState, now: datetime) -> dict[str, Any]:
    config = state.configuration
    resumed = state.monitor_resumed_at
    service_window = timedelta(seconds=config.stale_timeout_seconds)
    windows = {"web": timedelta(seconds=config.web_stale_timeout_seconds)}

    # Heartbeat state of every component first: the sync references need the current set.
    beats: dict[tuple[str, str], tuple] = {}
    current: set[tuple[str, str]] = set()
    for c in state.components():
        last = c.last_heartbeat_at
        if last is None:
            expiry = None
        else:
            base = resumed if resumed is not None and resumed > last else last
            expiry = base + windows.get(c.name, service_window)
        timed_out = c.timed_out_at
        key = (c.server, c.name)
        if timed_out is not None and (expiry is None or timed_out <= now):
            # A recorded timeout stands until the next heartbeat (see rules.heartbeat).
            beats[key] = ("stale", timed_out, expiry)
        elif expiry is None or now > expiry:
            beats[key] = ("stale", expiry, expiry)
        else:
            beats[key] = ("current", None, expiry)
            current.add(key)
    refs = rules.references(state, current)

    servers = []
    for server in sorted(state.servers.values(), key=lambda s: s.name):
        components, findings = [], []
        all_ok = True
        for component in sorted(server.components.values(), key=lambda c: c.name):
            beat_state, stale_since, expiry = beats[(server.name, component.name)]
            last = component.last_heartbeat_at
            age = (now - last).total_seconds() if last is not None else None
            if (
                beat_state == "current"
                and component.status == "ok"
                and component.verification == "verified"
            ):
                health, reasons = "ok", []
            else:
                beat = rules.Heartbeat(beat_state, last, age, stale_since, expiry)
                health, reasons = rules.component_health(component, config, beat)
                all_ok = all_ok and health == "ok"
            findings.append((component.name, health, reasons))
            sent = component.last_sent_at
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
                        # Our clock minus the sender's: how far off the agent's clock is.
                        "sender_clock_skew_seconds": round((last - sent).total_seconds(), 3)
                        if sent is not None and last is not None
                        else None,
                    },
                }
            )
        version_ok = rules.version_in_sync(server, refs)
        key_ok = rules.key_in_sync(server, refs)
        if all_ok and version_ok is not False and key_ok is not False:
            health, reasons = "ok", []
        else:
            health, reasons = rules.server_health(findings, version_ok, key_ok, refs)
        servers.append(
            {
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
        )
    return {
        "as_of": {"position": state.position, "time": now},
        "configuration": {**config.settings(), "version": config.version},
        "server_count": len(servers),
        "servers": servers,
    }
