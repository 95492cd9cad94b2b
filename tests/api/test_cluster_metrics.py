"""GET /api/v1/metrics/cluster: the cluster's state as Prometheus gauges, read back with
prometheus_client's own parser; and docs/alert-rules.yml, the example rules built on them."""

from __future__ import annotations

import re
from pathlib import Path

import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.api.conftest import fingerprint, heartbeat
from tests.notify_support import free_port, webhook

URL = "/api/v1/metrics/cluster"
RULES = Path(__file__).parents[2] / "docs" / "alert-rules.yml"
EXPOSED = {
    "clustermon_component_up",
    "clustermon_component_heartbeat_age_seconds",
    "clustermon_server_version_in_sync",
    "clustermon_server_encryption_key_in_sync",
    "clustermon_notifications_total",
}


def _samples(client, tokens) -> dict[str, dict[tuple, float]]:
    response = client.get(URL, headers=tokens["viewer"])
    assert response.status_code == 200
    assert response.mimetype == "text/plain"
    samples: dict[str, dict[tuple, float]] = {name: {} for name in EXPOSED}
    for family in text_string_to_metric_families(response.get_data(as_text=True)):
        for sample in family.samples:
            samples[sample.name][tuple(sorted(sample.labels.items()))] = sample.value
    return samples


def _labels(**labels) -> tuple:
    return tuple(sorted(labels.items()))


def test_up_age_and_sync_follow_the_cluster_view(client, tokens, post, clock):
    beats = [
        heartbeat("web01"),
        heartbeat("web02"),
        heartbeat("web03", product_version="2025.9"),
        heartbeat("web03", component="web", product_version="2025.9"),
    ]
    assert post({"heartbeats": beats}).status_code < 300
    beats = [heartbeat("web04", encryption_key_fingerprint=fingerprint("another-key"))]
    assert post({"heartbeats": beats}).status_code < 300
    clock.advance(seconds=200)
    assert post(heartbeat("web01")).status_code < 300
    clock.advance(seconds=200)  # web02..04's services are 400 s old: past the 300 s timeout

    samples = _samples(client, tokens)
    up = samples["clustermon_component_up"]
    web01 = _labels(server="web01", component="service", product="ProGet")
    web02 = _labels(server="web02", component="service", product="ProGet")
    assert (up[web01], up[web02]) == (1.0, 0.0)
    assert up[_labels(server="web03", component="web", product="ProGet")] == 1.0
    ages = samples["clustermon_component_heartbeat_age_seconds"]
    assert (ages[web01], ages[web02]) == (200.0, 400.0)
    versions = samples["clustermon_server_version_in_sync"]
    assert versions[_labels(server="web03")] == 0.0
    assert versions[_labels(server="web01")] == 1.0
    keys = samples["clustermon_server_encryption_key_in_sync"]
    assert (keys[_labels(server="web04")], keys[_labels(server="web01")]) == (0.0, 1.0)


def test_notifications_are_counted_per_channel_and_state(client, tokens):
    with webhook() as hook:
        url = {"url": hook.url, "on": ["stale"]}
        put = client.put("/api/v1/notifications/channels/ops", json=url, headers=tokens["admin"])
        assert put.status_code == 200
        for _ in range(2):
            sent = client.post("/api/v1/notifications/channels/ops/test", headers=tokens["admin"])
            assert sent.status_code == 200
    down = {"url": f"http://127.0.0.1:{free_port()}/x", "on": ["stale"]}
    client.put("/api/v1/notifications/channels/down", json=down, headers=tokens["admin"])
    client.post("/api/v1/notifications/channels/down/test", headers=tokens["admin"])

    counted = _samples(client, tokens)["clustermon_notifications_total"]
    assert counted == {
        _labels(channel="ops", state="sent"): 2.0,
        _labels(channel="down", state="failed"): 1.0,
    }


def test_an_empty_cluster_exposes_the_families_without_samples(client, tokens):
    samples = _samples(client, tokens)
    assert all(values == {} for values in samples.values())


def test_the_cluster_metrics_need_a_viewer_token(client, tokens):
    assert client.get(URL).status_code == 401
    assert client.get(URL, headers=tokens["agent"]).status_code == 403


def test_the_example_alert_rules_load_and_use_only_metrics_we_expose():
    document = yaml.safe_load(RULES.read_text())
    rules = [rule for group in document["groups"] for rule in group["rules"]]
    assert len(rules) >= 4
    for rule in rules:
        assert rule["alert"] and rule["annotations"]["summary"]
        named = set(re.findall(r"\bclustermon_[a-z_]+", rule["expr"]))
        assert named and named <= EXPOSED, rule["alert"]
    used = {m for rule in rules for m in re.findall(r"\bclustermon_[a-z_]+", rule["expr"])}
    assert used == EXPOSED  # every gauge has an example
