"""Helpers shared by the projection integration tests (real SQLite and PostgreSQL)."""

from __future__ import annotations

import sqlalchemy as sa

from domain.events import (
    ComponentRecovered,
    ComponentRemoved,
    ComponentTimedOut,
    ConfigurationChanged,
    HeartbeatRecorded,
    MonitorResumed,
)
from eventstore import EventStore, NewEvent
from eventstore.tables import events
from projections.readmodel import current as read
from projections.readmodel.tables import VIEW, checkpoints, cluster, components, servers, snapshots


def beat(store: EventStore, server="srv1", component="service", **fields) -> NewEvent:
    fields.setdefault("product", "ProGet")
    fields.setdefault("product_version", "2025.10")
    return NewEvent(
        HeartbeatRecorded(server=server, component=component, sent_at=store.clock(), **fields)
    )


def configure(**changes) -> NewEvent:
    return NewEvent(ConfigurationChanged(changes=changes))


def remove(server="srv1", component="service") -> NewEvent:
    return NewEvent(ComponentRemoved(server=server, component=component))


def timed_out(store: EventStore, server, component, expired_at) -> NewEvent:
    return NewEvent(
        ComponentTimedOut(
            server=server,
            component=component,
            expired_at=expired_at,
            detected_at=store.clock(),
            timeout_seconds=300,
            configuration_version=0,
            last_heartbeat_position=None,
            detector="test",
        )
    )


def recovered(store: EventStore, server, component, stale_since) -> NewEvent:
    now = store.clock()
    return NewEvent(
        ComponentRecovered(
            server=server,
            component=component,
            stale_since=stale_since,
            recovered_at=now,
            outage_seconds=max(0.0, (now - stale_since).total_seconds()),
        )
    )


def resumed(store: EventStore, down_since) -> NewEvent:
    return NewEvent(MonitorResumed(down_since=down_since, resumed_at=store.clock(), detector="t"))


def events_applied(engine: sa.Engine) -> int:
    with engine.connect() as conn:
        return conn.execute(
            sa.select(checkpoints.c.events_applied).where(checkpoints.c.name == VIEW)
        ).scalar_one()


def reset(engine: sa.Engine) -> None:
    """Empty the log and the read side between hypothesis examples. The checkpoint row is kept
    with a new generation, as a rebuild would, so no cached state can match it."""
    with engine.begin() as conn:
        for table in (events, snapshots, components, servers, cluster):
            conn.execute(table.delete())
        conn.execute(
            checkpoints.update().values(
                position=0, events_applied=0, generation=checkpoints.c.generation + 1
            )
        )
    read.clear_cache()
