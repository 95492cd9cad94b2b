"""The page's words, its event log and its one time format (issue #20, "The page" 3-5): a stale
component says for how long and what it last reported, its "Why?" moves with its badge, history
and log rows are in words, every log row leads to the cluster at that position, times are
24-hour UTC text, and a time in the future or before the log is refused with a sentence.

Set CLUSTERMON_SCREENSHOTS=docs/screenshots to refresh the pictures in docs/."""

from __future__ import annotations

import os
import re
from datetime import datetime
from pathlib import Path

import pytest
from playwright.sync_api import expect

from tests.e2e.browser import (  # noqa: F401
    WAIT_MS,
    browser_fixture,
    call,
    cell,
    cluster_fixture,
    page_fixture,
    row,
    screenshot,
    sign_in,
)
from tests.e2e.browser import axe_violations as axe

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

STALE_WORDS = re.compile(r"^stale for \d+ s · last heartbeat \d+ s ago$")


def shots(tmp_path) -> Path:
    return Path(os.environ.get("CLUSTERMON_SCREENSHOTS") or tmp_path)


def test_a_stale_component_in_words_its_history_and_the_event_log(page, cluster, tmp_path):
    cluster.configure(heartbeat_frequency_seconds=1, stale_timeout_seconds=3)
    cluster.agent.start()
    sign_in(page, cluster.url, cluster.admin)
    service = cell(page, "node02", "service")
    expect(service).to_have_attribute("data-state", "current", timeout=WAIT_MS)
    expect(service.locator(".beat")).to_have_text(
        re.compile(r"^current · last heartbeat \d s ago$")
    )
    expect(service.locator(".comp-status")).to_have_text("ok · verified")

    cluster.agent.silence("node02", "service")
    expect(service).to_have_attribute("data-state", "stale", timeout=WAIT_MS)
    # Not "ok · verified" beside a red mark: what it said last, and that it is stale.
    expect(service.locator(".comp-status")).to_have_text("stale — last reported ok · verified")
    expect(service.locator(".beat")).to_have_text(STALE_WORDS)
    beat = service.locator(".beat").text_content() or ""
    stale_for, age = (int(n) for n in re.findall(r"\d+", beat))
    assert age - stale_for == 3, "stale for: the heartbeat's age minus the 3 s timeout"

    # An open "Why?" keeps up with the badge: its numbers move while the reader looks.
    service.locator("summary").click()
    reason = service.locator(".reasons li").first
    expect(reason).to_contain_text("no heartbeat for")
    first_reading = reason.text_content() or ""
    expect(reason).not_to_have_text(first_reading, timeout=5_000)

    # History in words, with the detector as a detail.
    service.get_by_role("button", name="History of the Service component of node02").click()
    history = page.locator("#history-dialog")
    newest = history.locator("tbody tr").first
    expect(newest.locator("td.what")).to_contain_text("Timed out", timeout=WAIT_MS)
    expect(newest.locator("td.what small.detail")).to_contain_text("detected by")
    expect(history).not_to_contain_text("ComponentTimedOut")
    expect(history.locator("tbody tr").last.locator("td.what")).to_have_text("First heartbeat")
    assert axe(page, "#history-dialog") == [], "the history dialog is not accessible"
    history.get_by_role("button", name="Close").click()

    # "Saved." is news about one click: it goes away.
    page.get_by_label("Heartbeat frequency").fill("2")
    page.get_by_label("Stale timeout (Service)").fill("5")
    page.get_by_role("button", name="Save configuration").click()
    status = page.locator("#config-status")
    expect(status).to_have_text("Saved.", timeout=WAIT_MS)
    expect(status).to_have_text("", timeout=8_000)

    # The event log: the timeouts, in words, each a link to the cluster at its position.
    log = page.locator("#eventlog")
    log.get_by_label("What").select_option(label="Timed out")
    log.get_by_role("button", name="Show events").click()
    timeout_row = log.locator('#eventlog-body tr[data-type="ComponentTimedOut"]').first
    expect(timeout_row).to_be_visible(timeout=WAIT_MS)
    expect(timeout_row.locator("td.what")).to_have_text("Timed out")
    expect(timeout_row).to_contain_text("node02 Service")
    expect(timeout_row).to_contain_text("detected by")
    expect(log.locator('#eventlog-body tr:not([data-type="ComponentTimedOut"])')).to_have_count(0)
    position = int(timeout_row.get_attribute("data-position") or 0)
    assert axe(page, "#eventlog") == [], "the event log is not accessible"
    log.scroll_into_view_if_needed()
    screenshot(page, shots(tmp_path) / "event-log.png", full_page=False)

    timeout_row.get_by_role("link", name=f"The cluster just after event {position}").click()
    mode = page.locator("#mode")
    expect(mode).to_have_attribute("data-mode", "past", timeout=WAIT_MS)
    expect(mode).to_contain_text(f"(log position {position})")
    assert page.url.endswith(f"?position={position}")
    expect(service).to_have_attribute("data-state", "stale")
    # The header agrees with the banner, the tab says it is the past, nothing was "Saved.".
    expect(page.locator("#live")).to_have_attribute("data-state", "paused")
    expect(page.locator("#live-text")).to_have_text("Live updates: paused — past view")
    expect(page).to_have_title(re.compile(r"^Past view: .*stale.* · clustermon$"))
    expect(status).to_have_text("")
    # The time field shows the view's time in the page's one format.
    expect(page.get_by_label("Show the cluster as it was at (UTC)")).to_have_value(
        re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d$")
    )
    page.evaluate("window.scrollTo(0, 0)")  # the header, the time travel and the banner
    screenshot(page, shots(tmp_path) / "past-view.png", full_page=False)

    # The address is the view: reloading it shows the same past view.
    page.reload()
    expect(mode).to_have_attribute("data-mode", "past", timeout=WAIT_MS)
    expect(mode).to_contain_text(f"(log position {position})")
    page.get_by_role("button", name="Back to live").click()
    expect(mode).to_have_attribute("data-mode", "live", timeout=WAIT_MS)
    expect(page.locator("#live")).to_have_attribute("data-state", "connected", timeout=WAIT_MS)
    assert "?" not in page.url

    # Unfiltered, the log opens at its newest page and pages back and forth.
    log.get_by_label("What").select_option(value="")
    log.get_by_role("button", name="Show events").click()
    rows = log.locator("#eventlog-body tr")
    expect(rows).to_have_count(50, timeout=WAIT_MS)
    newest_first = int(rows.first.get_attribute("data-position") or 0)
    log.get_by_role("button", name="Earlier events").click()
    # Paging stops the newest page from following the log: from here positions stand still.
    expect(rows.first).not_to_have_attribute("data-position", str(newest_first), timeout=WAIT_MS)
    earlier_last = int(rows.last.get_attribute("data-position") or 0)
    assert earlier_last < newest_first + 50
    log.get_by_role("button", name="Later events").click()
    expect(rows.first).to_have_attribute("data-position", str(earlier_last + 1), timeout=WAIT_MS)
    expect(rows.first.locator("td.what")).to_have_text(re.compile(r"^[A-Z][a-z]"))
    # By server: node01's events only.
    log.get_by_label("Server").fill("node01")
    log.get_by_role("button", name="Show events").click()
    expect(log.locator("#eventlog-caption")).to_contain_text("of node01", timeout=WAIT_MS)
    wheres = rows.evaluate_all("rows => rows.map(r => r.cells[3].textContent)")
    assert wheres and all(w.startswith("node01 ") for w in wheres), wheres


