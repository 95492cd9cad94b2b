"""The Cluster Management page in a real browser (Debian's Chromium via Playwright) against a
real `clustermon serve` and `clustermon scheduler`: sign in, watch a service go stale live,
remove a component, travel back to before the removal, refuse a bad configuration value, and
keep updating by polling when the event stream is cut.

Waits are bounded polls (Playwright's `expect`), never fixed sleeps. Set
CLUSTERMON_SCREENSHOT=docs/screenshot.png to refresh the README's screenshot, and
CLUSTERMON_SCREENSHOTS=docs/screenshots for the pictures the test_page_* files take."""

from __future__ import annotations

import os
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from playwright.sync_api import expect

from tests.e2e.browser import (  # noqa: F401
    WAIT_MS,
    Cluster,
    browser_fixture,
    call,
    cell,
    cluster_fixture,
    page_fixture,
    row,
    sign_in,
)
from tests.e2e.browser import axe_violations as _axe_violations
from tests.e2e.browser import eventually as _eventually
from tests.e2e.browser import screenshot as _screenshot

pytestmark = [pytest.mark.postgres, pytest.mark.slow]


def test_a_viewer_sees_the_cluster_and_a_service_turning_stale_live(page, cluster, tmp_path):
    cluster.configure(heartbeat_frequency_seconds=1, stale_timeout_seconds=3)
    cluster.agent.start()

    sign_in(page, cluster.url, cluster.viewer)

    expect(page.locator("#who-role")).to_have_text("viewer")
    expect(page.locator("#servers-body tr")).to_have_count(3, timeout=WAIT_MS)
    expect(page.locator("#server-count")).to_have_text("3")
    expect(page.locator("#live")).to_contain_text("connected", timeout=WAIT_MS)
    expect(cell(page, "node02", "service")).to_have_attribute("data-state", "current")
    # The key mismatch is shown with an icon that says so, not only a colour.
    key = row(page, "node03").locator('td[data-sync="key"]')
    expect(key).to_contain_text("Out of sync")
    expect(key.get_by_role("img", name="Encryption key: Out of sync")).to_have_count(1)
    # A viewer sees no admin control.
    expect(page.get_by_role("button", name=re.compile("^Remove"))).to_have_count(0)
    expect(page.locator("#cfg-stale_timeout_seconds")).to_be_disabled()

    page.evaluate(
        """() => { window.layoutShift = 0;
        new PerformanceObserver((list) => { for (const e of list.getEntries()) {
          if (!e.hadRecentInput) { window.layoutShift += e.value; } } })
        .observe({type: "layout-shift"}); }"""
    )
    # Live updates that change no health (ages ticking, views re-read) never move the page.
    seen = int(page.locator("#mode").get_attribute("data-position") or 0)
    expect(page.locator("#mode")).not_to_have_attribute(
        "data-position", re.compile(rf"^({seen}|{seen + 1}|{seen + 2})$"), timeout=WAIT_MS
    )
    assert page.evaluate("window.layoutShift") == 0, "live updates moved the page"
    # Trouble first: node03 (its key differs) leads while the others are fine.
    expect(page.locator("#servers-body tr").first).to_have_attribute("data-server", "node03")
    cluster.agent.silence("node02", "service")

    service = cell(page, "node02", "service")
    expect(service).to_have_attribute("data-state", "stale", timeout=WAIT_MS)
    expect(service.locator(".beat-state")).to_have_text("stale")
    expect(service.get_by_role("img", name="Service Error")).to_have_count(1)
    service.locator("summary").click()
    expect(service.locator(".reasons li").first).to_contain_text("no heartbeat for")
    expect(row(page, "node02")).to_have_attribute("data-health", "error")
    expect(cell(page, "node01", "service")).to_have_attribute("data-state", "current")
    # Its trouble moves node02 up among the servers in error (by name), ahead of node01.
    _eventually(lambda: _order(page) == ["node02", "node03", "node01"])
    assert page.evaluate("document.documentElement.scrollWidth") <= 1280, "wider than 1280 px"

    # Its history, from the history endpoint, shows the timeout the scheduler recorded.
    service.get_by_role("button", name="History of the Service component of node02").click()
    history = page.locator("#history-dialog")
    expect(history).to_be_visible()
    expect(history.locator("tbody tr").first).to_contain_text("Timed out", timeout=WAIT_MS)
    history.get_by_role("button", name="Close").click()
    expect(history).to_be_hidden()

    # The audit pane shows the outage once the audit has seen it.
    expect(page.locator("#audit")).to_contain_text("node02 Service", timeout=WAIT_MS)

    # Signing out forgets the token; an admin then gets the controls a viewer does not.
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_label("API token")).to_be_visible()
    assert page.evaluate("sessionStorage.length") == 0
    sign_in(page, cluster.url, cluster.admin)
    expect(page.locator("#who-role")).to_have_text("admin")
    page.reload()  # the tab keeps its sign-in
    expect(page.locator("#who-role")).to_have_text("admin", timeout=WAIT_MS)
    expect(page.get_by_role("button", name=re.compile("^Remove"))).to_have_count(6)
    expect(page.locator("#cfg-stale_timeout_seconds")).to_be_enabled()
    expect(service).to_have_attribute("data-state", "stale", timeout=WAIT_MS)
    expect(page.locator("#audit")).to_contain_text("node02 Service", timeout=WAIT_MS)
    # The picture for the README: the reasons of the stale service and of the key mismatch open.
    service.locator("summary").click()
    row(page, "node03").locator(".server-cell summary").click()
    expect(row(page, "node03").locator(".server-cell .reasons li").first).to_contain_text(
        "encryption key differs"
    )
    _screenshot(page, Path(os.environ.get("CLUSTERMON_SCREENSHOT") or tmp_path / "page.png"))


