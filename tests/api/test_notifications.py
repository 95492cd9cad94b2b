"""Notification channels and deliveries over HTTP (API.md v1.1, "Notifications") on both
databases: roles, validation as 422 problems with field errors, the channel URL's secrets never
shown (answers, the log, the live stream's event form), and the test message through a real
local webhook."""

from __future__ import annotations

import uuid

import orjson
import pytest

from api.events import event_json
from api.services import services
from api.settings import DEFAULTS
from notify.secrets import unseal
from tests.notify_support import free_port, webhook

HOOK_SECRET = "T00000000/B00000000/XXXXXXXXXXXXXXXXXXXXXXXX"
HOOK_URL = f"https://hooks.example/services/{HOOK_SECRET}?token=abc123"
MAIL_URL = "mailto://ops:Sup3rS3cretMailPw@mail.example/?to=oncall@example.com"


def _put(client, tokens, name, body, role="admin"):
    return client.put(f"/api/v1/notifications/channels/{name}", json=body, headers=tokens[role])


def _channel(url=HOOK_URL, **overrides):
    return {"url": url, "on": ["stale", "recovered"], **overrides}


def _events(app, type_=None):
    return [e for e in services(app).store.read_all(0, None) if type_ in (None, e.type)]


def test_an_admin_adds_a_webhook_and_a_viewer_sees_it_with_its_secrets_masked(client, tokens):
    response = _put(client, tokens, "ops-hook", _channel(servers=["web01"]))
    assert response.status_code == 200
    assert response.get_json() == {
        "name": "ops-hook",
        "kind": "webhook",
        "target": "https://hooks.example/***?***",
        "on": ["stale", "recovered"],
        "servers": ["web01"],
        "enabled": True,
        "min_outage_seconds": 0,
    }
    listed = client.get("/api/v1/notifications/channels", headers=tokens["viewer"])
    assert listed.status_code == 200
    assert listed.get_json() == {"channels": [response.get_json()]}
    assert HOOK_SECRET not in listed.get_data(as_text=True)


def test_an_apprise_url_shows_its_kind_and_never_its_password(client, tokens):
    body = _channel(MAIL_URL, on=["daily_report"], min_outage_seconds=120, enabled=False)
    response = _put(client, tokens, "mail", body)
    assert response.status_code == 200
    shown = response.get_json()
    assert (shown["kind"], shown["min_outage_seconds"], shown["enabled"]) == ("mailto", 120, False)
    assert shown["target"].startswith("mailto://ops:")
    listed = client.get("/api/v1/notifications/channels", headers=tokens["viewer"])
    assert "Sup3rS3cretMailPw" not in listed.get_data(as_text=True)


def test_the_event_holds_the_url_sealed_with_the_secret_key_and_its_actor(app, client, tokens):
    _put(client, tokens, "ops-hook", _channel())
    [recorded] = _events(app, "ChannelConfigured")
    assert recorded.stream == "channel:ops-hook"
    assert recorded.metadata["actor"] == "admin-1"
    assert HOOK_SECRET not in orjson.dumps(recorded.event).decode()
    # The sender can open it (with the app's key), nobody else needs to.
    assert unseal(recorded.event.url_encrypted, app.config["SECRET_KEY"]) == HOOK_URL


def test_the_log_over_http_shows_neither_the_url_nor_its_sealed_form(app, client, tokens):
    _put(client, tokens, "ops-hook", _channel())
    page = client.get("/api/v1/events?type=ChannelConfigured", headers=tokens["viewer"])
    [event] = page.get_json()["events"]
    assert event["data"]["target"] == "https://hooks.example/***?***"
    assert "url_encrypted" not in event["data"]
    assert HOOK_SECRET not in page.get_data(as_text=True)
    # The live stream sends the same form.
    [recorded] = _events(app, "ChannelConfigured")
    streamed = orjson.dumps(event_json(recorded)).decode()
    assert "url_encrypted" not in streamed and HOOK_SECRET not in streamed


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (_channel("hooks.example/x"), "url"),
        (_channel("nosuchservice://whatever"), "url"),
        (_channel(on=[]), "on"),
        (_channel(on=["stale", "when-it-rains"]), "on"),
        (_channel(servers=["not a server name"]), "servers"),
        (_channel(min_outage_seconds=-1), "min_outage_seconds"),
        ({"on": ["stale"]}, "url"),
        ({**_channel(), "colour": "red"}, "colour"),
    ],
)
def test_a_channel_that_cannot_work_is_refused_with_the_field_named(client, tokens, body, field):
    response = _put(client, tokens, "c1", body)
    assert response.status_code == 422
    assert response.mimetype == "application/problem+json"
    assert field in response.get_json()["errors"]
    assert client.get("/api/v1/notifications/channels", headers=tokens["viewer"]).get_json() == {
        "channels": []
    }


def test_the_url_is_not_echoed_in_a_refusal(client, tokens):
    response = _put(client, tokens, "c1", _channel(f"nosuchservice://{HOOK_SECRET}"))
    assert response.status_code == 422
    assert HOOK_SECRET not in response.get_data(as_text=True)