def test_times_are_typed_as_24_hour_utc_and_impossible_ones_are_refused(page, cluster):
    cluster.agent.start()
    streams = []
    page.on("request", lambda r: streams.append(r) if "/events/stream?" in r.url else None)
    sign_in(page, cluster.url, cluster.viewer)
    expect(page.locator("#servers-body tr")).to_have_count(3, timeout=WAIT_MS)
    # The live stream is a plain EventSource opened with a one-use ticket: no token in a URL,
    # no Authorization header.
    expect(page.locator("#live")).to_have_attribute("data-state", "connected", timeout=WAIT_MS)
    assert streams, "no live stream was opened"
    for request in streams:
        assert "ticket=" in request.url and "authorization" not in request.headers, request.url
        assert cluster.viewer not in request.url
    field = page.get_by_label("Show the cluster as it was at (UTC)")
    # A text field in the page's format, never the browser's locale picker.
    expect(field).to_have_attribute("type", "text")
    expect(field).to_have_value(re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d$"), timeout=WAIT_MS)
    error = page.locator("#tt-error")
    mode = page.locator("#mode")
    show = page.locator("#tt-form").get_by_role("button", name="Show")

    field.fill("12/08/2026 3:04 PM")
    show.click()
    expect(error).to_contain_text("as YYYY-MM-DD HH:MM:SS")
    expect(field).to_have_attribute("aria-invalid", "true")

    field.fill("2099-01-01 00:00:00")
    show.click()
    expect(error).to_have_text(
        "2099-01-01 00:00:00 UTC is in the future: the latest there is to see is now,"
        " the live view."
    )
    expect(mode).to_have_attribute("data-mode", "live")

    # Before the log: a sentence with the log's start in the same format, no raw stamp.
    status, first = call(cluster.url, "GET", "/api/v1/events?limit=1", cluster.viewer)
    assert status == 200
    start = datetime.fromisoformat(first["events"][0]["recorded_at"])
    field.fill("2020-01-01 00:00:00")
    show.click()
    expect(error).to_have_text(
        f"2020-01-01 00:00:00 UTC is before the log, which starts at {start:%Y-%m-%d %H:%M:%S}"
        " UTC: nothing was recorded earlier. Choose a later time."
    )
    expect(mode).to_have_attribute("data-mode", "live")

    # A 24-hour time in the log is shown, and written back the same way.
    field.fill(f"{start:%Y-%m-%d %H:%M:%S}")
    show.click()
    expect(mode).to_have_attribute("data-mode", "past", timeout=WAIT_MS)
    expect(error).to_have_text("")
    expect(mode).to_contain_text(re.compile(r"as it was at \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC"))

    # What the API refuses is shown as the API's problem says it (here: a position too far).
    page.goto(cluster.url + "/?position=999999")
    expect(error).to_contain_text("beyond the head of the log", timeout=WAIT_MS)
    expect(mode).to_have_attribute("data-mode", "live")
    assert axe(page) == [], "the page with a refused time is not accessible"
