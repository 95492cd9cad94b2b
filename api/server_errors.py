"""The errors gunicorn answers itself, as problem+json like every other error (API.md).

gunicorn parses the request line and the headers before the app sees a request. What it cannot
parse (a malformed request line or header, a request line or headers beyond its limits) it
answers itself, with an HTML page written by `gunicorn.util.write_error`, which every worker
class's `handle_error` calls. gunicorn has no setting for the format of these answers, so
`post_worker_init` (a gunicorn server hook: `serve` and `run` set it) puts `write_problem` in
its place in each worker: the same status, as RFC 9457 problem details.

This module is also `serve`'s gunicorn configuration module (`--config python:api.server_errors`),
which gunicorn's master imports before it forks the workers and before gevent patches them:
hence nothing imported at the top but the standard library and gunicorn itself (api.problems
brings Flask and SQLAlchemy, whose locks must be made after the patch).
"""

from __future__ import annotations

import json

from gunicorn import util


def write_problem(sock, status_int: int, reason: str, mesg: str) -> None:
    """`gunicorn.util.write_error` with a problem+json body."""
    from api.problems import MEDIA_TYPE, PROBLEM_TYPE  # imported by the app already

    body = json.dumps(
        {
            "type": PROBLEM_TYPE + reason.lower().replace(" ", "-"),
            "title": reason,
            "status": status_int,
            "detail": mesg or reason,
        }
    ).encode()
    from api.security_headers import FOR_DATA

    security = "".join(f"{name}: {value}\r\n" for name, value in FOR_DATA)
    head = (
        f"HTTP/1.1 {status_int} {reason}\r\n"
        "Connection: close\r\n"
        f"Content-Type: {MEDIA_TYPE}\r\n{security}"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    util.write_nonblock(sock, head.encode("latin-1") + body)


def post_worker_init(worker) -> None:
    util.write_error = write_problem
