"""The contract (/openapi.json) tells the whole truth: every answer of a populated cluster, of
every event type and every audit, is valid against the schema the document gives it; every
rule the API enforces on a time is the document's; /docs renders the document offline."""

from __future__ import annotations

import re
from urllib.parse import quote

import jsonschema_rs
import pytest

from api.event_schemas import EVENT_SCHEMAS
from api.services import services
from domain.events import CATALOG
from scheduler.sweep import emit_timeouts
from tests.api.conftest import heartbeat
from tests.integration.test_audit_history import at, script_history


@pytest.fixture
def spec(client):
    return client.get("/openapi.json").get_json()


def _validator(spec: dict, schema: dict):
    """A validator of `schema` whose $refs resolve in the document's components."""
    return jsonschema_rs.Draft202012Validator(
        {**schema, "components": spec["components"]}, validate_formats=True
    )


def _answer_schema(spec: dict, path: str, method: str = "get", status: str = "200") -> dict:
    return spec["paths"][path][method]["responses"][status]["content"]["application/json"]["schema"]


def _assert_valid(spec, schema, instance, label):
    errors = [
        f"{e.instance_path}: {e.message}" for e in _validator(spec, schema).iter_errors(instance)
    ]
    assert not errors, f"{label}: " + "; ".join(errors[:5])


def _q(**params) -> str:
    return "&".join(f"{k}={quote(v.isoformat())}" for k, v in params.items())


# --- answers: what the document says is what comes back ----------------------------------------


def test_every_event_type_has_its_schema_and_type_is_the_discriminator(spec):
    event = spec["components"]["schemas"]["Event"]
    assert set(event["discriminator"]["mapping"]) == set(CATALOG) == set(EVENT_SCHEMAS)
    for name, ref in event["discriminator"]["mapping"].items():
        variant = spec["components"]["schemas"][ref.rsplit("/", 1)[1]]
        assert variant["properties"]["type"]["enum"] == [name]
        data = variant["properties"]["data"]["$ref"].rsplit("/", 1)[1]
        assert spec["components"]["schemas"][data]["properties"], name  # typed, not any object
    # The channel's sealed URL is never shown, so never documented in an answer.
    assert (
        "url_encrypted" not in spec["components"]["schemas"]["ChannelConfiguredData"]["properties"]
    )


def test_a_log_of_every_kind_of_event_matches_the_document(client, tokens, spec, app, clock):
    admin = tokens["admin"]
    client.post("/api/v1/heartbeats", json=heartbeat(), headers=tokens["agent"])
    client.post(
        "/api/v1/heartbeats", json=heartbeat(server="web02", ip="fe80::1"), headers=tokens["agent"]
    )
    client.put("/api/v1/cluster/configuration", json={"stale_timeout_seconds": 120}, headers=admin)
    clock.advance(minutes=5)
    emit_timeouts(services(app).store, clock(), detector="contract-test")
    client.post("/api/v1/heartbeats", json=heartbeat(), headers=tokens["agent"])  # recovers
    client.delete("/api/v1/servers/web02/components/service", headers=admin)
    client.put(
        "/api/v1/targets/proget01", json={"url": "https://u:pw@proget01:8624"}, headers=admin
    )
    client.delete("/api/v1/targets/proget01", headers=admin)
    channel = {"url": "https://hooks.example/x?token=secret", "on": ["stale"]}
    assert (
        client.put("/api/v1/notifications/channels/ops", json=channel, headers=admin).status_code
        == 200
    )
    client.delete("/api/v1/notifications/channels/ops", headers=admin)
    silence = client.post(
        "/api/v1/silences", json={"duration_seconds": 3600}, headers=admin
    ).get_json()
    client.delete(f"/api/v1/silences/{silence['id']}", headers=admin)

    page = client.get("/api/v1/events?limit=1000", headers=tokens["viewer"]).get_json()
    seen = {e["type"] for e in page["events"]}
    assert seen >= set(CATALOG) - {"MonitorResumed", "CollectionFailed"}, seen
    _assert_valid(spec, _answer_schema(spec, "/api/v1/events"), page, "GET /events")
    history = client.get(
        "/api/v1/servers/web01/components/service/history", headers=tokens["viewer"]
    ).get_json()
    path = "/api/v1/servers/{server}/components/{component}/history"
    _assert_valid(spec, _answer_schema(spec, path), history, "history")


def test_audit_and_report_answers_are_typed_and_match_the_document(
    client, tokens, spec, app, clock
):
    script_history(services(app).store, clock)
    viewer = tokens["viewer"]
    period = _q(since=at(0), until=at(45))
    for path in ("/api/v1/audit/outages", "/api/v1/audit/failovers"):
        answer = client.get(f"{path}?{period}", headers=viewer).get_json()
        _assert_valid(spec, _answer_schema(spec, path), answer, path)
    what_if = client.get(
        f"/api/v1/audit/what-if?{period}&stale_timeout_seconds=600", headers=viewer
    ).get_json()
    _assert_valid(spec, _answer_schema(spec, "/api/v1/audit/what-if"), what_if, "what-if")
    explain = client.get(
        f"/api/v1/servers/a/components/service/explain?{_q(at=at(16))}", headers=viewer
    ).get_json()
    path = "/api/v1/servers/{server}/components/{component}/explain"
    _assert_valid(spec, _answer_schema(spec, path), explain, "explain")

    created = client.post(
        "/api/v1/reports",
        json={"since": at(0).isoformat(), "until": at(45).isoformat()},
        headers=tokens["admin"],
    )
    assert created.status_code == 201
    report_schema = _answer_schema(spec, "/api/v1/reports", "post", "201")
    _assert_valid(spec, report_schema, created.get_json(), "POST /reports")
    listed = client.get("/api/v1/reports", headers=viewer).get_json()
    _assert_valid(spec, _answer_schema(spec, "/api/v1/reports"), listed, "GET /reports")
    # No answer is an empty, open schema any more: each names its members.
    assert "Answer" not in spec["components"]["schemas"]
    for name in ("Outages", "Failovers", "WhatIf", "Explanation", "ReportList", "Report"):
        assert spec["components"]["schemas"][name]["properties"], name


