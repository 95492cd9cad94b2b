"""The tables the code declares are the tables the migrations make, on both databases: a column
added to a Table but forgotten in a revision (or the reverse) fails here, not in production.
Alembic's own comparison judges it. Indexes are declared only in the revisions, so only
tables, columns, types and nullability are compared."""

from __future__ import annotations

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from api import new_servers, tokens
from collector import tables as collector_tables
from eventstore import tables as eventstore_tables
from notify import tables as notify_tables
from projections.audit import report_store
from projections.readmodel import tables as readmodel_tables
from scheduler import tables as scheduler_tables

DECLARED = (
    eventstore_tables.metadata,
    readmodel_tables.metadata,
    report_store.metadata,
    scheduler_tables.metadata,
    collector_tables.metadata,
    notify_tables.metadata,
    tokens.tokens_table.metadata,
    new_servers.known_servers.metadata,
)
COMPARED = {"add_table", "add_column", "remove_column", "modify_type", "modify_nullable"}


def _kind(diff) -> str:
    return (diff[0] if isinstance(diff, list) else diff)[0]


def test_every_declared_table_and_column_is_what_the_migrations_made(engine):
    declared = sa.MetaData()
    for metadata in DECLARED:
        for table in metadata.tables.values():
            table.to_metadata(declared)
    with engine.connect() as conn:
        differences = compare_metadata(MigrationContext.configure(conn), declared)
    assert [d for d in differences if _kind(d) in COMPARED] == []
    made = set(sa.inspect(engine).get_table_names()) - {"alembic_version"}
    assert made == set(declared.tables)
