"""Recorded events built in memory, for pure tests of the fold, rules and view."""

from __future__ import annotations

import itertools
import uuid
from datetime import UTC, datetime, timedelta

from domain.events import (
    ComponentRecovered,
    ComponentRemoved,
    ComponentTimedOut,
    ConfigurationChanged,
    HeartbeatRecorded,
    MonitorResumed,
)
from eventstore.store import RecordedEvent

T0 = datetime(2026, 11, 27, 10, 0, tzinfo=UTC)
KEY_A = "a" * 64
KEY_B = "b" * 64


class Log:
    """Builds a log: each call records one event at the log's current time."""

    def __init__(self, start: datetime = T0):
        self.now = start
        self.events: list[RecordedEvent] = []
        self._positions = itertools.count(1)
        self._versions: dict[str, int] = {}

    def advance(self, **delta) -> datetime:
        self.now += timedelta(**delta)
        return self.now

    def record(self, event) -> RecordedEvent:
        version = self._versions[event.stream] = self._versions.get(event.stream, 0) + 1
        recorded = RecordedEvent(
            next(self._positions),
            uuid.uuid4(),
            event.stream,
            version,
            event.type,
            event.schema_version,
            event,
            {},
            self.now,
            self.now,
        )
        self.events.append(recorded)
        return recorded

    def heartbeat(self, server="srv1", component="service", **fields) -> RecordedEvent:
        fields.setdefault("product", "ProGet")
        fields.setdefault("product_version", "2025.10")
        fields.setdefault("encryption_key_fingerprint", KEY_A)
        return self.record(
            HeartbeatRecorded(server=server, component=component, sent_at=self.now, **fields)
        )

    def configure(self, **changes) -> RecordedEvent:
        return self.record(ConfigurationChanged(changes=changes))

    def remove(self, server="srv1", component="service", reason=None) -> RecordedEvent:
        return self.record(ComponentRemoved(server=server, component=component, reason=reason))

    def timed_out(self, server, component, expired_at, timeout=300) -> RecordedEvent:
        return self.record(
            ComponentTimedOut(
                server=server,
                component=component,
                expired_at=expired_at,
                detected_at=self.now,
                timeout_seconds=timeout,
                configuration_version=0,
                last_heartbeat_position=None,
                detector="test",
            )
        )

    def recovered(self, server, component, stale_since) -> RecordedEvent:
        return self.record(
            ComponentRecovered(
                server=server,
                component=component,
                stale_since=stale_since,
                recovered_at=self.now,
                outage_seconds=(self.now - stale_since).total_seconds(),
            )
        )

    def resumed(self, down_since) -> RecordedEvent:
        return self.record(
            MonitorResumed(down_since=down_since, resumed_at=self.now, detector="test")
        )
