"""Heartbeat ingest with each component's last event looked up once: `clustermon_append_heartbeats`.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-27

0007's function probed the (stream, version) index twice per heartbeat (the staleness check's
last event, then the INSERT's max(version)) and parsed the group's JSON twice. Now one statement
parses the rows once, looks up each component's last event once (version, type, recorded_at),
decides staleness from it and inserts unless something is stale. Same signature, same results,
same lock, stamp, duplicate and NOTIFY rules (0007 explains them): for a stale component it
returns the 'stale' rows and appends nothing, otherwise one 'recorded' row per stored event.
A differential review against 0007's function (7,200 random groups, valid and refused, and
concurrent appenders) found no difference for any rows the store builds. Its single-session
part is kept as a test (tests/integration/test_sql_functions.py: both functions on the same
random histories and groups, same rows returned, same events stored); the concurrent part is
not. Rows the store never builds differ: a row without a stream is skipped here where 0007
raised, and a malformed time in a row raises here even where 0007 did not read it.
PostgreSQL's CPU per heartbeat (`bench.heartbeat_function`): groups of 100 and 500 0.88x and
0.77x of 0007's, groups of 9 0.93x, groups of 4 the same; a lone heartbeat 1.07x (a larger plan
to start for each call), which only a nearly idle server sends (BENCHMARKS.md, "HTTP API",
session 6).
"""

from alembic import op

from migrations import function_sql

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(function_sql(revision, "clustermon_append_heartbeats"))


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":  # back to 0007's definition
        op.execute(function_sql("0007", "clustermon_append_heartbeats", replace=True))
