import threading
import time
from datetime import timedelta

import pytest

from api.services import services
from api.tokens import revoke_tokens
from tests.api.conftest import heartbeat


def test_pages_follow_positions(client, tokens, post):
    post({"heartbeats": [heartbeat(server=f"s{i}") for i in range(5)]})
    first = client.get("/api/v1/events?limit=2", headers=tokens["viewer"]).get_json()
    assert [e["position"] for e in first["events"]] == [1, 2]
    assert first["next_after"] == 2
    second = client.get(
        f"/api/v1/events?after={first['next_after']}&limit=10", headers=tokens["viewer"]
    ).get_json()
    assert [e["position"] for e in second["events"]] == [3, 4, 5]
    event = second["events"][0]
    assert set(event) >= {
        "position",
        "event_id",
        "type",
        "stream",
        "version",
        "recorded_at",
        "occurred_at",
        "data",
        "metadata",
    }
    assert event["data"]["server"] == "s2"
    assert event["recorded_at"].startswith("2026-11-27T10:00:00")


def test_filters(client, tokens, post, clock):
    post(heartbeat(server="a", component="web"))
    post(heartbeat(server="a", component="service"))
    clock.advance(hours=1)
    post(heartbeat(server="b", component="web"))
    client.put(
        "/api/v1/cluster/configuration",
        json={"stale_timeout_seconds": 600},
        headers=tokens["admin"],
    )

    def streams(query):
        body = client.get(f"/api/v1/events?{query}", headers=tokens["viewer"]).get_json()
        return [e["stream"] for e in body["events"]]

    assert streams("server=a") == ["a/web", "a/service"]
    assert streams("server=a&component=web") == ["a/web"]
    assert streams("component=web") == ["a/web", "b/web"]
    assert streams("type=ConfigurationChanged") == ["cluster"]
    since = (clock.now - timedelta(minutes=1)).isoformat().replace("+00:00", "Z")
    assert streams(f"since={since}") == ["b/web", "cluster"]


def test_bad_queries_are_422(client, tokens):
    for query in (
        "after=-1",
        "limit=0",
        "limit=5000",
        "type=Nope",
        "since=notadate",
        "component=db",
        "bogus=1",
        "after=9223372036854775808",  # beyond a bigint (was a 500)
        "since=0001-01-01T00:00:00%2B14:00",
    ):
        response = client.get(f"/api/v1/events?{query}", headers=tokens["viewer"])
        assert response.status_code == 422, query
        assert response.mimetype == "application/problem+json"
        assert response.get_json()["errors"], query


def test_sse_stream_resumes_after_last_event_id(app, client, tokens, post):
    app.config["SSE_MAX_SECONDS"] = 0.3  # end the stream quickly in tests
    app.config["SSE_POLL_SECONDS"] = 0.05
    post({"heartbeats": [heartbeat(server=f"s{i}") for i in range(3)]})
    response = client.get(
        "/api/v1/events/stream", headers={**tokens["viewer"], "Last-Event-ID": "1"}
    )
    assert response.status_code == 200
    assert response.mimetype == "text/event-stream"
    text = response.get_data(as_text=True)
    ids = [line.removeprefix("id: ") for line in text.splitlines() if line.startswith("id: ")]
    assert ids == ["2", "3"]
    assert "event: HeartbeatRecorded" in text


@pytest.mark.parametrize(
    "last_event_id",
    ["abc", "-1", "\u00b2", "9" * 5000, "9223372036854775808"],  # "²" passes str.isdigit
)
def test_sse_rejects_a_bad_last_event_id(client, tokens, last_event_id):
    for request in (
        {"headers": {**tokens["viewer"], "Last-Event-ID": last_event_id}},
        {"headers": tokens["viewer"], "query_string": {"after": last_event_id}},
    ):
        response = client.get("/api/v1/events/stream", **request)
        assert response.status_code == 422
        assert response.mimetype == "application/problem+json"


