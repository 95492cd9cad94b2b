"""Flask test client over a real database of each kind, with a token per role."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

import pytest

from api.services import services
from api.tokens import create_token
from cli.main import create_app


@pytest.fixture
def app(database_url, clock):
    # A secret key of its own: channels are refused under the public development default.
    config = {"DATABASE_URL": database_url, "CLOCK": clock, "TESTING": True}
    app = create_app({**config, "SECRET_KEY": "tests-only-secret-key"})
    yield app
    if "clustermon_tail" in app.extensions:  # a test opened a live stream
        app.extensions["clustermon_tail"].stop()
    services(app).engine.dispose()


@pytest.fixture
def flask_requests(app):
    """The paths of the requests that went through Flask (its before_request hook)."""
    seen = []

    @app.before_request
    def note():
        from flask import request

        seen.append(request.path)

    return seen


@pytest.fixture
def client(app):
    return app.test_client()


def _tokens(app):
    svc = services(app)
    return {
        role: {"Authorization": f"Bearer {create_token(svc.engine, svc.clock, role + '-1', role)}"}
        for role in ("agent", "viewer", "admin")
    }


@pytest.fixture
def tokens(app):
    return _tokens(app)


@pytest.fixture
def tokens_for_url():
    """Tokens for an app a test builds itself."""
    return _tokens


def fingerprint(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def heartbeat(server="web01", component="service", **overrides):
    beat = {
        "server": server,
        "component": component,
        "os": "Ubuntu",
        "os_version": "24.04",
        "ip": "10.0.0.5",
        "product": "ProGet",
        "product_version": "2025.10",
        "encryption_key_fingerprint": fingerprint("the-key"),
        "status": "ok",
        "verification": "verified",
        "sent_at": datetime(2026, 11, 27, 10, tzinfo=UTC).isoformat(),
    }
    beat.update(overrides)
    return beat


@pytest.fixture
def post(client, tokens):
    def post(body, role="agent"):
        return client.post("/api/v1/heartbeats", json=body, headers=tokens[role])

    return post
