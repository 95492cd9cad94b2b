"""The messages a delivery carries (`deliveries.payload`): API.md's webhook body without `id`,
which the sender adds (it is the row's). Plain dicts of JSON types, built in one place so the
webhook, the mail and the API show the same thing."""

from __future__ import annotations

import os
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from notify.transitions import Transition

PUBLIC_URL_ENV = "CLUSTERMON_PUBLIC_URL"
DEFAULT_PUBLIC_URL = "http://127.0.0.1:8000/"
TEST_REASON = "a test message from clustermon"


def public_url() -> str:
    return os.environ.get(PUBLIC_URL_ENV) or DEFAULT_PUBLIC_URL


def _iso(at: datetime) -> str:
    return at.astimezone(UTC).isoformat()


def link(base: str, at: datetime | None = None) -> str:
    """The dashboard, at the moment a message is about (time travel) when there is one."""
    if at is None:
        return base
    separator = "&" if "?" in base else "?"
    return f"{base}{separator}at={quote(_iso(at))}"


def transition(t: Transition, base: str) -> dict[str, Any]:
    return {
        "trigger": t.trigger,
        "server": t.server,
        "component": t.component,
        "at": _iso(t.at),
        "reasons": list(t.reasons),
        "source_position": t.position,
        "link": link(base, t.at),
    }


def grouped(items: Sequence[Transition], base: str) -> dict[str, Any]:
    """One message listing the transitions of one sweep (at: the first one's)."""
    return {
        "trigger": items[0].trigger,
        "at": _iso(items[0].at),
        "items": [transition(t, base) for t in items],
    }


def report(
    kind: str, since: datetime, until: datetime, html: str, at: datetime, base: str
) -> dict[str, Any]:
    """A scheduled report (`kind` "daily" or "weekly"); `html` is the mail body."""
    return {
        "trigger": f"{kind}_report",
        "at": _iso(at),
        "period": {"since": _iso(since), "until": _iso(until)},
        "html": html,
        "link": link(base, until),
    }


def test(at: datetime, base: str) -> dict[str, Any]:
    return {"trigger": "test", "at": _iso(at), "reasons": [TEST_REASON], "link": base}
