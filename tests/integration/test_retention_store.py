"""Retention's database side (eventstore/retention.py) on SQLite and PostgreSQL: the range an
archive takes, deleting it once and only as archived, restoring it with its positions, and the
space coming back (PostgreSQL partitions dropped, SQLite pages given back)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

import migrations
from domain.events import HeartbeatRecorded
from eventstore import create_engine, open_store, partitions, retention
from eventstore.store import ConcurrencyError, NewEvent
from eventstore.tables import archived_tails
from eventstore.tables import events as events_table
from tests.conftest import scratch_database

T0 = datetime(2026, 11, 1, tzinfo=UTC)
ARCHIVE = {"before": T0, "path": "/archives/2026-11", "sha256": "ab" * 32}


def beat(server: str, at: datetime) -> NewEvent:
    return NewEvent(
        HeartbeatRecorded(server=server, component="service", sent_at=at),
        metadata={"actor": "agent-1"},
    )


def fill(store, clock, minutes: int, per_minute: int = 2) -> None:
    """`minutes` appends, one a minute from T0, each of `per_minute` servers' heartbeats."""
    clock.now = T0
    for _ in range(minutes):
        store.append([beat(f"web{i:02d}", clock.now) for i in range(per_minute)])
        clock.advance(minutes=1)


def stored_rows(engine) -> list[dict]:
    with engine.connect() as conn:
        rows = conn.execute(sa.select(events_table).order_by(events_table.c.position))
        return [dict(row._mapping) for row in rows]


def test_archive_then_restore_gives_back_the_log_as_it_was(store, engine, clock):
    fill(store, clock, 30)
    before_archive = stored_rows(engine)
    boundary = T0 + timedelta(minutes=10)

    first, last, count = retention.archivable_range(engine, boundary)
    taken = list(retention.iter_range(engine, first, last, batch=7))
    retention.delete_range(engine, first, last, count, {**ARCHIVE, "before": boundary})

    assert (first, last, count) == (1, 20, 20)  # ten appends of two before the boundary
    assert taken == before_archive[:20]
    assert isinstance(taken[0]["data"], str) and isinstance(taken[0]["event_id"], uuid.UUID)
    assert retention.oldest_position(engine) == 21
    assert retention.oldest_recorded_at(engine) == boundary
    assert [r.position for r in store.read_all(limit=None)] == list(range(21, 61))
    (archived,) = retention.archives(engine)
    assert archived["first_position"] == 1 and archived["last_position"] == 20
    assert archived["events"] == 20 and archived["before"] == boundary

    # As a file would give them back: ids and times as text.
    as_text = [
        {**row, "event_id": str(row["event_id"]), "recorded_at": row["recorded_at"].isoformat()}
        for row in taken
    ]
    assert retention.restore_rows(engine, as_text, batch=6) == 20

    assert stored_rows(engine) == before_archive
    assert retention.archives(engine) == []
    assert retention.oldest_position(engine) == 1
    # The log goes on after the restore: next position, stream versions continued.
    clock.advance(minutes=1)
    appended = store.append([beat("web00", clock.now)], expected_version=30)
    assert appended.last_position == 61


def test_the_newest_event_is_never_archived(store, engine, clock):
    fill(store, clock, 3, per_minute=1)

    assert retention.archivable_range(engine, T0 + timedelta(days=1)) == (1, 2, 2)
    assert retention.archivable_range(engine, T0) is None  # nothing before the first event
    with pytest.raises(retention.RangeChanged, match="newest"):
        retention.delete_range(engine, 1, 3, 3, ARCHIVE)
    assert retention.oldest_position(engine) == 1


def test_a_rerun_after_success_changes_nothing(store, engine, clock):
    fill(store, clock, 10)
    first, last, count = retention.archivable_range(engine, T0 + timedelta(minutes=5))

    retention.delete_range(engine, first, last, count, ARCHIVE)
    retention.delete_range(engine, first, last, count, ARCHIVE)

    assert len(retention.archives(engine)) == 1
    assert retention.oldest_position(engine) == last + 1


