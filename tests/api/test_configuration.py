import pytest

from api.services import services


def _put(client, tokens, body, role="admin"):
    return client.put("/api/v1/cluster/configuration", json=body, headers=tokens[role])


def test_partial_update_returns_the_new_configuration(app, client, tokens):
    response = _put(client, tokens, {"stale_timeout_seconds": 600, "load_balancing": False})
    assert response.status_code == 200
    assert response.get_json() == {
        "load_balancing": False,
        "automatic_failover": True,
        "heartbeat_frequency_seconds": 30,
        "stale_timeout_seconds": 600,
        "web_stale_timeout_seconds": 86400,
        "version": 1,
    }
    [event] = services(app).store.read_all(0, None)
    assert event.type == "ConfigurationChanged"
    assert event.event.changes == {"stale_timeout_seconds": 600, "load_balancing": False}
    assert event.metadata["actor"] == "admin-1"


def test_a_change_builds_on_the_previous_one(client, tokens):
    _put(client, tokens, {"stale_timeout_seconds": 600})
    response = _put(client, tokens, {"heartbeat_frequency_seconds": 60})
    assert response.get_json()["stale_timeout_seconds"] == 600
    assert response.get_json()["heartbeat_frequency_seconds"] == 60
    assert response.get_json()["version"] == 2


def test_setting_the_same_values_records_nothing(app, client, tokens):
    response = _put(client, tokens, {"stale_timeout_seconds": 300})
    assert response.status_code == 200
    assert services(app).store.head_position() == 0


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"stale_timeout_seconds": 0}, "stale_timeout_seconds"),
        ({"stale_timeout_seconds": -5}, "stale_timeout_seconds"),
        ({"stale_timeout_seconds": "soon"}, "stale_timeout_seconds"),
        ({"heartbeat_frequency_seconds": 3601}, "heartbeat_frequency_seconds"),
        ({"load_balancing": "perhaps"}, "load_balancing"),
        # JSON types only: 0, "yes", "600" and 600.0 are not what the contract names
        ({"load_balancing": 0}, "load_balancing"),
        ({"automatic_failover": "yes"}, "automatic_failover"),
        ({"stale_timeout_seconds": "600"}, "stale_timeout_seconds"),
        ({"stale_timeout_seconds": 600.0}, "stale_timeout_seconds"),
        ({"primary_server": "web01"}, "primary_server"),
        ({}, "_schema"),
        # not below two heartbeat periods (the product docs discourage low stale timeouts)
        ({"stale_timeout_seconds": 45}, "stale_timeout_seconds"),
        ({"heartbeat_frequency_seconds": 200}, "heartbeat_frequency_seconds"),
    ],
)
def test_bad_configuration_is_refused_with_field_errors(app, client, tokens, body, field):
    response = _put(client, tokens, body)
    assert response.status_code == 422
    assert response.mimetype == "application/problem+json"
    assert field in response.get_json()["errors"]
    assert services(app).store.head_position() == 0


def test_every_role_reads_the_configuration_an_agent_its_heartbeat_period(client, tokens):
    _put(client, tokens, {"heartbeat_frequency_seconds": 10, "stale_timeout_seconds": 60})
    for role in ("agent", "viewer", "admin"):
        response = client.get("/api/v1/cluster/configuration", headers=tokens[role])
        assert response.status_code == 200, role
        assert response.get_json()["heartbeat_frequency_seconds"] == 10
        assert response.get_json()["version"] == 1
    # The cluster view itself stays the viewers'.
    assert client.get("/api/v1/cluster", headers=tokens["agent"]).status_code == 403
    assert client.get("/api/v1/cluster/configuration").status_code == 401
