"""The timeout sweep's rules, with an injected clock, on SQLite and PostgreSQL."""

from __future__ import annotations

import random
from datetime import timedelta

import pytest

from domain import rules
from domain.events import (
    ComponentRemoved,
    ComponentTimedOut,
    ConfigurationChanged,
    HeartbeatRecorded,
    MonitorResumed,
)
from domain.state import fold
from eventstore import NewEvent
from eventstore.commands import ClusterCommands
from scheduler.deadlines import DeadlineIndex
from scheduler.gaps import record_liveness, resume_after_gap
from scheduler.sweep import emit_timeouts

US = timedelta(microseconds=1)


def beat(store, server, component="service"):
    """A heartbeat through the real ingest (it records recoveries and late timeouts)."""
    event = HeartbeatRecorded(server, component, sent_at=store.clock())
    return ClusterCommands(store).record_heartbeats([NewEvent(event)]).recorded[-1]


def configure(store, **changes):
    return store.append([NewEvent(ConfigurationChanged(changes))]).recorded[0]


def timeouts(store):
    return [r for r in store.read_all(limit=None) if r.type == "ComponentTimedOut"]


def test_a_timeout_is_emitted_just_after_the_deadline_never_at_or_before_it(store, clock):
    start = clock.now
    recorded = beat(store, "app01")
    expiry = start + timedelta(seconds=300)

    assert emit_timeouts(store, expiry - US) == []
    assert emit_timeouts(store, expiry) == []  # the rules: current while now <= deadline
    detected = expiry + US
    [event] = emit_timeouts(store, detected, detector="sched-a")

    assert event.stream == "app01/service"
    assert event.event == ComponentTimedOut(
        server="app01",
        component="service",
        expired_at=expiry,
        detected_at=detected,
        timeout_seconds=300,
        configuration_version=0,
        last_heartbeat_position=recorded.position,
        detector="sched-a",
    )
    # Stored and decoded exactly (microseconds and time zone survive the round trip).
    assert timeouts(store)[0].event == event.event
    # Already stale: later sweeps do not repeat it.
    assert emit_timeouts(store, expiry + timedelta(hours=1)) == []


def test_web_components_use_the_web_window(store, clock):
    start = clock.now
    beat(store, "app01", "web")
    beat(store, "app01", "service")

    swept = emit_timeouts(store, start + timedelta(hours=1))
    assert [r.event.component for r in swept] == ["service"]
    [web] = emit_timeouts(store, start + timedelta(days=1) + US)
    assert (web.event.component, web.event.timeout_seconds) == ("web", 86_400)
    assert web.event.expired_at == start + timedelta(days=1)


def test_shortening_the_stale_timeout_expires_components_at_once(store, clock):
    start = clock.now
    beat(store, "app01")
    clock.advance(seconds=100)
    configure(store, stale_timeout_seconds=60)

    [event] = emit_timeouts(store, clock.now)
    assert event.event.expired_at == start + timedelta(seconds=60)
    assert event.event.timeout_seconds == 60
    assert event.event.configuration_version == 1


def test_lengthening_the_stale_timeout_never_unexpires_history(store, clock):
    start = clock.now
    beat(store, "old01")
    clock.advance(seconds=200)
    beat(store, "new01")
    index = DeadlineIndex()
    [expired] = emit_timeouts(store, start + timedelta(seconds=301), index=index)
    assert expired.event.server == "old01"

    clock.advance(seconds=200)  # start + 400
    configure(store, stale_timeout_seconds=600)
    assert emit_timeouts(store, clock.now, index=index) == []
    state = fold(store.read_all(limit=None))
    old = state.component("old01", "service")
    beat_now = rules.heartbeat(old, state.configuration, clock.now, state.monitor_resumed_at)
    assert (beat_now.state, beat_now.stale_since) == ("stale", start + timedelta(seconds=300))

    # new01's deadline moved from start+500 to start+800.
    assert emit_timeouts(store, start + timedelta(seconds=501), index=index) == []
    [moved] = emit_timeouts(store, start + timedelta(seconds=800) + US, index=index)
    assert moved.event.server == "new01"
    assert moved.event.expired_at == start + timedelta(seconds=800)
    assert len(timeouts(store)) == 2


