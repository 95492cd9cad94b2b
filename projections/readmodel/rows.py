"""Reading and writing the folded `ClusterState` in the read tables (no rules, no clock).

Every writer of these tables (the runner, a rebuild) first locks the checkpoint row, so the
rows and the checkpoint always describe the same position.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import fields

import orjson
import sqlalchemy as sa

from domain.state import (
    ClusterState,
    ComponentState,
    Configuration,
    ServerState,
    TargetState,
    _utc,
)
from projections.readmodel.tables import VIEW, checkpoints, cluster, components, servers, targets

_CHUNK = 400  # keys per DELETE … IN (…): well below SQLite's bound-parameter limit

_COMPONENT_COLUMNS = [c.name for c in components.columns]
# load_state builds ComponentState positionally from the row, for speed: keep them in step.
assert [f.name for f in fields(ComponentState)] == _COMPONENT_COLUMNS, "table/state drift"


def ensure_checkpoint(conn: sa.Connection) -> None:
    """Create the checkpoint row if it is missing (a truncated or hand-made database)."""
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        # mypy wants one type per name; both dialects' insert have on_conflict_do_nothing.
        from sqlalchemy.dialects.sqlite import insert  # type: ignore[assignment]
    conn.execute(insert(checkpoints).values(name=VIEW).on_conflict_do_nothing())


def lock_checkpoint(conn: sa.Connection, *, wait: bool) -> sa.Row | None:
    """The checkpoint row, locked for the rest of the transaction. With `wait=False` another
    holder makes this return None at once (PostgreSQL `SKIP LOCKED`). On SQLite the write
    transaction (`BEGIN IMMEDIATE`) already serialises writers, so this is a plain read."""
    query = sa.select(
        checkpoints.c.position, checkpoints.c.generation, checkpoints.c.events_applied
    ).where(checkpoints.c.name == VIEW)
    query = query.with_for_update() if wait else query.with_for_update(skip_locked=True)
    return conn.execute(query).first()


def read_checkpoint(conn: sa.Connection) -> sa.Row | None:
    return conn.execute(
        sa.select(
            checkpoints.c.position,
            checkpoints.c.generation,
            checkpoints.c.events_applied,
            checkpoints.c.updated_at,
        ).where(checkpoints.c.name == VIEW)
    ).first()


def load_state(conn: sa.Connection) -> ClusterState:
    """The state the read tables describe (position from the checkpoint)."""
    checkpoint = read_checkpoint(conn)
    state = ClusterState(position=checkpoint.position if checkpoint else 0)
    row = conn.execute(
        sa.select(
            cluster.c.configuration,
            cluster.c.recorded_at,
            cluster.c.monitor_resumed_at,
            cluster.c.channels,
            cluster.c.silences,
        )
    ).first()
    if row is not None:
        state.configuration = Configuration(**orjson.loads(row.configuration))
        state.recorded_at = row.recorded_at and _utc(row.recorded_at)
        state.monitor_resumed_at = row.monitor_resumed_at and _utc(row.monitor_resumed_at)
        state.set_notification_config(
            orjson.loads(row.channels or "[]"), orjson.loads(row.silences or "[]")
        )
    by_name = state.servers
    for name, os_, os_version, ip in conn.execute(
        sa.select(servers.c.name, servers.c.os, servers.c.os_version, servers.c.ip)
    ):
        by_name[name] = ServerState(name, os_, os_version, ip)
    normalise = conn.dialect.name == "postgresql"  # SQLite values already carry `UTC`
    for values in conn.execute(sa.select(components)):
        component = ComponentState(*values)
        if normalise:
            for name in ("last_heartbeat_at", "last_sent_at", "timed_out_at"):
                value = getattr(component, name)
                if value is not None:
                    setattr(component, name, _utc(value))
        server = by_name.get(component.server)
        if server is None:  # cannot happen while writers keep both tables together
            server = by_name[component.server] = ServerState(component.server)
        server.components[component.name] = component
    for (text,) in conn.execute(sa.select(targets.c.target)):
        target = TargetState.from_dict(orjson.loads(text))
        state.targets[target.server] = target
    return state


def _component_row(c: ComponentState) -> dict:
    return {name: getattr(c, name) for name in _COMPONENT_COLUMNS}


def _server_row(s: ServerState) -> dict:
    return {"name": s.name, "os": s.os, "os_version": s.os_version, "ip": s.ip}


def _write_targets(conn: sa.Connection, state: ClusterState, names: list[str]) -> None:
    for chunk in _chunks(names):
        conn.execute(targets.delete().where(targets.c.server.in_(chunk)))
    rows = [
        {"server": n, "target": orjson.dumps(state.targets[n].to_dict()).decode()}
        for n in names
        if n in state.targets
    ]
    if rows:
        conn.execute(targets.insert(), rows)


def _write_cluster(conn: sa.Connection, state: ClusterState) -> None:
    conn.execute(cluster.delete())
    conn.execute(
        cluster.insert().values(
            id=1,
            configuration=orjson.dumps(
                {k: getattr(state.configuration, k) for k in _config_fields()}
            ).decode(),
            recorded_at=state.recorded_at,
            monitor_resumed_at=state.monitor_resumed_at,
            channels=orjson.dumps([c.to_dict() for c in state.channels.values()]).decode(),
            silences=orjson.dumps([x.to_dict() for x in state.silences.values()]).decode(),
        )
    )


def _config_fields() -> list[str]:
    return [f.name for f in fields(Configuration)]


def _chunks(items: list, size: int = _CHUNK) -> Iterable[list]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def write_changes(
    conn: sa.Connection,
    state: ClusterState,
    dirty: set[tuple[str, str]],
    *,
    applied: int,
    now,
    dirty_targets: set[str] = frozenset(),  # type: ignore[assignment]
) -> None:
    """Rewrite the rows of the components (and their servers) and of the targets touched since
    the checkpoint, the cluster row and the checkpoint, on the caller's transaction."""
    keys = sorted(dirty)
    names = sorted({server for server, _ in keys})
    for chunk in _chunks(keys):
        conn.execute(
            components.delete().where(sa.tuple_(components.c.server, components.c.name).in_(chunk))
        )
    for chunk in _chunks(names):
        conn.execute(servers.delete().where(servers.c.name.in_(chunk)))
    component_rows = [
        _component_row(c) for s, n in keys if (c := state.component(s, n)) is not None
    ]
    server_rows = [_server_row(state.servers[n]) for n in names if n in state.servers]
    if server_rows:
        conn.execute(servers.insert(), server_rows)
    if component_rows:
        conn.execute(components.insert(), component_rows)
    _write_targets(conn, state, sorted(dirty_targets))
    _write_cluster(conn, state)
    conn.execute(
        checkpoints.update()
        .where(checkpoints.c.name == VIEW)
        .values(
            position=state.position,
            events_applied=checkpoints.c.events_applied + applied,
            updated_at=now,
        )
    )


def replace_all(conn: sa.Connection, state: ClusterState, *, applied: int, now) -> None:
    """Swap the whole content for `state` (a rebuild), on the caller's transaction."""
    conn.execute(components.delete())
    conn.execute(servers.delete())
    conn.execute(targets.delete())
    _write_targets(conn, state, sorted(state.targets))
    rows = [_server_row(s) for s in state.servers.values()]
    for chunk in _chunks(rows, 5_000):
        conn.execute(servers.insert(), chunk)
    rows = [_component_row(c) for c in state.components()]
    for chunk in _chunks(rows, 5_000):
        conn.execute(components.insert(), chunk)
    _write_cluster(conn, state)
    conn.execute(
        checkpoints.update()
        .where(checkpoints.c.name == VIEW)
        .values(
            position=state.position,
            generation=checkpoints.c.generation + 1,
            events_applied=applied,
            updated_at=now,
        )
    )