def test_a_range_that_changed_since_it_was_archived_is_not_deleted(store, engine, clock):
    fill(store, clock, 10)
    first, last, count = retention.archivable_range(engine, T0 + timedelta(minutes=5))
    rows = list(retention.iter_range(engine, first, last))
    # Meanwhile someone else archived part of it (or restored into it, or the file is short).
    retention.delete_range(engine, first, 4, 4, ARCHIVE)

    with pytest.raises(retention.RangeChanged, match="now has 6 from 5 to 10"):
        retention.delete_range(engine, first, last, count, ARCHIVE)
    with pytest.raises(retention.RangeChanged, match="archived as 15 events"):
        retention.delete_range(engine, 5, last, count + 5, ARCHIVE)

    assert retention.oldest_position(engine) == 5
    assert [r["first_position"] for r in retention.archives(engine)] == [1]
    assert stored_rows(engine)[: len(rows) - 4] == rows[4:]


def test_a_range_gone_without_its_archive_row_is_an_error(store, engine, clock):
    fill(store, clock, 10)
    retention.delete_range(engine, 1, 6, 6, ARCHIVE)

    with pytest.raises(retention.RangeChanged, match="no archive records them"):
        retention.delete_range(engine, 1, 4, 4, ARCHIVE)


def test_a_restore_over_events_still_there_is_refused_whole(store, engine, clock):
    fill(store, clock, 10)
    first, last, count = retention.archivable_range(engine, T0 + timedelta(minutes=5))
    rows = list(retention.iter_range(engine, first, last))
    retention.delete_range(engine, first, last, count, ARCHIVE)
    kept = stored_rows(engine)

    clash = [
        *rows,
        {**kept[0], "event_id": uuid.uuid4(), "version": 1000},  # its position is taken
        {**kept[1], "position": 999, "version": 1001},  # its event id is taken
    ]
    with pytest.raises(retention.RestoreOverlap) as refused:
        retention.restore_rows(engine, clash, batch=4)

    assert str(refused.value) == (
        f"cannot restore: positions {kept[0]['position']} are already in the log;"
        f" event ids {kept[1]['event_id']} are already in the log"
    )
    assert stored_rows(engine) == kept  # nothing of the first batches stayed
    assert len(retention.archives(engine)) == 1


def test_a_restore_is_refused_over_versions_a_wholly_archived_stream_reused(store, engine, clock):
    # An archive made before migration 0014 kept no tail of a stream it emptied (eventstore/
    # tables.py, `archived_tails`), so its next event was version 1 again. Restoring the
    # archive then would put two events at one (stream, version); it is refused instead.
    fill(store, clock, 3, per_minute=1)
    store.append([beat("db01", clock.now)])
    rows = list(retention.iter_range(engine, 1, 3))
    retention.delete_range(engine, 1, 3, 3, ARCHIVE)
    with engine.begin() as conn:  # as before 0014
        conn.execute(archived_tails.delete())
    again = store.append([beat("web00", clock.now)])

    assert again.recorded[0].version == 1
    with pytest.raises(retention.RestoreOverlap, match=r"stream versions web00/service@1 are"):
        retention.restore_rows(engine, rows)
    assert retention.oldest_position(engine) == 4


def test_an_event_id_restored_is_a_duplicate_again(store, engine, clock):
    fill(store, clock, 4, per_minute=1)
    rows = list(retention.iter_range(engine, 1, 2))
    retention.delete_range(engine, 1, 2, 2, ARCHIVE)
    retention.restore_rows(engine, rows)

    again = NewEvent(beat("web00", T0).event, event_id=rows[0]["event_id"])
    result = store.append([again])

    assert result.duplicates == [rows[0]["event_id"]]
    with pytest.raises(ConcurrencyError):
        store.append([beat("web00", T0)], expected_version=2)


def test_sqlite_gives_the_pages_back(tmp_path, clock):
    engine = create_engine(f"sqlite:///{tmp_path / 'small.db'}")
    migrations.upgrade(str(engine.url))
    store = open_store(engine, clock)
    fill(store, clock, 200, per_minute=50)

    def pages():
        with engine.connect() as conn:
            return conn.exec_driver_sql("PRAGMA page_count").scalar()

    full = pages()
    first, last, count = retention.archivable_range(engine, T0 + timedelta(minutes=180))
    retention.delete_range(engine, first, last, count, ARCHIVE)

    assert pages() < full * 0.2
    engine.dispose()


