"""/metrics for what operators alert on: the timeouts and recoveries emitted, the sweep's
duration, whether a scheduler leads, the processes' CPU and memory; read as Prometheus reads
it, through prometheus_client's text parser."""

from __future__ import annotations

import os
import urllib.request

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from api.metrics import ServerProcesses
from api.services import services
from scheduler import metrics as scheduler_metrics
from scheduler.service import SchedulerService
from scheduler.sweep import emit_timeouts
from tests.api.conftest import heartbeat


def samples(text: str) -> dict[tuple[str, frozenset], float]:
    """(sample name, its labels) -> value."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(text: str, name: str, **labels) -> float:
    return samples(text).get((name, frozenset(labels.items())), 0.0)


def scrape(client) -> str:
    answer = client.get("/metrics")
    assert answer.status_code == 200
    return answer.get_data(as_text=True)


def test_ingest_counts_the_recoveries_and_timeouts_it_emits(app, client, post, clock):
    before = scrape(client)
    post(heartbeat())
    clock.advance(seconds=301)  # past the stale timeout, and no sweep ran: ingest records both
    post(heartbeat())
    clock.advance(seconds=301)
    emit_timeouts(services(app).store, clock())  # a sweep's timeout: not counted by the API
    post(heartbeat())  # a recovery only
    after = scrape(client)

    def delta(name, **labels):
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("clustermon_timeouts_emitted_total", by="ingest") == 1
    assert delta("clustermon_recoveries_emitted_total", by="ingest") == 2
    assert delta("clustermon_heartbeats_accepted_total") == 3


def scheduler_scrape() -> str:
    return generate_latest(scheduler_metrics.REGISTRY).decode()


@pytest.fixture
def schedulers(app, clock):
    """SchedulerServices on the app's store (by detector name), stepped down at the end."""
    made: list[SchedulerService] = []

    def make(name: str) -> SchedulerService:
        made.append(SchedulerService(services(app).store, clock, detector=name))
        return made[-1]

    yield make
    for service in made:
        service.step_down()
        service.collector.close()


def test_the_scheduler_counts_its_sweeps_and_says_whether_it_leads(schedulers, post, clock):
    leader, standby = schedulers("A"), schedulers("B")
    told: list[str] = []
    leader.announce = standby.announce = told.append
    before = scheduler_scrape()
    post(heartbeat(server="app01"))
    leader.sweep_job()  # elects itself, finds nothing due
    assert value(scheduler_scrape(), "clustermon_scheduler_leading") == 1
    assert standby.elect() is False
    assert standby.elect() is False  # told once
    assert told == [
        "scheduler A: leading (sweeps timeouts, polls targets, takes snapshots, sends"
        " notifications)",
        "scheduler B: standing by: another scheduler is leading; this one takes over if it stops",
    ]
    clock.advance(seconds=301)
    leader.sweep_job()  # app01's service times out
    after = scheduler_scrape()

    def delta(name, **labels):
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("clustermon_timeouts_emitted_total", by="sweep") == 1
    assert delta("clustermon_sweep_seconds_count") == 2
    assert value(after, "process_resident_memory_bytes") > 0
    assert value(after, "process_cpu_seconds_total") > 0
    leader.step_down()
    assert value(scheduler_scrape(), "clustermon_scheduler_leading") == 0


def test_the_scheduler_serves_its_metrics_on_the_port_it_is_given(monkeypatch):
    monkeypatch.delenv(scheduler_metrics.PORT_ENV, raising=False)
    assert scheduler_metrics.serve_from_environment() is None  # not asked: no port opened
    monkeypatch.setenv(scheduler_metrics.PORT_ENV, "0")  # any free port
    served = scheduler_metrics.serve_from_environment()
    assert served is not None
    address, server = served
    try:
        assert address.startswith("http://127.0.0.1:") and address.endswith("/metrics")
        with urllib.request.urlopen(address, timeout=10) as answer:
            text = answer.read().decode()
        assert "clustermon_scheduler_leading" in {
            f.name for f in text_string_to_metric_families(text)
        }
    finally:
        server.shutdown()
        server.server_close()


def test_with_several_workers_metrics_give_each_process_cpu_and_memory():
    # With PROMETHEUS_MULTIPROC_DIR (gunicorn's workers) /metrics adds this collector: the
    # process metrics of the master (here: pytest's parent) and of each of its children.
    from prometheus_client import CollectorRegistry

    registry = CollectorRegistry()
    registry.register(ServerProcesses())
    text = generate_latest(registry).decode()
    memory = {
        dict(labels)["pid"]: number
        for (name, labels), number in samples(text).items()
        if name == "process_resident_memory_bytes"
    }
    assert str(os.getpid()) in memory
    assert memory[str(os.getpid())] > 0
