"""What the read endpoints answer, for the OpenAPI document only.

The views build these payloads themselves (the cluster view is served from pre-rendered bytes,
the log straight from the store's records), so the schemas are attached with
`alt_response(success=True)`, which documents a response without serializing through it.
Fields that can be null say so. Every answer names its members, so that generated clients get
typed models: an event is one schema per type with `type` as the discriminator (`document`),
the audit, explain and report answers have their own schemas. A response schema is closed
(additionalProperties: false): a new member is documented here as it is added.
"""

from __future__ import annotations

import marshmallow as ma
from marshmallow import fields

from api.event_schemas import EVENT_SCHEMAS
from api.schemas import ConfigurationOutSchema, ConfigurationPatchSchema


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


class EventMetadataSchema(ma.Schema):
    """Who and what caused the event (other members may appear: add, never rename)."""

    class Meta:
        unknown = ma.INCLUDE  # a free bag by design: documented as an open object

    actor = _null(fields.String, metadata={"description": "the token's name, or the process"})
    role = _null(fields.String)
    source = _null(fields.String, metadata={"description": "the sender's address"})
    correlation_id = _null(fields.String, metadata={"description": "X-Request-ID as sent"})


class _EventEnvelopeSchema(ma.Schema):
    """What every event carries; `type` names the payload's schema (the discriminator)."""

    position = fields.Integer(required=True)
    event_id = fields.UUID(required=True)
    stream = fields.String(
        required=True, metadata={"description": "`server/component`, `cluster`, `monitor`, ..."}
    )
    version = fields.Integer(
        required=True, metadata={"description": "the event's number within its stream"}
    )
    schema_version = fields.Integer(required=True)
    recorded_at = fields.AwareDateTime(required=True, metadata={"description": "our clock"})
    occurred_at = fields.AwareDateTime(
        required=True, metadata={"description": "the sender's clock"}
    )
    metadata = fields.Nested(EventMetadataSchema, required=True)


def _shown_payload(name: str, schema: type[ma.Schema]) -> type[ma.Schema]:
    """The payload as readers get it: what the log keeps minus what is never shown
    (`load_only` fields such as a channel's sealed URL)."""
    shown = {k: f for k, f in schema._declared_fields.items() if not f.load_only}
    return ma.Schema.from_dict(shown, name=f"{name}Data")


def _event_variant(name: str, schema: type[ma.Schema]) -> type[ma.Schema]:
    return type(
        f"{name}EventSchema",
        (_EventEnvelopeSchema,),
        {
            "type": fields.String(required=True, metadata={"enum": [name]}),
            "data": fields.Nested(_shown_payload(name, schema), required=True),
            "__doc__": f"A `{name}` event.",
        },
    )


EVENT_VARIANTS = {name: _event_variant(name, schema) for name, schema in EVENT_SCHEMAS.items()}
EVENT_REF = {"$ref": "#/components/schemas/Event"}


def document(spec) -> None:
    """Register `Report` (answered in three media types: `report_formats`) and `Event`: one
    schema per event type, `type` as the discriminator (clients get one typed model per
    type; GET /events and the live stream refer to it)."""
    spec.components.schema("Report", schema=ReportSchema)
    # What marshmallow cannot declare about the PUT /cluster/configuration body.
    spec.components.schemas["ConfigurationPatch"].update(
        minProperties=1, description=ConfigurationPatchSchema.DESCRIPTION
    )
    # POST /silences: the end is `ends_at` or `duration_seconds`, exactly one of the two.
    spec.components.schemas["SilenceCreation"]["oneOf"] = [
        {"required": ["ends_at"], "not": {"required": ["duration_seconds"]}},
        {"required": ["duration_seconds"], "not": {"required": ["ends_at"]}},
    ]
    mapping = {}
    for name, variant in EVENT_VARIANTS.items():
        spec.components.schema(f"{name}Event", schema=variant)
        mapping[name] = f"#/components/schemas/{name}Event"
    # apispec has no field for a $ref to a raw component: point the items at it here.
    spec.components.schemas["EventsPage"]["properties"]["events"]["items"] = EVENT_REF
    spec.components.schema(
        "Event",
        component={
            "oneOf": [{"$ref": ref} for ref in mapping.values()],
            "discriminator": {"propertyName": "type", "mapping": mapping},
        },
    )


