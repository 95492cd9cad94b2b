"""The audit and report endpoints over the scripted history (see
tests/integration/test_audit_history.py), on both databases."""

from __future__ import annotations

import csv
import io
from urllib.parse import quote

import pytest

from api.services import services
from eventstore.store import EventStore
from tests.integration.test_audit_history import at, script_history


@pytest.fixture
def history(app, clock):
    return script_history(services(app).store, clock)


def _q(**params) -> str:
    return "&".join(
        f"{k}={quote(v.isoformat() if hasattr(v, 'isoformat') else str(v))}"
        for k, v in params.items()
    )


def _get(client, tokens, path, role="viewer", **headers):
    return client.get(path, headers={**tokens[role], **headers})


def _problem(response, status, field=None):
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/problem+json"
    body = response.get_json()
    assert body["status"] == status
    if field is not None:
        assert field in body["errors"], body
    return body


# --- episodes ---------------------------------------------------------------------------------


def test_outages_list_the_episodes_with_their_configuration_and_sources(client, tokens, history):
    response = _get(client, tokens, f"/api/v1/audit/outages?{_q(since=at(0), until=at(45))}")
    assert response.status_code == 200
    body = response.get_json()
    assert [
        (o["server"], o["start"], o["end"], o["duration_seconds"]) for o in body["outages"]
    ] == [
        ("a", "2026-11-27T10:15:00+00:00", "2026-11-27T10:20:00+00:00", 300),
        ("a", "2026-11-27T10:35:00+00:00", "2026-11-27T10:41:00+00:00", 360),
        ("b", "2026-11-27T10:35:30+00:00", "2026-11-27T10:40:00+00:00", 270),
    ]
    first = body["outages"][0]
    assert first["cause"] == "timeout" and first["detector"] == "sweep-test"
    assert first["configuration"] == {"version": 0, "timeout_seconds": 300, "set_by_position": None}
    assert first["last_heartbeat"]["at"] == "2026-11-27T10:10:00+00:00"
    # an auditor can fetch the events it was built from
    events = _get(client, tokens, f"/api/v1/events?after={first['positions'][0] - 1}&limit=1000")
    by_position = {e["position"]: e["type"] for e in events.get_json()["events"]}
    assert [by_position[p] for p in first["positions"]] == [
        "HeartbeatRecorded",
        "ComponentTimedOut",
        "ComponentRecovered",
    ]
    assert body["summary"]["cluster_outages"] == 1


def test_failovers_and_the_cluster_outage(client, tokens, history):
    body = _get(
        client, tokens, f"/api/v1/audit/failovers?{_q(since=at(0), until=at(45))}"
    ).get_json()
    assert [(f["server"], f["at"], f["taken_over_by"]) for f in body["failovers"]] == [
        ("a", "2026-11-27T10:15:00+00:00", ["b"]),
        ("a", "2026-11-27T10:35:00+00:00", ["b"]),
    ]
    [outage] = body["cluster_outages"]
    assert (outage["start"], outage["end"], outage["duration_seconds"]) == (
        "2026-11-27T10:35:30+00:00",
        "2026-11-27T10:40:00+00:00",
        270,
    )
    assert {c["server"] for c in outage["components"]} == {"a", "b"}
    assert outage["positions"]


def test_the_period_filters_episodes(client, tokens, history):
    body = _get(
        client, tokens, f"/api/v1/audit/failovers?{_q(since=at(30), until=at(45))}"
    ).get_json()
    assert [f["at"] for f in body["failovers"]] == ["2026-11-27T10:35:00+00:00"]


