from datetime import timedelta

import orjson
import pytest

from api.services import services
from domain.state import fold
from projections.readmodel.view import cluster_view, live_time
from tests.api.conftest import fingerprint, heartbeat


def _view(client, tokens, query=""):
    response = client.get(f"/api/v1/cluster{query}", headers=tokens["viewer"])
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def _component(view, server, name):
    [row] = [s for s in view["servers"] if s["name"] == server]
    [component] = [c for c in row["components"] if c["name"] == name]
    return row, component


def test_the_view_shows_what_was_just_posted(client, tokens, post):
    post({"heartbeats": [heartbeat(component="web"), heartbeat(component="service")]})
    view = _view(client, tokens)
    assert view["server_count"] == 1
    assert view["configuration"]["stale_timeout_seconds"] == 300
    assert view["configuration"]["web_stale_timeout_seconds"] == 86400
    server, service = _component(view, "web01", "service")
    assert (server["os"], server["os_version"], server["ip"]) == ("Ubuntu", "24.04", "10.0.0.5")
    assert server["health"] == "ok"
    assert server["version_in_sync"] is True
    assert server["encryption_key_in_sync"] is True
    assert service["heartbeat"]["state"] == "current"
    assert service["heartbeat"]["age_seconds"] == 0
    assert service["product_version"] == "2025.10"
    assert view["as_of"]["position"] == 2


def test_a_silent_service_turns_stale_and_says_why(client, tokens, post, clock):
    post({"heartbeats": [heartbeat(component="web"), heartbeat(component="service")]})
    clock.advance(minutes=5, seconds=1)
    server, service = _component(_view(client, tokens), "web01", "service")
    assert service["heartbeat"]["state"] == "stale"
    assert service["heartbeat"]["stale_since"].startswith("2026-11-27T10:05:00")
    assert service["health"] == "error"
    assert "no heartbeat for" in service["reasons"][0]
    assert server["health"] == "error"
    _, web = _component(_view(client, tokens), "web01", "web")
    assert web["heartbeat"]["state"] == "current"  # the web window is 24 h


def test_key_mismatch_and_version_drift_are_flagged(client, tokens, post):
    post(
        {
            "heartbeats": [
                heartbeat(server="a"),
                heartbeat(server="b"),
                heartbeat(
                    server="c",
                    encryption_key_fingerprint=fingerprint("other"),
                    product_version="2025.4",
                ),
            ]
        }
    )
    view = _view(client, tokens)
    rows = {s["name"]: s for s in view["servers"]}
    assert rows["a"]["encryption_key_in_sync"] is True
    assert rows["c"]["encryption_key_in_sync"] is False
    assert rows["c"]["version_in_sync"] is False
    assert rows["c"]["health"] == "error"
    assert any("encryption key" in r for r in rows["c"]["reasons"])


def test_removed_component_is_absent_until_it_reports(client, tokens, post):
    post({"heartbeats": [heartbeat(component="web"), heartbeat(component="service")]})
    client.delete("/api/v1/servers/web01/components/web", headers=tokens["admin"])
    _, only = _component(_view(client, tokens), "web01", "service")
    assert [c["name"] for c in _view(client, tokens)["servers"][0]["components"]] == ["service"]
    assert only["name"] == "service"
    post(heartbeat(component="web"))
    names = [c["name"] for c in _view(client, tokens)["servers"][0]["components"]]
    assert names == ["service", "web"]