def test_channels_are_refused_while_the_secret_key_is_the_public_default(app, client, tokens):
    app.config["SECRET_KEY"] = DEFAULTS["SECRET_KEY"]
    response = _put(client, tokens, "ops-hook", _channel())
    assert response.status_code == 409
    assert "CLUSTERMON_SECRET_KEY" in response.get_json()["detail"]
    assert _events(app, "ChannelConfigured") == []


def test_only_an_admin_changes_channels(client, tokens):
    assert _put(client, tokens, "c1", _channel(), role="viewer").status_code == 403
    assert (
        client.delete("/api/v1/notifications/channels/c1", headers=tokens["viewer"]).status_code
        == 403
    )
    assert (
        client.post("/api/v1/notifications/channels/c1/test", headers=tokens["viewer"]).status_code
        == 403
    )
    assert client.get("/api/v1/notifications/channels").status_code == 401


def test_delete_removes_the_channel_and_a_second_delete_is_404(app, client, tokens):
    _put(client, tokens, "c1", _channel())
    response = client.delete("/api/v1/notifications/channels/c1", headers=tokens["admin"])
    assert response.status_code == 200
    [removal] = _events(app, "ChannelRemoved")
    assert response.get_json() == {"removed": {"name": "c1"}, "position": removal.position}
    listed = client.get("/api/v1/notifications/channels", headers=tokens["viewer"]).get_json()
    assert listed == {"channels": []}
    again = client.delete("/api/v1/notifications/channels/c1", headers=tokens["admin"])
    assert again.status_code == 404


def test_a_test_message_reaches_the_webhook_and_is_listed_as_sent(client, tokens, clock):
    with webhook() as hook:
        _put(client, tokens, "ops-hook", _channel(hook.url))
        response = client.post(
            "/api/v1/notifications/channels/ops-hook/test", headers=tokens["admin"]
        )
    assert response.status_code == 200
    delivery = response.get_json()
    assert (delivery["channel"], delivery["trigger"], delivery["state"]) == (
        "ops-hook",
        "test",
        "sent",
    )
    assert delivery["attempts"] == 1 and delivery["last_error"] is None
    [received] = hook.received
    assert received.body["id"] == delivery["id"]
    assert received.headers["Idempotency-Key"] == delivery["id"]
    assert received.body["trigger"] == "test"
    assert received.body["reasons"] == ["a test message from clustermon"]
    listed = client.get("/api/v1/notifications/deliveries", headers=tokens["viewer"]).get_json()
    assert listed == {"deliveries": [delivery], "next_after": delivery["seq"]}


def test_a_channel_that_cannot_be_reached_answers_502_without_its_secret(client, tokens):
    url = f"http://127.0.0.1:{free_port()}/hooks/{HOOK_SECRET}"
    _put(client, tokens, "down", _channel(url))
    response = client.post("/api/v1/notifications/channels/down/test", headers=tokens["admin"])
    assert response.status_code == 502
    assert response.mimetype == "application/problem+json"
    assert "down" in response.get_json()["detail"]
    assert HOOK_SECRET not in response.get_data(as_text=True)
    [failed] = client.get("/api/v1/notifications/deliveries", headers=tokens["viewer"]).get_json()[
        "deliveries"
    ]
    assert (failed["state"], failed["channel"]) == ("failed", "down")
    assert failed["last_error"] and HOOK_SECRET not in failed["last_error"]


def test_testing_an_unknown_channel_is_404(client, tokens):
    response = client.post("/api/v1/notifications/channels/nope/test", headers=tokens["admin"])
    assert response.status_code == 404


def test_deliveries_page_in_seq_order_and_filter_by_channel(client, tokens):
    with webhook() as hook:
        _put(client, tokens, "a", _channel(hook.url))
        _put(client, tokens, "b", _channel(hook.url))
        for name in ("a", "b", "a"):
            sent = client.post(
                f"/api/v1/notifications/channels/{name}/test", headers=tokens["admin"]
            )
            assert sent.status_code == 200
    url = "/api/v1/notifications/deliveries"
    first = client.get(f"{url}?limit=2", headers=tokens["viewer"]).get_json()
    assert [d["channel"] for d in first["deliveries"]] == ["a", "b"]
    rest = client.get(f"{url}?after={first['next_after']}", headers=tokens["viewer"]).get_json()
    assert [d["channel"] for d in rest["deliveries"]] == ["a"]
    seqs = [d["seq"] for d in first["deliveries"] + rest["deliveries"]]
    assert seqs == sorted(seqs)
    only_a = client.get(f"{url}?channel=a", headers=tokens["viewer"]).get_json()
    assert [d["channel"] for d in only_a["deliveries"]] == ["a", "a"]
    assert all(uuid.UUID(d["id"]) for d in only_a["deliveries"])
    empty = client.get(f"{url}?after={seqs[-1]}", headers=tokens["viewer"]).get_json()
    assert empty == {"deliveries": [], "next_after": seqs[-1]}
    assert client.get(f"{url}?limit=0", headers=tokens["viewer"]).status_code == 422