def test_the_default_period_is_the_last_day(client, tokens, history):
    body = _get(client, tokens, "/api/v1/audit/outages").get_json()
    assert body["period"]["until"] == "2026-11-27T10:45:00+00:00"
    assert body["period"]["since"] == "2026-11-26T10:45:00+00:00"
    assert len(body["outages"]) == 3


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("since=2026-11-27T10:00:00", "since"),  # no zone
        ("since=yesterday", "since"),
        ("until=0001-01-01T00:00:00Z", "until"),
        ("colour=blue", "colour"),
    ],
)
def test_bad_periods_are_422_problems(client, tokens, query, field):
    _problem(_get(client, tokens, f"/api/v1/audit/outages?{query}"), 422, field)
    _problem(_get(client, tokens, f"/api/v1/audit/failovers?{query}"), 422, field)


def test_audit_needs_a_viewer_token(client, tokens):
    assert client.get("/api/v1/audit/outages").status_code == 401
    assert _get(client, tokens, "/api/v1/audit/failovers", role="agent").status_code == 403
    assert _get(client, tokens, "/api/v1/audit/failovers", role="admin").status_code == 200


# --- what-if ----------------------------------------------------------------------------------


def test_what_if_a_longer_timeout_shows_the_blips_disappear(client, tokens, history):
    query = _q(since=at(0), until=at(45), stale_timeout_seconds=900)
    body = _get(client, tokens, f"/api/v1/audit/what-if?{query}").get_json()
    assert body["settings"] == {
        "actual": {"stale_timeout_seconds": 300, "web_stale_timeout_seconds": 86400},
        "what_if": {"stale_timeout_seconds": 900},
    }
    assert (body["summary"]["actual"]["episodes"], body["summary"]["what_if"]["episodes"]) == (3, 0)
    assert len(body["actual"]["failovers"]) == 2 and body["what_if"]["failovers"] == []
    a = next(c for c in body["components"] if c["server"] == "a")
    assert a == {
        "server": "a",
        "component": "service",
        "actual": {"episodes": 2, "outage_seconds": 660},
        "what_if": {"episodes": 0, "outage_seconds": 0},
    }


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("stale_timeout_seconds=0", "stale_timeout_seconds"),
        ("stale_timeout_seconds=2m", "stale_timeout_seconds"),
        ("stale_timeout_seconds=999999999", "stale_timeout_seconds"),
        ("web_stale_timeout_seconds=-5", "web_stale_timeout_seconds"),
    ],
)
def test_what_if_validates_its_settings(client, tokens, query, field):
    _problem(_get(client, tokens, f"/api/v1/audit/what-if?{query}"), 422, field)


# --- explain ----------------------------------------------------------------------------------


def test_explain_a_stale_component(client, tokens, history):
    body = _get(
        client, tokens, f"/api/v1/servers/a/components/service/explain?{_q(at=at(17))}"
    ).get_json()
    assert body["state"] == "stale"
    assert body["stale_since"] == "2026-11-27T10:15:00+00:00"
    assert body["last_heartbeat"]["at"] == "2026-11-27T10:10:00+00:00"
    assert body["timeout"] == {
        "setting": "stale_timeout_seconds",
        "seconds": 300,
        "configuration_version": 0,
        "set_by": None,
    }
    assert body["timed_out_by"]["detector"] == "sweep-test"
    assert body["timed_out_by"]["expired_at"] == "2026-11-27T10:15:00+00:00"
    assert body["timed_out_by"]["last_heartbeat_position"] == body["last_heartbeat"]["position"]
    assert body["recoveries"] == [] and body["removals"] == []
    assert "recorded by sweep-test" in body["explanation"]
    assert body["health"] == "error"


def test_explain_a_current_component_after_its_recovery(client, tokens, history):
    body = _get(
        client, tokens, f"/api/v1/servers/a/components/service/explain?{_q(at=at(22))}"
    ).get_json()
    assert body["state"] == "current"
    assert body["deadline"] == "2026-11-27T10:27:00+00:00"
    [recovery] = body["recoveries"]
    assert recovery["stale_since"] == "2026-11-27T10:15:00+00:00"
    assert recovery["outage_seconds"] == 300
    assert body["counts"] == {"removals": 0, "recoveries": 1, "timeouts": 1}