def _order(page) -> list[str]:
    """The servers in the order the table shows them."""
    return page.locator("#servers-body tr").evaluate_all("rows => rows.map(r => r.dataset.server)")


def test_an_admin_is_refused_a_bad_value_removes_a_component_and_travels_back(page, cluster):
    cluster.agent.start()
    sign_in(page, cluster.url, cluster.admin)
    expect(page.locator("#servers-body tr")).to_have_count(3, timeout=WAIT_MS)

    # A stale timeout shorter than two heartbeat periods is refused, next to the field.
    stale = page.get_by_label("Stale timeout (Service)")
    expect(stale).to_be_enabled()
    stale.fill("30")
    page.get_by_role("button", name="Save configuration").click()
    error = page.locator("#error-stale_timeout_seconds")
    expect(error).to_contain_text("at least two heartbeat periods (60 s)", timeout=WAIT_MS)
    expect(stale).to_have_attribute("aria-invalid", "true")
    assert _configuration(cluster)["stale_timeout_seconds"] == 300
    # A good value is saved and the message goes away.
    stale.fill("120")
    page.get_by_role("button", name="Save configuration").click()
    expect(page.locator("#config-status")).to_have_text("Saved.", timeout=WAIT_MS)
    expect(error).to_be_hidden()
    expect(stale).to_have_value("120")
    # Bounded: a read right after a write can miss it while another process folds the log.
    _eventually(lambda: _configuration(cluster)["stale_timeout_seconds"] == 120)

    # The page travels to whole seconds: the removal must come after the first whole second of
    # the log, or "the second before the removal" would be before the log (on a fast machine
    # everything above fits in the log's first second).
    second_after_start = _first_event_time(cluster).replace(microsecond=0) + timedelta(seconds=1)
    _eventually(lambda: datetime.now(UTC) > second_after_start)

    # Remove node03's Web component (its agent stops first, or its next heartbeat re-adds it).
    cluster.agent.silence("node03", "web")
    web = cell(page, "node03", "web")
    web.get_by_role("button", name="Remove the Web component of node03").click()
    dialog = page.locator("#confirm-remove")
    expect(dialog).to_be_visible()
    expect(dialog).to_contain_text("The Web component of server node03 will be removed")
    dialog.get_by_role("button", name="Remove Web of node03").click()
    expect(dialog).to_be_hidden(timeout=WAIT_MS)
    expect(web).to_have_attribute("data-state", "absent", timeout=WAIT_MS)
    expect(web).to_contain_text("Not in the cluster")

    # Back to the second before the removal: the component is there again, in a past view.
    removed_at = _removal_time(cluster)
    before = removed_at.replace(microsecond=0)
    assert before < removed_at
    page.get_by_label("Show the cluster as it was at (UTC)").fill(
        before.strftime("%Y-%m-%d %H:%M:%S")
    )
    page.locator("#tt-form").get_by_role("button", name="Show").click()
    mode = page.locator("#mode")
    try:
        expect(mode).to_have_attribute("data-mode", "past", timeout=WAIT_MS)
    except AssertionError as failure:  # say what the page was told
        told = page.locator("#tt-error").text_content(), page.locator("#tt-time").input_value()
        raise AssertionError(f"time travel error {told[0]!r}, time field {told[1]!r}") from failure
    expect(mode).to_contain_text(f"Past view: the cluster as it was at {before:%Y-%m-%d %H:%M:%S}")
    expect(web).to_have_attribute("data-state", "current")
    expect(page.get_by_label("Stale timeout (Service)")).to_be_disabled()  # no edits in the past
    expect(web.get_by_role("button", name="Remove the Web component of node03")).to_be_hidden()

    page.get_by_role("button", name="Back to live").click()
    expect(mode).to_have_attribute("data-mode", "live", timeout=WAIT_MS)
    expect(web).to_have_attribute("data-state", "absent", timeout=WAIT_MS)
    expect(page.get_by_label("Stale timeout (Service)")).to_be_enabled()

    # Before the log there is nothing to show, and the page says why.
    picker = page.get_by_label("Show the cluster as it was at (UTC)")
    picker.fill("2020-01-01 00:00:00")
    page.locator("#tt-form").get_by_role("button", name="Show").click()
    expect(page.locator("#tt-error")).to_contain_text("before the log", timeout=WAIT_MS)
    expect(mode).to_have_attribute("data-mode", "live")

    # The slider spans the log: its start is the agent's first heartbeats, Web of node03 included.
    first = _first_event_time(cluster)
    page.get_by_label("Anywhere in the log").press("Home")
    expect(mode).to_have_attribute("data-mode", "past", timeout=WAIT_MS)
    expect(page.get_by_label("Show the cluster as it was at (UTC)")).to_have_value(
        first.strftime("%Y-%m-%d %H:%M:%S")
    )
    expect(web).to_have_attribute("data-state", "current")
    page.get_by_role("button", name="Back to live").click()
    expect(web).to_have_attribute("data-state", "absent", timeout=WAIT_MS)


