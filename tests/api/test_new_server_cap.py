"""The cluster-wide cap on new servers per hour (issue #17): a batch bringing more servers the
cluster never heard of than the hour has room for is refused whole (429 problem+json with
Retry-After, saying what the cap is and how to raise it) and nothing of it is recorded; servers
the cluster knows are never limited; the count is the database's, shared by every worker."""

import threading

import pytest
import sqlalchemy as sa

from api import new_servers
from api.services import services
from cli.main import create_app
from domain.events import HeartbeatRecorded
from eventstore.store import NewEvent
from tests.api.conftest import heartbeat

CAP = 3


@pytest.fixture
def capped(database_url, clock, tokens_for_url):
    """`capped()`: a client of a new app (a worker) on the shared database with a cap of CAP
    new servers per hour, and an agent token's headers."""
    apps = []

    def capped(path="fast path"):
        app = create_app(
            {
                "DATABASE_URL": database_url,
                "CLOCK": clock,
                "TESTING": True,
                "NEW_SERVERS_PER_HOUR": CAP,
            }
        )
        apps.append(app)
        if path == "flask view":
            app.wsgi_app = app.wsgi_app.flask
        return app, app.test_client(), tokens_for_url(app)["agent"]

    yield capped
    for app in apps:
        services(app).engine.dispose()


def _post(client, headers, *servers):
    return client.post(
        "/api/v1/heartbeats",
        json={"heartbeats": [heartbeat(server=s) for s in servers]},
        headers=headers,
    )


def _servers(app):
    return sorted({e.event.server for e in services(app).store.read_all(0, None)})


@pytest.mark.parametrize("path", ["fast path", "flask view"])
def test_more_new_servers_than_the_cap_are_refused_whole(capped, clock, path):
    app, client, agent = capped(path)
    assert _post(client, agent, "a", "b").status_code == 202
    clock.advance(minutes=20)

    # One place left in the hour: a batch with two new servers (and a known one) is refused.
    refused = _post(client, agent, "a", "c", "d")

    assert refused.status_code == 429
    assert refused.mimetype == "application/problem+json"
    detail = refused.get_json()["detail"]
    assert f"the cap is {CAP} new servers per hour" in detail
    assert "CLUSTERMON_NEW_SERVERS_PER_HOUR" in detail
    assert "c, d" in detail and "Nothing was recorded" in detail
    # "a" joined 20 minutes ago: its place is free again in 40.
    assert refused.headers["Retry-After"] == str(40 * 60)
    assert _servers(app) == ["a", "b"]
    assert _post(client, agent, "c").status_code == 202  # the last place


@pytest.mark.parametrize("path", ["fast path", "flask view"])
def test_a_known_server_is_never_limited(capped, path):
    _app, client, agent = capped(path)
    assert _post(client, agent, "a", "b", "c").status_code == 202
    assert _post(client, agent, "d").status_code == 429  # the hour is full

    for _ in range(3):
        assert _post(client, agent, "a", "b", "c").status_code == 202
    # Also for a worker that never saw them (it learns them from the database).
    _, other, other_agent = capped(path)
    assert _post(other, other_agent, "c", "b").status_code == 202
    assert _post(other, other_agent, "e").status_code == 429


def test_a_server_the_log_has_is_known_however_it_got_there(capped, store):
    # Recorded before the cap existed, or by a path that does not pass it: not new.
    names = [f"old{i}" for i in range(CAP + 2)]
    store.append(
        [NewEvent(HeartbeatRecorded(name, "service", sent_at=store.clock())) for name in names]
    )
    _app, client, agent = capped()
    assert _post(client, agent, *names).status_code == 202
    # ...and they count against the hour they joined in.
    assert _post(client, agent, "new").status_code == 429


def test_the_cap_is_the_clusters_not_each_workers(capped):
    _, first, first_agent = capped()
    _, second, second_agent = capped()
    assert _post(first, first_agent, "a", "b").status_code == 202
    assert _post(second, second_agent, "c", "d").status_code == 429
    assert _post(second, second_agent, "c").status_code == 202
    assert _post(first, first_agent, "d").status_code == 429


def test_workers_racing_to_add_servers_never_pass_the_cap_together(capped):
    workers = [capped(), capped()]
    barrier = threading.Barrier(8)
    statuses = []

    def post(n):
        app, _, agent = workers[n % 2]
        client = app.test_client()
        barrier.wait()
        statuses.append(_post(client, agent, f"racer{n}").status_code)

    threads = [threading.Thread(target=post, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert sorted(statuses) == [202] * CAP + [429] * (8 - CAP)
    assert len(_servers(workers[0][0])) == CAP


def test_places_free_up_as_the_hour_moves_on(capped, clock):
    _app, client, agent = capped()
    assert _post(client, agent, "a").status_code == 202
    clock.advance(minutes=30)
    assert _post(client, agent, "b", "c").status_code == 202
    refused = _post(client, agent, "d")
    assert refused.headers["Retry-After"] == str(30 * 60)
    clock.advance(minutes=30)  # exactly an hour after "a": its place is free
    assert _post(client, agent, "d").status_code == 202
    assert _post(client, agent, "e").status_code == 429


def test_a_batch_larger_than_the_cap_says_to_split_it(capped):
    app, client, agent = capped()
    refused = _post(client, agent, *(f"s{i}" for i in range(CAP + 1)))
    assert refused.status_code == 429
    assert f"send them in batches of at most {CAP}" in refused.get_json()["detail"]
    assert refused.headers["Retry-After"] == "3600"
    assert _servers(app) == []


def test_no_cap_when_set_to_zero(app, post):
    app.config["NEW_SERVERS_PER_HOUR"] = 0
    response = post({"heartbeats": [heartbeat(server=f"s{i}") for i in range(1000)]})
    assert response.status_code == 202
    assert response.get_json()["accepted"] == 1000


def test_heartbeats_of_known_servers_cost_the_cap_no_query(capped):
    # Heartbeats are nearly all the traffic: the hot path must stay free of lookups.
    app, client, agent = capped()
    assert _post(client, agent, "a", "b").status_code == 202
    statements = []
    engine = services(app).engine
    listener = lambda *args: statements.append(args[2])  # noqa: E731
    sa.event.listen(engine, "before_cursor_execute", listener)
    try:
        new_servers.of(app).admit({"a", "b"})
        new_servers.of(app).admit({"b"})
        assert statements == []
        new_servers.of(app).admit({"b", "c"})  # a name it does not know yet: looked up
        assert statements
    finally:
        sa.event.remove(engine, "before_cursor_execute", listener)
