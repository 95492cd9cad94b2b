"""Requests that gunicorn refuses before the app sees them are answered as problem+json too."""

from __future__ import annotations

import socket

import orjson
import pytest

from tests.e2e.conftest import Server

pytestmark = pytest.mark.slow

MALFORMED = {
    "a request line that is not HTTP": (b"GARBAGE\r\n\r\n", 400),
    "a request line beyond gunicorn's limit": (
        b"GET /" + b"a" * 5000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
        414,
    ),
    "more header fields than gunicorn's limit": (
        b"GET /healthz HTTP/1.1\r\n" + b"".join(b"X-%d: 1\r\n" % i for i in range(150)) + b"\r\n",
        431,
    ),
}


def exchange(port: int, request: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send raw bytes; the status, headers and body of the answer (read until close)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines)
    return int(status_line.split()[1]), {k.lower(): v for k, v in headers.items()}, body


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def served(request, tmp_path):
    """`clustermon serve` on each database: gevent workers on PostgreSQL, threads on SQLite."""
    if request.param == "postgresql":
        url = request.getfixturevalue("pg_database_url")
    else:
        url = f"sqlite:///{tmp_path / 'clustermon.db'}"
    server = Server(url, tmp_path)
    server.start()
    yield server
    server.kill()


@pytest.mark.parametrize("case", MALFORMED)
def test_a_request_gunicorn_cannot_parse_is_answered_as_a_problem(served, case):
    request, expected = MALFORMED[case]
    status, headers, body = exchange(served.port, request)
    assert status == expected
    assert headers["content-type"] == "application/problem+json"
    assert headers["x-content-type-options"] == "nosniff"
    assert "frame-ancestors 'none'" in headers["content-security-policy"]
    assert int(headers["content-length"]) == len(body)
    problem = orjson.loads(body)
    assert problem["status"] == expected
    assert problem["type"].startswith("https://clustermon.dev/problems/")
    assert problem["title"] and problem["detail"]