class EventsPageSchema(ma.Schema):
    events = fields.List(fields.Raw(), metadata={"description": "in position order"})
    next_after = fields.Integer(metadata={"description": "`after` of the next page"})


class TransitionSchema(ma.Schema):
    at = fields.AwareDateTime()
    position = fields.Integer()
    event = fields.String(metadata={"description": "the event type that caused it"})
    reason = fields.String()
    state = fields.String(metadata={"enum": ["current", "stale", "removed"]})
    health = _null(fields.String, metadata={"description": "null once removed"})
    reasons = fields.List(fields.String())
    status = _null(fields.String, metadata={"description": "as last reported"})
    verification = _null(fields.String)
    product_version = _null(fields.String)


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


# --- audit and reports ---------------------------------------------------------------------


class PeriodSchema(ma.Schema):
    since = fields.AwareDateTime(required=True, metadata={"description": "inclusive"})
    until = fields.AwareDateTime(required=True, metadata={"description": "exclusive"})


class ReportPeriodSchema(PeriodSchema):
    seconds = _null(fields.Float)


class EpisodeConfigurationSchema(ma.Schema):
    version = _null(fields.Integer)
    timeout_seconds = _null(fields.Integer)
    set_by_position = _null(fields.Integer)


class LastHeartbeatRefSchema(ma.Schema):
    at = _null(fields.AwareDateTime)
    position = _null(fields.Integer)


class EpisodeSchema(ma.Schema):
    """One outage of a component: from the logical expiry (or the removal) to the recovery."""

    server = fields.String(required=True)
    component = fields.String(required=True)
    cause = fields.String(required=True, metadata={"description": "timeout, removed, ..."})
    start = fields.AwareDateTime(required=True)
    end = _null(fields.AwareDateTime, required=True)
    end_cause = _null(fields.String, metadata={"description": "recovered, removed, ..."})
    ongoing = fields.Boolean(required=True)
    duration_seconds = fields.Float(required=True)
    detector = _null(fields.String)
    inferred = fields.Boolean()
    removed_at = _null(fields.AwareDateTime)
    configuration = fields.Nested(EpisodeConfigurationSchema)
    last_heartbeat = fields.Nested(LastHeartbeatRefSchema)
    positions = fields.List(fields.Integer(), metadata={"description": "the events it is from"})


class FailoverSchema(ma.Schema):
    at = fields.AwareDateTime(required=True)
    server = fields.String(required=True)
    component = fields.String(required=True)
    recovered_at = _null(fields.AwareDateTime)
    removed_at = _null(fields.AwareDateTime, metadata={"description": "ended by a removal"})
    outage_seconds = fields.Float()
    taken_over_by = fields.List(fields.String(), metadata={"description": "servers"})
    episode = fields.Nested(EpisodeSchema)
    positions = fields.List(fields.Integer())


class OutageComponentSchema(ma.Schema):
    server = fields.String()
    component = fields.String()
    cause = fields.String()


class ClusterOutageSchema(ma.Schema):
    """No current Service component at all."""

    start = fields.AwareDateTime(required=True)
    end = _null(fields.AwareDateTime, required=True)
    ongoing = fields.Boolean(required=True)
    duration_seconds = fields.Float(required=True)
    components = fields.List(fields.Nested(OutageComponentSchema))
    positions = fields.List(fields.Integer())


class TotalsSchema(ma.Schema):
    episodes = fields.Integer()
    outage_seconds = fields.Float()
    failovers = fields.Integer()
    cluster_outages = fields.Integer()
    cluster_outage_seconds = fields.Float()


class OutagesSchema(ma.Schema):
    period = fields.Nested(PeriodSchema, required=True)
    position = fields.Integer(required=True, metadata={"description": "the last event read"})
    summary = fields.Nested(TotalsSchema, required=True)
    outages = fields.List(fields.Nested(EpisodeSchema), required=True)
    cluster_outages = fields.List(fields.Nested(ClusterOutageSchema), required=True)


class FailoversSchema(ma.Schema):
    period = fields.Nested(PeriodSchema, required=True)
    position = fields.Integer(required=True)
    failovers = fields.List(fields.Nested(FailoverSchema), required=True)
    cluster_outages = fields.List(fields.Nested(ClusterOutageSchema), required=True)


