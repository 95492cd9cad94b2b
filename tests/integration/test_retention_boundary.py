"""Time travel across a retention boundary: at or after it, exactly what it was before the
archived events left the log; before it, `Archived` naming the archive.

Random logs (the projection-equivalence generators: heartbeats, batches, configuration
changes, removals, timeouts, recoveries, monitor gaps, clock jumps, snapshots at random
moments) are cut at a random time; the views at random times and positions at or after the cut
are taken, the prefix is archived the way the archiver does it (boundary snapshot, then
`delete_range`), and every view must be unchanged.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from domain.state import Configuration, fold
from eventstore import retention
from eventstore.tables import archived_tails, event_archives
from projections.audit import episode_pass, reports, whatif
from projections.audit.explain import explain
from projections.audit.history import component_history
from projections.readmodel.boundary import Archived, snapshot_boundary
from projections.readmodel.current import current_view
from projections.readmodel.rebuild import rebuild, replay
from projections.readmodel.runner import ProjectionRunner
from projections.readmodel.timetravel import view_at
from projections.readmodel.view import cluster_view
from scheduler.deadlines import DeadlineIndex
from scheduler.sweep import emit_timeouts
from tests.integration import projection_support as ps
from tests.integration.test_audit_history import at as audit_at
from tests.integration.test_audit_history import script_history
from tests.integration.test_projection_equivalence import OPS, _play

PATH = "/var/lib/clustermon/archive/2026-11"

# How far past the cut event's time the boundary falls: on it, within its second, later.
NUDGE = st.sampled_from([timedelta(0), timedelta(microseconds=1), timedelta(seconds=30)])


def reset(store) -> None:
    ps.reset(store.engine)
    with store.engine.begin() as conn:
        conn.execute(event_archives.delete())
        conn.execute(archived_tails.delete())


def archive_before(store, before, path=PATH) -> tuple[int, int, int] | None:
    """What the archiver (retention/archive.py) does to the database once its files are
    written: the boundary snapshot, then the delete."""
    found = retention.archivable_range(store.engine, before)
    if found is None:
        return None
    first, last, count = found
    snapshot_boundary(store, last)
    row = {"before": before, "path": path, "sha256": "0" * 64}
    retention.delete_range(store.engine, first, last, count, row)
    return found


@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    ops=OPS,
    cut=st.floats(0, 1),
    nudge=NUDGE,
    probes=st.lists(st.floats(0, 1), min_size=1, max_size=4),
)
def test_time_travel_at_or_after_the_boundary_is_unchanged(store, ops, cut, nudge, probes):
    reset(store)
    _play(store, ProjectionRunner(store, batch_size=3), ops)
    recorded = list(store.iter_all())
    assume(len(recorded) >= 2)
    end = store.clock()
    before = recorded[int(cut * (len(recorded) - 1))].recorded_at + nudge
    times = sorted({before, end, *(before + (end - before) * f for f in probes)})
    positions = sorted({r.position for r in recorded if r.recorded_at >= before})
    expected = {t: view_at(store, at=t) for t in times}
    expected_at = {p: view_at(store, position=p) for p in positions}

    archived = archive_before(store, before)
    assume(archived is not None)
    first, last, count = archived
    assert count == sum(1 for r in recorded if r.recorded_at < before and r is not recorded[-1])

    for t in times:
        assert view_at(store, at=t) == expected[t], t
    for p in positions:
        assert view_at(store, position=p) == expected_at[p], p

    # Refused: what needs the archived events (before the boundary and before every event
    # kept: the newest event is never archived, so one recorded before `before` may stay).
    kept_from = min(r.recorded_at for r in recorded if r.position > last)
    earliest = recorded[0].recorded_at
    if earliest < min(before, kept_from):
        with pytest.raises(Archived) as refused:
            view_at(store, at=earliest)
        assert refused.value.archive.path == PATH
        assert refused.value.archive.before == before
        with pytest.raises(Archived):
            view_at(store, at=min(before, kept_from) - timedelta(microseconds=1))
    for p in (first, last):
        with pytest.raises(Archived, match="archived history"):
            view_at(store, position=p)


def test_a_missing_boundary_snapshot_refuses_rather_than_folds_without_it(store, clock):
    """An archive made without its snapshot (not by this archiver): the fold after it would
    start from nothing, so the answer is refused, never silently wrong."""
    reset(store)
    store.append([ps.beat(store, "a", "service")])
    clock.advance(minutes=1)
    store.append([ps.configure(stale_timeout_seconds=60)])
    clock.advance(minutes=1)
    store.append([ps.beat(store, "b", "service")])
    row = {"before": clock() - timedelta(seconds=30), "path": PATH, "sha256": "0" * 64}
    retention.delete_range(store.engine, 1, 2, 2, row)

    with pytest.raises(Archived):
        view_at(store, at=clock())
    with pytest.raises(Archived):
        view_at(store, position=3)


def test_before_the_log_is_a_sentence(store, clock):
    reset(store)
    store.append([ps.beat(store, "a", "service")])
    with pytest.raises(ValueError) as refused:
        view_at(store, at=clock() - timedelta(days=1, microseconds=250_000))
    assert str(refused.value) == (
        "2026-11-26 09:59:59.750 UTC is before the log, whose first event was recorded at"
        " 2026-11-27 10:00:00 UTC"
    )


def test_restoring_a_middle_archive_leaves_the_later_one_refused(store, clock):
    """Two archives, the older one restored: its period travels again, the newer one's is
    still refused, and after the newer one's boundary the answer is what it was. (Between the
    restored period's last event and the newer archive's first one is refused too: the log
    does not know when the newer archive's events start.)"""
    reset(store)
    for server in "abcdef":
        store.append([ps.beat(store, server, "service")])
        clock.advance(minutes=10)
    head_view = view_at(store, at=clock())
    cut1, cut2 = clock() - timedelta(minutes=45), clock() - timedelta(minutes=25)
    early = view_at(store, at=cut1 - timedelta(minutes=10))
    older = list(retention.iter_range(store.engine, 1, 2))
    assert archive_before(store, cut1) == (1, 2, 2)
    assert archive_before(store, cut2) == (3, 4, 2)
    retention.restore_rows(store.engine, older)

    assert view_at(store, at=cut1 - timedelta(minutes=10)) == early
    with pytest.raises(Archived) as refused:
        view_at(store, at=cut1 + timedelta(minutes=1))
    assert refused.value.archive.first_position == 3
    with pytest.raises(Archived):
        view_at(store, position=4)
    assert view_at(store, at=clock()) == head_view
    with store.engine.connect() as conn:
        kept = conn.execute(sa.select(sa.func.count()).select_from(event_archives)).scalar_one()
    assert kept == 1


