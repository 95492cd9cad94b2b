"""The collector's own table (created by migrations/versions/0010_targets.py)."""

import sqlalchemy as sa

from eventstore.tables import UTCDateTime

metadata = sa.MetaData()

# What the last poll of each target got (GET /targets' `last_poll`): overwritten every poll.
target_polls = sa.Table(
    "target_polls",
    metadata,
    sa.Column("server", sa.String(200), primary_key=True),
    sa.Column("at", UTCDateTime(), nullable=False),  # when the poll started (our clock)
    sa.Column("ok", sa.Boolean(), nullable=False),
    sa.Column("error", sa.Text(), nullable=True),  # why it failed, worded for people
    sa.Column("seconds", sa.Float(), nullable=False),  # how long it took
)
