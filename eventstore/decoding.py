"""Stored rows -> `RecordedEvent`s, fast: replays decode every event of the log.

The catalog's events and `RecordedEvent` are frozen slotted dataclasses, whose `__init__` sets
each field through `object.__setattr__` (about 0.1-0.3 us a field: ~2.5 us for a heartbeat and
its record). Here each of those classes gets a *twin*: a plain class with the very same slots
and bases, so CPython accepts `obj.__class__ = FrozenClass` on its instances. A row is decoded
into the twin with ordinary (fast) attribute stores, then the object becomes an instance of the
frozen class itself: same type, same equality and hash, frozen from then on
(tests/unit/test_store_decoding.py compares every catalog type with `eventstore.events.decode`).

A payload that is not a plain match of the current schema version (older version, missing
required field, unknown key) or a class with custom construction goes through
`eventstore.events.decode` (upcasters, `from_data`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import orjson

from eventstore.events import CATALOG, Event, decode


@dataclass(frozen=True, slots=True)
class RecordedEvent:
    position: int
    event_id: UUID
    stream: str
    version: int
    type: str
    schema_version: int  # as stored; `event` is always the current version
    event: Event
    metadata: Mapping[str, Any]
    occurred_at: datetime
    recorded_at: datetime


def _twin(cls: type) -> type:
    """A mutable class with `cls`'s bases and slots: layout-compatible for `__class__` swaps."""
    return type(f"_{cls.__name__}Twin", cls.__bases__, {"__slots__": cls.__slots__})


_RecordedTwin = _twin(RecordedEvent)


def record(
    position: int,
    event_id: UUID,
    stream: str,
    version: int,
    type_: str,
    schema_version: int,
    event: Event,
    metadata: Mapping[str, Any],
    occurred_at: datetime,
    recorded_at: datetime,
) -> RecordedEvent:
    r = object.__new__(_RecordedTwin)
    r.position = position
    r.event_id = event_id
    r.stream = stream
    r.version = version
    r.type = type_
    r.schema_version = schema_version
    r.event = event
    r.metadata = metadata
    r.occurred_at = occurred_at
    r.recorded_at = recorded_at
    r.__class__ = RecordedEvent
    return r


def recorded(row: Sequence[Any]) -> RecordedEvent:
    """A stored row (position, event_id, stream, version, type, schema_version, data, metadata,
    occurred_at, recorded_at) as a RecordedEvent, its payload upcast and decoded."""
    position, event_id, stream, version, type_, schema_version, data, meta, occurred, stamp = row
    return record(
        position,
        event_id,
        stream,
        version,
        type_,
        schema_version,
        decode_payload(type_, schema_version, _loads(data)),
        _metadata(meta),
        occurred,
        stamp,
    )


def decode_payload(type_: str, schema_version: int, data: dict[str, Any]) -> Event:
    """The event of a stored payload: built directly when it plainly matches the current
    version, else through the catalog (upcasters, `from_data`), which also words the errors."""
    fast = _BUILDERS.get(type_)
    if fast is not None and fast[0] == schema_version:
        event = fast[1](data)
        if event is not None:
            return event
    return decode(type_, schema_version, data)


_loads = orjson.loads
_METADATA_CACHE: dict[str, dict[str, Any]] = {}


def _metadata(text: str) -> dict[str, Any]:
    """Parsed metadata. Most events of a replay carry one of a few metadata texts (the same agent,
    actor, source), so each distinct text is parsed once and handed out as a fresh shallow copy
    (nested values, rare in metadata, are parsed again). Bounded: reset when it grows large."""
    cached = _METADATA_CACHE.get(text)
    if cached is None:
        parsed = orjson.loads(text)
        if not isinstance(parsed, dict) or any(isinstance(v, dict | list) for v in parsed.values()):
            return parsed
        if len(_METADATA_CACHE) >= 1024:
            _METADATA_CACHE.clear()
        _METADATA_CACHE[text] = cached = parsed
    return cached.copy()


def _builder(cls: type[Event]) -> Callable[[dict[str, Any]], Event | None] | None:
    """`build(data)`: the event from a payload of the current version as the store writes it, or
    None when the payload is not such a plain match. Generated per class, unrolled like
    dataclasses' own `__init__`."""
    fields = dataclasses.fields(cls)  # type: ignore[arg-type]
    custom = (
        "__slots__" not in cls.__dict__
        or hasattr(cls, "__post_init__")
        or cls.from_data.__func__ is not Event.from_data.__func__  # type: ignore[attr-defined]
        or any(f.default_factory is not dataclasses.MISSING or not f.init for f in fields)
    )
    if custom:
        return None
    # The store writes every field, so a payload of the current version has exactly these keys:
    # as many keys as fields, each found, means no field missing and no unknown key.
    body = ["def build(data):", f"    if len(data) != {len(fields)}:", "        return None"]
    body += ["    try:"]
    body += [f"        {f.name} = data[{f.name!r}]" for f in fields]
    body += ["    except KeyError:", "        return None"]
    for name in cls._datetime_fields:
        body.append(f"    if {name}.__class__ is str:")
        body.append(f"        {name} = _fromisoformat({name})")
    body.append("    e = _new(_twin)")
    body += [f"    e.{f.name} = {f.name}" for f in fields]
    body += ["    e.__class__ = _cls", "    return e"]
    env = {
        "_new": object.__new__,
        "_twin": _twin(cls),
        "_cls": cls,
        "_fromisoformat": datetime.fromisoformat,
    }
    # Our own text, from the dataclass fields of our own catalog.
    exec(compile("\n".join(body), f"<decode {cls.__name__}>", "exec"), env)
    return env["build"]


_BUILDERS = {
    name: (cls.schema_version, build)
    for name, cls in CATALOG.items()
    if (build := _builder(cls)) is not None
}
