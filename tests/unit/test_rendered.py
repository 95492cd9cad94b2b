"""The incrementally kept view (projections/readmodel/rendered.py) serves exactly `cluster_view`.

One renderer follows a random history — heartbeats, removals, timeouts, recoveries,
configuration changes, monitor gaps, folded onto shared (copy-on-write) or fresh states — and is
asked for the view at random times (forward, backward, whole seconds, whole milliseconds, any
microsecond; across deadlines, recorded timeouts and the points where a stale reason's wording
changes). Every answer, JSON-decoded, must equal `cluster_view(state, now)` JSON-encoded and
decoded.
"""

from __future__ import annotations

from datetime import timedelta

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from domain.durations import duration_span, format_duration
from domain.state import ClusterState, fold
from projections.readmodel import rendered
from projections.readmodel.current import copy_on_write_fold
from projections.readmodel.rendered import ViewRenderer
from projections.readmodel.view import cluster_view
from tests.unit.projection_helpers import T0, Log

SERVERS = st.sampled_from(["a", "b", "c"])
COMPONENTS = st.sampled_from(["web", "service"])
BEAT = st.tuples(
    st.just("beat"),
    SERVERS,
    COMPONENTS,
    st.sampled_from(["ok", "ok", "warning", "error"]),
    st.sampled_from(["verified", "verified", "unverified", "failed"]),
    st.sampled_from(["1.0", "1.1", "1.00", None]),
    st.sampled_from(["a" * 64, "b" * 64, None]),
    st.sampled_from(["10.0.0.1", None]),
    st.sampled_from([None, "disk 95% full", '"quoted" \\ %d %%']),
)
# Waits: sub-millisecond steps (ties at half milliseconds), seconds, minutes, days.
WAIT = st.tuples(
    st.just("wait"),
    st.one_of(
        st.integers(0, 2_000),
        st.integers(0, 400_000_000),
        st.integers(0, 200_000 * 1_000_000),
        st.sampled_from([500, 1_000_000, 299_999_500, 300_000_000, 300_000_001]),
    ),
)
# A heartbeat at an exact half millisecond: its age rounds by the float, not by arithmetic.
HALF_MS = st.tuples(st.just("half_ms"))
NOW = st.one_of(
    st.integers(-400_000_000, 400_000_000),  # any microsecond around the log's time
    st.integers(-200_000, 200_000).map(lambda s: s * 1_000_000),  # whole seconds
    st.integers(-400_000_000, 400_000_000).map(lambda us: us - us % 1000),  # whole ms
    st.sampled_from([7200, 172_800, 86_400 * 3]).map(lambda s: s * 1_000_000),
)
REMOVE = st.tuples(st.just("remove"), SERVERS, COMPONENTS)
STEP = st.one_of(
    BEAT,
    BEAT,
    WAIT,
    HALF_MS,
    REMOVE,
    REMOVE,
    st.tuples(st.just("timeout"), SERVERS, COMPONENTS, st.integers(-600, 600)),
    st.tuples(st.just("recover"), SERVERS, COMPONENTS),
    st.tuples(
        st.just("config"),
        st.sampled_from([60, 300, 900]),
        st.sampled_from([3600, 86_400]),
        st.booleans(),
    ),
    st.tuples(st.just("resume"), st.integers(0, 7200)),
    st.tuples(st.just("fresh")),  # the next render gets a freshly folded state (new objects)
)


def _decoded_view(state, now):
    return orjson.loads(orjson.dumps(cluster_view(state, now)))


@settings(max_examples=400, deadline=None)
@given(steps=st.lists(st.tuples(STEP, st.booleans(), NOW), min_size=4, max_size=50))
def test_the_rendered_view_equals_the_view(steps):
    """Each step changes the log, then (mostly) the view is read at a random time."""
    log, renderer = Log(), ViewRenderer()
    state, folded, fresh = ClusterState(), 0, False
    for step, read, offset in steps:
        kind = step[0]
        if kind == "beat":
            _, server, component, status, verification, version, key, ip, message = step
            log.heartbeat(
                server,
                component,
                status=status,
                verification=verification,
                product_version=version,
                encryption_key_fingerprint=key,
                ip=ip,
                message=message,
            )
        elif kind == "wait":
            log.advance(microseconds=step[1])
        elif kind == "half_ms":
            log.advance(microseconds=(500 - log.now.microsecond) % 1000)
        elif kind == "remove":
            log.remove(step[1], step[2])
        elif kind == "timeout":
            log.timed_out(step[1], step[2], log.now + timedelta(seconds=step[3]))
        elif kind == "recover":
            log.recovered(step[1], step[2], log.now - timedelta(minutes=2))
        elif kind == "config":
            _, stale, web, balancing = step
            log.configure(
                stale_timeout_seconds=stale,
                web_stale_timeout_seconds=web,
                load_balancing=balancing,
            )
        elif kind == "resume":
            log.resumed(log.now - timedelta(seconds=step[1]))
        elif kind == "fresh":
            fresh = True
        if read:
            new = log.events[folded:]
            if fresh:
                state, fresh = fold(log.events), False
            elif new:  # in one or two folds: the renderer follows a chain of them
                half = len(new) // 2
                for part in (new[:half], new[half:]) if offset % 2 else (new,):
                    state = copy_on_write_fold(state, part)
            folded = len(log.events)
            now = log.now + timedelta(microseconds=offset)
            assert orjson.loads(renderer.render(state, now)) == _decoded_view(state, now)


