"""Tables of the scheduler side (created by migrations/versions/0003_scheduler.py)."""

import sqlalchemy as sa

from eventstore.tables import UTCDateTime

metadata = sa.MetaData()

# One row per scheduler that has led: when it last confirmed it was watching. The newest
# `last_seen_at` over all rows is "the monitor was alive until then" (see scheduler/gaps.py).
scheduler_liveness = sa.Table(
    "scheduler_liveness",
    metadata,
    sa.Column("detector", sa.String(200), primary_key=True),
    sa.Column("leading_since", UTCDateTime(), nullable=False),
    sa.Column("last_seen_at", UTCDateTime(), nullable=False),
)
