"""Expensive reads are admitted within limits: per token, per worker process, 429 beyond.

Requests are held in flight by a gate inside the computation (threads and events, no sleeps);
each test releases what it holds."""

from __future__ import annotations

import threading
from urllib.parse import quote

import pytest

from api.limits import expensive_reads
from api.services import services
from api.tokens import create_token
from projections.audit import whatif
from tests.api.conftest import heartbeat

PERIOD = "since=2026-11-27T09:00:00Z&until=2026-11-27T10:00:00Z"
WHAT_IF = f"/api/v1/audit/what-if?stale_timeout_seconds=120&{PERIOD}"
AT = "/api/v1/cluster?at=" + quote("2026-11-27T10:00:00+00:00")


class Gate:
    """Wraps a function so that the first `hold` calls stop inside it until `release()`."""

    def __init__(self, function, hold: int):
        self.function = function
        self.left = hold
        self.entered = threading.Semaphore(0)
        self.opened = threading.Event()
        self.lock = threading.Lock()

    def __call__(self, *args, **kwargs):
        with self.lock:
            held, self.left = self.left > 0, self.left - 1
        if held:
            self.entered.release()
            assert self.opened.wait(30), "the test never released the gate"
        return self.function(*args, **kwargs)

    def wait_entered(self, count: int = 1) -> None:
        for _ in range(count):
            assert self.entered.acquire(timeout=30), "the request never reached the view"

    def release(self) -> None:
        self.opened.set()


@pytest.fixture
def in_flight(app):
    """Start a request in a thread; returns a function that joins it and gives the response."""
    threads = []

    def start(path: str, headers: dict):
        box = {}

        def run():
            box["response"] = app.test_client().get(path, headers=headers)

        thread = threading.Thread(target=run)
        thread.start()
        threads.append(thread)

        def finish():
            thread.join(30)
            assert not thread.is_alive()
            return box["response"]

        return finish

    yield start
    for thread in threads:
        thread.join(30)


@pytest.fixture
def gate(monkeypatch, in_flight):
    # Depends on in_flight so that it is released before in_flight joins the threads it held.
    gates = []

    def install(hold: int = 1) -> Gate:
        g = Gate(whatif.what_if, hold)
        monkeypatch.setattr(whatif, "what_if", g)
        gates.append(g)
        return g

    yield install
    for g in gates:
        g.release()


def _viewer(app, name: str) -> dict:
    svc = services(app)
    return {"Authorization": f"Bearer {create_token(svc.engine, svc.clock, name, 'viewer')}"}


def _too_many(response) -> dict:
    assert response.status_code == 429, response.get_data(as_text=True)
    assert response.mimetype == "application/problem+json"
    assert int(response.headers["Retry-After"]) >= 1
    body = response.get_json()
    assert body["status"] == 429
    assert body["type"].endswith("/too-many-requests")
    return body


@pytest.fixture
def history(post):
    assert post({"heartbeats": [heartbeat("web01"), heartbeat("web02")]}).status_code == 202


def test_a_token_over_its_limit_gets_429_at_once_while_others_go_on(
    app, client, tokens, post, gate, in_flight, history
):
    assert app.config["EXPENSIVE_READS_PER_TOKEN"] == 2
    held = gate(hold=2)
    # the dashboard asks for outages and failovers at once: both go through
    first = [in_flight(WHAT_IF, tokens["viewer"]) for _ in range(2)]
    held.wait_entered(2)

    again = client.get(WHAT_IF, headers=tokens["viewer"])
    assert "this token already runs 2 expensive read(s)" in _too_many(again)["detail"]
    # the cluster at a past time is expensive too: the same token waits for it as well
    _too_many(client.get(AT, headers=tokens["viewer"]))
    # ... but the live view is not, nor is ingest
    assert client.get("/api/v1/cluster", headers=tokens["viewer"]).status_code == 200
    assert post(heartbeat("web03")).status_code == 202
    # another token is not held up by the first one's
    other = client.get(WHAT_IF, headers=_viewer(app, "other-viewer"))
    assert other.status_code == 200, other.get_data(as_text=True)

    held.release()
    assert [finish().status_code for finish in first] == [200, 200]
    assert client.get(WHAT_IF, headers=tokens["viewer"]).status_code == 200


def test_a_worker_takes_at_most_its_share_of_expensive_reads_whoever_asks(
    app, client, gate, in_flight, history
):
    assert app.config["EXPENSIVE_READS_PER_WORKER"] == 3
    held = gate(hold=3)
    finishes = [in_flight(WHAT_IF, _viewer(app, f"viewer-{i}")) for i in range(3)]
    held.wait_entered(3)

    fourth = client.get(WHAT_IF, headers=_viewer(app, "viewer-3"))
    assert "this worker already runs 3 expensive read(s)" in _too_many(fourth)["detail"]

    held.release()
    assert [finish().status_code for finish in finishes] == [200, 200, 200]
    assert expensive_reads(app).in_flight() == 0
    assert client.get(WHAT_IF, headers=_viewer(app, "viewer-4")).status_code == 200


def test_the_place_is_given_back_when_the_read_fails(app, client, tokens, monkeypatch, history):
    def broken(*args, **kwargs):
        raise RuntimeError("the fold broke")

    monkeypatch.setattr(whatif, "what_if", broken)
    for _ in range(4):  # were the places kept, the third would be a 429
        failed = client.get(WHAT_IF, headers=tokens["viewer"])
        assert failed.status_code == 500
        assert failed.mimetype == "application/problem+json"
    assert expensive_reads(app).in_flight() == 0

    monkeypatch.undo()
    assert client.get(WHAT_IF, headers=tokens["viewer"]).status_code == 200


def test_a_refused_request_is_refused_for_what_it_is_first(client, tokens, gate, in_flight):
    """Authentication and validation answer before the limit: a request that could never run
    is not told to retry."""
    held = gate(hold=1)
    first = in_flight(WHAT_IF, tokens["viewer"])
    held.wait_entered()
    assert client.get(WHAT_IF).status_code == 401
    invalid = client.get("/api/v1/audit/what-if?stale_timeout_seconds=0", headers=tokens["viewer"])
    assert invalid.status_code == 422
    held.release()
    first()


def test_limits_can_be_lifted(database_url, clock):
    from cli.main import create_app

    app = create_app(
        {
            "DATABASE_URL": database_url,
            "CLOCK": clock,
            "TESTING": True,
            "EXPENSIVE_READS_PER_TOKEN": 0,
            "EXPENSIVE_READS_PER_WORKER": 0,
        }
    )
    try:
        limiter = expensive_reads(app)
        assert [limiter.enter("one-token") for _ in range(20)] == [None] * 20
    finally:
        services(app).engine.dispose()


def test_the_429_is_documented_on_every_expensive_endpoint(client):
    paths = client.get("/openapi.json").get_json()["paths"]
    expensive = [
        ("/api/v1/audit/what-if", "get"),
        ("/api/v1/audit/outages", "get"),
        ("/api/v1/audit/failovers", "get"),
        ("/api/v1/servers/{server}/components/{component}/explain", "get"),
        ("/api/v1/reports", "post"),
        ("/api/v1/cluster", "get"),
    ]
    for path, method in expensive:
        documented = paths[path][method]["responses"]["429"]
        assert "Retry-After" in documented["headers"], path
        assert "application/problem+json" in documented["content"], path
    assert "429" not in paths["/api/v1/heartbeats"]["post"]["responses"]
