"""notify.transport against real receivers: a webhook (HTTP server in a thread) and a mail server
(aiosmtpd) on 127.0.0.1, reached through an Apprise `mailto://` URL."""

from __future__ import annotations

import logging
import threading

import pytest

from notify.transport import USER_AGENT, DeliveryError, deliver
from tests.notify_support import free_port, mail_server, webhook

STALE = {
    "id": "6f1c1d3e-0000-4000-8000-000000000001",
    "trigger": "stale",
    "server": "web01",
    "component": "service",
    "at": "2026-11-27T10:05:00Z",
    "reasons": ["no heartbeat for 300 s (timeout 120 s)"],
    "source_position": 42,
    "link": "http://127.0.0.1:8000/?at=2026-11-27T10:05:00Z",
}
SECRET_PATH = "clustermon-s3cr3t-path"
MAIL_PASSWORD = "s3cretMailPassw0rd"


def mail_url(port: int, password: str = MAIL_PASSWORD) -> str:
    # mailto:// is plain SMTP (no TLS); the server is in `host:port`, the sender in from=.
    return f"mailto://ops:{password}@127.0.0.1:{port}?from=clustermon@example.com&to=oncall@example.com"


def test_a_webhook_gets_the_message_as_json_with_its_id_as_idempotency_key():
    with webhook() as hook:
        deliver(hook.url, STALE)

    [got] = hook.received
    assert got.body == {"version": 1, **STALE}  # the body's shape is versioned (README)
    assert got.headers["Idempotency-Key"] == STALE["id"]
    assert got.headers["User-Agent"] == USER_AGENT
    assert USER_AGENT.startswith("clustermon/")
    assert got.headers["Content-Type"] == "application/json"
    assert got.path == f"/hooks/{SECRET_PATH}"


@pytest.mark.parametrize("status", [500, 404, 429])
def test_a_webhook_answering_an_error_is_a_delivery_error_naming_the_status(status):
    with webhook() as hook:
        hook.status = status
        with pytest.raises(DeliveryError) as raised:
            deliver(hook.url, STALE)

    assert str(status) in str(raised.value)
    assert SECRET_PATH not in str(raised.value)


def test_a_redirect_is_not_followed():
    with webhook() as hook:
        hook.status = 301
        hook.location = hook.url + "/moved"
        with pytest.raises(DeliveryError, match="redirect"):
            deliver(hook.url, STALE)

    assert len(hook.received) == 1  # the new address got nothing


def test_a_webhook_that_is_down_is_a_delivery_error_without_the_secret(caplog):
    caplog.set_level(logging.DEBUG)
    url = f"http://127.0.0.1:{free_port()}/hooks/{SECRET_PATH}?token=t0psecretvalue"

    with pytest.raises(DeliveryError, match="could not be reached") as raised:
        deliver(url, STALE, timeout=2)

    assert SECRET_PATH not in str(raised.value)
    assert "t0psecretvalue" not in str(raised.value)
    assert SECRET_PATH not in caplog.text
    assert "t0psecretvalue" not in caplog.text


def test_a_webhook_that_does_not_answer_in_time_is_a_delivery_error():
    with webhook() as hook:
        hook.release = threading.Event()
        with pytest.raises(DeliveryError, match=r"did not answer within 0\.3 s"):
            deliver(hook.url, STALE, timeout=0.3)


def test_the_logs_of_a_sent_webhook_do_not_show_its_secret_path(caplog):
    caplog.set_level(logging.DEBUG)
    # The poller quiets httpx's own logger (collector/poller.py): open it up for this test.
    caplog.set_level(logging.DEBUG, logger="httpx")
    with webhook() as hook:
        deliver(hook.url, STALE)

    assert hook.received
    assert any(r.name == "httpx" for r in caplog.records)  # httpx did log the request line
    assert SECRET_PATH not in caplog.text


def test_a_mail_arrives_with_the_reasons_in_its_body_and_the_id_in_a_header(caplog):
    caplog.set_level(logging.DEBUG)
    with mail_server() as box:
        deliver(mail_url(box.port), STALE)

    [mail] = box.messages
    assert mail["To"] == "oncall@example.com"
    assert mail["From"] == "clustermon@example.com"
    assert "stale" in mail["Subject"] and "web01/service" in mail["Subject"]
    assert mail["X-Clustermon-Id"] == STALE["id"]
    body = mail.get_payload(decode=True).decode()
    assert "no heartbeat for 300 s (timeout 120 s)" in body
    assert STALE["id"] in body
    assert MAIL_PASSWORD not in caplog.text


def test_a_report_is_mailed_as_html():
    report = {
        "id": "6f1c1d3e-0000-4000-8000-000000000002",
        "trigger": "daily_report",
        "at": "2026-11-28T06:00:00Z",
        "period": {"since": "2026-11-27T06:00:00Z", "until": "2026-11-28T06:00:00Z"},
        "html": "<h1>Daily report</h1><p>3 outages</p>",
        "link": "http://127.0.0.1:8000/",
    }
    with mail_server() as box:
        deliver(mail_url(box.port), report)

    [mail] = box.messages
    # HTML with a plain-text alternative for mail readers without HTML.
    parts = {part.get_content_type(): part for part in mail.walk()}
    assert "<h1>Daily report</h1>" in parts["text/html"].get_payload(decode=True).decode()
    assert "3 outages" in parts["text/plain"].get_payload(decode=True).decode()
    assert "daily report" in mail["Subject"]


def test_a_mail_server_that_is_down_is_a_delivery_error_without_the_password(caplog):
    caplog.set_level(logging.DEBUG)

    with pytest.raises(DeliveryError, match="E-Mail did not take the message") as raised:
        deliver(mail_url(free_port()), STALE, timeout=5)

    assert MAIL_PASSWORD not in str(raised.value)
    assert MAIL_PASSWORD not in caplog.text


def test_a_url_apprise_cannot_use_is_a_delivery_error():
    with pytest.raises(DeliveryError, match="Apprise cannot use"):
        deliver("nosuchscheme://user:hunter2pass@example", STALE)


def test_an_apprise_http_service_gets_the_id_as_idempotency_key(caplog):
    caplog.set_level(logging.DEBUG)
    with webhook() as hook:
        port = hook.url.split(":")[2].split("/")[0]
        deliver(f"json://ops:{MAIL_PASSWORD}@127.0.0.1:{port}/hooks/{SECRET_PATH}", STALE)

    [got] = hook.received
    assert got.headers["Idempotency-Key"] == STALE["id"]
    assert "no heartbeat for 300 s (timeout 120 s)" in got.body["message"]
    assert MAIL_PASSWORD not in caplog.text
