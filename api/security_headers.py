"""The headers every response carries, whichever part of clustermon wrote it.

Only the page used to send them; an API answer rendered by a browser (a problem+json opened
from a link, /docs in a frame) had none. Pages that need more than nothing set their own
Content-Security-Policy (api/dashboard.py, api/docs.py); everything else gets the strictest.
"""

from __future__ import annotations

from flask import Flask, Response

HEADERS = (
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),
    ("X-Frame-Options", "DENY"),  # frame-ancestors for browsers that predate CSP 2
)
# For answers that are data, not pages: nothing may load, nobody may frame them.
DATA_POLICY = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'"
# What an answer written outside Flask carries (api/fastpath.py, api/server_errors.py).
FOR_DATA = (*HEADERS, ("Content-Security-Policy", DATA_POLICY))


def init_app(app: Flask) -> None:
    @app.after_request
    def secure(response: Response) -> Response:
        for name, value in HEADERS:
            response.headers.setdefault(name, value)
        response.headers.setdefault("Content-Security-Policy", DATA_POLICY)
        return response
