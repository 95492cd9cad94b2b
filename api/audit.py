"""Audit and reports: outage and failover episodes, why-stale explanations, what-if replays and
stored availability reports. Everything here is computed from the log."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import cast

import marshmallow as ma
from flask import Response, current_app, g, request
from marshmallow import fields, validate

from api.auth import require
from api.fields import Instant
from api.heartbeats import json_body
from api.limits import expensive
from api.problems import Problem, invalid
from api.query import Blueprint, NoQuery, QueryInteger
from api.responses import (
    ExplanationSchema,
    FailoversSchema,
    OutagesSchema,
    ReportListSchema,
    WhatIfSchema,
    report_formats,
)
from api.schemas import require_component_path
from api.services import services
from projections.audit import episode_pass, explain, report_store, reports, whatif
from projections.readmodel import timetravel

blp = Blueprint("audit", __name__, url_prefix="/api/v1", description="Audit and reports")

DEFAULT_SPAN = timedelta(days=1)
MAX_SPAN = timedelta(days=400)
MAX_TIMEOUT = 30 * 86400
MAX_ID = 2**31 - 1


class PeriodSchema(ma.Schema):
    """[since, until) of an audit. Both ends are free: a period that is empty (since at or after
    until) has nothing in it, and a longer one than MAX_SPAN is cut to its last MAX_SPAN; the
    answer's `period` says what was read. No cross-field refusal: the document could not say it."""

    class Meta:
        unknown = ma.RAISE

    since = Instant(
        metadata={
            "description": "start (inclusive); default until - 1 day. At or after `until`: an"
            f" empty period. More than {MAX_SPAN.days} days before `until`: the period is its"
            f" last {MAX_SPAN.days} days (see the answer's `period`)"
        }
    )
    until = Instant(metadata={"description": "end (exclusive); default now"})


class WhatIfQuerySchema(PeriodSchema):
    stale_timeout_seconds = QueryInteger(
        validate=validate.Range(1, MAX_TIMEOUT),
        metadata={
            "description": "the Service stale timeout to replay the history with; default: the"
            " one in force"
        },
    )
    web_stale_timeout_seconds = QueryInteger(
        validate=validate.Range(1, MAX_TIMEOUT),
        metadata={"description": "the Web window to replay the history with; default: in force"},
    )


class ExplainQuerySchema(ma.Schema):
    class Meta:
        unknown = ma.RAISE

    at = Instant(metadata={"description": "ISO-8601 time; default now"})


class ReportQuerySchema(ma.Schema):
    class Meta:
        unknown = ma.RAISE

    format = fields.String(
        validate=validate.OneOf(("json", "csv", "html")),
        metadata={"description": "overrides the Accept header"},
    )


class ReportListQuerySchema(ma.Schema):
    class Meta:
        unknown = ma.RAISE

    kind = fields.String(validate=validate.OneOf(report_store.KINDS))
    limit = QueryInteger(load_default=100, validate=validate.Range(1, 1000))
    before = QueryInteger(validate=validate.Range(1, MAX_ID), metadata={"description": "id"})


class ReportCreateSchema(ma.Schema):
    """A stored report covers a period that has ended, and is not empty: the refusals are
    documented on POST /reports (they depend on the clock, or compare two fields)."""

    class Meta:
        unknown = ma.RAISE

    since = Instant(required=True)
    until = Instant(required=True)

    @ma.validates_schema
    def ordered(self, data, **kwargs):
        since, until = data.get("since"), data.get("until")
        if since is not None and until is not None:
            if since >= until:
                raise ma.ValidationError("until must be after since", "until")
            if until - since > MAX_SPAN:
                raise ma.ValidationError(
                    f"the period may span at most {MAX_SPAN.days} days", "since"
                )


def _period(since: datetime | None, until: datetime | None) -> tuple[datetime, datetime]:
    """The period an audit reads, as PeriodSchema documents it."""
    now = services(current_app).clock()
    until = until or now
    since = since or until - DEFAULT_SPAN
    return min(max(since, until - MAX_SPAN), until), until


def _episodes(since: datetime, until: datetime) -> episode_pass.Result:
    """The episode pass for [since, until), from the newest snapshot before `since`; without a
    scheduler there may be none near it, so one is kept first (once: the next periods near
    it start there)."""
    store, horizon = services(current_app).store, _horizon(until)
    start = min(since, horizon)  # a period in the future: nothing happened in it yet
    timetravel.keep_snapshot_before(store, start)
    return episode_pass.build(store, horizon, since=start)


def _horizon(until: datetime) -> datetime:
    """Staleness is never judged beyond now: the future has no heartbeats yet."""
    return min(until, services(current_app).clock())


# --- episodes ---------------------------------------------------------------------------------


@blp.route("/audit/outages", methods=["GET"])
@require("viewer")
@blp.arguments(PeriodSchema, location="query", as_kwargs=True)
@blp.doc(
    summary="Outage episodes per component, and cluster outages",
    description="Episodes overlapping [since, until): start = logical expiry (or removal), end "
    "= recovery, cause, configuration in force, detector, and the positions of the events "
    "they were built from.",
)
@blp.alt_response(200, schema=OutagesSchema, success=True, description="Episodes, with a summary")
@expensive()
def outages(since=None, until=None):
    since, until = _period(since, until)
    result = _episodes(since, until)
    listing = whatif.listing(result, since, until)
    return {
        "period": {"since": since, "until": until},
        "position": result.position,
        "summary": whatif.totals(result, since, until),
        "outages": listing["episodes"],
        "cluster_outages": listing["cluster_outages"],
    }


