"""Agent tokens bound to servers; the servers the cluster has heard of, for the new-server cap.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-27

`api_tokens.servers`: the JSON array of server names and patterns an agent token may speak for;
NULL (every token before this revision) keeps a token unbound. `known_servers`: one row per
server with the time it was first heard of (api/new_servers.py counts the rows of the last
hour); it fills itself from the log as servers send heartbeats, so nothing is copied here.
"""

import sqlalchemy as sa
from alembic import op

from eventstore.tables import UTCDateTime

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("api_tokens") as batch:  # an ALTER TABLE on both
        batch.add_column(sa.Column("servers", sa.Text(), nullable=True))
    op.create_table(
        "known_servers",
        sa.Column("name", sa.String(200), primary_key=True),
        sa.Column("first_seen_at", UTCDateTime(), nullable=False),
    )
    op.create_index("ix_known_servers_first_seen_at", "known_servers", ["first_seen_at"])


def downgrade() -> None:
    op.drop_index("ix_known_servers_first_seen_at", table_name="known_servers")
    op.drop_table("known_servers")
    # SQLite copies the table to drop a column (its role check and unique hash come along:
    # tests/integration/test_migration_0009.py).
    with op.batch_alter_table("api_tokens") as batch:
        batch.drop_column("servers")
