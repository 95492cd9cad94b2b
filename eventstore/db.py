"""Engine creation for both supported databases."""

from __future__ import annotations

import os
import select
import sqlite3
import threading
import weakref

import psycopg
import sqlalchemy as sa
from sqlalchemy import event

WRITE = "clustermon_write"  # execution option: open the SQLite transaction as a writer

# PostgreSQL sessions give up waiting for a lock after this long (the append lock held by a
# stuck session, a migration's table lock): the request is told to retry instead of holding
# its worker. 0: wait forever (PostgreSQL's default).
LOCK_TIMEOUT_ENV = "CLUSTERMON_DB_LOCK_TIMEOUT_SECONDS"
DEFAULT_LOCK_TIMEOUT_SECONDS = 5.0
# The store's one-statement appends (AutocommitConnections) are cancelled after this long.
STATEMENT_TIMEOUT_ENV = "CLUSTERMON_DB_STATEMENT_TIMEOUT_SECONDS"
DEFAULT_STATEMENT_TIMEOUT_SECONDS = 30.0
CONNECT_TIMEOUT_SECONDS = 5


def _seconds_from_environment(name: str, default: float) -> float:
    """A timeout in seconds from the environment. Read here, below the app's settings, because
    every engine needs it, the migrations' and the command line's included."""
    raw = os.environ.get(name, "").strip()
    try:
        seconds = float(raw) if raw else default
    except ValueError:
        raise ValueError(f"{name} must be a number of seconds, not {raw!r}") from None
    if seconds < 0:
        raise ValueError(f"{name} must not be negative (0: no limit)")
    return seconds


def _milliseconds(seconds: float) -> int:
    return round(seconds * 1000)


