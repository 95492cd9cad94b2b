"""What a folded event means for notifications (notify/transitions.py): pure, events in memory."""

from __future__ import annotations

from datetime import timedelta

from notify.transitions import TransitionDetector
from tests.unit.projection_helpers import KEY_A, KEY_B, Log


def _feed(detector: TransitionDetector, *events):
    found = []
    for recorded in events:
        found.extend(detector.feed(recorded))
    return found


def _triggers(found):
    return [(t.trigger, t.server, t.component) for t in found]


def _two_servers(log: Log, detector: TransitionDetector):
    _feed(detector, log.heartbeat("a"), log.heartbeat("b"), log.heartbeat("c"))


def test_a_timeout_is_stale_with_the_views_reasons():
    log, detector = Log(), TransitionDetector()
    _two_servers(log, detector)
    expired = log.now + timedelta(minutes=5)
    log.advance(minutes=5, seconds=1)
    found = _feed(detector, log.timed_out("a", "service", expired))
    assert _triggers(found) == [("stale", "a", "service")]
    assert found[0].at == expired
    assert found[0].reasons == ["no heartbeat for 5 min 1 s (stale timeout 5 min)"]


def test_a_recovery_says_how_long_it_was_stale():
    log, detector = Log(), TransitionDetector()
    _two_servers(log, detector)
    expired = log.now + timedelta(minutes=5)
    log.advance(minutes=6)
    _feed(detector, log.timed_out("a", "service", expired))
    log.advance(minutes=1)
    found = _feed(detector, log.recovered("a", "service", expired), log.heartbeat("a"))
    assert _triggers(found) == [("recovered", "a", "service")]
    assert found[0].outage_seconds == 120
    assert "after 2 min stale" in found[0].reasons[0]


def test_the_last_current_service_going_stale_is_a_cluster_outage():
    log, detector = Log(), TransitionDetector()
    _feed(detector, log.heartbeat("a"), log.heartbeat("b"), log.heartbeat("a", "web"))
    expired = log.now + timedelta(minutes=5)
    log.advance(minutes=6)
    first = _feed(detector, log.timed_out("a", "service", expired))
    last = _feed(detector, log.timed_out("b", "service", expired))
    assert _triggers(first) == [("stale", "a", "service")]
    assert _triggers(last) == [("stale", "b", "service"), ("cluster_outage", None, None)]
    assert "no current Service in the cluster" in last[1].reasons[0]


def test_a_server_going_out_of_and_back_into_version_sync():
    log, detector = Log(), TransitionDetector()
    _two_servers(log, detector)
    out = _feed(detector, log.heartbeat("c", product_version="2024.1"))
    back = _feed(detector, log.heartbeat("c"))
    assert _triggers(out) == [("version_drift", "c", None)]
    assert out[0].reasons == ["software version differs from the rest of the cluster"]
    assert _triggers(back) == [("version_drift", "c", None)]
    assert "back in sync" in back[0].reasons[0]
    assert _feed(detector, log.heartbeat("c")) == []  # nothing changed: nothing to say
    _feed(detector, log.heartbeat("c", product_version="2024.1"))
    assert _feed(detector, log.remove("c")) == []  # removed is not back in sync


def test_a_server_with_another_key_is_a_key_mismatch():
    log, detector = Log(), TransitionDetector()
    _two_servers(log, detector)
    found = _feed(detector, log.heartbeat("b", encryption_key_fingerprint=KEY_B))
    assert _triggers(found) == [("key_mismatch", "b", None)]
    assert found[0].reasons[0].startswith("encryption key differs from the rest of the ProGet")
    assert KEY_A not in found[0].reasons[0]


def test_a_server_already_out_of_sync_where_the_detector_starts_is_no_news():
    log, detector = Log(), TransitionDetector()
    _feed(detector, log.heartbeat("a"), log.heartbeat("b"), log.heartbeat("c", product_version="1"))
    resumed = TransitionDetector(detector.state.copy())
    assert _feed(resumed, log.heartbeat("c", product_version="1")) == []


def test_monitor_resumed_says_for_how_long_it_was_away():
    log, detector = Log(), TransitionDetector()
    down = log.now
    log.advance(hours=1)
    found = _feed(detector, log.resumed(down))
    assert _triggers(found) == [("monitor_resumed", None, None)]
    assert "for 60 min" in found[0].reasons[0]


def test_a_flapping_component_gets_one_flapping_message_then_quiet_until_stable():
    log, detector = Log(), TransitionDetector()
    _two_servers(log, detector)
    found = []
    for _ in range(3):
        expired = log.now
        log.advance(seconds=30)
        found += _feed(detector, log.timed_out("a", "service", expired))
        log.advance(seconds=30)
        found += _feed(detector, log.recovered("a", "service", expired), log.heartbeat("a"))
    assert [(t.trigger, t.quiet) for t in found] == [
        ("stale", None),
        ("recovered", None),
        ("stale", None),  # the third change: flapping
        ("recovered", "flapping"),
        ("stale", "flapping"),
        ("recovered", "flapping"),
    ]
    assert found[2].reasons[0].startswith("flapping: changed between stale and current 3 times")
    log.advance(minutes=11)  # stable for longer than the window: the next change is news
    expired = log.now
    log.advance(minutes=5)
    after = _feed(detector, log.timed_out("a", "service", expired))
    assert [(t.trigger, t.quiet) for t in after] == [("stale", None)]
