"""Leader election and the scheduler service, in one process, on SQLite and PostgreSQL."""

from __future__ import annotations

import time
from datetime import timedelta

import sqlalchemy as sa

from domain.events import HeartbeatRecorded
from eventstore import NewEvent, open_store
from eventstore.commands import ClusterCommands
from scheduler.gaps import record_liveness
from scheduler.leader import LOCK_HOLDER_PARAMS, LOCK_HOLDER_SQL
from scheduler.service import SchedulerService, build_scheduler


def beat(store, server, component="service"):
    event = HeartbeatRecorded(server, component, sent_at=store.clock())
    return ClusterCommands(store).record_heartbeats([NewEvent(event)]).recorded[-1]


def timeouts(store):
    return [r for r in store.read_all(limit=None) if r.type == "ComponentTimedOut"]


def test_one_scheduler_leads_and_a_standby_takes_over_when_it_steps_down(store, clock, services):
    first, second = services("A"), services("B")
    beat(store, "app01")

    assert first.elect() is True
    assert second.elect() is False
    clock.advance(seconds=301)
    second.sweep_job()  # a standby does not sweep
    assert timeouts(store) == []
    first.sweep_job()
    assert [r.event.detector for r in timeouts(store)] == ["A"]

    first.step_down()
    assert second.elect() is True
    assert first.elect() is False
    beat(store, "app02")
    clock.advance(seconds=301)
    second.sweep_job()
    assert [r.event.detector for r in timeouts(store)] == ["A", "B"]


def test_a_leader_that_loses_its_lock_connection_steps_down(pg_database_url, clock):
    from eventstore import create_engine

    engine = create_engine(pg_database_url)
    store = open_store(engine, clock)
    first = SchedulerService(store, clock, detector="A")
    second = SchedulerService(store, clock, detector="B")
    try:
        beat(store, "app01")
        assert first.elect() is True
        with engine.begin() as conn:
            killed = (
                conn.execute(
                    sa.text(f"SELECT pg_terminate_backend(pid) FROM ({LOCK_HOLDER_SQL}) AS h"),
                    LOCK_HOLDER_PARAMS,
                )
                .scalars()
                .all()
            )
        assert killed == [True]
        # The server frees the lock as the backend exits (asynchronously): poll briefly.
        deadline = time.monotonic() + 10
        while not second.elect():
            assert time.monotonic() < deadline, "the standby never got the lock"
            time.sleep(0.05)
        clock.advance(seconds=301)
        first.sweep_job()  # notices the dead connection, steps down, writes nothing
        assert first.leading is False
        second.sweep_job()
        assert [r.event.detector for r in timeouts(store)] == ["B"]
    finally:
        first.step_down()
        second.step_down()
        engine.dispose()


def test_taking_over_after_a_long_outage_records_the_gap_once(store, clock, services):
    start = clock.now
    beat(store, "app01")
    record_liveness(store.engine, "old", start, start)
    clock.advance(hours=3)

    leader = services("A")
    assert leader.elect() is True
    resumed = [r for r in store.read_all(limit=None) if r.type == "MonitorResumed"]
    assert [(r.event.down_since, r.event.resumed_at) for r in resumed] == [(start, clock.now)]
    leader.sweep_job()
    assert timeouts(store) == []  # no flood: one full timeout from the restart

    leader.step_down()
    assert services("B").elect() is True  # a prompt takeover is not a gap
    assert len([r for r in store.read_all(limit=None) if r.type == "MonitorResumed"]) == 1


def test_the_apscheduler_jobs_have_explicit_ids_and_coalesce(store, clock, services):
    from apscheduler.schedulers.background import BackgroundScheduler

    scheduler = build_scheduler(services("A"), BackgroundScheduler(timezone="UTC"))
    jobs = {job.id: job for job in scheduler.get_jobs()}
    assert {"leader-election", "timeout-sweep"} <= set(jobs)
    # The hooks to the projections and reports sides, now that those modules exist.
    assert {"projection-catch-up", "snapshot", "reports"} <= set(jobs)
    for job in jobs.values():
        assert job.coalesce is True
        assert job.max_instances == 1
        assert job.misfire_grace_time >= 5
    assert jobs["timeout-sweep"].trigger.interval == timedelta(seconds=1)


def test_only_the_leader_runs_the_projection_and_snapshot_jobs(store, clock, services):
    from projections.readmodel import rows as readmodel
    from projections.readmodel import snapshots

    leader, standby = services("A"), services("B")
    assert leader.elect() is True
    head = beat(store, "app01").position

    def checkpoint_and_snapshot():
        with store.engine.connect() as conn:
            checkpoint = readmodel.read_checkpoint(conn)
            snapshot = snapshots.latest(conn, with_state=False)
        return (
            checkpoint.position if checkpoint else 0,
            snapshot.position if snapshot else None,
        )

    standby.projection_job()
    standby.snapshot_job()
    assert checkpoint_and_snapshot() == (0, None)
    leader.projection_job()
    leader.snapshot_job()
    assert checkpoint_and_snapshot() == (head, head)
