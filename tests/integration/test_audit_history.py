"""Episodes, failovers, cluster outages, what-if and reports over a scripted history, on both
databases. The history is written the way production writes it: heartbeats through the
command side (which records recoveries) and timeouts by the real sweep, under a FakeClock.

The script (Service timeout 300 s, the default; times are 2026-11-27 UTC):
- 10:00-10:10  servers a and b beat every minute (both also run a web component at 10:00).
- a is silent after 10:10; the sweep at 10:16 records a's timeout, expired 10:15 (b current:
  a failover). a beats again at 10:20: recovered (outage 300 s).
- 10:22-10:24  b reports version 2025.9 (the cluster reference stays 2025.10: b out of sync
  from 10:22 to 10:25, when it reports 2025.10 again).
- last beats: a at 10:30:00, b at 10:30:30. a expires 10:35:00 while b is current (a second
  failover); b expires 10:35:30: no current Service component, a cluster outage.
- b beats at 10:40:00 (cluster outage 10:35:30-10:40:00 = 270 s); a beats at 10:41:00.
- both beat every minute until 10:45.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from domain.events import HeartbeatRecorded
from eventstore.commands import ClusterCommands
from eventstore.store import NewEvent
from projections.audit import episode_pass, report_store, reports, whatif
from scheduler.deadlines import DeadlineIndex
from scheduler.sweep import emit_timeouts

T0 = datetime(2026, 11, 27, 10, 0, tzinfo=UTC)
KEY = "a" * 64


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


class Script:
    def __init__(self, store, clock):
        self.store, self.clock = store, clock
        self.commands = ClusterCommands(store)
        self.index = DeadlineIndex()  # as the scheduler keeps one: each sweep reads only the tail

    def to(self, minutes: float) -> None:
        target = at(minutes)
        assert target >= self.clock.now
        self.clock.now = target

    def beat(self, *servers: str, component: str = "service", version: str = "2025.10"):
        beats = [
            NewEvent(
                HeartbeatRecorded(
                    server=s,
                    component=component,
                    sent_at=self.clock(),
                    product="ProGet",
                    product_version=version,
                    encryption_key_fingerprint=KEY,
                )
            )
            for s in servers
        ]
        return self.commands.record_heartbeats(beats)

    def sweep(self):
        return emit_timeouts(self.store, self.clock(), index=self.index, detector="sweep-test")


def script_history(store, clock) -> Script:
    s = Script(store, clock)
    s.to(0)
    s.beat("a", "b", component="web")
    for minute in range(0, 11):
        s.to(minute)
        s.beat("a", "b")
    for minute in range(11, 20):
        s.to(minute)
        s.beat("b", version="2025.9" if 22 <= minute < 25 else "2025.10")
        s.sweep()
    for minute in range(20, 31):
        s.to(minute)
        s.beat("a")
        s.beat("b", version="2025.9" if 22 <= minute < 25 else "2025.10")
    s.to(30.5)
    s.beat("b")
    for minute in range(31, 40):
        s.to(minute)
        s.sweep()
    s.to(40)
    s.beat("b")
    for minute in range(41, 46):
        s.to(minute)
        s.beat("a", "b")
    s.to(45)
    return s


def test_component_episodes_follow_the_recorded_timeouts(store, clock):
    script_history(store, clock)
    result = episode_pass.build(store, at(45))
    listed = [
        (e.server, e.component, e.cause, e.start, e.end, e.detector, e.timeout_seconds)
        for e in result.episodes
    ]
    assert listed == [
        ("a", "service", "timeout", at(15), at(20), "sweep-test", 300),
        ("a", "service", "timeout", at(35), at(41), "sweep-test", 300),
        ("b", "service", "timeout", at(35.5), at(40), "sweep-test", 300),
    ]
    first = result.episodes[0]
    # the events it was built from: last heartbeat, the timeout, the recovery, in the log
    kinds = [r.type for p in first.positions for r in store.read_all(after=p - 1, limit=1)]
    assert kinds == ["HeartbeatRecorded", "ComponentTimedOut", "ComponentRecovered"]
    assert store.read_all(after=first.positions[0] - 1, limit=1)[0].recorded_at == at(10)


def test_failover_versus_cluster_outage(store, clock):
    script_history(store, clock)
    result = episode_pass.build(store, at(45))
    assert [(f.episode.server, f.episode.start, f.taken_over_by) for f in result.failovers] == [
        ("a", at(15), [("b", "service")]),
        ("a", at(35), [("b", "service")]),
    ]
    [outage] = result.cluster_outages
    assert (outage.start, outage.end) == (at(35.5), at(40))
    assert outage.seconds(at(45)) == 270
    assert {(e.server, e.start) for e in outage.episodes} == {("a", at(35)), ("b", at(35.5))}


def test_a_cluster_outage_still_going_on_is_open(store, clock):
    script_history(store, clock)
    result = episode_pass.build(store, at(38))
    [outage] = result.cluster_outages
    assert outage.end is None
    assert outage.seconds(at(38)) == 150


def test_report_numbers_match_a_hand_computation(store, clock):
    script_history(store, clock)
    data = reports.compute(store, at(0), at(45))
    rows = {(c["server"], c["component"]): c for c in data["components"]}
    a, b = rows[("a", "service")], rows[("b", "service")]
    # a: observed 45 min = 2,700 s, down 300 + 360 s
    assert a["observed_seconds"] == 2700
    assert a["outages"] == 2
    assert a["outage_seconds"] == 660
    assert a["uptime_percent"] == round(100 * 2040 / 2700, 3) == 75.556
    assert a["mttr_seconds"] == 330
    assert a["longest_outage_seconds"] == 360
    assert a["failovers"] == 2
    # b: down 270 s, and its timeout was no failover (nobody was current)
    assert (b["outages"], b["outage_seconds"], b["uptime_percent"]) == (1, 270, 90.0)
    assert (b["mttr_seconds"], b["longest_outage_seconds"], b["failovers"]) == (270, 270, 0)
    # the web components heartbeat once, well inside their 24 h window
    assert rows[("a", "web")]["uptime_percent"] == 100.0
    assert data["cluster"] == {
        "failovers": 2,
        "cluster_outages": 1,
        "cluster_outage_seconds": 270,
        "longest_cluster_outage_seconds": 270,
    }
    # b reported 2025.9 from 10:22 until its 10:25 heartbeat
    assert data["servers"] == [
        {
            "server": "b",
            "version_out_of_sync_periods": 1,
            "version_out_of_sync_seconds": 180,
            "key_out_of_sync_periods": 0,
            "key_out_of_sync_seconds": 0.0,
        }
    ]


def test_a_period_cuts_episodes_at_its_bounds(store, clock):
    script_history(store, clock)
    data = reports.compute(store, at(17), at(38))
    rows = {(c["server"], c["component"]): c for c in data["components"]}
    a = rows[("a", "service")]
    # 10:17-10:20 of the first outage, 10:35-10:38 of the second (still going on at the end)
    assert (a["outages"], a["outage_seconds"], a["longest_outage_seconds"]) == (2, 360, 180)
    assert a["mttr_seconds"] == 300  # only the first one recovered inside the period
    assert data["cluster"]["cluster_outage_seconds"] == 150
    assert data["cluster"]["failovers"] == 1  # the one at 10:15 started before the period


def test_recomputing_a_past_period_gives_identical_numbers(store, clock):
    s = script_history(store, clock)
    first = report_store.compute_and_store(store, at(0), at(45))
    # more history after the period, including an outage and a configuration change
    s.commands.change_configuration({"stale_timeout_seconds": 120}, {})
    s.to(60)
    s.sweep()
    s.beat("a", "b")
    second = report_store.compute_and_store(store, at(0), at(45))
    assert second["position"] > first["position"]
    assert second["data"] == first["data"]
    assert second["data"]["components"][0]["outages"] == 2


def test_what_if_with_a_longer_timeout_removes_the_short_blips(store, clock):
    script_history(store, clock)
    actual, longer = whatif.replay(store, at(45), {"stale_timeout_seconds": 900})
    assert len(actual.episodes) == 3
    assert longer.episodes == []
    assert (longer.failovers, longer.cluster_outages) == ([], [])
    compared = whatif.compare(actual, longer, at(0), at(45))
    assert compared["summary"]["actual"]["episodes"] == 3
    assert compared["summary"]["what_if"] == {
        "episodes": 0,
        "outage_seconds": 0,
        "failovers": 0,
        "cluster_outages": 0,
        "cluster_outage_seconds": 0,
    }


def test_what_if_with_the_actual_timeout_reproduces_the_actual_episodes(store, clock):
    script_history(store, clock)
    actual, same = whatif.replay(store, at(45), {"stale_timeout_seconds": 300})
    assert [(e.server, e.start, e.end) for e in same.episodes] == [
        (e.server, e.start, e.end) for e in actual.episodes
    ]
    assert len(same.failovers) == 2 and len(same.cluster_outages) == 1


def test_what_if_with_a_shorter_timeout_starts_earlier(store, clock):
    script_history(store, clock)
    _, shorter = whatif.replay(store, at(45), {"stale_timeout_seconds": 120})
    assert [(e.server, e.start, e.end) for e in shorter.episodes] == [
        ("a", at(12), at(20)),
        ("a", at(32), at(41)),
        ("b", at(32.5), at(40)),
    ]
    [outage] = shorter.cluster_outages
    assert (outage.start, outage.end) == (at(32.5), at(40))


def _more_history(s: Script) -> None:
    """After the script: b's web removed at 10:45; a's service silent after 10:46, timed out
    (10:51) and then removed at 10:53 while stale; b beats until 11:00."""
    s.commands.remove_component("b", "web", {"actor": "ops"})
    for minute in range(46, 61):
        s.to(minute)
        s.beat("b") if minute > 46 else s.beat("a", "b")
        s.sweep()
        if minute == 53:
            s.commands.remove_component("a", "service", {"actor": "ops"})


def test_a_report_started_from_any_snapshot_equals_the_full_pass(store, clock):
    from projections.readmodel.snapshots import take_snapshot

    s = script_history(store, clock)
    _more_history(s)
    full = {}
    sinces = [5, 12, 16, 22.5, 33, 36, 38, 41, 47, 52, 54, 58]
    for since in sinces:
        result = episode_pass.build(store, at(60), track_sync=True)
        full[since] = reports.summarize(result, at(since), at(60))
    # snapshots every 7 events: each period starts its pass from a different one
    take_snapshot(store, every_events=7, every_seconds=None)
    for since in sinces:
        seeded = reports.compute(store, at(since), at(60))
        assert seeded == full[since], since
    gone = [c for c in full[54]["components"] if (c["server"], c["component"]) == ("a", "service")]
    assert gone == []  # removed before the period and not back
    late = full[52]["episodes"]
    assert [(e["server"], e["component"], e["end"], e["end_cause"]) for e in late] == [
        ("a", "service", at(53), "removed"),  # removed while stale: the outage ends there
    ]
    assert [(e["server"], e["component"], e["start"]) for e in full[52]["absences"]] == [
        ("b", "web", at(45)),
        ("a", "service", at(53)),
    ]
