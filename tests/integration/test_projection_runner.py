"""The projection runner on real databases: checkpoint and rows move together, restarts neither
lose nor double-count, a lock holder makes others step aside, LISTEN/NOTIFY wakes it."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest
import sqlalchemy as sa

from domain.state import fold
from eventstore import create_engine, open_store
from projections.readmodel import current as read
from projections.readmodel import rows as readmodel
from projections.readmodel.current import current_state, current_view
from projections.readmodel.rebuild import rebuild, replay
from projections.readmodel.runner import ProjectionRunner
from projections.readmodel.view import cluster_view
from tests.integration import projection_support as ps


def _servers(engine, now):
    return {
        s["name"]: [c["name"] for c in s["components"]]
        for s in current_view(engine, now)["servers"]
    }


def test_catch_up_projects_new_events_and_is_idle_afterwards(store, clock):
    runner = ProjectionRunner(store)
    assert runner.catch_up() == 0
    store.append([ps.beat(store, "a", "web"), ps.beat(store, "b", "service")])
    assert runner.lag() == {"events": 2, "seconds": 0.0, "checkpoint": 0, "head": 2}
    clock.advance(seconds=3)
    assert runner.lag()["seconds"] == 3.0

    assert runner.catch_up() == 2
    assert runner.catch_up() == 0
    assert runner.lag() == {"events": 0, "seconds": 0.0, "checkpoint": 2, "head": 2}
    assert _servers(store.engine, clock()) == {"a": ["web"], "b": ["service"]}


def test_removal_leaves_the_read_tables_and_a_heartbeat_brings_it_back(store, clock):
    runner = ProjectionRunner(store)
    store.append([ps.beat(store, "a", "web"), ps.beat(store, "a", "service")])
    runner.catch_up()
    store.append([ps.remove("a", "service")])
    runner.catch_up()
    assert _servers(store.engine, clock()) == {"a": ["web"]}
    assert current_state(store.engine).component("a", "service") is None
    store.append([ps.remove("a", "web")])
    runner.catch_up()
    assert _servers(store.engine, clock()) == {}
    store.append([ps.beat(store, "a", "service")])
    runner.catch_up()
    assert _servers(store.engine, clock()) == {"a": ["service"]}


def test_limit_bounds_the_events_applied(store):
    runner = ProjectionRunner(store, batch_size=2)
    store.append([ps.beat(store, f"s{i}") for i in range(7)])
    assert runner.catch_up(limit=3) == 3
    assert runner.lag()["checkpoint"] == 3
    assert runner.catch_up() == 4


def test_a_restarted_runner_continues_from_the_checkpoint(store, clock):
    store.append([ps.configure(stale_timeout_seconds=60)])
    ProjectionRunner(store).catch_up()
    store.append([ps.configure(stale_timeout_seconds=120)])
    # A new process: nothing in memory, only the checkpoint.
    restarted = ProjectionRunner(open_store(create_engine(str(store.engine.url)), clock))
    try:
        assert restarted.catch_up() == 1
    finally:
        restarted.engine.dispose()
    # Applying a ConfigurationChanged twice would count the configuration version twice.
    config = current_view(store.engine, clock())["configuration"]
    assert (config["version"], config["stale_timeout_seconds"]) == (2, 120)
    assert ps.events_applied(store.engine) == 2


def test_a_failed_batch_leaves_checkpoint_and_rows_as_they_were(store, clock, monkeypatch):
    runner = ProjectionRunner(store)
    store.append([ps.beat(store, "a")])
    runner.catch_up()
    store.append([ps.beat(store, "b"), ps.configure(stale_timeout_seconds=60)])

    real = readmodel.write_changes

    def write_then_fail(*args, **kwargs):
        real(*args, **kwargs)  # rows and checkpoint written on the transaction ...
        raise RuntimeError("crash before commit")  # ... which never commits

    monkeypatch.setattr(readmodel, "write_changes", write_then_fail)
    with pytest.raises(RuntimeError):
        runner.catch_up()
    monkeypatch.undo()
    assert runner.lag()["checkpoint"] == 1
    assert _servers(store.engine, clock()) == {"a": ["service"]}

    assert runner.catch_up() == 2
    view = current_view(store.engine, clock())
    assert view == cluster_view(fold(store.iter_all()), clock())
    assert view["configuration"]["version"] == 1
    assert ps.events_applied(store.engine) == 3


@pytest.mark.postgres
def test_a_runner_steps_aside_while_another_holds_the_checkpoint(pg_database_url, clock):
    engine = create_engine(pg_database_url)
    store = open_store(engine, clock)
    try:
        store.append([ps.beat(store, "a")])
        runner = ProjectionRunner(store)
        runner.catch_up()  # creates the checkpoint row
        store.append([ps.beat(store, "b")])
        with engine.connect() as holder, holder.begin():
            readmodel.lock_checkpoint(holder, wait=True)
            started = time.monotonic()
            assert runner.catch_up() == 0  # the loser returns at once
            assert time.monotonic() - started < 5
        assert runner.catch_up() == 1
    finally:
        engine.dispose()


def test_rebuild_swaps_in_the_same_view_and_the_old_one_serves_meanwhile(store, clock):
    runner = ProjectionRunner(store)
    store.append([ps.beat(store, "a", "web"), ps.beat(store, "b", "service")])
    store.append([ps.remove("b", "service"), ps.configure(load_balancing=False)])
    runner.catch_up()
    before = current_view(store.engine, clock())
    seen_during = []

    def progress(_n):
        read.clear_cache()
        seen_during.append(current_view(store.engine, clock()))

    store.append([ps.beat(store, "c", "web")])  # after the runner: only the rebuild sees it
    assert rebuild(store, progress=progress) == 5
    assert seen_during and all(v == before for v in seen_during)
    after = current_view(store.engine, clock())
    assert after == cluster_view(fold(store.iter_all()), clock())
    assert [s["name"] for s in after["servers"]] == ["a", "c"]
    assert runner.catch_up() == 0  # the rebuild moved the checkpoint
    assert ps.events_applied(store.engine) == 5


def test_replay_counts_without_writing(store):
    store.append([ps.beat(store, "a"), ps.beat(store, "b"), ps.remove("b")])
    report = replay(store)
    assert report["events"] == 3 and report["position"] == 3
    assert report["by_type"] == {"ComponentRemoved": 1, "HeartbeatRecorded": 2}
    assert (report["servers"], report["components"]) == (1, 1)
    assert ProjectionRunner(store).lag()["checkpoint"] == 0


def test_a_missing_checkpoint_row_is_recreated(store, clock):
    with store.engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM projection_checkpoints"))
    store.append([ps.beat(store, "a")])
    assert ProjectionRunner(store).catch_up() == 1


def _wait_for(predicate, seconds=10.0):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return False


def test_run_forever_follows_new_events_until_stopped(store, clock):
    runner = ProjectionRunner(store, poll_interval=0.05)
    stop = threading.Event()
    thread = threading.Thread(target=runner.run_forever, args=(stop,))
    thread.start()
    try:
        store.append([ps.beat(store, "a")])
        assert _wait_for(lambda: runner.lag()["checkpoint"] == 1)
        store.append([ps.beat(store, "b")])
        assert _wait_for(lambda: runner.lag()["checkpoint"] == 2)
    finally:
        stop.set()
        thread.join(10)
    assert not thread.is_alive()
    assert _servers(store.engine, clock()) == {"a": ["service"], "b": ["service"]}


@pytest.mark.postgres
def test_notify_wakes_the_runner_long_before_its_poll_interval(pg_database_url, clock):
    engine = create_engine(pg_database_url)
    store = open_store(engine, clock)
    runner = ProjectionRunner(store, poll_interval=60)  # only a NOTIFY can wake it in time
    stop = threading.Event()
    thread = threading.Thread(target=runner.run_forever, args=(stop,))
    thread.start()
    try:

        def listening():
            with engine.connect() as conn:
                return conn.execute(
                    sa.text(
                        "SELECT count(*) FROM pg_stat_activity"
                        " WHERE datname = current_database() AND query = 'LISTEN clustermon_events'"
                    )
                ).scalar()

        assert _wait_for(listening)  # it caught up (nothing) and now waits on the channel
        result = store.append([ps.beat(store, "a")])  # the append NOTIFYs the channel
        started = time.monotonic()
        assert _wait_for(lambda: runner.lag()["checkpoint"] == result.last_position, 20)
        assert time.monotonic() - started < 20
    finally:
        stop.set()
        with engine.begin() as conn:  # wake it so it sees `stop` without waiting 60 s
            conn.execute(sa.text("SELECT pg_notify('clustermon_events', 'stop')"))
        thread.join(10)
        engine.dispose()
    assert not thread.is_alive()


def test_current_view_is_evaluated_at_now(store, clock):
    store.append([ps.beat(store, "a", "service")])
    ProjectionRunner(store).catch_up()
    start = clock()
    at_expiry = current_view(store.engine, start + timedelta(minutes=5))
    after = current_view(store.engine, start + timedelta(minutes=5, seconds=1))
    assert at_expiry["servers"][0]["components"][0]["heartbeat"]["state"] == "current"
    assert after["servers"][0]["components"][0]["heartbeat"]["state"] == "stale"


def test_runners_of_one_process_share_the_folded_state(store, monkeypatch):
    """The API builds a runner per request: only the first may read the whole read tables."""
    store.append([ps.beat(store, "a")])
    ProjectionRunner(store).catch_up()
    loads = []
    real = readmodel.load_state
    monkeypatch.setattr(readmodel, "load_state", lambda conn: loads.append(1) or real(conn))
    for name in ("b", "c", "d"):
        store.append([ps.beat(store, name)])
        assert ProjectionRunner(store).catch_up() == 1
    assert loads == []
    rebuild(store)  # moves the generation: the shared state no longer matches
    store.append([ps.beat(store, "e")])
    assert ProjectionRunner(store).catch_up() == 1
    assert loads == [1]
    assert sorted(_servers(store.engine, store.clock())) == ["a", "b", "c", "d", "e"]


def test_a_reader_follows_incrementally_without_changing_what_others_hold(store, clock):
    runner = ProjectionRunner(store)
    store.append([ps.beat(store, "a"), ps.beat(store, "b", "web")])
    runner.catch_up()
    held = current_state(store.engine)  # a request still evaluating this state
    held_before = held.copy()
    store.append([ps.beat(store, "a", status="error"), ps.remove("b", "web")])
    store.append([ps.configure(stale_timeout_seconds=60), ps.beat(store, "c")])
    runner.catch_up()
    loads = []
    real = readmodel.load_state
    try:
        readmodel.load_state = lambda conn: loads.append(1) or real(conn)
        newer = current_state(store.engine)
    finally:
        readmodel.load_state = real
    assert loads == []  # folded the 4 new events, did not re-read the tables
    assert held == held_before
    assert newer == fold(store.iter_all())
    assert newer.servers["c"] is not None and "b" not in newer.servers
