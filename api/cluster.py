"""The cluster view, its configuration, manual removal and component history."""

from __future__ import annotations

from urllib.parse import urlencode

from flask import Response, current_app, request
from marshmallow import ValidationError

from api.auth import require
from api.heartbeats import json_body, request_metadata
from api.limits import expensive
from api.problems import MEDIA_TYPE, Problem, ProblemSchema, archived, invalid
from api.query import Blueprint, NoQuery
from api.responses import ClusterViewSchema, HistorySchema, RemovalSchema
from api.schemas import (
    ClusterQuerySchema,
    ConfigurationOutSchema,
    ConfigurationPatchSchema,
    require_component_path,
)
from api.services import services
from domain.decisions import InvalidConfiguration, NotInCluster
from projections.audit.history import component_history as history
from projections.readmodel import timetravel
from projections.readmodel.boundary import Archived, moment
from projections.readmodel.rendered import ViewRenderer
from projections.readmodel.view import PageMember, ServerSelection, live_time, page_of

blp = Blueprint("cluster", __name__, url_prefix="/api/v1", description="The cluster view")

_patch = ConfigurationPatchSchema()


def _renderer() -> ViewRenderer:
    """The app's renderer of the current view (projections/readmodel/rendered.py): it keeps every
    server's entry serialized and re-evaluates only what changed, so a read of 10,000 servers
    costs milliseconds instead of a full evaluation."""
    extensions = current_app.extensions
    renderer = extensions.get("clustermon_view_renderer")
    if renderer is None:
        renderer = extensions.setdefault("clustermon_view_renderer", ViewRenderer())
    return renderer


@blp.route("/cluster", methods=["GET"])
@require("viewer")
@blp.arguments(ClusterQuerySchema, location="query", as_kwargs=True)
@blp.doc(
    summary="The cluster view",
    description="The current view, or with `at` (ISO-8601) / `position` the view as it was "
    "then: nearest snapshot + fold of the tail, staleness evaluated at that time.\n\n"
    "For large clusters, `server` filters the servers by name and `limit` / `after` page "
    "through them in name order (keyset paging: every server shows up on exactly one page). "
    "With any of the three the answer also has `page`: `server`, `after` and `limit` as given, "
    "`returned` (servers on this page), `next_after` (the `after` of the next page, null on "
    "the last) and `next` (the link to it, null on the last). `server_count` is always the "
    "whole cluster's; the sync checks compare each server with the whole cluster.",
)
@blp.alt_response(200, schema=ClusterViewSchema, success=True, description="The cluster view")
@blp.alt_response(
    410, schema=ProblemSchema, content_type=MEDIA_TYPE, description="Archived: see `archive`"
)
@expensive(when=lambda at=None, position=None, **_: (at, position) != (None, None))
def get_cluster(at=None, position=None, server=None, after=None, limit=None):
    svc = services(current_app)
    selection = None
    if (server, after, limit) != (None, None, None):
        selection = ServerSelection(server, after, limit)
    if at is None and position is None:
        state = svc.fresh_state()  # read-your-writes
        # The body's pieces as they are (werkzeug sums their lengths for Content-Length).
        now = live_time(state, svc.clock())
        if selection is None:
            parts = _renderer().render_parts(state, now)
        else:
            parts = _renderer().render_page(state, now, selection, _page_member(selection))
        return Response(parts, mimetype="application/json")
    field = "at" if at is not None else "position"
    now = svc.clock()
    if at is not None and at > now:
        # The view then is not known yet: folding what is recorded so far would present a
        # guess (everything going stale on schedule) as history.
        detail = f"{moment(at)} is in the future: it is {moment(now)} by our clock"
        raise Problem(422, detail, errors={field: [detail]}, kind="validation")
    try:
        view = timetravel.view_at(svc.store, at=at, position=position)
    except Archived as exc:
        raise archived(exc) from None
    except ValueError as exc:
        raise Problem(422, str(exc), errors={field: [str(exc)]}, kind="validation") from None
    return view if selection is None else page_of(view, selection, _page_member(selection))


def _page_member(selection: ServerSelection) -> PageMember:
    """The `page` member of a paged view: the parameters as given and where the next page is
    (this request's query with `after` moved on: same filter, limit and time)."""

    def page(returned: int, next_after: str | None) -> dict:
        link = None
        if next_after is not None:
            query = {**request.args.to_dict(), "after": next_after}
            link = f"{request.path}?{urlencode(query)}"
        return {
            "server": selection.server,
            "after": selection.after,
            "limit": selection.limit,
            "returned": returned,
            "next_after": next_after,
            "next": link,
        }

    return page


@blp.route("/cluster/configuration", methods=["GET"])
@blp.doc(
    summary="The configuration",
    description="The cluster's settings alone, readable with any token: an agent reads its "
    "heartbeat period here (the cluster view itself needs the viewer role).",
)
@blp.response(200, ConfigurationOutSchema)
@require("configuration")
@blp.arguments(NoQuery, location="query", as_kwargs=True)
def get_configuration():
    config = services(current_app).commands.configuration()
    return {**config.settings(), "version": config.version}


@blp.route("/cluster/configuration", methods=["PUT"])
@blp.doc(
    summary="Change the configuration (partial update)",
    requestBody={
        "required": True,
        "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/ConfigurationPatch"}}
        },
    },
)
@blp.response(200, ConfigurationOutSchema)
@require("admin")
@blp.arguments(NoQuery, location="query", as_kwargs=True)
def put_configuration():
    try:
        changes = _patch.load(json_body())
    except ValidationError as err:
        raise invalid(err.messages) from None
    try:
        config, _ = services(current_app).commands.change_configuration(changes, request_metadata())
    except InvalidConfiguration as exc:
        raise Problem(
            422,
            "the configuration is not coherent: see errors",
            errors=exc.errors,
            kind="validation",
        ) from None
    return {**config.settings(), "version": config.version}


@blp.route("/servers/<server>/components/<component>", methods=["DELETE"])
@blp.doc(summary="Remove a component from the cluster by hand")
@blp.response(200, RemovalSchema)
@require("admin")
@blp.arguments(NoQuery, location="query", as_kwargs=True)
def delete_component(server: str, component: str):
    require_component_path(server, component)
    try:
        recorded = services(current_app).commands.remove_component(
            server, component, request_metadata()
        )
    except NotInCluster as exc:
        raise Problem(404, str(exc), kind="not-found") from None
    return {"removed": {"server": server, "component": component}, "position": recorded.position}


@blp.route("/servers/<server>/components/<component>/history", methods=["GET"])
@blp.doc(summary="State transitions of a component over time, each with its reason")
@blp.alt_response(200, schema=HistorySchema, success=True, description="The transitions")
@require("viewer")
@blp.arguments(NoQuery, location="query", as_kwargs=True)
def component_history(server: str, component: str):
    require_component_path(server, component)
    transitions = history(services(current_app).store, server, component)
    if not transitions:
        raise Problem(404, f"{component} component of {server} has no history", kind="not-found")
    return {"server": server, "component": component, "transitions": transitions}
