import uuid

import pytest

from api.heartbeats import MAX_REQUEST_ID
from api.services import services
from tests.api.conftest import heartbeat


def _log(app):
    return services(app).store.read_all(0, None)


def test_a_single_heartbeat_is_durable_when_answered(app, post):
    response = post(heartbeat())
    assert response.status_code == 202
    body = response.get_json()
    assert body == {"accepted": 1, "duplicates": 0, "last_position": 1}
    [event] = _log(app)
    assert event.type == "HeartbeatRecorded"
    assert event.stream == "web01/service"
    assert event.metadata["actor"] == "agent-1"
    assert event.event.ip == "10.0.0.5"


def test_a_batch_is_one_commit_and_retries_are_duplicates(app, post):
    beats = [heartbeat(server=f"s{i}", event_id=str(uuid.uuid4())) for i in range(50)]
    first = post({"heartbeats": beats})
    assert first.status_code == 202
    assert first.get_json()["accepted"] == 50
    again = post({"heartbeats": [*beats[:10], heartbeat(server="new")]})
    assert again.get_json() == {"accepted": 1, "duplicates": 10, "last_position": 51}
    assert len(_log(app)) == 51


def test_the_same_id_twice_in_one_batch_is_stored_once(app, post):
    event_id = str(uuid.uuid4())
    response = post({"heartbeats": [heartbeat(event_id=event_id), heartbeat(event_id=event_id)]})
    assert response.get_json()["accepted"] == 1
    assert response.get_json()["duplicates"] == 1
    assert len(_log(app)) == 1


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (heartbeat(component="database"), "component"),
        (heartbeat(status="fine"), "status"),
        (heartbeat(verification="maybe"), "verification"),
        (heartbeat(ip="10.0.0.300"), "ip"),
        (heartbeat(ip="fe80::1%eth0"), "ip"),  # a zone is the sender's own interface
        (heartbeat(encryption_key_fingerprint="abc123"), "encryption_key_fingerprint"),
        (heartbeat(encryption_key_fingerprint="Q" * 64), "encryption_key_fingerprint"),
        (heartbeat(encryption_key_fingerprint="ab" * 32 + "\n"), "encryption_key_fingerprint"),
        (heartbeat(encryption_key="s3cr3t-key-material"), "encryption_key"),
        (heartbeat(sent_at="yesterday"), "sent_at"),
        (heartbeat(sent_at="2026-11-27T10:00:00"), "sent_at"),  # no timezone
        (heartbeat(server="a/b"), "server"),
        (heartbeat(server=""), "server"),
        (heartbeat(server="web01\n"), "server"),
        (heartbeat(unexpected=1), "unexpected"),
        (heartbeat(event_id="not-a-uuid"), "event_id"),
        ({k: v for k, v in heartbeat().items() if k != "sent_at"}, "sent_at"),
        (heartbeat(os_version=24.04), "os_version"),
        # Values PostgreSQL would refuse or could not give back: NUL in text, a UTC offset of
        # 16 hours or more, a moment outside 1970-9000 in UTC (year 1, once in UTC: before
        # year 1, which then broke every read of the log).
        (heartbeat(message="a\x00b"), "message"),
        (heartbeat(os="Ubuntu\x00"), "os"),
        (heartbeat(product="\x00"), "product"),
        (heartbeat(sent_at="2026-11-27T10:00:00+16:00"), "sent_at"),
        (heartbeat(sent_at="0001-01-01T00:00:00+14:00"), "sent_at"),
        (heartbeat(sent_at="9999-12-31T23:59:59-23:59"), "sent_at"),
        (heartbeat(sent_at="1969-12-31T23:59:59Z"), "sent_at"),
        (heartbeat(sent_at="2026-11-27T10:00:00+00:59:59"), "sent_at"),  # stored as "+00:60"
        (heartbeat(sent_at="2026-11-27T10:00:00+00:00:01"), "sent_at"),  # stored a second off
    ],
)
def test_bad_heartbeats_get_field_errors_and_change_nothing(app, post, body, field):
    response = post(body)
    assert response.status_code == 422
    assert response.mimetype == "application/problem+json"
    problem = response.get_json()
    assert problem["status"] == 422
    assert field in problem["errors"]
    assert _log(app) == []