def test_time_travel_by_time_and_by_position(client, tokens, post, clock):
    post(heartbeat(server="early"))
    before_removal = clock.now
    clock.advance(minutes=1)
    post(heartbeat(server="late"))
    client.delete("/api/v1/servers/early/components/service", headers=tokens["admin"])

    now = _view(client, tokens)
    assert [s["name"] for s in now["servers"]] == ["late"]

    at = before_removal.isoformat().replace("+00:00", "Z")
    past = _view(client, tokens, f"?at={at}")
    assert [s["name"] for s in past["servers"]] == ["early"]
    assert past["as_of"]["position"] == 1

    by_position = _view(client, tokens, "?position=2")
    assert [s["name"] for s in by_position["servers"]] == ["early", "late"]

    # staleness is evaluated at the time asked for, not now ("late" beat at 10:01)
    clock.advance(hours=1)

    def late_state(moment):
        query = "?at=" + moment.isoformat().replace("+00:00", "Z")
        _, service = _component(_view(client, tokens, query), "late", "service")
        return service["heartbeat"]["state"]

    assert late_state(before_removal + timedelta(minutes=6)) == "current"
    assert late_state(before_removal + timedelta(minutes=6, seconds=1)) == "stale"


def test_bad_time_travel_queries(client, tokens, post):
    post(heartbeat())
    for query in (
        "?at=yesterday",
        "?position=-3",
        "?position=0",  # the first event is position 1 (the document says so too)
        "?position=abc",
        "?at=2026-11-27T10:00:00",
        "?position=1&at=2026-11-27T10:00:00Z",
        "?nope=1",
        "?at=0001-01-01T00:00:00%2B14:00",  # before year 1 in UTC: overflowed (500)
        "?at=9999-12-31T23:59:59-23:59",
        "?position=9223372036854775808",  # beyond a bigint
    ):
        response = client.get(f"/api/v1/cluster{query}", headers=tokens["viewer"])
        assert response.status_code == 422, query
        assert response.mimetype == "application/problem+json"
    beyond = client.get("/api/v1/cluster?position=99", headers=tokens["viewer"])
    assert beyond.status_code == 422
    assert "position" in beyond.get_json()["errors"]
    before_log = client.get("/api/v1/cluster?at=2000-01-01T00:00:00Z", headers=tokens["viewer"])
    assert before_log.status_code == 422
    assert before_log.mimetype == "application/problem+json"
    assert "at" in before_log.get_json()["errors"]


def test_history_lists_transitions_with_reasons(client, tokens, post, clock):
    post(heartbeat())
    clock.advance(minutes=10)
    post(heartbeat())
    response = client.get(
        "/api/v1/servers/web01/components/service/history", headers=tokens["viewer"]
    )
    assert response.status_code == 200
    transitions = response.get_json()["transitions"]
    assert len(transitions) >= 2
    assert all(t["reason"] for t in transitions)
    missing = client.get(
        "/api/v1/servers/ghost/components/service/history", headers=tokens["viewer"]
    )
    assert missing.status_code == 404


@pytest.mark.postgres
def test_reads_see_every_committed_write_while_another_process_projects(
    pg_database_url, clock, tokens_for_url
):
    """The runner of another process holds the checkpoint lock: the view must still show what
    was committed before the request."""
    from api.services import services
    from cli.main import create_app
    from eventstore.db import write_connection
    from projections.readmodel import rows as readmodel

    app = create_app({"DATABASE_URL": pg_database_url, "CLOCK": clock, "TESTING": True})
    client, tokens = app.test_client(), tokens_for_url(app)
    client.post("/api/v1/heartbeats", json=heartbeat(server="first"), headers=tokens["agent"])
    client.get("/api/v1/cluster", headers=tokens["viewer"])  # projected up to here
    engine = services(app).engine
    with write_connection(engine) as other, other.begin():
        readmodel.lock_checkpoint(other, wait=True)  # "another process" is projecting
        client.post("/api/v1/heartbeats", json=heartbeat(server="second"), headers=tokens["agent"])
        view = _view(client, tokens)
    assert [s["name"] for s in view["servers"]] == ["first", "second"]
    engine.dispose()


