"""Commands in, events out: the decisions of the write side.

A decision is never made on stale facts:
- heartbeats of current components need no decision: on PostgreSQL the store checks that they
  are current, and appends them, in one statement under its ordering lock. Any other group (a
  component to recover, a policy that moved on, and every group on SQLite) is decided in one
  transaction that holds the append lock from before its reads, so it cannot conflict;
- configuration changes and removals read the tail of their stream, decide, and append with the
  expected stream version, retrying on a conflict.

The timeout in force comes from the `cluster` and `monitor` streams, folded with the shared
fold and cached by their versions (they change rarely).
"""

from __future__ import annotations

import contextlib
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

import orjson
import sqlalchemy as sa

from domain import rules
from domain.events import (
    CLUSTER_STREAM,
    COMPONENTS,
    MONITOR_STREAM,
    ComponentRecovered,
    ComponentRemoved,
    ComponentTimedOut,
    ConfigurationChanged,
    HeartbeatRecorded,
    component_stream,
)
from domain.state import ComponentState, Configuration, fold
from eventstore.db import write_connection
from eventstore.store import (
    APPEND_LOCK_KEY,
    AppendResult,
    EventStore,
    NewEvent,
    RecordedEvent,
)
from eventstore.tables import UTCDateTime
from eventstore.tables import events as events_table

INGEST_DETECTOR = "ingest"
# The streams whose events make the policy (the configuration, the monitor's gaps).
POLICY_STREAMS = (CLUSTER_STREAM, MONITOR_STREAM)


class NotInCluster(LookupError):
    pass


class InvalidConfiguration(ValueError):
    def __init__(self, errors: dict[str, list[str]]):
        super().__init__("invalid configuration")
        self.errors = errors


@dataclass(frozen=True, slots=True)
class Tail:
    """What a heartbeat decision needs of a stream's last event (no payload decoding, except
    the expiry of a timeout)."""

    position: int
    version: int
    type: str
    recorded_at: datetime
    expired_at: datetime | None


def stream_tails(conn: sa.Connection, streams: Sequence[str]) -> dict[str, Tail]:
    """The last event of each stream that has one, as a Tail (one index probe per stream)."""
    picked = (
        "e.stream, e.position, e.version, e.type, e.recorded_at,"
        " CASE WHEN e.type = 'ComponentTimedOut' THEN e.data END"
    )
    if conn.dialect.name == "postgresql":
        sql = (
            f"SELECT {picked} FROM unnest(CAST(:streams AS text[])) AS s(stream)"
            " CROSS JOIN LATERAL (SELECT * FROM events WHERE events.stream = s.stream"
            " ORDER BY version DESC LIMIT 1) AS e"
        )
        params: dict[str, Any] = {"streams": list(streams)}
    else:
        sql = (
            f"SELECT {picked} FROM json_each(:streams) AS s JOIN events AS e"
            " ON e.stream = s.value"
            " AND e.version = (SELECT max(version) FROM events WHERE stream = s.value)"
        )
        params = {"streams": orjson.dumps(list(streams)).decode()}
    query = sa.text(sql).columns(
        sa.column("stream"),
        sa.column("position"),
        sa.column("version"),
        sa.column("type"),
        sa.column("recorded_at", UTCDateTime()),
        sa.column("data"),
    )
    return {
        stream: _tail(position, version, type_, recorded_at, data)
        for stream, position, version, type_, recorded_at, data in conn.execute(query, params)
    }


def _tail(position, version, type_, recorded_at, data) -> Tail:
    expired = None
    if data is not None:
        expired = datetime.fromisoformat(orjson.loads(data)["expired_at"])
    return Tail(position, version, type_, recorded_at, expired)


def _facts(rows) -> tuple[dict[str, Tail], set[UUID]]:
    """Tails and stored ids from the rows of _PG_FACTS."""
    tails, stored = {}, set()
    for stream, position, version, type_, recorded_at, data, ids in rows:
        if position is not None:
            tails[stream] = _tail(position, version, type_, recorded_at, data)
        if ids:
            stored.update(ids)
    return tails, stored


