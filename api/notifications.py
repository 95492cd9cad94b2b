"""Notification channels and their deliveries (API.md v1.1, "Notifications").

A channel is configuration, so every change is an event with the admin in its metadata
(ChannelConfigured / ChannelRemoved), decided under the append lock (eventstore/commands.py).
Its URL is a credential: the event holds it masked for people (`notify.urls.masked_target`)
and sealed for the sender (`notify.secrets.seal`, keyed from CLUSTERMON_SECRET_KEY), so neither
the API, the page nor the log ever shows it. Sealing under the development default key would
protect nothing (the key is in the source), so channels are refused until a real key is set.

Deliveries are read from the notifier's outbox table (notify/tables.py), which the follower
fills and the sender works through; a test message is sent here and now, and recorded there
too, so the page shows it with the others.
"""

from __future__ import annotations

import uuid
from typing import Any

import marshmallow as ma
import orjson
import sqlalchemy as sa
from flask import current_app
from marshmallow import ValidationError, fields, validate

from api.auth import require
from api.heartbeats import json_body, request_metadata
from api.problems import Problem, invalid
from api.query import Blueprint, NoQuery, QueryInteger
from api.schemas import MAX_POSITION, SERVER_NAME
from api.services import services
from api.settings import DEFAULTS
from domain.decisions import InvalidConfiguration, NotAChannel
from domain.events import TRIGGERS, ChannelConfigured
from domain.state import ChannelState
from notify import messages, secrets, urls
from notify.tables import deliveries
from notify.transport import DeliveryError, deliver

blp = Blueprint(
    "notifications",
    __name__,
    url_prefix="/api/v1",
    description="Notification channels and deliveries",
)

CHANNEL_NAME = validate.Regexp(
    r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}(?!\n)$",
    error="must be 1-100 letters, digits, '.', '_' or '-', starting with a letter or digit",
)
MAX_URL = 2000


def _usable_url(url: str) -> None:
    problem = urls.check(url)
    if problem is not None:
        raise ValidationError(problem)


class ChannelChangeSchema(ma.Schema):
    """The body of PUT /notifications/channels/{name}: the whole channel (a PUT replaces it)."""

    class Meta:
        unknown = ma.RAISE

    url = fields.String(
        required=True,
        validate=[validate.Length(1, MAX_URL), _usable_url],
        metadata={
            "description": "https://… (clustermon's JSON webhook) or an Apprise URL "
            "(mailto://…, slack://…, msteams://…, json://…); stored sealed, never shown"
        },
    )
    on = fields.List(
        fields.String(validate=validate.OneOf(TRIGGERS)),
        required=True,
        validate=validate.Length(min=1, error="name at least one trigger"),
        metadata={"description": f"what to send: any of {', '.join(TRIGGERS)}"},
    )
    servers = fields.List(
        fields.String(validate=SERVER_NAME),
        allow_none=True,
        load_default=None,
        metadata={"description": "only about these servers; null: every server"},
    )
    min_outage_seconds = fields.Integer(
        load_default=0,
        validate=validate.Range(0, 7 * 86_400),
        metadata={"description": "send `stale` only once an outage lasted this long"},
    )
    enabled = fields.Boolean(load_default=True)


class ChannelSchema(ma.Schema):
    name = fields.String()
    kind = fields.String(metadata={"description": '"webhook" (http/https) or the Apprise scheme'})
    target = fields.String(metadata={"description": "the URL with its secrets masked"})
    on = fields.List(fields.String())
    servers = fields.List(fields.String(), allow_none=True)
    enabled = fields.Boolean()
    min_outage_seconds = fields.Integer()


class ChannelListSchema(ma.Schema):
    channels = fields.List(fields.Nested(ChannelSchema))


class ChannelRefSchema(ma.Schema):
    name = fields.String()


class ChannelRemovalSchema(ma.Schema):
    removed = fields.Nested(ChannelRefSchema)
    position = fields.Integer(metadata={"description": "the log position of ChannelRemoved"})


class DeliverySchema(ma.Schema):
    seq = fields.Integer()
    id = fields.String()
    channel = fields.String()
    trigger = fields.String()
    server = fields.String(allow_none=True)
    component = fields.String(allow_none=True)
    source_position = fields.Integer(allow_none=True)
    state = fields.String(metadata={"description": "pending, sent, failed or suppressed"})
    attempts = fields.Integer()
    last_error = fields.String(allow_none=True)
    suppressed_by = fields.String(allow_none=True)
    created_at = fields.AwareDateTime()
    sent_at = fields.AwareDateTime(allow_none=True)