def test_explain_names_the_configuration_change_behind_the_timeout(client, tokens, post, clock):
    from tests.api.conftest import heartbeat

    post(heartbeat())
    response = client.put(
        "/api/v1/cluster/configuration",
        json={"stale_timeout_seconds": 120},
        headers=tokens["admin"],
    )
    assert response.status_code == 200
    clock.advance(minutes=3)
    body = _get(client, tokens, "/api/v1/servers/web01/components/service/explain").get_json()
    assert body["state"] == "stale"
    assert body["stale_since"] == "2026-11-27T10:02:00+00:00"
    set_by = body["timeout"]["set_by"]
    assert set_by["actor"] == "admin-1"
    assert set_by["changes"] == {"stale_timeout_seconds": 120}
    assert body["timed_out_by"] is None
    assert "no timeout recorded yet" in body["explanation"]


def test_explain_a_removed_component(client, tokens, post, clock):
    from tests.api.conftest import heartbeat

    post(heartbeat())
    clock.advance(minutes=1)
    assert (
        client.delete(
            "/api/v1/servers/web01/components/service", headers=tokens["admin"]
        ).status_code
        == 200
    )
    body = _get(client, tokens, "/api/v1/servers/web01/components/service/explain").get_json()
    assert body["state"] == "removed"
    assert body["removals"][0]["actor"] == "admin-1"
    assert "removed from the cluster by hand" in body["explanation"]


def test_explain_errors(client, tokens, history):
    path = "/api/v1/servers/{}/components/{}/explain"
    assert _get(client, tokens, path.format("nobody", "service")).status_code == 404
    assert _get(client, tokens, path.format("a", "database")).status_code == 404
    early = _get(client, tokens, path.format("a", "service") + f"?{_q(at=at(-5))}")
    assert early.status_code == 404
    _problem(_get(client, tokens, path.format("a", "service") + "?at=soon"), 422, "at")
    assert _get(client, tokens, path.format("a", "service"), role="agent").status_code == 403


# --- reports ----------------------------------------------------------------------------------


def _create(client, tokens, body, role="admin"):
    return client.post("/api/v1/reports", json=body, headers=tokens[role])


def test_create_then_read_a_report_in_three_formats(client, tokens, history):
    period = {"since": at(0).isoformat(), "until": at(45).isoformat()}
    created = _create(client, tokens, period)
    assert created.status_code == 201, created.get_json()
    report = created.get_json()
    assert created.headers["Location"] == f"/api/v1/reports/{report['id']}"
    assert report["position"] == services(client.application).store.head_position()
    assert report["requested_by"] == "admin-1"
    a = next(
        c
        for c in report["data"]["components"]
        if c["server"] == "a" and c["component"] == "service"
    )
    assert (a["uptime_percent"], a["outages"], a["mttr_seconds"]) == (75.556, 2, 330)

    path = f"/api/v1/reports/{report['id']}"
    as_json = _get(client, tokens, path)
    assert as_json.mimetype == "application/json"
    assert as_json.get_json() == report

    for response in (
        _get(client, tokens, path + "?format=csv"),
        _get(client, tokens, path, Accept="text/csv"),
    ):
        assert response.mimetype == "text/csv"
        rows = list(csv.DictReader(io.StringIO(response.get_data(as_text=True))))
        row = next(r for r in rows if r["server"] == "a" and r["component"] == "service")
        assert row["uptime_percent"] == "75.556"
        assert rows[-1]["scope"] == "cluster" and rows[-1]["cluster_outage_seconds"] == "270.0"

    page = _get(client, tokens, path, Accept="text/html")
    assert page.mimetype == "text/html"
    text = page.get_data(as_text=True)
    assert "<svg" in text and "75.556 %" in text and "<script" not in text

    listed = _get(client, tokens, "/api/v1/reports").get_json()["reports"]
    assert [r["id"] for r in listed] == [report["id"]]