def test_sse_names_the_bad_parameter_and_refuses_unknown_ones(client, tokens):
    viewer = tokens["viewer"]
    bad_after = client.get(
        "/api/v1/events/stream?after=abc", headers={**viewer, "Last-Event-ID": "1"}
    )
    assert bad_after.status_code == 422
    assert list(bad_after.get_json()["errors"]) == ["after"]
    unknown = client.get("/api/v1/events/stream?foo=1", headers=viewer)
    assert unknown.status_code == 422
    assert list(unknown.get_json()["errors"]) == ["foo"]


def test_live_streams_never_take_every_worker_thread(app, client, tokens):
    app.config["THREADS"] = 2  # one stream slot
    app.config["SSE_MAX_SECONDS"] = 0.05
    first = client.get("/api/v1/events/stream?after=0", headers=tokens["viewer"], buffered=False)
    assert first.status_code == 200
    busy = client.get("/api/v1/events/stream", headers=tokens["viewer"])
    assert busy.status_code == 503
    assert busy.mimetype == "application/problem+json"
    assert busy.headers["Retry-After"] == "30"
    first.get_data()  # the first stream ends and gives its slot back
    first.close()
    again = client.get("/api/v1/events/stream", headers=tokens["viewer"])
    again.close()
    assert again.status_code == 200


def test_head_requests_and_unread_streams_give_their_slots_back(app, client, tokens):
    # A HEAD never runs the stream's body, nor does a response closed before its first byte:
    # each used to keep its slot for good, and a few `curl -I` switched streams off for all.
    app.config["THREADS"] = 2  # one stream slot
    for _ in range(5):
        head = client.head("/api/v1/events/stream", headers=tokens["viewer"])
        head.close()
        assert head.status_code == 200
        unread = client.get("/api/v1/events/stream", headers=tokens["viewer"], buffered=False)
        unread.close()
        assert unread.status_code == 200
    app.config["SSE_MAX_SECONDS"] = 0.05
    again = client.get("/api/v1/events/stream", headers=tokens["viewer"])
    again.close()
    assert again.status_code == 200


def test_a_revoked_tokens_stream_ends_within_the_cache_period(app, client, tokens):
    svc = services(app)
    app.extensions["clustermon_tokens"].ttl = 0.05  # the cache period, shortened for the test
    app.config["SSE_MAX_SECONDS"] = 30
    stream = client.get("/api/v1/events/stream", headers=tokens["viewer"], buffered=False)
    try:
        chunks = iter(stream.response)
        next(chunks)  # the stream is open
        revoke_tokens(svc.engine, svc.clock, "viewer-1")
        started = time.monotonic()
        list(chunks)  # read until the stream ends
        assert time.monotonic() - started < 10, "the stream of a revoked token stayed open"
    finally:
        stream.close()
    refused = client.get("/api/v1/events/stream", headers=tokens["viewer"])
    assert refused.status_code == 401


def _ids(chunks) -> list[int]:
    text = b"".join(chunks).decode()
    return [int(line[4:]) for line in text.splitlines() if line.startswith("id: ")]


def _read_until(stream, last_id: int) -> list[int]:
    """Read a live stream until the event at `last_id` arrives; the ids seen, in order."""
    chunks = []
    for chunk in stream.response:
        chunks.append(chunk)
        if last_id in _ids([chunk]):
            return _ids(chunks)
    raise AssertionError(f"the stream ended before event {last_id}: {_ids(chunks)}")


