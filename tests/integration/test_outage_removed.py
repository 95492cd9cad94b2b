"""Removed means ended (issue #20, item 6): an outage episode ends at the component's removal
(`end_cause` "removed") and never stays ongoing after it, in the episode pass, the reports'
uptime figures and a pass seeded from a snapshot; on both databases. Written the way
production writes: heartbeats and removals through the command side, timeouts by the sweep.

History (Service timeout 300 s; 2026-11-27 UTC): a and b beat every minute 10:00-10:10; a goes
silent and times out at 10:15 (recorded by the sweep at 10:16); a is removed at 10:20 while
stale; b beats on until 10:30.
"""

from __future__ import annotations

from projections.audit import episode_pass, reports
from projections.readmodel.snapshots import take_snapshot
from tests.integration.test_audit_history import Script, at


def _history(store, clock) -> Script:
    s = Script(store, clock)
    for minute in range(0, 11):
        s.to(minute)
        s.beat("a", "b")
    for minute in range(11, 31):
        s.to(minute)
        s.beat("b")
        s.sweep()
        if minute == 20:
            s.commands.remove_component("a", "service", {"actor": "ops"})
    return s


def test_a_removed_components_outage_ends_at_the_removal(store, clock):
    _history(store, clock)
    result = episode_pass.build(store, at(30))
    [episode] = result.episodes
    assert (episode.server, episode.cause, episode.start) == ("a", "timeout", at(15))
    assert (episode.end, episode.end_cause, episode.removed_at) == (at(20), "removed", at(20))
    listed = episode.to_dict(at(30))
    assert listed["ongoing"] is False
    assert listed["duration_seconds"] == 300  # 10:15 to 10:20, not to the horizon
    [absence] = result.absences
    assert (absence.server, absence.start, absence.end) == ("a", at(20), None)
    # A failover at 10:15 (b took the work over), never recovered; a's removal is no cluster
    # outage.
    [failover] = [f.to_dict(at(30)) for f in result.failovers]
    assert (failover["server"], failover["at"]) == ("a", at(15))
    assert (failover["recovered_at"], failover["removed_at"]) == (None, at(20))
    assert failover["outage_seconds"] == 300
    assert result.cluster_outages == []


def test_a_report_counts_it_as_ended_and_the_removed_time_as_neither_up_nor_down(store, clock):
    _history(store, clock)
    data = reports.compute(store, at(0), at(30))
    rows = {c["server"]: c for c in data["components"]}
    a = rows["a"]
    # Observed 10:00-10:20 (1,200 s): 300 s down, then removed for the last 600 s.
    assert (a["observed_seconds"], a["outage_seconds"]) == (1200, 300)
    assert a["uptime_percent"] == 75.0
    assert (a["removals"], a["removed_seconds"]) == (1, 600)
    assert a["mttr_seconds"] is None  # removed, never repaired
    [listed] = data["episodes"]
    assert (listed["ongoing"], listed["end"], listed["end_cause"]) == (False, at(20), "removed")
    assert rows["b"]["uptime_percent"] == 100.0
    # A later period in which a is absent throughout leaves it out.
    later = reports.compute(store, at(21), at(30))
    assert [c["server"] for c in later["components"]] == ["b"]
    assert later["episodes"] == []


def test_a_pass_seeded_after_the_removal_equals_the_full_pass(store, clock):
    _history(store, clock)
    full = {since: reports.compute(store, at(since), at(30)) for since in (12, 18, 22, 25)}
    take_snapshot(store, every_events=5, every_seconds=None)
    for since, expected in full.items():
        assert reports.compute(store, at(since), at(30)) == expected, since
    seeded = episode_pass.build(store, at(30), since=at(25))
    assert [(a.server, a.start, a.end) for a in seeded.absences] == [("a", at(20), None)]
    assert all(e.end is not None for e in seeded.episodes)


def test_removing_the_only_service_while_stale_keeps_the_cluster_outage_going(store, clock):
    s = Script(store, clock)
    s.to(0)
    s.beat("a")
    for minute in range(1, 11):
        s.to(minute)
        s.sweep()
        if minute == 8:
            s.commands.remove_component("a", "service", {"actor": "ops"})
    result = episode_pass.build(store, at(10))
    [episode] = result.episodes
    assert (episode.start, episode.end, episode.end_cause) == (at(5), at(8), "removed")
    # Its outage ended; the cluster still has no Service component: one outage since 10:05.
    [outage] = result.cluster_outages
    assert (outage.start, outage.end) == (at(5), None)
    assert [(c["server"], c["cause"]) for c in outage.to_dict(at(10))["components"]] == [
        ("a", "timeout"),
        ("a", "removed"),
    ]
