"""The episode builder on in-memory logs: removals, simultaneous expiries, inferred staleness,
the ingest detector, the what-if rules (monitor gaps, configuration changes) and the sync
periods (kept incrementally, checked against judging every server again after every event)."""

from __future__ import annotations

from datetime import timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from domain import rules
from eventstore.store import RecordedEvent
from projections.audit import reports
from projections.audit.episodes import EpisodeBuilder, Result
from projections.audit.sync_periods import SyncPeriod
from tests.unit.projection_helpers import KEY_A, KEY_B, T0, Log


def at(minutes: float):
    return T0 + timedelta(minutes=minutes)


def run(log: Log, horizon_minutes: float, overrides=None, track_sync=False) -> Result:
    builder = EpisodeBuilder(overrides, track_sync=track_sync).feed_all(log.events)
    return builder.finish(at(horizon_minutes))


def test_a_removal_is_an_absence_until_the_next_heartbeat_not_an_outage_nor_a_failover():
    log = Log()
    log.heartbeat("a")
    log.heartbeat("b")
    log.advance(minutes=1)
    removal = log.remove("a", reason="decommission")
    log.advance(minutes=2)
    log.heartbeat("b")
    back = log.heartbeat("a")
    result = run(log, 4)
    assert result.episodes == []
    [absence] = result.absences
    assert (absence.cause, absence.start, absence.end) == ("removed", at(1), at(3))
    assert absence.positions == [removal.position, back.position]
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


def test_when_the_reference_version_moves_the_servers_left_on_the_old_one_fall_out_of_sync():
    log = Log()
    for server in ("a", "b", "c"):
        log.heartbeat(server, product_version="1.0")
    log.advance(minutes=1)
    c_upgraded = log.heartbeat("c", product_version="2.0")  # c alone on 2.0
    log.advance(minutes=1)
    b_upgraded = log.heartbeat("b", product_version="2.0")  # 2.0 is now the majority
    periods = [
        (p.server, p.kind, p.start, p.end, p.opened_position, p.closed_position)
        for p in run(log, 3, track_sync=True).sync_periods
    ]
    assert periods == [
        ("c", "version", at(1), at(2), c_upgraded.position, b_upgraded.position),
        ("a", "version", at(2), None, b_upgraded.position, None),
    ]


def test_the_reference_comes_from_the_current_components_once_one_is_current_again():
    log = Log()
    log.heartbeat("a", product_version="1.0")
    log.advance(minutes=6)
    log.timed_out("a", "service", at(5))  # nothing current: a is its own reference
    log.advance(minutes=1)
    b_first = log.heartbeat("b", product=None)  # current, reports no version: no reference
    [period] = run(log, 8, track_sync=True).sync_periods
    assert (period.server, period.kind, period.start) == ("a", "version", at(7))
    assert period.opened_position == b_first.position


# --- the incremental sync periods equal judging every server after every event --------------


class RecheckEveryServer(EpisodeBuilder):
    """The sync periods as reports computed them before issue #17: after every event that can
    change them, the references are drawn again and every server is judged again."""

    def _evaluate_sync(self, r: RecordedEvent | None) -> None:
        assert self.sync is not None
        state = self.state
        current = {k for k, t in self.tracks.items() if t.present and t.open is None}
        refs = rules.references(state, current)
        now = r.recorded_at if r is not None else state.recorded_at
        position = r.position if r is not None else None
        out_of_sync: set[tuple[str, str]] = set()
        for server in state.servers.values():
            if rules.version_in_sync(server, refs) is False:
                out_of_sync.add((server.name, "version"))
            if rules.key_in_sync(server, refs) is False:
                out_of_sync.add((server.name, "key"))
        for sk in list(self.sync.open):
            if sk not in out_of_sync:
                period = self.sync.open.pop(sk)
                period.end = now
                period.closed_position = position
        for sk in sorted(out_of_sync - set(self.sync.open)):
            assert now is not None
            period = SyncPeriod(sk[0], sk[1], now, opened_position=position)
            self.sync.open[sk] = period
            self.sync.periods.append(period)