def test_sse_streams_what_is_appended_meanwhile_in_order_without_gaps(app, client, tokens, post):
    # A tail of 5 events: the stream falls behind it and catches up from the store, then
    # follows the tail again; whatever the path, every position arrives once and in order.
    app.config.update(SSE_TAIL_EVENTS=5, SSE_POLL_SECONDS=0.02, SSE_MAX_SECONDS=30)
    post({"heartbeats": [heartbeat(server=f"old{i}") for i in range(12)]})
    stream = client.get("/api/v1/events/stream?after=0", headers=tokens["viewer"], buffered=False)
    try:
        seen = _read_until(stream, 12)
        for batch, size in enumerate((1, 12, 3)):
            post({"heartbeats": [heartbeat(server=f"new{batch}-{i}") for i in range(size)]})
            seen += _read_until(stream, len(seen) + size)
    finally:
        stream.close()
    assert seen == list(range(1, 29))


def test_a_new_subscriber_gets_new_events_not_the_history(app, client, tokens, post):
    # API.md: "Server-Sent Events of new events"; ?after=0 asks for the whole log.
    app.config.update(SSE_POLL_SECONDS=0.02, SSE_MAX_SECONDS=30)
    post({"heartbeats": [heartbeat(server=f"old{i}") for i in range(3)]})
    stream = client.get("/api/v1/events/stream", headers=tokens["viewer"], buffered=False)
    try:
        post(heartbeat(server="new"))
        assert _read_until(stream, 4) == [3, 4]  # 3: the head it started from, an id alone
    finally:
        stream.close()


def test_a_new_subscriber_that_reconnects_before_any_event_misses_nothing(
    app, client, tokens, post
):
    # Its first id is the head it started from: an EventSource that reconnects (the stream
    # ended, a proxy cut it) sends it back as Last-Event-ID and resumes there.
    app.config.update(SSE_POLL_SECONDS=0.02, SSE_MAX_SECONDS=0.1)
    post(heartbeat(server="old"))
    first = client.get("/api/v1/events/stream", headers=tokens["viewer"])
    assert _ids([first.data]) == [1]
    post(heartbeat(server="meanwhile"))  # while the client waits to reconnect
    again = client.get("/api/v1/events/stream", headers={**tokens["viewer"], "Last-Event-ID": "1"})
    assert _ids([again.data]) == [2]


def test_live_streams_share_one_read_of_each_new_event(app, tokens, post):
    # Ten dashboards waiting at the head: a new event is read from the log once for all of
    # them (by the worker's live tail), not once per dashboard.
    app.config.update(THREADS=40, SSE_POLL_SECONDS=0.02, SSE_MAX_SECONDS=30)
    store = services(app).store
    reads, read_all = [], store.read_all

    def counted_read_all(*args, **kwargs):
        page = read_all(*args, **kwargs)
        reads.append([r.position for r in page])
        return page

    store.read_all = counted_read_all
    post({"heartbeats": [heartbeat(server="first")]})
    at_head = threading.Barrier(11)
    seen = {}

    def dashboard(n):
        stream = app.test_client().get(
            "/api/v1/events/stream?after=0", headers=tokens["viewer"], buffered=False
        )
        try:
            first = _read_until(stream, 1)
            at_head.wait(timeout=10)
            seen[n] = first + _read_until(stream, 2)
        finally:
            stream.close()

    threads = [threading.Thread(target=dashboard, args=(n,)) for n in range(10)]
    for thread in threads:
        thread.start()
    at_head.wait(timeout=10)
    post({"heartbeats": [heartbeat(server="second")]})
    for thread in threads:
        thread.join(timeout=10)
    assert seen == {n: [1, 2] for n in range(10)}
    assert sum(2 in page for page in reads) == 1


def test_the_live_tail_stops_when_the_last_stream_closes(app, client, tokens):
    app.config.update(SSE_POLL_SECONDS=0.02, SSE_MAX_SECONDS=30)
    stream = client.get("/api/v1/events/stream?after=0", headers=tokens["viewer"], buffered=False)
    try:
        next(iter(stream.response))  # the stream is open: its worker follows the log
        follower = app.extensions["clustermon_tail"].follower
        assert follower is not None and follower.is_alive()
    finally:
        stream.close()
    follower.join(timeout=10)
    assert not follower.is_alive()
    assert app.extensions["clustermon_tail"].follower is None