class TimeoutSettingsSchema(ma.Schema):
    stale_timeout_seconds = fields.Integer()
    web_stale_timeout_seconds = fields.Integer()


class WhatIfSettingsSchema(ma.Schema):
    actual = fields.Nested(TimeoutSettingsSchema)
    what_if = fields.Nested(TimeoutSettingsSchema)


class WhatIfTotalsSchema(ma.Schema):
    actual = fields.Nested(TotalsSchema)
    what_if = fields.Nested(TotalsSchema)


class ComponentTotalsSchema(ma.Schema):
    episodes = fields.Integer()
    outage_seconds = fields.Float()


class WhatIfComponentSchema(ma.Schema):
    server = fields.String()
    component = fields.String()
    actual = fields.Nested(ComponentTotalsSchema)
    what_if = fields.Nested(ComponentTotalsSchema)


class ListingSchema(ma.Schema):
    episodes = fields.List(fields.Nested(EpisodeSchema))
    failovers = fields.List(fields.Nested(FailoverSchema))
    cluster_outages = fields.List(fields.Nested(ClusterOutageSchema))


class WhatIfSchema(ma.Schema):
    period = fields.Nested(PeriodSchema, required=True)
    position = fields.Integer(required=True)
    settings = fields.Nested(WhatIfSettingsSchema, required=True)
    summary = fields.Nested(WhatIfTotalsSchema, required=True)
    components = fields.List(fields.Nested(WhatIfComponentSchema), required=True)
    actual = fields.Nested(ListingSchema, required=True)
    what_if = fields.Nested(ListingSchema, required=True)


class EventRefSchema(ma.Schema):
    position = fields.Integer()
    recorded_at = fields.AwareDateTime()
    actor = _null(fields.String)


class ExplainHeartbeatSchema(ma.Schema):
    at = fields.AwareDateTime()
    position = fields.Integer()
    sent_at = fields.AwareDateTime()
    status = _null(fields.String)
    verification = _null(fields.String)
    product_version = _null(fields.String)


class SetBySchema(EventRefSchema):
    changes = fields.Dict(keys=fields.String(), values=fields.Raw())


class ExplainTimeoutSchema(ma.Schema):
    setting = fields.String()
    seconds = fields.Integer()
    configuration_version = fields.Integer()
    set_by = fields.Nested(SetBySchema, allow_none=True, metadata={"description": "null: default"})


class MonitorGapSchema(EventRefSchema):
    down_since = fields.AwareDateTime()
    resumed_at = fields.AwareDateTime()
    detector = fields.String()


class RemovalRefSchema(EventRefSchema):
    reason = _null(fields.String)


class RecoveryRefSchema(EventRefSchema):
    stale_since = fields.AwareDateTime()
    recovered_at = fields.AwareDateTime()
    outage_seconds = fields.Float()


class TimeoutRefSchema(EventRefSchema):
    expired_at = fields.AwareDateTime()
    detected_at = fields.AwareDateTime()
    detector = fields.String()
    timeout_seconds = fields.Integer()
    configuration_version = fields.Integer()
    last_heartbeat_position = _null(fields.Integer)


class ExplainCountsSchema(ma.Schema):
    removals = fields.Integer()
    recoveries = fields.Integer()
    timeouts = fields.Integer()


class ExplanationSchema(ma.Schema):
    """Why the component is in its state at `at`."""

    server = fields.String(required=True)
    component = fields.String(required=True)
    at = fields.AwareDateTime(required=True)
    as_of_position = fields.Integer(required=True)
    state = fields.String(metadata={"description": "current, stale or removed"})
    health = _null(fields.String)
    reasons = fields.List(fields.String())
    deadline = _null(fields.AwareDateTime)
    stale_since = _null(fields.AwareDateTime)
    explanation = fields.String(metadata={"description": "the chain, in one sentence"})
    last_heartbeat = fields.Nested(ExplainHeartbeatSchema, allow_none=True)
    timeout = fields.Nested(ExplainTimeoutSchema)
    monitor_gap = fields.Nested(MonitorGapSchema, allow_none=True)
    timed_out_by = fields.Nested(TimeoutRefSchema, allow_none=True)
    removals = fields.List(fields.Nested(RemovalRefSchema))
    recoveries = fields.List(fields.Nested(RecoveryRefSchema))
    timeouts = fields.List(fields.Nested(TimeoutRefSchema))
    counts = fields.Nested(ExplainCountsSchema)