SERVERS = st.sampled_from(["a", "b", "c", "d"])
COMPONENTS = st.sampled_from(["web", "service"])
REPORTED = st.fixed_dictionaries(
    {
        "product": st.sampled_from(["ProGet", "Otter", None]),
        # "1.0" and "1.00" are one version spelled twice: ties are broken by the spelling
        "product_version": st.sampled_from(["1.0", "1.00", "2.0", "10", None]),
        "encryption_key_fingerprint": st.sampled_from([KEY_A, KEY_B, "c" * 64, None]),
    }
)
STEPS = st.lists(
    st.one_of(
        # Repeated entries weight the draw: most events are heartbeats.
        st.tuples(st.just("beat"), SERVERS, COMPONENTS, REPORTED),
        st.tuples(st.just("beat"), SERVERS, COMPONENTS, REPORTED),
        st.tuples(st.just("beat"), SERVERS, COMPONENTS, REPORTED),
        st.tuples(st.just("wait"), st.integers(0, 8)),
        st.tuples(st.just("wait"), st.integers(0, 8)),
        st.tuples(st.just("remove"), SERVERS, COMPONENTS),
        st.tuples(st.just("timeout"), SERVERS, COMPONENTS, st.integers(0, 6)),
        st.tuples(st.just("recover"), SERVERS, COMPONENTS, st.integers(1, 8)),
        st.tuples(st.just("configure"), st.sampled_from([60, 300, 600])),
        st.tuples(st.just("resume"), st.integers(1, 10)),
    ),
    min_size=10,
    max_size=80,
)


def _log(steps) -> Log:
    log = Log()
    for step in steps:
        kind, *args = step
        if kind == "beat":
            server, component, reported = args
            log.heartbeat(server, component, **reported)
        elif kind == "wait":
            log.advance(minutes=args[0])
        elif kind == "remove":
            log.remove(*args)
        elif kind == "timeout":
            server, component, ago = args
            log.timed_out(server, component, log.now - timedelta(minutes=ago))
        elif kind == "recover":
            server, component, ago = args
            log.recovered(server, component, log.now - timedelta(minutes=ago))
        elif kind == "configure":
            log.configure(stale_timeout_seconds=args[0])
        else:
            log.resumed(down_since=log.now - timedelta(minutes=args[0]))
    return log


def _periods(result: Result) -> list[tuple]:
    return [
        (p.server, p.kind, p.start, p.end, p.opened_position, p.closed_position)
        for p in result.sync_periods
    ]


def _seeded(builder: type[EpisodeBuilder], events: list[RecordedEvent], seed: int):
    """A builder started from the state after `seed` events, as episode_pass starts one from a
    snapshot: the episodes so far are known, the sync periods start out from that state."""
    before = EpisodeBuilder().feed_all(events[:seed])
    started = builder(track_sync=True)
    started.state, started.tracks = before.state, before.tracks
    started.episodes, started.setting_positions = before.episodes, before.setting_positions
    started._timeouts = before._timeouts
    started.start_sync()
    return started.feed_all(events[seed:])


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps=STEPS, what_if=st.booleans(), seed=st.integers(0, 80))
def test_sync_periods_equal_judging_every_server_after_every_event(steps, what_if, seed):
    log = _log(steps)
    horizon = log.advance(minutes=1)
    since = T0 + (horizon - T0) / 3
    overrides = {"stale_timeout_seconds": 120} if what_if else None
    incremental = EpisodeBuilder(overrides, track_sync=True).feed_all(log.events).finish(horizon)
    recheck = RecheckEveryServer(overrides, track_sync=True).feed_all(log.events).finish(horizon)
    assert _periods(incremental) == _periods(recheck)
    # what an operator reads: the report over the period is the same, number for number
    assert reports.summarize(incremental, since, horizon) == reports.summarize(
        recheck, since, horizon
    )

    seed = min(seed, len(log.events))
    from_seed = _seeded(EpisodeBuilder, log.events, seed).finish(horizon)
    recheck_from_seed = _seeded(RecheckEveryServer, log.events, seed).finish(horizon)
    assert _periods(from_seed) == _periods(recheck_from_seed)
