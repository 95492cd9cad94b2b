"""The write side: event catalog, append-only store, and the decisions that produce events."""

from eventstore.clock import Clock, utc_now
from eventstore.db import create_engine, write_connection
from eventstore.store import (
    AppendResult,
    ConcurrencyError,
    EventStore,
    NewEvent,
    RecordedEvent,
)

__all__ = [
    "AppendResult",
    "Clock",
    "ConcurrencyError",
    "EventStore",
    "NewEvent",
    "RecordedEvent",
    "create_engine",
    "utc_now",
    "write_connection",
]
