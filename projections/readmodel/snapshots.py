"""Snapshots of the full folded state, so time travel folds a short tail instead of the log.

Cadence: a snapshot is due when `every_events` events were appended since the last one, or
when `every_seconds` passed since the last one and anything was appended. Defaults: every
500 events or 10 minutes. The event count bounds the tail a time-travel query folds (the
latency of `view_at`: at most 500 events, ~250 on average); for 1,000 servers a snapshot is
~25 KiB compressed, ~50 bytes per event it stands for against ~500 bytes per event in the
log. The time bound keeps a quiet cluster's history cheap to reach. One call catches up
completely: when it folds a long stretch (first run, scheduler down for a while) it writes a
snapshot at every `every_events` boundary on the way.

Snapshots are caches of the log: losing them loses nothing, and two processes writing the same
position write the same bytes (the insert ignores a conflict).

Readers keep them too (`fold_keeping`): a time-travel or audit read that has to fold a long
stretch (no scheduler running, so no snapshots yet) leaves snapshots along it and at its end,
so the next reads near those times fold a short tail. Two readers folding the same stretch
from the same snapshot write the same positions, same bytes.
"""

from __future__ import annotations

import logging
import zlib
from collections.abc import Callable, Iterable
from dataclasses import fields
from datetime import datetime, timedelta

import orjson
import sqlalchemy as sa

from domain.events import RecordedEvent
from domain.state import (
    ClusterState,
    ComponentState,
    Configuration,
    ServerState,
    TargetState,
    apply,
)
from eventstore.db import write_connection
from eventstore.store import EventStore
from projections.readmodel.tables import snapshots

log = logging.getLogger(__name__)

EVERY_EVENTS = 500
EVERY_SECONDS = 600
KEEP_EVERY = 10 * EVERY_EVENTS  # readers' cadence along a long fold (fold_keeping)


# Components are stored as columns in field order (not dicts): decoding a snapshot is on the
# path of every time-travel query; positional construction is ~3x cheaper than keywords, and
# columns let the decoder map over them in C instead of looping per component in Python.
_COMPONENT_FIELDS = [f.name for f in fields(ComponentState)]
_DATETIMES = [
    i
    for i, name in enumerate(_COMPONENT_FIELDS)
    if name in ("last_heartbeat_at", "last_sent_at", "timed_out_at")
]
FORMAT = 3  # 2 (rows per server) and 1 (no "format" key: ClusterState.to_dict()) still read


def encode(state: ClusterState) -> bytes:
    components = list(state.components())
    data = {
        "format": FORMAT,
        "configuration": {
            f.name: getattr(state.configuration, f.name) for f in fields(Configuration)
        },
        "position": state.position,
        "recorded_at": state.recorded_at,
        "monitor_resumed_at": state.monitor_resumed_at,
        "servers": [[s.name, s.os, s.os_version, s.ip] for s in state.servers.values()],
        # One list per ComponentState field, in field order (see decode).
        "components": [[getattr(c, name) for c in components] for name in _COMPONENT_FIELDS],
        "targets": [t.to_dict() for t in state.targets.values()],
        "channels": [c.to_dict() for c in state.channels.values()],
        "silences": [x.to_dict() for x in state.silences.values()],
    }
    # Level 1: a 1,000-server state shrinks ~20x in a few ms; heavier levels gain little.
    return zlib.compress(orjson.dumps(data), 1)


def decode(blob: bytes) -> ClusterState:
    data = orjson.loads(zlib.decompress(blob))
    version = data.get("format")
    if version == 2:
        return _decode_rows(data)
    if version != FORMAT:
        return ClusterState.from_dict(data)
    state = _decode_header(data)
    servers = state.servers
    for name, os_, os_version, ip in data["servers"]:
        servers[name] = ServerState(name, os_, os_version, ip)
    columns = data["components"]
    for i in _DATETIMES:
        # Components beaten in one commit share their stamps: each distinct text parsed once.
        # (Sharing one datetime between components is safe: datetimes are immutable.)
        texts = columns[i]
        parsed: dict[str | None, datetime | None] = {
            text: datetime.fromisoformat(text) for text in set(texts) if text is not None
        }
        parsed[None] = None
        columns[i] = list(map(parsed.__getitem__, texts))
    for c in map(ComponentState, *columns):
        servers[c.server].components[c.name] = c
    for t in data.get("targets", ()):  # snapshots taken before targets existed have none
        target = TargetState.from_dict(t)
        state.targets[target.server] = target
    state.set_notification_config(data.get("channels", ()), data.get("silences", ()))
    return state


def _decode_header(data: dict) -> ClusterState:
    parse = datetime.fromisoformat
    return ClusterState(
        configuration=Configuration(**data["configuration"]),
        position=data["position"],
        recorded_at=data["recorded_at"] and parse(data["recorded_at"]),
        monitor_resumed_at=data["monitor_resumed_at"] and parse(data["monitor_resumed_at"]),
    )


