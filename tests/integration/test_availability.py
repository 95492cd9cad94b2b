"""Availability strips on both databases: the sparse episode pass finds what the full pass finds,
and a strip shows what happened to a component, with the report's uptime beside it."""

from __future__ import annotations

import random
from datetime import timedelta

import pytest

from domain.events import HeartbeatRecorded, MonitorResumed
from domain.state import fold
from eventstore.commands import ClusterCommands
from eventstore.store import NewEvent
from projections.audit import availability, episode_pass, reports
from projections.readmodel import snapshots
from scheduler.deadlines import DeadlineIndex
from scheduler.sweep import emit_timeouts
from tests.integration.test_whatif_seeded import _history

OPS = {"actor": "ops"}
# What the strips use of an episode. The sparse pass skips the heartbeats in between, so an
# episode's `last_heartbeat` (a detail of the audit, not drawn) is not compared.
COMPARED = ("server", "component", "cause", "start", "end", "removed_at", "inferred", "detector")


def _episodes(result, since, until):
    return [{k: getattr(e, k) for k in COMPARED} for e in result.episodes_in(since, until)]


@pytest.mark.parametrize("seed", [1, 2])
def test_the_sparse_pass_finds_the_episodes_of_the_full_pass(store, clock, seed):
    start = clock()
    _history(store, clock, random.Random(seed))
    clock.advance(minutes=1)
    until = clock()
    current = fold(store.iter_all())
    span = until - start
    sinces = [start + span * (i / 7) for i in range(7)]

    def check():
        for since in sinces:
            full = episode_pass.build(store, until, since=since)
            sparse = availability.sparse_episodes(store, since, until, current)
            assert _episodes(sparse.result, since, until) == _episodes(full, since, until)
            assert sparse.result.first_seen == full.first_seen
            assert sparse.result.present == full.present
            assert (
                reports.summarize(sparse.result, since, until)["components"]
                == (reports.summarize(full, since, until)["components"])
            )

    check()  # from the beginning of the log
    snapshots.take_snapshot(store, every_events=7, every_seconds=None)
    check()  # seeded from whichever snapshot comes before each window
    assert sum(len(_episodes(episode_pass.build(store, until), s, until)) for s in sinces) > 30


def _beat(commands, clock, keys):
    commands.record_heartbeats(
        [NewEvent(HeartbeatRecorded(server=s, component=c, sent_at=clock())) for s, c in keys]
    )


def test_a_strip_shows_stale_removed_and_gap_with_the_report_uptime(store, clock):
    commands = ClusterCommands(store)
    index = DeadlineIndex()
    commands.change_configuration({"stale_timeout_seconds": 60}, OPS)
    start = clock()
    keys = [("a", "service"), ("b", "service")]
    _beat(commands, clock, keys)
    for _ in range(10):  # 10 min: both report every 30 s
        for _ in range(2):
            clock.advance(seconds=30)
            _beat(commands, clock, keys)
        emit_timeouts(store, clock(), index=index, detector="sweep-test")
    # b falls silent for 5 minutes: stale from 60 s after its last heartbeat
    silent_from = clock()
    for _ in range(10):
        clock.advance(seconds=30)
        _beat(commands, clock, [("a", "service")])
        emit_timeouts(store, clock(), index=index, detector="sweep-test")
    _beat(commands, clock, [("b", "service")])
    back = clock()
    clock.advance(seconds=30)
    _beat(commands, clock, keys)
    # the monitor is down for 10 minutes
    down = clock()
    clock.advance(minutes=10)
    store.append([NewEvent(MonitorResumed(down_since=down, resumed_at=clock(), detector="t"))])
    resumed = clock()
    _beat(commands, clock, keys)
    clock.advance(seconds=30)
    commands.remove_component("a", "service", OPS)
    removed = clock()
    clock.advance(minutes=2)
    now = clock()

    answer = availability.availability(store, "24h", now, fold(store.iter_all()))

    since = now - timedelta(hours=24)
    rows = {(c["server"], c["component"]): c for c in answer["components"]}
    reasons = {r["id"]: r for r in answer["reasons"]}

    def seconds(at):
        return round((at - since).total_seconds(), 3)

    def drawn(key):
        return [(a, b, state) for a, b, state, _ in rows[key]["segments"]]

    assert drawn(("b", "service")) == [
        (seconds(start), seconds(silent_from + timedelta(seconds=60)), "current"),
        (seconds(silent_from + timedelta(seconds=60)), seconds(back), "stale"),
        (seconds(back), seconds(down), "current"),
        (seconds(down), seconds(resumed), "gap"),
        (seconds(resumed), seconds(resumed + timedelta(seconds=60)), "current"),
        # silent since the restart: stale by the rules before any sweep recorded it
        (seconds(resumed + timedelta(seconds=60)), seconds(now), "stale"),
    ]
    recorded, inferred = (
        rows[("b", "service")]["segments"][1],
        rows[("b", "service")]["segments"][-1],
    )
    assert reasons[recorded[3]]["text"] == (
        "no heartbeat within the Service stale timeout (60 s); timeout recorded by sweep-test"
    )
    assert "the timeout is not recorded yet" in reasons[inferred[3]]["text"]
    assert drawn(("a", "service")) == [
        (seconds(start), seconds(down), "current"),
        (seconds(down), seconds(resumed), "gap"),
        (seconds(resumed), seconds(removed), "current"),
        (seconds(removed), seconds(now), "removed"),
    ]
    assert rows[("a", "service")]["present"] is False
    report = reports.compute(store, since, now)
    assert {(c["server"], c["component"]): c["uptime_percent"] for c in report["components"]} == {
        k: c["uptime_percent"] for k, c in rows.items()
    }
    assert rows[("b", "service")]["uptime_percent"] < 100


def test_a_removal_that_ended_before_the_snapshot_is_not_drawn(store, clock):
    commands = ClusterCommands(store)
    _beat(commands, clock, [("a", "service"), ("b", "service")])
    clock.advance(minutes=1)
    commands.remove_component("a", "service", OPS)
    clock.advance(minutes=1)
    _beat(commands, clock, [("a", "service"), ("b", "service")])
    snapshots.take_snapshot(store, force=True)  # a seed after the removal and the return
    clock.advance(minutes=1)
    _beat(commands, clock, [("a", "service"), ("b", "service")])
    since = clock()
    clock.advance(seconds=30)
    _beat(commands, clock, [("a", "service"), ("b", "service")])
    clock.advance(seconds=30)

    sparse = availability.sparse_episodes(store, since, clock(), fold(store.iter_all()))
    answer = availability.strips(sparse, since, clock())

    assert [[s[2] for s in c["segments"]] for c in answer["components"]] == [
        ["current"],
        ["current"],
    ]
