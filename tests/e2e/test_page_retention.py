"""Time travel after archiving (API.md "Retention"): the slider starts at the oldest event the
database still holds, the page says where the older history went, and a time inside the
archive shows the API's 410 in words, naming the archive."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from playwright.sync_api import expect

from tests.e2e.browser import (  # noqa: F401
    WAIT_MS,
    axe_violations,
    browser_fixture,
    call,
    cluster_fixture,
    eventually,
    page_fixture,
    sign_in,
)

pytestmark = [pytest.mark.postgres, pytest.mark.slow]


def test_the_slider_starts_at_the_oldest_kept_event_and_archived_times_say_where(
    page, cluster, server, tmp_path
):
    cluster.agent.start()
    boundary = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=2)
    eventually(lambda: datetime.now(UTC) > boundary + timedelta(seconds=1))
    archive = tmp_path / "archive"
    server.cli("archive", "--before", boundary.isoformat(), "--to", str(archive))
    status, retention = call(cluster.url, "GET", "/api/v1/retention", cluster.viewer)
    assert status == 200 and retention["archives"], retention
    oldest = datetime.fromisoformat(retention["oldest_time"])
    assert oldest >= boundary

    sign_in(page, cluster.url, cluster.viewer)
    note = page.locator("#tt-archived")
    expect(note).to_contain_text(f"Older history archived to {archive}", timeout=WAIT_MS)
    expect(page.locator("#tt-first")).to_have_text(
        f"oldest kept event {oldest:%Y-%m-%d %H:%M:%S} UTC"
    )

    # A time inside the archive: the API's 410, in its words, with the archive's path.
    field = page.get_by_label("Show the cluster as it was at (UTC)")
    field.fill(f"{boundary - timedelta(seconds=1):%Y-%m-%d %H:%M:%S}")
    page.locator("#tt-form").get_by_role("button", name="Show").click()
    error = page.locator("#tt-error")
    expect(error).to_contain_text("is in archived history", timeout=WAIT_MS)
    expect(error).to_contain_text(str(archive))
    expect(page.locator("#mode")).to_have_attribute("data-mode", "live")

    # The slider's start is the oldest kept event: a view, not a 410.
    # (once the slider spans more than its first second: the live view reaches it shortly)
    expect(page.locator("#tt-slider")).not_to_have_attribute("max", "0", timeout=WAIT_MS)
    page.get_by_label("Anywhere in the log").press("Home")
    try:
        expect(page.locator("#mode")).to_have_attribute("data-mode", "past", timeout=WAIT_MS)
    except AssertionError as failure:  # say what the page was told
        told = error.text_content(), field.input_value()
        raise AssertionError(f"time travel error {told[0]!r}, time field {told[1]!r}") from failure
    expect(error).to_have_text("")
    expect(field).to_have_value(f"{oldest:%Y-%m-%d %H:%M:%S}")
    assert axe_violations(page, "#timetravel") == [], "the archived note is not accessible"
