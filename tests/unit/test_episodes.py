"""The episode builder on in-memory logs: removals, simultaneous expiries, inferred staleness,
the ingest detector and the what-if rules (monitor gaps, configuration changes)."""

from __future__ import annotations

from datetime import timedelta

from projections.audit.episodes import EpisodeBuilder, Result
from tests.unit.projection_helpers import KEY_B, T0, Log


def at(minutes: float):
    return T0 + timedelta(minutes=minutes)


def run(log: Log, horizon_minutes: float, overrides=None, track_sync=False) -> Result:
    builder = EpisodeBuilder(overrides, track_sync=track_sync).feed_all(log.events)
    return builder.finish(at(horizon_minutes))


def test_a_removal_is_an_outage_until_the_next_heartbeat_and_not_a_failover():
    log = Log()
    log.heartbeat("a")
    log.heartbeat("b")
    log.advance(minutes=1)
    removal = log.remove("a", reason="decommission")
    log.advance(minutes=2)
    log.heartbeat("b")
    back = log.heartbeat("a")
    result = run(log, 4)
    [episode] = result.episodes
    assert (episode.cause, episode.start, episode.end) == ("removed", at(1), at(3))
    assert episode.positions == [removal.position, back.position]
    assert result.failovers == [] and result.cluster_outages == []


def test_removing_the_last_current_service_component_is_a_cluster_outage():
    log = Log()
    log.heartbeat("a")
    log.advance(minutes=1)
    log.remove("a")
    result = run(log, 10)
    [outage] = result.cluster_outages
    assert (outage.start, outage.end) == (at(1), None)
    assert outage.seconds(at(10)) == 540


def test_two_components_expiring_at_the_same_instant_did_not_fail_over_to_each_other():
    log = Log()
    log.heartbeat("a")
    log.heartbeat("b")
    log.advance(minutes=6)
    log.timed_out("a", "service", at(5))
    log.timed_out("b", "service", at(5))
    result = run(log, 6)
    assert result.failovers == []
    [outage] = result.cluster_outages
    assert outage.start == at(5)
    assert {e.server for e in outage.episodes} == {"a", "b"}


def test_a_component_coming_back_when_another_expires_takes_the_work_over():
    log = Log()
    log.heartbeat("a")
    log.advance(minutes=2)
    log.heartbeat("b")
    log.advance(minutes=6)  # 10:08: b expired at 10:07; a at 10:05 with b current
    log.timed_out("a", "service", at(5))
    log.timed_out("b", "service", at(7))
    log.recovered("a", "service", at(5))
    log.heartbeat("a")
    result = run(log, 10)
    assert [(f.episode.server, f.episode.start) for f in result.failovers] == [("a", at(5))]
    [outage] = result.cluster_outages
    assert (outage.start, outage.end) == (at(7), at(8))


def test_web_components_never_make_failovers_or_cluster_outages():
    log = Log()
    log.heartbeat("a", "web")
    log.heartbeat("a", "service")
    log.advance(days=2)
    log.heartbeat("a", "service")
    result = run(log, 2 * 24 * 60)
    [web] = [e for e in result.episodes if e.component == "web"]
    assert web.start == at(24 * 60) and web.inferred
    assert result.cluster_outages == []


def test_a_late_heartbeat_caught_by_ingest_is_one_episode():
    log = Log()
    log.heartbeat("a")
    log.advance(minutes=9)
    timeout = log.timed_out("a", "service", at(5))
    recovery = log.recovered("a", "service", at(5))
    beat = log.heartbeat("a")
    result = run(log, 10)
    [episode] = result.episodes
    assert (episode.start, episode.end, episode.seconds(at(10))) == (at(5), at(9), 240)
    assert timeout.position in episode.positions and recovery.position in episode.positions
    assert beat.position not in episode.positions  # the recovery closes it


def test_staleness_not_recorded_yet_is_inferred_at_the_horizon():
    log = Log()
    first = log.heartbeat("a")
    result = run(log, 7)
    [episode] = result.episodes
    assert (episode.start, episode.end, episode.inferred) == (at(5), None, True)
    assert episode.detector is None
    assert episode.last_heartbeat_position == first.position
    assert run(log, 5).episodes == []  # at the deadline itself it is still current


def test_the_configuration_in_force_is_recorded_with_the_change_that_set_it():
    log = Log()
    change = log.configure(stale_timeout_seconds=120)
    log.heartbeat("a")
    log.advance(minutes=3)
    log.timed_out("a", "service", at(2), timeout=120)
    [episode] = run(log, 3).episodes
    assert episode.timeout_seconds == 120
    assert episode.configuration_position == change.position


def test_what_if_gives_one_full_timeout_after_a_monitor_gap():
    log = Log()
    log.heartbeat("a")
    log.advance(minutes=10)
    log.resumed(down_since=at(2))  # the monitor was down 10:02-10:10
    log.advance(minutes=4)
    log.heartbeat("a")
    # 300 s: the deadline 10:05 fell in the gap, so a gets until 10:15 -> no episode
    assert run(log, 14, {"stale_timeout_seconds": 300}).episodes == []
    # 60 s: the deadline 10:01 passed before the gap: an episode from 10:01 to 10:14
    [episode] = run(log, 14, {"stale_timeout_seconds": 60}).episodes
    assert (episode.start, episode.end, episode.detector) == (at(1), at(14), "what-if")


def test_what_if_keeps_a_deadline_that_passed_before_a_configuration_change():
    log = Log()
    log.heartbeat("a")
    log.advance(minutes=8)
    log.configure(web_stale_timeout_seconds=3600)  # not the pinned setting: still settles
    log.advance(minutes=2)
    log.heartbeat("a")
    [episode] = run(log, 10, {"stale_timeout_seconds": 300}).episodes
    assert (episode.start, episode.end) == (at(5), at(10))


def test_what_if_uses_later_configuration_changes_of_the_settings_not_pinned():
    log = Log()
    log.heartbeat("a", "web")
    log.configure(web_stale_timeout_seconds=600)
    log.advance(minutes=15)
    log.heartbeat("a", "web")
    [episode] = run(log, 15, {"stale_timeout_seconds": 60}).episodes
    assert (episode.component, episode.start, episode.end) == ("web", at(10), at(15))


def test_key_out_of_sync_periods_follow_the_reports_of_the_servers():
    log = Log()
    log.heartbeat("a")
    log.heartbeat("b")
    log.heartbeat("c")
    log.advance(minutes=1)
    opened = log.heartbeat("c", encryption_key_fingerprint=KEY_B)
    log.advance(minutes=1)
    log.heartbeat("a")  # nothing changes: no new period
    log.advance(minutes=1)
    closed = log.heartbeat("c")
    result = run(log, 4, track_sync=True)
    [period] = result.sync_periods
    assert (period.server, period.kind, period.start, period.end) == ("c", "key", at(1), at(3))
    assert (period.opened_position, period.closed_position) == (opened.position, closed.position)
