"""Stream tickets: one-use, short-lived stand-ins for a token on the live stream.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-08

A browser's EventSource cannot send an Authorization header; `POST /events/stream/tickets`
hands out a ticket valid once within 60 s (api/tokens.py). Stored as SHA-256 hashes like the
tokens, with the hash of the token that asked for it. Rows live about a minute: each new ticket
removes the expired ones.
"""

import sqlalchemy as sa
from alembic import op

from eventstore.tables import UTCDateTime

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "stream_tickets",
        sa.Column("ticket_hash", sa.String(64), primary_key=True),
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("expires_at", UTCDateTime(), nullable=False),
        sa.Column("used_at", UTCDateTime(), nullable=True),
    )
    op.create_index("ix_stream_tickets_expires_at", "stream_tickets", ["expires_at"])


def downgrade() -> None:
    op.drop_index("ix_stream_tickets_expires_at", table_name="stream_tickets")
    op.drop_table("stream_tickets")
