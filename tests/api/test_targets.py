"""GET/PUT/DELETE /api/v1/targets (API.md v1.1, "Collection") on both databases: roles,
validation as 422 problems with field errors, secrets masked wherever a URL is shown, and every
change an event with its actor."""

from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa

from api.services import services
from collector.tables import target_polls
from domain.events import COLLECTOR_ACTOR, CollectionFailed

SECRET_URL = "https://monitor:pa55w0rd@proget01:8624/?api_key=K3Y&region=eu"
MASKED_URL = "https://monitor:***@proget01:8624/?api_key=***&region=eu"


def _put(client, tokens, server, body, role="admin"):
    return client.put(f"/api/v1/targets/{server}", json=body, headers=tokens[role])


def _get(client, tokens, role="viewer"):
    return client.get("/api/v1/targets", headers=tokens[role])


def _events(app, type_=None):
    events = services(app).store.read_all(0, None)
    return [e for e in events if type_ is None or e.type == type_]


def test_an_admin_adds_a_target_with_defaults_and_a_viewer_lists_it(app, client, tokens):
    response = _put(client, tokens, "proget01", {"url": "https://proget01:8624"})
    assert response.status_code == 200
    assert response.get_json() == {
        "server": "proget01",
        "url": "https://proget01:8624",
        "interval_seconds": 30,
        "timeout_seconds": 5,
        "verify_tls": True,
        "last_poll": None,
        "failure": None,
    }
    listed = _get(client, tokens)
    assert listed.status_code == 200
    assert listed.get_json()["targets"] == [response.get_json()]


def test_a_change_keeps_the_settings_it_does_not_name(client, tokens):
    _put(client, tokens, "p1", {"url": "http://p1", "interval_seconds": 60, "verify_tls": False})
    response = _put(client, tokens, "p1", {"timeout_seconds": 10})
    assert response.status_code == 200
    body = response.get_json()
    assert (body["url"], body["interval_seconds"], body["timeout_seconds"]) == ("http://p1", 60, 10)
    assert body["verify_tls"] is False
    # Listed in server name order.
    _put(client, tokens, "a-first", {"url": "http://a"})
    assert [t["server"] for t in _get(client, tokens).get_json()["targets"]] == ["a-first", "p1"]


def test_each_change_is_one_event_with_its_actor_and_the_same_body_twice_records_one(
    app, client, tokens
):
    body = {"url": "https://p1:8624", "interval_seconds": 20}
    assert _put(client, tokens, "p1", body).status_code == 200
    assert _put(client, tokens, "p1", body).status_code == 200
    [event] = _events(app)
    assert event.type == "TargetConfigured"
    assert event.stream == "target:p1"
    assert event.metadata["actor"] == "admin-1" and event.metadata["role"] == "admin"
    assert (event.event.url, event.event.interval_seconds) == ("https://p1:8624", 20)


def test_delete_stops_polling_records_the_removal_and_a_second_delete_is_404(app, client, tokens):
    _put(client, tokens, "p1", {"url": "http://p1"})
    response = client.delete("/api/v1/targets/p1", headers=tokens["admin"])
    assert response.status_code == 200
    removal = _events(app, "TargetRemoved")[0]
    assert response.get_json() == {"removed": {"server": "p1"}, "position": removal.position}
    assert removal.metadata["actor"] == "admin-1"
    assert _get(client, tokens).get_json()["targets"] == []
    again = client.delete("/api/v1/targets/p1", headers=tokens["admin"])
    assert again.status_code == 404
    assert again.mimetype == "application/problem+json"


def test_a_removed_target_can_be_added_again_without_its_old_last_poll(app, client, tokens, clock):
    _put(client, tokens, "p1", {"url": "http://p1"})
    with services(app).engine.begin() as conn:
        old_poll = {"server": "p1", "at": clock(), "ok": True, "error": None, "seconds": 0.01}
        conn.execute(target_polls.insert(), [old_poll])
    assert _get(client, tokens).get_json()["targets"][0]["last_poll"]["ok"] is True
    client.delete("/api/v1/targets/p1", headers=tokens["admin"])
    response = _put(client, tokens, "p1", {"url": "http://p1.new"})
    assert response.status_code == 200, response.get_json()
    [target] = _get(client, tokens).get_json()["targets"]
    assert (target["url"], target["last_poll"]) == ("http://p1.new", None)


