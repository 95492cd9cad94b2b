"""The Flask application factory."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import sqlalchemy as sa
from flask import Flask
from flask_smorest import Api
from marshmallow import fields as ma_fields

from api import settings as settings_module
from api.jsonprovider import OrjsonProvider
from api.problems import MEDIA_TYPE, ProblemSchema
from api.services import Services
from eventstore import create_engine, open_store, utc_now
from eventstore.commands import ClusterCommands
from eventstore.group_commit import GroupCommitter


class ProblemApi(Api):
    """flask-smorest, with its errors (e.g. query validation) as RFC 9457 problems, and
    documented as such."""

    ERROR_SCHEMA = ProblemSchema

    def _register_error_handlers(self):
        from api import problems

        problems.init_app(self._app)

    def _register_responses(self):
        # The error responses it registers take the default content type: make it ours while
        # it does (success responses keep application/json).
        self.DEFAULT_RESPONSE_CONTENT_TYPE = MEDIA_TYPE
        try:
            super()._register_responses()
        finally:
            del self.DEFAULT_RESPONSE_CONTENT_TYPE


def create_app(test_config: dict | None = None) -> Flask:
    app = Flask(__name__, instance_relative_config=True)
    app.json_provider_class = OrjsonProvider
    app.json = OrjsonProvider(app)
    app.config.from_mapping(settings_module.from_environment(app.instance_path))
    app.config.update(
        API_TITLE="clustermon",
        API_VERSION="v1",
        OPENAPI_VERSION="3.1.0",
        OPENAPI_URL_PREFIX="/",
        OPENAPI_JSON_PATH="openapi.json",
    )
    if test_config:
        app.config.from_mapping(test_config)

    clock = app.config.get("CLOCK") or utc_now
    _create_private_sqlite_file(app.config["DATABASE_URL"])
    engine = create_engine(app.config["DATABASE_URL"])
    # gunicorn forks workers from the process that built the app: never share pooled sockets.
    os.register_at_fork(after_in_child=lambda: engine.dispose(close=False))
    store = open_store(engine, clock)
    commands = ClusterCommands(store)
    app.extensions["clustermon"] = Services(store, clock, commands)

    from api import (
        audit,
        availability,
        cluster,
        cluster_metrics,
        dashboard,
        docs,
        events,
        fastpath,
        health,
        heartbeats,
        metrics,
        notifications,
        responses,
        retention,
        security_headers,
        silences,
        stream_tickets,
        targets,
        tokens,
    )

    app.extensions["clustermon_tokens"] = tokens.TokenVerifier(engine)
    app.extensions["clustermon_ingest"] = GroupCommitter(commands, on_commit=metrics.on_commit)

    api = ProblemApi(
        app,
        spec_kwargs={
            "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
            "security": [{"bearer": []}],
        },
    )
    # apispec documents fields.IP with the format "ip", which JSON Schema does not define.
    api.register_field(ma_fields.IP, "string", None)
    api.ma_plugin.converter.add_attribute_function(_ip_formats)
    api.ma_plugin.converter.add_attribute_function(availability.segment_items)
    for blueprint in (
        heartbeats.blp,
        cluster.blp,
        events.blp,
        audit.blp,
        targets.blp,
        notifications.blp,
        silences.blp,
        stream_tickets.blp,
        availability.blp,
        retention.blp,
    ):
        api.register_blueprint(blueprint)
    api.spec.components.schema("Heartbeat", schema=heartbeats.HeartbeatSchema)
    api.spec.components.schema("HeartbeatBatch", schema=heartbeats.HeartbeatBatchSchema)
    api.spec.components.schema("ConfigurationPatch", schema=cluster.ConfigurationPatchSchema)
    api.spec.components.schema("TargetChange", schema=targets.TargetChangeSchema)
    api.spec.components.schema("ChannelChange", schema=notifications.ChannelChangeSchema)
    api.spec.components.schema("SilenceCreation", schema=silences.SilenceCreationSchema)
    responses.document(api.spec)  # one schema per event type (api/responses.py)

    health.init_app(app)
    dashboard.init_app(app)
    metrics.init_app(app)
    cluster_metrics.init_app(app)
    security_headers.init_app(app)
    health.document(app, api.spec)  # once /metrics is routed too
    cluster_metrics.document(app, api.spec)
    docs.init_app(app)
    fastpath.init_app(app)  # last: it wraps the finished app
    return app


def _create_private_sqlite_file(url: str) -> None:
    """A SQLite database clustermon is about to create is its owner's only: the file 0600 (its
    WAL and shared-memory files take the same mode: SQLite copies it), a folder made for it
    0700. Made by SQLite itself, they were readable by every local user (umask 022)."""
    parsed = sa.make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return
    path = Path(parsed.database)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    with contextlib.suppress(FileExistsError):  # an existing database keeps its mode
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))


def _ip_formats(converter, field, **kwargs) -> dict:
    """An IPv4 or IPv6 address, in the formats JSON Schema defines."""
    if isinstance(field, ma_fields.IP) and not isinstance(field, ma_fields.IPv4 | ma_fields.IPv6):
        # Each branch typed, so that generated clients see a string (or null), not Any.
        null = [{"type": "null"}] if field.allow_none else []
        kwargs["ret"].pop("type", None)  # the branches say it
        return {
            "anyOf": [
                {"type": "string", "format": "ipv4"},
                {"type": "string", "format": "ipv6"},
                *null,
            ],
        }
    return {}
