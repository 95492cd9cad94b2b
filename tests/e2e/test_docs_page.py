"""/docs in a real browser: Swagger UI renders the document from this server's own files, under
the page's Content-Security-Policy (a violation is a console error), asking nothing of any
other origin."""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest

from tests.e2e.browser import browser_fixture, page_fixture  # noqa: F401 - fixtures
from tests.e2e.live_app import LiveApp, serve


@pytest.fixture(scope="module")
def live(tmp_path_factory, sqlite_template) -> Iterator[LiveApp]:
    with serve(sqlite_template, tmp_path_factory.mktemp("docs")) as app:
        yield app


@pytest.mark.slow
def test_swagger_ui_renders_the_contract_offline_under_the_policy(page, live):
    console: list[str] = []
    origins: set[str] = set()
    page.on("console", lambda m: console.append(m.text) if m.type == "error" else None)
    page.on("request", lambda r: origins.add(urlsplit(r.url).netloc))
    page.goto(f"{live.url}/docs")
    page.wait_for_selector(".opblock", timeout=20_000)
    # Path-level parameters are not taken for operations, and Markdown is rendered.
    summaries = page.locator(".opblock-summary-path").all_inner_texts()
    assert "/api/v1/heartbeats" in summaries
    assert len(summaries) >= 30
    page.locator(".opblock-summary", has_text="/api/v1/events/stream").first.click()
    page.wait_for_selector(".opblock-body")
    assert page.locator(".opblock-body code", has_text="Last-Event-ID").count() >= 1
    assert console == [], console  # a CSP violation is reported here
    assert origins == {urlsplit(live.url).netloc}, origins
