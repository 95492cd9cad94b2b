"""A large cluster on the page (issue #20, "trouble first"): 120 servers, the failing ones on the
first screen with the counts above them, a filter box, pages of 50, and a browser tab whose
title and favicon say the worst state even while it is in the background.

Set CLUSTERMON_SCREENSHOTS=docs/screenshots to refresh the pictures in docs/."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from playwright.sync_api import expect

from tests.e2e.browser import (  # noqa: F401
    WAIT_MS,
    Cluster,
    axe_violations,
    browser_fixture,
    page_fixture,
    row,
    screenshot,
    sign_in,
)

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

SERVERS = 117  # besides the fixture's node01-node03: 120 in all


@pytest.fixture
def cluster(server, pg_database_url):
    """The usual cluster, served without the cap on new servers per hour (120 arrive at once)."""
    server.env["CLUSTERMON_NEW_SERVERS_PER_HOUR"] = "0"
    cluster = Cluster(server, pg_database_url)
    yield cluster
    cluster.close()


def order(page) -> list[str]:
    return page.locator("#servers-body tr").evaluate_all("rows => rows.map(r => r.dataset.server)")


def shots(tmp_path) -> Path:
    return Path(os.environ.get("CLUSTERMON_SCREENSHOTS") or tmp_path)


def test_the_failing_servers_of_a_large_cluster_come_first(page, cluster, tmp_path):
    cluster.configure(heartbeat_frequency_seconds=1, stale_timeout_seconds=3)
    cluster.agent.interval = 0.8  # 123 heartbeats a post: no need to hurry
    for index in range(1, SERVERS + 1):
        name = f"srv{index:03}"
        extra = {}
        if name == "srv050":
            extra = {"status": "error", "message": "database unreachable"}
        if name == "srv080":
            extra = {"product": "Otter", "product_version": "2024.3"}
        cluster.agent.add(name, "service", index, **extra)
    cluster.agent.start()

    sign_in(page, cluster.url, cluster.viewer)
    counts = page.locator("#health-counts")
    expect(counts).to_contain_text("120 servers", timeout=WAIT_MS)
    # The two servers in error lead (node03: its key differs; srv050: its service says so),
    # whatever their names; the rest follow by name.
    expect(counts).to_contain_text("2 errors · 0 warnings · 118 OK")
    expect(page.locator("#servers-body tr")).to_have_count(50)
    assert order(page)[:4] == ["node03", "srv050", "node01", "node02"]
    expect(page).to_have_title("2 errors · clustermon")
    icon = page.locator('link[rel="icon"]')
    expect(icon).to_have_attribute("data-state", "error")
    expect(icon).to_have_attribute("href", re.compile(r"^data:image/svg\+xml,.*b42318"))

    # Pages of 50, and a page that is turned stays turned across live updates. (The page writes
    # ranges with an en dash, as typography wants: hence the noqa.)
    pager = page.locator("#servers-page")
    expect(pager).to_have_text("Servers 1–50 of 120 · page 1 of 3")  # noqa: RUF001
    page.get_by_role("button", name="Next page").click()
    expect(pager).to_have_text("Servers 51–100 of 120 · page 2 of 3")  # noqa: RUF001
    expect(page.locator("#servers-body tr").first).to_have_attribute("data-server", "srv047")
    page.get_by_role("button", name="Next page").click()
    expect(page.locator("#servers-body tr")).to_have_count(20)
    expect(page.get_by_role("button", name="Next page")).to_be_disabled()
    page.get_by_role("button", name="Previous page").click()
    page.get_by_role("button", name="Previous page").click()
    expect(pager).to_contain_text("page 1 of 3")

    # A service goes quiet: it joins the servers in error at the top, and the tab says so.
    cluster.agent.silence("srv117", "service")
    expect(page).to_have_title("1 stale · 3 errors · clustermon", timeout=WAIT_MS)
    expect(row(page, "srv117")).to_be_visible()
    assert order(page)[:3] == ["node03", "srv050", "srv117"]
    expect(counts).to_contain_text("3 errors · 0 warnings · 117 OK — 1 stale component")

    # The filter box: by state, product and name; every word must match.
    search = page.get_by_label("Filter")
    search.fill("stale")
    expect(page.locator("#servers-body tr")).to_have_count(1)
    expect(row(page, "srv117")).to_be_visible()
    search.fill("otter")
    expect(page.locator("#servers-body tr")).to_have_count(1)
    expect(row(page, "srv080")).to_be_visible()
    search.fill("srv1")
    expect(page.locator("#servers-body tr")).to_have_count(18)
    expect(page.locator("#servers-pager")).to_be_hidden()  # 18 fit on one page
    search.fill("srv1 error")
    expect(page.locator("#servers-body tr")).to_have_count(1)
    search.fill("no-such-server")
    expect(page.locator("#servers-body tr")).to_have_count(0)
    expect(page.locator("#no-match")).to_be_visible()
    assert axe_violations(page) == [], "the filtered servers pane is not accessible"
    search.fill("")
    expect(page.locator("#servers-body tr")).to_have_count(50)
    assert axe_violations(page) == [], "the page of a large cluster is not accessible"
    row(page, "srv050").locator(".server-cell summary").click()
    page.locator("#servers").scroll_into_view_if_needed()
    screenshot(page, shots(tmp_path) / "trouble-first.png", full_page=False)

    # Signed out, the tab forgets the cluster.
    page.get_by_role("button", name="Sign out").click()
    expect(page).to_have_title("Cluster Management · clustermon")
    expect(icon).to_have_attribute("data-state", "none")
