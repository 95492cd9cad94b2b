"""Group commit for heartbeat ingest (leader and followers).

Request threads queue their validated heartbeats. When no commit is running, the thread that
queues becomes the leader: it takes everything queued (up to `max_events`), writes it in one
transaction, hands out the receipts, and passes the lead to the first request still queued
(which wakes up to commit the next group) before answering its own request. Concurrent
requests thus share the append lock and the fsync instead of queueing on them one commit each.

The lead moves between request threads rather than living in a committer thread: a dedicated
thread had to be woken and scheduled for every group and then competed with the request
threads for the GIL, which cost milliseconds per commit on a loaded 2-core machine (measured
in BENCHMARKS.md, "HTTP API"). A request is answered only after its commit (or with the error).
Under gevent workers (`serve` on PostgreSQL) the request threads are greenlets and the locks
gevent's: the same code, with a switch between greenlets where threads needed a wake-up.
"""

from __future__ import annotations

import os
import threading
import time
from collections import deque
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from uuid import UUID

import sqlalchemy as sa

from eventstore.commands import ClusterCommands
from eventstore.store import NewEvent


@dataclass(frozen=True, slots=True)
class Receipt:
    accepted: int
    duplicates: int
    last_position: int | None


def _locked() -> threading.Lock:
    lock = threading.Lock()
    lock.acquire()
    return lock


@dataclass(eq=False)
class _Pending:
    beats: Sequence[NewEvent]
    client_ids: Collection[UUID]  # ids the client chose: the only ones that can be duplicates
    # Released once the outcome is known, or once this request is asked to lead the next group
    # (each wait gets exactly one release: a leader never wakes itself). A bare lock rather than
    # a threading.Event, whose Condition costs a second lock and more GIL hand-offs per wake-up.
    wake: threading.Lock = field(default_factory=_locked)
    lead: bool = False
    done: bool = False
    receipt: Receipt | None = None
    error: BaseException | None = None


def size_of(group) -> int:
    return sum(len(p.beats) for p in group)


class GroupCommitter:
    def __init__(self, commands: ClusterCommands, max_events: int = 5000, on_commit=None):
        self.commands = commands
        self.max_events = max_events
        self.on_commit = on_commit  # (accepted, duplicates, recorded events, seconds): metrics
        self._reset()

    def _reset(self) -> None:
        # Also after a fork: a gunicorn worker starts with an empty queue and no leader.
        self._pid = os.getpid()
        self._lock = threading.Lock()
        self._queue: deque[_Pending] = deque()
        self._leading = False

    def submit(
        self, beats: Sequence[NewEvent], client_ids: Collection[UUID] = (), timeout: float = 30.0
    ) -> Receipt:
        pending = _Pending(beats, client_ids)
        if self._pid != os.getpid():
            self._reset()
        with self._lock:
            self._queue.append(pending)
            pending.lead = not self._leading
            self._leading = True
        deadline = time.monotonic() + timeout
        while not pending.done:
            if pending.lead:
                self._lead()  # the group it commits starts with this request
                continue
            if not pending.wake.acquire(timeout=max(0.0, deadline - time.monotonic())):
                with self._lock:
                    if pending.lead:  # asked to lead just now: someone must
                        continue
                    if pending in self._queue:  # not taken: nothing of it will be written
                        self._queue.remove(pending)
                raise TimeoutError("the commit did not finish in time; nothing is acknowledged")
        if pending.error is not None:
            raise pending.error
        assert pending.receipt is not None
        return pending.receipt

    def _lead(self) -> None:
        with self._lock:
            group = [self._queue.popleft()]
            size = len(group[0].beats)
            while self._queue and size < self.max_events:
                group.append(self._queue.popleft())
                size += len(group[-1].beats)
        try:
            self._commit(group)
        finally:
            with self._lock:
                if self._queue:
                    follower = self._queue[0]
                    follower.lead = True
                    follower.wake.release()
                else:
                    self._leading = False

    def _commit(self, group: list[_Pending]) -> None:
        try:
            self._write(group)
        finally:
            _release(group)

    def _write(self, group: list[_Pending]) -> None:
        """Commit the group and set each request's receipt, or its error."""
        started = time.perf_counter()
        try:
            result = self.commands.record_heartbeats(
                [b for p in group for b in p.beats],
                maybe_duplicates={i for p in group for i in p.client_ids},
            )
        except sa.exc.DataError as exc:
            # The database refused a value (validation should have): commit the requests one
            # by one, so that only the request that carries it fails, not its whole group.
            if len(group) == 1:
                _fail(group, exc)
                return
            for pending in group:
                self._write([pending])
            return
        except BaseException as exc:  # every waiter must learn the outcome
            _fail(group, exc)
            return
        seconds = time.perf_counter() - started
        try:
            fresh = {r.event_id for r in result.recorded}
            last = result.last_position or self.commands.store.head_position()
            for pending in group:
                accepted = 0
                for beat in pending.beats:
                    if beat.event_id in fresh:  # the first copy of an id is the one stored
                        fresh.discard(beat.event_id)
                        accepted += 1
                pending.receipt = Receipt(accepted, len(pending.beats) - accepted, last)
            if self.on_commit:
                # Every receipt was set by the loop above (mypy cannot follow that).
                accepted = sum(p.receipt.accepted for p in group)  # type: ignore[union-attr,misc]
                self.on_commit(accepted, size_of(group) - accepted, result.recorded, seconds)
        except BaseException as exc:  # committed, but the answer could not be made: no 202
            for pending in group:
                pending.error = pending.error or exc


def _fail(group: list[_Pending], exc: BaseException) -> None:
    """Every request of the group learns the error."""
    for pending in group:
        pending.error = exc


def _release(group: list[_Pending]) -> None:
    """Mark the group done and wake its followers (the first is the leader: it is not waiting)."""
    for pending in group:
        pending.done = True
    for pending in group[1:]:
        pending.wake.release()
