"""Helpers for the browser tests: Debian's Chromium driven by Playwright, a fake agent that keeps
a small cluster beating, and plain HTTP calls to the API.

Chromium comes from the distribution (`apt-get install chromium`, done by .ci/run): Playwright's
own browser download is never used (`executable_path`)."""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import threading
import urllib.error
import urllib.request
from datetime import UTC, datetime

import orjson
import pytest

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
