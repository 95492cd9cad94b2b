"""What every answer tells a browser, and what the page never puts in a URL."""

from __future__ import annotations

from html.parser import HTMLParser

import pytest

from tests.api.conftest import heartbeat


@pytest.mark.parametrize(
    "method, path, role",
    [
        ("GET", "/", None),
        ("GET", "/healthz", None),
        ("GET", "/docs", None),
        ("GET", "/openapi.json", None),
        ("GET", "/api/v1/cluster", None),  # 401
        ("GET", "/api/v1/cluster", "viewer"),
        ("GET", "/api/v1/cluster", "agent"),  # 403
        ("GET", "/no/such/page", None),  # 404
        ("BREW", "/api/v1/cluster", "viewer"),  # 405
        ("POST", "/api/v1/heartbeats", "agent"),  # 202, the fast path
        ("POST", "/api/v1/heartbeats?x=1", "agent"),  # 422, Flask
        ("GET", "/static/dashboard.js", None),
    ],
)
def test_every_answer_carries_the_security_headers(client, tokens, method, path, role):
    headers = tokens[role] if role else {}
    body = heartbeat() if method == "POST" else None
    response = client.open(path, method=method, headers=headers, json=body)
    response.close()
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Referrer-Policy"] == "no-referrer"
    assert response.headers["X-Frame-Options"] == "DENY"
    assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]


class _Inputs(HTMLParser):
    def __init__(self, form_id: str):
        super().__init__()
        self.form_id, self.inside, self.named = form_id, False, []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "form":
            self.inside = attrs.get("id") == self.form_id
        elif self.inside and tag in ("input", "button", "select", "textarea") and "name" in attrs:
            self.named.append(attrs["name"])

    def handle_endtag(self, tag):
        if tag == "form":
            self.inside = False


def test_the_sign_in_form_sends_no_token_in_a_url(client):
    # Enter pressed before the script loads submits the form the browser's way: a GET whose
    # URL (history, logs, Referer) would hold every named field.
    inputs = _Inputs("sign-in-form")
    inputs.feed(client.get("/").get_data(as_text=True))
    assert inputs.named == []