@pytest.mark.parametrize(
    "name", ["encryption_key", "EncryptionKey", "machineKey", "decryption-key", "client_secret"]
)
def test_a_field_that_may_carry_the_key_itself_says_what_to_send(app, post, name):
    response = post({**heartbeat(), name: "s3cr3t-key-material"})
    assert response.status_code == 422
    message = " ".join(response.get_json()["errors"][name])
    assert "raw encryption keys are never accepted" in message
    assert "encryption_key_fingerprint" in message
    assert _log(app) == []


@pytest.mark.parametrize("name", ["monkey", "ssh_host_key", "keyboard"])
def test_other_unknown_fields_are_just_unknown(app, post, name):
    response = post({**heartbeat(), name: "x"})
    assert response.status_code == 422
    assert response.get_json()["errors"][name] == ["Unknown field."]
    assert _log(app) == []


def test_one_bad_item_rejects_the_whole_batch(app, post):
    beats = [heartbeat(server=f"s{i}") for i in range(5)] + [heartbeat(status="???")]
    response = post({"heartbeats": beats})
    assert response.status_code == 422
    assert "5" in response.get_json()["errors"]["heartbeats"]
    assert _log(app) == []


@pytest.mark.parametrize("size", [0, 1001])
def test_batch_size_limits(app, post, size):
    response = post({"heartbeats": [heartbeat(server=f"s{i}") for i in range(size)]})
    assert response.status_code == 422
    assert "heartbeats" in response.get_json()["errors"]
    assert _log(app) == []


def test_bad_json_and_wrong_media_type(app, client, tokens):
    bad = client.post(
        "/api/v1/heartbeats",
        data=b"{not json",
        headers={**tokens["agent"], "Content-Type": "application/json"},
    )
    assert bad.status_code == 400
    assert bad.mimetype == "application/problem+json"
    text = client.post("/api/v1/heartbeats", data=b"hello", headers=tokens["agent"])
    assert text.status_code == 415
    for body in (b"[]", b"42", b"null"):
        odd = client.post(
            "/api/v1/heartbeats",
            data=body,
            headers={**tokens["agent"], "Content-Type": "application/json"},
        )
        assert odd.status_code == 422, body
        assert odd.mimetype == "application/problem+json"
    assert _log(app) == []


def test_oversized_bodies_are_refused(app, client, tokens):
    huge = b'{"heartbeats": [' + b'"x",' * 1_000_000 + b'"x"]}'
    response = client.post(
        "/api/v1/heartbeats",
        data=huge,
        headers={**tokens["agent"], "Content-Type": "application/json"},
    )
    assert response.status_code == 413
    assert response.mimetype == "application/problem+json"
    assert _log(app) == []


def test_heartbeat_after_a_timeout_records_the_recovery(app, post, clock):
    post(heartbeat())
    clock.advance(minutes=10)  # past the 5-minute stale timeout, no sweep ran
    response = post(heartbeat())
    assert response.status_code == 202
    types = [e.type for e in _log(app)]
    assert types == [
        "HeartbeatRecorded",
        "ComponentTimedOut",
        "ComponentRecovered",
        "HeartbeatRecorded",
    ]
    timeout, recovery = _log(app)[1].event, _log(app)[2].event
    assert timeout.detector == "ingest"
    assert timeout.expired_at == _log(app)[0].recorded_at.replace(minute=5)
    assert recovery.outage_seconds == 300.0


def test_a_heartbeat_in_time_records_no_outage(app, post, clock):
    post(heartbeat())
    clock.advance(minutes=5)  # exactly at the deadline: still current
    post(heartbeat())
    assert [e.type for e in _log(app)] == ["HeartbeatRecorded", "HeartbeatRecorded"]


def test_the_request_id_is_kept_readable_and_bounded(app, client, tokens):
    # WSGI hands header bytes over as Latin-1: "é" sent in UTF-8 came back as "Ã©"; and the
    # id is copied into every event, so a 7,000-character one is cut to MAX_REQUEST_ID.
    for request_id, kept in (
        ("réseau-42".encode().decode("latin-1"), "réseau-42"),
        ("x" * 7000, "x" * MAX_REQUEST_ID),
    ):
        response = client.post(
            "/api/v1/heartbeats",
            json=heartbeat(),
            headers={**tokens["agent"], "X-Request-ID": request_id},
        )
        assert response.status_code == 202
        assert _log(app)[-1].metadata["correlation_id"] == kept
