"""Upcasting: stored payloads of an older schema version become the current one on read."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from domain.events import CATALOG, Event

Upcaster = Callable[[dict[str, Any]], dict[str, Any]]
# (type, from_version) -> function returning the payload of version from_version + 1
UPCASTERS: dict[tuple[str, int], Upcaster] = {}


def upcaster(event_type: str, from_version: int) -> Callable[[Upcaster], Upcaster]:
    def register(fn: Upcaster) -> Upcaster:
        UPCASTERS[(event_type, from_version)] = fn
        return fn

    return register


@upcaster("HeartbeatRecorded", 1)
def _heartbeat_v1_to_v2(data: dict[str, Any]) -> dict[str, Any]:
    """v1 agents named components as the product UI does ("Web", "Service") and sent
    `key_fingerprint`; v2 uses lowercase component names and `encryption_key_fingerprint`."""
    data = dict(data)
    data["component"] = data["component"].lower()
    data["encryption_key_fingerprint"] = data.pop("key_fingerprint", None)
    return data


def upcast(event_type: str, schema_version: int, data: dict[str, Any]) -> dict[str, Any]:
    current = CATALOG[event_type].schema_version
    while schema_version < current:
        data = UPCASTERS[(event_type, schema_version)](data)
        schema_version += 1
    return data


def decode(event_type: str, schema_version: int, data: dict[str, Any]) -> Event:
    cls = CATALOG[event_type]
    if schema_version != cls.schema_version:
        data = upcast(event_type, schema_version, data)
    return cls.from_data(data)
