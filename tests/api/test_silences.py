"""Maintenance windows over HTTP (API.md v1.1, "Notifications") on both databases: creating
one for a duration or up to a time, listing active and future ones, ending one early, and the
refusals."""

from __future__ import annotations

from datetime import timedelta

import pytest

from api.services import services

URL = "/api/v1/silences"


def _create(client, tokens, body, role="admin"):
    return client.post(URL, json=body, headers=tokens[role])


def _listed(client, tokens, query=""):
    response = client.get(URL + query, headers=tokens["viewer"])
    assert response.status_code == 200
    return response.get_json()["silences"]


def test_a_silence_for_a_duration_starts_now_and_is_listed(client, tokens, clock):
    body = {"servers": ["web01"], "duration_seconds": 3600, "comment": "patching web01"}
    response = _create(client, tokens, body)
    assert response.status_code == 201
    created = response.get_json()
    assert len(created["id"]) == 32 and int(created["id"], 16) >= 0
    assert created == {
        "id": created["id"],
        "servers": ["web01"],
        "components": None,
        "starts_at": clock.now.isoformat(),
        "ends_at": (clock.now + timedelta(hours=1)).isoformat(),
        "comment": "patching web01",
    }
    assert _listed(client, tokens) == [created]


def test_the_event_records_the_window_and_its_actor(app, client, tokens, clock):
    starts = clock.now + timedelta(hours=2)
    body = {
        "components": ["service"],
        "starts_at": starts.isoformat(),
        "ends_at": (starts + timedelta(minutes=30)).isoformat(),
    }
    created = _create(client, tokens, body).get_json()
    [event] = [e for e in services(app).store.read_all(0, None) if e.type == "SilenceCreated"]
    assert event.stream == f"silence:{created['id']}"
    assert event.metadata["actor"] == "admin-1"
    assert (event.event.starts_at, event.event.servers) == (starts, None)


def test_ended_silences_are_listed_only_with_all(client, tokens, clock):
    short = _create(client, tokens, {"duration_seconds": 60}).get_json()
    long = _create(client, tokens, {"duration_seconds": 7200}).get_json()
    clock.advance(minutes=5)
    assert [s["id"] for s in _listed(client, tokens)] == [long["id"]]
    assert {s["id"] for s in _listed(client, tokens, "?all=true")} == {short["id"], long["id"]}


def test_ending_a_silence_early_records_it_and_a_second_end_is_404(app, client, tokens, clock):
    created = _create(client, tokens, {"duration_seconds": 3600}).get_json()
    clock.advance(minutes=10)
    response = client.delete(f"{URL}/{created['id']}", headers=tokens["admin"])
    assert response.status_code == 200
    answer = response.get_json()
    assert answer["ended"]["ends_at"] == clock.now.isoformat()
    [ended] = [e for e in services(app).store.read_all(0, None) if e.type == "SilenceEnded"]
    assert answer["position"] == ended.position
    assert _listed(client, tokens) == []
    assert client.delete(f"{URL}/{created['id']}", headers=tokens["admin"]).status_code == 404
    assert client.delete(f"{URL}/{'0' * 32}", headers=tokens["admin"]).status_code == 404


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "ends_at"),
        ({"duration_seconds": 60, "ends_at": "2026-11-27T12:00:00+00:00"}, "ends_at"),
        ({"duration_seconds": 5}, "duration_seconds"),
        ({"ends_at": "2026-11-27T09:00:00+00:00"}, "ends_at"),  # already over
        ({"ends_at": "2026-11-27T12:00:00"}, "ends_at"),  # no UTC offset
        ({"duration_seconds": 60, "components": ["database"]}, "components"),
        ({"duration_seconds": 60, "servers": []}, "servers"),
        ({"duration_seconds": 60, "reason": "x"}, "reason"),
    ],
)
def test_a_silence_that_cannot_be_is_refused_with_the_field_named(client, tokens, body, field):
    response = _create(client, tokens, body)
    assert response.status_code == 422
    assert response.mimetype == "application/problem+json"
    assert field in response.get_json()["errors"]
    assert _listed(client, tokens, "?all=true") == []


def test_only_an_admin_creates_or_ends_silences(client, tokens):
    assert _create(client, tokens, {"duration_seconds": 60}, role="viewer").status_code == 403
    created = _create(client, tokens, {"duration_seconds": 60}).get_json()
    assert client.delete(f"{URL}/{created['id']}", headers=tokens["viewer"]).status_code == 403
    assert client.get(URL).status_code == 401
