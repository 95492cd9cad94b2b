from datetime import timedelta

import pytest

from domain import rules
from domain.state import fold
from tests.unit.projection_helpers import KEY_A, KEY_B, T0, Log


def _beat(log: Log, server="srv1", component="service", now=None):
    state = fold(log.events)
    return rules.heartbeat(
        state.component(server, component),
        state.configuration,
        now or log.now,
        state.monitor_resumed_at,
    )


# --- heartbeat state ---------------------------------------------------------------------------


def test_service_is_current_exactly_at_the_stale_timeout_and_stale_a_moment_after():
    log = Log()
    log.heartbeat(component="service")
    expiry = T0 + timedelta(seconds=300)
    assert _beat(log, now=expiry - timedelta(seconds=1)).state == "current"
    assert _beat(log, now=expiry).state == "current"
    late = _beat(log, now=expiry + timedelta(microseconds=1))
    assert late.state == "stale"
    assert late.stale_since == expiry  # the logical expiry, not when someone looked


def test_web_uses_the_24_hour_window_not_the_stale_timeout():
    log = Log()
    log.heartbeat(component="web")
    assert _beat(log, component="web", now=T0 + timedelta(hours=23)).state == "current"
    assert _beat(log, component="web", now=T0 + timedelta(hours=24)).state == "current"
    stale = _beat(log, component="web", now=T0 + timedelta(hours=24, seconds=1))
    assert stale.state == "stale" and stale.stale_since == T0 + timedelta(hours=24)


def test_a_configured_stale_timeout_applies_to_past_heartbeats():
    log = Log()
    log.heartbeat()
    log.configure(stale_timeout_seconds=60)
    assert _beat(log, now=T0 + timedelta(seconds=60)).state == "current"
    assert _beat(log, now=T0 + timedelta(seconds=61)).state == "stale"


def test_a_recorded_timeout_stands_until_the_next_heartbeat():
    log = Log()
    log.heartbeat()
    expiry = T0 + timedelta(minutes=5)
    log.advance(minutes=6)
    log.timed_out("srv1", "service", expiry)
    log.configure(stale_timeout_seconds=3600)  # lengthened after the fact
    beat = _beat(log, now=T0 + timedelta(minutes=7))
    assert beat.state == "stale" and beat.stale_since == expiry
    log.advance(minutes=1)
    log.heartbeat()
    assert _beat(log).state == "current"


def test_monitor_resumed_gives_one_full_timeout_from_the_resumption():
    log = Log()
    log.heartbeat()
    log.advance(hours=2)  # the monitor was down: nobody could report
    resumed = log.now
    log.resumed(down_since=T0 + timedelta(minutes=1))
    assert _beat(log, now=resumed + timedelta(seconds=300)).state == "current"
    beat = _beat(log, now=resumed + timedelta(seconds=301))
    assert beat.state == "stale" and beat.stale_since == resumed + timedelta(seconds=300)


def test_monitor_resumed_does_not_shorten_a_later_deadline():
    log = Log()
    log.resumed(down_since=T0 - timedelta(hours=1))
    log.advance(minutes=1)
    log.heartbeat()
    assert _beat(log, now=log.now + timedelta(seconds=300)).state == "current"


# --- reasons -----------------------------------------------------------------------------------


def test_stale_service_reason_names_the_silence_and_the_timeout():
    log = Log()
    log.heartbeat()
    view = _component_view(log, now=T0 + timedelta(minutes=7))
    assert view["health"] == "error"
    assert view["reasons"] == ["no heartbeat for 7 min (stale timeout 5 min)"]


def test_stale_web_reason_says_when_it_last_served_and_why_that_may_be_fine():
    log = Log()  # T0 is a Friday 10:00 UTC
    log.heartbeat(component="web")
    view = _component_view(log, component="web", now=T0 + timedelta(days=2, hours=1))
    assert view["health"] == "warning"  # a quiet web node is not an outage
    (reason,) = view["reasons"]
    assert reason.startswith("no web request since Friday 10:00 UTC (2 days; the web window is")
    assert "sticky load-balancer session" in reason


def _component_view(log, server="srv1", component="service", now=None):
    from projections.readmodel.view import cluster_view

    view = cluster_view(fold(log.events), now or log.now)
    (srv,) = [s for s in view["servers"] if s["name"] == server]
    (comp,) = [c for c in srv["components"] if c["name"] == component]
    return comp


