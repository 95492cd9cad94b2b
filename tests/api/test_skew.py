"""A clock that is off is a finding (issue #20, item 7), as an API user sees it: in the live
view, in time travel (`?at=`, the same fold and rules), in the component's history and in its
explanation; on both databases."""

from __future__ import annotations

from datetime import timedelta

from tests.api.conftest import heartbeat

BEHIND = "its clock is 10 days behind ours"


def _get(client, tokens, path):
    response = client.get(path, headers=tokens["viewer"])
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()


def _service(view, server="web01"):
    [row] = [s for s in view["servers"] if s["name"] == server]
    [component] = [c for c in row["components"] if c["name"] == "service"]
    return row, component


def _iso(moment):
    return moment.isoformat().replace("+00:00", "Z")


def test_a_heartbeat_sent_ten_days_ago_by_its_clock_is_a_warning_live_and_in_the_past(
    client, tokens, post, clock
):
    post(heartbeat(sent_at=_iso(clock.now - timedelta(days=10))))
    skewed_at = clock.now
    row, service = _service(_get(client, tokens, "/api/v1/cluster"))
    assert service["heartbeat"]["state"] == "current"
    assert service["heartbeat"]["sender_clock_skew_seconds"] == 10 * 86400
    assert (service["health"], service["reasons"]) == ("warning", [BEHIND])
    assert (row["health"], row["reasons"]) == ("warning", [f"service: {BEHIND}"])

    clock.advance(seconds=30)
    post(heartbeat(sent_at=_iso(clock.now)))  # its clock was set right
    _, now = _service(_get(client, tokens, "/api/v1/cluster"))
    assert (now["health"], now["reasons"]) == ("ok", [])

    # The view as it was then says what the live view said then.
    _, then = _service(_get(client, tokens, f"/api/v1/cluster?at={_iso(skewed_at)}"))
    assert (then["health"], then["reasons"]) == ("warning", [BEHIND])
    _, by_position = _service(_get(client, tokens, "/api/v1/cluster?position=1"))
    assert by_position["reasons"] == [BEHIND]


def test_a_clock_within_the_limit_is_no_finding(client, tokens, post, clock):
    post(
        {
            "heartbeats": [
                heartbeat(server="slow", sent_at=_iso(clock.now - timedelta(seconds=59))),
                heartbeat(server="fast", sent_at=_iso(clock.now + timedelta(seconds=59))),
            ]
        }
    )
    view = _get(client, tokens, "/api/v1/cluster")
    assert [(s["name"], s["health"], s["reasons"]) for s in view["servers"]] == [
        ("fast", "ok", []),
        ("slow", "ok", []),
    ]


def test_the_limit_is_the_heartbeat_frequency_when_it_is_longer(client, tokens, post, clock):
    post(heartbeat(sent_at=_iso(clock.now + timedelta(minutes=3))))
    _, ahead = _service(_get(client, tokens, "/api/v1/cluster"))
    assert ahead["reasons"] == ["its clock is 3 min ahead of ours"]
    response = client.put(
        "/api/v1/cluster/configuration",
        json={"heartbeat_frequency_seconds": 240, "stale_timeout_seconds": 600},
        headers=tokens["admin"],
    )
    assert response.status_code == 200, response.get_json()
    _, within = _service(_get(client, tokens, "/api/v1/cluster"))
    assert (within["health"], within["reasons"]) == ("ok", [])


def test_history_and_explanation_name_the_skew(client, tokens, post, clock):
    post(heartbeat(sent_at=_iso(clock.now)))
    clock.advance(seconds=30)
    post(heartbeat(sent_at=_iso(clock.now - timedelta(days=10))))
    clock.advance(seconds=30)
    post(heartbeat(sent_at=_iso(clock.now - timedelta(days=10, seconds=2))))  # no news
    clock.advance(seconds=30)
    post(heartbeat(sent_at=_iso(clock.now)))
    path = "/api/v1/servers/web01/components/service"
    transitions = _get(client, tokens, f"{path}/history")["transitions"]
    assert [(t["reason"], t["health"]) for t in transitions] == [
        ("first heartbeat", "ok"),
        (BEHIND, "warning"),
        ("its clock agrees with ours again", "ok"),
    ]
    at = _iso(clock.now - timedelta(seconds=31))
    why = _get(client, tokens, f"{path}/explain?at={at}")
    assert (why["health"], why["reasons"]) == ("warning", [BEHIND])
    sent = "its last heartbeat says it was sent at 2026-11-17T10:00:30"
    assert f"; {BEHIND}: {sent}" in why["explanation"]