def test_a_second_read_of_the_same_state_and_time_is_the_same_bytes():
    log = Log()
    log.heartbeat("a", "service")
    state, renderer = fold(log.events), ViewRenderer()
    now = T0 + timedelta(seconds=3)
    parts = renderer.render_parts(state, now)
    assert renderer.render_parts(state, now) is parts
    assert b"".join(parts) == renderer.render(state, now)


def test_ages_follow_now_and_staleness_flips_at_the_deadline():
    log = Log()
    log.heartbeat("a", "service")
    log.advance(seconds=10, microseconds=123_456)
    log.heartbeat("b", "service")
    state, renderer = fold(log.events), ViewRenderer()

    def view_at(seconds):
        return orjson.loads(renderer.render(state, T0 + timedelta(seconds=seconds)))

    early = view_at(20)
    assert [s["components"][0]["heartbeat"]["age_seconds"] for s in early["servers"]] == [
        20.0,
        9.877,
    ]
    assert early["servers"][0]["health"] == "ok"
    late = view_at(301)  # a's deadline (300 s) has passed, b's (310.123456 s) has not
    assert late["servers"][0]["components"][0]["heartbeat"]["state"] == "stale"
    assert late["servers"][0]["reasons"] == [
        "service: no heartbeat for 5 min 1 s (stale timeout 5 min)"
    ]
    assert late["servers"][1]["health"] == "ok"
    assert view_at(20) == early  # time may go back


@settings(max_examples=2000, deadline=None)
@given(
    last_us=st.integers(-(2**40), 2**52),
    age_us=st.integers(-(2**32) * 1_000_000 + 1, 2**32 * 1_000_000 - 1),
)
def test_the_millisecond_arithmetic_is_the_views_rounding(last_us, age_us):
    now_us = last_us + age_us
    now_us -= now_us % 1000  # a whole millisecond
    age_us = now_us - last_us
    if abs(age_us) >= rendered._SAFE_AGE:
        return
    expected = round(age_us / 1_000_000, 3)
    assert float(f"{rendered._exact_ms(age_us)}e-3") == expected
    b = rendered._fast_b(last_us)
    if b is not None:
        assert float(f"{now_us // 1000 - b}e-3") == expected


@given(seconds=st.integers(-(10**6), 10**7))
def test_the_wording_spans_hold_the_same_duration_text(seconds):
    first, last = duration_span(seconds)
    assert first <= seconds <= last
    assert format_duration(first) == format_duration(last) == format_duration(seconds)
    assert format_duration(first - 1) != format_duration(first) and format_duration(
        last + 1
    ) != format_duration(last)
    low, high = rendered._age_us_span(first, last)
    assert int(low / 1_000_000) == first and int(high / 1_000_000) == last
    assert int((low - 1) / 1_000_000) < first and int((high + 1) / 1_000_000) > last


def test_a_recorded_timeout_before_the_deadline_holds_from_its_expiry_only():
    log = Log()
    log.heartbeat("a", "service")
    log.advance(seconds=100)
    # Recorded under a shorter timeout: stale from T0+60.5 s although the deadline is T0+300 s.
    log.timed_out("a", "service", T0 + timedelta(seconds=60.5))
    state, renderer = fold(log.events), ViewRenderer()
    for seconds in (120, 30, 60.7, 60.2, 60.5, 400, 10):
        now = T0 + timedelta(seconds=seconds)
        assert orjson.loads(renderer.render(state, now)) == _decoded_view(state, now), seconds
    beat = orjson.loads(renderer.render(state, T0 + timedelta(seconds=60.4)))["servers"][0]
    assert beat["components"][0]["heartbeat"]["state"] == "current"
