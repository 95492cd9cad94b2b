"""`clustermon serve` as an operator starts it."""

from __future__ import annotations

import http.client
import subprocess
import sys
import urllib.request

import orjson
import pytest

from tests.api.conftest import heartbeat

pytestmark = [pytest.mark.postgres, pytest.mark.slow]


def test_a_second_server_on_a_taken_port_refuses_to_start_and_the_first_keeps_serving(server):
    # Each worker binds with SO_REUSEPORT, which would let a second server share the port and
    # silently take part of the traffic: serve must refuse instead, before touching the database.
    server.cli("db", "upgrade")
    server.start()
    second = subprocess.run(
        [sys.executable, "-m", "cli", "serve"],
        env=server.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert second.returncode != 0
    assert f"cannot serve on 127.0.0.1:{server.port}" in second.stderr
    assert "in use" in second.stderr
    for _ in range(20):  # the first server keeps answering
        with urllib.request.urlopen(server.url + "/healthz", timeout=5) as response:
            assert response.status == 200
    assert server.process.poll() is None


def test_serve_leaves_no_gunicorn_control_socket(server, tmp_path):
    # One path per user, which every gunicorn of that user would take over from the others.
    server.env["HOME"] = str(tmp_path)
    server.cli("db", "upgrade")
    server.start()
    with urllib.request.urlopen(server.url + "/healthz", timeout=5) as response:
        assert response.status == 200
    assert not (tmp_path / ".gunicorn").exists()


def test_many_dashboards_stream_live_while_agents_send_heartbeats(server):
    server.cli("db", "upgrade")
    viewer = server.cli("token", "create", "--role", "viewer", "--name", "dashboards")
    agent = server.cli("token", "create", "--role", "agent", "--name", "agent")
    server.start()
    # 24 live streams: three times what two threaded workers of 8 threads let streams hold
    # (half their threads); on PostgreSQL serve's workers are gevent workers.
    streams = []
    for _ in range(24):
        connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=20)
        connection.request(
            "GET", "/api/v1/events/stream", headers={"Authorization": f"Bearer {viewer}"}
        )
        response = connection.getresponse()
        assert response.status == 200
        streams.append((connection, response))
    post = urllib.request.Request(
        server.url + "/api/v1/heartbeats",
        data=orjson.dumps(heartbeat(server="web07")),
        headers={"Authorization": f"Bearer {agent}", "Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(post, timeout=10) as response:
        assert response.status == 202
    for connection, response in streams:  # every dashboard sees it
        lines = iter(response.readline, b"")
        next(line for line in lines if line.startswith(b"event: HeartbeatRecorded"))
        data = orjson.loads(next(lines).removeprefix(b"data: "))
        assert data["data"]["server"] == "web07"
        connection.close()


def _chunked_heartbeats(server, agent: str) -> http.client.HTTPConnection:
    """A POST /heartbeats whose head is sent, announcing a chunked body: the caller sends it."""
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=20)
    connection.putrequest("POST", "/api/v1/heartbeats")
    connection.putheader("Authorization", f"Bearer {agent}")
    connection.putheader("Content-Type", "application/json")
    connection.putheader("Transfer-Encoding", "chunked")
    connection.endheaders()
    return connection


def test_a_malformed_chunked_body_is_a_400_problem_and_records_nothing(server):
    # gunicorn reads a chunked body only when the app asks for it: a bad chunk size surfaced
    # inside the view as an unexpected error (500).
    server.cli("db", "upgrade")
    agent = server.cli("token", "create", "--role", "agent", "--name", "agent")
    viewer = server.cli("token", "create", "--role", "viewer", "--name", "viewer")
    server.start()
    connection = _chunked_heartbeats(server, agent)
    connection.send(b"zz\r\nabc\r\n0\r\n\r\n")
    response = connection.getresponse()
    assert response.status == 400
    assert response.getheader("Content-Type") == "application/problem+json"
    assert "could not be read" in orjson.loads(response.read())["detail"]
    connection.close()
    log = urllib.request.Request(
        server.url + "/api/v1/events", headers={"Authorization": f"Bearer {viewer}"}
    )
    with urllib.request.urlopen(log, timeout=5) as response:
        assert orjson.loads(response.read())["events"] == []


@pytest.mark.parametrize("size", [3 * 1024 * 1024, 2 * 1024 * 1024])
def test_a_chunked_body_beyond_the_limit_is_a_413_problem(server, size):
    # A chunked body has no Content-Length to refuse up front: it was cut at the 2 MiB limit
    # and the cut JSON answered 400, as if the agent had sent broken JSON. A body of exactly
    # the limit is not too large: it is only bad JSON here.
    server.cli("db", "upgrade")
    agent = server.cli("token", "create", "--role", "agent", "--name", "agent")
    server.start()
    connection = _chunked_heartbeats(server, agent)
    chunk = b" " * (512 * 1024)
    for _ in range(size // len(chunk)):
        connection.send(b"%x\r\n%s\r\n" % (len(chunk), chunk))
    connection.send(b"0\r\n\r\n")
    response = connection.getresponse()
    assert response.getheader("Content-Type") == "application/problem+json"
    assert response.status == (413 if size > 2 * 1024 * 1024 else 400)
    connection.close()
