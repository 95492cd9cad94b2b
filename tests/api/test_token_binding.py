"""Agent tokens bound to servers (issue #17): a bound token speaks for its servers only, on both
heartbeat paths (the WSGI fast path serves valid requests, Flask the others); a batch naming any
other server is refused whole with a 403 problem naming them, and nothing is recorded."""

import pytest

from api.services import services
from api.tokens import create_token, list_tokens
from tests.api.conftest import heartbeat


@pytest.fixture
def bound(app):
    """Authorization headers of an agent token bound to the given names and patterns."""
    svc = services(app)

    def bound(*servers):
        token = create_token(svc.engine, svc.clock, "agent-web", "agent", servers)
        return {"Authorization": f"Bearer {token}"}

    return bound


def _flask_only(app):
    """Serve every request with the Flask view (the fast path stepped aside)."""
    app.wsgi_app = app.wsgi_app.flask


def _log(app):
    return services(app).store.read_all(0, None)


@pytest.mark.parametrize("path", ["fast path", "flask view"])
def test_a_bound_token_cannot_speak_for_another_server(app, client, bound, flask_requests, path):
    if path == "flask view":
        _flask_only(app)
    headers = bound("web01", "web02")
    mine_and_others = [heartbeat(server="web01"), heartbeat(server="db01"), heartbeat("mail")]

    refused = client.post(
        "/api/v1/heartbeats", json={"heartbeats": mine_and_others}, headers=headers
    )
    alone = client.post("/api/v1/heartbeats", json=heartbeat(server="web03"), headers=headers)

    assert (refused.status_code, alone.status_code) == (403, 403)
    assert refused.mimetype == "application/problem+json"
    detail = refused.get_json()["detail"]
    assert "db01, mail" in detail and "nothing was recorded" in detail
    assert "web01, web02" in detail  # what it is bound to
    assert _log(app) == []
    # Its own servers go through, on the same path.
    ok = client.post("/api/v1/heartbeats", json=heartbeat(server="web02"), headers=headers)
    assert ok.status_code == 202
    assert [e.event.server for e in _log(app)] == ["web02"]
    assert flask_requests == ([] if path == "fast path" else ["/api/v1/heartbeats"] * 3)


@pytest.mark.parametrize("path", ["fast path", "flask view"])
def test_a_pattern_binding_follows_fnmatch(app, client, bound, path):
    if path == "flask view":
        _flask_only(app)
    headers = bound("web*", "db0[12]")

    def status(server):
        response = client.post("/api/v1/heartbeats", json=heartbeat(server=server), headers=headers)
        return response.status_code

    assert [status(s) for s in ("web01", "web-eu-7", "db01", "db02")] == [202] * 4
    # Case-sensitive like server names; a pattern matches the whole name.
    assert [status(s) for s in ("Web01", "db03", "db010", "my-web01")] == [403] * 4
    assert sorted(e.event.server for e in _log(app)) == ["db01", "db02", "web-eu-7", "web01"]


def test_an_unbound_agent_token_speaks_for_every_server(app, post):
    response = post({"heartbeats": [heartbeat(server="web01"), heartbeat(server="db01")]})
    assert response.status_code == 202
    assert len(_log(app)) == 2


def test_the_binding_is_listed_with_the_token(app, tokens, bound):
    bound("web01", "web*")
    rows = {t.name: t for t in list_tokens(services(app).engine)}
    assert rows["agent-web"].servers == ("web01", "web*")
    assert rows["agent-web"].role == "agent"
    assert rows["viewer-1"].servers is None  # the fixture's tokens: unbound


@pytest.mark.parametrize("role", ["viewer", "admin"])
def test_only_agent_tokens_are_bound(app, role):
    svc = services(app)
    with pytest.raises(ValueError, match="only agent tokens"):
        create_token(svc.engine, svc.clock, "x", role, ["web01"])


@pytest.mark.parametrize(
    "servers", [[""], ["web01", " "], ["web/01"], ["-web"], ["web 01"], ["x" * 201]]
)
def test_a_binding_names_servers_or_patterns_of_them(app, servers):
    svc = services(app)
    with pytest.raises(ValueError):
        create_token(svc.engine, svc.clock, "x", "agent", servers)