def test_sqlite_made_before_incremental_vacuum_is_converted_on_first_archive(tmp_path, clock):
    import sqlite3

    path = tmp_path / "old.db"
    with sqlite3.connect(path) as old:  # a file as db.py made them before retention
        old.execute("PRAGMA journal_mode=WAL")
    engine = create_engine(f"sqlite:///{path}")
    migrations.upgrade(str(engine.url))
    store = open_store(engine, clock)
    fill(store, clock, 100, per_minute=50)

    def pragma(name):
        with engine.connect() as conn:
            return conn.exec_driver_sql(f"PRAGMA {name}").scalar()

    assert pragma("auto_vacuum") == 0
    full = pragma("page_count")
    retention.delete_range(engine, 1, 4000, 4000, ARCHIVE)

    assert pragma("auto_vacuum") == 2
    assert pragma("page_count") < full * 0.4
    engine.dispose()


# --- PostgreSQL partitions --------------------------------------------------------------------


@pytest.fixture
def small_partitions(postgres_url, monkeypatch, clock):
    """A PostgreSQL database migrated with partitions of 1,000 positions, and its store."""
    monkeypatch.setattr(partitions, "PARTITION_SIZE", 1000)
    with scratch_database("clustermon_parts") as url:
        migrations.upgrade(url)
        engine = create_engine(url)
        yield engine, open_store(engine, clock)
        engine.dispose()


def _bounds(engine) -> list[tuple[int, int]]:
    with engine.connect() as conn:
        return [(p.lower, p.upper) for p in partitions.partitions(conn)]


def _total_bytes(engine) -> int:
    with engine.connect() as conn:
        return conn.exec_driver_sql(
            "SELECT sum(pg_total_relation_size(relid))::bigint"
            " FROM pg_partition_tree('public.events'::regclass)"
        ).scalar_one()


@pytest.mark.postgres
def test_appends_keep_a_whole_partition_ahead_of_the_head(small_partitions, clock):
    engine, store = small_partitions
    assert _bounds(engine) == [(0, 1000), (1000, 2000)]

    fill(store, clock, 25, per_minute=100)  # positions 1..2500, by COPY

    assert _bounds(engine) == [(0, 1000), (1000, 2000), (2000, 3000), (3000, 4000)]
    assert [r.position for r in store.read_all(after=990, limit=20)] == list(range(991, 1011))


@pytest.mark.postgres
def test_archiving_whole_partitions_drops_them(small_partitions, clock):
    engine, store = small_partitions
    fill(store, clock, 50, per_minute=100)  # positions 1..5000
    full = _total_bytes(engine)

    first, last, count = retention.archivable_range(
        engine, T0 + timedelta(minutes=35, seconds=30), whole_partitions=True
    )
    rows = list(retention.iter_range(engine, first, last))
    retention.delete_range(engine, first, last, count, ARCHIVE)

    assert (first, last, count) == (1, 2999, 2999)  # where the partition before 3600 ends
    assert _bounds(engine)[0] == (3000, 4000)
    assert _total_bytes(engine) < full * 0.5
    assert retention.oldest_position(engine) == 3000

    retention.restore_rows(engine, rows)

    assert _bounds(engine)[:3] == [(0, 1000), (1000, 2000), (2000, 3000)]
    assert [r.position for r in store.read_all(limit=None)] == list(range(1, 5001))


@pytest.mark.postgres
def test_an_edge_partition_is_deleted_from_not_dropped(small_partitions, clock):
    engine, store = small_partitions
    fill(store, clock, 30, per_minute=100)

    retention.delete_range(engine, 1, 1499, 1499, ARCHIVE)

    assert _bounds(engine)[0] == (1000, 2000)
    assert [r.position for r in store.read_all(limit=2)] == [1500, 1501]
    assert store.stream_version("web00/service") == 30
