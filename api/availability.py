"""Availability strips (issue #20, "The page" item 2): per component, its states over the last
24 hours or 7 days and its uptime, in one compact answer the page draws as it is.

Computed from the log by `projections.audit.availability` (the episodes a report sees, from
the few events they depend on: ~150 ms of CPU at 1,000 servers, bench/availability.py). An
answer serves every request of the next REUSE_SECONDS, so the pages of one refresh and the
viewers asking at once cost one computation; its `until` says when it was computed.
"""

from __future__ import annotations

import threading
from typing import Any

import marshmallow as ma
from flask import current_app
from marshmallow import fields, validate

from api.auth import require
from api.query import Blueprint, QueryInteger
from api.schemas import SERVER_NAME
from api.services import services
from projections.audit import availability

blp = Blueprint("availability", __name__, url_prefix="/api/v1", description="Availability strips")

MAX_LIMIT = 1000
# How long one computed answer is served again: at 1,000 servers the head moves ~70 times a
# second, so it cannot be the key; a pixel of a 24-hour strip is ~90 s, and the page re-reads
# every minute.
REUSE_SECONDS = 5.0


class AvailabilityQuerySchema(ma.Schema):
    class Meta:
        unknown = ma.RAISE

    window = fields.String(
        load_default="24h",
        validate=validate.OneOf(tuple(availability.WINDOWS)),
        metadata={"description": "the last 24 hours (default) or the last 7 days"},
    )
    server = fields.String(
        validate=validate.Length(min=1, max=200),
        metadata={"description": "only servers whose name contains this (any case)"},
    )
    after = fields.String(
        validate=SERVER_NAME,
        metadata={"description": "the page after this server (the previous `next_after`)"},
    )
    limit = QueryInteger(
        load_default=100,
        validate=validate.Range(1, MAX_LIMIT),
        metadata={"description": "servers per page (their components all come with them)"},
    )


class SegmentField(fields.Tuple):
    """[start, end, state, reason]: seconds after `since`, a state, an index of `reasons`."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(
            (
                fields.Float(),
                fields.Float(),
                fields.String(validate=validate.OneOf(availability.STATES)),
                fields.Integer(),
            ),
            **kwargs,
        )


def segment_items(converter: Any, field: ma.fields.Field, **kwargs: Any) -> dict:
    """Documents a SegmentField as the 4-tuple it is (apispec gives a Tuple no item types)."""
    if not isinstance(field, SegmentField):
        return {}
    kwargs["ret"].pop("items", None)
    return {
        "type": "array",
        "prefixItems": [
            {"type": "number", "description": "start: seconds after `since`"},
            {"type": "number", "description": "end: seconds after `since`"},
            {"type": "string", "enum": list(availability.STATES)},
            {"type": "integer", "description": "reason: an `id` of `reasons`"},
        ],
        "minItems": 4,
        "maxItems": 4,
    }


class ReasonSchema(ma.Schema):
    id = fields.Integer(required=True, metadata={"description": "what segments refer to"})
    state = fields.String(required=True, validate=validate.OneOf(availability.STATES))
    text = fields.String(required=True, metadata={"description": "why, in words"})


class ComponentStripSchema(ma.Schema):
    server = fields.String(required=True)
    component = fields.String(required=True, validate=validate.OneOf(("web", "service")))
    present = fields.Boolean(required=True, metadata={"description": "false: removed now"})
    uptime_percent = fields.Float(
        required=True,
        allow_none=True,
        metadata={"description": "as the report over the window counts it"},
    )
    observed_seconds = fields.Float(
        required=True, metadata={"description": "from max(since, first heartbeat) to until"}
    )
    outage_seconds = fields.Float(required=True)
    outages = fields.Integer(required=True, metadata={"description": "outage episodes"})
    segments = fields.List(
        SegmentField(),
        required=True,
        metadata={
            "description": "[start, end, state, reason] in time order, covering the observed "
            "span: start and end in seconds after `since`, state one of current, stale, "
            "removed, gap (where they overlap: removed, then gap, then stale), reason the "
            "`id` of an entry of `reasons`"
        },
    )


class AvailabilitySchema(ma.Schema):
    window = fields.String(required=True, validate=validate.OneOf(tuple(availability.WINDOWS)))
    since = fields.AwareDateTime(required=True, metadata={"description": "until - window"})
    until = fields.AwareDateTime(required=True, metadata={"description": "now"})
    position = fields.Integer(required=True, metadata={"description": "last event folded"})
    reasons = fields.List(fields.Nested(ReasonSchema), required=True)
    components = fields.List(fields.Nested(ComponentStripSchema), required=True)
    servers = fields.Integer(required=True, metadata={"description": "matching servers, in all"})
    next_after = fields.String(
        required=True,
        allow_none=True,
        metadata={"description": "give it as `after` for the next page; null: last page"},
    )


class _Recent:
    """The last answer per window, reused for REUSE_SECONDS."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.answers: dict[str, dict[str, Any]] = {}


def _recent() -> _Recent:
    return current_app.extensions.setdefault("clustermon_availability", _Recent())


def _answer(window: str) -> dict[str, Any]:
    svc = services(current_app)
    recent = _recent()
    with recent.lock:  # one computation at a time: the others wait for its answer
        now = svc.clock()
        kept = recent.answers.get(window)
        if kept is not None and 0 <= (now - kept["until"]).total_seconds() < REUSE_SECONDS:
            return kept
        state = svc.fresh_state()
        answer = availability.availability(svc.store, window, now, state)
        recent.answers[window] = answer
        return answer


@blp.route("/availability", methods=["GET"])
@require("viewer")
@blp.arguments(AvailabilityQuerySchema, location="query", as_kwargs=True)
@blp.doc(
    summary="Availability strips: each component's states over the last 24 h or 7 days",
    description="Per component, segments `[start, end, state, reason]` drawn from the log "
    "(current, stale, removed, monitor gap) and the uptime the report over the same window "
    "gives, with one shared table of reasons. Servers in name order, paged with `after`.",
)
@blp.alt_response(200, schema=AvailabilitySchema, success=True, description="The strips")
def strips(window: str, limit: int, server: str | None = None, after: str | None = None):
    answer = _answer(window)
    rows = answer["components"]
    if server is not None:
        needle = server.casefold()
        rows = [c for c in rows if needle in c["server"].casefold()]
    names = sorted({c["server"] for c in rows})
    total = len(names)
    if after is not None:
        names = [n for n in names if n > after]
    page = set(names[:limit])
    rows = [c for c in rows if c["server"] in page]
    used = {segment[3] for c in rows for segment in c["segments"]}
    return {
        "window": window,
        "since": answer["since"],
        "until": answer["until"],
        "position": answer["position"],
        "reasons": [r for r in answer["reasons"] if r["id"] in used],
        "components": rows,
        "servers": total,
        "next_after": names[limit - 1] if len(names) > limit else None,
    }
