"""SQLAlchemy Core tables of the write side. Alembic scripts in migrations/ create them."""

from datetime import UTC

import sqlalchemy as sa

metadata = sa.MetaData()


class UTCDateTime(sa.TypeDecorator):
    """Timezone-aware UTC datetimes on both databases.

    PostgreSQL has `timestamptz` and psycopg returns aware values already, so no per-row Python
    work there (it matters for replay speed); SQLite stores naive UTC text that we re-tag.
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is not None and dialect.name == "sqlite":
            return value.astimezone(UTC).replace(tzinfo=None)
        return value

    def process_result_value(self, value, dialect):
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value

    def result_processor(self, dialect, coltype):
        if dialect.name == "postgresql":
            return None
        return super().result_processor(dialect, coltype)


# The position is the database's own counter (SQLite rowid, PostgreSQL identity); its order is
# made equal to commit order by serialising appends (see store.py).
Position = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

events = sa.Table(
    "events",
    metadata,
    sa.Column("position", Position, sa.Identity(), primary_key=True),
    sa.Column("event_id", sa.Uuid(), nullable=False),
    sa.Column("stream", sa.String(250), nullable=False),
    sa.Column("version", sa.Integer(), nullable=False),
    sa.Column("type", sa.String(100), nullable=False),
    sa.Column("schema_version", sa.SmallInteger(), nullable=False),
    # JSON as text: orjson decodes it several times faster than a driver-side JSON type.
    sa.Column("data", sa.Text(), nullable=False),
    sa.Column("metadata", sa.Text(), nullable=False),
    sa.Column("occurred_at", UTCDateTime(), nullable=False),
    sa.Column("recorded_at", UTCDateTime(), nullable=False),
    # UNIQUE on SQLite; on PostgreSQL, where `events` is partitioned, plain indexes of the same
    # names kept unique by the append lock (eventstore/partitions.py says why).
    sa.UniqueConstraint("event_id", name="uq_events_event_id"),
    sa.UniqueConstraint("stream", "version", name="uq_events_stream_version"),
    sa.Index("ix_events_recorded_at", "recorded_at"),
    sa.Index("ix_events_type_position", "type", "position"),
)

# One row per archive done (eventstore/retention.py): the positions it took out of `events`, the
# boundary time, where its files went and the SHA-256 of its manifest.json. Written in the same
# transaction as the delete; removed when the archive is restored.
event_archives = sa.Table(
    "event_archives",
    metadata,
    sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
    sa.Column("first_position", Position, nullable=False),
    sa.Column("last_position", Position, nullable=False),
    sa.Column("before", UTCDateTime(), nullable=False),
    sa.Column("events", sa.BigInteger(), nullable=False),
    sa.Column("path", sa.Text(), nullable=False),
    sa.Column("sha256", sa.String(64), nullable=False),
    sa.Column("archived_at", UTCDateTime(), nullable=False),
)

# What the log still needs of archived events (eventstore/retention.py, `delete_range`): every
# event of the policy streams (`cluster`, `monitor`: the configuration in force is their fold),
# and the last event of each stream whose every event was archived, so that its version goes on
# and its last state (a timeout, a heartbeat) is still known. The same columns as `events`;
# never partitioned (a row per dead stream and per configuration change: small). Only the
# version and tail lookups and the policy read it; every reader of the log ignores it.
archived_tails = sa.Table(
    "archived_tails",
    metadata,
    sa.Column("position", Position, primary_key=True, autoincrement=False),
    sa.Column("event_id", sa.Uuid(), nullable=False),
    sa.Column("stream", sa.String(250), nullable=False),
    sa.Column("version", sa.Integer(), nullable=False),
    sa.Column("type", sa.String(100), nullable=False),
    sa.Column("schema_version", sa.SmallInteger(), nullable=False),
    sa.Column("data", sa.Text(), nullable=False),
    sa.Column("metadata", sa.Text(), nullable=False),
    sa.Column("occurred_at", UTCDateTime(), nullable=False),
    sa.Column("recorded_at", UTCDateTime(), nullable=False),
    sa.Index("ix_archived_tails_stream_version", "stream", "version"),
)