def _decode_rows(data: dict) -> ClusterState:
    """Format 2: components as rows under their server."""
    state = _decode_header(data)
    parse = datetime.fromisoformat
    servers = state.servers
    for name, os_, os_version, ip, rows in data["servers"]:
        server = servers[name] = ServerState(name, os_, os_version, ip)
        for row in rows:
            for i in _DATETIMES:
                if row[i] is not None:
                    row[i] = parse(row[i])
            component = ComponentState(*row)
            server.components[component.name] = component
    return state


def latest(
    conn: sa.Connection, at_or_before: int | None = None, *, with_state: bool = True
) -> sa.Row | None:
    """The newest snapshot (at or before a position), with its state blob if asked."""
    columns = [snapshots.c.position, snapshots.c.taken_at]
    query = sa.select(*columns, snapshots.c.state) if with_state else sa.select(*columns)
    if at_or_before is not None:
        query = query.where(snapshots.c.position <= at_or_before)
    return conn.execute(query.order_by(snapshots.c.position.desc()).limit(1)).first()


def _row(state: ClusterState, taken_at: datetime) -> dict:
    return {
        "position": state.position,
        "recorded_at": state.recorded_at,
        "taken_at": taken_at,
        "state": encode(state),
    }


def _insert(engine: sa.Engine, rows: list[dict]) -> None:
    """Insert snapshot rows in one transaction; a position already there is left as it is
    (another process wrote the same state)."""
    if not rows:
        return
    if engine.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        # mypy wants one type per name; both dialects' insert have on_conflict_do_nothing.
        from sqlalchemy.dialects.sqlite import insert  # type: ignore[assignment]
    with write_connection(engine) as conn, conn.begin():
        conn.execute(insert(snapshots).on_conflict_do_nothing(), rows)


def keep(store: EventStore, state: ClusterState) -> None:
    """Write a snapshot of `state` at its position now (one already there is left as it is)."""
    _insert(store.engine, [_row(state, store.clock())])


def fold_keeping(
    store: EventStore,
    state: ClusterState,
    events: Iterable[RecordedEvent],
    *,
    every_events: int = KEEP_EVERY,
    last_after: int = EVERY_EVENTS,
) -> ClusterState:
    """Fold `events` into `state` (in place), keeping a snapshot every `every_events` events
    past the position it started from and one of the final state (unless the last one kept
    is within `last_after` events of it); returns the state. For readers: the next read at
    that time folds nothing, one at an earlier time at most `every_events`, even when no
    scheduler takes snapshots. (Not one every 500 events as the scheduler keeps them: encoding
    a 1,000-server state costs about what folding 500 events does, which would double the
    cost of the read that pays for it.) The snapshots are written together at the end, in one
    short write transaction; failing to write them (a database busy with writers) costs the
    next reader time, never this one its answer."""
    rows: list[dict] = []
    last = state.position
    now = store.clock()
    for recorded in events:
        apply(state, recorded)
        if state.position - last >= every_events:
            rows.append(_row(state, now))
            last = state.position
    if state.position - last > last_after:
        rows.append(_row(state, now))
    try:
        _insert(store.engine, rows)
    except sa.exc.OperationalError:
        log.warning("could not keep %d snapshot(s) of a long fold", len(rows), exc_info=True)
    return state


def take_snapshot(
    store: EventStore,
    *,
    every_events: int = EVERY_EVENTS,
    every_seconds: float | None = EVERY_SECONDS,
    force: bool = False,
    progress: Callable[[int], None] | None = None,
) -> int | None:
    """Write the snapshots that are due; returns the last position snapshotted, or None when
    none was due (`force`: snapshot the head whenever anything is new)."""
    engine, now = store.engine, store.clock()
    with engine.connect() as conn:
        last = latest(conn, with_state=False)
        head = store.head_position(conn)
    last_position = last.position if last is not None else 0
    if head <= last_position:
        return None
    due = force or head - last_position >= every_events
    if not due and every_seconds is not None:
        due = last is None or now - last.taken_at >= timedelta(seconds=every_seconds)
    if not due:
        return None

    state = ClusterState()
    if last is not None:
        with engine.connect() as conn:
            snap = latest(conn, last.position)
            assert snap is not None  # the snapshot `last` names
            state = decode(snap.state)
    written = None
    since_report = 0
    for recorded in store.iter_all(after=last_position, up_to=head):
        apply(state, recorded)
        since_report += 1
        if progress is not None and since_report == 10_000:
            progress(since_report)
            since_report = 0
        if state.position - last_position >= every_events:
            _insert(engine, [_row(state, now)])
            written = last_position = state.position
    if progress is not None and since_report:
        progress(since_report)
    if state.position > last_position:
        _insert(engine, [_row(state, now)])
        written = state.position
    return written
