"""marshmallow fields for what clustermon takes in: strict JSON types, and only values the
database can store and give back."""

from __future__ import annotations

from marshmallow import fields, validate

from domain.events import storable_time


class Fingerprint(fields.String):
    """A SHA-256 fingerprint: 64 hex characters in either case, loaded in lowercase so that
    equal keys compare equal (.NET's Convert.ToHexString, for one, prints uppercase)."""

    def _deserialize(self, value, attr, data, **kwargs):
        return super()._deserialize(value, attr, data, **kwargs).lower()


class Instant(fields.AwareDateTime):
    """An ISO-8601 time with a UTC offset that clustermon can store (`storable_time`)."""

    default_error_messages = {
        "unstorable": "must be between 1970-01-01 and 9000-01-01 (UTC), with a UTC offset"
        " of whole minutes under 16 hours",
    }

    RANGE = "between 1970-01-01 and 9000-01-01 (UTC), UTC offset in whole minutes under 16 h"

    def __init__(self, **kwargs):
        # The range in the OpenAPI document too: JSON Schema's date-time format cannot say it.
        metadata = dict(kwargs.pop("metadata", None) or {})
        described = metadata.get("description")
        metadata["description"] = f"{described}; {self.RANGE}" if described else self.RANGE
        super().__init__(metadata=metadata, **kwargs)

    def _deserialize(self, value, attr, data, **kwargs):
        loaded = super()._deserialize(value, attr, data, **kwargs)
        if not storable_time(loaded):
            raise self.make_error("unstorable")
        return loaded


class HostAddress(fields.IP):
    """An IPv4 or IPv6 address without an IPv6 zone (`fe80::1%eth0`): a zone names one of the
    sender's own interfaces, which means nothing to anyone else (and no JSON Schema address
    format allows it)."""

    default_error_messages = {"zone": "must be an address without a zone (%interface)"}

    def _deserialize(self, value, attr, data, **kwargs):
        address = super()._deserialize(value, attr, data, **kwargs)
        if getattr(address, "scope_id", None) is not None:
            raise self.make_error("zone")
        return address


# Text that PostgreSQL can store: its text type refuses NUL characters (the whole commit fails).
NO_NUL = validate.Regexp(r"^[^\x00]*$", error="must not contain NUL characters")


def _optional_text(max_length: int) -> fields.String:
    return fields.String(
        load_default=None, allow_none=True, validate=[validate.Length(max=max_length), NO_NUL]
    )


class JsonBoolean(fields.Boolean):
    """JSON true or false only (marshmallow also takes 0, 1, "yes", "off", ...)."""

    def _deserialize(self, value, attr, data, **kwargs):
        if value.__class__ is not bool:
            raise self.make_error("invalid")
        return value


class JsonInteger(fields.Integer):
    """A JSON integer only (marshmallow also takes "30", 30.0 and true)."""

    def _deserialize(self, value, attr, data, **kwargs):
        if value.__class__ is not int:
            raise self.make_error("invalid")
        return super()._deserialize(value, attr, data, **kwargs)


def _seconds(low: int, high: int) -> JsonInteger:
    return JsonInteger(validate=validate.Range(low, high))
