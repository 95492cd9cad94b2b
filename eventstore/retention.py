"""Retention, the database side: which events an archive takes, reading them as stored, deleting
them once archived, and putting them back.

The archive files, their manifest and the orchestration live in retention/ (above); these
functions only touch the log's tables, on both databases.

- A range is the events with recorded_at before a time: recorded_at never decreases along
  positions (eventstore/store.py), so that is every position up to one position.
- The newest event is never archived: SQLite numbers a new row after the largest one left, so
  deleting the head would hand out archived positions again (and readers following positions
  would skip the new events). PostgreSQL's sequence would not, but one rule for both is simpler.
- `delete_range` runs under the store's append lock and checks that the range holds what was
  archived before deleting it, in the same transaction that records the `event_archives` row,
  so an archive is either done (files + row, no events) or not done at all.
- PostgreSQL drops the partitions that lie wholly inside the range (no DELETE, no bloat; see
  partitions.py) and DELETEs only the rows of the partial edge partitions. SQLite DELETEs, then
  gives the freed pages back to the file system with `PRAGMA incremental_vacuum` (databases are
  created with auto_vacuum=INCREMENTAL, see db.py; migration 0012 converts older files).
- Before deleting, `delete_range` copies into `archived_tails` (tables.py) every event of the
  policy streams and the last event of each stream the range ends, so that a stream's version
  goes on, its last state is still known and the configuration in force is kept (#21);
  `restore_rows` removes the copies of the events it puts back.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import sqlalchemy as sa

from eventstore import partitions
from eventstore.commands import POLICY_STREAMS
from eventstore.db import write_connection
from eventstore.postgres import _PG_COPY, _PG_COPY_TYPES
from eventstore.store import APPEND_LOCK_KEY, EventStore
from eventstore.tables import archived_tails, event_archives
from eventstore.tables import events as events_table

COLUMNS = (
    "position",
    "event_id",
    "stream",
    "version",
    "type",
    "schema_version",
    "data",
    "metadata",
    "occurred_at",
    "recorded_at",
)
_C = events_table.c
_INCREMENTAL = 2  # PRAGMA auto_vacuum's value for INCREMENTAL
# How many offending positions an overlap error names.
_NAMED = 10


class RangeChanged(Exception):
    """The events in the range are no longer what was archived: nothing was deleted."""


class RestoreOverlap(Exception):
    """Some rows to restore are already in the log: nothing was restored."""

    def __init__(
        self,
        positions: list[int],
        event_ids: list[UUID],
        stream_versions: list[tuple[str, int]] | None = None,
    ):
        parts = []
        if positions:
            parts.append(f"positions {_listed(positions)} are already in the log")
        if event_ids:
            parts.append(f"event ids {_listed(event_ids)} are already in the log")
        if stream_versions:
            # The stream's events hold these versions (e.g. an archive restored twice under
            # other positions, or one taken from another database).
            named = [f"{stream}@{version}" for stream, version in stream_versions]
            parts.append(f"stream versions {_listed(named)} are already in the log")
        super().__init__("cannot restore: " + "; ".join(parts))
        self.positions, self.event_ids = positions, event_ids
        self.stream_versions = stream_versions or []


class RestoreOutOfOrder(RestoreOverlap):
    """The rows to restore are older than another archive still out of the log, which holds
    later events of their streams: nothing was restored (restore the newer archive first)."""

    def __init__(self, streams: list[str]):
        Exception.__init__(
            self,
            f"cannot restore: streams {_listed(streams)} have later events in an archive still"
            " out of the log; restore the newer archives first",
        )
        self.positions, self.event_ids, self.stream_versions = [], [], []
        self.streams = streams


def _listed(values: list) -> str:
    shown = ", ".join(str(v) for v in values[:_NAMED])
    more = len(values) - _NAMED
    return shown + (f" (and {more} more)" if more > 0 else "")


# --- what is kept -----------------------------------------------------------------------------


def oldest_position(engine: sa.Engine) -> int | None:
    """The position of the oldest event kept in the database (None: the log is empty)."""
    with engine.connect() as conn:
        return conn.execute(sa.select(sa.func.min(_C.position))).scalar()


def oldest_recorded_at(engine: sa.Engine) -> datetime | None:
    """The recorded_at of the oldest event kept in the database (None: the log is empty)."""
    with engine.connect() as conn:
        return conn.execute(sa.select(EventStore.first_recorded_at_query())).scalar()


def archives(engine: sa.Engine) -> list[dict[str, Any]]:
    """The `event_archives` rows, oldest range first."""
    with engine.connect() as conn:
        rows = conn.execute(sa.select(event_archives).order_by(event_archives.c.first_position))
        return [dict(row._mapping) for row in rows]


# --- choosing and reading a range -------------------------------------------------------------


def archivable_range(
    engine: sa.Engine, before: datetime, *, whole_partitions: bool = False
) -> tuple[int, int, int] | None:
    """(first, last, count) of the events recorded before `before`, the newest event excepted
    (module docstring); None when there are none.

    `whole_partitions` (PostgreSQL): end the range where the last partition wholly before
    `before` ends, so that deleting it drops partitions and DELETEs nothing; a scheduled job that
    only needs "older than N days, roughly" should ask for this. On SQLite, or on a table that is
    not partitioned, it changes nothing."""
    with engine.connect() as conn:
        last = conn.execute(
            sa.select(EventStore.last_position_at_query(before, inclusive=False))
        ).scalar()
        head = conn.execute(sa.select(sa.func.max(_C.position))).scalar()
        if last is None or head is None:
            return None
        last = min(last, head - 1)
        if whole_partitions and partitions.is_partitioned(conn):
            ends = [p.upper - 1 for p in partitions.partitions(conn) if p.upper - 1 <= last]
            if not ends:
                return None
            last = ends[-1]
        first, last_found, count = conn.execute(
            sa.select(sa.func.min(_C.position), sa.func.max(_C.position), sa.func.count()).where(
                _C.position <= last
            )
        ).one()
    if not count:
        return None
    return first, last_found, count


def iter_range(
    engine: sa.Engine, first: int, last: int, batch: int = 10_000
) -> Iterator[dict[str, Any]]:
    """The events at positions [first, last] in order, as stored: a dict of COLUMNS per row,
    data and metadata the stored JSON text, event_id a UUID, times aware UTC datetimes. Read in
    pages of `batch` rows, each its own short transaction."""
    page = _page_postgresql if engine.dialect.name == "postgresql" else _page_sqlite
    after = first - 1
    while True:
        rows = page(engine, after, last, batch)
        yield from rows
        if len(rows) < batch:
            return
        after = rows[-1]["position"]


def _page_sqlite(engine: sa.Engine, after: int, last: int, batch: int) -> list[dict[str, Any]]:
    query = (
        sa.select(*(_C[name] for name in COLUMNS))
        .where(_C.position > after, _C.position <= last)
        .order_by(_C.position)
        .limit(batch)
    )
    with engine.connect() as conn:
        return [dict(row._mapping) for row in conn.execute(query)]


_QUOTED = ", ".join('"' + name + '"' for name in COLUMNS)
_PG_PAGE = (
    f"SELECT {_QUOTED} FROM events"
    ' WHERE "position" > %s AND "position" <= %s ORDER BY "position" LIMIT %s'
)


def _page_postgresql(engine: sa.Engine, after: int, last: int, batch: int) -> list[dict[str, Any]]:
    """Straight from a binary psycopg cursor: SQLAlchemy's result rows cost several times the
    query for an archive of millions of events (psycopg already gives UUIDs and aware UTC
    datetimes, the session being in UTC: db.py)."""
    with engine.connect() as conn:
        driver = conn.connection.driver_connection
        assert driver is not None
        try:
            with driver.cursor(binary=True) as cursor:
                cursor.execute(_PG_PAGE, (after, last, batch))
                return [dict(zip(COLUMNS, row, strict=True)) for row in cursor]
        finally:
            driver.rollback()


# --- deleting an archived range ---------------------------------------------------------------


def delete_range(
    engine: sa.Engine,
    first: int,
    last: int,
    expected_count: int,
    archive_row: Mapping[str, Any],
) -> None:
    """Delete the events at [first, last] and record `archive_row` in `event_archives` (keys:
    before, path, sha256, optionally archived_at; first_position, last_position and events are
    filled from the range), in one transaction under the append lock.

    Raises RangeChanged, deleting nothing, unless the range holds exactly `expected_count`
    events from `first` to `last` - or none at all while an archive row for exactly this range
    exists, which is a rerun after success: then nothing is done."""
    row = {
        "first_position": first,
        "last_position": last,
        "events": expected_count,
        "archived_at": datetime.now(UTC),
        **archive_row,
    }
    if engine.dialect.name == "postgresql":
        with engine.begin() as conn:
            conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({APPEND_LOCK_KEY})")
            if _checked(conn, first, last, expected_count):
                _keep_tails(conn, first, last)
                _delete_postgresql(conn, first, last)
                conn.execute(event_archives.insert().values(row))
        return
    with write_connection(engine) as conn:
        with conn.begin():  # BEGIN IMMEDIATE: the SQLite writers' lock
            if _checked(conn, first, last, expected_count):
                _keep_tails(conn, first, last)
                conn.execute(events_table.delete().where(_C.position.between(first, last)))
                conn.execute(event_archives.insert().values(row))
        _give_back_space(conn)


def _keep_tails(conn: sa.Connection, first: int, last: int) -> None:
    """Copy into `archived_tails` what the write side still needs of the range (tables.py):
    every event of the policy streams, and each stream's last event when the range holds it
    (its version is the stream's newest, so the stream has nothing after the range). The range
    is read twice (the newest version of each stream in it, then the rows), never per event."""
    in_range = _C.position.between(first, last)
    newest = (
        sa.select(_C.stream, sa.func.max(_C.version).label("version"))
        .where(in_range)
        .group_by(_C.stream)
        .subquery()
    )
    later = events_table.alias("later")
    ended = sa.select(newest.c.stream, newest.c.version).where(
        ~sa.exists().where(later.c.stream == newest.c.stream, later.c.version > newest.c.version)
    )
    kept = sa.select(*(_C[name] for name in COLUMNS)).where(
        in_range,
        sa.or_(
            _C.stream.in_(POLICY_STREAMS),
            sa.tuple_(_C.stream, _C.version).in_(ended),
        ),
    )
    conn.execute(archived_tails.insert().from_select(list(COLUMNS), kept))


def _give_back_space(conn: sa.Connection) -> None:
    """SQLite: return the pages freed by a delete to the file system. A database made before
    auto_vacuum=INCREMENTAL (db.py) is converted by one VACUUM, which needs no transaction."""
    driver = conn.connection.driver_connection
    assert driver is not None
    if driver.execute("PRAGMA auto_vacuum").fetchone()[0] == _INCREMENTAL:
        # executescript steps the statement to its end; execute() stops after the first step,
        # which gives back one page only.
        driver.executescript("PRAGMA incremental_vacuum;")
    else:
        driver.execute("PRAGMA auto_vacuum=INCREMENTAL")
        driver.execute("VACUUM")


def _checked(conn: sa.Connection, first: int, last: int, expected_count: int) -> bool:
    """True: the range is as archived, delete it; False: already deleted by an earlier run."""
    low, high, count = conn.execute(
        sa.select(sa.func.min(_C.position), sa.func.max(_C.position), sa.func.count()).where(
            _C.position.between(first, last)
        )
    ).one()
    head = conn.execute(sa.select(sa.func.max(_C.position))).scalar()
    if count == 0:
        done = conn.execute(
            sa.select(sa.func.count())
            .select_from(event_archives)
            .where(event_archives.c.first_position == first, event_archives.c.last_position == last)
        ).scalar_one()
        if done:
            return False
        raise RangeChanged(f"positions {first}..{last} hold no event and no archive records them")
    if (low, high, count) != (first, last, expected_count):
        raise RangeChanged(
            f"positions {first}..{last} were archived as {expected_count} events from {first}"
            f" to {last}, the log now has {count} from {low} to {high}"
        )
    if head == last:
        raise RangeChanged(f"position {last} is the newest event, which is never archived")
    return True


def _delete_postgresql(conn: sa.Connection, first: int, last: int) -> None:
    """Drop each partition holding nothing but positions of [first, last] (the first one's
    bounds start at 0, below any position, hence the probe rather than a bounds test), then
    DELETE what is left of the range, in the edge partitions only."""
    for partition in partitions.partitions(conn):
        if partition.upper <= first or partition.lower > last:
            continue
        if not partition.within(first, last):
            outside = conn.exec_driver_sql(
                f'SELECT EXISTS (SELECT FROM {partition.name} WHERE "position" < %s'
                f' OR "position" > %s)',
                (first, last),
            ).scalar()
            if outside:
                continue
        # DROP, not DETACH then DROP: one statement, and the lock it takes on `events`
        # (ACCESS EXCLUSIVE, until commit) is the same.
        conn.exec_driver_sql(f"DROP TABLE {partition.name}")
    conn.execute(events_table.delete().where(_C.position.between(first, last)))


# --- restoring --------------------------------------------------------------------------------


def restore_rows(
    engine: sa.Engine,
    rows: Iterable[Mapping[str, Any]],
    *,
    batch: int = 10_000,
    archive_id: int | None = None,
) -> int:
    """Insert archived rows back with their positions, ids and payloads as stored (the dicts
    `iter_range` yields; event_id may be text and times ISO text, as read back from a file), in
    one transaction under the append lock. Returns how many were inserted.

    Raises RestoreOverlap, inserting nothing, when a position or event id is already in the log.
    On success the `event_archives` row of this range is removed: `archive_id`'s, or those whose
    range lies within the restored positions."""
    if engine.dialect.name == "postgresql":
        with engine.begin() as conn:
            conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({APPEND_LOCK_KEY})")
            return _restore(conn, rows, batch, archive_id)
    with write_connection(engine) as conn, conn.begin():
        return _restore(conn, rows, batch, archive_id)


def _restore(conn, rows, batch, archive_id) -> int:
    postgres = conn.dialect.name == "postgresql"
    partitioned = postgres and partitions.is_partitioned(conn)
    total, low, high = 0, None, None
    for chunk in _chunks(map(_normalised, rows), batch):
        positions = [r["position"] for r in chunk]
        _refuse_overlap(conn, chunk)
        if partitioned:
            partitions.cover(conn, min(positions), max(positions))
        if postgres:
            _copy_rows(conn, chunk)
        else:
            conn.execute(events_table.insert(), chunk)
        total += len(chunk)
        low = min(positions) if low is None else min(low, *positions)
        high = max(positions) if high is None else max(high, *positions)
    if not total:
        return 0
    if postgres:
        # Restoring into a database whose counter is below the archive (a new one) must not
        # let the next append draw a restored position.
        sequence = conn.exec_driver_sql(
            "SELECT pg_get_serial_sequence('public.events', 'position')"
        ).scalar_one()
        conn.exec_driver_sql(
            f"SELECT setval('{sequence}', {high}) FROM {sequence} WHERE last_value < {high}"
        )
    archived = event_archives.c
    if archive_id is not None:
        done = archived.id == archive_id
    else:
        done = sa.and_(archived.first_position >= low, archived.last_position <= high)
    conn.execute(event_archives.delete().where(done))
    # Those events are back in the log, which answers for their streams again.
    conn.execute(archived_tails.delete().where(archived_tails.c.position.between(low, high)))
    _refuse_out_of_order(conn)
    return total


def _refuse_out_of_order(conn: sa.Connection) -> None:
    """A stream's version is its kept events' when it has any, its archived tail's only when it
    has none (tables.py): rows put back before a newer archive of the same stream would hide that
    archive's later versions. Checked after the insert, in its transaction (a rollback undoes
    it); `archived_tails` is small, one probe per row."""
    tails, kept = archived_tails.alias("a"), events_table.alias("e")
    newest_kept = (
        sa.select(sa.func.max(kept.c.version)).where(kept.c.stream == tails.c.stream)
    ).scalar_subquery()
    hidden = conn.execute(
        sa.select(tails.c.stream)
        .distinct()
        .where(tails.c.version > newest_kept)
        .order_by(tails.c.stream)
    ).scalars()
    streams = list(hidden)
    if streams:
        raise RestoreOutOfOrder(streams)


def _copy_rows(conn: sa.Connection, chunk: list[dict[str, Any]]) -> None:
    """PostgreSQL: the rows by binary COPY, in the caller's transaction (several times faster
    than an INSERT per row; the store's large appends do the same)."""
    driver = conn.connection.driver_connection
    assert driver is not None
    with driver.cursor().copy(_PG_COPY) as copy:
        copy.set_types(_PG_COPY_TYPES)
        for row in chunk:
            copy.write_row([row[name] for name in COLUMNS])


