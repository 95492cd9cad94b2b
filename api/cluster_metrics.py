"""The cluster's state as Prometheus gauges: GET /api/v1/metrics/cluster (viewer token).

/metrics is about the monitor itself (requests, ingest, projection lag) and open to a scraper;
this is about the monitored cluster (which servers and components are up, in sync), so it
needs a viewer token like the view it is computed from. Prometheus can then alert on it with
its own rules (docs/alert-rules.yml) beside or instead of clustermon's notifications.

Computed per scrape from the current view (the same judgement GET /cluster shows) into a fresh
registry with one custom collector: these are not process metrics, and must not go through
the multiprocess registry, where each gunicorn worker would add its own copy.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from flask import Flask, Response, current_app
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from api.auth import require
from api.services import services
from notify.tables import deliveries
from projections.readmodel.view import cluster_view, live_time

COMPONENT_LABELS = ["server", "component", "product"]


class ClusterCollector(Collector):
    """The gauges of one view (`view`: projections.readmodel.view.cluster_view's answer) and
    the delivery counts `{(channel, state): n}`."""

    def __init__(self, view: dict[str, Any], notifications: dict[tuple[str, str], int]):
        self.view = view
        self.notifications = notifications

    def collect(self) -> Iterator[GaugeMetricFamily]:
        up = GaugeMetricFamily(
            "clustermon_component_up",
            "1 while the component's heartbeats are current, 0 once it is stale",
            labels=COMPONENT_LABELS,
        )
        age = GaugeMetricFamily(
            "clustermon_component_heartbeat_age_seconds",
            "Seconds since the component's last heartbeat (clustermon's clock)",
            labels=COMPONENT_LABELS,
        )
        version = GaugeMetricFamily(
            "clustermon_server_version_in_sync",
            "1 when the server runs the cluster's product version, 0 when it drifts",
            labels=["server"],
        )
        key = GaugeMetricFamily(
            "clustermon_server_encryption_key_in_sync",
            "1 when the server's encryption key matches the cluster's, 0 when it differs",
            labels=["server"],
        )
        for server in self.view["servers"]:
            for component in server["components"]:
                labels = [server["name"], component["name"], component["product"] or ""]
                heartbeat = component["heartbeat"]
                up.add_metric(labels, 1.0 if heartbeat["state"] == "current" else 0.0)
                if heartbeat["age_seconds"] is not None:
                    age.add_metric(labels, float(heartbeat["age_seconds"]))
            # None: nothing to compare yet (no version or key reported): no sample, no alert.
            if server["version_in_sync"] is not None:
                version.add_metric([server["name"]], float(server["version_in_sync"]))
            if server["encryption_key_in_sync"] is not None:
                key.add_metric([server["name"]], float(server["encryption_key_in_sync"]))
        notifications = GaugeMetricFamily(
            "clustermon_notifications_total",
            "Notification deliveries per channel in each state (pending, sent, failed, "
            "suppressed) now; a delivery moves from pending to sent or failed",
            labels=["channel", "state"],
        )
        for (channel, state), count in sorted(self.notifications.items()):
            notifications.add_metric([channel, state], float(count))
        yield from (up, age, version, key, notifications)


def exposition(view: dict[str, Any], notifications: dict[tuple[str, str], int]) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ClusterCollector(view, notifications))
    return generate_latest(registry)


def init_app(app: Flask) -> None:
    @app.get("/api/v1/metrics/cluster")
    @require("viewer")
    def cluster_metrics():
        svc = services(current_app)
        state = svc.fresh_state()
        now: datetime = live_time(state, svc.clock())
        body = exposition(cluster_view(state, now), _delivery_counts(svc.engine))
        return Response(body, content_type=CONTENT_TYPE_LATEST)


def document(app: Flask, spec) -> None:
    """The endpoint in the OpenAPI document (flask-smorest documents only its blueprints)."""
    rule = next(r for r in app.url_map.iter_rules() if r.rule == "/api/v1/metrics/cluster")
    operation = {
        "summary": "The cluster's state as Prometheus gauges (viewer)",
        "description": "`clustermon_component_up`, `clustermon_component_heartbeat_age_seconds` "
        "{server, component, product}; `clustermon_server_version_in_sync`, "
        "`clustermon_server_encryption_key_in_sync` {server}; `clustermon_notifications_total` "
        "{channel, state}. Example alert rules: docs/alert-rules.yml.",
        "tags": ["metrics"],
        "responses": {
            "200": {
                "description": "Prometheus text exposition format",
                "content": {"text/plain": {"schema": {"type": "string"}}},
            },
            "default": {"$ref": "#/components/responses/DEFAULT_ERROR"},  # 401, 403
        },
    }
    spec.path(rule=rule, operations={"get": operation})


def _delivery_counts(engine: sa.Engine) -> dict[tuple[str, str], int]:
    query = sa.select(deliveries.c.channel, deliveries.c.state, sa.func.count()).group_by(
        deliveries.c.channel, deliveries.c.state
    )
    with engine.connect() as conn:
        return {(channel, state): count for channel, state, count in conn.execute(query)}
