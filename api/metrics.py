"""Prometheus metrics: requests, ingest counts, append latency, projection lag, the timeouts
and recoveries ingest emitted, the server's processes' CPU and memory.

Under gunicorn every worker counts on its own; with PROMETHEUS_MULTIPROC_DIR set (`serve` sets
it) /metrics aggregates all workers. No cluster data is exported, only counts and timings.
"""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Sequence
from pathlib import Path

from flask import Flask, Response, g, request
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    ProcessCollector,
    generate_latest,
    multiprocess,
)
from prometheus_client import values as prometheus_values
from prometheus_client.core import GaugeMetricFamily, Metric

from domain.events import ComponentRecovered, ComponentTimedOut, RecordedEvent


class _ProcessId:
    """os.getpid(), remembered and renewed after a fork. In multiprocess mode prometheus-client
    asks for the pid at every increment, to notice a fork; os.getpid() is a system call, and
    the thread that makes it while holding the GIL can be descheduled there (py-spy: ~5% of a
    heartbeat request's GIL time)."""

    def __init__(self):
        self.renew()
        os.register_at_fork(after_in_child=self.renew)

    def renew(self) -> None:
        self.pid = os.getpid()

    def __call__(self) -> int:
        return self.pid


if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):  # prometheus-client made the same test at import
    prometheus_values.ValueClass = prometheus_values.MultiProcessValue(_ProcessId())

REQUESTS = Counter(
    "clustermon_http_requests_total", "HTTP requests", ["method", "endpoint", "status"]
)
LATENCY = Histogram(
    "clustermon_http_request_seconds", "HTTP request latency", ["method", "endpoint"]
)
HEARTBEATS = Counter("clustermon_heartbeats_accepted_total", "Heartbeats appended")
DUPLICATES = Counter("clustermon_heartbeats_duplicate_total", "Heartbeats already in the log")
APPEND_SECONDS = Histogram(
    "clustermon_append_seconds",
    "Time to decide and commit one group of heartbeats",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)
APPEND_EVENTS = Histogram(
    "clustermon_append_group_events",
    "Events per group commit",
    buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000),
)


# The scheduler counts what its sweep and its poller emit under the same names
# (scheduler/metrics.py); ingest decides recoveries, and the timeouts no sweep saw first.
TIMEOUTS = Counter(
    "clustermon_timeouts_emitted_total",
    "ComponentTimedOut events this process appended (by: sweep, ingest)",
    ["by"],
)
RECOVERIES = Counter(
    "clustermon_recoveries_emitted_total",
    "ComponentRecovered events this process appended (by: ingest, collector)",
    ["by"],
)


def on_commit(
    accepted: int, duplicates: int, recorded: Sequence[RecordedEvent], seconds: float
) -> None:
    HEARTBEATS.inc(accepted)
    DUPLICATES.inc(duplicates)
    APPEND_SECONDS.observe(seconds)
    APPEND_EVENTS.observe(len(recorded))
    if len(recorded) > accepted:  # more than the heartbeats: a timeout or recovery among them
        timeouts = sum(isinstance(r.event, ComponentTimedOut) for r in recorded)
        recoveries = sum(isinstance(r.event, ComponentRecovered) for r in recorded)
        if timeouts:
            TIMEOUTS.labels("ingest").inc(timeouts)
        if recoveries:
            RECOVERIES.labels("ingest").inc(recoveries)


# The methods a label may name. Anything else a client invents counts as "other": each label
# value is a time series of its own, kept in every worker's file, so a label that takes what
# clients send grows /metrics without bound (3,300 invented methods: 41 KB -> 5.4 MB, issue 17).
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def count_request(method: str, endpoint: str, status: int, started: float | None) -> None:
    """One answered request; `started` is its time.perf_counter() on arrival, if known.
    `endpoint` must be a route's rule (a bounded set), never the requested path."""
    if method not in METHODS:
        method = "other"
    REQUESTS.labels(method, endpoint, status).inc()
    if started is not None:
        LATENCY.labels(method, endpoint).observe(time.perf_counter() - started)


class ProjectionLag:
    """Read at scrape time, so it is right whichever process scrapes."""

    def __init__(self, app: Flask):
        self.app = app

    def collect(self):
        from api.services import services
        from projections.readmodel.runner import ProjectionRunner

        try:
            lag = ProjectionRunner(services(self.app).store).lag()
        except Exception:  # a scrape must not fail because the database is away
            return
        events = GaugeMetricFamily(
            "clustermon_projection_lag_events", "Events not yet in the read tables"
        )
        events.add_metric([], lag["events"])
        yield events
        if lag.get("seconds") is not None:
            seconds = GaugeMetricFamily(
                "clustermon_projection_lag_seconds", "Age of the oldest unprojected event"
            )
            seconds.add_metric([], lag["seconds"])
            yield seconds


class ServerProcesses:
    """With several processes (PROMETHEUS_MULTIPROC_DIR: gunicorn's workers), the default
    registry's process metrics would describe whichever worker answered the scrape. Instead:
    prometheus_client's process metrics (CPU seconds, resident memory, open files, start time)
    of every process of this server, labelled by `pid`: gunicorn's master and its children
    (the workers; under `clustermon run` also the scheduler and the demo agents)."""

    def collect(self):
        families: dict[str, Metric] = {}
        for pid in _server_pids():
            collector = ProcessCollector(pid=functools.partial(str, pid), registry=None)
            for family in collector.collect():
                merged = families.setdefault(
                    family.name, Metric(family.name, family.documentation, family.type)
                )
                for sample in family.samples:
                    labels = {**sample.labels, "pid": str(pid)}
                    merged.add_sample(sample.name, labels, sample.value)
        yield from families.values()


def _server_pids() -> list[int]:
    """This worker's parent (gunicorn's master) and the master's children (Linux), else this
    process alone."""
    master = os.getppid()
    try:
        children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
    except OSError:
        return [os.getpid()]
    return [master, *sorted(int(pid) for pid in children)]


def init_app(app: Flask) -> None:
    lag = ProjectionLag(app)

    @app.before_request
    def start_timer():
        g.started = time.perf_counter()

    @app.after_request
    def count(response):
        endpoint = request.url_rule.rule if request.url_rule else "unmatched"
        count_request(request.method, endpoint, response.status_code, g.get("started"))
        return response

    @app.get("/metrics")
    @app.get("/api/v1/metrics", endpoint="metrics_v1")
    def metrics():
        registry = CollectorRegistry()
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            multiprocess.MultiProcessCollector(registry)
            registry.register(ServerProcesses())
        else:
            from prometheus_client import REGISTRY

            registry = REGISTRY
        body = generate_latest(registry)
        body += generate_latest(_single(lag))
        return Response(body, content_type=CONTENT_TYPE_LATEST)  # it names its charset


def _single(collector) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    return registry