@pytest.mark.parametrize("server", ["unknown", "bad%20name", "-dash-first"])
def test_deleting_what_is_not_a_target_is_404(client, tokens, server):
    response = client.delete(f"/api/v1/targets/{server}", headers=tokens["admin"])
    assert response.status_code == 404
    assert response.mimetype == "application/problem+json"


# --- roles ---------------------------------------------------------------------------------


def test_roles_a_viewer_reads_only_and_an_agent_token_gets_nothing(app, client, tokens):
    assert _get(client, tokens, "viewer").status_code == 200
    assert _get(client, tokens, "admin").status_code == 200
    assert _get(client, tokens, "agent").status_code == 403
    assert _put(client, tokens, "p1", {"url": "http://p1"}, role="viewer").status_code == 403
    assert _put(client, tokens, "p1", {"url": "http://p1"}, role="agent").status_code == 403
    _put(client, tokens, "p1", {"url": "http://p1"})
    for role in ("viewer", "agent"):
        assert client.delete("/api/v1/targets/p1", headers=tokens[role]).status_code == 403
    assert client.get("/api/v1/targets").status_code == 401
    assert [e.type for e in _events(app)] == ["TargetConfigured"]


# --- validation ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"url": "ftp://proget01/"}, "url"),
        ({"url": "file:///etc/passwd"}, "url"),
        ({"url": "https://"}, "url"),  # no host
        ({"url": "proget01:8624"}, "url"),  # no scheme
        ({"url": 42}, "url"),
        ({"url": "http://p1", "interval_seconds": 0}, "interval_seconds"),
        ({"url": "http://p1", "interval_seconds": 3601}, "interval_seconds"),
        ({"url": "http://p1", "interval_seconds": "30"}, "interval_seconds"),
        ({"url": "http://p1", "timeout_seconds": 0}, "timeout_seconds"),
        ({"url": "http://p1", "timeout_seconds": 61, "interval_seconds": 120}, "timeout_seconds"),
        ({"url": "http://p1", "verify_tls": "yes"}, "verify_tls"),
        # the cross-field rule: a poll must end before the next one is due
        ({"url": "http://p1", "interval_seconds": 5, "timeout_seconds": 5}, "timeout_seconds"),
        ({"url": "http://p1", "interval_seconds": 3}, "interval_seconds"),
        ({"url": "http://p1", "headers": {"X": "1"}}, "headers"),  # unknown field
        ({"interval_seconds": 30}, "url"),  # a new target needs its URL
    ],
)
def test_bad_targets_are_refused_with_field_errors(app, client, tokens, body, field):
    response = _put(client, tokens, "p1", body)
    assert response.status_code == 422
    assert response.mimetype == "application/problem+json"
    assert field in response.get_json()["errors"], response.get_json()
    assert _events(app) == []


def test_a_change_that_would_overlap_polls_is_refused_naming_the_field_sent(client, tokens):
    _put(client, tokens, "p1", {"url": "http://p1", "timeout_seconds": 10})
    response = _put(client, tokens, "p1", {"interval_seconds": 10})
    assert response.status_code == 422
    [message] = response.get_json()["errors"]["interval_seconds"]
    assert "shorter than the interval" in message


@pytest.mark.parametrize("server", ["-x", "a" * 201, "white space", "a/b"])
def test_a_server_name_no_heartbeat_could_carry_is_refused(app, client, tokens, server):
    response = _put(client, tokens, server.replace("/", "%2F"), {"url": "http://p1"})
    assert response.status_code in (404, 422)
    assert response.mimetype == "application/problem+json"
    assert _events(app) == []


def test_a_body_that_is_not_an_object_or_not_json_is_refused(client, tokens):
    assert _put(client, tokens, "p1", ["http://p1"]).status_code == 422
    response = client.put(
        "/api/v1/targets/p1",
        data="{url",
        content_type="application/json",
        headers=tokens["admin"],
    )
    assert response.status_code == 400


