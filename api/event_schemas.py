"""The payload schema of each event type: what the API validates, and what the OpenAPI
document and the tests describe each event's `data` by."""

from __future__ import annotations

from marshmallow import Schema, fields, validate

from api.fields import (
    Fingerprint,
    HostAddress,
    Instant,
    JsonBoolean,
    _optional_text,
    _seconds,
)
from domain.events import COLLECTION_FAILURES, COMPONENTS, STATUSES, TRIGGERS, VERIFICATIONS


def _example(field, value):
    """The field, with an example in the OpenAPI document (schemathesis' examples phase sends
    them; Swagger UI fills its forms with them)."""
    field.metadata = {**field.metadata, "example": value}
    return field


class HeartbeatRecordedSchema(Schema):
    server = _example(fields.String(required=True, validate=validate.Length(1, 200)), "web01")
    component = _example(
        fields.String(required=True, validate=validate.OneOf(COMPONENTS)), "service"
    )
    sent_at = _example(Instant(required=True), "2026-11-27T10:00:00Z")
    status = fields.String(load_default="ok", validate=validate.OneOf(STATUSES))
    verification = fields.String(load_default="verified", validate=validate.OneOf(VERIFICATIONS))
    os = _example(_optional_text(100), "Ubuntu")
    os_version = _example(_optional_text(100), "24.04")
    ip = _example(HostAddress(load_default=None, allow_none=True), "10.0.0.5")
    product = _example(_optional_text(100), "ProGet")
    product_version = _example(_optional_text(50), "2025.10")
    encryption_key_fingerprint = Fingerprint(
        load_default=None,
        allow_none=True,
        validate=validate.Regexp(  # A-F: what clients may send, as the OpenAPI document says
            r"^[0-9a-fA-F]{64}(?!\n)$",  # (?!\n): `$` alone also matches before a final newline
            error="must be 64 hex characters (the SHA-256 of the key, never the key)",
        ),
        metadata={"example": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"},
    )
    message = _optional_text(500)


class ConfigurationSchema(Schema):
    load_balancing = _example(JsonBoolean(), True)
    automatic_failover = _example(JsonBoolean(), True)
    heartbeat_frequency_seconds = _example(_seconds(1, 3600), 30)
    stale_timeout_seconds = _example(_seconds(1, 7 * 86400), 300)
    web_stale_timeout_seconds = _example(_seconds(60, 30 * 86400), 86400)


class ConfigurationChangedSchema(Schema):
    changes = fields.Nested(ConfigurationSchema, required=True)


class ComponentRemovedSchema(Schema):
    server = fields.String(required=True)
    component = fields.String(required=True, validate=validate.OneOf(COMPONENTS))
    reason = fields.String(load_default=None, allow_none=True)


class ComponentTimedOutSchema(Schema):
    server = fields.String(required=True)
    component = fields.String(required=True, validate=validate.OneOf(COMPONENTS))
    expired_at = fields.AwareDateTime(required=True)
    detected_at = fields.AwareDateTime(required=True)
    timeout_seconds = fields.Integer(required=True, validate=validate.Range(min=1))
    configuration_version = fields.Integer(required=True, validate=validate.Range(min=0))
    last_heartbeat_position = fields.Integer(required=True, allow_none=True)
    detector = fields.String(required=True)


class ComponentRecoveredSchema(Schema):
    server = fields.String(required=True)
    component = fields.String(required=True, validate=validate.OneOf(COMPONENTS))
    stale_since = fields.AwareDateTime(required=True)
    recovered_at = fields.AwareDateTime(required=True)
    outage_seconds = fields.Float(required=True, validate=validate.Range(min=0))


class MonitorResumedSchema(Schema):
    down_since = fields.AwareDateTime(required=True)
    resumed_at = fields.AwareDateTime(required=True)
    detector = fields.String(required=True)


class TargetSettingsSchema(Schema):
    """A target's settings (API.md v1.1, PUT /targets/{server}). `url` is the product's base
    address; its `/health` is polled."""

    url = fields.Url(
        schemes={"http", "https"},
        require_tld=False,  # intranet hosts: proget01, 10.0.0.5
        validate=validate.Length(max=2000),
        metadata={
            "description": "base URL (http or https, with a host); /health is appended",
            "format": "uri",  # apispec writes "url", which JSON Schema does not define
            "pattern": "^[Hh][Tt][Tt][Pp][Ss]?://[^/?#]+",
        },
    )
    interval_seconds = _seconds(1, 3600)
    timeout_seconds = _seconds(1, 60)
    verify_tls = JsonBoolean()


class TargetConfiguredSchema(TargetSettingsSchema):
    server = fields.String(required=True)


class TargetRemovedSchema(Schema):
    server = fields.String(required=True)


class CollectionFailedSchema(Schema):
    server = fields.String(required=True)
    kind = fields.String(required=True, validate=validate.OneOf(COLLECTION_FAILURES))
    detail = fields.String(required=True)
    at = fields.AwareDateTime(required=True)


class ChannelConfiguredSchema(Schema):
    """`url_encrypted` is the sealed URL: never shown (GET /events drops it)."""

    name = fields.String(required=True)
    kind = fields.String(required=True)
    target = fields.String(required=True, metadata={"description": "the URL, secrets masked"})
    url_encrypted = fields.String(required=True, load_only=True)
    on = fields.List(fields.String(validate=validate.OneOf(TRIGGERS)), required=True)
    servers = fields.List(fields.String(), load_default=None, allow_none=True)
    min_outage_seconds = fields.Integer(load_default=0, validate=validate.Range(min=0))
    enabled = fields.Boolean(load_default=True)


class ChannelRemovedSchema(Schema):
    name = fields.String(required=True)


class SilenceCreatedSchema(Schema):
    id = fields.String(required=True)
    starts_at = fields.AwareDateTime(required=True)
    ends_at = fields.AwareDateTime(required=True)
    servers = fields.List(fields.String(), load_default=None, allow_none=True)
    components = fields.List(
        fields.String(validate=validate.OneOf(COMPONENTS)), load_default=None, allow_none=True
    )
    comment = fields.String(load_default=None, allow_none=True)


class SilenceEndedSchema(Schema):
    id = fields.String(required=True)
    at = fields.AwareDateTime(required=True)


EVENT_SCHEMAS: dict[str, type[Schema]] = {
    "HeartbeatRecorded": HeartbeatRecordedSchema,
    "ConfigurationChanged": ConfigurationChangedSchema,
    "ComponentRemoved": ComponentRemovedSchema,
    "ComponentTimedOut": ComponentTimedOutSchema,
    "ComponentRecovered": ComponentRecoveredSchema,
    "MonitorResumed": MonitorResumedSchema,
    "TargetConfigured": TargetConfiguredSchema,
    "TargetRemoved": TargetRemovedSchema,
    "CollectionFailed": CollectionFailedSchema,
    "ChannelConfigured": ChannelConfiguredSchema,
    "ChannelRemoved": ChannelRemovedSchema,
    "SilenceCreated": SilenceCreatedSchema,
    "SilenceEnded": SilenceEndedSchema,
}
