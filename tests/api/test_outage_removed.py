"""Removed means ended (issue #20, item 6), as `/api/v1/audit/outages` shows it: the outage of a
component removed while stale ends at the removal and its duration stops growing; on both
databases."""

from __future__ import annotations

from datetime import timedelta

from api.services import services
from scheduler.sweep import emit_timeouts
from tests.api.conftest import heartbeat


def _outages(client, tokens, since, until):
    query = f"since={since.isoformat()}&until={until.isoformat()}".replace("+00:00", "Z")
    response = client.get(f"/api/v1/audit/outages?{query}", headers=tokens["viewer"])
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()


def test_the_outage_of_a_removed_component_is_over(app, client, tokens, post, clock):
    start = clock.now
    post({"heartbeats": [heartbeat(server="a"), heartbeat(server="b")]})
    clock.advance(minutes=5, seconds=1)
    post(heartbeat(server="b", sent_at=clock.now.isoformat()))
    assert len(emit_timeouts(services(app).store, clock.now)) == 1  # a, expired at 10:05
    clock.advance(minutes=2)
    removed_at = clock.now
    response = client.delete("/api/v1/servers/a/components/service", headers=tokens["admin"])
    assert response.status_code == 200

    for later in (timedelta(minutes=1), timedelta(hours=3)):
        clock.advance(seconds=later.total_seconds())
        body = _outages(client, tokens, start, clock.now)
        [outage] = [o for o in body["outages"] if o["server"] == "a"]  # b goes quiet too
        assert outage["ongoing"] is False
        assert outage["end"] == removed_at.isoformat()
        assert (outage["cause"], outage["end_cause"]) == ("timeout", "removed")
        assert outage["duration_seconds"] == 121  # 10:05:00 to 10:07:01, whenever asked
