"""What request handlers and commands share, built once per app by the factory; reached with
`services(app)` (no module needs the factory for it)."""

from __future__ import annotations

from dataclasses import dataclass

from flask import Flask

from eventstore import Clock, EventStore
from eventstore.commands import ClusterCommands


@dataclass
class Services:
    """What request handlers and commands share; built once per app, never at import."""

    store: EventStore
    clock: Clock
    commands: ClusterCommands

    @property
    def engine(self):
        return self.store.engine


def services(app: Flask) -> Services:
    return app.extensions["clustermon"]
