import contextlib
import os
from collections.abc import Iterator
from typing import cast

try:
    import fcntl
except ImportError:  # Windows: one process at a time is up to the operator there
    fcntl = None  # type: ignore[assignment]

from alembic import context

from eventstore.db import create_engine

# Held on PostgreSQL while migrating: see _one_at_a_time.
MIGRATION_LOCK_KEY = 0x636D6D67

config = context.config
# Set by migrations.alembic_config; with a default, never None.
url = cast(str, config.get_main_option("sqlalchemy.url", ""))


@contextlib.contextmanager
def _one_at_a_time(connection) -> Iterator[None]:
    """Processes that start together (two `serve` instances, a scheduler beside them) would all
    migrate a new database, and all but one fail on what the first created. The others wait
    here until it is done, then find nothing to do.

    PostgreSQL: an advisory lock, which goes with the connection. Its wait is not bounded by the
    session's lock_timeout (a migration may take longer than that); the migration's own
    statements still are. SQLite: an exclusive flock on a file beside the database (not on the
    database itself: closing another descriptor of it would drop SQLite's own locks)."""
    if connection.dialect.name == "postgresql":
        timeout = connection.exec_driver_sql("SHOW lock_timeout").scalar()
        connection.exec_driver_sql("SET lock_timeout = 0")
        connection.exec_driver_sql(f"SELECT pg_advisory_lock({MIGRATION_LOCK_KEY})")
        connection.exec_driver_sql("SELECT set_config('lock_timeout', %s, false)", (timeout,))
        connection.commit()
        yield
        return
    database = connection.engine.url.database
    if fcntl is None or not database or database == ":memory:":
        yield
        return
    lock = os.open(f"{database}-migrating.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield
    finally:
        os.close(lock)  # releases the flock


def run_migrations() -> None:
    engine = create_engine(url)
    try:
        with engine.connect() as connection, _one_at_a_time(connection):
            context.configure(
                connection=connection,
                target_metadata=None,
                render_as_batch=connection.dialect.name == "sqlite",
                transaction_per_migration=True,
            )
            with context.begin_transaction():
                context.run_migrations()
            connection.commit()
    finally:
        engine.dispose()


if context.is_offline_mode():
    context.configure(url=url, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()
else:
    run_migrations()