def test_the_view_is_evaluated_at_whole_seconds_and_reused_within_one(client, tokens, post, clock):
    post(heartbeat())
    clock.advance(seconds=3, microseconds=250_000)
    first = client.get("/api/v1/cluster", headers=tokens["viewer"])
    assert first.get_json()["as_of"]["time"] == "2026-11-27T10:00:03+00:00"
    _, service = _component(first.get_json(), "web01", "service")
    assert service["heartbeat"]["age_seconds"] == 3
    clock.advance(microseconds=500_000)
    again = client.get("/api/v1/cluster", headers=tokens["viewer"])
    assert again.data == first.data
    post(heartbeat(server="web02"))  # a new event is in the next answer at once
    names = [s["name"] for s in _view(client, tokens)["servers"]]
    assert names == ["web01", "web02"]


def test_an_event_recorded_earlier_in_this_second_is_in_the_view_of_its_own_time(
    client, tokens, post, clock
):
    """The view at `as_of.time` is the view `?at=` gives for that time: never an event
    recorded after it, never a negative age."""
    post(heartbeat())
    clock.advance(seconds=2, microseconds=410_250)
    post(heartbeat(server="web02"))
    clock.advance(microseconds=90_000)  # the same second
    live = _view(client, tokens)
    # Its recorded_at, up to the whole millisecond (the renderer's fast path).
    assert live["as_of"]["time"] == "2026-11-27T10:00:02.411000+00:00"
    _, service = _component(live, "web02", "service")
    assert service["heartbeat"]["age_seconds"] == 0.001
    assert _view(client, tokens, "?at=2026-11-27T10:00:02.411Z") == live
    clock.advance(seconds=1)  # a new second without new events: the whole second again
    assert _view(client, tokens)["as_of"]["time"] == "2026-11-27T10:00:03+00:00"


def test_the_served_view_is_the_fold_evaluated_at_its_time(app, client, tokens, post, clock):
    """GET /cluster serves the incrementally kept view: it must be exactly the view of the log
    at its evaluation time (`live_time`), as the log grows and deadlines pass."""
    store = services(app).store

    def expected():
        state = fold(store.iter_all())
        return orjson.loads(orjson.dumps(cluster_view(state, live_time(state, clock.now))))

    post({"heartbeats": [heartbeat(server="a"), heartbeat(server="b", component="web")]})
    clock.advance(seconds=1.25)
    assert _view(client, tokens) == expected()
    clock.advance(minutes=4)
    post(heartbeat(server="b", product_version="2025.11"))
    assert _view(client, tokens) == expected()
    clock.advance(minutes=1, seconds=30)  # a's service is past its deadline
    view = _view(client, tokens)
    assert view == expected()
    _, service = _component(view, "a", "service")
    assert service["heartbeat"]["state"] == "stale"
    client.delete("/api/v1/servers/b/components/service", headers=tokens["admin"])
    assert _view(client, tokens) == expected()
    # Served in pieces, with the length of the whole body.
    response = client.get("/api/v1/cluster", headers=tokens["viewer"])
    assert response.headers["Content-Length"] == str(len(response.data))
    assert response.mimetype == "application/json"


def test_a_fingerprint_in_uppercase_is_the_same_key(client, tokens, post):
    # Agents hash the key with whatever their platform offers; .NET prints hex in uppercase.
    same_key = heartbeat(server="b")["encryption_key_fingerprint"].upper()
    post({"heartbeats": [heartbeat(server="a"), heartbeat(server="b", message="first")]})
    assert post(heartbeat(server="b", encryption_key_fingerprint=same_key)).status_code == 202
    rows = {s["name"]: s for s in _view(client, tokens)["servers"]}
    assert rows["a"]["encryption_key_in_sync"] is True
    assert rows["b"]["encryption_key_in_sync"] is True
    events = client.get("/api/v1/events?server=b", headers=tokens["viewer"]).get_json()["events"]
    assert [e["data"]["message"] for e in events] == ["first", None]
    assert events[-1]["data"]["encryption_key_fingerprint"] == same_key.lower()
