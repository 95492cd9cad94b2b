"""A tiny cluster of fake agents that post heartbeats over HTTP, for demos and first runs."""

from __future__ import annotations

import hashlib
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from datetime import UTC, datetime

import orjson

PRODUCT, VERSION, OLD_VERSION = "ProGet", "2025.10", "2025.4"


@dataclass(frozen=True)
class Scenario:
    servers: int
    dead_service: frozenset[str] = frozenset()
    version_drift: frozenset[str] = frozenset()
    key_mismatch: frozenset[str] = frozenset()

    def names(self) -> list[str]:
        return [f"node{i:02d}" for i in range(1, self.servers + 1)]


def _fingerprint(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def heartbeats(scenario: Scenario, now: datetime, first_round: bool) -> list[dict]:
    """One round of heartbeats: every component of every server, except dead services after
    their first beat (so they go stale on the monitor)."""
    beats = []
    for index, name in enumerate(scenario.names()):
        for component in ("web", "service"):
            if component == "service" and name in scenario.dead_service and not first_round:
                continue
            beats.append(
                {
                    "server": name,
                    "component": component,
                    "os": "Ubuntu" if index % 2 == 0 else "Windows Server",
                    "os_version": "24.04" if index % 2 == 0 else "2022",
                    "ip": f"127.0.10.{index + 1}",
                    "product": PRODUCT,
                    "product_version": OLD_VERSION if name in scenario.version_drift else VERSION,
                    "encryption_key_fingerprint": _fingerprint(
                        "other-key" if name in scenario.key_mismatch else "cluster-key"
                    ),
                    "status": "ok",
                    "verification": "verified",
                    "sent_at": now.isoformat(),
                }
            )
    return beats


def post(url: str, token: str, beats: list[dict]) -> dict:
    request = urllib.request.Request(
        url.rstrip("/") + "/api/v1/heartbeats",
        data=orjson.dumps({"heartbeats": beats}),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return orjson.loads(response.read())


def run(url, token, scenario, interval, rounds=None, echo=print, verbose=False) -> None:
    """Send a round every `interval` seconds. Quiet unless something changes: the first
    delivered round, losing and regaining the monitor; every round only when `verbose` (a
    line every 10 s scrolled `run`'s tokens off the screen)."""
    done = 0
    reachable: bool | None = None
    while rounds is None or done < rounds:
        try:
            receipt = post(url, token, heartbeats(scenario, datetime.now(UTC), done == 0))
        except (urllib.error.URLError, OSError) as exc:
            if reachable is not False or verbose:
                echo(f"simulator: monitor not reachable at {url} ({exc}); retrying")
            reachable = False
        else:
            if verbose:
                echo(f"sent round {done + 1}: {receipt}")
            elif not reachable:
                echo(
                    f"simulator: {scenario.servers} servers send heartbeats to {url} every"
                    f" {interval:g} s (--verbose shows each round)"
                )
            reachable = True
        done += 1
        if rounds is None or done < rounds:
            time.sleep(interval)
