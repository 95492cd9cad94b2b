"""The heartbeat fast path (api/fastpath.py) on both databases: valid heartbeats are recorded
without Flask's request machinery and answered as the Flask view answers; every other request
reaches Flask with its body intact; a commit that fails is a 503 problem that wrote nothing."""

import pytest

from api.services import services
from tests.api.conftest import heartbeat


def test_valid_heartbeats_are_recorded_without_flask_and_answered_like_it(
    app, post, flask_requests
):
    fast = post({"heartbeats": [heartbeat(server="a"), heartbeat(server="b")]})
    assert flask_requests == []
    # The same request through the Flask view itself.
    flask_view = app.wsgi_app.flask
    app.wsgi_app = flask_view
    slow = post({"heartbeats": [heartbeat(server="c"), heartbeat(server="d")]})
    assert flask_requests == ["/api/v1/heartbeats"]

    assert (fast.status_code, slow.status_code) == (202, 202)
    assert fast.mimetype == slow.mimetype == "application/json"
    assert fast.get_json() == {"accepted": 2, "duplicates": 0, "last_position": 2}
    assert slow.get_json() == {"accepted": 2, "duplicates": 0, "last_position": 4}
    log = services(app).store.read_all(0, None)
    assert [e.metadata["actor"] for e in log] == ["agent-1"] * 4
    assert log[0].metadata == log[2].metadata


@pytest.mark.parametrize(
    ("role", "body", "status"),
    [
        (None, heartbeat(), 401),
        ("viewer", heartbeat(), 403),
        ("agent", heartbeat(ip="999.1.1.1"), 422),
        ("agent", {"heartbeats": []}, 422),
        ("agent", [heartbeat()], 422),
    ],
)
def test_what_the_fast_path_cannot_serve_flask_answers_with_the_body_intact(
    app, client, tokens, flask_requests, role, body, status
):
    headers = tokens[role] if role else {}
    response = client.post("/api/v1/heartbeats", json=body, headers=headers)
    assert response.status_code == status
    assert response.mimetype == "application/problem+json"
    assert flask_requests == ["/api/v1/heartbeats"]
    if status == 422:  # Flask read the body the fast path had read: it words each field
        assert response.get_json()["errors"]
    assert services(app).store.read_all(0, None) == []


def test_a_failed_commit_is_a_503_problem_and_records_nothing(app, post, monkeypatch):
    def the_database_does_not_answer(*args, **kwargs):
        raise TimeoutError("no answer in time")

    commands = app.extensions["clustermon_ingest"].commands
    monkeypatch.setattr(commands, "record_heartbeats", the_database_does_not_answer)
    response = post(heartbeat())

    assert response.status_code == 503
    assert response.mimetype == "application/problem+json"
    assert response.headers["Retry-After"] == "1"
    assert response.get_json()["status"] == 503
    assert int(response.headers["Content-Length"]) == len(response.get_data())
    assert services(app).store.read_all(0, None) == []
