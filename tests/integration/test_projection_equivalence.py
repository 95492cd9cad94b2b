"""The incremental runner, a rebuild from zero and time travel all give the fold's view.

Random event sequences (heartbeats, batches, configuration changes, removals, timeouts,
recoveries, monitor gaps, clock jumps) are appended to a real database while the runner catches
up in random chunks and snapshots are taken at random moments; then every read path must equal
`cluster_view(fold(events), t)` — for the whole log and for random times and positions in it.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from domain.state import fold
from projections.readmodel import snapshots
from projections.readmodel.current import current_state, current_view
from projections.readmodel.rebuild import rebuild
from projections.readmodel.runner import ProjectionRunner
from projections.readmodel.timetravel import view_at
from projections.readmodel.view import cluster_view
from tests.integration import projection_support as ps

SERVERS = st.sampled_from(["a", "b"])
COMPONENTS = st.sampled_from(["web", "service"])
HEARTBEAT = st.fixed_dictionaries(
    {
        "status": st.sampled_from(["ok", "warning", "error"]),
        "verification": st.sampled_from(["verified", "unverified", "failed"]),
        "product_version": st.sampled_from(["2025.10", "2025.11", None]),
        "encryption_key_fingerprint": st.sampled_from(["a" * 64, "b" * 64, None]),
        "ip": st.sampled_from(["10.0.0.1", "10.0.0.2", None]),
    }
)
BEAT = st.tuples(st.just("beat"), SERVERS, COMPONENTS, HEARTBEAT)
REMOVE = st.tuples(st.just("remove"), SERVERS, COMPONENTS)
CATCH_UP = st.tuples(st.just("catch_up"), st.integers(1, 4))
OPS = st.lists(
    st.one_of(
        # Repeated entries weight the draw: most logs are heartbeats, removals and catch-ups.
        BEAT,
        BEAT,
        REMOVE,
        CATCH_UP,
        st.tuples(
            st.just("batch"), st.lists(st.tuples(SERVERS, COMPONENTS), min_size=2, max_size=4)
        ),
        st.tuples(st.just("config"), st.sampled_from([60, 300]), st.sampled_from([3600, 86_400])),
        st.tuples(st.just("timeout"), SERVERS, COMPONENTS),
        st.tuples(st.just("recover"), SERVERS, COMPONENTS),
        st.tuples(st.just("resume")),
        st.tuples(st.just("wait"), st.integers(0, 90_000)),
        st.tuples(st.just("snapshot"), st.integers(1, 4)),
    ),
    max_size=40,
)


def _play(store, runner, ops) -> None:
    clock = store.clock
    for op in ops:
        kind = op[0]
        if kind == "beat":
            store.append([ps.beat(store, op[1], op[2], **op[3])])
        elif kind == "batch":  # one append: the events share their recorded_at
            store.append([ps.beat(store, server, component) for server, component in op[1]])
        elif kind == "config":
            store.append(
                [ps.configure(stale_timeout_seconds=op[1], web_stale_timeout_seconds=op[2])]
            )
        elif kind == "remove":
            store.append([ps.remove(op[1], op[2])])
        elif kind == "timeout":
            store.append([ps.timed_out(store, op[1], op[2], clock() - timedelta(minutes=1))])
        elif kind == "recover":
            store.append([ps.recovered(store, op[1], op[2], clock() - timedelta(minutes=2))])
        elif kind == "resume":
            store.append([ps.resumed(store, clock() - timedelta(hours=1))])
        elif kind == "wait":
            clock.advance(seconds=op[1])
        elif kind == "catch_up":
            runner.catch_up(limit=op[1])
            # The reader follows the runner incrementally: equal to the fold at its checkpoint.
            checkpoint = runner.lag()["checkpoint"]
            upto = [r for r in store.iter_all() if r.position <= checkpoint]
            assert current_view(store.engine, clock()) == cluster_view(fold(upto), clock())
        elif kind == "snapshot":
            snapshots.take_snapshot(store, every_events=op[1], every_seconds=None)
        if kind != "wait":
            clock.advance(seconds=1)


@settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(ops=OPS, batch_size=st.integers(1, 5), probes=st.lists(st.floats(0, 1), max_size=4))
def test_runner_rebuild_and_time_travel_equal_the_fold(store, ops, batch_size, probes):
    engine = store.engine
    ps.reset(engine)
    runner = ProjectionRunner(store, batch_size=batch_size)
    _play(store, runner, ops)
    runner.catch_up()
    recorded = list(store.iter_all())
    end = store.clock()
    expected = cluster_view(fold(recorded), end)

    assert current_view(engine, end) == expected
    assert ps.events_applied(engine) == len(recorded)  # nothing counted twice
    assert current_state(engine) == fold(recorded)

    assert rebuild(store) == len(recorded)
    assert current_view(engine, end) == expected
    assert ps.events_applied(engine) == len(recorded)

    if not recorded:
        with pytest.raises(ValueError, match="empty"):
            view_at(store, at=end)
        return
    assert view_at(store, at=end) == expected

    first = recorded[0].recorded_at
    for fraction in probes:
        t = first + (end - first) * fraction
        before_t = [r for r in recorded if r.recorded_at <= t]
        assert view_at(store, at=t) == cluster_view(fold(before_t), t)
        position = recorded[int(fraction * (len(recorded) - 1))].position
        upto = [r for r in recorded if r.position <= position]
        assert view_at(store, position=position) == cluster_view(fold(upto), upto[-1].recorded_at)
