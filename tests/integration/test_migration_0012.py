"""Migration 0012 (retention) on a database with events: on PostgreSQL `events` becomes
partitioned and every event, position, id and the counter survive it (and a downgrade); on both,
the log goes on as before (next position, duplicates, expected versions)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

import migrations
from domain.events import HeartbeatRecorded
from eventstore import create_engine, open_store, partitions
from eventstore.store import ConcurrencyError, NewEvent
from eventstore.tables import archived_tails
from eventstore.tables import events as events_table

T0 = datetime(2026, 11, 1, tzinfo=UTC)


def beat(server: str, at: datetime, event_id: uuid.UUID | None = None) -> NewEvent:
    return NewEvent(
        HeartbeatRecorded(server=server, component="web", sent_at=at),
        event_id=event_id or uuid.uuid4(),
    )


def rows(engine) -> list[tuple]:
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(sa.select(events_table).order_by("position"))]


def kind_of_events(engine) -> str | None:
    with engine.connect() as conn:
        if conn.dialect.name != "postgresql":
            return None
        return conn.exec_driver_sql(
            "SELECT relkind FROM pg_class WHERE oid = 'events'::regclass"
        ).scalar()


def test_0012_keeps_every_event_and_the_log_goes_on(empty_url):
    migrations.upgrade(empty_url, "0011")
    engine = create_engine(empty_url)
    archived_tails.create(engine)  # 0014's, which today's store reads (kept through 0012)
    try:
        now = [T0]
        store = open_store(engine, lambda: now[0])
        for minute in range(20):
            now[0] = T0 + timedelta(minutes=minute)
            store.append([beat(f"web{i}", now[0]) for i in range(3)])  # small batches
        store.append([beat(f"db{i}", now[0]) for i in range(40)])  # one by COPY on PostgreSQL
        first_id = store.read_all(limit=1)[0].event_id
        before = rows(engine)
        engine.dispose()

        migrations.upgrade(empty_url, "0012")

        engine = create_engine(empty_url)
        store = open_store(engine, lambda: now[0])
        assert rows(engine) == before
        assert [r.position for r in store.read_all(limit=None)] == list(range(1, 101))
        if empty_url.startswith("postgresql"):
            assert kind_of_events(engine) == "p"
            with engine.connect() as conn:
                assert partitions.partitions(conn)[0].lower == 0
        appended = store.append([beat("web0", now[0])], expected_version=20)
        assert appended.last_position == 101
        assert store.append([beat("web0", now[0], first_id)]).duplicates == [first_id]
        with pytest.raises(ConcurrencyError):
            store.append([beat("web0", now[0])], expected_version=20)
        many = store.append([beat(f"x{i}", now[0]) for i in range(50)])
        assert [r.position for r in many.recorded] == list(range(102, 152))
        kept = rows(engine)
        engine.dispose()

        migrations.downgrade(empty_url, "0011")

        engine = create_engine(empty_url)
        assert rows(engine) == kept
        if empty_url.startswith("postgresql"):
            assert kind_of_events(engine) == "r"
        store = open_store(engine, lambda: now[0])
        assert store.append([beat("web1", now[0])]).last_position == 152
    finally:
        engine.dispose()
