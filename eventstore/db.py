"""Engine creation for both supported databases."""

from __future__ import annotations

import os
import select
import threading
import weakref

import psycopg
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
    if url.startswith("postgresql+psycopg://"):
        # Session time zone UTC: psycopg then returns timestamptz values with the fixed
        # `timezone.utc` (a server set to 'Etc/UTC' gives ZoneInfo('Etc/UTC'), which costs
        # ~0.25 us more per value read and makes every later offset lookup slower too).
        kwargs.setdefault("connect_args", {}).setdefault("options", "-c timezone=UTC")
    engine = sa.create_engine(url, **kwargs)
    if engine.dialect.name == "sqlite":
        _configure_sqlite(engine)
    elif engine.dialect.driver == "psycopg":
        _configure_psycopg(engine)
    return engine


def _configure_psycopg(engine: sa.Engine) -> None:
    """Pessimistic disconnect handling without a round trip.

    `pool_pre_ping` sends a `SELECT 1` on every checkout: with one-event appends being a single
    round trip, that ping would cost about as much as the append. A pooled connection that sits
    idle has nothing to read unless the server wrote to it, which it does when it ends the
    session (restart, `pg_terminate_backend`, idle timeout: an error message, then EOF). So a
    readable socket on checkout means the connection is dead (or, at worst, holds a stray
    notification): SQLAlchemy then discards it and checks out another one.
    """

    @event.listens_for(engine, "checkout")
    def on_checkout(dbapi_connection, _record, _proxy):
        if _is_dead(dbapi_connection):
            raise sa.exc.DisconnectionError("the server closed this pooled connection")


def _is_dead(connection) -> bool:
    if connection.closed or connection.broken:
        return True
    poller = select.poll()  # not select.select(): it fails on descriptors above 1023
    try:
        poller.register(connection.pgconn.socket, select.POLLIN)
    except Exception:  # psycopg raises OperationalError when it has no socket any more
        return True
    return bool(poller.poll(0))


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


class AutocommitConnections:
    """psycopg connections kept in autocommit mode, for statements that are a transaction of
    their own (the store's append functions).

    Taking a connection from SQLAlchemy's pool and switching it to autocommit and back cost
    ~35 us of client CPU per call, ~8% of a one-event append (BENCHMARKS.md, "Event store").
    These are connections made by the engine (same URL and connect arguments) and then detached
    from its pool. An idle one is checked like the pool's (a readable socket means the server
    ended the session) and replaced; a broken one is dropped. After a fork the parent's
    connections are left untouched (closing them would end the parent's sessions) and the child
    makes its own. Idle connections are closed when this object is collected or `close()`d.
    """

    MAX_IDLE = 8

    def __init__(self, engine: sa.Engine):
        self._engine = engine
        self._lock = threading.Lock()
        self._idle: list = []
        self._pid = os.getpid()
        weakref.finalize(self, _close_all, self._idle)

    def run(self, sql: str, params) -> list[tuple]:
        """The rows of `sql`, run as its own transaction; errors as SQLAlchemy's DBAPIError."""
        connection = self._take()
        try:
            rows = connection.execute(sql, params).fetchall()
        except psycopg.Error as exc:
            if connection.closed or connection.broken:
                connection.close()
            else:
                self._give(connection)
            raise sa.exc.DBAPIError.instance(sql, params, exc, psycopg.Error) from exc
        self._give(connection)
        return rows

    def close(self) -> None:
        with self._lock:
            _close_all(self._idle)

    def _take(self):
        with self._lock:
            if self._pid != os.getpid():  # a forked child: the parent's sessions are not ours
                _INHERITED.extend(self._idle)
                self._idle.clear()
                self._pid = os.getpid()
            while self._idle:
                connection = self._idle.pop()
                if not _is_dead(connection):
                    return connection
                connection.close()
        pooled = self._engine.raw_connection()
        connection = pooled.driver_connection
        assert connection is not None  # a checked-out pooled connection has its driver's
        pooled.detach()  # ours from now on: the pool neither counts nor closes it
        connection.autocommit = True
        return connection

    def _give(self, connection) -> None:
        with self._lock:
            if len(self._idle) < self.MAX_IDLE and self._pid == os.getpid():
                self._idle.append(connection)
                return
        connection.close()


# Connections inherited over a fork: kept referenced so that their finalizers never run in the
# child (which would end the parent's sessions on the shared sockets).
_INHERITED: list = []


def _close_all(connections: list) -> None:
    while connections:
        connections.pop().close()
