"""Stored rows -> `RecordedEvent`s, fast: replays decode every event of the log.

The catalog's events and `RecordedEvent` are frozen slotted dataclasses, whose `__init__` sets
each field through `object.__setattr__` (about 0.1-0.3 us a field: ~2.5 us for a heartbeat and
its record). Here each of those classes gets a *twin*: a plain class with the very same slots
and bases, so CPython accepts `obj.__class__ = FrozenClass` on its instances. A row is decoded
into the twin with ordinary (fast) attribute stores, then the object becomes an instance of the
frozen class itself: same type, same equality and hash, frozen from then on
(tests/unit/test_store_decoding.py compares every catalog type with `eventstore.upcasting.decode`).
Per catalog type one generated function turns a whole row into its RecordedEvent (JSON parsed,
event and record built) in a single frame: ~2 us a heartbeat row here, against ~3.3 us for the
same objects built field by field.

A payload that is not a plain match of the current schema version (older version, missing
required field, unknown key) or a class with custom construction goes through
`eventstore.upcasting.decode` (upcasters, `from_data`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

import orjson

from domain.events import CATALOG, Event, RecordedEvent
from eventstore.upcasting import decode


def _twin(cls: type) -> type:
    """A mutable class with `cls`'s bases and slots: layout-compatible for `__class__` swaps."""
    slots = cls.__slots__  # type: ignore[attr-defined]  # only called with slotted classes
    return type(f"_{cls.__name__}Twin", cls.__bases__, {"__slots__": slots})


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
    r: Any = object.__new__(_RecordedTwin)  # a twin: its attributes are RecordedEvent's
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
    return _ROW_DECODERS.get(row[4], _through_catalog)(row)


def _through_catalog(row: Sequence[Any], data: dict[str, Any] | None = None) -> RecordedEvent:
    type_, schema_version, text, meta, occurred, stamp = row[4:]
    event = decode(type_, schema_version, _loads(text) if data is None else data)
    # row[:6] is exactly the six leading fields; mypy cannot count a slice's length.
    return record(*row[:6], event, _metadata(meta), occurred, stamp)  # type: ignore[call-arg]


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


def _row_decoder(cls: type[Event]) -> Callable[[Sequence[Any]], RecordedEvent] | None:
    """`decode(row)` for rows of `cls`'s current schema version, generated per class: the JSON
    parsed, the event and its record built in one frame, unrolled like dataclasses' own
    `__init__`. Anything else (an older schema version, a payload that is not exactly the
    fields the store writes) goes through the catalog. None for classes that construct
    themselves (`__post_init__`, `from_data`, factories)."""
    fields = dataclasses.fields(cls)  # type: ignore[arg-type]
    custom = (
        "__slots__" not in cls.__dict__
        or hasattr(cls, "__post_init__")
        or cls.from_data.__func__ is not Event.from_data.__func__  # type: ignore[attr-defined]
        or any(f.default_factory is not dataclasses.MISSING or not f.init for f in fields)
    )
    if custom:
        return None
    names = [f.name for f in fields]
    body = [
        "def decode(row):",
        "    position, event_id, stream, version, type_, schema_version, text, meta, occurred,"
        " stamp = row",
        "    data = _loads(text)",
        # The store writes every field, so a payload of the current version has exactly these
        # keys: as many keys as fields, each found, means none missing and no unknown one.
        f"    if schema_version != {cls.schema_version} or len(data) != {len(names)}:",
        "        return _through_catalog(row, data)",
        "    try:",
        *(f"        {name} = data[{name!r}]" for name in names),
        "    except KeyError:",
        "        return _through_catalog(row, data)",
    ]
    for name in cls._datetime_fields:
        body.append(f"    if {name}.__class__ is str:")
        body.append(f"        {name} = _fromisoformat({name})")
    body.append("    e = _new(_twin)")
    body += [f"    e.{name} = {name}" for name in names]
    body.append("    e.__class__ = _cls")
    body.append("    r = _new(_RecordedTwin)")
    body += [
        f"    r.{name} = {value}"
        for name, value in [
            ("position", "position"),
            ("event_id", "event_id"),
            ("stream", "stream"),
            ("version", "version"),
            ("type", "type_"),
            ("schema_version", "schema_version"),
            ("event", "e"),
            ("metadata", "_metadata(meta)"),
            ("occurred_at", "occurred"),
            ("recorded_at", "stamp"),
        ]
    ]
    body += ["    r.__class__ = _RecordedEvent", "    return r"]
    assert [f.name for f in dataclasses.fields(RecordedEvent)] == [
        "position", "event_id", "stream", "version", "type", "schema_version", "event",
        "metadata", "occurred_at", "recorded_at",
    ]  # fmt: skip
    env: dict[str, Any] = {
        "_new": object.__new__,
        "_twin": _twin(cls),
        "_cls": cls,
        "_RecordedTwin": _RecordedTwin,
        "_RecordedEvent": RecordedEvent,
        "_loads": _loads,
        "_metadata": _metadata,
        "_through_catalog": _through_catalog,
        "_fromisoformat": datetime.fromisoformat,
    }
    # Our own text, from the dataclass fields of our own catalog.
    exec(compile("\n".join(body), f"<decode {cls.__name__} row>", "exec"), env)
    return env["decode"]


_ROW_DECODERS = {
    name: decoder for name, cls in CATALOG.items() if (decoder := _row_decoder(cls)) is not None
}
