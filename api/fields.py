"""marshmallow fields for what clustermon takes in: strict JSON types, and only values the
database can store and give back."""

from __future__ import annotations

import re

from marshmallow import fields, validate

from domain.events import storable_time


class Fingerprint(fields.String):
    """A SHA-256 fingerprint: 64 hex characters in either case, loaded in lowercase so that
    equal keys compare equal (.NET's Convert.ToHexString, for one, prints uppercase)."""

    def _deserialize(self, value, attr, data, **kwargs):
        return super()._deserialize(value, attr, data, **kwargs).lower()


class Instant(fields.AwareDateTime):
    """An RFC 3339 time with a UTC offset that clustermon can store (`storable_time`).

    The storable range (1970-01-01 to 9000-01-01 in UTC) and the offset limit are in the
    OpenAPI document as a `pattern` (JSON Schema's date-time format cannot state them), and the
    API enforces that same pattern: a client or a fuzzer that follows the document never meets
    a refusal it could not foresee. Only the first and the last day of the range depend on the
    offset: there the pattern takes the offsets that keep the moment inside it."""

    _TIME = r"T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,6})?"
    _OFFSET = r"(Z|[+-](0[0-9]|1[0-5]):[0-5][0-9])"
    _DATE = (
        r"((197[1-9]|19[89][0-9]|[2-7][0-9]{3}|8[0-8][0-9]{2}|89[0-8][0-9]|899[0-8])"
        r"-[0-9]{2}-[0-9]{2}"
        r"|1970-(0[2-9]|1[0-2])-[0-9]{2}|1970-01-(0[2-9]|[12][0-9]|3[01])"
        r"|8999-(0[1-9]|1[01])-[0-9]{2}|8999-12-([0-2][0-9]|30))"
    )
    PATTERN = (
        rf"^({_DATE}{_TIME}{_OFFSET}"
        rf"|1970-01-01{_TIME}(Z|-(0[0-9]|1[0-5]):[0-5][0-9]|\+00:00)"
        rf"|8999-12-31{_TIME}(Z|\+(0[0-9]|1[0-5]):[0-5][0-9]|-00:00))"
        r"(?!\n)$"  # (?!\n): see api/schemas.py SERVER_NAME
    )
    RANGE = (
        "RFC 3339 (`2026-11-27T10:00:00Z`) with a UTC offset (`Z` or +hh:mm, under 16 h) and"
        " at most 6 decimals of seconds, from 1970-01-01 to 8999-12-31 (on those two days,"
        " offsets that keep it inside them)"
    )

    DOCUMENTED = {"type": "string", "format": "date-time", "pattern": PATTERN, "description": RANGE}

    default_error_messages = {
        "unstorable": "must be an RFC 3339 time (2026-11-27T10:00:00Z) from 1970 to 8999 in UTC,"
        " with a UTC offset (Z or +hh:mm) under 16 hours and at most 6 decimals of seconds",
    }

    def __init__(self, **kwargs):
        metadata = dict(kwargs.pop("metadata", None) or {})
        described = metadata.get("description")
        metadata["description"] = f"{described}; {self.RANGE}" if described else self.RANGE
        metadata["pattern"] = self.PATTERN  # apispec copies it into the document
        super().__init__(metadata=metadata, **kwargs)

    def _deserialize(self, value, attr, data, **kwargs):
        if not isinstance(value, str) or not re.match(self.PATTERN, value):
            raise self.make_error("unstorable")
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
