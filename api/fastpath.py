"""POST /api/v1/heartbeats without Flask's request machinery, for the requests that need none
of it.

Heartbeats are nearly all the traffic, and for a one-heartbeat request Flask's request context,
routing, session, flask-smorest's wrappers and the hooks cost ~140 us of CPU, where this path's
own work (token, body, validation, events, answer, metrics) costs ~30 us (BENCHMARKS.md, "HTTP
API"). This WSGI middleware in front of Flask serves a heartbeat request
that is valid from end to end — a bearer token of a role that may send heartbeats, a JSON body
within MAX_CONTENT_LENGTH that the compiled schema accepts — with the view's own functions
(api/heartbeats.py: the same loader, admission, events, group commit and answer) and the same
metrics. Everything else goes to Flask untouched (the body it may have read is handed on), and
Flask words the problem: the only answers of its own are the 202, the admission's refusals (a
server outside the token's binding: 403; too many new servers: 429) and the commit's errors,
each the problem Flask's error handlers make of it.
"""

from __future__ import annotations

import io
import time

import orjson
from flask import Flask

from api import heartbeats, metrics, new_servers, problems
from api.problems import Problem
from api.security_headers import FOR_DATA
from api.tokens import Principal

PATH = "/api/v1/heartbeats"
ENDPOINT = PATH  # the `endpoint` label Flask's metrics give this route (its URL rule)


class HeartbeatFastPath:
    def __init__(self, app: Flask):
        self.app = app
        self.flask = app.wsgi_app
        self.tokens = app.extensions["clustermon_tokens"]
        self.committer = app.extensions["clustermon_ingest"]
        self.new_servers = new_servers.of(app)
        self.limit = app.config["MAX_CONTENT_LENGTH"]

    def __call__(self, environ, start_response):
        if (
            environ.get("PATH_INFO") != PATH
            or environ.get("REQUEST_METHOD") != "POST"
            or environ.get("QUERY_STRING")  # the endpoint takes none: Flask refuses them
        ):
            return self.flask(environ, start_response)
        started = time.perf_counter()
        items, principal, metadata = self._accepted_input(environ)
        if items is None:
            return self.flask(environ, start_response)
        assert principal is not None and metadata is not None  # set together with items
        try:
            heartbeats.admit(principal, items, self.new_servers)
            body = heartbeats.record(self.committer, items, metadata)
            status, headers = "202 ACCEPTED", [("Content-Type", "application/json")]
        except Exception as exc:  # the body is consumed: this request ends here
            status, body, headers = self._problem(exc)
        headers += FOR_DATA  # what Flask's answers get from api/security_headers.py
        headers.append(("Content-Length", str(len(body))))
        start_response(status, headers)
        metrics.count_request("POST", ENDPOINT, int(status[:3]), started)
        return [body]

    def _problem(self, exc: Exception) -> tuple[str, bytes, list[tuple[str, str]]]:
        """The problem Flask's error handlers would answer for `exc`."""
        with self.app.app_context():
            if isinstance(exc, Problem):
                response = problems.handle_http_exception(exc)
            else:
                response = problems.handle_unexpected(exc)
        headers = [(k, v) for k, v in response.headers.items() if k.lower() != "content-length"]
        return response.status, response.get_data(), headers

    def _accepted_input(
        self, environ
    ) -> tuple[list[dict], Principal, dict] | tuple[None, None, None]:
        """The loaded heartbeats, who sent them and their metadata, or (None, None, None) when
        Flask must answer. A body read here is put back for Flask."""
        scheme, _, token = environ.get("HTTP_AUTHORIZATION", "").partition(" ")
        mimetype = environ.get("CONTENT_TYPE", "").partition(";")[0].strip().lower()
        try:
            length = int(environ.get("CONTENT_LENGTH") or -1)
        except ValueError:
            return None, None, None
        if scheme.lower() != "bearer" or mimetype != "application/json":
            return None, None, None
        if not 0 < length <= self.limit:
            return None, None, None
        try:
            principal = self.tokens.verify(token.strip())
        except Exception:  # the database is away: Flask answers with its problem
            return None, None, None
        if principal is None or not principal.may("agent"):
            return None, None, None
        raw = environ["wsgi.input"].read(length)
        environ["wsgi.input"] = io.BytesIO(raw)
        try:
            items = heartbeats.compiled_load(orjson.loads(raw))
        except orjson.JSONDecodeError:
            return None, None, None
        if items is None:
            return None, None, None
        request_id = environ.get("HTTP_X_REQUEST_ID")
        metadata = heartbeats.actor_metadata(principal, environ.get("REMOTE_ADDR"), request_id)
        return items, principal, metadata


def init_app(app: Flask) -> None:
    app.wsgi_app = HeartbeatFastPath(app)  # type: ignore[method-assign]  # Flask's middleware hook