class ReportSummarySchema(ma.Schema):
    id = fields.Integer(required=True)
    kind = fields.String(required=True, metadata={"description": "daily, weekly or on_demand"})
    period = fields.Nested(PeriodSchema, required=True)
    position = fields.Integer(required=True)
    computed_at = fields.AwareDateTime(required=True)
    requested_by = _null(fields.String)


class ReportListSchema(ma.Schema):
    reports = fields.List(fields.Nested(ReportSummarySchema), required=True)
    next_before = _null(fields.Integer, required=True, metadata={"description": "next page"})


class ReportComponentSchema(ma.Schema):
    server = fields.String()
    component = fields.String()
    observed_seconds = _null(fields.Float)
    uptime_percent = _null(fields.Float)
    outages = fields.Integer()
    outage_seconds = _null(fields.Float)
    mttr_seconds = _null(fields.Float)
    longest_outage_seconds = _null(fields.Float)
    failovers = fields.Integer()
    removals = fields.Integer()
    removed_seconds = _null(fields.Float)
    outages_during_maintenance = fields.Integer()


class ReportClusterSchema(ma.Schema):
    failovers = fields.Integer()
    cluster_outages = fields.Integer()
    cluster_outage_seconds = _null(fields.Float)
    longest_cluster_outage_seconds = _null(fields.Float)


class ReportServerSyncSchema(ma.Schema):
    server = fields.String()
    version_out_of_sync_periods = fields.Integer()
    version_out_of_sync_seconds = _null(fields.Float)
    key_out_of_sync_periods = fields.Integer()
    key_out_of_sync_seconds = _null(fields.Float)


class OutOfSyncSchema(ma.Schema):
    server = fields.String()
    kind = fields.String(metadata={"enum": ["version", "key"]})
    start = fields.AwareDateTime()
    end = _null(fields.AwareDateTime)
    began_before = fields.Boolean()
    seconds = _null(fields.Float)
    opened_position = _null(fields.Integer)
    closed_position = _null(fields.Integer)


class ReportDataSchema(ma.Schema):
    period = fields.Nested(ReportPeriodSchema)
    last_position = fields.Integer()
    components = fields.List(fields.Nested(ReportComponentSchema))
    cluster = fields.Nested(ReportClusterSchema)
    servers = fields.List(fields.Nested(ReportServerSyncSchema))
    failovers = fields.List(fields.Nested(FailoverSchema))
    cluster_outages = fields.List(fields.Nested(ClusterOutageSchema))
    out_of_sync = fields.List(
        fields.Nested(OutOfSyncSchema),
        metadata={"description": "periods a server's version or key differed"},
    )
    episodes = fields.List(fields.Nested(EpisodeSchema))
    absences = fields.List(
        fields.Nested(EpisodeSchema), metadata={"description": "removed by hand until back"}
    )


class ReportSchema(ReportSummarySchema):
    data = fields.Nested(ReportDataSchema, required=True)


def report_formats(description: str) -> dict:
    """A report as JSON (default), CSV or HTML (`?format=` or `Accept`)."""
    return {
        "description": description,
        "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/Report"}},
            "text/csv": {"schema": {"type": "string"}},
            "text/html": {"schema": {"type": "string"}},
        },
    }


# Each Server-Sent Event (OpenAPI 3.1 has `schema` describe one event of the stream): `id` the
# position, `event` the type, `data` the event as GET /events gives it. The first frame has no
# data: `retry` and, for a stream that starts at the head, the head's position as `id`.
EVENT_STREAM = {
    "description": "Server-Sent Events: `id:` position, `event:` type, `data:` the event (JSON)",
    "content": {
        "text/event-stream": {
            "schema": {
                "type": "object",
                "properties": {
                    "id": {"type": "string", "pattern": "^[0-9]+$"},
                    "event": {"type": "string", "enum": sorted(EVENT_SCHEMAS)},
                    "data": {
                        "type": "string",
                        "contentMediaType": "application/json",
                        "contentSchema": EVENT_REF,
                    },
                    "retry": {"type": "integer", "minimum": 0},
                },
            }
        }
    },
}