def test_removed_components_never_time_out(store, clock):
    beat(store, "gone01")
    beat(store, "kept01")
    index = DeadlineIndex()
    index.follow(store)  # the index knew gone01's deadline before the removal
    store.append([NewEvent(ComponentRemoved("gone01", "service", reason="decommissioned"))])

    swept = emit_timeouts(store, clock.now + timedelta(days=30), index=index)
    assert [r.event.server for r in swept] == ["kept01"]


def test_a_recovered_component_gets_a_fresh_deadline(store, clock):
    beat(store, "app01")
    index = DeadlineIndex()
    clock.advance(seconds=301)
    assert len(emit_timeouts(store, clock.now, index=index)) == 1

    clock.advance(seconds=60)
    back = clock.now
    beat(store, "app01")
    types = [r.type for r in store.read_stream("app01/service")]
    assert types == [
        "HeartbeatRecorded",
        "ComponentTimedOut",
        "ComponentRecovered",
        "HeartbeatRecorded",
    ]

    assert emit_timeouts(store, back + timedelta(seconds=300), index=index) == []
    [again] = emit_timeouts(store, back + timedelta(seconds=300) + US, index=index)
    assert again.event.expired_at == back + timedelta(seconds=300)


def test_two_sweepers_never_write_the_same_timeout_twice(store, clock):
    for n in range(20):
        beat(store, f"app{n:02}")
    first, second = DeadlineIndex(), DeadlineIndex()
    first.follow(store)
    second.follow(store)  # both judged the same state
    later = clock.now + timedelta(seconds=301)

    assert len(emit_timeouts(store, later, index=first, detector="a")) == 20
    assert emit_timeouts(store, later, index=second, detector="b") == []
    assert len(timeouts(store)) == 20


def test_a_heartbeat_that_arrived_in_time_beats_a_sweep_that_judged_before_it(store, clock):
    start = clock.now
    beat(store, "app01")
    index = DeadlineIndex()
    index.follow(store)  # the sweep's view: deadline start+300
    clock.advance(seconds=299)
    beat(store, "app01")  # in time, committed after the sweep read the log

    # The sweep wakes after the old deadline: its append expects the old stream version.
    assert emit_timeouts(store, start + timedelta(seconds=301), index=index) == []
    assert [r.type for r in store.read_stream("app01/service")] == ["HeartbeatRecorded"] * 2
    [event] = emit_timeouts(store, start + timedelta(seconds=599) + US, index=index)
    assert event.event.expired_at == start + timedelta(seconds=599)


GAP_ARGS = {"sweep_interval_seconds": 1, "detector": "sched-b"}


def test_after_a_monitor_gap_every_component_gets_one_full_timeout(store, clock):
    start = clock.now
    for name in ("app01", "app02", "app03"):
        beat(store, name)
    record_liveness(store.engine, "sched-a", start, start + timedelta(seconds=10))
    resumed = start + timedelta(hours=2)
    clock.now = resumed

    index = DeadlineIndex()
    index.follow(store)
    gap = resume_after_gap(store, resumed, config=index.state.configuration, **GAP_ARGS)
    assert gap.event == MonitorResumed(
        down_since=start + timedelta(seconds=10), resumed_at=resumed, detector="sched-b"
    )
    # No flood at start-up, and nothing while the components have their full timeout.
    assert emit_timeouts(store, resumed + US, index=index) == []
    clock.advance(seconds=100)
    beat(store, "app02")  # app02 reports again after the restart
    assert emit_timeouts(store, resumed + timedelta(seconds=300), index=index) == []

    swept = emit_timeouts(store, resumed + timedelta(seconds=300) + US, index=index)
    assert sorted(r.event.server for r in swept) == ["app01", "app03"]
    assert {r.event.expired_at for r in swept} == {resumed + timedelta(seconds=300)}


