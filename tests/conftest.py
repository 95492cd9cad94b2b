"""Shared fixtures: real SQLite files and a real PostgreSQL database, never mocks.

PostgreSQL comes from CLUSTERMON_TEST_POSTGRES_URL (default: the local `test` database). Each
test session creates its own scratch database there and drops it at the end. When PostgreSQL
cannot be reached the PostgreSQL tests are skipped loudly on a laptop, and fail under CI=true.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from collections.abc import Iterator

import psycopg
import pytest
import sqlalchemy as sa

import migrations
from eventstore import EventStore, create_engine, open_store

PG_ADMIN_URL = os.environ.get(
    "CLUSTERMON_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _libpq(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://")


@contextlib.contextmanager
def scratch_database(prefix: str) -> Iterator[str]:
    """A brand-new, empty PostgreSQL database beside the test one; dropped on exit."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(_libpq(PG_ADMIN_URL), autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + name
    finally:
        with psycopg.connect(_libpq(PG_ADMIN_URL), autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """URL of a freshly created, migrated database for this test session."""
    try:
        admin = psycopg.connect(_libpq(PG_ADMIN_URL), autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as exc:
        message = f"PostgreSQL is not reachable at {PG_ADMIN_URL}: {exc}"
        if IN_CI:
            pytest.fail(message + " (CI=true: PostgreSQL tests must run)")
        pytest.skip("!!! SKIPPING POSTGRESQL TESTS !!! " + message)
    name = f"clustermon_test_{uuid.uuid4().hex[:12]}"
    admin.execute(f'CREATE DATABASE "{name}"')
    url = PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + name
    migrations.upgrade(url)
    try:
        yield url
    finally:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def empty_url(request, tmp_path) -> Iterator[str]:
    """A brand-new database of each kind, never migrated."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'fresh.db'}"
        return
    request.getfixturevalue("postgres_url")  # skips/fails like every PostgreSQL test
    with scratch_database("clustermon_empty") as url:
        yield url


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("template") / "clustermon.db"
    migrations.upgrade(f"sqlite:///{path}")
    return str(path)


def _truncate_all(url: str) -> None:
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            names = [t for t in sa.inspect(conn).get_table_names() if t != "alembic_version"]
            if names:
                conn.execute(sa.text(f"TRUNCATE {', '.join(names)} RESTART IDENTITY CASCADE"))
    finally:
        engine.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request, tmp_path) -> str:
    """A migrated, empty database of each kind: a SQLite file (WAL) and PostgreSQL."""
    if request.param == "sqlite":
        path = tmp_path / "clustermon.db"
        shutil.copy(request.getfixturevalue("sqlite_template"), path)
        return f"sqlite:///{path}"
    url = request.getfixturevalue("postgres_url")
    _truncate_all(url)
    return url


@pytest.fixture
def pg_database_url(postgres_url) -> str:
    """PostgreSQL only, emptied (for tests about PostgreSQL-specific behaviour)."""
    _truncate_all(postgres_url)
    return postgres_url


@pytest.fixture
def engine(database_url) -> Iterator[sa.Engine]:
    engine = create_engine(database_url)
    yield engine
    engine.dispose()


class FakeClock:
    """A settable clock for code that takes one; freezegun pins time where code reads it."""

    def __init__(self, start):
        self.now = start

    def __call__(self):
        return self.now

    def advance(self, **delta):
        from datetime import timedelta

        self.now += timedelta(**delta)
        return self.now


@pytest.fixture
def clock():
    from datetime import UTC, datetime

    return FakeClock(datetime(2026, 11, 27, 10, 0, tzinfo=UTC))


@pytest.fixture
def store(engine, clock) -> EventStore:
    return open_store(engine, clock)