@pytest.mark.parametrize("path", ["outages", "failovers", "what-if"])
def test_an_empty_period_is_answered_not_refused(client, tokens, path):
    # The document cannot state a rule across two parameters: since == until is an empty
    # period, with nothing in it.
    query = _q(since=at(10), until=at(10))
    response = client.get(f"/api/v1/audit/{path}?{query}", headers=tokens["viewer"])
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["period"]["since"] == response.get_json()["period"]["until"]


def test_a_period_longer_than_the_limit_is_cut_and_says_so(client, tokens):
    query = "since=2020-01-01T00:00:00Z&until=2026-01-01T00:00:00Z"
    body = client.get(f"/api/v1/audit/outages?{query}", headers=tokens["viewer"]).get_json()
    assert body["period"] == {
        "since": "2024-11-27T00:00:00+00:00",  # 400 days before until
        "until": "2026-01-01T00:00:00+00:00",
    }


def test_what_if_without_a_setting_replays_the_settings_in_force(client, tokens):
    response = client.get("/api/v1/audit/what-if", headers=tokens["viewer"])
    assert response.status_code == 200
    assert response.get_json()["settings"]["what_if"] == {}


# --- requests: the document's rules are the API's rules ----------------------------------------


@pytest.mark.parametrize(
    "sent_at",
    [
        "1970-01-01T00:00:00Z",  # a clock with a dead battery
        "1970-01-01T00:30:00-01:00",
        "1970-01-01T00:30:00+01:00",  # 1969 in UTC
        "1970-06-01T00:00:00+15:00",
        "2026-11-27T10:00:00.123456+15:59",
        "8999-12-31T23:59:59+15:59",
        "8999-12-31T23:59:59-15:00",  # 9000 in UTC
        "9000-01-01T00:00:00Z",
        "2026-11-27T10:00:00+16:00",
        "2026-11-27T10:00:00",  # no offset
        "2026-11-27 10:00:00Z",
        "2026-11-27T10:00Z",
        "2026-11-27T10:00:00.1234567Z",
        "20261127T100000Z",
        "2026-11-27T10:00:00z",
    ],
)
def test_a_time_is_accepted_exactly_when_the_document_says_so(client, tokens, spec, sent_at):
    schema = spec["components"]["schemas"]["Heartbeat"]
    documented = _validator(spec, schema).is_valid(heartbeat(sent_at=sent_at))
    response = client.post(
        "/api/v1/heartbeats", json=heartbeat(sent_at=sent_at), headers=tokens["agent"]
    )
    assert (response.status_code == 202) is documented, (sent_at, response.get_json())


def test_the_request_rules_are_in_the_schemas(spec):
    schemas = spec["components"]["schemas"]
    patch = schemas["ConfigurationPatch"]
    assert patch["minProperties"] == 1
    assert "2 x `heartbeat_frequency_seconds`" in patch["description"]
    # Typed for generated clients: a string (IPv4 or IPv6) or null, never Any.
    ip = schemas["Heartbeat"]["properties"]["ip"]
    assert all("type" in branch for branch in ip["anyOf"])
    assert {b.get("format") for b in ip["anyOf"]} == {"ipv4", "ipv6", None}
    # The live stream is an event stream, each event's data an Event.
    stream = spec["paths"]["/api/v1/events/stream"]["get"]["responses"]["200"]["content"]
    assert list(stream) == ["text/event-stream"]
    data = stream["text/event-stream"]["schema"]["properties"]["data"]
    assert data["contentSchema"] == {"$ref": "#/components/schemas/Event"}
    # Every documented time parameter states its range as a pattern.
    for path in ("/api/v1/cluster", "/api/v1/events", "/api/v1/audit/outages"):
        for parameter in spec["paths"][path]["get"]["parameters"]:
            if parameter["schema"].get("format") == "date-time":
                assert parameter["schema"]["pattern"].startswith("^("), (path, parameter)


# --- /docs --------------------------------------------------------------------------------------


def test_docs_render_the_document_with_swagger_ui_served_from_here(client):
    page = client.get("/docs")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert 'id="swagger-ui"' in html
    assert not re.search(r"(src|href)=\"(https?:)?//", html)  # nothing from a CDN
    policy = page.headers["Content-Security-Policy"]
    assert "script-src 'self';" in policy  # no inline script, no other origin
    assets = re.findall(r"(?:src|href)=\"(/docs/static/[^\"]+)\"", html)
    assert len(assets) >= 3
    for asset in assets:
        response = client.get(asset)
        body = response.get_data()
        response.close()  # a file sent by the server
        assert response.status_code == 200, asset
        assert len(body) > 100, asset
    start = client.get("/docs/static/start.js").get_data(as_text=True)
    assert '"/openapi.json"' in start
    assert client.get("/docs/static/../../../etc/passwd").status_code == 404
    assert client.get("/docs/static/index.html").status_code == 404  # only what the page loads
