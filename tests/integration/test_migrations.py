"""Alembic: the same scripts build and remove the schema on SQLite and PostgreSQL.

Each test uses a database of its own (a new SQLite file, a freshly created PostgreSQL database),
never the session's shared one, since downgrading removes everything.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import psycopg
import sqlalchemy as sa
from alembic.script import ScriptDirectory

import migrations
from domain.events import HeartbeatRecorded
from eventstore import create_engine, open_store
from eventstore.store import NewEvent
from tests.conftest import _libpq

ROOT = Path(__file__).resolve().parents[2]


def schema(url: str) -> tuple[set[str], set[str], str | None]:
    """(tables, indexes of events, alembic revision) as the database reports them."""
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            inspector = sa.inspect(conn)
            tables = set(inspector.get_table_names())
            indexes = set()
            if "events" in tables:
                indexes = {i["name"] for i in inspector.get_indexes("events")}
                indexes |= {u["name"] for u in inspector.get_unique_constraints("events")}
            revision = None
            if "alembic_version" in tables:
                revision = conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalar()
            return tables, indexes, revision
    finally:
        engine.dispose()


def pg_functions(url: str) -> set[str]:
    with psycopg.connect(_libpq(url)) as conn:
        rows = conn.execute(
            "SELECT proname FROM pg_proc WHERE pronamespace = 'public'::regnamespace"
        ).fetchall()
    return {name for (name,) in rows}


def head_revision() -> str:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(migrations.alembic_config("sqlite://")).get_current_head()


def test_upgrade_from_empty_then_downgrade_to_empty(empty_url):
    assert schema(empty_url)[0] == set()

    migrations.upgrade(empty_url)

    tables, indexes, revision = schema(empty_url)
    assert {"events", "alembic_version"} <= tables
    assert {
        "uq_events_event_id",
        "uq_events_stream_version",
        "ix_events_recorded_at",
        "ix_events_type_position",
    } <= indexes
    assert revision == head_revision()
    if empty_url.startswith("postgresql"):
        assert "clustermon_append" in pg_functions(empty_url)

    # The migrated schema is the one the store works with.
    engine = create_engine(empty_url)
    try:
        store = open_store(engine)
        event = HeartbeatRecorded(server="web01", component="web", sent_at=store.clock())
        assert store.append([NewEvent(event)]).last_position == 1
        assert store.read_all()[0].event == event
    finally:
        engine.dispose()

    migrations.upgrade(empty_url)  # a second upgrade is a no-op
    assert schema(empty_url)[2] == head_revision()

    migrations.downgrade(empty_url)

    tables, _, _ = schema(empty_url)
    assert tables <= {"alembic_version"}  # Alembic keeps its (empty) bookkeeping table
    assert schema(empty_url)[2] is None
    if empty_url.startswith("postgresql"):
        assert "clustermon_append" not in pg_functions(empty_url)

    migrations.upgrade(empty_url)  # and back up again from empty
    assert "events" in schema(empty_url)[0]


def test_clustermon_db_upgrade_from_the_command_line(empty_url):
    env = {**os.environ, "CLUSTERMON_DATABASE_URL": empty_url}
    executable = Path(sys.executable).with_name("clustermon")

    done = subprocess.run(
        [str(executable), "db", "upgrade"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert done.returncode == 0, done.stderr
    assert "database at head" in done.stderr
    tables, _, revision = schema(empty_url)
    assert "events" in tables
    assert revision == head_revision()


def test_processes_that_start_together_migrate_a_new_database_once(empty_url):
    # Two serve instances (or serve and a scheduler) started at once on a new database: both
    # ran every migration, and one failed on the tables the other had just made.
    commands = [
        subprocess.Popen(
            [sys.executable, "-m", "cli", "db", "upgrade"],
            cwd=ROOT,
            env={**os.environ, "CLUSTERMON_DATABASE_URL": empty_url},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for _ in range(8)
    ]
    outputs = [command.communicate(timeout=120)[0] for command in commands]
    config = migrations.alembic_config(empty_url)
    assert [command.returncode for command in commands] == [0] * 8, outputs
    engine = create_engine(empty_url)
    try:
        with engine.connect() as conn:
            version = conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalars()
            assert list(version) == [ScriptDirectory.from_config(config).get_current_head()]
    finally:
        engine.dispose()
