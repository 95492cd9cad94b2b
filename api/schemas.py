"""marshmallow schemas of the HTTP contract (requests are validated, the OpenAPI document is
generated from them)."""

from __future__ import annotations

import re

import marshmallow as ma
from marshmallow import fields, validate

from api.event_schemas import ConfigurationSchema, HeartbeatRecordedSchema
from api.fields import Instant
from api.problems import Problem
from api.query import QueryInteger
from domain.events import CATALOG, COMPONENTS

MAX_BATCH = 1000
MAX_POSITION = 2**63 - 1  # positions are PostgreSQL bigints
SERVER_NAME = validate.Regexp(
    # (?!\n): Python's `$` also matches before a final newline; the pattern stays valid for the
    # OpenAPI document's (ECMA 262) readers, where it changes nothing.
    r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}(?!\n)$",
    error="must be 1-200 letters, digits, '.', '_' or '-', starting with a letter or digit",
)
# Fields an agent might use to send the key itself: refused with an explicit message (so is
# any unknown field whose name `looks_like_a_key`: EncryptionKey, machineKey, decryption-key).
RAW_KEY_FIELDS = ("encryption_key", "key", "machine_key", "raw_key", "secret")


_KEY_KINDS = {"encryption", "decryption", "machine", "raw", "private", "aes"}


def looks_like_a_key(name: str) -> bool:
    """`key`, `secret` or `<kind> key` as words, in any case and spelling (snake, kebab,
    camel): `EncryptionKey`, `machineKey`, `client_secret`; not `monkey` or `ssh_host_key`."""
    words = [w.lower() for w in re.findall(r"[A-Z]?[a-z]+|[A-Z]+(?![a-z])|\d+", name)]
    if "secret" in words:
        return True
    return words[-1:] == ["key"] and (len(words) == 1 or words[-2] in _KEY_KINDS)


class HeartbeatSchema(HeartbeatRecordedSchema):
    """One heartbeat as an agent sends it."""

    class Meta:
        unknown = ma.RAISE

    event_id = fields.UUID(load_default=None, metadata={"description": "idempotency key"})
    server = fields.String(required=True, validate=SERVER_NAME, metadata={"example": "web01"})

    # Runs even when other fields failed: a raw key is also an unknown field, and marshmallow
    # skips schema validators after any field error by default, so the message never showed.
    @ma.validates_schema(pass_original=True, skip_on_field_errors=False)
    def refuse_raw_keys(self, data, original, **kwargs):
        if isinstance(original, dict):
            raw = [
                name
                for name in original
                if isinstance(name, str) and name not in self.fields and looks_like_a_key(name)
            ]
            if raw:
                raise ma.ValidationError(
                    {
                        name: [
                            "raw encryption keys are never accepted: send"
                            " encryption_key_fingerprint, the SHA-256 hex digest of the key"
                        ]
                        for name in raw
                    }
                )


class HeartbeatBatchSchema(ma.Schema):
    class Meta:
        unknown = ma.RAISE

    heartbeats = fields.List(
        fields.Nested(HeartbeatSchema),
        required=True,
        validate=validate.Length(1, MAX_BATCH),
    )


class IngestResultSchema(ma.Schema):
    accepted = fields.Integer()
    duplicates = fields.Integer()
    last_position = fields.Integer(allow_none=True)


class ConfigurationPatchSchema(ConfigurationSchema):
    """The settings to change (at least one: `minProperties` in the document); the others keep
    their value. The cross-field rule is in the document's description (DESCRIPTION)."""

    DESCRIPTION = (
        "The settings to change (at least one); the others keep their value. The stale timeout"
        " must stay at least two heartbeat periods (`stale_timeout_seconds` >= 2 x"
        " `heartbeat_frequency_seconds`, counting the settings in force for those not given):"
        " a change that breaks it is refused with 422 naming the settings."
    )

    class Meta:
        unknown = ma.RAISE

    @ma.validates_schema
    def not_empty(self, data, **kwargs):
        if not data:
            raise ma.ValidationError("name at least one setting to change", "_schema")


