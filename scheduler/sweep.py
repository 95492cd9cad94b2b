"""The timeout sweep: append `ComponentTimedOut` for every component whose deadline passed.

Exactly once by construction: each timeout is appended with the expected version of its
component's stream, i.e. "only if nothing happened to this component since the state I judged".
If a heartbeat (or another sweeper's timeout) got there first the append raises
ConcurrencyError and the sweep skips that component; the event that won comes back through
the index's next `follow`. So two sweepers never write the same timeout twice, and a timeout is
never written after a heartbeat that arrived in time. Leader election (scheduler/leader.py)
only keeps the second sweeper idle; correctness does not depend on it.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from domain import rules
from domain.events import ComponentTimedOut, component_stream
from eventstore.store import ConcurrencyError, EventStore, NewEvent, RecordedEvent
from scheduler.deadlines import DeadlineIndex

# A namespace for deterministic timeout ids: a retry after an ambiguous commit (the connection
# dropped during COMMIT) is then recognised by the store as the same event.
_TIMEOUT_NAMESPACE = uuid.UUID("6c1f1d4e-5b4a-4c55-9a43-3f1e4f0a7d21")
BATCH_SIZE = 500


def default_detector() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass(frozen=True, slots=True)
class _Pending:
    stream: str
    expected_version: int
    new: NewEvent


def emit_timeouts(
    store: EventStore,
    now: datetime,
    *,
    index: DeadlineIndex | None = None,
    detector: str | None = None,
) -> list[RecordedEvent]:
    """Append one `ComponentTimedOut` per component whose deadline passed at `now`.

    `index` is the caller's long-lived DeadlineIndex (the scheduler keeps one, so a sweep reads
    only what is new in the log and touches only what expired); without it the log is folded
    from the start, which is fine for tests and one-off commands. Returns the events appended.
    """
    index = index if index is not None else DeadlineIndex()
    index.follow(store)
    expired = index.pop_expired(now)
    if not expired:
        return []
    detector = detector or default_detector()
    config = index.state.configuration
    pending = []
    for component, expired_at in expired:
        stream = component_stream(component.server, component.name)
        event = ComponentTimedOut(
            server=component.server,
            component=component.name,
            expired_at=expired_at,
            detected_at=now,
            timeout_seconds=rules.timeout_seconds(component.name, config),
            configuration_version=config.version,
            last_heartbeat_position=component.last_heartbeat_position,
            detector=detector,
        )
        event_id = uuid.uuid5(
            _TIMEOUT_NAMESPACE, f"{stream}\x00{component.stream_version}\x00{expired_at}"
        )
        pending.append(_Pending(stream, component.stream_version, NewEvent(event, event_id)))
    recorded: list[RecordedEvent] = []
    try:
        for start in range(0, len(pending), BATCH_SIZE):
            recorded += _append_skipping_conflicts(store, pending[start : start + BATCH_SIZE])
    except BaseException:
        # Nothing is lost: the components left unwritten are found again by a full re-index.
        index.invalidate()
        raise
    return recorded


def _append_skipping_conflicts(store: EventStore, batch: Sequence[_Pending]):
    """One transaction for the batch; a stream that moved on is dropped and the rest retried
    (each retry removes one stream, and conflicts are rare: a heartbeat racing its deadline)."""
    batch = list(batch)
    while batch:
        try:
            return store.append(
                [p.new for p in batch],
                expected_version={p.stream: p.expected_version for p in batch},
            ).recorded
        except ConcurrencyError as conflict:
            batch = [p for p in batch if p.stream != conflict.stream]
    return []
