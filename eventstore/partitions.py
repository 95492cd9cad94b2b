"""PostgreSQL: the `events` table partitioned by ranges of positions.

Why by position and not by month: the position is the key every reader follows (`position >
last_seen ORDER BY position`, the primary key), so with position ranges those reads prune to one
or two partitions and the primary key stays the partition key; archiving is by a range of
positions too (recorded_at never decreases along positions, so "before TIME" is "up to position
P"). Partitioned by month, the primary key would have to include recorded_at and every read by
position would probe every partition.

Partitions lie on a fixed grid of PARTITION_SIZE positions: partition k holds [k*SIZE,
(k+1)*SIZE). A fixed grid lets a restore put back the partitions an archive dropped without
knowing how they were cut. One million positions is ~1.7 days of heartbeats for 100 servers (2
components every 30 s) and ~4 hours for 1,000: small enough that retention gives back space in
whole partitions, large enough that a month of retention is a few dozen partitions (each append's
duplicate and version probes visit every partition's index once).

They live in their own schema, PARTITION_SCHEMA, so that the application's schema lists only its
own tables (the parent `events` is in `public`, as before).

Partitions are created ahead by the appending processes: before a store's first append and
whenever an append's last position enters the highest partition, `ensure_ahead` attaches the next
one, so there is always a whole empty partition ahead of the head. CREATE TABLE then ATTACH
PARTITION (not CREATE TABLE ... PARTITION OF) takes only SHARE UPDATE EXCLUSIVE on `events`, which
blocks neither reads nor appends. Processes that race to create the same partition are serialised
by an advisory lock of their own.

Uniqueness: on a partitioned table a UNIQUE index must contain the partition key, so event_id
and (stream, version) are plain (partitioned) indexes here. They stay unique because every
append checks both under the store's append lock before inserting (eventstore/sql/: duplicates
are skipped, versions are checked and numbered from the stream's max), and so does a restore
(eventstore/retention.py). SQLite keeps its UNIQUE constraints.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import sqlalchemy as sa

PARTITION_SIZE = 1_000_000
PARTITION_SCHEMA = "events_partitions"
# Serialises the processes that create partitions ("clpart" in ASCII).
PARTITION_LOCK_KEY = 0x636C70617274

_BOUND = re.compile(r"FROM \('?(-?\d+)'?\) TO \('?(-?\d+)'?\)")


@dataclass(frozen=True, slots=True, order=True)
class Partition:
    lower: int  # inclusive
    upper: int  # exclusive
    name: str  # schema-qualified, quoted

    def within(self, first: int, last: int) -> bool:
        """Whether every position this partition can hold lies in [first, last]."""
        return first <= self.lower and self.upper - 1 <= last


def is_partitioned(conn: sa.Connection) -> bool:
    if conn.dialect.name != "postgresql":
        return False
    kind = conn.exec_driver_sql(
        "SELECT relkind FROM pg_class WHERE oid = to_regclass('public.events')"
    ).scalar()
    return kind == "p"


def partitions(conn: sa.Connection) -> list[Partition]:
    """The partitions of `events`, lowest first ([] when the table is not partitioned)."""
    rows = conn.exec_driver_sql(
        "SELECT quote_ident(n.nspname) || '.' || quote_ident(c.relname),"
        " pg_get_expr(c.relpartbound, c.oid)"
        " FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
        " JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE i.inhparent = to_regclass('public.events')"
    ).all()
    found = []
    for name, bound in rows:
        match = _BOUND.search(bound)
        if match is None:  # pragma: no cover - only range partitions are ever made
            raise RuntimeError(f"partition {name} has an unexpected bound: {bound}")
        found.append(Partition(int(match[1]), int(match[2]), name))
    return sorted(found)


def _create(conn: sa.Connection, lower: int, upper: int) -> None:
    """A new partition [lower, upper): made apart, then attached (see the module docstring)."""
    name = f'{PARTITION_SCHEMA}."p{lower}"'
    conn.exec_driver_sql(
        f"CREATE TABLE {name} (LIKE public.events INCLUDING DEFAULTS INCLUDING CONSTRAINTS)"
    )
    # The CHECK lets ATTACH skip its validation scan (the table is empty anyway, or being
    # filled by a restore right after).
    conn.exec_driver_sql(
        f"ALTER TABLE {name} ADD CONSTRAINT p{lower}_bound"
        f' CHECK ("position" >= {lower} AND "position" < {upper})'
    )
    conn.exec_driver_sql(
        f"ALTER TABLE public.events ATTACH PARTITION {name} FOR VALUES FROM ({lower}) TO ({upper})"
    )
    conn.exec_driver_sql(f"ALTER TABLE {name} DROP CONSTRAINT p{lower}_bound")


def cover(conn: sa.Connection, first: int, last: int) -> int:
    """Make partitions for every grid slot of [first, last] that has none (in the caller's
    transaction, under PARTITION_LOCK_KEY); returns how many were made."""
    conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({PARTITION_LOCK_KEY})")
    existing = partitions(conn)
    made = 0
    for slot in range(first // PARTITION_SIZE, last // PARTITION_SIZE + 1):
        lower, upper = slot * PARTITION_SIZE, (slot + 1) * PARTITION_SIZE
        if not any(p.lower < upper and lower < p.upper for p in existing):
            _create(conn, lower, upper)
            made += 1
    return made


def next_position(conn: sa.Connection) -> int:
    """The position the next append will draw (the identity sequence's next value)."""
    sequence = conn.exec_driver_sql(
        "SELECT pg_get_serial_sequence('public.events', 'position')"
    ).scalar_one()
    last, called = conn.exec_driver_sql(f"SELECT last_value, is_called FROM {sequence}").one()
    return int(last) + 1 if called else int(last)


def ensure_ahead(engine: sa.Engine) -> int | None:
    """Partitions for the next position's slot and the one after it (its own transaction).
    Returns the lower bound of the highest partition (the position past which the next call is
    due), or None when `events` is not partitioned."""
    with engine.begin() as conn:
        if not is_partitioned(conn):
            return None
        following = next_position(conn)
        cover(conn, following, following + PARTITION_SIZE)
        return partitions(conn)[-1].lower
