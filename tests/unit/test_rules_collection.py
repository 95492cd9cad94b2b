"""A polled server whose polls fail (issue #18): each of its components gets a reason saying
since when and why, and health at least `warning`, in the view, in the incrementally kept view
and by the rules alike; the collector's next heartbeat ends it."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from domain import rules
from domain.events import COLLECTOR_ACTOR, CollectionFailed, TargetConfigured, TargetRemoved
from domain.state import CollectionFailure, fold
from projections.readmodel.current import copy_on_write_fold
from projections.readmodel.rendered import ViewRenderer
from projections.readmodel.view import cluster_view
from tests.unit.projection_helpers import T0, Log

REFUSED = "polling /health fails since 2026-11-27 10:00:05 UTC: connection refused (refused)"


def _collector_beat(log: Log, server: str, component: str, **fields) -> None:
    """A heartbeat the poller recorded (its actor ends a failure)."""
    log.heartbeat(server, component, **fields)
    last = log.events[-1]
    log.events[-1] = dataclasses.replace(last, metadata={"actor": COLLECTOR_ACTOR})


def _fail(log: Log, server: str, kind="refused", detail="connection refused") -> None:
    log.record(CollectionFailed(server=server, kind=kind, detail=detail, at=log.now))


def _polled_cluster() -> Log:
    log = Log()
    log.record(TargetConfigured(server="p1", url="http://p1"))
    _collector_beat(log, "p1", "web")
    _collector_beat(log, "p1", "service")
    log.heartbeat("other", "service")
    log.advance(seconds=5)
    return log


def _server(state, name, now):
    return {s["name"]: s for s in cluster_view(state, now)["servers"]}[name]


def test_the_reason_says_since_when_and_why():
    failure = CollectionFailure("timeout", "no answer within 5 s", T0 + timedelta(hours=3))
    assert rules.collection_reason(failure) == (
        "polling /health fails since 2026-11-27 13:00:00 UTC: no answer within 5 s (timeout)"
    )
    assert rules.collection_reason(CollectionFailure("dns", "", T0)).endswith("UTC (dns)")


def test_a_failing_target_warns_on_both_components_and_its_server_only():
    log = _polled_cluster()
    _fail(log, "p1")
    state = fold(log.events)
    p1 = _server(state, "p1", log.now)
    assert p1["health"] == "warning"
    assert [(c["name"], c["health"], c["reasons"]) for c in p1["components"]] == [
        ("service", "warning", [REFUSED]),
        ("web", "warning", [REFUSED]),
    ]
    assert p1["reasons"] == [f"service: {REFUSED}", f"web: {REFUSED}"]
    assert _server(state, "other", log.now)["health"] == "ok"


def test_a_worse_finding_keeps_its_level_and_the_failure_is_listed_first():
    log = _polled_cluster()
    _fail(log, "p1")
    later = log.now + timedelta(minutes=10)  # the service has gone stale meanwhile
    service = _server(fold(log.events), "p1", later)["components"][0]
    assert service["health"] == "error"
    assert service["reasons"][0] == REFUSED
    assert service["reasons"][1].startswith("no heartbeat for")


def test_the_collectors_next_heartbeat_ends_it_an_agents_does_not():
    log = _polled_cluster()
    _fail(log, "p1")
    log.advance(seconds=30)
    log.heartbeat("p1", "service")  # an agent's: polling still fails
    assert _server(fold(log.events), "p1", log.now)["health"] == "warning"
    _collector_beat(log, "p1", "web")
    p1 = _server(fold(log.events), "p1", log.now)
    assert p1["health"] == "ok" and p1["reasons"] == []


def test_a_new_kind_of_failure_replaces_the_reason():
    log = _polled_cluster()
    _fail(log, "p1")
    log.advance(minutes=1)
    _fail(log, "p1", kind="tls", detail="certificate verify failed: self-signed certificate")
    [reason] = _server(fold(log.events), "p1", log.now)["components"][0]["reasons"]
    assert reason == (
        "polling /health fails since 2026-11-27 10:01:05 UTC: certificate verify failed:"
        " self-signed certificate (tls)"
    )


def test_the_kept_view_follows_failures_on_shared_states():
    """The renderer keeps each server's entry: a failure, its end and the target's removal
    must each re-render the server (a copy-on-write fold, as the API reads)."""
    log, renderer = _polled_cluster(), ViewRenderer()
    state = fold(log.events)
    seen = len(log.events)

    def step(now):
        nonlocal state, seen
        state = copy_on_write_fold(state, log.events[seen:])
        seen = len(log.events)
        served = orjson.loads(renderer.render(state, now))
        assert served == orjson.loads(orjson.dumps(cluster_view(state, now)))
        return {s["name"]: s for s in served["servers"]}["p1"]

    assert step(log.now)["health"] == "ok"
    _fail(log, "p1")
    assert step(log.now)["components"][0]["reasons"] == [REFUSED]
    _collector_beat(log, "p1", "web")
    assert step(log.now)["health"] == "ok"
    _fail(log, "p1")
    assert step(log.now)["health"] == "warning"
    log.record(TargetRemoved(server="p1"))
    assert step(log.now)["health"] == "ok"


def test_a_copy_on_write_fold_leaves_the_older_states_target_alone():
    log = _polled_cluster()
    old = fold(log.events)
    _fail(log, "p1")
    new = copy_on_write_fold(old, log.events[-1:])
    assert new.targets["p1"].failure is not None
    assert old.targets["p1"].failure is None  # readers of the old state see it unchanged


# --- the view, the renderer and the rules agree --------------------------------------------

SERVERS = st.sampled_from(["a", "b"])
STEP = st.one_of(
    st.tuples(st.just("beat"), SERVERS, st.sampled_from(["web", "service"]), st.booleans()),
    st.tuples(st.just("target"), SERVERS),
    st.tuples(st.just("untarget"), SERVERS),
    st.tuples(st.just("fail"), SERVERS, st.sampled_from(["refused", "timeout"])),
    st.tuples(st.just("wait"), st.integers(0, 400)),
)


@settings(max_examples=200, deadline=None)
@given(steps=st.lists(st.tuples(STEP, st.booleans()), min_size=1, max_size=25))
def test_view_renderer_and_rules_agree_on_collection_reasons(steps):
    log, renderer = Log(), ViewRenderer()
    state, seen = fold([]), 0
    for step, fresh in steps:
        kind = step[0]
        if kind == "beat":
            _, server, component, by_collector = step
            if by_collector:
                _collector_beat(log, server, component)
            else:
                log.heartbeat(server, component)
        elif kind == "target":
            log.record(TargetConfigured(server=step[1], url=f"http://{step[1]}"))
        elif kind == "untarget":
            if step[1] in fold(log.events).targets:
                log.record(TargetRemoved(server=step[1]))
        elif kind == "fail":
            _fail(log, step[1], kind=step[2])
        else:
            log.advance(seconds=step[1])
        state = fold(log.events) if fresh else copy_on_write_fold(state, log.events[seen:])
        seen = len(log.events)
        view = orjson.loads(orjson.dumps(cluster_view(state, log.now)))
        assert orjson.loads(renderer.render(state, log.now)) == view
        for server in view["servers"]:
            target = state.targets.get(server["name"])
            failure = target.failure if target is not None else None
            for component in server["components"]:
                c = state.component(server["name"], component["name"])
                beat = rules.heartbeat(c, state.configuration, log.now)
                health, reasons = rules.component_health(c, state.configuration, beat, failure)
                assert (component["health"], component["reasons"]) == (health, reasons)
