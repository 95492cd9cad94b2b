"""Reading the current cluster from the read tables the runner keeps.

The tables hold the folded state; the view is evaluated at `now` with the same pure rules as
everywhere else. The state is cached per engine and keyed on the checkpoint (generation,
position), so while nothing new was projected a read costs one small query plus the evaluation;
when the runner moved on, the few new events are folded onto a copy-on-write of the cached
state (readers of the old one are never disturbed) rather than re-reading every row.
"""

from __future__ import annotations

import dataclasses
import threading
import weakref
from collections import deque
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from domain.state import ClusterState, ServerState, apply
from eventstore import open_store
from projections.readmodel import rows as readmodel
from projections.readmodel.tables import VIEW, checkpoints
from projections.readmodel.view import cluster_view

_cache: weakref.WeakKeyDictionary[sa.Engine, tuple[tuple[int, int], ClusterState]] = (
    weakref.WeakKeyDictionary()
)
_cache_lock = threading.Lock()

_KEY = sa.select(checkpoints.c.generation, checkpoints.c.position).where(checkpoints.c.name == VIEW)


def _key(row) -> tuple[int, int]:
    return (row.generation, row.position) if row is not None else (-1, 0)


# Beyond this many new events, re-reading the tables is as cheap as folding them.
_TAIL_LIMIT = 20_000


def copy_on_write_fold(old: ClusterState, events) -> ClusterState:
    """`fold(events, old.copy())` without copying what the events do not touch: the new state
    shares untouched servers with `old`, which readers may still be evaluating (never changed).
    """
    # replace() keeps every other field as it is (shared: the fold replaces, never mutates,
    # channels and silences).
    new = dataclasses.replace(
        old,
        configuration=dataclasses.replace(old.configuration),
        servers=dict(old.servers),
        targets=dict(old.targets),
        channels=dict(old.channels),
        silences=dict(old.silences),
    )
    private: set[str] = set()
    for recorded in events:
        name = getattr(recorded.event, "server", None)
        if name is not None and name not in private:
            server = new.servers.get(name)
            if server is not None:
                new.servers[name] = ServerState(
                    server.name,
                    server.os,
                    server.os_version,
                    server.ip,
                    {n: dataclasses.replace(c) for n, c in server.components.items()},
                )
            # The fold changes a target in place too (its settings, a failure, the collector's
            # heartbeat ending it).
            target = new.targets.get(name)
            if target is not None:
                new.targets[name] = dataclasses.replace(target)
            private.add(name)
        apply(new, recorded)
    with _lineage_lock:
        _lineage.append((new, old, frozenset(private)))
    return new


# The servers each recent copy-on-write fold touched, so a reader that keeps something per
# server (rendered.py) follows a new state without comparing 10,000 servers. The entries hold
# the states themselves, so an id seen here is never reused while it is listed.
_lineage: deque[tuple[ClusterState, ClusterState, frozenset[str]]] = deque(maxlen=16)
_lineage_lock = threading.Lock()


def changed_servers(old: ClusterState | None, new: ClusterState) -> set[str] | None:
    """The names of the servers that may differ between `old` and `new` when `new` was made
    from `old` by recent copy-on-write folds (every other server is the same object in both);
    None when that is not known."""
    if old is None:
        return None
    with _lineage_lock:
        parents = {id(child): (parent, touched) for child, parent, touched in _lineage}
    names: set[str] = set()
    state = new
    while state is not old:
        link = parents.pop(id(state), None)
        if link is None:
            return None
        state, touched = link
        names |= touched
    return names


def _cached_state(engine: sa.Engine) -> ClusterState:
    with engine.connect() as conn:
        key = _key(conn.execute(_KEY).first())
    hit = _cache.get(engine)
    if hit is not None and hit[0] == key:
        return hit[1]
    if hit is not None and hit[0][0] == key[0] and 0 < key[1] - hit[0][1] <= _TAIL_LIMIT:
        # Same generation, a little further: fold the log between the two checkpoints (the
        # tables hold exactly that fold) instead of re-reading 20,000 rows.
        tail = open_store(engine).read_all(after=hit[0][1], limit=None, up_to=key[1])
        state = copy_on_write_fold(hit[1], tail)
        if state.position == key[1]:
            with _cache_lock:
                _cache[engine] = (key, state)
            return state
    # One snapshot for the checkpoint and the rows (READ COMMITTED would give each statement
    # its own); SQLite's WAL read transaction is a snapshot already.
    options = {"isolation_level": "REPEATABLE READ"} if engine.dialect.name == "postgresql" else {}
    with engine.connect().execution_options(**options) as conn, conn.begin():
        key = _key(conn.execute(_KEY).first())
        state = readmodel.load_state(conn)
    with _cache_lock:
        _cache[engine] = (key, state)
    return state


def clear_cache() -> None:
    with _cache_lock:
        _cache.clear()


def current_state(engine: sa.Engine) -> ClusterState:
    """The folded state in the read tables. Shared with other readers of this engine: treat it
    as read-only (take `.copy()` to change it); copying 10,000 servers per request would cost
    more than the read."""
    return _cached_state(engine)


def current_view(engine: sa.Engine, now: datetime) -> dict[str, Any]:
    """The cluster view (the shape of `view.cluster_view`) from the read tables at `now`."""
    return cluster_view(_cached_state(engine), now)