def _refuse_overlap(conn: sa.Connection, chunk: list[dict[str, Any]]) -> None:
    positions = [r["position"] for r in chunk]
    ids = [r["event_id"] for r in chunk]
    streams, versions = [r["stream"] for r in chunk], [r["version"] for r in chunk]
    if conn.dialect.name == "postgresql":
        # Arrays: one parameter each, where an IN list of a batch's values cost two thirds
        # of a restore in building and parsing the statement.
        taken_positions = list(
            conn.exec_driver_sql(
                'SELECT "position" FROM events WHERE "position" = ANY(%s::bigint[]) ORDER BY 1',
                (positions,),
            ).scalars()
        )
        taken_ids = list(
            conn.exec_driver_sql(
                "SELECT event_id FROM events WHERE event_id = ANY(%s::uuid[])", (ids,)
            ).scalars()
        )
        taken_versions = conn.exec_driver_sql(
            "SELECT e.stream, e.version FROM unnest(%s::text[], %s::int4[]) AS r(s, v)"
            " JOIN events e ON e.stream = r.s AND e.version = r.v ORDER BY 1, 2",
            (streams, versions),
        ).all()
    else:
        taken_positions = list(
            conn.execute(
                sa.select(_C.position).where(_C.position.in_(positions)).order_by(_C.position)
            ).scalars()
        )
        taken_ids = list(conn.execute(sa.select(_C.event_id).where(_C.event_id.in_(ids))).scalars())
        taken_versions = conn.execute(
            sa.select(_C.stream, _C.version)
            .where(sa.tuple_(_C.stream, _C.version).in_(list(zip(streams, versions, strict=True))))
            .order_by(_C.stream, _C.version)
        ).all()
    if taken_positions or taken_ids or taken_versions:
        raise RestoreOverlap(
            taken_positions, taken_ids, [(stream, version) for stream, version in taken_versions]
        )


def _normalised(row: Mapping[str, Any]) -> dict[str, Any]:
    out = {name: row[name] for name in COLUMNS}
    if not isinstance(out["event_id"], UUID):
        out["event_id"] = UUID(str(out["event_id"]))
    for name in ("occurred_at", "recorded_at"):
        if isinstance(out[name], str):
            out[name] = datetime.fromisoformat(out[name])
    return out


def _chunks(items: Iterable[dict[str, Any]], size: int) -> Iterator[list[dict[str, Any]]]:
    chunk: list[dict[str, Any]] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def archived_through_query() -> sa.ScalarSelect:
    """The last position of the newest archive, NULL when nothing was archived: a query part,
    so time travel learns it in the round trip that locates its snapshot (the read side,
    projections/readmodel/boundary.py)."""
    return sa.select(sa.func.max(event_archives.c.last_position)).scalar_subquery()