@blp.route("/audit/failovers", methods=["GET"])
@require("viewer")
@blp.arguments(PeriodSchema, location="query", as_kwargs=True)
@blp.doc(
    summary="Failovers and cluster outages",
    description="A failover: a Service component timed out while another Service component "
    "stayed current (the work moved). A cluster outage: no current Service component at all.",
)
@blp.alt_response(
    200, schema=FailoversSchema, success=True, description="Failovers and cluster outages"
)
@expensive()
def failovers(since=None, until=None):
    since, until = _period(since, until)
    result = _episodes(since, until)
    horizon = result.horizon
    return {
        "period": {"since": since, "until": until},
        "position": result.position,
        "failovers": [f.to_dict(horizon) for f in result.failovers_in(since, until)],
        "cluster_outages": [o.to_dict(horizon) for o in result.cluster_outages_in(since, until)],
    }


@blp.route("/audit/what-if", methods=["GET"])
@require("viewer")
@blp.arguments(WhatIfQuerySchema, location="query", as_kwargs=True)
@blp.doc(
    summary="Replay the real heartbeats under another timeout",
    description="The episodes, failovers and cluster outages that would have happened, beside "
    "the ones that did.",
)
@blp.alt_response(
    200, schema=WhatIfSchema, success=True, description="What happened and what would have"
)
@expensive()
def what_if(since=None, until=None, **settings):
    since, until = _period(since, until)
    horizon = _horizon(until)
    return whatif.what_if(services(current_app).store, min(since, horizon), horizon, settings)


# --- explanation ------------------------------------------------------------------------------


@blp.route("/servers/<server>/components/<component>/explain", methods=["GET"])
@require("viewer")
@blp.arguments(ExplainQuerySchema, location="query", as_kwargs=True)
@blp.doc(
    summary="Why the component is (or was) in its state at a time",
    description="The state at `at` and the chain behind it: last heartbeat (time, position), "
    "the timeout in force and the configuration change that set it, the detector of the "
    "timeout, monitor gaps, removals and recoveries.",
)
@blp.alt_response(
    200, schema=ExplanationSchema, success=True, description="The state and the chain behind it"
)
@expensive()
def explain_component(server: str, component: str, at=None):
    require_component_path(server, component)
    svc = services(current_app)
    try:
        return explain.explain(svc.store, server, component, at or svc.clock())
    except explain.NeverSeen as exc:
        raise Problem(404, str(exc), kind="not-found") from None


# --- reports ----------------------------------------------------------------------------------


@blp.route("/reports", methods=["GET"])
@require("viewer")
@blp.arguments(ReportListQuerySchema, location="query", as_kwargs=True)
@blp.doc(summary="Stored reports, newest first")
@blp.alt_response(
    200, schema=ReportListSchema, success=True, description="Stored reports, newest first"
)
def list_reports(limit, kind=None, before=None):
    rows = report_store.listing(services(current_app).engine, kind=kind, limit=limit, before=before)
    return {"reports": rows, "next_before": rows[-1]["id"] if len(rows) == limit else None}


@blp.route("/reports", methods=["POST"])
@blp.doc(
    summary="Compute and store a report for a period now",
    description="The period [since, until) must have ended (`until` not after now), be "
    f"non-empty (`since` before `until`) and span at most {MAX_SPAN.days} days; otherwise the "
    "answer is 422 naming the field.",
    requestBody={
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "required": ["since", "until"],
                    "properties": {"since": Instant.DOCUMENTED, "until": Instant.DOCUMENTED},
                    "additionalProperties": False,
                }
            }
        },
    },
)
@blp.doc(responses={"201": report_formats("The stored report")})
@require("admin")
@blp.arguments(NoQuery, location="query", as_kwargs=True)
@expensive()
def create_report():
    try:
        body = ReportCreateSchema().load(json_body())
    except ma.ValidationError as err:
        raise invalid(err.messages) from None
    svc = services(current_app)
    if body["until"] > svc.clock():
        raise Problem(
            422,
            "the request is not valid: see errors",
            errors={"until": ["a report covers a period that has ended: until is in the future"]},
            kind="validation",
        )
    report = report_store.compute_and_store(
        svc.store, body["since"], body["until"], requested_by=g.principal.name
    )
    assert report is not None  # only scheduled kinds can find their period stored
    response = _render(report)
    response.status_code = 201
    response.headers["Location"] = f"/api/v1/reports/{report['id']}"
    return response


@blp.route("/reports/<int:report_id>", methods=["GET"])
@require("viewer")
@blp.arguments(ReportQuerySchema, location="query", as_kwargs=True)
@blp.doc(
    summary="One report as JSON (default), CSV or HTML",
    description="`?format=` or the Accept header (application/json, text/csv, text/html). The "
    "HTML page has an inline SVG timeline and no external assets.",
)
@blp.doc(responses={"200": report_formats("The report")})
def get_report(report_id: int, format=None):
    report = (
        report_store.get(services(current_app).engine, report_id) if report_id <= MAX_ID else None
    )
    if report is None:
        raise Problem(404, f"no report with id {report_id}", kind="not-found")
    return _render(report, format)


_MEDIA = {"json": "application/json", "csv": "text/csv", "html": "text/html"}


def _render(report: dict, format: str | None = None) -> Response:
    if format is None:
        best = request.accept_mimetypes.best_match(list(_MEDIA.values()), "application/json")
        format = next(k for k, v in _MEDIA.items() if v == best)
    if format == "csv":
        return Response(
            reports.to_csv(report),
            mimetype="text/csv",
            headers={"Content-Disposition": f'attachment; filename="report-{report["id"]}.csv"'},
        )
    if format == "html":
        return Response(reports.to_html(report), mimetype="text/html")
    return cast(Response, current_app.json.response(report))  # the app's response_class
