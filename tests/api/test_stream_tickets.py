"""Stream tickets: a browser's EventSource opens the live stream without an Authorization header,
with a ticket valid once within 60 s (POST /api/v1/events/stream/tickets)."""

from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta
from urllib.parse import parse_qs, urlparse

import pytest

from api.services import services
from api.tokens import revoke_tokens
from tests.api.conftest import heartbeat

TICKETS = "/api/v1/events/stream/tickets"
STREAM = "/api/v1/events/stream"


@pytest.fixture(autouse=True)
def short_streams(app):
    app.config.update(SSE_MAX_SECONDS=0.2, SSE_POLL_SECONDS=0.02)


def _ticket(client, tokens, role="viewer") -> str:
    answer = client.post(TICKETS, headers=tokens[role])
    assert answer.status_code == 201, answer.get_json()
    return answer.get_json()["ticket"]


def _ids(text: str) -> list[str]:
    return [line[4:] for line in text.splitlines() if line.startswith("id: ")]


def test_a_ticket_opens_the_stream_once_without_a_header(app, client, tokens, post, clock):
    post({"heartbeats": [heartbeat(server=f"s{i}") for i in range(2)]})
    answer = client.post(TICKETS, headers=tokens["viewer"])
    assert answer.status_code == 201
    body = answer.get_json()
    assert body["ticket"].startswith("cm_ticket_")
    expires = datetime.fromisoformat(body["expires_at"])
    assert timedelta(0) < expires - clock() <= timedelta(seconds=60)
    assert parse_qs(urlparse(body["stream_url"]).query)["ticket"] == [body["ticket"]]

    opened = client.get(STREAM, query_string={"ticket": body["ticket"], "after": 0})
    assert opened.status_code == 200
    assert opened.mimetype == "text/event-stream"
    assert _ids(opened.get_data(as_text=True)) == ["1", "2"]

    again = client.get(STREAM, query_string={"ticket": body["ticket"], "after": 0})
    assert again.status_code == 401
    assert again.mimetype == "application/problem+json"
    assert "used already" in again.get_json()["detail"]


def test_an_expired_ticket_is_refused(client, tokens, clock):
    ticket = _ticket(client, tokens)
    clock.advance(seconds=60)  # the ticket's last moment has passed
    refused = client.get(STREAM, query_string={"ticket": ticket})
    assert refused.status_code == 401
    assert refused.mimetype == "application/problem+json"
    still_in_time = _ticket(client, tokens)
    clock.advance(seconds=59)
    assert client.get(STREAM, query_string={"ticket": still_in_time}).status_code == 200


def test_an_unknown_or_malformed_ticket_is_401_not_a_crash(client):
    for ticket in ("cm_ticket_nonsense", "", "x" * 5000):
        refused = client.get(STREAM, query_string={"ticket": ticket})
        assert refused.status_code == 401, ticket
        assert refused.mimetype == "application/problem+json"


def test_only_a_reader_gets_a_ticket(client, tokens):
    assert client.post(TICKETS).status_code == 401
    assert client.post(TICKETS, headers=tokens["agent"]).status_code == 403
    assert client.post(TICKETS, headers=tokens["admin"]).status_code == 201
    assert client.post(TICKETS + "?foo=1", headers=tokens["viewer"]).status_code == 422


def test_a_ticket_opens_only_the_stream(client, tokens):
    ticket = _ticket(client, tokens)
    assert client.get("/api/v1/cluster", query_string={"ticket": ticket}).status_code in (401, 422)
    assert client.get("/api/v1/events", query_string={"ticket": ticket}).status_code in (401, 422)
    # ... and is still good for the stream: the refusals above did not spend it.
    assert client.get(STREAM, query_string={"ticket": ticket}).status_code == 200


def test_a_ticket_of_a_revoked_token_opens_nothing(app, client, tokens):
    ticket = _ticket(client, tokens)
    svc = services(app)
    revoke_tokens(svc.engine, svc.clock, "viewer-1")
    app.extensions["clustermon_tokens"].ttl = 0  # no cached answer for the revoked token
    app.extensions["clustermon_tokens"]._cache.clear()
    assert client.get(STREAM, query_string={"ticket": ticket}).status_code == 401


def test_a_ticket_opened_stream_ends_when_its_token_is_revoked(app, client, tokens):
    app.config["SSE_MAX_SECONDS"] = 30
    app.extensions["clustermon_tokens"].ttl = 0.05  # the cache period, shortened for the test
    ticket = _ticket(client, tokens)
    stream = client.get(STREAM, query_string={"ticket": ticket}, buffered=False)
    try:
        assert stream.status_code == 200
        chunks = iter(stream.response)
        next(chunks)  # the stream is open
        svc = services(app)
        revoke_tokens(svc.engine, svc.clock, "viewer-1")
        started = time.monotonic()
        list(chunks)  # read until the stream ends
        assert time.monotonic() - started < 10, "the stream of a revoked token stayed open"
    finally:
        stream.close()


def test_concurrent_redemptions_of_one_ticket_open_one_stream(app, tokens):
    # Several clients (as on several workers: the claim is the database's) race for a ticket.
    ticket = _ticket(app.test_client(), tokens)
    statuses: list[int] = []
    start = threading.Barrier(4)

    def race():
        client = app.test_client()
        start.wait()
        response = client.get(STREAM, query_string={"ticket": ticket})
        statuses.append(response.status_code)
        response.close()

    threads = [threading.Thread(target=race) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(statuses) == [200, 401, 401, 401]


def test_the_ticket_endpoint_and_parameter_are_in_the_document(client):
    document = client.get("/openapi.json").get_json()
    operation = document["paths"][TICKETS]["post"]
    schema = operation["responses"]["201"]["content"]["application/json"]["schema"]
    if "$ref" in schema:
        schema = document["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    assert {"ticket", "expires_at"} <= set(schema["properties"])
    parameters = document["paths"][STREAM]["get"]["parameters"]
    assert "ticket" in {p["name"] for p in parameters}