class ConfigurationOutSchema(ConfigurationSchema):
    version = fields.Integer()


MAX_PAGE = 1000  # servers per page of GET /cluster
SERVER_FILTER = validate.Regexp(
    r"^[A-Za-z0-9._\-*?\[\]!]{1,200}(?!\n)$",
    error="must be 1-200 letters, digits, '.', '_', '-' or the wildcards *, ? and [...]",
)


class ClusterQuerySchema(ma.Schema):
    class Meta:
        unknown = ma.RAISE

    at = Instant(
        metadata={
            "description": "the view as it was then. Not in the future (422: the view then is"
            " not known yet); before the first kept event: 422 before the log, 410 when those"
            " events were archived (the problem's `archive` names the archive)"
        }
    )
    position = QueryInteger(
        validate=validate.Range(1, MAX_POSITION),
        metadata={
            "description": "log position: the view just after it. Not beyond the head (422);"
            " below the oldest kept event: 410 (archived). Not together with `at` (422)"
        },
    )
    # Paging and filtering, for large clusters. Without any of the three the answer is the whole
    # view as always; with one, it also has a `page` member.
    server = fields.String(
        validate=SERVER_FILTER,
        metadata={
            "description": "only the servers whose name contains this text, or, when it has a"
            " wildcard (`*`, `?`, `[...]`), matches it as a shell-style pattern (Python fnmatch);"
            " case-insensitive either way"
        },
    )
    after = fields.String(
        validate=SERVER_NAME,
        metadata={
            "description": "keyset paging: only the servers whose name sorts after this one"
            " (give the previous page's `page.next_after`, or follow `page.next`)"
        },
    )
    limit = QueryInteger(
        validate=validate.Range(1, MAX_PAGE),
        metadata={"description": f"at most this many servers (1-{MAX_PAGE}); default: all"},
    )

    @ma.validates_schema
    def one_of(self, data, **kwargs):
        if "at" in data and "position" in data:
            raise ma.ValidationError("give either at or position, not both", "position")


class EventsQuerySchema(ma.Schema):
    class Meta:
        unknown = ma.RAISE

    after = QueryInteger(load_default=0, validate=validate.Range(0, MAX_POSITION))
    limit = QueryInteger(load_default=100, validate=validate.Range(1, 1000))
    type = fields.String(validate=validate.OneOf(sorted(CATALOG)))
    server = fields.String(validate=SERVER_NAME)
    component = fields.String(validate=validate.OneOf(COMPONENTS))
    since = Instant(metadata={"description": "recorded at or after"})
    # No cross-field refusal (the document could not state it): until before since is an
    # empty range, answered with no events.
    until = Instant(metadata={"description": "recorded before; before `since`: no events"})


class StreamQuerySchema(ma.Schema):
    class Meta:
        unknown = ma.RAISE

    after = QueryInteger(
        validate=validate.Range(0, MAX_POSITION),
        metadata={
            "description": "resume after this position (a `Last-Event-ID` header wins); "
            "default: the head of the log, so only new events"
        },
    )
    # Checked (and spent) by api/auth.py before this schema runs; declared for the document.
    ticket = fields.String(
        validate=validate.Length(max=200),
        metadata={
            "description": "instead of an Authorization header: a one-use ticket from "
            "`POST /api/v1/events/stream/tickets` (for a browser's EventSource)"
        },
    )


def require_component_path(server: str, component: str) -> None:
    """A 404 problem unless the path names a component that could exist (a server name no
    heartbeat can carry is not looked up: it could only be unknown, or not storable)."""
    try:
        SERVER_NAME(server)
    except ma.ValidationError:
        raise Problem(404, f"no server named {server!r}", kind="not-found") from None
    if component not in COMPONENTS:
        raise Problem(
            404, f"unknown component {component!r}: expected web or service", kind="not-found"
        )