def _configuration(cluster) -> dict:
    status, view = call(cluster.url, "GET", "/api/v1/cluster", cluster.admin)
    assert status == 200
    return view["configuration"]


def _first_event_time(cluster) -> datetime:
    status, page = call(cluster.url, "GET", "/api/v1/events?limit=1", cluster.viewer)
    assert status == 200
    return datetime.fromisoformat(page["events"][0]["recorded_at"])


def _removal_time(cluster) -> datetime:
    status, page = call(
        cluster.url, "GET", "/api/v1/events?type=ComponentRemoved&limit=10", cluster.viewer
    )
    assert status == 200
    [removal] = page["events"]
    return datetime.fromisoformat(removal["recorded_at"])


def test_without_the_event_stream_the_page_polls_and_says_so(page, cluster):
    cluster.agent.start()
    page.route("**/api/v1/events/stream*", lambda route: route.abort())

    page.goto(cluster.url + "/")
    page.get_by_label("API token").fill("cm_viewer_not-a-real-token")
    page.get_by_label("API token").press("Enter")
    expect(page.locator("#token-error")).to_have_text("This token is not known or was revoked.")
    sign_in(page, cluster.url, cluster.viewer)

    live = page.locator("#live")
    expect(live).to_have_attribute("data-state", "polling", timeout=WAIT_MS)
    expect(live).to_contain_text(re.compile(r"disconnected — polling every 5 s\s+\(next in \d s\)"))
    expect(page.locator("#servers-body tr")).to_have_count(3, timeout=WAIT_MS)
    cluster.agent.add("node04", "service", 4)
    expect(row(page, "node04")).to_have_count(1, timeout=WAIT_MS)  # arrived by polling

    # Phone width: one card per server, nothing wider than the screen.
    page.set_viewport_size({"width": 390, "height": 844})
    expect(row(page, "node04")).to_be_visible()
    assert page.evaluate("document.documentElement.scrollWidth") <= 390


