"""Engine creation for both supported databases."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy import event

WRITE = "clustermon_write"  # execution option: open the SQLite transaction as a writer


def create_engine(url: str, **kwargs) -> sa.Engine:
    """An engine with the settings clustermon relies on.

    SQLite: WAL (readers never block the writer), synchronous=FULL (a 202 is durable),
    a busy timeout, and `BEGIN IMMEDIATE` for write transactions so two writer processes queue
    on the lock instead of failing to upgrade a read lock (SQLITE_BUSY).
    """
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    engine = sa.create_engine(url, pool_pre_ping=url.startswith("postgresql"), **kwargs)
    if engine.dialect.name == "sqlite":
        _configure_sqlite(engine)
    return engine


def _configure_sqlite(engine: sa.Engine) -> None:
    @event.listens_for(engine, "connect")
    def on_connect(dbapi_connection, _record):
        # Let SQLAlchemy's "begin" event emit BEGIN itself (pysqlite's own is deferred-only).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @event.listens_for(engine, "begin")
    def on_begin(conn):
        immediate = conn.get_execution_options().get(WRITE, False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def write_connection(engine: sa.Engine) -> sa.Connection:
    return engine.connect().execution_options(**{WRITE: True})
