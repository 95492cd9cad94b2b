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
    sa.UniqueConstraint("event_id", name="uq_events_event_id"),
    sa.UniqueConstraint("stream", "version", name="uq_events_stream_version"),
    sa.Index("ix_events_recorded_at", "recorded_at"),
    sa.Index("ix_events_type_position", "type", "position"),
)
