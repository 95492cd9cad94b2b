from datetime import UTC, datetime

from cli.simulator import Scenario, heartbeats

NOW = datetime(2026, 11, 27, 10, tzinfo=UTC)


def test_a_dead_service_beats_once_then_stops():
    scenario = Scenario(2, dead_service=frozenset({"node02"}))
    first = {(b["server"], b["component"]) for b in heartbeats(scenario, NOW, True)}
    later = {(b["server"], b["component"]) for b in heartbeats(scenario, NOW, False)}
    assert ("node02", "service") in first
    assert ("node02", "service") not in later
    assert ("node02", "web") in later


def test_drift_and_key_mismatch_change_only_their_server():
    scenario = Scenario(3, version_drift=frozenset({"node02"}), key_mismatch=frozenset({"node03"}))
    beats = {b["server"]: b for b in heartbeats(scenario, NOW, True) if b["component"] == "web"}
    assert beats["node01"]["product_version"] != beats["node02"]["product_version"]
    assert beats["node01"]["product_version"] == beats["node03"]["product_version"]
    fingerprints = {s: b["encryption_key_fingerprint"] for s, b in beats.items()}
    assert fingerprints["node01"] == fingerprints["node02"] != fingerprints["node03"]
    assert all(len(f) == 64 for f in fingerprints.values())