# The ingest decision's facts in one PostgreSQL statement: every stream asked for (with NULLs
# when it has no event yet) and, on each row, the ids already stored among the candidates (an
# uncorrelated subquery: evaluated once).
_PG_FACTS = (
    "SELECT s.stream, e.position, e.version, e.type, e.recorded_at,"
    " CASE WHEN e.type = 'ComponentTimedOut' THEN e.data END,"
    " (SELECT array_agg(event_id) FROM events WHERE event_id = ANY(%s::uuid[]))"
    " FROM unnest(%s::text[]) AS s(stream)"
    " LEFT JOIN LATERAL (SELECT position, version, type, recorded_at, data FROM events"
    " WHERE events.stream = s.stream ORDER BY version DESC LIMIT 1) AS e ON true"
)


@dataclass(frozen=True, slots=True)
class Policy:
    """What decides deadlines: the configuration in force and the last monitor resumption."""

    configuration: Configuration
    monitor_resumed_at: datetime | None
    versions: tuple[int, int]  # (cluster stream version, monitor stream version)


class ClusterCommands:
    def __init__(self, store: EventStore):
        self.store = store
        self._policy: Policy | None = None  # the last one decided by (a cache)

    # --- policy -------------------------------------------------------------------------------

    def policy(self, tails: Mapping[str, Tail]) -> Policy:
        """The policy at the versions of the `cluster` and `monitor` streams in `tails`."""
        versions = tuple(tails[s].version if s in tails else 0 for s in POLICY_STREAMS)
        cached = self._policy
        if cached is None or cached.versions != versions:
            events = self.store.read_all(0, None, streams=list(POLICY_STREAMS))
            state = fold(e for e in events if e.position <= _last_position(tails))
            cached = self._policy = Policy(state.configuration, state.monitor_resumed_at, versions)
        return cached

    def configuration(self) -> Configuration:
        with self.store.engine.connect() as conn:
            return self.policy(stream_tails(conn, POLICY_STREAMS)).configuration

    # --- heartbeats ---------------------------------------------------------------------------

    def record_heartbeats(
        self, beats: Sequence[NewEvent], *, maybe_duplicates: Collection[UUID] | None = None
    ) -> AppendResult:
        """Append heartbeats in one transaction, with the recoveries they imply.

        A heartbeat from a component whose last event is a timeout records a recovery first.
        One that arrives after its deadline while no timeout was recorded yet (the sweep had not
        run) records that timeout, stamped with its logical expiry, and the recovery: the log
        then shows the outage whoever noticed it first.

        On PostgreSQL the common case (every component current, the policy unchanged since the
        last decision) is one round trip: `EventStore.append_current_heartbeats` checks that
        under the ordering lock and appends. Otherwise, and on SQLite, the group is decided in
        one transaction that holds the append lock from before its reads.

        `maybe_duplicates`: the ids that may already be stored (those a client chose); ids we
        generated ourselves cannot be, and are not looked up. Default: all of them.
        """
        candidates = [b.event_id for b in beats] if maybe_duplicates is None else maybe_duplicates
        policy = self._policy
        if policy is not None and self.store.dialect == "postgresql":
            now = self.store.clock()
            since = _current_since(policy, now)
            result = self.store.append_current_heartbeats(
                beats,
                current_since=[since[b.event.component] for b in beats],
                policy_versions=dict(zip(POLICY_STREAMS, policy.versions, strict=True)),
                maybe_duplicates=candidates,
                recorded_at=now,
            )
            if result is not None:
                return result
        return self._record_locked(beats, list(candidates))

    def _record_locked(self, beats, candidates) -> AppendResult:
        """Decide and append in one transaction that holds the append lock from before the
        reads (SQLite: BEGIN IMMEDIATE), so no other append can move a stream in between."""
        streams = list(dict.fromkeys(b.event.stream for b in beats))
        all_streams = [*streams, *POLICY_STREAMS]
        with write_connection(self.store.engine) as conn, conn.begin():
            if conn.dialect.name == "postgresql":
                # BEGIN, the lock and the facts in one round trip (a pipeline), the lock held
                # from then until the commit. The facts statement runs after the lock is
                # granted, so its snapshot sees every append committed before.
                driver = conn.connection.driver_connection
                with driver.pipeline():
                    driver.execute("SELECT pg_advisory_xact_lock(%s)", (APPEND_LOCK_KEY,))
                    facts = driver.execute(_PG_FACTS, (candidates, all_streams))
                tails, stored = _facts(facts.fetchall())
            else:
                tails = stream_tails(conn, all_streams)
                stored = _sqlite_stored_ids(conn, candidates) if candidates else set()
            events, expected, now = self._decide(beats, streams, tails, stored)
            return self.store.append(
                events, expected_version=expected, recorded_at=now, connection=conn
            )

    def _decide(self, beats, streams, tails, stored) -> tuple[list[NewEvent], dict, datetime]:
        """The events to append (heartbeats with the outages they end), the stream versions
        they expect, and the time they are judged at (and stamped with)."""
        policy = self.policy(tails)
        now = self.store.clock()
        events = self._with_outages(beats, tails, stored, policy, now)
        return events, {s: tails[s].version if s in tails else 0 for s in streams}, now

    def _with_outages(self, beats, tails, stored, policy, now) -> list[NewEvent]:
        events: list[NewEvent] = []
        decided: set[str] = set()
        for beat in beats:
            stream = beat.event.stream
            if beat.event_id not in stored and stream not in decided:
                # Only the first new heartbeat of a component can end an outage; a duplicate
                # delivery changes nothing (the store reports it).
                events.extend(self._outage_events(beat, tails.get(stream), policy, now))
                decided.add(stream)
            stored.add(beat.event_id)
            events.append(beat)
        return events

    @staticmethod
    def _outage_events(beat: NewEvent, tail: Tail | None, policy: Policy, now):
        if tail is None:
            return []
        meta = {**beat.metadata, "causation_id": str(beat.event_id)}
        hb: HeartbeatRecorded = beat.event
        stale_since = None
        out: list[NewEvent] = []
        if tail.type == ComponentTimedOut.type:
            stale_since = tail.expired_at
        elif tail.type == HeartbeatRecorded.type:
            probe = ComponentState(hb.server, hb.component, last_heartbeat_at=tail.recorded_at)
            expiry = rules.deadline(probe, policy.configuration, policy.monitor_resumed_at)
            if now > expiry:
                stale_since = expiry
                out.append(
                    NewEvent(
                        ComponentTimedOut(
                            server=hb.server,
                            component=hb.component,
                            expired_at=expiry,
                            detected_at=now,
                            timeout_seconds=rules.timeout_seconds(
                                hb.component, policy.configuration
                            ),
                            configuration_version=policy.configuration.version,
                            last_heartbeat_position=tail.position,
                            detector=INGEST_DETECTOR,
                        ),
                        metadata=meta,
                    )
                )
        if stale_since is None:
            return []
        out.append(
            NewEvent(
                ComponentRecovered(
                    server=hb.server,
                    component=hb.component,
                    stale_since=stale_since,
                    recovered_at=now,
                    outage_seconds=max(0.0, (now - stale_since).total_seconds()),
                ),
                metadata=meta,
            )
        )
        return out

    # --- configuration ------------------------------------------------------------------------

    def change_configuration(
        self, changes: Mapping[str, Any], metadata: Mapping[str, Any]
    ) -> tuple[Configuration, RecordedEvent | None]:
        """Apply a partial update; the merged configuration must stay coherent. Decided under
        the append lock (changes are rare): concurrent changes queue, none fails."""
        with self._locked() as conn:
            policy = self.policy(stream_tails(conn, POLICY_STREAMS))
            current = policy.configuration
            effective = {k: v for k, v in changes.items() if getattr(current, k) != v}
            merged = {**current.settings(), **changes}
            errors = validate_configuration(merged, set(changes))
            if errors:
                raise InvalidConfiguration(errors)
            if not effective:
                return current, None
            result = self.store.append(
                [NewEvent(ConfigurationChanged(changes=effective), metadata=metadata)],
                expected_version=policy.versions[0],
                connection=conn,
            )
        recorded = result.recorded[0]
        updated = Configuration(
            **{**current.settings(), **effective},
            version=current.version + 1,
            changed_position=recorded.position,
        )
        return updated, recorded

    # --- removal ------------------------------------------------------------------------------

    def remove_component(
        self, server: str, component: str, metadata: Mapping[str, Any]
    ) -> RecordedEvent:
        """Decided under the append lock, so a heartbeat arriving meanwhile cannot make it fail
        (it lands before or after the removal)."""
        stream = component_stream(server, component)
        with self._locked() as conn:
            tail = stream_tails(conn, [stream]).get(stream)
            if tail is None or tail.type == ComponentRemoved.type:
                raise NotInCluster(f"{component} component of {server} is not in the cluster")
            result = self.store.append(
                [NewEvent(ComponentRemoved(server=server, component=component), metadata=metadata)],
                expected_version=tail.version,
                connection=conn,
            )
        return result.recorded[0]

    @contextlib.contextmanager
    def _locked(self) -> Iterator[sa.Connection]:
        """A write transaction that holds the append lock from its start (SQLite: BEGIN
        IMMEDIATE), so no other append can move a stream between its reads and its append.
        (`_record_locked` takes the same lock pipelined with its read of the facts instead:
        one round trip less on the ingest path.)"""
        with write_connection(self.store.engine) as conn, conn.begin():
            if conn.dialect.name == "postgresql":
                conn.exec_driver_sql("SELECT pg_advisory_xact_lock(%s)", (APPEND_LOCK_KEY,))
            yield conn


