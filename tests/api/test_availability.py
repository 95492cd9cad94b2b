"""GET /api/v1/availability over the scripted history (tests/integration/test_audit_history.py)
on both databases: the strips, their reasons and uptime, paging, the filter and the refusals."""

from __future__ import annotations

from datetime import timedelta

import pytest

from api.services import services
from tests.integration.test_audit_history import at, script_history

URL = "/api/v1/availability"


@pytest.fixture
def history(app, clock):
    return script_history(services(app).store, clock)


def _get(client, tokens, query="", role="viewer"):
    return client.get(URL + query, headers=tokens[role])


def _ok(response):
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()


def _problem(response, status, field=None):
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/problem+json"
    if field is not None:
        assert field in response.get_json()["errors"]


def _minutes(body, segments):
    """Segments as (from, to, state, reason text) with times in minutes of the script."""
    since = body["since"]
    assert since == (at(45) - timedelta(hours=24)).isoformat()
    zero = (at(0) - (at(45) - timedelta(hours=24))).total_seconds()
    reasons = {r["id"]: r["text"] for r in body["reasons"]}
    return [
        ((a - zero) / 60, (b - zero) / 60, state, reasons[reason])
        for a, b, state, reason in segments
    ]


def test_each_component_has_its_strip_and_the_report_uptime(client, tokens, history):
    body = _ok(_get(client, tokens))
    assert (body["window"], body["until"]) == ("24h", at(45).isoformat())
    assert body["position"] == services(client.application).store.head_position()
    rows = {(c["server"], c["component"]): c for c in body["components"]}
    assert sorted(rows) == [("a", "service"), ("a", "web"), ("b", "service"), ("b", "web")]
    stale = "no heartbeat within the Service stale timeout (5 min); timeout recorded by sweep-test"
    current = "heartbeats arrived within the timeout"
    assert _minutes(body, rows[("a", "service")]["segments"]) == [
        (0, 15, "current", current),
        (15, 20, "stale", stale),
        (20, 35, "current", current),
        (35, 41, "stale", stale),
        (41, 45, "current", current),
    ]
    assert _minutes(body, rows[("a", "web")]["segments"]) == [(0, 45, "current", current)]
    a = rows[("a", "service")]
    assert (a["present"], a["outages"], a["outage_seconds"]) == (True, 2, 660)
    assert a["uptime_percent"] == round(100 * 34 / 45, 3)
    assert rows[("a", "web")]["uptime_percent"] == 100
    # the same number as the report of that period
    report = client.post(
        "/api/v1/reports",
        json={"since": body["since"], "until": body["until"]},
        headers=tokens["admin"],
    ).get_json()
    assert {
        (c["server"], c["component"]): c["uptime_percent"] for c in report["data"]["components"]
    } == {k: c["uptime_percent"] for k, c in rows.items()}


def test_a_week_is_seven_days_before_now(client, tokens, history):
    body = _ok(_get(client, tokens, "?window=7d"))
    assert body["since"] == (at(45) - timedelta(days=7)).isoformat()
    assert body["window"] == "7d"


def test_pages_of_servers_follow_next_after(client, tokens, history):
    first = _ok(_get(client, tokens, "?limit=1"))
    assert [(c["server"], c["component"]) for c in first["components"]] == [
        ("a", "service"),
        ("a", "web"),
    ]
    assert (first["servers"], first["next_after"]) == (2, "a")
    second = _ok(_get(client, tokens, "?limit=1&after=a"))
    assert {c["server"] for c in second["components"]} == {"b"}
    assert second["next_after"] is None


def test_the_filter_keeps_servers_whose_name_contains_it_and_only_their_reasons(
    client, tokens, history
):
    history.to(46)
    history.beat("web-07", component="web")
    history.to(47)
    body = _ok(_get(client, tokens, "?server=WEB"))
    assert [(c["server"], c["component"]) for c in body["components"]] == [("web-07", "web")]
    assert body["servers"] == 1
    assert [r["state"] for r in body["reasons"]] == ["current"]


def test_a_new_heartbeat_is_in_the_next_answer(client, tokens, history):
    assert _ok(_get(client, tokens))["servers"] == 2
    history.to(45.5)
    history.beat("c")
    history.to(46)
    body = _ok(_get(client, tokens))
    assert body["servers"] == 3


@pytest.mark.parametrize(
    "query, field",
    [
        ("?window=1h", "window"),
        ("?limit=0", "limit"),
        ("?limit=1001", "limit"),
        ("?limit=+5", "limit"),
        ("?after=bad%20name", "after"),
        ("?server=", "server"),
        ("?window=24h&window=7d", "window"),
        ("?until=2026-11-27T10:00:00Z", "until"),
    ],
)
def test_bad_queries_are_refused_with_the_parameter_named(client, tokens, query, field):
    _problem(_get(client, tokens, query), 422, field)


def test_a_viewer_token_is_needed(client, tokens):
    _problem(client.get(URL), 401)
    _problem(_get(client, tokens, role="agent"), 403)


def test_an_empty_cluster_has_no_strips(client, tokens):
    body = _ok(_get(client, tokens))
    assert (body["components"], body["servers"], body["next_after"]) == ([], 0, None)


def test_the_contract_documents_the_segments_as_four_tuples(client):
    spec = client.get("/openapi.json").get_json()
    ok = spec["paths"]["/api/v1/availability"]["get"]["responses"]["200"]
    assert ok["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/Availability"
    }
    segment = spec["components"]["schemas"]["ComponentStrip"]["properties"]["segments"]["items"]
    assert [item.get("type") for item in segment["prefixItems"]] == [
        "number",
        "number",
        "string",
        "integer",
    ]
    assert (segment["minItems"], segment["maxItems"]) == (4, 4)
