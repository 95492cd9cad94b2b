"""A cluster-wide cap on new servers per hour: one agent token (leaked, or an agent gone wrong)
cannot add servers without end (`CLUSTERMON_NEW_SERVERS_PER_HOUR`, default 100; 0: no cap).

A server is new when the cluster never heard of it: no row in `known_servers` and no event in
the log. A batch that would bring more new servers than the last hour has room for is refused
whole (429 problem+json with Retry-After); nothing of it is recorded.

Why a table of its own: "servers first heard of in the last hour" is not something the log can
answer cheaply (no index finds each server's first event by time: it would read an hour of
heartbeats), and the read model has no first-heard time and may lag. So `known_servers` holds
one row per server with that time, counted through its index; the log only answers whether a
name is new (one probe per component stream), and rows are copied from it when a server
recorded by another path (or before this table existed) first passes here.

The hot path costs no query: each process keeps the names it knows are known and lets a request
whose servers are all among them through at once (heartbeats are nearly all the traffic, and
almost all come from known servers). A name is looked up once per process. Only names new to
the log and to the table are counted, under a lock on `known_servers` (a table lock on
PostgreSQL, the write lock on SQLite) held while the hour's rows are counted and the new names
inserted: every worker and process decides on the same rows, so the cap is never exceeded.

A name is inserted before its heartbeats are appended (the append belongs to the event store,
and the group commit shares it with other requests): if that append then fails, the server
has used one place of the hour and is known (its retry is let through) without being in the
log yet. The cap is about not letting servers pile up, so erring that way is acceptable.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Collection, Iterator, Mapping, Sequence
from datetime import datetime, timedelta

import sqlalchemy as sa
from flask import Flask

from api.problems import Problem
from api.services import services
from domain.events import COMPONENTS, component_stream
from eventstore import EventStore, write_connection
from eventstore.tables import UTCDateTime

SETTING = "NEW_SERVERS_PER_HOUR"
ENVIRONMENT = f"CLUSTERMON_{SETTING}"
WINDOW = timedelta(hours=1)

known_servers = sa.Table(
    "known_servers",
    sa.MetaData(),
    sa.Column("name", sa.String(200), primary_key=True),
    sa.Column("first_seen_at", UTCDateTime(), nullable=False),
)


class NewServerCap:
    """`admit(servers)` returns when the batch may be recorded, or raises the 429 problem."""

    def __init__(self, store: EventStore, settings: Mapping):
        self.store = store
        self.settings = settings  # read on every call: the app's config, which tests change
        # Names known to be known. Only ever grows (a server never becomes new again); a plain
        # set: `issuperset` and `update` each run under one hold of the GIL.
        self._known: set[str] = set()
        _ = self.per_hour  # a wrong setting stops the app at start-up, not its requests

    @property
    def per_hour(self) -> int:
        cap = self.settings[SETTING]
        if cap < 0:
            raise ValueError(f"{ENVIRONMENT} must be 0 (no cap) or more, not {cap}")
        return cap

    def admit(self, servers: Collection[str]) -> None:
        if self._known.issuperset(servers) or not self.per_hour:
            return
        names = sorted({name for name in servers if name not in self._known})
        try:
            self._admit(names)
        except sa.exc.SQLAlchemyError as exc:  # as the commit's own errors (api/heartbeats.py)
            raise Problem(
                503,
                f"not recorded, retry later ({exc.__class__.__name__})",
                kind="unavailable",
                headers={"Retry-After": "1"},
            ) from None
        self._known.update(names)

    def _admit(self, names: Sequence[str]) -> None:
        listed = self._listed(names)
        heard = self._first_heard_in_log([n for n in names if n not in listed])
        if len(listed) + len(heard) == len(names):  # nothing new: no lock needed
            if heard:
                with self._locked() as conn:
                    self._insert(conn, heard, self._listed(list(heard), conn))
            return
        with self._locked() as conn:
            listed = self._listed(names, conn)  # others may have listed some meanwhile
            now = self.store.clock()
            new = [n for n in names if n not in listed and n not in heard]
            if new:
                window = self._window(conn, now)
                if len(window) + len(new) > self.per_hour:
                    raise self._refusal(new, window, now)
            self._insert(conn, {**heard, **dict.fromkeys(new, now)}, listed)

    # --- the database ---------------------------------------------------------------------

    @contextlib.contextmanager
    def _locked(self) -> Iterator[sa.Connection]:
        """A transaction that alone may write `known_servers` until it ends (readers go on)."""
        with write_connection(self.store.engine) as conn, conn.begin():
            if conn.dialect.name == "postgresql":
                conn.exec_driver_sql("LOCK TABLE known_servers IN SHARE ROW EXCLUSIVE MODE")
            yield conn

    def _listed(self, names: Sequence[str], conn: sa.Connection | None = None) -> set[str]:
        """The names among `names` with a row in `known_servers`."""
        if not names:
            return set()
        query = sa.select(known_servers.c.name).where(known_servers.c.name.in_(names))
        if conn is not None:
            return set(conn.execute(query).scalars())
        with self.store.engine.connect() as own:
            return set(own.execute(query).scalars())

    def _first_heard_in_log(self, names: Sequence[str]) -> dict[str, datetime]:
        """When the log first heard of each of `names` that it has (first event of each of its
        component streams: one index probe per stream)."""
        firsts = self.store.by_stream_version(
            (component_stream(name, component), 1) for name in names for component in COMPONENTS
        )
        heard: dict[str, datetime] = {}
        for (stream, _), recorded in firsts.items():
            name = stream.partition("/")[0]
            if name not in heard or recorded.recorded_at < heard[name]:
                heard[name] = recorded.recorded_at
        return heard

    @staticmethod
    def _window(conn: sa.Connection, now: datetime) -> list[datetime]:
        """When each server first heard of in the last hour was, oldest first."""
        c = known_servers.c
        query = (
            sa.select(c.first_seen_at)
            .where(c.first_seen_at > now - WINDOW)
            .order_by(c.first_seen_at)
        )
        return list(conn.execute(query).scalars())

    @staticmethod
    def _insert(conn: sa.Connection, first_seen: Mapping[str, datetime], listed: set[str]):
        rows = [
            {"name": name, "first_seen_at": at}
            for name, at in first_seen.items()
            if name not in listed
        ]
        if rows:
            conn.execute(known_servers.insert(), rows)

    # --- the answer -----------------------------------------------------------------------

    def _refusal(self, new: Sequence[str], window: Sequence[datetime], now: datetime) -> Problem:
        cap = self.per_hour
        shown = ", ".join(new[:10]) + (f" and {len(new) - 10} more" if len(new) > 10 else "")
        if len(new) > cap:
            wait = WINDOW
            why = (
                f"this request alone names {len(new)} new servers ({shown}), more than the cap"
                f" of {cap} new servers per hour admits: send them in batches of at most {cap}"
            )
        else:
            # Places free up as the hour's earliest newcomers leave the window.
            wait = window[len(window) + len(new) - cap - 1] + WINDOW - now
            why = (
                f"{len(window)} new servers joined in the last hour and this request names"
                f" {len(new)} more ({shown}): the cap is {cap} new servers per hour"
            )
        seconds = max(1, math.ceil(wait.total_seconds()))
        return Problem(
            429,
            f"{why}. Nothing was recorded; retry in {seconds} s. Servers the cluster already"
            f" knows are not limited. To allow more, set {ENVIRONMENT} (0: no cap) for every"
            " clustermon process and restart them.",
            kind="too-many-new-servers",
            headers={"Retry-After": str(seconds)},
        )


def of(app: Flask) -> NewServerCap:
    """The app's cap (one per app: its known names are shared by the view and the fast path)."""
    cap = app.extensions.get("clustermon_new_servers")
    if cap is None:
        cap = app.extensions.setdefault(
            "clustermon_new_servers", NewServerCap(services(app).store, app.config)
        )
    return cap
