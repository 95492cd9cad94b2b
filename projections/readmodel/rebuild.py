"""Re-folding the whole log: `rebuild` swaps the result into the read tables, `replay` only
counts (a dry run).

The fold runs outside any write transaction; the swap is one transaction that locks the
checkpoint, folds whatever was appended meanwhile, replaces every row and moves the checkpoint
(and its generation). Readers keep seeing the old rows until that commit (MVCC on PostgreSQL,
the WAL snapshot on SQLite), so the old view keeps serving during the rebuild.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable

from domain.state import ClusterState, apply
from eventstore.db import write_connection
from eventstore.store import EventStore
from projections.readmodel import boundary
from projections.readmodel import rows as readmodel

Progress = Callable[[int], None]  # called with the number of events folded since last call

_REPORT_EVERY = 10_000


def _fold_all(store: EventStore, progress: Progress | None, counts: Counter | None = None):
    state = ClusterState()
    folded = since_report = 0
    for recorded in store.iter_all():
        if recorded.position > state.position + 1:  # a hole, or archived events: see boundary
            state = boundary.state_across(store, state.position, recorded.position) or state
        apply(state, recorded)
        folded += 1
        if counts is not None:
            counts[recorded.type] += 1
        since_report += 1
        if since_report == _REPORT_EVERY:
            if progress is not None:
                progress(since_report)
            since_report = 0
    if progress is not None and since_report:
        progress(since_report)
    return state, folded


def rebuild(store: EventStore, progress: Progress | None = None) -> int:
    """Re-fold the log from zero (from an archive's boundary snapshot, past archived events)
    into the read tables; returns the events folded."""
    state, folded = _fold_all(store, progress)
    with write_connection(store.engine) as conn, conn.begin():
        readmodel.ensure_checkpoint(conn)
        readmodel.lock_checkpoint(conn, wait=True)
        # Appended while we folded: the runner may have projected them already, but the swap
        # replaces its rows, so they must be in ours too.
        tail = store.read_all(after=state.position, limit=None)
        for recorded in tail:
            apply(state, recorded)
        folded += len(tail)
        readmodel.replace_all(conn, state, applied=folded, now=store.clock())
    return folded


def replay(store: EventStore, progress: Progress | None = None) -> dict:
    """Re-fold the log from zero without writing anything; what it found."""
    started = time.perf_counter()
    counts: Counter = Counter()
    state, folded = _fold_all(store, progress, counts)
    return {
        "events": folded,
        "position": state.position,
        "by_type": dict(sorted(counts.items())),
        "servers": len(state.servers),
        "components": sum(1 for _ in state.components()),
        "seconds": round(time.perf_counter() - started, 3),
    }
