"""Clock skew is a finding (issue #20, item 7): a component whose heartbeat's `sent_at` differs
from our `recorded_at` by more than max(heartbeat frequency, 60 s) is at least `warning`, with a
reason in plain words, in the view, the incrementally rendered view, the history and the
explanation's rules. Pure: events in memory."""

from __future__ import annotations

from datetime import timedelta

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from domain import rules
from domain.events import HeartbeatRecorded
from domain.state import fold
from notify.transitions import TransitionDetector
from projections.readmodel.current import copy_on_write_fold
from projections.readmodel.rendered import ViewRenderer
from projections.readmodel.view import cluster_view
from tests.unit.projection_helpers import Log


def _beat(log: Log, server="a", component="service", skew=timedelta(0), **fields):
    """A heartbeat whose sender's clock is `skew` behind ours (negative: ahead)."""
    fields.setdefault("product", "ProGet")
    fields.setdefault("product_version", "2025.10")
    return log.record(
        HeartbeatRecorded(server=server, component=component, sent_at=log.now - skew, **fields)
    )


def _component(view, server="a", name="service"):
    [row] = [s for s in view["servers"] if s["name"] == server]
    [component] = [c for c in row["components"] if c["name"] == name]
    return row, component


def test_a_clock_ten_days_behind_is_a_warning_that_says_so():
    log = Log()
    _beat(log, skew=timedelta(days=10))
    server, component = _component(cluster_view(fold(log.events), log.now))
    assert component["heartbeat"]["state"] == "current"
    assert component["health"] == "warning"
    assert component["reasons"] == ["its clock is 10 days behind ours"]
    assert server["health"] == "warning"
    assert server["reasons"] == ["service: its clock is 10 days behind ours"]


def test_a_clock_ahead_says_ahead():
    log = Log()
    _beat(log, skew=-timedelta(minutes=3))
    _, component = _component(cluster_view(fold(log.events), log.now))
    assert component["reasons"] == ["its clock is 3 min ahead of ours"]


def test_within_the_limit_is_no_finding_and_the_limit_follows_the_heartbeat_frequency():
    log = Log()
    _beat(log, "a", skew=timedelta(seconds=60))  # at the 60 s floor: not beyond it
    _beat(log, "b", skew=timedelta(seconds=-60))
    _beat(log, "c", skew=timedelta(seconds=61))
    view = cluster_view(fold(log.events), log.now)
    assert [s["health"] for s in view["servers"]] == ["ok", "ok", "warning"]
    log.configure(heartbeat_frequency_seconds=90)  # the limit is now 90 s
    view = cluster_view(fold(log.events), log.now)
    assert [s["health"] for s in view["servers"]] == ["ok", "ok", "ok"]


def test_a_fresh_heartbeat_with_a_right_clock_clears_it():
    log = Log()
    _beat(log, skew=timedelta(hours=2))
    log.advance(seconds=30)
    _beat(log)
    _, component = _component(cluster_view(fold(log.events), log.now))
    assert (component["health"], component["reasons"]) == ("ok", [])


def test_skew_adds_to_the_other_findings_and_never_lowers_them():
    log = Log()
    _beat(log, skew=timedelta(days=10), status="error", message="disk full")
    log.advance(minutes=6)  # stale too
    _, component = _component(cluster_view(fold(log.events), log.now))
    assert component["health"] == "error"
    assert component["reasons"] == [
        "component reports error: disk full",
        "no heartbeat for 6 min (stale timeout 5 min)",
        "its clock is 10 days behind ours",
    ]


def test_the_rules_are_pure_functions_of_the_component_and_the_configuration():
    log = Log()
    _beat(log, skew=timedelta(days=10))
    state = fold(log.events)
    component = state.component("a", "service")
    assert component is not None
    assert rules.clock_skew_seconds(component) == 10 * 86400
    assert rules.skew_limit_seconds(state.configuration) == 60
    assert rules.clock_skew_reason(component, state.configuration) == (
        "its clock is 10 days behind ours"
    )


def test_a_heartbeat_with_a_skewed_clock_notifies_nobody():
    """A standing misconfiguration, shown on the page and in the metrics: no trigger of its
    own (the notification triggers are about outages and sync)."""
    log, detector = Log(), TransitionDetector()
    assert detector.feed(_beat(log)) == []
    assert detector.feed(_beat(log, skew=timedelta(days=10))) == []


# --- the view's inlined fast path and the incremental renderer agree with the rules ----------

STEP = st.one_of(
    st.tuples(
        st.just("beat"),
        st.sampled_from(["a", "b"]),
        st.sampled_from(["web", "service"]),
        # seconds the sender's clock is behind ours: around both limits, and far off
        st.sampled_from([0, 59, 60, 61, 89, 90, 91, -61, -3600, 864_000]),
        st.sampled_from(["ok", "warning"]),
    ),
    st.tuples(st.just("wait"), st.integers(0, 400)),
    st.tuples(st.just("frequency"), st.sampled_from([10, 30, 90])),
    st.tuples(st.just("remove"), st.sampled_from(["a", "b"])),
)


def _by_the_rules(state, now):
    config = state.configuration
    out = []
    for name in sorted(state.servers):
        for c in sorted(state.servers[name].components.values(), key=lambda c: c.name):
            beat = rules.heartbeat(c, config, now, state.monitor_resumed_at)
            health, reasons = rules.component_health(c, config, beat)
            out.append((name, c.name, health, reasons))
    return out


def _from_view(view):
    return [
        (s["name"], c["name"], c["health"], c["reasons"])
        for s in view["servers"]
        for c in s["components"]
    ]


@settings(max_examples=200, deadline=None)
@given(steps=st.lists(STEP, min_size=1, max_size=30), later=st.integers(0, 400))
def test_the_view_and_the_rendered_view_agree_with_the_rules(steps, later):
    log, renderer = Log(), ViewRenderer()
    state = fold([])
    folded = 0
    for step in steps:
        if step[0] == "beat":
            _, server, component, skew, status = step
            _beat(log, server, component, timedelta(seconds=skew), status=status)
        elif step[0] == "wait":
            log.advance(seconds=step[1])
        elif step[0] == "frequency":
            log.configure(heartbeat_frequency_seconds=step[1])
        else:
            log.remove(step[1], "service")
        # The renderer follows copy-on-write folds, as it does in the server.
        state = copy_on_write_fold(state, log.events[folded:])
        folded = len(log.events)
        now = log.now + timedelta(seconds=later)
        view = cluster_view(state, now)
        assert _from_view(view) == _by_the_rules(state, now)
        assert orjson.loads(renderer.render(state, now)) == orjson.loads(orjson.dumps(view))
