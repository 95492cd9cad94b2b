"""Stored reports: one row per computed report, with the log position it was computed at."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

import orjson
import sqlalchemy as sa

from eventstore.store import EventStore
from eventstore.tables import Position, UTCDateTime
from projections.audit import reports

KINDS = ("daily", "weekly", "manual")

metadata = sa.MetaData()
reports_table = sa.Table(
    "reports",
    metadata,
    sa.Column("id", sa.Integer(), primary_key=True),
    sa.Column("kind", sa.String(20), nullable=False),
    sa.Column("period_start", UTCDateTime(), nullable=False),
    sa.Column("period_end", UTCDateTime(), nullable=False),
    sa.Column("position", Position, nullable=False),
    sa.Column("computed_at", UTCDateTime(), nullable=False),
    sa.Column("requested_by", sa.String(100), nullable=True),
    sa.Column("schedule_key", sa.String(100), nullable=True),
    sa.Column("data", sa.Text(), nullable=False),
)


def schedule_key(kind: str, since: datetime) -> str:
    return f"{kind}/{since.isoformat()}"


def compute_and_store(
    store: EventStore,
    since: datetime,
    until: datetime,
    *,
    kind: str = "manual",
    requested_by: str | None = None,
    progress: Callable[[int], None] | None = None,
) -> dict[str, Any] | None:
    """Compute the report at the current head of the log and store it. Scheduled kinds are
    stored once per period: returns None when another process stored that period first."""
    position = store.head_position()
    data = reports.compute(store, since, until, up_to=position, progress=progress)
    row: dict[str, Any] = {
        "kind": kind,
        "period_start": since,
        "period_end": until,
        "position": position,
        "computed_at": store.clock(),
        "requested_by": requested_by,
        "schedule_key": None if kind == "manual" else schedule_key(kind, since),
        "data": orjson.dumps(data).decode(),
    }
    with store.engine.begin() as conn:
        if row["schedule_key"] is not None and _exists(conn, row["schedule_key"]):
            return None
        try:
            with conn.begin_nested():
                new_id = conn.execute(
                    reports_table.insert().values(row).returning(reports_table.c.id)
                ).scalar_one()
        except sa.exc.IntegrityError:
            return None  # the other scheduler won the race for this period
    return get(store.engine, new_id)


def _exists(conn: sa.Connection, key: str) -> bool:
    query = sa.select(reports_table.c.id).where(reports_table.c.schedule_key == key)
    return conn.execute(query).first() is not None


def has_schedule(engine: sa.Engine, kind: str, since: datetime) -> bool:
    with engine.connect() as conn:
        return _exists(conn, schedule_key(kind, since))


def _summary(row) -> dict[str, Any]:
    return {
        "id": row.id,
        "kind": row.kind,
        "period": {"since": row.period_start, "until": row.period_end},
        "position": row.position,
        "computed_at": row.computed_at,
        "requested_by": row.requested_by,
    }


def get(engine: sa.Engine, report_id: int) -> dict[str, Any] | None:
    with engine.connect() as conn:
        row = conn.execute(sa.select(reports_table).where(reports_table.c.id == report_id)).first()
    if row is None:
        return None
    return {**_summary(row), "data": orjson.loads(row.data)}


def listing(
    engine: sa.Engine, *, kind: str | None = None, limit: int = 100, before: int | None = None
) -> list[dict[str, Any]]:
    """Newest first (by id); `before` pages on."""
    c = reports_table.c
    query = sa.select(*[col for col in reports_table.c if col.name != "data"])
    if kind:
        query = query.where(c.kind == kind)
    if before is not None:
        query = query.where(c.id < before)
    with engine.connect() as conn:
        rows = conn.execute(query.order_by(c.id.desc()).limit(limit)).all()
    return [_summary(row) for row in rows]
