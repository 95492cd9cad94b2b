"""Group commit for heartbeat ingest.

Request threads hand their validated heartbeats to one committer thread per process and wait.
The committer takes everything that queued up while the previous commit ran and writes it in one
transaction, so concurrent requests share the append lock and the fsync instead of queueing on
them one commit each. A request is answered only after its commit (or with the error).
"""

from __future__ import annotations

import os
import queue
import threading
import time
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from uuid import UUID

from eventstore.decisions import ClusterCommands
from eventstore.store import NewEvent


@dataclass(frozen=True, slots=True)
class Receipt:
    accepted: int
    duplicates: int
    last_position: int | None


@dataclass
class _Pending:
    beats: Sequence[NewEvent]
    client_ids: Collection[UUID]  # ids the client chose: the only ones that can be duplicates
    done: threading.Event = field(default_factory=threading.Event)
    receipt: Receipt | None = None
    error: BaseException | None = None


def size_of(group) -> int:
    return sum(len(p.beats) for p in group)


class GroupCommitter:
    def __init__(self, commands: ClusterCommands, max_events: int = 5000, on_commit=None):
        self.commands = commands
        self.max_events = max_events
        self.on_commit = on_commit  # (accepted, duplicates, events, seconds), for metrics
        self._queue: queue.Queue[_Pending] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._pid: int | None = None
        self._start_lock = threading.Lock()

    def submit(
        self, beats: Sequence[NewEvent], client_ids: Collection[UUID] = (), timeout: float = 30.0
    ) -> Receipt:
        self._ensure_thread()
        pending = _Pending(beats, client_ids)
        self._queue.put(pending)
        if not pending.done.wait(timeout):
            raise TimeoutError("the commit did not finish in time; nothing is acknowledged")
        if pending.error is not None:
            raise pending.error
        assert pending.receipt is not None
        return pending.receipt

    def _ensure_thread(self) -> None:
        # Started lazily, and again after a fork: gunicorn workers inherit no threads.
        if self._thread is not None and self._pid == os.getpid() and self._thread.is_alive():
            return
        with self._start_lock:
            if self._thread is None or self._pid != os.getpid() or not self._thread.is_alive():
                self._queue = queue.Queue()
                self._pid = os.getpid()
                self._thread = threading.Thread(
                    target=self._run, name="clustermon-group-commit", daemon=True
                )
                self._thread.start()

    def _run(self) -> None:
        while True:
            group = [self._queue.get()]
            size = len(group[0].beats)
            while size < self.max_events:
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                group.append(more)
                size += len(more.beats)
            self._commit(group)

    def _commit(self, group: list[_Pending]) -> None:
        started = time.perf_counter()
        try:
            result = self.commands.record_heartbeats(
                [b for p in group for b in p.beats],
                maybe_duplicates={i for p in group for i in p.client_ids},
            )
        except BaseException as exc:  # every waiter must learn the outcome
            for pending in group:
                pending.error = exc
                pending.done.set()
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
                accepted = sum(p.receipt.accepted for p in group)
                self.on_commit(accepted, size_of(group) - accepted, len(result.recorded), seconds)
        except BaseException as exc:  # committed, but the answer could not be made: no 202
            for pending in group:
                pending.error = pending.error or exc
        finally:
            for pending in group:
                pending.done.set()
