"""Maintenance windows (API.md v1.1, "Notifications": silences).

A silence spares the channels the messages it matches while it lasts, never the events: an
outage in a window is still recorded, shown and counted. Creating and ending one are events
with the admin in their metadata (SilenceCreated / SilenceEnded); the list is the read model's.
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import marshmallow as ma
from flask import current_app
from marshmallow import ValidationError, fields, validate

from api.auth import require
from api.fields import Instant
from api.heartbeats import json_body, request_metadata
from api.problems import Problem, invalid
from api.query import Blueprint, NoQuery
from api.schemas import SERVER_NAME
from api.services import services
from domain.decisions import InvalidConfiguration, NotASilence
from domain.events import COMPONENTS, SilenceCreated
from domain.state import SilenceState

blp = Blueprint("silences", __name__, url_prefix="/api/v1", description="Maintenance windows")

MAX_DURATION_SECONDS = 366 * 86_400
SILENCE_ID = validate.Regexp(r"^[A-Za-z0-9_-]{1,100}(?!\n)$")


class SilenceCreationSchema(ma.Schema):
    """The body of POST /silences: what it covers and when. The end is `ends_at` or
    `duration_seconds` after `starts_at` (exactly one of the two)."""

    class Meta:
        unknown = ma.RAISE

    servers = fields.List(
        fields.String(validate=SERVER_NAME),
        allow_none=True,
        load_default=None,
        validate=validate.Length(min=1, error="name at least one server, or null for all"),
        metadata={"description": "these servers only; null (default): every server"},
    )
    components = fields.List(
        fields.String(validate=validate.OneOf(COMPONENTS)),
        allow_none=True,
        load_default=None,
        validate=validate.Length(min=1, error="name at least one component, or null for all"),
        metadata={"description": "these components only (web, service); null: both"},
    )
    starts_at = Instant(metadata={"description": "default: now"})
    ends_at = Instant()
    duration_seconds = fields.Integer(
        validate=validate.Range(60, MAX_DURATION_SECONDS),
        metadata={"description": "instead of ends_at: 60 s to a year after starts_at"},
    )
    comment = fields.String(allow_none=True, load_default=None, validate=validate.Length(max=500))

    @ma.validates_schema
    def one_end(self, data, **kwargs):
        given = [name for name in ("ends_at", "duration_seconds") if name in data]
        if len(given) != 1:
            raise ValidationError("give exactly one of ends_at and duration_seconds", "ends_at")


class SilenceSchema(ma.Schema):
    id = fields.String()
    servers = fields.List(fields.String(), allow_none=True)
    components = fields.List(fields.String(), allow_none=True)
    starts_at = fields.AwareDateTime()
    ends_at = fields.AwareDateTime(metadata={"description": "earlier than set if ended early"})
    comment = fields.String(allow_none=True)


class SilenceListSchema(ma.Schema):
    silences = fields.List(fields.Nested(SilenceSchema))


class SilenceListQuerySchema(ma.Schema):
    class Meta:
        unknown = ma.RAISE

    all = fields.Boolean(load_default=False, metadata={"description": "true: ended ones too"})


class SilenceEndSchema(ma.Schema):
    ended = fields.Nested(SilenceSchema)
    position = fields.Integer(metadata={"description": "the log position of SilenceEnded"})


_creation = SilenceCreationSchema()


@blp.route("/silences", methods=["GET"])
@require("viewer")
@blp.arguments(SilenceListQuerySchema, location="query", as_kwargs=True)
@blp.doc(
    summary="Maintenance windows",
    description="Active and future silences in start order; `all=true` also the ended ones.",
)
@blp.alt_response(200, schema=SilenceListSchema, success=True, description="The silences")
def list_silences(all: bool):  # the query parameter's name
    svc = services(current_app)
    now = svc.clock()
    silences = [s for s in svc.fresh_state().silences.values() if all or s.ends_at > now]
    silences.sort(key=lambda s: (s.starts_at, s.id))
    return {"silences": [silence_json(s) for s in silences]}


@blp.route("/silences", methods=["POST"])
@blp.doc(
    summary="Start a maintenance window",
    description="Deliveries about the servers and components it names are suppressed from "
    "`starts_at` (default now) to `ends_at`, or for `duration_seconds`: give one of the two. "
    "Records `SilenceCreated`. 422 when it would end before it starts or end in the past.",
    requestBody={
        "required": True,
        "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/SilenceCreation"}}
        },
    },
)
@blp.response(201, SilenceSchema)
@require("admin")
@blp.arguments(NoQuery, location="query", as_kwargs=True)
def create_silence():
    try:
        body = _creation.load(json_body())
    except ValidationError as err:
        raise invalid(err.messages) from None
    svc = services(current_app)
    starts_at = body.get("starts_at") or svc.clock()
    ends_at = body.get("ends_at") or starts_at + timedelta(seconds=body["duration_seconds"])
    created = SilenceCreated(
        id=uuid.uuid4().hex,
        starts_at=starts_at,
        ends_at=ends_at,
        servers=_unique(body["servers"]),
        components=_unique(body["components"]),
        comment=body["comment"],
    )
    try:
        svc.commands.create_silence(created, request_metadata())
    except InvalidConfiguration as exc:
        raise Problem(
            422, "the silence is not coherent: see errors", errors=exc.errors, kind="validation"
        ) from None
    return {
        "id": created.id,
        "servers": created.servers,
        "components": created.components,
        "starts_at": created.starts_at,
        "ends_at": created.ends_at,
        "comment": created.comment,
    }


@blp.route("/silences/<silence_id>", methods=["DELETE"])
@blp.doc(
    summary="End a maintenance window now",
    description="Records `SilenceEnded`; 404 when there is no such silence or it is over.",
)
@blp.response(200, SilenceEndSchema)
@require("admin")
@blp.arguments(NoQuery, location="query", as_kwargs=True)
def end_silence(silence_id: str):
    svc = services(current_app)
    try:
        SILENCE_ID(silence_id)
        recorded = svc.commands.end_silence(silence_id, request_metadata())
    except (ValidationError, NotASilence):
        raise Problem(
            404, f"there is no active or future silence {silence_id!r}", kind="not-found"
        ) from None
    ended = svc.fresh_state().silences[silence_id]
    return {"ended": silence_json(ended), "position": recorded.position}


def silence_json(silence: SilenceState) -> dict[str, Any]:
    return {
        "id": silence.id,
        "servers": silence.servers,
        "components": silence.components,
        "starts_at": silence.starts_at,
        "ends_at": silence.ends_at,
        "comment": silence.comment,
    }


def _unique(names: list[str] | None) -> list[str] | None:
    return None if names is None else list(dict.fromkeys(names))