# --- masking -------------------------------------------------------------------------------


def test_secrets_in_a_url_are_masked_in_every_answer_but_kept_for_the_poller(app, client, tokens):
    response = _put(client, tokens, "p1", {"url": SECRET_URL})
    assert response.get_json()["url"] == MASKED_URL
    assert _get(client, tokens, "viewer").get_json()["targets"][0]["url"] == MASKED_URL
    assert _get(client, tokens, "admin").get_json()["targets"][0]["url"] == MASKED_URL
    page = client.get("/api/v1/events?type=TargetConfigured", headers=tokens["viewer"])
    [event] = page.get_json()["events"]
    assert event["data"]["url"] == MASKED_URL
    assert b"pa55w0rd" not in page.data and b"K3Y" not in page.data
    # The log and the state keep the URL whole: the poller needs it.
    assert services(app).commands.target("p1").url == SECRET_URL


def test_the_live_stream_masks_target_urls_too(app, client, tokens):
    app.config["SSE_MAX_SECONDS"] = 0.3
    _put(client, tokens, "p1", {"url": SECRET_URL})
    response = client.get("/api/v1/events/stream?after=0", headers=tokens["viewer"])
    body = response.get_data()
    assert b"event: TargetConfigured" in body
    assert MASKED_URL.encode() in body
    assert b"pa55w0rd" not in body and b"K3Y" not in body


# --- what the poller left: last poll and failure -------------------------------------------


def test_the_last_poll_and_an_ongoing_failure_are_listed(app, client, tokens, clock):
    _put(client, tokens, "p1", {"url": "http://p1"})
    _put(client, tokens, "p2", {"url": "http://p2"})
    svc = services(app)
    polled_at = clock()
    with svc.engine.begin() as conn:
        conn.execute(
            target_polls.insert(),
            [
                {
                    "server": "p1",
                    "at": polled_at,
                    "ok": False,
                    "error": "connection refused",
                    "seconds": 0.01,
                },
            ],
        )
    failure = CollectionFailed(
        server="p1", kind="refused", detail="connection refused", at=polled_at
    )
    svc.commands.record_collection_failure(failure, {"actor": COLLECTOR_ACTOR})
    p1, p2 = _get(client, tokens).get_json()["targets"]
    assert p1["last_poll"] == {
        "at": polled_at.isoformat(),
        "ok": False,
        "error": "connection refused",
        "seconds": 0.01,
    }
    assert p1["failure"] == {
        "kind": "refused",
        "detail": "connection refused",
        "since": polled_at.isoformat(),
    }
    assert p2["last_poll"] is None and p2["failure"] is None


def test_a_failing_target_gives_its_components_a_reason_in_the_cluster_view(
    app, client, tokens, post, clock
):
    from tests.api.conftest import heartbeat

    _put(client, tokens, "web01", {"url": "http://web01"})
    post({"heartbeats": [heartbeat("web01", "web"), heartbeat("web01", "service")]})
    failed_at = clock() + timedelta(seconds=1)
    failure = CollectionFailed(
        server="web01", kind="refused", detail="connection refused", at=failed_at
    )
    services(app).commands.record_collection_failure(failure, {"actor": COLLECTOR_ACTOR})
    [server] = client.get("/api/v1/cluster", headers=tokens["viewer"]).get_json()["servers"]
    assert server["health"] == "warning"
    expected = (
        f"polling /health fails since {failed_at:%Y-%m-%d %H:%M:%S} UTC: connection refused"
        " (refused)"
    )
    for component in server["components"]:
        assert component["health"] == "warning"
        assert component["reasons"] == [expected]
    # Stopping the polls ends the reason: nothing is polled, nothing fails.
    client.delete("/api/v1/targets/web01", headers=tokens["admin"])
    [server] = client.get("/api/v1/cluster", headers=tokens["viewer"]).get_json()["servers"]
    assert server["health"] == "ok"
    assert all(c["reasons"] == [] for c in server["components"])


def test_target_polls_table_is_empty_until_the_poller_writes(app):
    with services(app).engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(target_polls)).scalar() == 0
