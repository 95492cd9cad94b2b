import pytest

from api.app import services
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
