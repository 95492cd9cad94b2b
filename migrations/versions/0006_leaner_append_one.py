"""Leaner append functions on PostgreSQL: each index probed once, the sequence looked up once.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-27

0001's `clustermon_append_one` looked the event id up twice (before the version check and again
in the INSERT) and the stream's version twice, and returned its row through a CTE joined to the
NOTIFY. Same signature, same results (one 'recorded' row, one 'conflict' row, or no row for a
duplicate), same lock and snapshot rules (each statement of a VOLATILE function sees every
append committed before the lock was granted); about 3% more one-event appends per second
(BENCHMARKS.md, "Event store"). `clustermon_prepare_append` (32+ events) looked the position
sequence up once per drawn position.
"""

from alembic import op

from migrations import function_sql

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

# versions/sql/0006_<function>.sql. clustermon_prepare_append is 0001's, except that the sequence
# is looked up once: `pg_get_serial_sequence` per drawn position (a catalog lookup each) cost
# ~4 ms of a 1,000-event append, `nextval` itself ~1 ms.
FUNCTIONS = ("clustermon_append_one", "clustermon_prepare_append")


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for function in FUNCTIONS:
            op.execute(function_sql(revision, function))


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for function in FUNCTIONS:  # back to 0001's definitions
            op.execute(function_sql("0001", function, replace=True))
