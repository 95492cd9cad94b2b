"""Liveness and readiness probes (no auth, no cluster data)."""

from flask import Blueprint, Flask, current_app, jsonify

from eventstore.db import is_unavailable

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
    from api.services import services
    from projections.readmodel.runner import ProjectionRunner

    try:
        lag = ProjectionRunner(services(current_app).store).lag()
    except Exception as exc:
        # Any database error means "not ready" (a missing table too); whether it is worth a
        # traceback in the log is eventstore.db's call.
        if not is_unavailable(exc):
            current_app.logger.exception("readiness check failed")
        return jsonify(status="unavailable", database=exc.__class__.__name__), 503
    ready = lag["events"] <= MAX_READY_LAG_EVENTS
    body = {"status": "ok" if ready else "lagging", "database": "ok", "projection_lag": lag}
    return jsonify(body), 200 if ready else 503


def init_app(app: Flask) -> None:
    app.register_blueprint(blueprint)


def _json(description: str, properties: dict) -> dict:
    schema = {"type": "object", "properties": properties}
    return {"description": description, "content": {"application/json": {"schema": schema}}}


_READY = {
    "status": {"type": "string", "enum": ["ok", "lagging", "unavailable"]},
    "database": {"type": "string", "description": "`ok`, or the class of the database error"},
    "projection_lag": {
        "type": "object",
        "description": "events not yet in the read tables, and the age of the oldest (seconds)",
    },
}
PROBES = {
    "healthz": {
        "summary": "Liveness: the process answers",
        "responses": {"200": _json("Alive", {"status": {"type": "string", "enum": ["ok"]}})},
    },
    "readyz": {
        "summary": "Readiness: the database answers and the read tables are not far behind",
        "responses": {
            "200": _json("Ready", _READY),
            "503": _json("Not ready: database unreachable or projection lagging", _READY),
        },
    },
    "metrics": {
        "summary": "Prometheus metrics (counts and timings, no cluster data)",
        "responses": {
            "200": {
                "description": "Prometheus text exposition format",
                "content": {"text/plain": {"schema": {"type": "string"}}},
            }
        },
    },
}


def document(app: Flask, spec) -> None:
    """The probes in the OpenAPI document (flask-smorest documents only its own blueprints);
    they need no token."""
    rules = {rule.rule: rule for rule in app.url_map.iter_rules()}
    for name, operation in PROBES.items():
        for path in (f"/{name}", f"/api/v1/{name}"):
            get = {**operation, "security": [], "tags": ["probes"]}
            spec.path(rule=rules[path], operations={"get": get})
