"""The notifier's table (created by migrations/versions/0011_notifications.py)."""

import sqlalchemy as sa

from eventstore.tables import Position, UTCDateTime

metadata = sa.MetaData()

STATES = ("pending", "sent", "failed", "suppressed")
FOLLOWER = "notify"  # its row in projection_checkpoints

# One row per message a channel is to get, got, or was spared. `seq` orders them (the
# `after=` of GET /notifications/deliveries); `id` = uuid5(channel, causing event): unique.
deliveries = sa.Table(
    "notification_deliveries",
    metadata,
    sa.Column("seq", Position, primary_key=True, autoincrement=True),
    sa.Column("id", sa.Uuid(), nullable=False, unique=True),
    sa.Column("channel", sa.String(100), nullable=False),
    sa.Column("trigger", sa.String(30), nullable=False),
    sa.Column("server", sa.String(200), nullable=True),
    sa.Column("component", sa.String(20), nullable=True),
    sa.Column("source_position", Position, nullable=True),
    sa.Column("state", sa.String(12), nullable=False),  # one of STATES
    sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"),
    sa.Column("last_error", sa.Text(), nullable=True),
    sa.Column("suppressed_by", sa.Text(), nullable=True),  # "flap", "silence <id>", ...
    sa.Column("payload", sa.Text(), nullable=False),  # JSON: the message (API.md's webhook body)
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("next_attempt_at", UTCDateTime(), nullable=True),  # pending: not before then
    sa.Column("claimed_until", UTCDateTime(), nullable=True),  # a sender's lease (CAS claim)
    sa.Column("sent_at", UTCDateTime(), nullable=True),
)