def create_engine(url: str, *, lock_timeout: float | None = None, **kwargs) -> sa.Engine:
    """An engine with the settings clustermon relies on.

    SQLite: WAL (readers never block the writer), synchronous=FULL (a 202 is durable),
    a busy timeout, and `BEGIN IMMEDIATE` for write transactions so two writer processes queue
    on the lock instead of failing to upgrade a read lock (SQLITE_BUSY).

    PostgreSQL: `lock_timeout` seconds (default CLUSTERMON_DB_LOCK_TIMEOUT_SECONDS, else 5; 0:
    none) bounds every lock wait of every session, so a lock nobody releases (or a migration's
    queued ACCESS EXCLUSIVE, behind which every reader would queue) ends in an error the API
    answers with 503 + Retry-After instead of holding workers.
    """
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    if url.startswith("postgresql+psycopg://"):
        if lock_timeout is None:
            lock_timeout = _seconds_from_environment(LOCK_TIMEOUT_ENV, DEFAULT_LOCK_TIMEOUT_SECONDS)
        # Session time zone UTC: psycopg then returns timestamptz values with the fixed
        # `timezone.utc` (a server set to 'Etc/UTC' gives ZoneInfo('Etc/UTC'), which costs
        # ~0.25 us more per value read and makes every later offset lookup slower too).
        # Both settings travel with the connection request: no round trip of their own.
        options = f"-c timezone=UTC -c lock_timeout={_milliseconds(lock_timeout)}"
        connect_args = kwargs.setdefault("connect_args", {})
        connect_args.setdefault("options", options)
        # A server that does not answer at all (a host gone, packets dropped) fails a connection
        # attempt in seconds, not after the system's SYN retries (minutes of a held worker).
        connect_args.setdefault("connect_timeout", CONNECT_TIMEOUT_SECONDS)
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
        cursor.execute("PRAGMA busy_timeout=30000")
        if cursor.execute("PRAGMA page_count").fetchone()[0] == 0:
            # Space freed by retention goes back to the file system (eventstore/retention.py).
            # Only a new database can take it, before WAL writes its header; an older one is
            # converted on its first archive.
            cursor.execute("PRAGMA auto_vacuum=INCREMENTAL")
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def on_begin(conn):
        immediate = conn.get_execution_options().get(WRITE, False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def write_connection(engine: sa.Engine) -> sa.Connection:
    return engine.connect().execution_options(**{WRITE: True})


def raw_connection(engine: sa.Engine) -> sa.PoolProxiedConnection:
    """`engine.raw_connection()` with a failure to connect raised as SQLAlchemy's DBAPIError,
    like `engine.connect()` raises it (the pool passes the driver's own error through)."""
    try:
        return engine.raw_connection()
    except psycopg.Error as exc:
        raise sa.exc.DBAPIError.instance(
            None, None, exc, psycopg.Error, connection_invalidated=True
        ) from exc


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

    Each statement is cancelled after `statement_timeout` seconds (default
    CLUSTERMON_DB_STATEMENT_TIMEOUT_SECONDS, else 30; 0: none), set once per connection: an
    append is one short statement, and one that hangs must not keep a request's worker.
    """

    MAX_IDLE = 8

    def __init__(self, engine: sa.Engine, statement_timeout: float | None = None):
        if statement_timeout is None:
            statement_timeout = _seconds_from_environment(
                STATEMENT_TIMEOUT_ENV, DEFAULT_STATEMENT_TIMEOUT_SECONDS
            )
        self._statement_timeout = f"{_milliseconds(statement_timeout)}ms"
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
        pooled = raw_connection(self._engine)
        connection = pooled.driver_connection
        assert connection is not None  # a checked-out pooled connection has its driver's
        pooled.detach()  # ours from now on: the pool neither counts nor closes it
        connection.autocommit = True
        try:
            connection.execute(
                "SELECT set_config('statement_timeout', %s, false)", (self._statement_timeout,)
            )
        except psycopg.Error as exc:
            connection.close()
            raise sa.exc.DBAPIError.instance(None, None, exc, psycopg.Error) from exc
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


# --- the database is away ------------------------------------------------------------------

# SQLSTATEs (PostgreSQL) and result codes (SQLite) worth their own words in the answer.
_PG_REASONS = {
    "55P03": "a database lock was not granted in time",  # lock_not_available (lock_timeout)
    "57014": "the database did not answer in time",  # query_canceled (statement_timeout)
    "53100": "the database's disk is full",  # disk_full
    "53300": "the database has no connection left",  # too_many_connections
    "40001": "the database aborted a conflicting transaction",  # serialization_failure
    "40P01": "the database aborted a conflicting transaction",  # deadlock_detected
}
_SQLITE_FULL = 13
_SQLITE_BUSY = 5


def unavailable_reason(exc: BaseException) -> str | None:
    """Why the database cannot serve right now, if that is what `exc` says: unreachable,
    restarting, out of connections or disk, a lock or statement timeout. Such an error is the
    client's cue to retry later (it is nobody's fault and not a bug); None for anything else.

    The one place that knows these errors, whichever layer they come from: the drivers' own
    (psycopg's and sqlite3's OperationalError and InterfaceError: a connection the pool makes,
    a driver call outside SQLAlchemy), SQLAlchemy's wrapped ones, and its pool's timeout.
    """
    if isinstance(exc, sa.exc.TimeoutError):  # QueuePool: no connection free in time
        return "every database connection is busy"
    if isinstance(exc, sa.exc.DisconnectionError):
        return "the database closed the connection"
    if isinstance(exc, sa.exc.DBAPIError):
        orig = exc.orig
        if isinstance(orig, BaseException) and orig is not exc:
            reason = unavailable_reason(orig)
            if reason is not None:
                return reason
        if exc.connection_invalidated or isinstance(
            exc, sa.exc.OperationalError | sa.exc.InterfaceError
        ):
            return "the database cannot be reached"
        return None
    if isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError):
        sqlstate = getattr(exc, "sqlstate", None)
        return _PG_REASONS.get(sqlstate or "", "the database cannot be reached")
    if isinstance(exc, sqlite3.OperationalError):
        code = getattr(exc, "sqlite_errorcode", None)
        if code is not None and code & 0xFF == _SQLITE_FULL:
            return "the database's disk is full"
        if code is not None and code & 0xFF == _SQLITE_BUSY:
            return "the database is busy"
        return "the database cannot be used"
    return None


def is_unavailable(exc: BaseException) -> bool:
    """Whether `exc` means "the database is unavailable: retry later" (`unavailable_reason`)."""
    return unavailable_reason(exc) is not None
