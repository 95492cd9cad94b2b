"""The projection runner: follows the log from its checkpoint into the read tables.

Each batch is one transaction that locks the checkpoint row, folds the events after it, rewrites
the rows those events touched and moves the checkpoint: a crash leaves either all of a batch or
none of it, so a restart neither loses nor double-counts events. Several processes may run it at
once (gunicorn workers, the scheduler): on PostgreSQL the lock is taken with `SKIP LOCKED`, so a
loser returns at once and leaves the work to the holder; on SQLite the write transaction
(`BEGIN IMMEDIATE`) serialises them and the loser finds nothing left to do.
"""

from __future__ import annotations

import logging
import threading
import weakref
from typing import cast

import sqlalchemy as sa

from domain.events import TARGET_EVENTS, RecordedEvent, _ComponentEvent
from domain.state import ClusterState, apply
from eventstore.db import write_connection
from eventstore.listener import Listener
from eventstore.store import EventStore
from projections.readmodel import boundary
from projections.readmodel import rows as readmodel
from projections.readmodel.tables import VIEW, checkpoints

log = logging.getLogger(__name__)

# The folded state as of a checkpoint (generation, position), per engine and shared by every
# runner of the process (the API builds one per request), so a busy runner does not re-read
# 20,000 rows for every batch. Only the holder of the checkpoint lock takes it out and puts it
# back after its commit; anyone else moving the checkpoint (another process, a rebuild) changes
# the key, and the state is re-read from the tables under the lock.
_states: weakref.WeakKeyDictionary[sa.Engine, tuple[tuple[int, int], ClusterState]] = (
    weakref.WeakKeyDictionary()
)


class ProjectionRunner:
    def __init__(
        self, store: EventStore, *, batch_size: int = 2_000, poll_interval: float = 1.0
    ) -> None:
        self.store = store
        self.engine = store.engine
        self.batch_size = batch_size
        self.poll_interval = poll_interval

    # --- one pass ---------------------------------------------------------------------------

    def _positions(self) -> tuple[int | None, int]:
        """(checkpoint, head) in one query: the whole cost of a call with nothing new."""
        query = sa.select(
            sa.select(checkpoints.c.position).where(checkpoints.c.name == VIEW).scalar_subquery(),
            self.store.head_query(),
        )
        with self.engine.connect() as conn:
            checkpoint, head = conn.execute(query).one()
        return checkpoint, head

    def catch_up(self, limit: int | None = None) -> int:
        """Fold the events after the checkpoint into the read tables, in batches of
        `batch_size` (one transaction each), at most `limit` events; returns how many were
        applied by this call (0 when up to date, or when another process holds the lock)."""
        checkpoint, head = self._positions()
        if checkpoint is None:
            with write_connection(self.engine) as conn, conn.begin():
                readmodel.ensure_checkpoint(conn)
            checkpoint = 0
        if head <= checkpoint:
            return 0
        total = 0
        while limit is None or total < limit:
            size = self.batch_size if limit is None else min(self.batch_size, limit - total)
            applied = self._batch(size)
            if applied is None:  # another process holds the lock: it is doing the work
                break
            total += applied
            if applied < size:
                break
        return total

    def _batch(self, size: int) -> int | None:
        with write_connection(self.engine) as conn:
            with conn.begin():
                locked = readmodel.lock_checkpoint(conn, wait=False)
                if locked is None:
                    return None
                key = (locked.generation, locked.position)
                cached = _states.get(self.engine)
                _states.pop(self.engine, None)  # ours alone until we put it back
                state = cached[1] if cached is not None and cached[0] == key else None
                if state is None:
                    state = readmodel.load_state(conn)
                batch = self.store.read_all(after=locked.position, limit=size)
                if not batch:
                    _states[self.engine] = (key, state)
                    return 0
                dirty: set[tuple[str, str]] = set()
                dirty_targets: set[str] = set()
                if batch[0].position > locked.position + 1:  # a hole, or archived events
                    state = self._across(state, locked.position, batch[0], dirty, dirty_targets)
                targets = state.targets
                for recorded in batch:
                    event = recorded.event
                    # A target's row changes with its own events, and when a heartbeat of the
                    # collector ends its failure.
                    target = targets.get(getattr(event, "server", None))  # type: ignore[arg-type]
                    failing = target is not None and target.failure is not None
                    apply(state, recorded)
                    # Component events name their component; cluster-wide ones do not (the
                    # cluster row is rewritten with every batch anyway).
                    component = getattr(event, "component", None)
                    if component is not None:
                        # An event with a component is a component event: it names its server.
                        event = cast("_ComponentEvent", event)
                        dirty.add((event.server, component))
                        if failing and target.failure is None:  # type: ignore[union-attr]
                            dirty_targets.add(event.server)
                    elif isinstance(event, TARGET_EVENTS):
                        dirty_targets.add(event.server)
                readmodel.write_changes(
                    conn,
                    state,
                    dirty,
                    applied=len(batch),
                    now=self.store.clock(),
                    dirty_targets=dirty_targets,
                )
            # Committed: the state now matches the tables at the new checkpoint. (On an error
            # it is simply not put back: the fold mutated it in place.)
            _states[self.engine] = ((locked.generation, state.position), state)
            return len(batch)

    def _across(
        self,
        state: ClusterState,
        after: int,
        following: RecordedEvent,
        dirty: set[tuple[str, str]],
        dirty_targets: set[str],
    ) -> ClusterState:
        """`state`, or the boundary snapshot's when the events after the checkpoint were
        archived before this runner projected them: then every row of either is rewritten."""
        past = boundary.state_across(self.store, after, following.position)
        if past is None:
            return state
        log.warning(
            "projection runner: the events after %d were archived before it projected them;"
            " resuming from the boundary snapshot at %d",
            after,
            past.position,
        )
        for each in (state, past):
            dirty.update((c.server, c.name) for c in each.components())
            dirty_targets.update(each.targets)
        return past

    # --- lag --------------------------------------------------------------------------------

    def lag(self) -> dict:
        """How far the read tables trail the log: events, and seconds the oldest unprojected
        event has been waiting (by the store's clock; 0.0 when up to date)."""
        with self.engine.connect() as conn:
            checkpoint = readmodel.read_checkpoint(conn)
            position = checkpoint.position if checkpoint else 0
            head = self.store.head_position(conn)
            oldest = self.store.oldest_recorded_at(after=position, connection=conn)
        seconds = 0.0
        if oldest is not None:
            seconds = max(0.0, (self.store.clock() - oldest).total_seconds())
        return {
            "events": max(0, head - position),
            "seconds": seconds,
            "checkpoint": position,
            "head": head,
        }

    # --- the loop ---------------------------------------------------------------------------

    def run_forever(self, stop: threading.Event) -> None:
        """Catch up, then sleep until the store announces new events (PostgreSQL LISTEN on
        "clustermon_events") or `poll_interval` passes (the fallback, and SQLite's only way),
        until `stop` is set. Errors are logged and retried: the checkpoint makes that safe."""
        listener = Listener(self.engine)
        try:
            while not stop.is_set():
                try:
                    if self.catch_up(limit=self.batch_size) >= self.batch_size:
                        continue  # more to do: do not wait
                except Exception:
                    log.exception("projection runner: catch-up failed; retrying")
                    listener.close()
                    listener = Listener(self.engine)
                listener.wait(self.poll_interval, stop)
        finally:
            listener.close()
