"""What-if seeded from a snapshot before `since` answers exactly what the replay from the
beginning of the log answers, for every period and setting, on both databases.

The log is written the way production writes it (heartbeats through the command side, timeouts
by the sweep) under a FakeClock, and holds what a seeded simulation has to rebuild: components
dead for good, removed while current, removed while timed out, removed and back, timeout changes
and a monitor gap while components were silent."""

from __future__ import annotations

import contextlib
import random
from datetime import timedelta

import pytest
import sqlalchemy as sa

from domain.decisions import NotInCluster
from domain.events import HeartbeatRecorded, MonitorResumed
from eventstore.commands import ClusterCommands
from eventstore.store import NewEvent
from projections.audit import whatif
from projections.readmodel import snapshots
from projections.readmodel.tables import snapshots as snapshots_table
from scheduler.deadlines import DeadlineIndex
from scheduler.sweep import emit_timeouts

OPS = {"actor": "ops"}
COMPONENTS = [(f"s{i}", c) for i in range(4) for c in ("service", "web")]
SETTINGS = [
    {"stale_timeout_seconds": 120},
    {"stale_timeout_seconds": 900},
    {"web_stale_timeout_seconds": 240},
    {"stale_timeout_seconds": 60, "web_stale_timeout_seconds": 7200},
]


def _history(store, clock, rng: random.Random) -> None:
    commands = ClusterCommands(store)
    index = DeadlineIndex()
    dead = {("s3", "service")}  # beats a while, then never again

    def beat(keys):
        commands.record_heartbeats(
            [NewEvent(HeartbeatRecorded(server=s, component=c, sent_at=clock())) for s, c in keys]
        )

    def sweep():
        emit_timeouts(store, clock(), index=index, detector="sweep-test")

    beat(COMPONENTS)
    for step in range(70):
        clock.advance(seconds=rng.choice([20, 45, 60, 90, 200, 400]))
        alive = [k for k in COMPONENTS if k not in dead or step < 5]
        beat(rng.sample(alive, rng.randint(1, len(alive))))
        sweep()
        roll = rng.random()
        if roll < 0.08:
            commands.change_configuration(
                {"stale_timeout_seconds": rng.choice([120, 300, 600])}, OPS
            )
        elif roll < 0.12:
            commands.change_configuration(
                {"web_stale_timeout_seconds": rng.choice([600, 3600, 86400])}, OPS
            )
        elif roll < 0.22:
            server, component = rng.choice([k for k in COMPONENTS if k not in dead])
            with contextlib.suppress(NotInCluster):  # removed already
                commands.remove_component(server, component, OPS)
        elif roll < 0.25:
            down_since = clock()
            clock.advance(minutes=rng.choice([3, 20]))
            store.append(
                [NewEvent(MonitorResumed(down_since=down_since, resumed_at=clock(), detector="t"))]
            )
    # Removed while timed out and never back; removed while current and never back.
    clock.advance(minutes=10)
    sweep()
    commands.remove_component("s3", "service", OPS)
    beat([("s1", "service")])
    commands.remove_component("s1", "service", OPS)
    for _ in range(5):
        clock.advance(minutes=2)
        beat([("s0", "service"), ("s2", "service")])
        sweep()


@pytest.mark.parametrize("seed", [1, 2])
def test_what_if_seeded_from_any_snapshot_equals_the_replay_from_the_start(store, clock, seed):
    start = clock()
    _history(store, clock, random.Random(seed))
    until = clock() + timedelta(minutes=1)
    clock.advance(minutes=1)
    span = until - start
    sinces = [start + span * (i / 13) for i in range(1, 13)]
    expected = {
        (i, n): whatif.compare(*whatif.replay(store, until, settings), since, until)
        for i, settings in enumerate(SETTINGS)
        for n, since in enumerate(sinces)
    }
    # Snapshots every few events: each period's replay starts from a different one.
    snapshots.take_snapshot(store, every_events=5, every_seconds=None)
    for i, settings in enumerate(SETTINGS):
        for n, since in enumerate(sinces):
            seeded = whatif.what_if(store, since, until, settings)
            assert seeded == expected[(i, n)], (settings, since)
    # The periods did have something to tell (the test compares more than empty answers).
    totals = [expected[k]["summary"]["what_if"] for k in expected]
    assert sum(t["episodes"] for t in totals) > 50
    assert sum(t["failovers"] for t in totals) > 0
    assert sum(t["cluster_outages"] for t in totals) > 0


def test_what_if_keeps_a_snapshot_before_its_period_and_starts_there(store, clock, monkeypatch):
    commands = ClusterCommands(store)
    start = clock()
    for _ in range(60):
        clock.advance(seconds=30)
        commands.record_heartbeats(
            [
                NewEvent(HeartbeatRecorded(server=s, component="service", sent_at=clock()))
                for s in ("a", "b")
            ]
        )
    until = clock()
    since = start + timedelta(minutes=25)
    full = whatif.compare(*whatif.replay(store, until, {"stale_timeout_seconds": 45}), since, until)
    monkeypatch.setattr("projections.readmodel.timetravel.KEEP_AFTER", 10)

    folded: list[int] = []
    seeded = whatif.what_if(
        store, since, until, {"stale_timeout_seconds": 45}, progress=folded.append
    )
    assert seeded == full
    with store.engine.connect() as conn:
        kept = conn.execute(sa.select(snapshots_table.c.position)).scalars().all()
    before_since = store.last_position_at(since, inclusive=False)
    assert kept and max(p for p in kept if p <= before_since) >= before_since - 10
    # the replay folded only the events from that snapshot on, not the 120 of the log
    assert sum(folded) <= store.head_position() - before_since + 10