# --- health ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "health", "reason"),
    [
        (
            {"status": "error", "message": "disk full"},
            "error",
            "component reports error: disk full",
        ),
        ({"status": "warning"}, "warning", "component reports warning"),
        ({"verification": "failed"}, "error", "verification failed"),
        ({"verification": "unverified"}, "warning", "not verified"),
        ({}, "ok", None),
    ],
)
def test_component_health_from_status_and_verification(fields, health, reason):
    log = Log()
    log.heartbeat(**fields)
    view = _component_view(log)
    assert view["health"] == health
    assert view["reasons"] == ([reason] if reason else [])


def test_an_error_shows_even_when_the_heartbeat_is_current_and_worst_wins():
    log = Log()
    log.heartbeat(status="warning", verification="failed")
    view = _component_view(log)
    assert view["heartbeat"]["state"] == "current"
    assert view["health"] == "error"
    assert view["reasons"] == ["component reports warning", "verification failed"]


def test_server_health_is_the_worst_of_its_components_with_prefixed_reasons():
    from projections.readmodel.view import cluster_view

    log = Log()
    log.heartbeat(component="web", status="warning")
    log.heartbeat(component="service")
    (server,) = cluster_view(fold(log.events), log.now)["servers"]
    assert server["health"] == "warning"
    assert server["reasons"] == ["web: component reports warning"]


# --- version and key in sync -------------------------------------------------------------------


def _servers(log, now=None):
    from projections.readmodel.view import cluster_view

    return {s["name"]: s for s in cluster_view(fold(log.events), now or log.now)["servers"]}


def test_version_in_sync_is_against_the_version_most_current_components_report():
    log = Log()
    for name in ("a", "b", "c"):
        log.heartbeat(name, product_version="2025.10")
    log.heartbeat("d", product_version="2025.11")
    servers = _servers(log)
    assert [servers[n]["version_in_sync"] for n in "abcd"] == [True, True, True, False]
    assert servers["d"]["health"] == "warning"
    assert "software version differs" in servers["d"]["reasons"][0]


def test_stale_components_do_not_vote_on_the_reference_version():
    log = Log()
    log.heartbeat("a", product_version="2025.10")
    log.heartbeat("b", product_version="2025.10")
    log.advance(minutes=10)  # a and b go stale
    log.heartbeat("c", product_version="2025.11")
    servers = _servers(log)
    assert servers["c"]["version_in_sync"] is True
    assert servers["a"]["version_in_sync"] is False


def test_a_version_tie_goes_to_the_highest_version_and_versions_compare_numerically():
    log = Log()
    log.heartbeat("a", product_version="2025.9")
    log.heartbeat("b", product_version="2025.10")
    servers = _servers(log)
    assert servers["b"]["version_in_sync"] is True
    assert servers["a"]["version_in_sync"] is False


def test_versions_are_compared_per_product():
    log = Log()
    log.heartbeat("a", product="ProGet", product_version="2025.10")
    log.heartbeat("b", product="Otter", product_version="2024.1")
    assert all(s["version_in_sync"] for s in _servers(log).values())


def test_no_reported_version_means_unknown_not_in_sync():
    log = Log()
    log.heartbeat("a", product=None, product_version=None, encryption_key_fingerprint=None)
    server = _servers(log)["a"]
    assert server["version_in_sync"] is None
    assert server["encryption_key_in_sync"] is None


def test_key_in_sync_against_the_majority_fingerprint_and_out_of_sync_is_an_error():
    log = Log()
    log.heartbeat("a", encryption_key_fingerprint=KEY_A)
    log.heartbeat("b", encryption_key_fingerprint=KEY_A)
    log.heartbeat("c", encryption_key_fingerprint=KEY_B)
    servers = _servers(log)
    assert [servers[n]["encryption_key_in_sync"] for n in "abc"] == [True, True, False]
    assert servers["c"]["health"] == "error"
    assert "encryption key differs" in servers["c"]["reasons"][0]


def test_key_tie_has_no_reference_and_every_server_is_out_of_sync():
    log = Log()
    log.heartbeat("a", encryption_key_fingerprint=KEY_A)
    log.heartbeat("b", encryption_key_fingerprint=KEY_B)
    servers = _servers(log)
    assert servers["a"]["encryption_key_in_sync"] is False
    assert servers["b"]["encryption_key_in_sync"] is False
    assert "none is in the majority" in servers["a"]["reasons"][0]


def test_a_server_is_out_of_sync_if_any_of_its_components_disagrees():
    log = Log()
    log.heartbeat("a", "web", encryption_key_fingerprint=KEY_A)
    log.heartbeat("a", "service", encryption_key_fingerprint=KEY_B)
    log.heartbeat("b", "web", encryption_key_fingerprint=KEY_A)
    assert _servers(log)["a"]["encryption_key_in_sync"] is False
