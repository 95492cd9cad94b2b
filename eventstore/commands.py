"""The write side's command handler: reads the facts a decision needs, lets domain/decisions.py
decide, appends what it decided.

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
from datetime import datetime
from typing import TYPE_CHECKING, Any, cast
from uuid import UUID

import orjson
import sqlalchemy as sa

from domain import decisions
from domain.decisions import Policy, Tail
from domain.events import (
    CLUSTER_STREAM,
    MONITOR_STREAM,
    ChannelConfigured,
    CollectionFailed,
    SilenceCreated,
    channel_stream,
    component_stream,
    silence_stream,
    target_stream,
)
from domain.state import ChannelState, ClusterState, Configuration, SilenceState, TargetState, fold
from eventstore import postgres_heartbeats
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

if TYPE_CHECKING:
    import psycopg

    from eventstore.postgres import PostgresEventStore

INGEST_DETECTOR = "ingest"
# The streams whose events make the policy (the configuration, the monitor's gaps).
POLICY_STREAMS = (CLUSTER_STREAM, MONITOR_STREAM)


_TAIL_COLUMNS = "stream, position, version, type, recorded_at, data"
# A stream's last event: its newest kept one, else its archived tail (eventstore/tables.py,
# `archived_tails`). LIMIT 1 stops the Append after its first branch returns a row, so a
# stream that kept events never probes `archived_tails`.
_PG_LAST_EVENT = (
    f"(SELECT {_TAIL_COLUMNS} FROM events WHERE events.stream = s.stream"
    " ORDER BY version DESC LIMIT 1)"
    f" UNION ALL (SELECT {_TAIL_COLUMNS} FROM archived_tails a WHERE a.stream = s.stream"
    " ORDER BY version DESC LIMIT 1) LIMIT 1"
)


def stream_tails(conn: sa.Connection, streams: Sequence[str]) -> dict[str, Tail]:
    """The last event of each stream that has one, as a Tail (one index probe per stream; a
    second, of `archived_tails`, for a stream whose every event was archived)."""
    picked = (
        "e.stream, e.position, e.version, e.type, e.recorded_at,"
        " CASE WHEN e.type = 'ComponentTimedOut' THEN e.data END"
    )
    if conn.dialect.name == "postgresql":
        sql = (
            f"SELECT {picked} FROM unnest(CAST(:streams AS text[])) AS s(stream)"
            f" CROSS JOIN LATERAL ({_PG_LAST_EVENT}) AS e"
        )
        return _tails(conn, sql, {"streams": list(streams)})
    tails: dict[str, Tail] = {}
    for table in ("events", "archived_tails"):  # the archived tail of the streams left
        missing = [s for s in streams if s not in tails]
        if not missing:
            break
        sql = (
            f"SELECT {picked} FROM json_each(:streams) AS s JOIN {table} AS e"
            " ON e.stream = s.value"
            f" AND e.version = (SELECT max(version) FROM {table} WHERE stream = s.value)"
        )
        tails.update(_tails(conn, sql, {"streams": orjson.dumps(missing).decode()}))
    return tails


def _tails(conn: sa.Connection, sql: str, params: dict[str, Any]) -> dict[str, Tail]:
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
    f" LEFT JOIN LATERAL ({_PG_LAST_EVENT}) AS e ON true"
)


class ClusterCommands:
    def __init__(self, store: EventStore):
        self.store = store
        self._policy: Policy | None = None  # the last one decided by (a cache)

    # --- policy -------------------------------------------------------------------------------

    def policy(self, tails: Mapping[str, Tail]) -> Policy:
        """The policy at the versions of the `cluster` and `monitor` streams in `tails`."""
        versions = cast(  # one version per stream of POLICY_STREAMS, a pair
            "tuple[int, int]", tuple(tails[s].version if s in tails else 0 for s in POLICY_STREAMS)
        )
        cached = self._policy
        if cached is None or cached.versions != versions:
            # `archived_tails` keeps every archived event of the policy streams (tables.py).
            archived = self.store.read_archived(POLICY_STREAMS)
            kept = self.store.read_all(0, None, streams=list(POLICY_STREAMS))
            last = _last_position(tails)
            every = sorted([*archived, *kept], key=lambda e: e.position)
            state = fold(e for e in every if e.position <= last)
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
        last decision) is one round trip: `append_current_heartbeats` (postgres_heartbeats.py)
        checks that under the ordering lock and appends. Otherwise, and on SQLite, the group is
        decided in one transaction that holds the append lock from before its reads.

        `maybe_duplicates`: the ids that may already be stored (those a client chose); ids we
        generated ourselves cannot be, and are not looked up. Default: all of them.
        """
        candidates = [b.event_id for b in beats] if maybe_duplicates is None else maybe_duplicates
        policy = self._policy
        if policy is not None and self.store.dialect == "postgresql":
            now = self.store.clock()
            since = decisions.current_since(policy, now)
            heartbeats: Sequence[Any] = beats  # NewEvents of HeartbeatRecorded: .event.component
            result = postgres_heartbeats.append_current_heartbeats(
                cast("PostgresEventStore", self.store),  # the store of the "postgresql" dialect
                beats,
                current_since=[since[b.event.component] for b in heartbeats],
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
                driver = cast("psycopg.Connection", conn.connection.driver_connection)
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
                meta = {**beat.metadata, "causation_id": str(beat.event_id)}
                ended = decisions.outage_events(beat.event, tails.get(stream), policy, now)
                events.extend(NewEvent(e, metadata=meta) for e in ended)
                decided.add(stream)
            stored.add(beat.event_id)
            events.append(beat)
        return events

    # --- configuration ------------------------------------------------------------------------

    def change_configuration(
        self, changes: Mapping[str, Any], metadata: Mapping[str, Any]
    ) -> tuple[Configuration, RecordedEvent | None]:
        """Apply a partial update; the merged configuration must stay coherent. Decided under
        the append lock (changes are rare): concurrent changes queue, none fails."""
        with self._locked() as conn:
            policy = self.policy(stream_tails(conn, POLICY_STREAMS))
            current = policy.configuration
            change = decisions.configuration_change(current, changes)
            if change is None:
                return current, None
            result = self.store.append(
                [NewEvent(change, metadata=metadata)],
                expected_version=policy.versions[0],
                connection=conn,
            )
        recorded = result.recorded[0]
        updated = Configuration(
            **{**current.settings(), **change.changes},
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
            removal = decisions.removal(server, component, tail)
            assert tail is not None  # removal() refuses a component without events
            result = self.store.append(
                [NewEvent(removal, metadata=metadata)],
                expected_version=tail.version,
                connection=conn,
            )
        return result.recorded[0]

    # --- targets ------------------------------------------------------------------------------

    def target(self, server: str, conn: sa.Connection | None = None) -> TargetState | None:
        """The target as its stream says now (a few events: configurations and failures)."""
        return self._target_and_version(server, conn)[0]

    def _target_and_version(
        self, server: str, conn: sa.Connection | None
    ) -> tuple[TargetState | None, int]:
        """The target and its stream's version: a removed target keeps its stream, so a new
        target of that server continues it (its version is not the removed target's 0)."""
        stream = target_stream(server)
        events = self.store.read_stream(stream, connection=conn)
        return fold(events, ClusterState()).targets.get(server), self._version(stream, events, conn)

    def configure_target(
        self, server: str, settings: Mapping[str, Any], metadata: Mapping[str, Any]
    ) -> tuple[TargetState, RecordedEvent | None]:
        """Create or change a target (settings not named keep their value). Decided under the
        append lock: concurrent changes queue, none fails."""
        with self._locked() as conn:
            current, version = self._target_and_version(server, conn)
            change = decisions.target_change(server, current, settings)
            if change is None:
                assert current is not None  # no change means there is a target
                return current, None
            result = self.store.append(
                [NewEvent(change, metadata=metadata)], expected_version=version, connection=conn
            )
        recorded = result.recorded[0]
        settings = {name: getattr(change, name) for name in TargetState.SETTINGS}
        return TargetState(server, **settings, version=recorded.version), recorded

    def remove_target(self, server: str, metadata: Mapping[str, Any]) -> RecordedEvent:
        with self._locked() as conn:
            current = self.target(server, conn)
            removal = decisions.target_removal(server, current)
            assert current is not None
            result = self.store.append(
                [NewEvent(removal, metadata=metadata)],
                expected_version=current.version,
                connection=conn,
            )
        return result.recorded[0]

    def record_collection_failure(
        self, failure: CollectionFailed, metadata: Mapping[str, Any]
    ) -> RecordedEvent | None:
        """The poller's news that polling a target started failing, or fails differently.
        Appended only while the target exists (a removal may have raced the poll)."""
        with self._locked() as conn:
            current = self.target(failure.server, conn)
            if current is None:
                return None
            result = self.store.append(
                [NewEvent(failure, metadata=metadata)],
                expected_version=current.version,
                connection=conn,
            )
        return result.recorded[0]

    # --- notification channels and silences -------------------------------------------------

    def _stream_state(self, stream: str, conn: sa.Connection) -> tuple[ClusterState, int]:
        events = self.store.read_stream(stream, connection=conn)
        return fold(events, ClusterState()), self._version(stream, events, conn)

    def _version(
        self, stream: str, events: Sequence[RecordedEvent], conn: sa.Connection | None
    ) -> int:
        """The stream's version from its kept events, else from its archived tail (a stream
        whose every event was archived goes on from there, eventstore/tables.py)."""
        if events:
            return events[-1].version
        if conn is None:
            return self.store.stream_version(stream)
        return self.store._stream_versions(conn, [stream])[stream]

    def channel(self, name: str) -> ChannelState | None:
        return fold(self.store.read_stream(channel_stream(name)), ClusterState()).channels.get(name)

    def configure_channel(
        self, configured: ChannelConfigured, metadata: Mapping[str, Any]
    ) -> RecordedEvent | None:
        """Create or change a channel (None: nothing changed)."""
        with self._locked() as conn:
            state, version = self._stream_state(channel_stream(configured.name), conn)
            change = decisions.channel_change(state.channels.get(configured.name), configured)
            if change is None:
                return None
            result = self.store.append(
                [NewEvent(change, metadata=metadata)], expected_version=version, connection=conn
            )
        return result.recorded[0]

    def remove_channel(self, name: str, metadata: Mapping[str, Any]) -> RecordedEvent:
        with self._locked() as conn:
            state, version = self._stream_state(channel_stream(name), conn)
            removal = decisions.channel_removal(name, state.channels.get(name))
            result = self.store.append(
                [NewEvent(removal, metadata=metadata)], expected_version=version, connection=conn
            )
        return result.recorded[0]

    def create_silence(self, created: SilenceCreated, metadata: Mapping[str, Any]) -> RecordedEvent:
        event = decisions.silence(created, self.store.clock())
        result = self.store.append(
            [NewEvent(event, metadata=metadata)], expected_version={silence_stream(created.id): 0}
        )
        return result.recorded[0]

    def end_silence(self, silence_id: str, metadata: Mapping[str, Any]) -> RecordedEvent:
        with self._locked() as conn:
            state, version = self._stream_state(silence_stream(silence_id), conn)
            current: SilenceState | None = state.silences.get(silence_id)
            ended = decisions.silence_end(silence_id, current, self.store.clock())
            result = self.store.append(
                [NewEvent(ended, metadata=metadata)], expected_version=version, connection=conn
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


def _sqlite_stored_ids(conn: sa.Connection, ids: Sequence) -> set:
    """Which of these event ids are already in the log (SQLite; PostgreSQL reads them with the
    tails in _PG_FACTS). One statement whatever the count: the ids travel as one JSON array."""
    sql = "SELECT event_id FROM events WHERE event_id IN (SELECT value FROM json_each(:ids))"
    query = sa.text(sql).columns(events_table.c.event_id._copy())
    return set(conn.execute(query, {"ids": orjson.dumps([i.hex for i in ids]).decode()}).scalars())
