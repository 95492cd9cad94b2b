"""Heartbeat groups on PostgreSQL in one round trip, when no decision is needed.

`clustermon_append_heartbeats` (eventstore/sql/) checks under the store's ordering lock that
the policy streams are still at the versions the caller decided with and that no heartbeat's
component is stale, then appends them: nearly every ingest request (eventstore/commands.py).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from datetime import datetime
from uuid import UUID

import orjson

from eventstore.postgres import PostgresEventStore, _result
from eventstore.store import APPEND_LOCK_KEY, NOTIFY_CHANNEL, AppendResult, NewEvent

_PG_APPEND_HEARTBEATS = (
    "SELECT kind, event_id, stream, position, version, recorded_at"
    " FROM clustermon_append_heartbeats("
    "%s, %s, %s, %s, %s, %s::jsonb, %s, %b::uuid[], %b::text[], %b::int4[])"
)


def append_current_heartbeats(
    store: PostgresEventStore,
    heartbeats: Sequence[NewEvent],
    *,
    current_since: Sequence[datetime | None],
    policy_versions: Mapping[str, int],
    maybe_duplicates: Collection[UUID],
    recorded_at: datetime,
) -> AppendResult | None:
    """PostgreSQL: append heartbeats in one round trip if no decision is needed, else None
    (and nothing is appended): `clustermon_append_heartbeats` (migration 0008) checks under
    the ordering lock that the streams in `policy_versions` are still at those versions and
    that no heartbeat's component is stale (its last event a timeout, or a heartbeat
    recorded before the heartbeat's `current_since`; None: any heartbeat is current).
    Only the `maybe_duplicates` ids are looked up as duplicates. All `heartbeats` are events
    of one type (the function takes it once)."""
    if not heartbeats:
        return AppendResult([], [])
    dumps = orjson.dumps
    rows, seen = [], set()
    for new, since in zip(heartbeats, current_since, strict=True):
        if new.event_id not in seen:  # the first copy of an id is the one stored
            seen.add(new.event_id)
            event = new.event
            data, metadata = dumps(event).decode(), dumps(new.metadata).decode()
            rows.append((new.event_id, event.stream, data, metadata, new.occurred_at, since))
    store.keep_partitions_ahead()
    first = heartbeats[0].event
    params = (
        store._serialize,
        APPEND_LOCK_KEY,
        NOTIFY_CHANNEL,
        first.type,
        first.schema_version,
        dumps(rows).decode(),
        recorded_at,
        list(maybe_duplicates),
        list(policy_versions),
        list(policy_versions.values()),
    )
    stored, stored_at = {}, None
    for kind, event_id, _stream, position, version, stamp in store._autocommit.run(
        _PG_APPEND_HEARTBEATS, params
    ):
        if kind != "recorded":
            return None
        stored[event_id] = (position, version)
        stored_at = stamp
    result = _result(heartbeats, stored, recorded_at, stored_at)
    store.keep_partitions_ahead(result.last_position)
    return result
