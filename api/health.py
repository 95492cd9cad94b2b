"""Liveness and readiness probes (no auth, no cluster data)."""

import sqlalchemy as sa
from flask import Blueprint, Flask, current_app, jsonify

blueprint = Blueprint("health", __name__)

# Readiness fails when the read tables are this far behind the log (the view would mislead).
MAX_READY_LAG_EVENTS = 100_000


@blueprint.get("/healthz")
@blueprint.get("/api/v1/healthz")
def healthz():
    return jsonify(status="ok")


@blueprint.get("/readyz")
@blueprint.get("/api/v1/readyz")
def readyz():
    from api.app import services
    from projections.runner import ProjectionRunner

    try:
        lag = ProjectionRunner(services(current_app).store).lag()
    except sa.exc.SQLAlchemyError as exc:
        return jsonify(status="unavailable", database=exc.__class__.__name__), 503
    ready = lag["events"] <= MAX_READY_LAG_EVENTS
    body = {"status": "ok" if ready else "lagging", "database": "ok", "projection_lag": lag}
    return jsonify(body), 200 if ready else 503


def init_app(app: Flask) -> None:
    app.register_blueprint(blueprint)
