"""The polled product servers (API.md v1.1, "Collection"): list, create or change, remove.

A target is configuration, so every change is an event with the admin in its metadata, decided
under the append lock like a configuration change (eventstore/commands.py) and committed before
the answer. The list is read from the read model, caught up first, so it shows every change
committed before the request, and each target's last poll from the collector's own table.

A target's URL may carry a proxy password or a token; the poller uses it as stored, but no
answer shows it: `domain.urls.masked` hides the secrets, for admins too.
"""

from __future__ import annotations

from typing import Any

import marshmallow as ma
from flask import current_app
from marshmallow import ValidationError, fields

from api.auth import require
from api.event_schemas import TargetSettingsSchema
from api.heartbeats import json_body, request_metadata
from api.problems import Problem, invalid
from api.query import Blueprint, NoQuery
from api.schemas import SERVER_NAME
from api.services import Services, services
from collector import poll_log
from domain.decisions import InvalidConfiguration, NotATarget
from domain.state import TargetState
from domain.urls import masked

blp = Blueprint(
    "targets", __name__, url_prefix="/api/v1", description="Polled product servers (targets)"
)


class TargetChangeSchema(TargetSettingsSchema):
    """The body of PUT /targets/{server}: the settings to set; the others keep their value (a
    new target takes the defaults: every 30 s, 5 s timeout, TLS verified)."""

    class Meta:
        unknown = ma.RAISE


class LastPollSchema(ma.Schema):
    at = fields.AwareDateTime(metadata={"description": "when the poll started (our clock)"})
    ok = fields.Boolean()
    error = fields.String(allow_none=True, metadata={"description": "why it failed"})
    seconds = fields.Float(metadata={"description": "how long it took"})


class TargetFailureSchema(ma.Schema):
    kind = fields.String(metadata={"description": "refused, timeout, tls, dns, http_status, ..."})
    detail = fields.String()
    since = fields.AwareDateTime(metadata={"description": "the first failing poll of this kind"})


class TargetSchema(ma.Schema):
    server = fields.String()
    url = fields.String(metadata={"description": "with passwords and tokens masked (***)"})
    interval_seconds = fields.Integer()
    timeout_seconds = fields.Integer()
    verify_tls = fields.Boolean()
    last_poll = fields.Nested(
        LastPollSchema, allow_none=True, metadata={"description": "null: not polled yet"}
    )
    failure = fields.Nested(
        TargetFailureSchema,
        allow_none=True,
        metadata={"description": "while its polls fail (as CollectionFailed said); else null"},
    )


class TargetListSchema(ma.Schema):
    targets = fields.List(fields.Nested(TargetSchema))


class TargetRefSchema(ma.Schema):
    server = fields.String()


class TargetRemovalSchema(ma.Schema):
    removed = fields.Nested(TargetRefSchema)
    position = fields.Integer(metadata={"description": "the log position of TargetRemoved"})


_change = TargetChangeSchema()


@blp.route("/targets", methods=["GET"])
@require("viewer")
@blp.arguments(NoQuery, location="query", as_kwargs=True)
@blp.doc(
    summary="The polled product servers",
    description="Every target in server name order, with its last poll. URLs are shown with "
    "their secrets masked (a user-info password, query parameters such as `token` or `sig`).",
)
@blp.alt_response(200, schema=TargetListSchema, success=True, description="The targets")
def list_targets():
    svc = services(current_app)
    targets = sorted(svc.fresh_state().targets.values(), key=lambda t: t.server)
    polls = _last_polls(svc)
    return {"targets": [_target_json(t, polls.get(t.server)) for t in targets]}


@blp.route("/targets/<server>", methods=["PUT"])
@blp.doc(
    summary="Create or change a target",
    description="`url` is the product's base address (http or https, with a host); its "
    "`/health` is polled every `interval_seconds` (1-3600, default 30), each poll given "
    "`timeout_seconds` (1-60, default 5, shorter than the interval). Settings not named keep "
    "their value. Records `TargetConfigured` (nothing when nothing changes). 422 when a new "
    "target has no `url`, when the timeout would not stay below the interval (counting the "
    "settings in force), or when `url` is not http(s) with a host name or address.",
    requestBody={
        "required": True,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/TargetChange"}}},
    },
)
@blp.response(200, TargetSchema)
@require("admin")
@blp.arguments(NoQuery, location="query", as_kwargs=True)
def put_target(server: str):
    try:
        SERVER_NAME(server)
    except ValidationError as err:
        raise invalid({"server": err.messages}) from None
    try:
        settings = _change.load(json_body())
    except ValidationError as err:
        raise invalid(err.messages) from None
    svc = services(current_app)
    try:
        target, _ = svc.commands.configure_target(server, settings, request_metadata())
    except InvalidConfiguration as exc:
        raise Problem(
            422, "the target is not coherent: see errors", errors=exc.errors, kind="validation"
        ) from None
    return _target_json(target, _last_polls(svc, server).get(server))


@blp.route("/targets/<server>", methods=["DELETE"])
@blp.doc(
    summary="Stop polling a server",
    description="Records `TargetRemoved`. The server stays in the cluster until its components "
    "are removed.",
)
@blp.response(200, TargetRemovalSchema)
@require("admin")
@blp.arguments(NoQuery, location="query", as_kwargs=True)
def delete_target(server: str):
    try:
        SERVER_NAME(server)
    except ValidationError:
        raise Problem(404, f"{server!r} is not a polled target", kind="not-found") from None
    try:
        svc = services(current_app)
        recorded = svc.commands.remove_target(server, request_metadata())
    except NotATarget as exc:
        raise Problem(404, str(exc), kind="not-found") from None
    poll_log.forget(svc.engine, server)
    return {"removed": {"server": server}, "position": recorded.position}


def _last_polls(svc: Services, server: str | None = None) -> dict[str, dict[str, Any]]:
    """The last poll of every target (or of `server`), as GET /targets shows it."""
    return {
        name: {"at": p.at, "ok": p.ok, "error": p.error, "seconds": p.seconds}
        for name, p in poll_log.last_polls(svc.engine, server).items()
    }


def _target_json(target: TargetState, last_poll: dict[str, Any] | None) -> dict[str, Any]:
    failure = target.failure
    return {
        "server": target.server,
        "url": masked(target.url),
        "interval_seconds": target.interval_seconds,
        "timeout_seconds": target.timeout_seconds,
        "verify_tls": target.verify_tls,
        "last_poll": last_poll,
        "failure": failure
        and {"kind": failure.kind, "detail": failure.detail, "since": failure.at},
    }