def test_heartbeats_recorded_before_the_scheduler_is_back_do_not_hide_the_gap(store, clock):
    """The usual restart: the API comes up first and records heartbeats, the scheduler takes
    over a few seconds later. The silence after the last liveness is what counts."""
    start = clock.now
    beat(store, "app01")
    beat(store, "app02")
    record_liveness(store.engine, "sched-a", start, start)
    clock.advance(hours=1)
    api_back = clock.now
    beat(store, "app02")  # the API is back first
    clock.advance(seconds=5)

    config = fold([]).configuration
    gap = resume_after_gap(store, clock.now, config=config, **GAP_ARGS)
    assert (gap.event.down_since, gap.event.resumed_at) == (start, api_back + timedelta(seconds=5))
    assert emit_timeouts(store, clock.now) == []  # app01 is not flooded out


def test_heartbeats_just_before_everything_stopped_do_not_hide_the_gap(store, clock):
    """Liveness is written every few seconds: when the API and the scheduler stop together,
    the API has usually recorded heartbeats after the last liveness write. They came before
    the outage, not after it."""
    start = clock.now
    record_liveness(store.engine, "sched-a", start, start)
    clock.advance(seconds=3)
    beat(store, "app01")
    beat(store, "app02")
    stopped = clock.now
    clock.advance(seconds=72)  # both down: longer than the 60 s threshold (2 heartbeats)

    config = fold([]).configuration
    gap = resume_after_gap(store, clock.now, config=config, **GAP_ARGS)
    assert (gap.event.down_since, gap.event.resumed_at) == (stopped, clock.now)
    # No timeout inside the outage: each component gets its full timeout from the restart.
    assert emit_timeouts(store, stopped + timedelta(seconds=300) + US) == []
    swept = emit_timeouts(store, clock.now + timedelta(seconds=300) + US)
    assert {r.event.expired_at for r in swept} == {clock.now + timedelta(seconds=300)}


def test_a_cluster_falling_silent_while_the_scheduler_was_away_is_not_a_monitor_gap(store, clock):
    """The scheduler was away; the API kept recording for 40 minutes, then every agent fell
    silent (the whole cluster died). That outage is the components', not the monitor's: their
    timeouts keep their exact expiry."""
    start = clock.now
    record_liveness(store.engine, "sched-a", start, start)
    for _ in range(120):
        clock.advance(seconds=20)
        beat(store, "app01")
        beat(store, "app02")
    last = clock.now
    clock.advance(minutes=20)

    config = fold([]).configuration
    assert resume_after_gap(store, clock.now, config=config, **GAP_ARGS) is None
    swept = emit_timeouts(store, clock.now)
    assert sorted(r.event.server for r in swept) == ["app01", "app02"]
    assert {r.event.expired_at for r in swept} == {last + timedelta(seconds=300)}


def test_a_short_pause_or_a_scheduler_alone_down_is_not_a_monitor_gap(store, clock):
    start = clock.now
    beat(store, "app01")
    record_liveness(store.engine, "sched-a", start, start)
    config = fold([]).configuration

    # 25 s without a scheduler: below the 30 s floor (and 2 heartbeat periods = 60 s).
    assert resume_after_gap(store, start + timedelta(seconds=25), config=config, **GAP_ARGS) is None
    # The scheduler was down for an hour but the API kept recording heartbeats: components
    # could report, so the timeouts that fell in that hour are real and keep their exact expiry.
    for _ in range(180):
        clock.advance(seconds=20)
        store.append([NewEvent(HeartbeatRecorded("app02", "service", sent_at=clock.now))])
    assert resume_after_gap(store, clock.now, config=config, **GAP_ARGS) is None
    [event] = emit_timeouts(store, clock.now)
    assert (event.event.server, event.event.expired_at) == ("app01", start + timedelta(seconds=300))


def test_without_any_liveness_the_log_tells_whether_the_monitor_was_down(store, clock):
    config = fold([]).configuration
    assert resume_after_gap(store, clock.now, config=config, **GAP_ARGS) is None  # empty log
    start = clock.now
    beat(store, "app01")
    assert resume_after_gap(store, start + timedelta(seconds=20), config=config, **GAP_ARGS) is None
    gap = resume_after_gap(store, start + timedelta(hours=1), config=config, **GAP_ARGS)
    assert gap.event.down_since == start


