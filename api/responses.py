"""What the read endpoints answer, for the OpenAPI document only.

The views build these payloads themselves (the cluster view is served from pre-rendered bytes,
the log straight from the store's records), so the schemas are attached with
`alt_response(success=True)`, which documents a response without serializing through it.
Fields that can be null say so; objects whose content depends on the event type or the report
kind are documented as objects.
"""

from __future__ import annotations

import marshmallow as ma
from marshmallow import fields

from api.schemas import ConfigurationOutSchema


def _null(field_type, **kwargs):
    return field_type(allow_none=True, **kwargs)


class AsOfSchema(ma.Schema):
    position = fields.Integer(metadata={"description": "the last log position in the view"})
    time = fields.AwareDateTime(metadata={"description": "the time staleness was judged at"})


class HeartbeatStateSchema(ma.Schema):
    last_at = _null(fields.AwareDateTime)
    age_seconds = _null(fields.Float)
    state = fields.String(metadata={"enum": ["current", "stale"]})
    stale_since = _null(fields.AwareDateTime)
    deadline = _null(fields.AwareDateTime)
    last_position = _null(fields.Integer)
    sender_clock_skew_seconds = _null(fields.Float)


class ComponentRowSchema(ma.Schema):
    name = fields.String(metadata={"enum": ["web", "service"]})
    status = _null(fields.String)
    verification = _null(fields.String)
    product = _null(fields.String)
    product_version = _null(fields.String)
    message = _null(fields.String)
    health = fields.String(metadata={"enum": ["ok", "warning", "error"]})
    reasons = fields.List(fields.String())
    heartbeat = fields.Nested(HeartbeatStateSchema)


class ServerRowSchema(ma.Schema):
    name = fields.String()
    os = _null(fields.String)
    os_version = _null(fields.String)
    ip = _null(fields.String)
    health = fields.String(metadata={"enum": ["ok", "warning", "error"]})
    reasons = fields.List(fields.String())
    version_in_sync = _null(fields.Boolean)
    encryption_key_in_sync = _null(fields.Boolean)
    components = fields.List(fields.Nested(ComponentRowSchema))


class ClusterPageSchema(ma.Schema):
    server = _null(fields.String)
    after = _null(fields.String)
    limit = _null(fields.Integer)
    returned = fields.Integer(metadata={"description": "servers on this page"})
    next_after = _null(fields.String, metadata={"description": "`after` of the next page"})
    next = _null(fields.String, metadata={"description": "the next page's link"})


class ClusterViewSchema(ma.Schema):
    as_of = fields.Nested(AsOfSchema)
    configuration = fields.Nested(ConfigurationOutSchema)
    server_count = fields.Integer()
    servers = fields.List(fields.Nested(ServerRowSchema))
    page = fields.Nested(
        ClusterPageSchema, metadata={"description": "only with `server`, `after` or `limit`"}
    )


class EventSchema(ma.Schema):
    position = fields.Integer()
    event_id = fields.UUID()
    type = fields.String()
    stream = fields.String(metadata={"description": "`server/component`, `cluster` or `monitor`"})
    version = fields.Integer(metadata={"description": "the event's number within its stream"})
    schema_version = fields.Integer()
    recorded_at = fields.AwareDateTime(metadata={"description": "our clock"})
    occurred_at = fields.AwareDateTime(metadata={"description": "the sender's clock"})
    data = fields.Dict(metadata={"description": "the event's payload (by type)"})
    metadata = fields.Dict(metadata={"description": "actor, role, source, correlation_id"})


class EventsPageSchema(ma.Schema):
    events = fields.List(fields.Nested(EventSchema))
    next_after = fields.Integer(metadata={"description": "`after` of the next page"})


class TransitionSchema(ma.Schema):
    at = fields.AwareDateTime()
    position = fields.Integer()
    event = fields.String(metadata={"description": "the event type that caused it"})
    reason = fields.String()
    state = fields.String()
    health = fields.String()
    reasons = fields.List(fields.String())


class HistorySchema(ma.Schema):
    server = fields.String()
    component = fields.String()
    transitions = fields.List(fields.Nested(TransitionSchema))


class ComponentRefSchema(ma.Schema):
    server = fields.String()
    component = fields.String()


class RemovalSchema(ma.Schema):
    removed = fields.Nested(ComponentRefSchema)
    position = fields.Integer(metadata={"description": "the log position of the removal"})


class AnswerSchema(ma.Schema):
    """An object whose fields the endpoint's description lists."""

    class Meta:
        unknown = ma.INCLUDE  # documented as an open object, not as an empty one


EVENT_STREAM = {
    "description": "Server-Sent Events: `id:` position, `event:` type, `data:` the event",
    "content": {"text/event-stream": {"schema": {"type": "string"}}},
}
REPORT_FORMATS = {
    "description": "The report, as JSON (default), CSV or HTML (`?format=` or `Accept`)",
    "content": {
        "application/json": {"schema": {"type": "object"}},
        "text/csv": {"schema": {"type": "string"}},
        "text/html": {"schema": {"type": "string"}},
    },
}
