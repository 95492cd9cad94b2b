from datetime import timedelta

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
        "since=2026-01-02T00:00:00Z&until=2026-01-01T00:00:00Z",
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


def test_sse_rejects_a_bad_last_event_id(client, tokens):
    response = client.get(
        "/api/v1/events/stream", headers={**tokens["viewer"], "Last-Event-ID": "abc"}
    )
    assert response.status_code == 422


def test_live_streams_never_take_every_worker_thread(app, client, tokens):
    app.config["THREADS"] = 2  # one stream slot
    app.config["SSE_MAX_SECONDS"] = 0.05
    first = client.get("/api/v1/events/stream", headers=tokens["viewer"], buffered=False)
    assert first.status_code == 200
    busy = client.get("/api/v1/events/stream", headers=tokens["viewer"])
    assert busy.status_code == 503
    assert busy.mimetype == "application/problem+json"
    assert busy.headers["Retry-After"] == "30"
    first.get_data()  # the first stream ends and gives its slot back
    first.close()
    again = client.get("/api/v1/events/stream", headers=tokens["viewer"])
    assert again.status_code == 200
