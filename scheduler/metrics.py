"""The scheduler's Prometheus metrics: what it emitted, how long a sweep takes, whether it leads.

The scheduler is a process of its own, so it serves its own metrics: with
CLUSTERMON_SCHEDULER_METRICS_PORT set, at http://CLUSTERMON_SCHEDULER_METRICS_HOST:PORT/metrics
(host default 127.0.0.1), with the process's CPU and memory (prometheus_client's process
collector). Under `clustermon run` it also writes them where the
server's workers write theirs (PROMETHEUS_MULTIPROC_DIR, inherited), so the server's /metrics
shows them too. The API process counts what ingest emits under the same metric names
(api/metrics.py), labelled `by="ingest"`: sum over both targets for the whole.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from wsgiref.simple_server import WSGIServer

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    start_http_server,
)

from domain.events import ComponentRecovered, ComponentTimedOut
from eventstore.store import RecordedEvent

PORT_ENV = "CLUSTERMON_SCHEDULER_METRICS_PORT"
HOST_ENV = "CLUSTERMON_SCHEDULER_METRICS_HOST"

# A registry of its own: api/metrics.py declares the emission counters under the same names in
# the default one, and both modules are imported in one process (tests, `flask --app wsgi`).
REGISTRY = CollectorRegistry()
ProcessCollector(registry=REGISTRY)  # CPU seconds, resident memory, open files

TIMEOUTS = Counter(
    "clustermon_timeouts_emitted_total",
    "ComponentTimedOut events this process appended (by: sweep, ingest)",
    ["by"],
    registry=REGISTRY,
)
RECOVERIES = Counter(
    "clustermon_recoveries_emitted_total",
    "ComponentRecovered events this process appended (by: ingest, collector)",
    ["by"],
    registry=REGISTRY,
)
SWEEP_SECONDS = Histogram(
    "clustermon_sweep_seconds",
    "Time one timeout sweep of the leading scheduler takes (index follow + appends)",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
    registry=REGISTRY,
)
# livemax: the server's /metrics (`run`) shows 1 while any live scheduler of the box leads.
LEADING = Gauge(
    "clustermon_scheduler_leading",
    "1 while this scheduler leads (holds the leader lock), 0 while it stands by",
    multiprocess_mode="livemax",
    registry=REGISTRY,
)


def count_emitted(recorded: Iterable[RecordedEvent], by: str) -> None:
    """Count the timeouts and recoveries among `recorded` (events this process appended)."""
    timeouts = recoveries = 0
    for event in recorded:
        if isinstance(event.event, ComponentTimedOut):
            timeouts += 1
        elif isinstance(event.event, ComponentRecovered):
            recoveries += 1
    if timeouts:
        TIMEOUTS.labels(by).inc(timeouts)
    if recoveries:
        RECOVERIES.labels(by).inc(recoveries)


def serve_from_environment() -> tuple[str, WSGIServer] | None:
    """Serve /metrics when CLUSTERMON_SCHEDULER_METRICS_PORT is set: its address and the
    server (`shutdown()` stops it). A port that cannot be bound stops the start: a scrape
    target that silently never answers would look like a dead scheduler."""
    port = os.environ.get(PORT_ENV)
    if not port:
        return None
    host = os.environ.get(HOST_ENV) or "127.0.0.1"
    server, _thread = start_http_server(int(port), addr=host, registry=REGISTRY)
    return f"http://{host}:{server.server_port}/metrics", server


def forget_this_process() -> None:
    """On the way out under a shared PROMETHEUS_MULTIPROC_DIR: no longer a live process, so
    its `leading` gauge stops counting."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(os.getpid())