class DeliveryPageSchema(ma.Schema):
    deliveries = fields.List(fields.Nested(DeliverySchema))
    next_after = fields.Integer(metadata={"description": "the `after` of the next page"})


class DeliveriesQuerySchema(ma.Schema):
    class Meta:
        unknown = ma.RAISE

    after = QueryInteger(load_default=0, validate=validate.Range(0, MAX_POSITION))
    limit = QueryInteger(load_default=100, validate=validate.Range(1, 1000))
    channel = fields.String(validate=CHANNEL_NAME)


_change = ChannelChangeSchema()


@blp.route("/notifications/channels", methods=["GET"])
@require("viewer")
@blp.arguments(NoQuery, location="query", as_kwargs=True)
@blp.doc(
    summary="The notification channels",
    description="Every channel in name order. `target` is the URL with its secrets masked "
    "(a webhook shows only its host; an Apprise URL Apprise's own privacy form).",
)
@blp.alt_response(200, schema=ChannelListSchema, success=True, description="The channels")
def list_channels():
    state = services(current_app).fresh_state()
    channels = sorted(state.channels.values(), key=lambda c: c.name)
    return {"channels": [channel_json(c) for c in channels]}


@blp.route("/notifications/channels/<name>", methods=["PUT"])
@blp.doc(
    summary="Create or change a notification channel",
    description="The whole channel: `url` and `on` are required, `servers` (default null: "
    "every server), `min_outage_seconds` (default 0) and `enabled` (default true) optional. "
    "The URL is stored sealed with CLUSTERMON_SECRET_KEY and never shown again; refused (409) "
    "while that key is the development default. Records `ChannelConfigured`. 422 when the URL "
    "is not one clustermon can send to (http/https, or an Apprise scheme with the parts it "
    "needs).",
    requestBody={
        "required": True,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ChannelChange"}}},
    },
)
@blp.response(200, ChannelSchema)
@require("admin")
@blp.arguments(NoQuery, location="query", as_kwargs=True)
def put_channel(name: str):
    _valid_name(name)
    try:
        body = _change.load(json_body())
    except ValidationError as err:
        raise invalid(err.messages) from None
    secret_key = _sealing_key()
    url = body["url"]
    configured = ChannelConfigured(
        name=name,
        kind=urls.kind_of(url),
        target=urls.masked_target(url),
        url_encrypted=secrets.seal(url, secret_key),
        on=list(dict.fromkeys(body["on"])),  # each once, in the order given
        servers=body["servers"],
        min_outage_seconds=body["min_outage_seconds"],
        enabled=body["enabled"],
    )
    try:
        services(current_app).commands.configure_channel(configured, request_metadata())
    except InvalidConfiguration as exc:
        raise Problem(
            422, "the channel is not coherent: see errors", errors=exc.errors, kind="validation"
        ) from None
    return {
        "name": configured.name,
        "kind": configured.kind,
        "target": configured.target,
        "on": configured.on,
        "servers": configured.servers,
        "enabled": configured.enabled,
        "min_outage_seconds": configured.min_outage_seconds,
    }


@blp.route("/notifications/channels/<name>", methods=["DELETE"])
@blp.doc(summary="Remove a notification channel", description="Records `ChannelRemoved`.")
@blp.response(200, ChannelRemovalSchema)
@require("admin")
@blp.arguments(NoQuery, location="query", as_kwargs=True)
def delete_channel(name: str):
    try:
        CHANNEL_NAME(name)
        recorded = services(current_app).commands.remove_channel(name, request_metadata())
    except (ValidationError, NotAChannel):
        raise Problem(
            404, f"there is no notification channel named {name!r}", kind="not-found"
        ) from None
    return {"removed": {"name": name}, "position": recorded.position}