def test_recomputing_through_the_api_gives_the_same_numbers(client, tokens, history, post):
    from tests.api.conftest import heartbeat

    period = {"since": at(0).isoformat(), "until": at(45).isoformat()}
    first = _create(client, tokens, period).get_json()
    post(heartbeat(server="c"))
    second = _create(client, tokens, period).get_json()
    assert second["id"] != first["id"] and second["position"] > first["position"]
    assert second["data"] == first["data"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"since": "2026-11-27T10:00:00Z"}, "until"),
        ({"since": "2026-11-27T10:30:00Z", "until": "2026-11-27T10:00:00Z"}, "until"),
        ({"since": "2026-11-27T10:00:00Z", "until": "2026-11-27T12:00:00Z"}, "until"),  # future
        ({"since": "2026-11-27T10:00:00", "until": "2026-11-27T10:30:00Z"}, "since"),
        ({"since": "2026-11-27T10:00:00Z", "until": "2026-11-27T10:30:00Z", "x": 1}, "x"),
        ({"since": "1900-01-01T00:00:00Z", "until": "2026-11-27T10:30:00Z"}, "since"),
    ],
)
def test_a_rejected_report_request_stores_nothing(client, tokens, body, field):
    _problem(_create(client, tokens, body), 422, field)
    assert _get(client, tokens, "/api/v1/reports").get_json()["reports"] == []


def test_only_admins_create_reports_and_bad_bodies_are_problems(client, tokens):
    period = {"since": at(0).isoformat(), "until": at(45).isoformat()}
    assert _create(client, tokens, period, role="viewer").status_code == 403
    not_json = client.post("/api/v1/reports", data="x", headers=tokens["admin"])
    _problem(not_json, 415)
    assert _get(client, tokens, "/api/v1/reports").get_json()["reports"] == []


def test_report_lookup_errors(client, tokens):
    _problem(_get(client, tokens, "/api/v1/reports/12345"), 404)
    _problem(_get(client, tokens, "/api/v1/reports/99999999999999999999"), 404)
    _problem(_get(client, tokens, "/api/v1/reports/1?format=xml"), 422, "format")
    _problem(_get(client, tokens, "/api/v1/reports?kind=hourly"), 422, "kind")
    _problem(_get(client, tokens, "/api/v1/reports?limit=0"), 422, "limit")


def test_the_report_job_stores_each_period_once(app, clock, history):
    from scheduler.reports_job import run_due_reports

    store: EventStore = services(app).store
    clock.advance(days=1)  # 2026-11-28 10:45: the daily report of the 27th is due
    [daily] = run_due_reports(store, clock())
    assert daily["kind"] == "daily"
    assert daily["period"] == {"since": at(-600), "until": at(24 * 60 - 600)}
    # the scripted one, and the silence after 10:45 (no timeout recorded: no sweep ran)
    outages = daily["data"]["cluster_outages"]
    assert [(o["start"], o["end"]) for o in outages] == [
        ("2026-11-27T10:35:30+00:00", "2026-11-27T10:40:00+00:00"),
        ("2026-11-27T10:50:00+00:00", None),
    ]
    assert daily["data"]["cluster"]["cluster_outage_seconds"] == 270 + 13 * 3600 + 10 * 60
    assert run_due_reports(store, clock()) == []
    # the weekly period (Monday 16th to Monday 23rd) ended before the log began: skipped
    clock.advance(days=3)  # Tuesday 1 December: the week of 23-30 November is due
    stored = run_due_reports(store, clock())
    assert sorted(r["kind"] for r in stored) == ["daily", "weekly"]
    weekly = next(r for r in stored if r["kind"] == "weekly")
    assert weekly["period"]["since"].isoformat() == "2026-11-23T00:00:00+00:00"
    assert weekly["data"]["cluster_outages"][0] == outages[0]
    assert weekly["data"]["cluster"]["failovers"] == daily["data"]["cluster"]["failovers"] == 2
