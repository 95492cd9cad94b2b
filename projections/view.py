"""The cluster view as the API shows it: the folded state with the rules evaluated at `now`."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from projections import rules
from projections.state import ClusterState


def cluster_view(state: ClusterState, now: datetime) -> dict[str, Any]:
    config = state.configuration
    beats = {
        (c.server, c.name): rules.heartbeat(c, config, now, state.monitor_resumed_at)
        for c in state.components()
    }
    current = {key for key, beat in beats.items() if beat.state == "current"}
    refs = rules.references(state, current)

    servers = []
    for server in sorted(state.servers.values(), key=lambda s: s.name):
        components, findings = [], []
        for component in sorted(server.components.values(), key=lambda c: c.name):
            beat = beats[(server.name, component.name)]
            health, reasons = rules.component_health(component, config, beat)
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
                        "last_at": beat.last_at,
                        "age_seconds": round(beat.age_seconds, 3)
                        if beat.age_seconds is not None
                        else None,
                        "state": beat.state,
                        "stale_since": beat.stale_since,
                        "deadline": beat.deadline,
                        "last_position": component.last_heartbeat_position,
                        "sender_clock_skew_seconds": _skew(component),
                    },
                }
            )
        version_ok = rules.version_in_sync(server, refs)
        key_ok = rules.key_in_sync(server, refs)
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


def _skew(component) -> float | None:
    if component.last_sent_at is None or component.last_heartbeat_at is None:
        return None
    return round((component.last_heartbeat_at - component.last_sent_at).total_seconds(), 3)
