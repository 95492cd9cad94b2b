"""The append-only log.

Ordering guarantee: on PostgreSQL every append first takes one transaction-level advisory lock
(`pg_advisory_xact_lock`), so appends commit one after another and positions (identity values
drawn while holding the lock) become visible strictly in position order. A follower that reads
`position > last_seen` therefore never skips an event that commits later with a smaller
position. PostgreSQL releases the lock only after the commit is visible to new snapshots, so the
next writer cannot draw a position before the previous one is readable. We chose this over the
xmin-snapshot and gap-detection schemes because it is correct by construction, needs no extra
column or reader cooperation, and its cost is amortised by batching (one lock per batch of up to
1,000 events; concurrent API requests share one commit). SQLite serialises writers itself
(`BEGIN IMMEDIATE`, see db.py).

On PostgreSQL the steps run server-side, in functions created by migration 0001: take the lock,
skip the event ids already stored, check the expected versions, insert the batch in order and
queue `NOTIFY clustermon_events, '<last position>'`. Up to 31 events that is one statement
(`clustermon_append_one` for a single event, `clustermon_append` for more), which our own appends
run in autocommit mode: one round trip is the whole transaction and the lock is held only for
the insert and its commit. From 32 events on, `clustermon_prepare_append` does the lock, the
checks and reserves the positions, then the rows go by binary COPY in the same transaction.
The reasons are speed (BENCHMARKS.md, "Event store") and that the checks must run after the lock
is granted (each statement of those functions takes a fresh snapshot).
Heartbeat ingest has its own function, `clustermon_append_heartbeats` (migrations 0007 and 0008):
the same steps, after checking under the lock that no decision is needed
(`append_current_heartbeats`).
SQLite runs the same steps in Python with SQLAlchemy Core (`_append`).

recorded_at never decreases along positions (time travel and the staleness rules rely on it).
The stamp comes from the injected clock (tests pin it), read on the client before the lock, so a
writer that waited for the lock could stamp earlier than the writer it waited for. So, under the
lock, the stamp is raised to the recorded_at of the last event (one probe of the primary key);
the events returned carry the stamp actually stored.

A rolled-back append (a database error) can leave a hole in the numbering on PostgreSQL. Holes
are harmless: nothing can commit below the head later, so followers never wait for them.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from itertools import cycle
from typing import Any
from uuid import UUID, uuid4

import orjson
import psycopg
import sqlalchemy as sa

from domain.events import Event
from eventstore.clock import Clock, utc_now
from eventstore.db import AutocommitConnections, write_connection
from eventstore.decoding import RecordedEvent, record, recorded
from eventstore.tables import events as events_table

# Any constant shared by every writer; "clustermon" in ASCII, to be recognisable in pg_locks.
APPEND_LOCK_KEY = 0x636C75737465
# PostgreSQL: every append sends NOTIFY on this channel with its last position as the payload,
# from inside its transaction (so listeners hear of it only once it is committed and readable).
NOTIFY_CHANNEL = "clustermon_events"

# %b: arrays travel in binary, which psycopg dumps 10-30x faster than their text form.
_PG_APPEND = (
    "SELECT kind, event_id, stream, position, version, expected, recorded_at"
    " FROM clustermon_append("
    "%s, %s, %s, %b::uuid[], %b::text[], %b::text[], %b::int2[], %b::text[], %b::text[],"
    " %b::timestamptz[], %s, %b::int4[])"
)

_PG_APPEND_ONE = (
    "SELECT kind, event_id, stream, position, version, expected, recorded_at"
    " FROM clustermon_append_one("
    "%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
)
_PG_APPEND_HEARTBEATS = (
    "SELECT kind, event_id, stream, position, version, recorded_at"
    " FROM clustermon_append_heartbeats("
    "%s, %s, %s, %s, %s, %s::jsonb, %s, %b::uuid[], %b::text[], %b::int4[])"
)
# Batches from this size on go by COPY (see EventStore._append_postgresql).
COPY_BATCH = 32
_PG_PREPARE = (
    "SELECT dups, conflict_streams, conflict_actual, conflict_expected, cur_streams,"
    " cur_versions, positions, stamp FROM clustermon_prepare_append("
    "%s, %s, %s, %b::uuid[], %b::text[], %b::int4[], %s)"
)
_PG_COPY = (
    "COPY events (position, event_id, stream, version, type, schema_version, data, metadata,"
    " occurred_at, recorded_at) FROM STDIN (FORMAT BINARY)"
)
_PG_COPY_TYPES = [
    "int8",
    "uuid",
    "text",
    "int4",
    "text",
    "int2",
    "text",
    "text",
    "timestamptz",
    "timestamptz",
]


class ConcurrencyError(Exception):
    """The stream moved on since the caller read it: nothing of the append was written."""

    def __init__(self, stream: str, expected: int, actual: int):
        super().__init__(
            f"stream {stream!r} is at version {actual}, the append expected version {expected}"
        )
        self.stream, self.expected, self.actual = stream, expected, actual


@dataclass(frozen=True, slots=True)
class NewEvent:
    event: Event
    event_id: UUID = field(default_factory=uuid4)
    occurred_at: datetime | None = None  # the sender's clock; defaults to the stored recorded_at
    metadata: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class AppendResult:
    recorded: list[RecordedEvent]
    duplicates: list[UUID]

    @property
    def last_position(self) -> int | None:
        return self.recorded[-1].position if self.recorded else None


_COLUMNS = (
    events_table.c.position,
    events_table.c.event_id,
    events_table.c.stream,
    events_table.c.version,
    events_table.c.type,
    events_table.c.schema_version,
    events_table.c.data,
    events_table.c.metadata,
    events_table.c.occurred_at,
    events_table.c.recorded_at,
)


def _raise_first_conflict(fresh: Sequence[NewEvent], conflicts: Mapping[str, tuple]) -> None:
    """ConcurrencyError for the first stream of the batch in conflict, if any."""
    if conflicts:
        stream = next(e.event.stream for e in fresh if e.event.stream in conflicts)
        raise ConcurrencyError(stream, *conflicts[stream])


def _expected_by_stream(expected, streams: set[str]) -> dict[str, int]:
    """stream -> expected version, for the streams of the batch only."""
    if expected is None:
        return {}
    if isinstance(expected, int):
        if len(streams) != 1:
            raise ValueError("an int expected_version needs all events in one stream")
        return {next(iter(streams)): expected}
    return {stream: version for stream, version in expected.items() if stream in streams}


def _result(new_events, stored: Mapping[UUID, tuple[int, int]], stamp, stored_at) -> AppendResult:
    """The AppendResult of a PostgreSQL append: `stored` maps each stored event id to its
    (position, version); `stored_at` is the recorded_at stored (None if nothing was)."""
    # The client's own object unless the lock raised it (same instant, the caller's tzinfo).
    recorded_at = stamp if stored_at is None or stored_at == stamp else stored_at
    recorded, duplicates, seen = [], [], set()
    last = 0
    for new in new_events:
        event_id = new.event_id
        hit = stored.get(event_id)
        if hit is None or event_id in seen:
            duplicates.append(event_id)
            continue
        seen.add(event_id)
        position, version = hit
        # Positions are drawn in batch order; the log's order must be the batch's.
        if position <= last:  # pragma: no cover - a broken invariant, never expected
            raise RuntimeError(f"position {position} out of batch order after {last}")
        last = position
        event = new.event
        recorded.append(
            record(
                position,
                event_id,
                event.stream,
                version,
                event.type,
                event.schema_version,
                event,
                new.metadata,
                new.occurred_at or recorded_at,
                recorded_at,
            )
        )
    return AppendResult(recorded, duplicates)


def _decoded(cursor: psycopg.Cursor) -> Iterator[RecordedEvent]:
    while rows := cursor.fetchmany(500):
        yield from map(recorded, rows)


class EventStore:
    def __init__(self, engine: sa.Engine, clock: Clock = utc_now, *, serialize_appends=True):
        self.engine = engine
        self.clock = clock
        self.dialect = engine.dialect.name
        if self.dialect == "postgresql":  # SQLite appends go through SQLAlchemy (`_append`)
            # The append functions run as transactions of their own, straight on psycopg
            # connections kept in autocommit mode: a SQLAlchemy Connection (begin, isolation-level
            # switch, result wrapping) costs more client CPU than the whole round trip of a
            # one-event append.
            self._autocommit = AutocommitConnections(engine)
        # Only the ordering test turns this off, to show what goes wrong without it.
        self._serialize = serialize_appends and self.dialect == "postgresql"

    # --- writing --------------------------------------------------------------------------

    def append(
        self,
        events: Sequence[NewEvent],
        *,
        expected_version: int | Mapping[str, int] | None = None,
        connection: sa.Connection | None = None,
        recorded_at: datetime | None = None,
    ) -> AppendResult:
        """Append events to one or more streams in one transaction.

        `expected_version` is the version each stream must be at before the append (0: empty):
        an int when all events go to one stream, or a mapping stream -> version. A mismatch
        raises ConcurrencyError and writes nothing. An `event_id` already in the log (or twice
        in the batch) is reported in `duplicates` and not stored again; streams whose events
        are all duplicates are not version-checked, so a retried append is idempotent.

        Pass `connection` to take part in the caller's transaction (from `write_connection`);
        on PostgreSQL the NOTIFY on `NOTIFY_CHANNEL` is then delivered when the caller commits.

        `recorded_at` is the time to stamp the events with (default: the store's clock, read
        now); either way it is raised to the last stored event's recorded_at if that is later,
        so recorded_at never decreases along positions. The returned events carry the stamp
        stored.
        """
        if not events:
            return AppendResult([], [])
        stamp = self.clock() if recorded_at is None else recorded_at
        if self.dialect == "postgresql":
            return self._append_postgresql(events, expected_version, connection, stamp)
        if connection is not None:
            return self._append(connection, events, expected_version, stamp)
        with write_connection(self.engine) as conn, conn.begin():
            return self._append(conn, events, expected_version, stamp)

    def _append_postgresql(self, new_events, expected_version, connection, stamp) -> AppendResult:
        """Small batches: one statement, `clustermon_append` (migrations/versions/0001_events.py)
        runs the lock, the checks, the insert and the NOTIFY server-side in one round trip; our
        own appends run it in autocommit mode, so that statement is the whole transaction.
        Batches of COPY_BATCH events or more: `clustermon_prepare_append` (lock, checks, positions,
        NOTIFY), then the rows by binary COPY, then COMMIT: a few more round trips, but the rows
        cost the server about half as much."""
        unique: dict[UUID, NewEvent] = {}
        for new in new_events:
            unique.setdefault(new.event_id, new)
        fresh = list(unique.values())
        expected = _expected_by_stream(expected_version, {e.event.stream for e in fresh})
        per_row = [expected.get(e.event.stream) for e in fresh] if expected else None
        if len(fresh) >= COPY_BATCH:
            stored, stored_at = self._copy_append(fresh, per_row, stamp, connection)
        else:
            stored, stored_at = self._function_append(fresh, per_row, stamp, connection)
        return _result(new_events, stored, stamp, stored_at)

    def _function_append(self, fresh, per_row, recorded_at, connection) -> tuple[dict, Any]:
        """event_id -> (position, version) of each event stored by `clustermon_append`, and the
        recorded_at stored (None if nothing was)."""
        dumps = orjson.dumps
        if len(fresh) == 1:  # scalars: no arrays to build, send and parse
            (new,) = fresh
            sql = _PG_APPEND_ONE
            params = (
                self._serialize,
                APPEND_LOCK_KEY,
                NOTIFY_CHANNEL,
                new.event_id,
                new.event.stream,
                new.event.type,
                new.event.schema_version,
                dumps(new.event).decode(),
                dumps(new.metadata).decode(),
                new.occurred_at,  # NULL: the stored recorded_at
                recorded_at,
                per_row[0] if per_row else None,
            )
        else:
            sql, params = _PG_APPEND, self._function_params(fresh, per_row, recorded_at)
        if connection is not None:
            rows = connection.exec_driver_sql(sql, params).all()
        else:
            rows = self._autocommit.run(sql, params)
        stored, conflicts, stored_at = {}, {}, None
        for kind, event_id, stream, position, version, expected_v, stamp in rows:
            if kind == "conflict":
                conflicts[stream] = (expected_v, version)
            else:
                stored[event_id] = (position, version)
                stored_at = stamp
        _raise_first_conflict(fresh, conflicts)
        return stored, stored_at

    def _function_params(self, fresh, per_row, recorded_at) -> tuple:
        dumps = orjson.dumps
        return (
            self._serialize,
            APPEND_LOCK_KEY,
            NOTIFY_CHANNEL,
            [e.event_id for e in fresh],
            [e.event.stream for e in fresh],
            [e.event.type for e in fresh],
            [e.event.schema_version for e in fresh],
            [dumps(e.event).decode() for e in fresh],
            [dumps(e.metadata).decode() for e in fresh],
            [e.occurred_at for e in fresh],  # NULL: the stored recorded_at
            recorded_at,
            per_row,
        )

    def append_current_heartbeats(
        self,
        heartbeats: Sequence[NewEvent],
        *,
        current_since: Sequence[datetime | None],
        policy_versions: Mapping[str, int],
        maybe_duplicates: Collection[UUID],
        recorded_at: datetime,
    ) -> AppendResult | None:
        """PostgreSQL: append heartbeats in one round trip if no decision is needed, else None
        (and nothing is appended): `clustermon_append_heartbeats` (migration 0008) checks under
        the ordering lock that the streams in `policy_versions` are still at those versions and
        that no heartbeat's component is stale (its last event a timeout, or a heartbeat
        recorded before the heartbeat's `current_since`; None: any heartbeat is current).
        Only the `maybe_duplicates` ids are looked up as duplicates. All `heartbeats` are events
        of one type (the function takes it once)."""
        if not heartbeats:
            return AppendResult([], [])
        dumps = orjson.dumps
        rows, seen = [], set()
        for new, since in zip(heartbeats, current_since, strict=True):
            if new.event_id not in seen:  # the first copy of an id is the one stored
                seen.add(new.event_id)
                event = new.event
                data, metadata = dumps(event).decode(), dumps(new.metadata).decode()
                rows.append((new.event_id, event.stream, data, metadata, new.occurred_at, since))
        first = heartbeats[0].event
        params = (
            self._serialize,
            APPEND_LOCK_KEY,
            NOTIFY_CHANNEL,
            first.type,
            first.schema_version,
            dumps(rows).decode(),
            recorded_at,
            list(maybe_duplicates),
            list(policy_versions),
            list(policy_versions.values()),
        )
        stored, stored_at = {}, None
        for kind, event_id, _stream, position, version, stamp in self._autocommit.run(
            _PG_APPEND_HEARTBEATS, params
        ):
            if kind != "recorded":
                return None
            stored[event_id] = (position, version)
            stored_at = stamp
        return _result(heartbeats, stored, recorded_at, stored_at)

    def _copy_append(self, fresh, per_row, recorded_at, connection) -> tuple[dict, Any]:
        """event_id -> (position, version) of each event stored by prepare + COPY, and the
        recorded_at stored (None if nothing was)."""
        if connection is not None:
            if not connection.in_transaction():
                # What SQLAlchemy's autobegin would do, so the caller's commit() covers the COPY.
                connection.begin()
            driver = connection.connection.driver_connection
            try:
                return self._prepare_and_copy(driver, fresh, per_row, recorded_at)
            except psycopg.Error as exc:
                raise sa.exc.DBAPIError.instance(_PG_COPY, None, exc, psycopg.Error) from exc
        pooled = self.engine.raw_connection()
        driver = pooled.driver_connection
        try:
            stored = self._prepare_and_copy(driver, fresh, per_row, recorded_at)
            driver.commit()
            return stored
        except psycopg.Error as exc:
            if driver.closed or driver.broken:
                pooled.invalidate(exc)
            raise sa.exc.DBAPIError.instance(_PG_COPY, None, exc, psycopg.Error) from exc
        finally:
            if not (driver.closed or driver.broken):
                driver.rollback()  # a no-op after the commit
            pooled.close()

    def _prepare_and_copy(self, driver, fresh, per_row, recorded_at) -> tuple[dict, Any]:
        ids = [e.event_id for e in fresh]
        params = (
            self._serialize,
            APPEND_LOCK_KEY,
            NOTIFY_CHANNEL,
            ids,
            [e.event.stream for e in fresh],
            per_row,
            recorded_at,
        )
        prepared = driver.execute(_PG_PREPARE, params).fetchone()
        dups, c_streams, c_actual, c_expected, streams, versions, positions, stamp = prepared
        if c_streams:
            conflicts = {s: (x, a) for s, a, x in zip(c_streams, c_actual, c_expected, strict=True)}
            _raise_first_conflict(fresh, conflicts)
        if not positions:
            return {}, None  # all duplicates
        stored = {}
        known = set(dups)
        current = dict(zip(streams, versions, strict=True))
        next_position = iter(positions).__next__
        dumps = orjson.dumps
        with driver.cursor().copy(_PG_COPY) as copy:
            copy.set_types(_PG_COPY_TYPES)
            for new in fresh:
                event_id = new.event_id
                if event_id in known:
                    continue
                event = new.event
                stream = event.stream
                version = current[stream] = current[stream] + 1
                position = next_position()
                copy.write_row(
                    (
                        position,
                        event_id,
                        stream,
                        version,
                        event.type,
                        event.schema_version,
                        dumps(event).decode(),
                        dumps(new.metadata).decode(),
                        new.occurred_at or stamp,
                        stamp,
                    )
                )
                stored[event_id] = (position, version)
        return stored, stamp

    def _append(self, conn, new_events, expected_version, stamp) -> AppendResult:
        """SQLite (and the reference for the PostgreSQL function): writers are serialised by
        `BEGIN IMMEDIATE`, so the checks below see every earlier append, and the stamp is raised
        to the last event's recorded_at (module docstring)."""
        fresh, duplicates = self._split_duplicates(conn, new_events)
        if not fresh:
            return AppendResult([], duplicates)
        streams = {e.event.stream for e in fresh}
        versions = self._stream_versions(conn, streams)
        self._check_expected(expected_version, versions, streams)

        last = conn.execute(
            sa.select(events_table.c.recorded_at).order_by(events_table.c.position.desc()).limit(1)
        ).scalar()
        recorded_at = last if last is not None and last > stamp else stamp
        rows = []
        for new in fresh:
            stream = new.event.stream
            versions[stream] += 1
            rows.append(
                {
                    "event_id": new.event_id,
                    "stream": stream,
                    "version": versions[stream],
                    "type": new.event.type,
                    "schema_version": new.event.schema_version,
                    "data": orjson.dumps(new.event).decode(),
                    "metadata": orjson.dumps(new.metadata).decode(),
                    "occurred_at": new.occurred_at or recorded_at,
                    "recorded_at": recorded_at,
                }
            )
        insert = events_table.insert().returning(
            events_table.c.position, sort_by_parameter_order=True
        )
        positions = conn.execute(insert, rows).scalars().all()
        recorded = [
            RecordedEvent(
                position,
                new.event_id,
                row["stream"],
                row["version"],
                row["type"],
                row["schema_version"],
                new.event,
                new.metadata,
                row["occurred_at"],
                recorded_at,
            )
            for position, new, row in zip(positions, fresh, rows, strict=True)
        ]
        return AppendResult(recorded, duplicates)

    def _split_duplicates(self, conn, new_events):
        ids = [e.event_id for e in new_events]
        seen = set(
            conn.execute(
                sa.select(events_table.c.event_id).where(events_table.c.event_id.in_(ids))
            ).scalars()
        )
        fresh, duplicates = [], []
        for new in new_events:
            if new.event_id in seen:
                duplicates.append(new.event_id)
            else:
                seen.add(new.event_id)
                fresh.append(new)
        return fresh, duplicates

    def _stream_versions(self, conn, streams: Iterable[str]) -> dict[str, int]:
        """Current version of each stream: one index probe per stream (max() on the unique
        (stream, version) index), never a scan of a stream's history."""
        streams = list(streams)
        if self.dialect == "postgresql":
            sql = (
                "SELECT s, (SELECT max(version) FROM events WHERE stream = s)"
                " FROM unnest(CAST(:streams AS text[])) AS t(s)"
            )
            params = {"streams": streams}
        else:
            sql = (
                "SELECT value, (SELECT max(version) FROM events WHERE stream = value)"
                " FROM json_each(:streams)"
            )
            params = {"streams": orjson.dumps(streams).decode()}
        return {s: v or 0 for s, v in conn.execute(sa.text(sql), params)}

    @staticmethod
    def _check_expected(expected, versions: Mapping[str, int], streams: set[str]) -> None:
        for stream, version in _expected_by_stream(expected, streams).items():
            if versions[stream] != version:
                raise ConcurrencyError(stream, version, versions[stream])

    # --- reading --------------------------------------------------------------------------

    def head_position(self, connection: sa.Connection | None = None) -> int:
        query = sa.select(sa.func.coalesce(sa.func.max(events_table.c.position), 0))
        if connection is not None:
            return connection.execute(query).scalar_one()
        with self.engine.connect() as conn:
            return conn.execute(query).scalar_one()

    def stream_version(self, stream: str) -> int:
        with self.engine.connect() as conn:
            return self._stream_versions(conn, [stream])[stream]

    def read_stream(
        self, stream: str, from_version: int = 1, limit: int | None = None
    ) -> list[RecordedEvent]:
        query = (
            sa.select(*_COLUMNS)
            .where(events_table.c.stream == stream, events_table.c.version >= from_version)
            .order_by(events_table.c.version)
            .limit(limit)
        )
        return [recorded(row) for row in self._rows(query)]

    def read_all(
        self,
        after: int = 0,
        limit: int | None = 1000,
        *,
        types: Sequence[str] | None = None,
        streams: Sequence[str] | None = None,
        stream_prefix: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        up_to: int | None = None,
    ) -> list[RecordedEvent]:
        """The log in position order after `after`, filtered; `since`/`until` bound recorded_at
        (since inclusive, until exclusive), `up_to` bounds the position (inclusive)."""
        query = self._select(after, types, streams, stream_prefix, since, until, up_to).limit(limit)
        return [recorded(row) for row in self._rows(query)]

    def iter_all(
        self,
        after: int = 0,
        *,
        up_to: int | None = None,
        until: datetime | None = None,
        batch_size: int = 10_000,
    ) -> Iterator[RecordedEvent]:
        """Every event after `after` in order, fetched in pages (for replays of any size).

        On PostgreSQL, while one page is decoded the next is already being produced by the
        server on another core: a helper thread runs its query on a second connection (psycopg
        waits with the GIL released). Rows are then converted 500 at a time: a whole page of
        10,000 row tuples alive at once gets promoted and rescanned by the cyclic garbage
        collector, which cost a fifth of the replay (BENCHMARKS.md, "Replay")."""

        def page(after: int) -> sa.Select:
            return self._select(after, None, None, None, None, until, up_to).limit(batch_size)

        if self.dialect != "postgresql":
            while True:
                rows = self._rows(page(after))
                yield from map(recorded, rows)
                if len(rows) < batch_size:
                    return
                after = rows[-1][0]
        # The first page on one connection; a second connection and the prefetch thread only
        # when there is more to read (they cost ~3 ms, more than a short read itself).
        with self.engine.connect() as one:
            cursor: psycopg.Cursor | None = self._execute(
                one.connection.driver_connection, page(after)
            )
            if cursor.rowcount < batch_size:
                yield from _decoded(cursor)
                return
            with (
                self.engine.connect() as other,
                ThreadPoolExecutor(1, thread_name_prefix="clustermon-replay") as prefetch,
            ):
                drivers = cycle(
                    [other.connection.driver_connection, one.connection.driver_connection]
                )
                while cursor is not None:
                    pending: Future | None = None
                    if cursor.rowcount == batch_size:
                        cursor.scroll(batch_size - 1, "absolute")
                        last = cursor.fetchone()[0]
                        cursor.scroll(0, "absolute")
                        pending = prefetch.submit(self._execute, next(drivers), page(last))
                    yield from _decoded(cursor)
                    cursor = pending.result() if pending is not None else None

    def _rows(self, query: sa.Select) -> list[Sequence[Any]]:
        """The rows of a read. On PostgreSQL straight from the psycopg cursor: SQLAlchemy's
        result rows cost about a fifth of a replay's time, for nothing we use."""
        with self.engine.connect() as conn:
            if self.dialect != "postgresql":
                return conn.execute(query).all()
            return self._execute(conn.connection.driver_connection, query).fetchall()

    def _execute(self, driver: psycopg.Connection, query: sa.Select) -> psycopg.Cursor:
        """A binary psycopg cursor holding the whole result of `query`, its transaction ended
        (the rows stay in client memory)."""
        compiled = query.compile(
            dialect=self.engine.dialect, compile_kwargs={"render_postcompile": True}
        )
        cursor = driver.cursor(binary=True)
        try:
            cursor.execute(compiled.string, compiled.params)
        except psycopg.Error as exc:
            raise sa.exc.DBAPIError.instance(
                compiled.string, compiled.params, exc, psycopg.Error
            ) from exc
        finally:
            driver.rollback()
        return cursor

    @staticmethod
    def _select(after, types, streams, stream_prefix, since, until, up_to):
        c = events_table.c
        query = sa.select(*_COLUMNS).where(c.position > after).order_by(c.position)
        if types:
            query = query.where(c.type.in_(types))
        if streams:
            query = query.where(c.stream.in_(streams))
        if stream_prefix:
            query = query.where(c.stream.startswith(stream_prefix, autoescape=True))
        if since is not None:
            query = query.where(c.recorded_at >= since)
        if until is not None:
            query = query.where(c.recorded_at < until)
        if up_to is not None:
            query = query.where(c.position <= up_to)
        return query
