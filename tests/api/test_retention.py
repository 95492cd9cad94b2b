"""GET /retention, and time travel and the log's pages once old events are archived."""

from __future__ import annotations

from datetime import timedelta

from tests.api.conftest import heartbeat
from tests.integration.test_retention_boundary import archive_before

PATH = "/srv/clustermon/archives/2026-11-27"


def _z(moment) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def _three_servers(post, clock):
    """web01 at 10:00, web02 at 10:10, web03 at 10:20; the clock then at 10:30."""
    for server in ("web01", "web02", "web03"):
        assert post(heartbeat(server=server)).status_code == 202
        clock.advance(minutes=10)


def test_retention_before_anything_is_archived(client, tokens, post, clock):
    _three_servers(post, clock)
    response = client.get("/api/v1/retention", headers=tokens["viewer"])
    assert response.status_code == 200
    assert response.get_json() == {
        "oldest_position": 1,
        "oldest_time": "2026-11-27T10:00:00+00:00",
        "boundary": None,
        "archives": [],
    }


def test_retention_names_the_archive_and_the_oldest_event_kept(app, client, tokens, post, clock):
    _three_servers(post, clock)
    store = app.extensions["clustermon"].store
    before = clock() - timedelta(minutes=15)  # 10:15: web01's and web02's heartbeats go
    assert archive_before(store, before, PATH) == (1, 2, 2)

    body = client.get("/api/v1/retention", headers=tokens["viewer"]).get_json()
    assert body == {
        "oldest_position": 3,
        "oldest_time": "2026-11-27T10:20:00+00:00",
        "boundary": "2026-11-27T10:15:00+00:00",
        "archives": [
            {
                "first_position": 1,
                "last_position": 2,
                "before": "2026-11-27T10:15:00+00:00",
                "events": 2,
                "path": PATH,
            }
        ],
    }


def test_retention_needs_a_viewer_token_and_is_documented(client, tokens):
    assert client.get("/api/v1/retention").status_code == 401
    assert client.get("/api/v1/retention?x=1", headers=tokens["viewer"]).status_code == 422
    spec = client.get("/openapi.json").get_json()
    answer = spec["paths"]["/api/v1/retention"]["get"]["responses"]["200"]
    schema = answer["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]
    assert set(spec["components"]["schemas"][schema]["properties"]) >= {
        "oldest_position",
        "oldest_time",
        "archives",
    }


def test_time_travel_before_the_boundary_is_gone_after_it_unchanged(
    app, client, tokens, post, clock
):
    _three_servers(post, clock)
    viewer = tokens["viewer"]
    before = clock() - timedelta(minutes=15)
    times = [before, before + timedelta(minutes=4), clock()]
    expected = {
        t: client.get(f"/api/v1/cluster?at={_z(t)}", headers=viewer).get_json() for t in times
    }
    at_three = client.get("/api/v1/cluster?position=3", headers=viewer).get_json()
    archive_before(app.extensions["clustermon"].store, before, PATH)

    for t in times:
        answer = client.get(f"/api/v1/cluster?at={_z(t)}", headers=viewer)
        assert answer.status_code == 200
        assert answer.get_json() == expected[t]
    # web01 and web02 still show, from the boundary's snapshot; staleness evaluated then.
    names = [s["name"] for s in expected[times[1]]["servers"]]
    assert names == ["web01", "web02"]
    assert client.get("/api/v1/cluster?position=3", headers=viewer).get_json() == at_three

    for query in (
        f"at={_z(before - timedelta(seconds=1))}",
        "at=2026-11-27T10:05:00Z",
        "position=2",
    ):
        gone = client.get(f"/api/v1/cluster?{query}", headers=viewer)
        assert gone.status_code == 410, query
        assert gone.mimetype == "application/problem+json"
        problem = gone.get_json()
        assert problem["archive"] == PATH
        assert problem["boundary"] == "2026-11-27T10:15:00+00:00"
        assert "archived history" in problem["detail"]
        assert "2026-11-27 10:15:00 UTC" in problem["detail"]


def test_a_time_in_the_future_is_refused(client, tokens, post, clock):
    post(heartbeat())
    later = clock() + timedelta(seconds=1)
    response = client.get(f"/api/v1/cluster?at={_z(later)}", headers=tokens["viewer"])
    assert response.status_code == 422
    assert response.mimetype == "application/problem+json"
    problem = response.get_json()
    assert problem["errors"]["at"] == [
        "2026-11-27 10:00:01 UTC is in the future: it is 2026-11-27 10:00:00 UTC by our clock"
    ]
    now = client.get(f"/api/v1/cluster?at={_z(clock())}", headers=tokens["viewer"])
    assert now.status_code == 200


def test_a_time_before_the_log_is_a_sentence(client, tokens, post):
    post(heartbeat())
    response = client.get("/api/v1/cluster?at=2026-11-27T09:59:59.5Z", headers=tokens["viewer"])
    assert response.status_code == 422
    assert response.get_json()["errors"]["at"] == [
        "2026-11-27 09:59:59.500 UTC is before the log, whose first event was recorded at"
        " 2026-11-27 10:00:00 UTC"
    ]


def test_events_after_an_archived_position_start_at_the_oldest_kept(
    app, client, tokens, post, clock
):
    _three_servers(post, clock)
    archive_before(app.extensions["clustermon"].store, clock() - timedelta(minutes=15), PATH)
    for after in (0, 1):
        page = client.get(f"/api/v1/events?after={after}&limit=10", headers=tokens["viewer"])
        assert page.status_code == 200
        body = page.get_json()
        assert [e["position"] for e in body["events"]] == [3]
        assert body["next_after"] == 3


def test_audit_reads_into_archived_history_are_410(app, client, tokens, post, clock):
    _three_servers(post, clock)
    archive_before(app.extensions["clustermon"].store, clock() - timedelta(minutes=15), PATH)
    viewer = tokens["viewer"]
    component = "/api/v1/servers/web01/components/service"
    for path in (f"{component}/explain?at=2026-11-27T10:05:00Z", f"{component}/history"):
        gone = client.get(path, headers=viewer)
        assert gone.status_code == 410, path
        assert gone.mimetype == "application/problem+json"
        assert gone.get_json()["archive"] == PATH
    kept = client.get("/api/v1/servers/web03/components/service/history", headers=viewer)
    assert kept.status_code == 200
