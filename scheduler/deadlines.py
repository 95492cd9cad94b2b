"""The deadline index: the cluster state followed from the log, and a min-heap of deadlines.

A sweep must cost what expires, not what exists. The index keeps the shared fold's state in
memory and advances it with `store.read_all(after=state.position)` (nothing new: one indexed
query returning no row), and keeps each watched component's deadline in a min-heap, so finding
what expired is a peek at the top of the heap.

Deadlines come from `domain.rules.deadline` (the same rule the API view uses), recomputed
only for the components an event touched; a configuration change or a `MonitorResumed` moves
every deadline, so it rebuilds the heap (O(n), rare). Superseded heap entries are not searched
for and deleted: an entry counts only while it equals the component's current deadline in
`_deadline` (lazy invalidation), and the heap is compacted when stale entries pile up.
"""

from __future__ import annotations

import heapq
from datetime import datetime

from domain import rules
from domain.events import (
    ComponentRecovered,
    ComponentRemoved,
    ComponentTimedOut,
    ConfigurationChanged,
    HeartbeatRecorded,
    MonitorResumed,
)
from domain.state import ClusterState, ComponentState, apply
from eventstore.store import EventStore

Key = tuple[str, str]  # (server, component)

_COMPONENT_EVENTS = (HeartbeatRecorded, ComponentTimedOut, ComponentRecovered, ComponentRemoved)
_GLOBAL_EVENTS = (ConfigurationChanged, MonitorResumed)


class DeadlineIndex:
    def __init__(self, state: ClusterState | None = None):
        self.state = state if state is not None else ClusterState()
        self._deadline: dict[Key, datetime] = {}
        self._heap: list[tuple[datetime, str, str]] = []
        self._dirty: set[Key] = set()
        self._rebuild = True  # the first follow indexes everything

    @classmethod
    def from_latest_snapshot(cls, store: EventStore) -> DeadlineIndex:
        """Start from the newest snapshot of the projections side, if any, so a scheduler
        starting on a long log folds only the tail after it (snapshots hold the same fold's
        state, so the result is the same as folding from zero)."""
        try:
            from projections.readmodel import snapshots
        except ImportError:  # pragma: no cover - the projections side is optional here
            return cls()
        with store.engine.connect() as conn:
            row = snapshots.latest(conn)
        return cls(snapshots.decode(row.state) if row is not None else None)

    # --- following the log ------------------------------------------------------------------

    def follow(self, store: EventStore, page_size: int = 10_000) -> int:
        """Fold every event committed since the last call; returns how many were folded.

        The head position comes first (max() on the primary key: one index probe whatever the
        table's statistics say), so a sweep with nothing new costs one tiny query; the pages
        are then read as a closed position range, which the planner serves from the primary
        key even on a freshly loaded table (an open `position > n` can get a sequential scan
        while statistics are missing or stale)."""
        folded = 0
        head = store.head_position()
        while self.state.position < head:
            page = store.read_all(after=self.state.position, up_to=head, limit=page_size)
            if not page:
                break  # only holes left below the head (rolled-back appends)
            if page[0].position > self.state.position + 1:  # a hole, or archived events
                self._across(store, page[0].position)
            for recorded in page:
                apply(self.state, recorded)
                event = recorded.event
                if isinstance(event, _COMPONENT_EVENTS):
                    self._dirty.add((event.server, event.component))
                elif isinstance(event, _GLOBAL_EVENTS):
                    self._rebuild = True
            folded += len(page)
        self._reindex()
        return folded

    def _across(self, store: EventStore, next_position: int) -> None:
        """Past archived events (retention deleted them before this index read them), go on
        from the archive's boundary snapshot, with every deadline recomputed."""
        from projections.readmodel import boundary

        past = boundary.state_across(store, self.state.position, next_position)
        if past is not None:
            self.state = past
            self._rebuild = True

    def invalidate(self) -> None:
        """Recompute every deadline at the next follow (after a failed sweep, say)."""
        self._rebuild = True

    def _due(self, component: ComponentState | None) -> datetime | None:
        """The deadline to watch, or None when there is nothing to watch: no heartbeat yet, or a
        timeout already recorded (it stands until the next heartbeat)."""
        if component is None or component.timed_out_at is not None:
            return None
        return rules.deadline(component, self.state.configuration, self.state.monitor_resumed_at)

    def _reindex(self) -> None:
        if self._rebuild:
            self._deadline = {}
            for component in self.state.components():
                due = self._due(component)
                if due is not None:
                    self._deadline[(component.server, component.name)] = due
            self._heap = [(due, server, name) for (server, name), due in self._deadline.items()]
            heapq.heapify(self._heap)
            self._rebuild = False
            self._dirty.clear()
            return
        for key in self._dirty:
            due = self._due(self.state.component(*key))
            if due is None:
                self._deadline.pop(key, None)
            elif self._deadline.get(key) != due:
                self._deadline[key] = due
                heapq.heappush(self._heap, (due, *key))
        self._dirty.clear()
        if len(self._heap) > 2 * len(self._deadline) + 1024:
            self._heap = [(due, server, name) for (server, name), due in self._deadline.items()]
            heapq.heapify(self._heap)

    # --- what expired -----------------------------------------------------------------------

    def next_deadline(self) -> datetime | None:
        while self._heap and self._deadline.get(self._heap[0][1:]) != self._heap[0][0]:
            heapq.heappop(self._heap)
        return self._heap[0][0] if self._heap else None

    def pop_expired(self, now: datetime) -> list[tuple[ComponentState, datetime]]:
        """Components whose deadline passed at `now` and that have no timeout recorded, with
        their logical expiry. They leave the index: the timeout the caller appends (or the
        heartbeat that beat it) comes back through `follow` and decides what to watch next."""
        config, resumed_at = self.state.configuration, self.state.monitor_resumed_at
        expired = []
        # `now > deadline`, not `>=`: the rules say a component is current while now <= deadline.
        while self._heap and self._heap[0][0] < now:
            due, server, name = heapq.heappop(self._heap)
            if self._deadline.get((server, name)) != due:
                continue  # superseded by a later heartbeat or a configuration change
            del self._deadline[(server, name)]
            component = self.state.component(server, name)
            # The shared rule has the last word (it is what the API shows at `now`).
            if (
                component is not None
                and rules.heartbeat(component, config, now, resumed_at).state == "stale"
            ):
                expired.append((component, due))
        return expired

    def __len__(self) -> int:
        return len(self._deadline)
