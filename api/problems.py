"""RFC 9457 problem details for every error the API returns, including the unexpected ones."""

from __future__ import annotations

import contextlib
import logging
from typing import Any

import marshmallow as ma
from flask import Flask, Response, json
from werkzeug.exceptions import HTTPException, InternalServerError

from eventstore.db import unavailable_reason
from projections.readmodel.boundary import Archived

log = logging.getLogger(__name__)

PROBLEM_TYPE = "https://clustermon.dev/problems/"
MEDIA_TYPE = "application/problem+json"


class ProblemSchema(ma.Schema):
    """Documentation of the error payload (RFC 9457)."""

    type = ma.fields.String()
    title = ma.fields.String()
    status = ma.fields.Integer()
    detail = ma.fields.String()
    errors = ma.fields.Dict(metadata={"description": "field -> messages (validation errors)"})


class Problem(HTTPException):
    """An HTTP error with a problem type, a detail and optional field errors."""

    def __init__(
        self, status: int, detail: str, *, errors=None, kind=None, headers=None, members=None
    ):
        super().__init__(description=detail)
        self.code = status
        self.detail = detail
        self.errors = errors
        self.kind = kind
        self.extra_headers = headers or {}
        # Members of this problem type beyond RFC 9457's (e.g. a 410's `archive`).
        self.members = members or {}


def invalid(errors, detail: str = "the request is not valid: see errors") -> Problem:
    """A 422 with per-field messages (marshmallow's `ValidationError.messages` shape)."""
    return Problem(422, detail, errors=errors, kind="validation")


def problem_response(
    status: int, title: str, detail: str, *, errors=None, kind=None, headers=None, members=None
) -> Response:
    body = {
        "type": PROBLEM_TYPE + (kind or title.lower().replace(" ", "-")),
        "title": title,
        "status": status,
        "detail": detail,
        **(members or {}),
    }
    if errors:
        body["errors"] = errors
    response = Response(json.dumps(body), status=status, mimetype=MEDIA_TYPE)
    for key, value in (headers or {}).items():
        response.headers[key] = value
    return response


def _flatten_locations(messages):
    """webargs nests field errors under their location ({"json": {...}}); clients want fields."""
    if isinstance(messages, dict) and set(messages) <= {"json", "query", "form", "headers"}:
        flat: dict[Any, Any] = {}
        for value in messages.values():
            flat.update(value if isinstance(value, dict) else {"_schema": value})
        return flat
    return messages


def handle_http_exception(error: HTTPException) -> Response:
    status = error.code or 500
    if isinstance(error, Problem):
        return problem_response(
            status,
            error.name,
            error.detail,
            errors=error.errors,
            kind=error.kind,
            headers=error.extra_headers,
            members=error.members,
        )
    data = getattr(error, "data", None) or {}
    errors = _flatten_locations(data.get("errors") or data.get("messages"))
    detail, kind = error.description or error.name, None
    if errors:
        # Refused query arguments (webargs): the same problem type as a refused body.
        detail, kind = "the request is not valid: see errors", "validation"
    headers = dict(data.get("headers") or {})
    if status == 405 and error.get_response().headers.get("Allow"):
        headers["Allow"] = error.get_response().headers["Allow"]
    return problem_response(status, error.name, detail, errors=errors, kind=kind, headers=headers)


def archived(error: Archived) -> Problem:
    """410 Gone: the events that would answer are in an archive, named by its path (wherever a
    read reaches into archived history: time travel, explain, ...)."""
    archive = error.archive
    return Problem(
        410,
        str(error),
        kind="archived",
        members={
            "archive": archive.path,
            "boundary": archive.before.isoformat(),
            "first_position": archive.first_position,
            "last_position": archive.last_position,
        },
    )


def handle_archived(error: Archived) -> Response:
    return handle_http_exception(archived(error))


def handle_unexpected(error: Exception) -> Response:
    """Any other exception: a 500, unless it says the database is away (then a 503)."""
    if unavailable_reason(error) is not None:
        return handle_database_unavailable(error)
    log.exception("unhandled error", exc_info=error)
    server_error = InternalServerError()
    return problem_response(500, server_error.name, "an unexpected error occurred; it was logged")


def handle_database_unavailable(error: Exception) -> Response:
    """503 + Retry-After: the client's cue to send the same request again later, whichever
    layer the database's error came from (eventstore.db.unavailable_reason knows them)."""
    reason = unavailable_reason(error) or "the database cannot be reached"
    log.warning("database unavailable: %s (%s)", reason, error.__class__.__name__)
    return problem_response(
        503,
        "Service Unavailable",
        f"{reason}; nothing was recorded, retry later",
        kind="unavailable",
        headers={"Retry-After": "5"},
    )


def handle_unreadable_body(error: Exception) -> Response:
    return problem_response(
        400, "Bad Request", f"the request body could not be read: {error}", kind="bad-body"
    )


def init_app(app: Flask) -> None:
    app.register_error_handler(HTTPException, handle_http_exception)
    app.register_error_handler(Archived, handle_archived)
    # gunicorn parses a chunked body only as the app reads it: a malformed one raises there.
    with contextlib.suppress(ImportError):  # gunicorn is not on every platform
        from gunicorn.http.errors import ParseException

        app.register_error_handler(ParseException, handle_unreadable_body)
    # Database-level failures (down, restarting, pool exhausted, lock timeout, disk full) are
    # told apart from bugs there: the driver's raw errors reach here as well as SQLAlchemy's.
    app.register_error_handler(Exception, handle_unexpected)
