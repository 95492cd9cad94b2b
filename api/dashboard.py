"""The Cluster Management page: one server-rendered shell, filled and kept live by a little
plain JavaScript that calls the v1 API with the operator's bearer token.

The token lives in the tab's sessionStorage, not in a cookie: the API only reads the
`Authorization` header, so no credential is ever sent by the browser on its own (no CSRF surface
for the admin actions), and it is gone when the tab closes. A strict Content-Security-Policy
(scripts and styles from this origin only, no inline script) keeps injected markup from reading
it. Everything the page needs is served from here: no CDN, it works offline.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Flask, jsonify, make_response, render_template

from api.auth import current_principal
from api.event_schemas import ConfigurationSchema
from domain.events import CATALOG

blueprint = Blueprint("dashboard", __name__, template_folder="templates")

CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)

# The editable settings of the Configuration pane, in the order the products show them.
SETTINGS = (
    ("load_balancing", "Load balancing", "checkbox", None),
    ("automatic_failover", "Automatic failover", "checkbox", None),
    ("heartbeat_frequency_seconds", "Heartbeat frequency", "number", "seconds"),
    ("stale_timeout_seconds", "Stale timeout (Service)", "number", "seconds"),
    ("web_stale_timeout_seconds", "Web stale window", "number", "seconds"),
)


# What the page calls each event type (the event log's filter and rows, the history dialog read
# them from the filter's options): words an operator uses, not class names.
EVENT_LABELS = {
    "HeartbeatRecorded": "Heartbeat",
    "ComponentTimedOut": "Timed out",
    "ComponentRecovered": "Recovered",
    "ComponentRemoved": "Removed by hand",
    "ConfigurationChanged": "Configuration changed",
    "MonitorResumed": "Monitor resumed after a gap",
    "CollectionFailed": "Polling failed",
    "TargetConfigured": "Polled server set",
    "TargetRemoved": "Polling stopped",
    "ChannelConfigured": "Notification channel set",
    "ChannelRemoved": "Notification channel removed",
    "SilenceCreated": "Silence started",
    "SilenceEnded": "Silence ended",
}


def event_types() -> list[tuple[str, str]]:
    """Every type the log holds with its label; a type without one shows its own name."""
    return [(name, EVENT_LABELS.get(name, name)) for name in CATALOG]


def _range(name: str) -> tuple[int, int] | None:
    """The accepted range of a numeric setting, from the schema the API validates with."""
    validator: Any  # a Range for the numeric settings
    for validator in ConfigurationSchema().fields[name].validators:
        if getattr(validator, "min", None) is not None:
            return validator.min, validator.max
    return None


def settings() -> list[dict]:
    return [
        {"name": name, "label": label, "kind": kind, "unit": unit, "range": _range(name)}
        for name, label, kind, unit in SETTINGS
    ]


@blueprint.get("/")
def page():
    response = make_response(
        render_template("dashboard.html", settings=settings(), event_types=event_types())
    )
    response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    response.headers["Cache-Control"] = "no-store"  # the rest: api/security_headers.py
    return response


@blueprint.get("/dashboard/whoami")
def whoami():
    """Who the bearer token belongs to, so the page can show the admin controls (the API
    still checks the role on every action)."""
    principal = current_principal()
    return jsonify(name=principal.name, role=principal.role, admin=principal.may("admin"))


def init_app(app: Flask) -> None:
    app.register_blueprint(blueprint)
