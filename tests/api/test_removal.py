from api.services import services
from tests.api.conftest import heartbeat


def test_removing_a_component_records_it(app, client, tokens, post):
    post(heartbeat(component="web"))
    response = client.delete("/api/v1/servers/web01/components/web", headers=tokens["admin"])
    assert response.status_code == 200
    last = services(app).store.read_all(0, None)[-1]
    assert last.type == "ComponentRemoved"
    assert last.stream == "web01/web"
    assert last.metadata["actor"] == "admin-1"


def test_removing_twice_or_unknown_is_404(app, client, tokens, post):
    post(heartbeat(component="web"))
    client.delete("/api/v1/servers/web01/components/web", headers=tokens["admin"])
    for path in (
        "/api/v1/servers/web01/components/web",  # already removed
        "/api/v1/servers/web01/components/service",  # never seen
        "/api/v1/servers/nobody/components/web",
        "/api/v1/servers/web01/components/database",  # not a component kind
        "/api/v1/servers/a%00b/components/web",  # no server can have this name (was a 500)
    ):
        response = client.delete(path, headers=tokens["admin"])
        assert response.status_code == 404, path
        assert response.mimetype == "application/problem+json"
    history = client.get("/api/v1/servers/a%00b/components/web/history", headers=tokens["viewer"])
    assert history.status_code == 404
    assert [e.type for e in services(app).store.read_all(0, None)] == [
        "HeartbeatRecorded",
        "ComponentRemoved",
    ]


def test_a_heartbeat_after_removal_brings_it_back_and_it_can_be_removed_again(
    app, client, tokens, post
):
    post(heartbeat(component="web"))
    client.delete("/api/v1/servers/web01/components/web", headers=tokens["admin"])
    post(heartbeat(component="web"))
    again = client.delete("/api/v1/servers/web01/components/web", headers=tokens["admin"])
    assert again.status_code == 200
