"""The log: one store interface (store.py), one implementation per database (sqlite.py,
postgres.py), the codec (decoding.py, upcasting.py) and the write side's command handler
(commands.py)."""

import sqlalchemy as sa

from domain.events import RecordedEvent
from eventstore.clock import Clock, utc_now
from eventstore.db import create_engine, write_connection
from eventstore.postgres import PostgresEventStore
from eventstore.sqlite import SQLiteEventStore
from eventstore.store import AppendResult, ConcurrencyError, EventStore, NewEvent


def open_store(engine: sa.Engine, clock: Clock = utc_now, **options) -> EventStore:
    """The store for the engine's database."""
    if engine.dialect.name == "postgresql":
        return PostgresEventStore(engine, clock, **options)
    return SQLiteEventStore(engine, clock)


__all__ = [
    "AppendResult",
    "Clock",
    "ConcurrencyError",
    "EventStore",
    "NewEvent",
    "RecordedEvent",
    "create_engine",
    "open_store",
    "utc_now",
    "write_connection",
]
