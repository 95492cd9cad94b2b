"""The PostgreSQL store.

Ordering guarantee: every append first takes one transaction-level advisory lock
(`pg_advisory_xact_lock`), so appends commit one after another and positions (identity values
drawn while holding the lock) become visible strictly in position order. A follower that reads
`position > last_seen` therefore never skips an event that commits later with a smaller
position. PostgreSQL releases the lock only after the commit is visible to new snapshots, so the
next writer cannot draw a position before the previous one is readable. We chose this over the
xmin-snapshot and gap-detection schemes because it is correct by construction, needs no extra
column or reader cooperation, and its cost is amortised by batching (one lock per batch of up to
1,000 events; concurrent API requests share one commit). SQLite serialises writers itself
(`BEGIN IMMEDIATE`, see db.py).

On PostgreSQL the steps run server-side, in the functions of eventstore/sql/: take the lock,
skip the event ids already stored, check the expected versions, insert the batch in order and
queue `NOTIFY clustermon_events, '<last position>'`. Up to 31 events that is one statement
(`clustermon_append_one` for a single event, `clustermon_append` for more), which our own appends
run in autocommit mode: one round trip is the whole transaction and the lock is held only for
the insert and its commit. From 32 events on, `clustermon_prepare_append` does the lock, the
checks and reserves the positions, then the rows go by binary COPY in the same transaction.
The reasons are speed (BENCHMARKS.md, Event store → Append) and that the checks must run after
the lock is granted (each statement of those functions takes a fresh snapshot).
Heartbeat ingest has its own function, `clustermon_append_heartbeats`: the same steps, after
checking under the lock that no decision is needed (postgres_heartbeats.py).
SQLite runs the same steps in Python with SQLAlchemy Core (`_append`).

recorded_at never decreases along positions (time travel and the staleness rules rely on it).
The stamp comes from the injected clock (tests pin it), read on the client before the lock, so a
writer that waited for the lock could stamp earlier than the writer it waited for. So, under the
lock, the stamp is raised to the recorded_at of the last event (one probe of the primary key);
the events returned carry the stamp actually stored.

A rolled-back append (a database error) can leave a hole in the numbering on PostgreSQL. Holes
are harmless: nothing can commit below the head later, so followers never wait for them.

`events` is partitioned by ranges of positions (migration 0012, partitions.py): the appends'
checks under the lock are what keep event_id and (stream, version) unique, and each store keeps
a whole empty partition ahead of the head (`keep_partitions_ahead`).

"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import datetime
from itertools import cycle
from typing import Any, cast
from uuid import UUID

import orjson
import psycopg
import sqlalchemy as sa

from domain.events import RecordedEvent
from eventstore.clock import Clock, utc_now
from eventstore.db import AutocommitConnections, raw_connection
from eventstore.decoding import record, recorded
from eventstore.partitions import ensure_ahead
from eventstore.store import (
    APPEND_LOCK_KEY,
    NOTIFY_CHANNEL,
    AppendResult,
    ConcurrencyError,
    EventStore,
    NewEvent,
    _expected_by_stream,
)

log = logging.getLogger(__name__)

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


def _raise_first_conflict(fresh: Sequence[NewEvent], conflicts: Mapping[str, tuple]) -> None:
    """ConcurrencyError for the first stream of the batch in conflict, if any."""
    if conflicts:
        stream = next(e.event.stream for e in fresh if e.event.stream in conflicts)
        raise ConcurrencyError(stream, *conflicts[stream])


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


class PostgresEventStore(EventStore):
    dialect = "postgresql"

    def __init__(self, engine: sa.Engine, clock: Clock = utc_now, *, serialize_appends=True):
        super().__init__(engine, clock)
        # The append functions run as transactions of their own, straight on psycopg
        # connections kept in autocommit mode: a SQLAlchemy Connection (begin, isolation-level
        # switch, result wrapping) costs more client CPU than the whole round trip of a
        # one-event append.
        self._autocommit = AutocommitConnections(engine)
        # Only the ordering test turns this off, to show what goes wrong without it.
        self._serialize = serialize_appends
        # The position past which the next partition is due (eventstore/partitions.py); None
        # until checked, before this store's first append.
        self._grow_at: int | None = None

    def keep_partitions_ahead(self, last_position: int | None = None) -> None:
        """Attach the next partition when the head has entered the highest one: before the
        first append, then after any append whose last position reached it. A failure (a lock
        not granted in time) is only logged: a whole partition is still free, the next append
        tries again."""
        if self._grow_at is not None and (last_position is None or last_position < self._grow_at):
            return
        try:
            grow_at = ensure_ahead(self.engine)
        except sa.exc.SQLAlchemyError:  # the database's errors and the pool's timeout
            log.warning(
                "could not add the next partition of events; retrying on the next append",
                exc_info=True,
            )
            return
        # Not partitioned (a database before migration 0012): nothing to keep ahead, ever.
        self._grow_at = grow_at if grow_at is not None else 2**63

    def _append_stamped(self, new_events, expected_version, connection, stamp) -> AppendResult:
        """Small batches: one statement, `clustermon_append` (eventstore/sql/clustermon_append.sql)
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
        self.keep_partitions_ahead()
        if len(fresh) >= COPY_BATCH:
            stored, stored_at = self._copy_append(fresh, per_row, stamp, connection)
        else:
            stored, stored_at = self._function_append(fresh, per_row, stamp, connection)
        result = _result(new_events, stored, stamp, stored_at)
        self.keep_partitions_ahead(result.last_position)
        return result

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
        pooled = raw_connection(self.engine)
        driver = cast(psycopg.Connection, pooled.driver_connection)
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

    def _stream_versions(self, conn, streams):
        sql = (
            "SELECT s, coalesce((SELECT max(version) FROM events WHERE stream = s),"
            " (SELECT max(version) FROM archived_tails WHERE stream = s))"
            " FROM unnest(CAST(:streams AS text[])) AS t(s)"
        )
        return {s: v or 0 for s, v in conn.execute(sa.text(sql), {"streams": list(streams)})}

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
            return self._page(after, up_to, until, batch_size)

        # The first page on one connection; a second connection and the prefetch thread only
        # when there is more to read (they cost ~3 ms, more than a short read itself).
        with self.engine.connect() as one:
            first = self._execute(
                cast(psycopg.Connection, one.connection.driver_connection), page(after)
            )
            if first.rowcount < batch_size:
                yield from _decoded(first)
                return
            cursor: psycopg.Cursor | None = first
            with (
                self.engine.connect() as other,
                ThreadPoolExecutor(1, thread_name_prefix="clustermon-replay") as prefetch,
            ):
                drivers = cycle(
                    [
                        cast(psycopg.Connection, other.connection.driver_connection),
                        cast(psycopg.Connection, one.connection.driver_connection),
                    ]
                )
                while cursor is not None:
                    pending: Future | None = None
                    if cursor.rowcount == batch_size:
                        cursor.scroll(batch_size - 1, "absolute")
                        row = cursor.fetchone()
                        assert row is not None  # the page holds batch_size rows
                        last = row[0]
                        cursor.scroll(0, "absolute")
                        pending = prefetch.submit(self._execute, next(drivers), page(last))
                    yield from _decoded(cursor)
                    cursor = pending.result() if pending is not None else None

    def _rows(self, query: sa.Select) -> list[Sequence[Any]]:
        """The rows of a read. On PostgreSQL straight from the psycopg cursor: SQLAlchemy's
        result rows cost about a fifth of a replay's time, for nothing we use."""
        with self.engine.connect() as conn:
            driver = cast(psycopg.Connection, conn.connection.driver_connection)
            return self._execute(driver, query).fetchall()

    def _execute(self, driver: psycopg.Connection, query: sa.Select) -> psycopg.Cursor[Any]:
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
