"""The log's interface: what every store does, and the value types it speaks in.

One implementation per database (`eventstore/sqlite.py`, `eventstore/postgres.py`), chosen by
`eventstore.open_store`; the contract suite (tests/integration/test_store_contract.py) runs the
same tests against both. The reads are shared (SQLAlchemy Core), the appends are not.

Guarantees every implementation keeps:
- positions are global and gap-tolerant, and a follower that reads `position > last_seen`
  never skips an event that commits later with a smaller position (appends are serialised:
  `pg_advisory_xact_lock` on PostgreSQL, `BEGIN IMMEDIATE` on SQLite);
- versions are per stream, checked against `expected_version` (ConcurrencyError otherwise);
- an `event_id` is stored once (a retried delivery is a duplicate);
- `recorded_at` never decreases along positions (time travel and the staleness rules rely
  on it): under the lock, the stamp is raised to the last event's recorded_at;
- nothing outside eventstore/ touches the events table: what the read side needs is a
  method here.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID, uuid4

import sqlalchemy as sa

from domain.events import Event, RecordedEvent
from eventstore.clock import Clock, utc_now
from eventstore.decoding import recorded
from eventstore.tables import archived_tails
from eventstore.tables import events as events_table

# Any constant shared by every writer; "clustermon" in ASCII, to be recognisable in pg_locks.
APPEND_LOCK_KEY = 0x636C75737465
# PostgreSQL: every append sends NOTIFY on this channel with its last position as the payload,
# from inside its transaction (so listeners hear of it only once it is committed and readable).
NOTIFY_CHANNEL = "clustermon_events"


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


def _expected_by_stream(expected, streams: set[str]) -> dict[str, int]:
    """stream -> expected version, for the streams of the batch only."""
    if expected is None:
        return {}
    if isinstance(expected, int):
        if len(streams) != 1:
            raise ValueError("an int expected_version needs all events in one stream")
        return {next(iter(streams)): expected}
    return {stream: version for stream, version in expected.items() if stream in streams}


class EventStore:
    """The interface, with the reads every database shares. Build one with `open_store`."""

    dialect: str

    def __init__(self, engine: sa.Engine, clock: Clock = utc_now):
        self.engine = engine
        self.clock = clock

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
        return self._append_stamped(events, expected_version, connection, stamp)

    def _append_stamped(
        self,
        events: Sequence[NewEvent],
        expected_version: int | Mapping[str, int] | None,
        connection: sa.Connection | None,
        stamp: datetime,
    ) -> AppendResult:
        """The database's append of a non-empty batch, stamped `stamp` (before raising)."""
        raise NotImplementedError

    def _stream_versions(self, conn: sa.Connection, streams: Sequence[str]) -> dict[str, int]:
        """Current version of each stream: one index probe per stream (max() on the unique
        (stream, version) index), never a scan of a stream's history; a second probe, of
        `archived_tails`, only for a stream whose every event was archived (tables.py)."""
        raise NotImplementedError

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
        self,
        stream: str,
        from_version: int = 1,
        limit: int | None = None,
        *,
        connection: sa.Connection | None = None,
    ) -> list[RecordedEvent]:
        """A stream's events in version order (on `connection`'s transaction, if given)."""
        query = (
            sa.select(*_COLUMNS)
            .where(events_table.c.stream == stream, events_table.c.version >= from_version)
            .order_by(events_table.c.version)
            .limit(limit)
        )
        if connection is not None:
            return [recorded(row) for row in connection.execute(query)]
        return [recorded(row) for row in self._rows(query)]

    def read_archived(
        self, streams: Sequence[str], *, connection: sa.Connection | None = None
    ) -> list[RecordedEvent]:
        """What `archived_tails` keeps of these streams' archived events, in position order:
        all of a policy stream's, the last one of a stream left without events (tables.py).
        Not the log: only the write side's version, tail and policy lookups read it."""
        c = archived_tails.c
        query = (
            sa.select(*(c[column.name] for column in _COLUMNS))
            .where(c.stream.in_(list(streams)))
            .order_by(c.position)
        )
        if connection is not None:
            return [recorded(row) for row in connection.execute(query)]
        return [recorded(row) for row in self._rows(query)]

    def last_event(self, stream: str) -> RecordedEvent | None:
        """The stream's last event: its newest kept one, else its archived tail (None: the
        stream has no event at all)."""
        c = events_table.c
        query = sa.select(*_COLUMNS).where(c.stream == stream).order_by(c.version.desc()).limit(1)
        rows = self._rows(query)
        if rows:
            return recorded(rows[0])
        archived = self.read_archived([stream])
        return archived[-1] if archived else None

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
        """Every event after `after` in order, fetched in pages (for replays of any size)."""
        while True:
            rows = self._rows(self._page(after, up_to, until, batch_size))
            yield from map(recorded, rows)
            if len(rows) < batch_size:
                return
            after = rows[-1][0]

    def event_at_or_before(self, position: int) -> tuple[int, datetime]:
        """(position, recorded_at) of the last event at or before `position` (which may be a
        hole left by a rolled-back append)."""
        c = events_table.c
        query = (
            sa.select(c.position, c.recorded_at)
            .where(c.position <= position)
            .order_by(c.position.desc())
            .limit(1)
        )
        with self.engine.connect() as conn:
            found, when = conn.execute(query).one()
        return found, when

    def last_heartbeat(self, stream: str, at: datetime) -> RecordedEvent | None:
        """The stream's last HeartbeatRecorded recorded at or before `at`."""
        c = events_table.c
        query = (
            sa.select(*_COLUMNS)
            .where(c.stream == stream, c.type == "HeartbeatRecorded", c.recorded_at <= at)
            .order_by(c.version.desc())
            .limit(1)
        )
        rows = self._rows(query)
        return recorded(rows[0]) if rows else None

    def by_position(self, positions: Iterable[int]) -> dict[int, RecordedEvent]:
        """The events at these positions (those that exist)."""
        c, out = events_table.c, {}
        positions = sorted(positions)
        for start in range(0, len(positions), 500):
            query = sa.select(*_COLUMNS).where(c.position.in_(positions[start : start + 500]))
            for r in map(recorded, self._rows(query)):
                out[r.position] = r
        return out

    def by_stream_version(
        self, pairs: Iterable[tuple[str, int]]
    ) -> dict[tuple[str, int], RecordedEvent]:
        """The events with these (stream, version) pairs (those that exist)."""
        c, out = events_table.c, {}
        # Grouped by version (`version = v AND stream IN (...)`: index probes on both
        # databases), not `(stream, version) IN (...)`, for which SQLite scans the whole index
        # (1.3 s per 500 pairs at 600k events).
        by_version: dict[int, list[str]] = {}
        for stream, version in sorted(pairs):
            by_version.setdefault(version, []).append(stream)
        for version, streams in by_version.items():
            for start in range(0, len(streams), 500):
                chunk = streams[start : start + 500]
                query = sa.select(*_COLUMNS).where(c.version == version, c.stream.in_(chunk))
                for r in map(recorded, self._rows(query)):
                    out[(r.stream, r.version)] = r
        return out

    def last_position_at(self, at: datetime, *, inclusive: bool = True) -> int:
        """The last position recorded at (or, not inclusive, before) `at`; 0 if none."""
        with self.engine.connect() as conn:
            return conn.execute(sa.select(self.last_position_at_query(at, inclusive))).scalar() or 0

    def oldest_recorded_at(
        self, after: int = 0, connection: sa.Connection | None = None
    ) -> datetime | None:
        """The recorded_at of the first event after position `after`."""
        c = events_table.c
        query = sa.select(c.recorded_at).where(c.position > after).order_by(c.position).limit(1)
        if connection is not None:
            return connection.execute(query).scalar()
        with self.engine.connect() as conn:
            return conn.execute(query).scalar()

    def newest_recorded_at(
        self, *, after: datetime | None = None, until: datetime | None = None
    ) -> datetime | None:
        """The latest recorded_at in (after, until] (the whole log by default)."""
        c = events_table.c
        query = sa.select(sa.func.max(c.recorded_at))
        if after is not None:
            query = query.where(c.recorded_at > after)
        if until is not None:
            query = query.where(c.recorded_at <= until)
        with self.engine.connect() as conn:
            return conn.execute(query).scalar()

    def first_recorded_after(self, moment: datetime) -> datetime | None:
        c = events_table.c
        query = sa.select(sa.func.min(c.recorded_at)).where(c.recorded_at > moment)
        with self.engine.connect() as conn:
            return conn.execute(query).scalar()

    def head_recorded_at(self) -> datetime | None:
        """The recorded_at of the newest event (one primary-key probe)."""
        c = events_table.c
        last = sa.select(sa.func.max(c.position)).scalar_subquery()
        with self.engine.connect() as conn:
            return conn.execute(sa.select(c.recorded_at).where(c.position == last)).scalar()

    # --- query parts, for reads that join the log's positions with their own tables in one
    # round trip (the read model's checkpoint, time travel's snapshots) --------------------

    @staticmethod
    def head_query() -> sa.ScalarSelect:
        """The head position (0 for an empty log)."""
        return sa.select(
            sa.func.coalesce(sa.func.max(events_table.c.position), 0)
        ).scalar_subquery()

    @staticmethod
    def first_recorded_at_query() -> sa.ScalarSelect:
        c = events_table.c
        return sa.select(c.recorded_at).order_by(c.position).limit(1).scalar_subquery()

    @staticmethod
    def last_position_at_query(at: Any, inclusive: bool = True) -> sa.ScalarSelect:
        """The last position recorded at or before `at` (a value or a bind parameter). Two
        index probes on recorded_at (which never decreases along positions): the latest time,
        then the last position of that (batch-shared) time, rather than max(position) over
        every earlier row."""
        c = events_table.c
        bound = c.recorded_at <= at if inclusive else c.recorded_at < at
        latest = sa.select(sa.func.max(c.recorded_at)).where(bound).scalar_subquery()
        # max(position + 0): with max(position), PostgreSQL walks the primary key backwards
        # filtering on recorded_at (1.1 s at 600k events when `at` is a day back; 12 ms so).
        last = sa.func.max(c.position + 0)
        return sa.select(last).where(c.recorded_at == latest).scalar_subquery()

    RECORDED_AT_TYPE = events_table.c.recorded_at.type

    # --- helpers --------------------------------------------------------------------------

    def _page(self, after, up_to, until, batch_size) -> sa.Select:
        return self._select(after, None, None, None, None, until, up_to).limit(batch_size)

    def _rows(self, query: sa.Select) -> list[Sequence[Any]]:
        with self.engine.connect() as conn:
            return list(conn.execute(query).all())

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
