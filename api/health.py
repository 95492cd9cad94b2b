"""Liveness and readiness probes (no auth, no cluster data)."""

import sqlalchemy as sa
from flask import Blueprint, Flask, current_app, jsonify

blueprint = Blueprint("health", __name__)


@blueprint.get("/healthz")
@blueprint.get("/api/v1/healthz")
def healthz():
    return jsonify(status="ok")


@blueprint.get("/readyz")
@blueprint.get("/api/v1/readyz")
def readyz():
    from api.app import services

    try:
        with services(current_app).engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    except sa.exc.SQLAlchemyError as exc:
        return jsonify(status="unavailable", database=str(exc.__class__.__name__)), 503
    return jsonify(status="ok", database="ok")


def init_app(app: Flask) -> None:
    app.register_blueprint(blueprint)