def _last_position(tails: Mapping[str, Tail]) -> int:
    """The policy streams' last position seen: a policy never folds past what it was asked for
    (an event appended after the tails were read belongs to the next decision)."""
    positions = [tails[s].position for s in POLICY_STREAMS if s in tails]
    return max(positions, default=0)


def _current_since(policy: Policy, now: datetime) -> dict[str, datetime | None]:
    """Per component name, the oldest last heartbeat that is still current at `now` under
    `policy` (None: any, a monitor resumption gives every component its full timeout). The
    inverse of `rules.deadline`: current iff now <= max(last, resumed) + timeout."""
    since = {}
    for component in COMPONENTS:
        timeout = timedelta(seconds=rules.timeout_seconds(component, policy.configuration))
        resumed = policy.monitor_resumed_at
        since[component] = (
            None if resumed is not None and now <= resumed + timeout else now - timeout
        )
    return since


def _sqlite_stored_ids(conn: sa.Connection, ids: Sequence) -> set:
    """Which of these event ids are already in the log (SQLite; PostgreSQL reads them with the
    tails in _PG_FACTS). One statement whatever the count: the ids travel as one JSON array."""
    sql = "SELECT event_id FROM events WHERE event_id IN (SELECT value FROM json_each(:ids))"
    query = sa.text(sql).columns(events_table.c.event_id._copy())
    return set(conn.execute(query, {"ids": orjson.dumps([i.hex for i in ids]).decode()}).scalars())


def validate_configuration(merged: Mapping[str, Any], changed: set[str]) -> dict[str, list[str]]:
    """Cross-field rules (per-field ranges are in the schema). The product docs discourage a
    stale timeout close to the heartbeat frequency: one late heartbeat would mark a healthy
    service stale, so we require at least two heartbeat periods."""
    errors: dict[str, list[str]] = {}
    frequency = merged["heartbeat_frequency_seconds"]
    stale = merged["stale_timeout_seconds"]
    web = merged["web_stale_timeout_seconds"]
    if stale < 2 * frequency:
        field = (
            "stale_timeout_seconds"
            if "stale_timeout_seconds" in changed
            else "heartbeat_frequency_seconds"
        )
        errors[field] = [
            f"the stale timeout ({stale} s) must be at least two heartbeat periods"
            f" ({2 * frequency} s), or one late heartbeat marks a healthy service stale"
        ]
    if web < frequency:
        errors.setdefault("web_stale_timeout_seconds", []).append(
            f"the web window ({web} s) must not be shorter than the heartbeat frequency"
            f" ({frequency} s)"
        )
    return errors
