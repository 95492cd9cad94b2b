"""Helpers for the browser tests: Debian's Chromium driven by Playwright, a fake agent that keeps
a small cluster beating, plain HTTP calls to the API, and the fixtures every page test uses
(`browser`, `cluster`, `page`; a test module imports them by their `*_fixture` names).

Chromium comes from the distribution (`apt-get install chromium`, done by .ci/run): Playwright's
own browser download is never used (`executable_path`)."""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import subprocess
import threading
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest
from playwright.sync_api import expect, sync_playwright

from api.tokens import create_token
from cli.processes import spawn_scheduler
from eventstore import create_engine, utc_now

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
LAUNCH_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def launch(playwright):
    if not os.path.exists(CHROMIUM):
        message = "Chromium is not installed (apt-get install chromium)"
        if IN_CI:
            pytest.fail(message + " (CI=true: the browser tests must run)")
        pytest.skip("!!! SKIPPING BROWSER TESTS !!! " + message)
    return playwright.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS, headless=True)


def call(base_url: str, method: str, path: str, token: str, body=None) -> tuple[int, dict]:
    request = urllib.request.Request(
        base_url + path,
        data=None if body is None else orjson.dumps(body),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        method=method,
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, orjson.loads(response.read() or b"{}")
    except urllib.error.HTTPError as exc:
        return exc.code, orjson.loads(exc.read() or b"{}")


def fingerprint(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def beat(server: str, component: str, index: int, key: str = "cluster-key", **extra) -> dict:
    return {
        "server": server,
        "component": component,
        "os": "Ubuntu" if index % 2 else "Windows Server",
        "os_version": "24.04" if index % 2 else "2022",
        "ip": f"10.0.0.{10 + index}",
        "product": "ProGet",
        "product_version": "2025.10",
        "encryption_key_fingerprint": fingerprint(key),
        "status": "ok",
        "verification": "verified",
        "sent_at": datetime.now(UTC).isoformat(),
        **extra,
    }


class Agent:
    """Posts one heartbeat per live component every `interval` seconds, in a thread. Stopping a
    component's heartbeats is how a test makes it go stale."""

    def __init__(self, base_url: str, token: str, interval: float = 0.4):
        self.base_url = base_url
        self.token = token
        self.interval = interval
        self.components: dict[tuple[str, str], dict] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def add(self, server: str, component: str, index: int, **extra) -> None:
        with self._lock:
            self.components[(server, component)] = {"index": index, **extra}

    def silence(self, server: str, component: str) -> None:
        with self._lock:
            self.components.pop((server, component), None)

    def send_once(self) -> None:
        with self._lock:
            beats = [beat(s, c, **spec) for (s, c), spec in self.components.items()]
        if beats:
            status, body = call(
                self.base_url, "POST", "/api/v1/heartbeats", self.token, {"heartbeats": beats}
            )
            assert status == 202, body

    def start(self) -> None:
        self.send_once()
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            # The server may be going away at the end of a test.
            with contextlib.suppress(urllib.error.URLError, OSError):
                self.send_once()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)


WAIT_MS = 15_000


@pytest.fixture(scope="module", name="browser")
def browser_fixture():
    with sync_playwright() as playwright:
        browser = launch(playwright)
        yield browser
        browser.close()


class Cluster:
    """A served clustermon with tokens, a scheduler and an agent beating for three servers;
    node03 has a different encryption key."""

    def __init__(self, server, database_url: str):
        engine = create_engine(database_url)
        try:
            self.admin, self.viewer, agent = (
                create_token(engine, utc_now, f"{role}-e2e", role)
                for role in ("admin", "viewer", "agent")
            )
        finally:
            engine.dispose()
        server.start()
        self.url = server.url
        self.scheduler = spawn_scheduler(
            database_url,
            sweep_interval_seconds=0.2,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.agent = Agent(server.url, agent)
        for index, name in enumerate(("node01", "node02", "node03"), start=1):
            key = "other-key" if name == "node03" else "cluster-key"
            for component in ("web", "service"):
                self.agent.add(name, component, index, key=key)

    def configure(self, **settings) -> dict:
        status, body = call(self.url, "PUT", "/api/v1/cluster/configuration", self.admin, settings)
        assert status == 200, body
        return body

    def close(self) -> None:
        self.agent.stop()
        self.scheduler.terminate()
        self.scheduler.wait(timeout=10)


@pytest.fixture(name="cluster")
def cluster_fixture(server, pg_database_url):
    cluster = Cluster(server, pg_database_url)
    yield cluster
    cluster.close()


@pytest.fixture(name="page")
def page_fixture(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    yield page
    context.close()
    assert errors == [], "JavaScript errors on the page"


def sign_in(page, url: str, token: str) -> None:
    page.goto(url + "/")
    page.get_by_label("API token").fill(token)
    page.locator("#sign-in-form").get_by_role("button", name="Sign in").click()
    expect(page.locator("#app")).to_be_visible(timeout=WAIT_MS)


def row(page, server: str):
    return page.locator(f'#servers-body tr[data-server="{server}"]')


def cell(page, server: str, component: str):
    return row(page, server).locator(f'td[data-component="{component}"]')


def eventually(predicate, seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, "not within the deadline"
        time.sleep(0.1)


def axe_violations(page, context=None) -> list[str]:
    """axe-core's violations on the page as it is now (or within `context`, a CSS selector),
    each as `rule: first offending element`."""
    from axe_playwright_python.sync_playwright import Axe

    results = Axe().run(page, context=context).response
    return [f"{v['id']}: {v['nodes'][0]['html'][:120]}" for v in results["violations"]]


def screenshot(page, path: Path, full_page: bool = True) -> None:
    """A picture of the page as it is now (the docs/ pictures are made this way)."""
    page.mouse.move(0, 0)
    path.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(path), full_page=full_page)
    assert path.stat().st_size > 10_000