def test_an_admin_adds_a_polled_server_sees_a_field_error_and_removes_it(page, cluster):
    cluster.agent.start()
    sign_in(page, cluster.url, cluster.admin)
    pane = page.locator("#targets")
    expect(pane.locator("#no-targets")).to_be_visible(timeout=WAIT_MS)

    # A URL the poller cannot use is refused, and the page says why next to the field.
    page.get_by_label("Server name").fill("proget09")
    url = page.get_by_label("Base URL")
    url.fill("ftp://proget09/")
    page.get_by_role("button", name="Save target").click()
    error = page.locator("#target-error-url")
    expect(error).to_contain_text("Not a valid URL", timeout=WAIT_MS)
    expect(url).to_have_attribute("aria-invalid", "true")
    expect(url).to_be_focused()
    # So is a timeout that would not end before the next poll (the API's cross-field rule).
    url.fill("http://127.0.0.1:9/?token=s3cret")
    page.get_by_label("Poll every").fill("5")
    page.get_by_label("Poll timeout").fill("5")
    page.get_by_role("button", name="Save target").click()
    expect(page.locator("#target-error-timeout_seconds")).to_contain_text(
        "shorter than the interval", timeout=WAIT_MS
    )
    expect(error).to_be_hidden()
    assert _axe_violations(page) == [], "the pane with field errors is not accessible"

    page.get_by_label("Poll timeout").fill("2")
    page.get_by_role("button", name="Save target").click()
    expect(page.locator("#target-status")).to_have_text("Saved proget09.", timeout=WAIT_MS)
    target_row = pane.locator('#targets-body tr[data-server="proget09"]')
    expect(target_row).to_have_count(1, timeout=WAIT_MS)
    # The token in its URL is never shown.
    expect(target_row.locator("td.url")).to_have_text("http://127.0.0.1:9/?token=***")
    expect(target_row.locator("td.every")).to_have_text("5 s (timeout 2 s)")
    assert "s3cret" not in page.content()
    status, listed = call(cluster.url, "GET", "/api/v1/targets", cluster.viewer)
    assert status == 200 and [t["server"] for t in listed["targets"]] == ["proget09"]

    # Changing it keeps the stored URL (secret included) unless a new one is typed.
    target_row.get_by_role("button", name="Change the target proget09").click()
    expect(url).to_have_value("")
    expect(url).to_have_attribute("placeholder", "http://127.0.0.1:9/?token=***")
    page.get_by_label("Poll every").fill("60")
    page.get_by_role("button", name="Save target").click()
    expect(target_row.locator("td.every")).to_contain_text("60 s", timeout=WAIT_MS)
    expect(target_row.locator("td.url")).to_have_text("http://127.0.0.1:9/?token=***")
    assert _axe_violations(page) == [], "the page with a target is not accessible"

    # Stopping the polls asks first, then the row goes.
    target_row.get_by_role("button", name="Stop polling proget09").click()
    dialog = page.locator("#confirm-target-remove")
    expect(dialog).to_be_visible()
    expect(dialog).to_contain_text("clustermon will stop polling proget09")
    dialog.get_by_role("button", name="Stop polling proget09 now").click()
    expect(dialog).to_be_hidden(timeout=WAIT_MS)
    expect(target_row).to_have_count(0, timeout=WAIT_MS)
    expect(pane.locator("#no-targets")).to_be_visible()
    status, page_of_events = call(
        cluster.url, "GET", "/api/v1/events?type=TargetRemoved", cluster.viewer
    )
    assert [e["metadata"]["actor"] for e in page_of_events["events"]] == ["admin-e2e"]


def test_a_viewer_sees_the_polled_servers_without_the_admin_controls(page, cluster):
    status, _ = call(
        cluster.url,
        "PUT",
        "/api/v1/targets/proget01",
        cluster.admin,
        {"url": "https://monitor:pa55@127.0.0.1:9/"},
    )
    assert status == 200
    sign_in(page, cluster.url, cluster.viewer)
    target_row = page.locator('#targets-body tr[data-server="proget01"]')
    expect(target_row).to_have_count(1, timeout=WAIT_MS)
    expect(target_row.locator("td.url")).to_have_text("https://monitor:***@127.0.0.1:9/")
    expect(page.locator("#target-form")).to_be_hidden()
    expect(target_row.get_by_role("button")).to_have_count(0)
    assert _axe_violations(page) == [], "the viewer's page is not accessible"


@pytest.fixture
def notified_cluster(server, pg_database_url):
    """A cluster whose server has a secret key of its own (channels are refused without)."""
    server.env["CLUSTERMON_SECRET_KEY"] = "e2e-only-secret-key"
    cluster = Cluster(server, pg_database_url)
    yield cluster
    cluster.close()


