"""What request handlers and commands share, built once per app by the factory; reached with
`services(app)` (no module needs the factory for it)."""

from __future__ import annotations

from dataclasses import dataclass

from flask import Flask

from domain.state import ClusterState
from eventstore import Clock, EventStore
from eventstore.commands import ClusterCommands
from projections.readmodel import current as read
from projections.readmodel.runner import ProjectionRunner


@dataclass
class Services:
    """What request handlers and commands share; built once per app, never at import."""

    store: EventStore
    clock: Clock
    commands: ClusterCommands

    @property
    def engine(self):
        return self.store.engine

    def fresh_state(self) -> ClusterState:
        """The read model with everything committed before this request (read-your-writes):
        caught up here, and the tail that another process holds the projection lock for and has
        not committed yet folded in memory (copy-on-write: the cached state is shared)."""
        head = self.store.head_position()
        ProjectionRunner(self.store).catch_up()
        state = read.current_state(self.engine)
        if state.position < head:
            tail = self.store.read_all(state.position, None, up_to=head)
            state = read.copy_on_write_fold(state, tail)
        return state


def services(app: Flask) -> Services:
    return app.extensions["clustermon"]
