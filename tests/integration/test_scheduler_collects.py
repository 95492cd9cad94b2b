"""The leading scheduler polls the targets; a standby does not; a takeover resumes polling
within a couple of seconds and a step-down stops it. Both databases, real HTTP servers."""

from __future__ import annotations

import time

import pytest

from collector.fake_product import FakeProducts, serve_in_thread, target_url
from eventstore.commands import ClusterCommands
from scheduler.service import build_scheduler

ADMIN = {"actor": "admin", "role": "admin", "source": None, "correlation_id": None}


@pytest.fixture
def fakes():
    products = FakeProducts(["proget01", "proget02"])
    base, stop = serve_in_thread(products)
    products.url = lambda name: target_url(base, name)  # type: ignore[attr-defined]
    yield products
    stop()


def polled(store, server) -> int:
    """How many polls of `server` are in the log (two heartbeats each)."""
    beats = [r for r in store.read_all(limit=None) if r.type == "HeartbeatRecorded"]
    return sum(1 for r in beats if r.event.server == server) // 2


def wait_for(condition, seconds: float = 5.0) -> float:
    """Seconds until `condition()` held (a real loop polls real sockets; bounded)."""
    started = time.monotonic()
    while not condition():
        assert time.monotonic() - started < seconds, "not within the time allowed"
        time.sleep(0.02)
    return time.monotonic() - started


def test_the_leader_polls_and_a_standby_does_not(store, services, fakes):
    ClusterCommands(store).configure_target("proget01", {"url": fakes.url("proget01")}, ADMIN)
    leader, standby = services("A"), services("B")
    assert leader.elect() is True

    standby.collect_job()
    leader.collect_job()
    wait_for(lambda: polled(store, "proget01") == 1)
    assert leader.collector.running is True
    assert standby.collector.running is False

    # A target added while leading is picked up at the next run of the job.
    ClusterCommands(store).configure_target("proget02", {"url": fakes.url("proget02")}, ADMIN)
    leader.collect_job()
    assert wait_for(lambda: polled(store, "proget02") == 1) < 2


def test_a_takeover_resumes_polling_within_two_seconds_and_a_step_down_stops_it(
    store, clock, services, fakes
):
    ClusterCommands(store).configure_target(
        "proget01", {"url": fakes.url("proget01"), "interval_seconds": 30}, ADMIN
    )
    first, second = services("A"), services("B")
    assert first.elect() is True
    first.collect_job()
    wait_for(lambda: polled(store, "proget01") == 1)

    first.step_down()
    assert first.collector.running is False
    requests = fakes.requests
    clock.advance(seconds=30)  # the next poll is due: nobody leads, nobody polls
    second.collect_job()  # the standby's next run takes the lead
    taken_over = wait_for(lambda: polled(store, "proget01") == 2)
    assert second.leading and second.collector.running
    assert taken_over < 2
    assert fakes.requests == requests + 1  # one poll: the old leader polls no more


def test_the_collect_job_runs_every_second_on_every_scheduler(services):
    from apscheduler.schedulers.background import BackgroundScheduler

    scheduler = build_scheduler(services("A"), BackgroundScheduler(timezone="UTC"))
    job = scheduler.get_job("collect")
    assert job.trigger.interval.total_seconds() == 1
    assert (job.coalesce, job.max_instances) == (True, 1)
