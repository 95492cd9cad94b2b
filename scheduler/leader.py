"""Leader election: only one scheduler sweeps at a time; the others stand by and retry.

- PostgreSQL: a session-level `pg_try_advisory_lock` held on a dedicated connection (not from
  the pool). The lock lives exactly as long as that session: if the process dies (SIGKILL
  included) the server closes the session and the lock is free at once; if the connection is
  lost, `still_held()` fails on the leader's next check and it steps down. TCP keepalives on
  both ends bound how long a silently dead peer can keep the lock (about 10 s).
- SQLite: an exclusive, non-blocking `fcntl.flock` on a file next to the database file; the
  kernel releases it when the process dies.

Correctness never rests on the lock alone (two sweepers briefly overlapping during a failover
cannot duplicate a timeout: see scheduler/sweep.py); the lock avoids wasted work and keeps
jobs like snapshots single.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import sqlalchemy as sa

if TYPE_CHECKING:
    import psycopg

log = logging.getLogger(__name__)

# A key of its own (the append lock in eventstore/store.py uses 0x636C75737465).
SCHEDULER_LOCK_KEY = 0x636C7573_6C64

# The backend holding the scheduler lock in the *current* database (advisory locks are per
# database, pg_locks is cluster-wide): for operators ("who leads?") and tests.
LOCK_HOLDER_SQL = (
    "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted"
    " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
    " AND classid = CAST(:high AS oid) AND objid = CAST(:low AS oid) AND objsubid = 1"
)
LOCK_HOLDER_PARAMS = {"high": SCHEDULER_LOCK_KEY >> 32, "low": SCHEDULER_LOCK_KEY & 0xFFFFFFFF}

_KEEPALIVES: dict[str, Any] = {
    "connect_timeout": 3,
    "keepalives": 1,
    "keepalives_idle": 3,
    "keepalives_interval": 1,
    "keepalives_count": 3,
    "tcp_user_timeout": 5000,
}


class LeaderLock(Protocol):
    def try_acquire(self) -> bool: ...

    def still_held(self) -> bool: ...

    def release(self) -> None: ...


class PostgresLeaderLock:
    def __init__(self, url: sa.URL | str, key: int = SCHEDULER_LOCK_KEY):
        url = sa.make_url(url).set(drivername="postgresql")
        self.conninfo = url.render_as_string(hide_password=False)
        self.key = key
        self._conn: psycopg.Connection | None = None

    def try_acquire(self) -> bool:
        import psycopg

        try:
            if self._conn is None:
                self._conn = psycopg.connect(self.conninfo, autocommit=True, **_KEEPALIVES)
                # The server's side of the keepalives: a vanished leader host must not keep
                # the lock for the default two hours.
                self._conn.execute("SET application_name = 'clustermon-scheduler'")
                self._conn.execute("SET tcp_keepalives_idle = 3")
                self._conn.execute("SET tcp_keepalives_interval = 1")
                self._conn.execute("SET tcp_keepalives_count = 3")
            row = self._conn.execute("SELECT pg_try_advisory_lock(%s)", (self.key,)).fetchone()
        except psycopg.Error as exc:
            log.warning("leader lock: cannot reach PostgreSQL: %s", exc)
            self.release()
            return False
        return bool(row and row[0])

    def still_held(self) -> bool:
        """The session is alive, hence so is its session-level lock."""
        import psycopg

        if self._conn is None:
            return False
        try:
            self._conn.execute("SELECT 1")
        except psycopg.Error as exc:
            log.warning("leader lock: lost the lock connection: %s", exc)
            self.release()
            return False
        return True

    def release(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            # Closing ends the session, and the server drops the lock with it.
            with contextlib.suppress(Exception):
                conn.close()


class FileLeaderLock:
    """An exclusive flock on `path` (POSIX)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._fd: int | None = None

    def try_acquire(self) -> bool:
        import fcntl

        if self._fd is not None:
            return True
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return False
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return True

    def still_held(self) -> bool:
        """Held while our descriptor still names the file at `path` (if someone deleted or
        replaced the file, another process could lock the new one)."""
        if self._fd is None:
            return False
        try:
            same = os.fstat(self._fd).st_ino == os.stat(self.path).st_ino
        except OSError:
            same = False
        if not same:
            log.warning("leader lock: %s was removed or replaced", self.path)
            self.release()
        return same

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)  # closing the descriptor releases the flock


class ProcessLeaderLock:
    """For an in-memory SQLite database, which only this process can see anyway."""

    _lock = threading.Lock()

    def __init__(self):
        self._held = False

    def try_acquire(self) -> bool:
        if not self._held:
            self._held = self._lock.acquire(blocking=False)
        return self._held

    def still_held(self) -> bool:
        return self._held

    def release(self) -> None:
        if self._held:
            self._held = False
            self._lock.release()


def leader_lock_for(engine: sa.Engine) -> LeaderLock:
    if engine.dialect.name == "postgresql":
        return PostgresLeaderLock(engine.url)
    database = engine.url.database
    if engine.dialect.name == "sqlite" and database and database != ":memory:":
        return FileLeaderLock(f"{database}.scheduler-lock")
    return ProcessLeaderLock()
