"""The availability strips in a real browser against a real `clustermon serve` and scheduler: a
service that goes stale gets a red segment, first in the list, whose hover text names its times
and reason, reachable from the keyboard; the panel passes axe.

Waits are bounded polls (Playwright's `expect`), never fixed sleeps."""

from __future__ import annotations

import re
from datetime import datetime

import pytest
from playwright.sync_api import expect

from tests.e2e.browser import (  # noqa: F401 (fixtures)
    WAIT_MS,
    axe_violations,
    browser_fixture,
    call,
    cell,
    cluster_fixture,
    page_fixture,
    sign_in,
)

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

STAMP = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d"


def _strip(tab, server: str, component: str):
    return tab.locator(f'.av-row[data-server="{server}"][data-component="{component}"]')


def test_a_stale_service_is_a_red_segment_with_its_times_on_hover(page, cluster):
    cluster.configure(heartbeat_frequency_seconds=1, stale_timeout_seconds=3)
    cluster.agent.start()
    sign_in(page, cluster.url, cluster.viewer)
    expect(page.locator(".av-row")).to_have_count(6, timeout=WAIT_MS)
    expect(_strip(page, "node01", "service").locator(".av-seg")).to_have_attribute(
        "data-state", "current"
    )

    cluster.agent.silence("node02", "service")
    expect(cell(page, "node02", "service")).to_have_attribute(
        "data-state", "stale", timeout=WAIT_MS
    )
    # The panel re-reads every minute; choosing a window reads it now (the week: the day's
    # answer read at sign-in may be served again for a few seconds).
    page.locator("#availability-window").select_option("7d")

    stale = _strip(page, "node02", "service").locator('.av-seg[data-state="stale"]')
    expect(stale).to_have_count(1, timeout=WAIT_MS)
    color = stale.evaluate("node => getComputedStyle(node).backgroundColor")
    assert color == "rgb(180, 35, 24)", "a stale segment is red"
    # Worst uptime first.
    expect(page.locator(".av-row").first).to_have_attribute("data-server", "node02")
    uptime = _strip(page, "node02", "service").locator(".av-uptime")
    assert float(uptime.inner_text().rstrip(" %")) < 100

    title = stale.get_attribute("title") or ""
    match = re.match(rf"^Stale from ({STAMP}) to ({STAMP}) UTC \(\d+ s\): (.*)$", title)
    assert match, title
    assert match.group(3).startswith("no heartbeat within the Service stale timeout (3 s)")
    # Its start is the outage's start as the audit records it (the logical expiry).
    status, outages = call(cluster.url, "GET", "/api/v1/audit/outages", cluster.viewer)
    assert status == 200, outages
    [outage] = [o for o in outages["outages"] if o["server"] == "node02"]
    started = datetime.fromisoformat(outage["start"])
    assert match.group(1) == started.strftime("%Y-%m-%d %H:%M:%S")

    # From the keyboard: the segment takes focus and its text is read out below the strips.
    stale.focus()
    expect(page.locator("#availability-detail")).to_have_text(title)
    assert axe_violations(page, "#availability") == [], "the strips are not accessible"

    # A render of the strips is measured (bench/availability.py reads the same measure).
    measures = page.evaluate(
        "performance.getEntriesByName('availability-render').map(e => e.duration)"
    )
    assert measures and all(m >= 0 for m in measures)