@blp.route("/notifications/channels/<name>/test", methods=["POST"])
@blp.doc(
    summary="Send a test message through a channel now",
    description="Sends a message with trigger `test` at once (not through the queue) and "
    "records it among the deliveries: 200 with the delivery when the channel took it, 502 "
    "problem+json with the channel's error otherwise (recorded as a failed delivery).",
)
@blp.response(200, DeliverySchema)
@require("admin")
@blp.arguments(NoQuery, location="query", as_kwargs=True)
def test_channel(name: str):
    svc = services(current_app)
    try:
        CHANNEL_NAME(name)
    except ValidationError:
        raise Problem(
            404, f"there is no notification channel named {name!r}", kind="not-found"
        ) from None
    channel = svc.commands.channel(name)
    if channel is None:
        raise Problem(404, f"there is no notification channel named {name!r}", kind="not-found")
    now = svc.clock()
    delivery_id = uuid.uuid4()
    payload = messages.test(now, messages.public_url())
    error = _send(channel, {"id": str(delivery_id), **payload})
    row = {
        "id": delivery_id,
        "channel": name,
        "trigger": "test",
        "server": None,
        "component": None,
        "source_position": None,
        "state": "failed" if error else "sent",
        "attempts": 1,
        "last_error": error,
        "suppressed_by": None,
        "payload": orjson.dumps(payload).decode(),
        "created_at": now,
        "next_attempt_at": None,
        "claimed_until": None,
        "sent_at": None if error else svc.clock(),
    }
    with svc.engine.begin() as conn:
        conn.execute(deliveries.insert().values(**row))
        recorded = conn.execute(sa.select(deliveries).where(deliveries.c.id == delivery_id)).one()
    if error:
        raise Problem(502, f"channel {name!r} did not take the test message: {error}")
    return delivery_json(recorded._mapping)


@blp.route("/notifications/deliveries", methods=["GET"])
@require("viewer")
@blp.arguments(DeliveriesQuerySchema, location="query", as_kwargs=True)
@blp.doc(
    summary="Deliveries in `seq` order, paged with after/limit",
    description="What each channel was sent, is to be sent, failed to get or was spared "
    "(`suppressed_by`: a silence, a flap). `channel` keeps one channel's.",
)
@blp.alt_response(200, schema=DeliveryPageSchema, success=True, description="One page")
def list_deliveries(after: int, limit: int, channel: str | None = None):
    query = sa.select(deliveries).where(deliveries.c.seq > after)
    if channel is not None:
        query = query.where(deliveries.c.channel == channel)
    query = query.order_by(deliveries.c.seq).limit(limit)
    with services(current_app).engine.connect() as conn:
        rows = conn.execute(query).all()
    page = [delivery_json(row._mapping) for row in rows]
    return {"deliveries": page, "next_after": page[-1]["seq"] if page else after}


def channel_json(channel: ChannelState) -> dict[str, Any]:
    return {
        "name": channel.name,
        "kind": channel.kind,
        "target": channel.target,
        "on": list(channel.on),
        "servers": channel.servers,
        "enabled": channel.enabled,
        "min_outage_seconds": channel.min_outage_seconds,
    }


def delivery_json(row: Any) -> dict[str, Any]:
    return {
        "seq": row["seq"],
        "id": str(row["id"]),
        "channel": row["channel"],
        "trigger": row["trigger"],
        "server": row["server"],
        "component": row["component"],
        "source_position": row["source_position"],
        "state": row["state"],
        "attempts": row["attempts"],
        "last_error": row["last_error"],
        "suppressed_by": row["suppressed_by"],
        "created_at": row["created_at"],
        "sent_at": row["sent_at"],
    }


def _valid_name(name: str) -> None:
    try:
        CHANNEL_NAME(name)
    except ValidationError as err:
        raise invalid({"name": err.messages}) from None


def _sealing_key() -> str:
    key = current_app.config["SECRET_KEY"]
    if key == DEFAULTS["SECRET_KEY"]:
        raise Problem(
            409,
            "set CLUSTERMON_SECRET_KEY to a secret of your own before adding channels: their "
            "URLs hold credentials, sealed with that key, and the development default is "
            "public",
            kind="secret-key-not-set",
        )
    return key


def _send(channel: ChannelState, message: dict[str, Any]) -> str | None:
    """Deliver `message` through `channel` now: None when it was taken, else why not, with
    no secret in the reason (the URL is replaced by its masked form wherever it shows)."""
    try:
        url = secrets.unseal(channel.url_encrypted, current_app.config["SECRET_KEY"])
    except secrets.Unreadable as exc:
        return str(exc)
    try:
        deliver(url, message)
    except DeliveryError as exc:
        return str(exc).replace(url, channel.target) or "the channel refused the message"
    return None
