"""Hostile clients: slow on purpose, against a real `clustermon serve` on SQLite (threads).

The other hostile clients of issue 17 are tested where their endpoint is: HEAD on the stream
and revoked streams in tests/api/test_events.py, invented methods in tests/api/test_meta.py,
concurrent expensive reads in tests/api/test_limits.py."""

from __future__ import annotations

import os
import socket
import threading
import time
import urllib.request

import orjson
import pytest

from tests.api.conftest import heartbeat
from tests.e2e.conftest import Server

pytestmark = pytest.mark.slow


@pytest.fixture
def sqlite_server(tmp_path):
    server = Server(f"sqlite:///{tmp_path / 'clustermon.db'}", tmp_path)
    server.env["TMPDIR"] = str(tmp_path)  # where serve makes its metrics folder
    server.cli("db", "upgrade")
    yield server
    server.kill()


def _post_heartbeat(server: Server, agent: str, name: str) -> float:
    """Seconds until a heartbeat is acknowledged."""
    request = urllib.request.Request(
        server.url + "/api/v1/heartbeats",
        data=orjson.dumps(heartbeat(server=name)),
        headers={"Authorization": f"Bearer {agent}", "Content-Type": "application/json"},
        method="POST",
    )
    started = time.monotonic()
    with urllib.request.urlopen(request, timeout=30) as response:
        assert response.status == 202
    return time.monotonic() - started


def test_slow_headers_do_not_hold_the_threads_heartbeats_need(sqlite_server):
    # 40 connections that send a request line, then one header line a second: more than the
    # 2 workers x 8 threads, which each used to keep, so that nothing else was served.
    server = sqlite_server
    agent = server.cli("token", "create", "--role", "agent", "--name", "agent")
    server.start()
    stop = threading.Event()
    closed = []

    def slow_client() -> None:
        with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
            sock.sendall(b"GET /api/v1/cluster HTTP/1.1\r\nHost: x\r\n")
            for n in range(60):
                if stop.wait(1):
                    return
                try:
                    sock.sendall(f"X-Slow-{n}: 1\r\n".encode())
                except OSError:  # the server closed it
                    closed.append(True)
                    return

    clients = [threading.Thread(target=slow_client, daemon=True) for _ in range(40)]
    for client in clients:
        client.start()
    try:
        time.sleep(2)  # let the slow clients take whatever they can take
        latencies = [_post_heartbeat(server, agent, f"web{n:02}") for n in range(20)]
        assert max(latencies) < 2, latencies
        for client in clients:  # a trickling request is closed, not kept for a minute
            client.join(timeout=30)
        assert len(closed) == len(clients)
    finally:
        stop.set()


def test_a_request_that_arrives_in_pieces_is_served(sqlite_server):
    server = sqlite_server
    agent = server.cli("token", "create", "--role", "agent", "--name", "agent")
    server.start()
    body = orjson.dumps(heartbeat(server="web01"))
    head = (
        "POST /api/v1/heartbeats HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Authorization: Bearer {agent}\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        for piece in (head[:10], head[10:50], head[50:], body[:5], body[5:]):
            sock.sendall(piece)
            time.sleep(0.2)  # each piece on its own: the server must wait for the rest
        answer = sock.recv(65536)
        assert answer.startswith(b"HTTP/1.1 202"), answer
        # the same connection, kept alive, serves a second request sent at once
        sock.sendall(head + body)
        assert sock.recv(65536).startswith(b"HTTP/1.1 202")


def test_serve_removes_the_metrics_folder_it_made(sqlite_server, tmp_path):
    server = sqlite_server
    server.start()
    made = [p for p in os.listdir(tmp_path) if p.startswith("clustermon-metrics-")]
    assert len(made) == 1
    server.stop()
    assert not (tmp_path / made[0]).exists()


def test_clients_that_never_close_do_not_stall_the_worker(sqlite_server):
    # Answered with "Connection: close", a client that keeps its socket open made gunicorn's
    # graceful close wait up to 2 s on the worker's main loop, every connection of the worker
    # waiting meanwhile (an HTTP library keeping a refused request's socket does this).
    server = sqlite_server
    agent = server.cli("token", "create", "--role", "agent", "--name", "agent")
    server.start()
    held = []
    try:
        for _ in range(10):
            sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            held.append(sock)  # never read, never closed
        latencies = [_post_heartbeat(server, agent, f"web{n:02}") for n in range(10)]
        assert max(latencies) < 1, latencies
        for sock in held:  # each was answered, and closed by the server within its linger
            sock.settimeout(10)
            answer = b"".join(iter(lambda s=sock: s.recv(65536), b""))
            assert answer.startswith(b"HTTP/1.1 200"), answer
    finally:
        for sock in held:
            sock.close()
