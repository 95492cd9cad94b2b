import pytest

from api.services import services
from tests.api.conftest import heartbeat

ENDPOINTS = [
    ("post", "/api/v1/heartbeats", "agent"),
    ("get", "/api/v1/events", "viewer"),
    ("put", "/api/v1/cluster/configuration", "admin"),
    ("delete", "/api/v1/servers/web01/components/web", "admin"),
]


@pytest.mark.parametrize(("method", "path", "role"), ENDPOINTS)
def test_no_token_is_401(client, method, path, role):
    response = getattr(client, method)(path, json={})
    assert response.status_code == 401
    assert response.mimetype == "application/problem+json"
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize(("method", "path", "role"), ENDPOINTS)
def test_unknown_token_is_401(client, method, path, role):
    headers = {"Authorization": "Bearer cm_admin_not-a-real-token"}
    assert getattr(client, method)(path, json={}, headers=headers).status_code == 401


def test_wrong_role_is_403(client, tokens):
    assert (
        client.post("/api/v1/heartbeats", json=heartbeat(), headers=tokens["viewer"]).status_code
        == 403
    )
    assert client.get("/api/v1/events", headers=tokens["agent"]).status_code == 403
    put = client.put(
        "/api/v1/cluster/configuration",
        json={"stale_timeout_seconds": 600},
        headers=tokens["viewer"],
    )
    assert put.status_code == 403
    assert put.mimetype == "application/problem+json"


def test_admin_reads_what_a_viewer_reads(client, tokens):
    assert client.get("/api/v1/events", headers=tokens["admin"]).status_code == 200


def test_tokens_are_stored_hashed(app, tokens):
    import sqlalchemy as sa

    raw = tokens["admin"]["Authorization"].removeprefix("Bearer ")
    with services(app).engine.connect() as conn:
        stored = conn.execute(sa.text("SELECT token_hash FROM api_tokens")).scalars().all()
    assert raw not in stored
    assert all(len(h) == 64 for h in stored)


def test_a_rejected_write_appends_nothing(app, client, tokens):
    client.post("/api/v1/heartbeats", json=heartbeat(), headers=tokens["viewer"])
    assert services(app).store.head_position() == 0


# Each endpoint that takes query arguments, with a query it refuses.
BAD_QUERIES = [
    "/api/v1/cluster?position=x",
    "/api/v1/events?limit=5000",
    "/api/v1/audit/outages?since=not-a-time",
    "/api/v1/audit/failovers?since=not-a-time",
    "/api/v1/audit/what-if?since=not-a-time",
    "/api/v1/servers/web01/components/web/explain?at=not-a-time",
    "/api/v1/reports?unknown=1",
    "/api/v1/reports/1?unknown=1",
]


@pytest.mark.parametrize("path", BAD_QUERIES)
def test_the_token_is_checked_before_the_query(client, tokens, path):
    # Field errors are for those allowed to ask: without the right token the answer is 401/403.
    assert client.get(path).status_code == 401
    forbidden = client.get(path, headers=tokens["agent"])
    assert forbidden.status_code == 403
    assert forbidden.mimetype == "application/problem+json"
    refused = client.get(path, headers=tokens["viewer"])
    assert refused.status_code == 422
    problem = refused.get_json()
    # The same problem type as a refused body, with the field that was wrong.
    assert problem["type"].endswith("/validation") and problem["errors"]