# --- the followers: read model, rebuild, the scheduler's deadlines, the audit ---------------


def _expected_view(store):
    return cluster_view(fold(store.iter_all()), store.clock())


def test_the_read_model_and_a_rebuild_carry_on_past_the_archived_prefix(store, clock):
    """The runner caught up before the archive and the one still behind it, and a rebuild
    from zero, all end at the view of the whole log."""
    reset(store)
    caught_up = ProjectionRunner(store)
    for minute in range(6):
        store.append([ps.beat(store, "a", "service"), ps.beat(store, "b", "web")])
        if minute == 2:
            store.append([ps.configure(stale_timeout_seconds=120)])
            store.append([ps.remove("b", "web")])
        clock.advance(minutes=1)
    caught_up.catch_up(limit=3)  # behind: the archive takes events it has not projected
    store.append([ps.beat(store, "c", "service")])
    expected = _expected_view(store)
    archive_before(store, clock() - timedelta(seconds=30))
    assert store.read_all(limit=1)[0].position > 3

    caught_up.catch_up()
    assert current_view(store.engine, clock()) == expected
    assert ps.events_applied(store.engine) > 0
    rebuild(store)
    assert current_view(store.engine, clock()) == expected
    assert replay(store)["position"] == expected["as_of"]["position"]


def _silent_a_archived(store, clock) -> None:
    """a beats at 10:00:00, b at 10:00:10; a's heartbeat is archived; then the clock is 5 s
    past a's deadline (the default 300 s Service timeout), 5 s before b's."""
    reset(store)
    store.append([ps.beat(store, "a", "service")])
    clock.advance(seconds=10)
    store.append([ps.beat(store, "b", "service")])
    archive_before(store, clock())
    clock.advance(seconds=Configuration().stale_timeout_seconds - 5)


def test_the_deadlines_of_components_last_heard_of_in_archived_events(store, clock):
    """A scheduler that starts after the archive (an index from nothing, or from the newest
    snapshot) still watches the component whose last heartbeat was archived."""
    _silent_a_archived(store, clock)
    for index in (DeadlineIndex(), DeadlineIndex.from_latest_snapshot(store)):
        index.follow(store)
        expired = index.pop_expired(clock())
        assert [(c.server, due) for c, due in expired] == [("a", clock() - timedelta(seconds=5))]
        assert index.next_deadline() == clock() + timedelta(seconds=5)  # b's


def test_a_component_whose_events_are_all_archived_still_times_out(store, clock):
    _silent_a_archived(store, clock)
    (timeout,) = emit_timeouts(store, clock(), index=DeadlineIndex(), detector="t")
    assert (timeout.event.server, timeout.version) == ("a", 2)


def test_the_audit_of_a_period_after_the_boundary_is_unchanged(store, clock):
    """The scripted history of test_audit_history (outages, failovers, a cluster outage),
    archived before 10:32: reports, episodes, failovers and cluster outages of 10:33-10:45
    are what they were, the component history goes on from the boundary, and what needs the
    archived events says so."""
    reset(store)
    script_history(store, clock)
    since, until = audit_at(33), audit_at(45)

    def period(result):
        return (
            result.episodes_in(since, until),
            result.failovers_in(since, until),
            result.cluster_outages_in(since, until),
        )

    report = reports.compute(store, since, until)
    seeded = period(episode_pass.build(store, until, since=since))
    whole = period(episode_pass.build(store, until))
    history = [h for h in component_history(store, "a", "service") if h["at"] >= since]
    archive_before(store, audit_at(32))

    assert reports.compute(store, since, until) == report
    assert period(episode_pass.build(store, until, since=since)) == seeded
    assert period(episode_pass.build(store, until)) == whole == seeded
    assert [h for h in component_history(store, "a", "service") if h["at"] >= since] == history
    assert component_history(store, "a", "service")[0]["at"] >= audit_at(32)

    explained = explain(store, "b", "service", audit_at(44))
    assert explained["timeout"]["seconds"] == 300
    with pytest.raises(Archived):  # its last heartbeat then (10:30:30) is archived
        explain(store, "b", "service", audit_at(34))
    with pytest.raises(Archived):
        explain(store, "b", "service", audit_at(20))
    with pytest.raises(Archived):  # from the start: the archived heartbeats decide
        whatif.replay(store, until, {"stale_timeout_seconds": 600})
