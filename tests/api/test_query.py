"""Query strings: an unknown or repeated parameter, or an integer that is not plain ASCII
digits, is a 422 naming the parameter, on every endpoint; a refused request changes nothing."""

from __future__ import annotations

import pytest

from tests.api.conftest import heartbeat

# (path, the parameter under test, a value the endpoint accepts, a second one)
ENDPOINTS = [
    ("/api/v1/events", "limit", "5", "6"),
    ("/api/v1/events", "type", "HeartbeatRecorded", "ComponentRemoved"),
    ("/api/v1/events/stream", "after", "1", "2"),
    ("/api/v1/cluster", "position", "1", "2"),
    ("/api/v1/reports", "limit", "5", "6"),
    ("/api/v1/audit/what-if", "stale_timeout_seconds", "60", "120"),
]
NOT_PLAIN_DIGITS = ["+5", " 5", "5 ", "1_0", "\u0665", "\uff15", "0x5", "5.0", "-0"]


@pytest.fixture
def viewer(app, post, tokens):
    app.config["SSE_MAX_SECONDS"] = 0  # a stream that opens answers at once
    assert post(heartbeat()).status_code == 202
    return tokens["viewer"]


def _problem(response, parameter: str) -> list[str]:
    assert response.status_code == 422, response.get_data(as_text=True)
    assert response.mimetype == "application/problem+json"
    errors = response.get_json()["errors"]
    assert list(errors) == [parameter]
    return errors[parameter]


@pytest.mark.parametrize(("path", "name", "value", "other"), ENDPOINTS)
def test_a_repeated_parameter_is_refused_not_half_read(client, viewer, path, name, value, other):
    assert client.get(f"{path}?{name}={value}", headers=viewer).status_code == 200
    for query in (f"{name}={value}&{name}={other}", f"{name}={value}&{name}={value}"):
        messages = _problem(client.get(f"{path}?{query}", headers=viewer), name)
        assert messages == ["give this parameter once"]


@pytest.mark.parametrize(
    ("path", "name", "value"), [(p, n, v) for p, n, v, _ in ENDPOINTS if v.isdigit()]
)
@pytest.mark.parametrize("written", NOT_PLAIN_DIGITS)
def test_query_integers_are_ascii_digits(client, viewer, path, name, value, written):
    # Python's int() reads each of these as a number (or raises); the API takes digits only.
    assert client.get(f"{path}?{name}={value}", headers=viewer).status_code == 200
    response = client.get(path, query_string={name: written}, headers=viewer)
    assert _problem(response, name) == ["Not a valid integer."]


def test_leading_zeros_are_still_digits(client, viewer):
    events = client.get("/api/v1/events?limit=001", headers=viewer)
    assert events.status_code == 200
    assert len(events.get_json()["events"]) == 1


def test_openapi_documents_addresses_in_standard_formats(client):
    spec = client.get("/openapi.json").get_json()
    ip = spec["components"]["schemas"]["Heartbeat"]["properties"]["ip"]
    assert "format" not in ip  # "ip" is not a JSON Schema format
    assert ip["anyOf"] == [  # typed branches: generated clients see a string or null
        {"type": "string", "format": "ipv4"},
        {"type": "string", "format": "ipv6"},
        {"type": "null"},
    ]


# Endpoints that take no query parameter at all: (method, path, role, body)
NO_QUERY = [
    ("POST", "/api/v1/heartbeats", "agent", heartbeat(server="web09")),
    ("PUT", "/api/v1/cluster/configuration", "admin", {"stale_timeout_seconds": 600}),
    ("DELETE", "/api/v1/servers/web01/components/service", "admin", None),
    ("GET", "/api/v1/servers/web01/components/service/history", "viewer", None),
    (
        "POST",
        "/api/v1/reports",
        "admin",
        {"since": "2026-11-26T10:00:00Z", "until": "2026-11-27T10:00:00Z"},
    ),
]


@pytest.mark.parametrize(("method", "path", "role", "body"), NO_QUERY)
def test_endpoints_without_parameters_refuse_any(client, viewer, tokens, method, path, role, body):
    def log():
        return client.get("/api/v1/events?after=0", headers=viewer).get_json()["events"]

    before = log()
    for query in ("since=2026-11-27T00:00:00Z", "foo=1"):
        response = client.open(f"{path}?{query}", method=method, json=body, headers=tokens[role])
        _problem(response, query.partition("=")[0])
    assert log() == before
    assert client.open(path, method=method, json=body, headers=tokens[role]).status_code < 300
