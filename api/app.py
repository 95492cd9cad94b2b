"""The Flask application factory."""

from __future__ import annotations

from dataclasses import dataclass

from flask import Flask

from api import settings as settings_module
from eventstore import Clock, EventStore, create_engine, utc_now


@dataclass
class Services:
    """What request handlers and commands share; built once per app, never at import."""

    store: EventStore
    clock: Clock

    @property
    def engine(self):
        return self.store.engine


def create_app(test_config: dict | None = None) -> Flask:
    app = Flask(__name__, instance_relative_config=True)
    app.config.from_mapping(settings_module.from_environment(app.instance_path))
    if test_config:
        app.config.from_mapping(test_config)

    clock = app.config.get("CLOCK") or utc_now
    engine = create_engine(app.config["DATABASE_URL"])
    app.extensions["clustermon"] = Services(EventStore(engine, clock), clock)

    from api import cli, health

    health.init_app(app)
    cli.init_app(app)
    return app


def services(app: Flask) -> Services:
    return app.extensions["clustermon"]