@pytest.mark.parametrize("seed", [1, 2])
def test_a_long_lived_index_agrees_with_the_rules_over_a_random_history(store, clock, seed):
    """Whatever happens, after each sweep every component the rules call stale has exactly one
    timeout recorded since its last heartbeat, stamped with its exact deadline."""
    rng = random.Random(seed)
    names = [f"app{n:02}" for n in range(12)]
    index = DeadlineIndex()
    for _ in range(150):
        action = rng.random()
        if action < 0.6:
            beat(store, rng.choice(names), rng.choice(["service", "web"]))
        elif action < 0.67:
            configure(store, stale_timeout_seconds=rng.choice([30, 60, 300, 900]))
        elif action < 0.7:
            configure(store, web_stale_timeout_seconds=rng.choice([60, 600]))
        elif action < 0.75:
            state = fold(store.read_all(limit=None))
            present = [(c.server, c.name) for c in state.components()]
            if present:
                store.append([NewEvent(ComponentRemoved(*rng.choice(present)))])
        clock.advance(seconds=rng.choice([1, 5, 20, 60, 200]))
        emit_timeouts(store, clock.now, index=index)

        log = store.read_all(limit=None)
        state = fold(log)
        for component in state.components():
            verdict = rules.heartbeat(component, state.configuration, clock.now)
            assert (component.timed_out_at is not None) == (verdict.state == "stale")
        streams: dict[str, list] = {}
        for r in log:
            streams.setdefault(r.stream, []).append(r)
        for stream_events in streams.values():
            since_beat = 0
            for r in stream_events:
                if r.type == "HeartbeatRecorded":
                    since_beat, last_beat = 0, r
                elif r.type == "ComponentTimedOut":
                    since_beat += 1
                    assert since_beat == 1, "two timeouts without a heartbeat between"
                    assert r.event.last_heartbeat_position == last_beat.position
                    assert r.event.expired_at == last_beat.recorded_at + timedelta(
                        seconds=r.event.timeout_seconds
                    )
                    assert r.event.expired_at < r.event.detected_at
                elif r.type == "ComponentRemoved":
                    since_beat = 0
    # The history exercised what it claims to: timeouts, recoveries and a removal.
    kinds = {r.type for r in log}
    assert {"ComponentTimedOut", "ComponentRecovered", "ComponentRemoved"} <= kinds


def test_an_index_started_from_a_snapshot_emits_what_a_full_fold_emits(store, clock):
    from projections.readmodel.snapshots import take_snapshot

    start = clock.now
    for n in range(5):
        beat(store, f"app{n:02}")
    clock.advance(seconds=100)
    configure(store, stale_timeout_seconds=200)
    snapshot_at = take_snapshot(store, force=True)
    beat(store, "app03")  # after the snapshot: only the tail knows it
    beat(store, "app09")

    index = DeadlineIndex.from_latest_snapshot(store)
    assert index.state.position == snapshot_at  # it did not fold from zero
    swept = emit_timeouts(store, start + timedelta(seconds=201), index=index)
    assert sorted(r.event.server for r in swept) == ["app00", "app01", "app02", "app04"]
    assert {r.event.expired_at for r in swept} == {start + timedelta(seconds=200)}
    assert emit_timeouts(store, start + timedelta(seconds=300), index=index) == []  # app03, app09


def test_a_gap_already_recorded_is_not_recorded_again(store, clock):
    """An API process may record the gap at its start-up (same function, its own detector);
    the scheduler taking over a few seconds later does not record a second one."""
    start = clock.now
    beat(store, "app01")
    record_liveness(store.engine, "sched-a", start, start)
    clock.advance(hours=1)
    config = fold([]).configuration
    first = resume_after_gap(
        store, clock.now, config=config, sweep_interval_seconds=1, detector="api"
    )
    assert first is not None
    beat(store, "app01")
    clock.advance(seconds=5)
    assert resume_after_gap(store, clock.now, config=config, **GAP_ARGS) is None