def test_an_admin_tests_a_channel_and_silences_a_server(page, notified_cluster):
    from tests.notify_support import webhook

    cluster = notified_cluster
    cluster.agent.start()
    with webhook("/hooks/e2e-s3cret-path") as hook:
        status, body = call(
            cluster.url,
            "PUT",
            "/api/v1/notifications/channels/ops-hook",
            cluster.admin,
            {"url": hook.url, "on": ["stale", "recovered"]},
        )
        assert status == 200, body
        sign_in(page, cluster.url, cluster.admin)
        pane = page.locator("#notifications")
        channel_row = pane.locator('#channels-body tr[data-channel="ops-hook"]')
        expect(channel_row).to_have_count(1, timeout=WAIT_MS)
        expect(channel_row).to_contain_text("webhook")
        expect(channel_row).to_contain_text("/***")
        assert "e2e-s3cret-path" not in page.content()

        # The test message goes out now, reaches the receiver, and is listed as sent.
        channel_row.get_by_role("button", name="Send a test message to ops-hook").click()
        expect(pane.locator("#channel-status")).to_have_text(
            "The test message reached ops-hook.", timeout=WAIT_MS
        )
        assert [r.body["trigger"] for r in hook.received] == ["test"]
    delivery = pane.locator("#deliveries-body tr").first
    expect(delivery).to_have_attribute("data-state", "sent", timeout=WAIT_MS)
    expect(delivery).to_contain_text("ops-hook")

    # A server row's "Silence…" asks for how long, then the silence is listed.
    expect(row(page, "node01")).to_be_visible(timeout=WAIT_MS)
    row(page, "node01").get_by_role("button", name="Silence notifications about node01").click()
    dialog = page.locator("#silence-dialog")
    expect(dialog).to_be_visible()
    assert _axe_violations(page, "#silence-dialog") == [], "the silence dialog is not accessible"
    dialog.get_by_label("For").select_option(label="2 hours")
    dialog.get_by_label("Comment (optional)").fill("patching node01")
    dialog.get_by_role("button", name="Silence", exact=True).click()
    expect(dialog).to_be_hidden(timeout=WAIT_MS)
    silence_row = pane.locator("#silences-body tr")
    expect(silence_row).to_have_count(1, timeout=WAIT_MS)
    expect(silence_row).to_contain_text("node01")
    expect(silence_row).to_contain_text("patching node01")
    status, listed = call(cluster.url, "GET", "/api/v1/silences", cluster.viewer)
    [silence] = listed["silences"]
    starts = datetime.fromisoformat(silence["starts_at"])
    assert datetime.fromisoformat(silence["ends_at"]) - starts == timedelta(hours=2)
    assert _axe_violations(page) == [], "the page with notifications is not accessible"

    # Ending it early removes it from the list.
    silence_row.get_by_role("button", name=re.compile("End the silence of node01")).click()
    expect(silence_row).to_have_count(0, timeout=WAIT_MS)
    expect(pane.locator("#no-silences")).to_be_visible()


def test_a_viewer_sees_channels_and_silences_without_the_admin_controls(page, notified_cluster):
    cluster = notified_cluster
    cluster.agent.start()
    status, _ = call(
        cluster.url,
        "PUT",
        "/api/v1/notifications/channels/mail",
        cluster.admin,
        {"url": "mailto://ops:Pa55w0rdMail@mail.example/", "on": ["daily_report"]},
    )
    assert status == 200
    status, _ = call(
        cluster.url, "POST", "/api/v1/silences", cluster.admin, {"duration_seconds": 3600}
    )
    assert status == 201
    sign_in(page, cluster.url, cluster.viewer)
    pane = page.locator("#notifications")
    expect(pane.locator("#channels-body tr")).to_have_count(1, timeout=WAIT_MS)
    expect(pane.locator("#silences-body tr")).to_have_count(1, timeout=WAIT_MS)
    assert "Pa55w0rdMail" not in page.content()
    expect(pane.get_by_role("button")).to_have_count(0)
    expect(row(page, "node01")).to_be_visible(timeout=WAIT_MS)
    expect(row(page, "node01").get_by_role("button", name=re.compile("Silence"))).to_have_count(0)
    assert _axe_violations(page) == [], "the viewer's notifications pane is not accessible"
