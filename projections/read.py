"""Reading the current cluster from the read tables the runner keeps.

The tables hold the folded state; the view is evaluated at `now` with the same pure rules as
everywhere else. The state is cached per engine and keyed on the checkpoint (generation,
position), so while nothing new was projected a read costs one small query plus the evaluation.
"""

from __future__ import annotations

import threading
import weakref
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from projections import readmodel
from projections.state import ClusterState
from projections.tables import VIEW, checkpoints
from projections.view import cluster_view

_cache: weakref.WeakKeyDictionary[sa.Engine, tuple[tuple[int, int], ClusterState]] = (
    weakref.WeakKeyDictionary()
)
_cache_lock = threading.Lock()

_KEY = sa.select(checkpoints.c.generation, checkpoints.c.position).where(checkpoints.c.name == VIEW)


def _key(row) -> tuple[int, int]:
    return (row.generation, row.position) if row is not None else (-1, 0)


def _cached_state(engine: sa.Engine) -> ClusterState:
    with engine.connect() as conn:
        key = _key(conn.execute(_KEY).first())
    hit = _cache.get(engine)
    if hit is not None and hit[0] == key:
        return hit[1]
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
