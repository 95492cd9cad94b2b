"""What a product's `GET /health` document says about its server's two components (API.md
v1.1, "Collection"). Pure: the poller and the agent both map answers with it.

ProGet, BuildMaster and Otter answer e.g. `{"applicationName": "ProGet", "releaseNumber":
"23.0.27", "versionNumber": "2023.27 (Build 5)", "serviceStatus": "OK", "databaseStatus": "OK",
"licenseStatus": "OK", ...}`. Older releases differ, so every field is optional; a value that is
not a string is treated as missing rather than trusted.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

# The heartbeat schema's limits (api/event_schemas.py): what we send must pass them.
MAX_PRODUCT = 100
MAX_PRODUCT_VERSION = 50
MAX_MESSAGE = 500
MAX_DOCUMENT_BYTES = 1 << 20  # a health document is ~1 KB; a bigger answer is refused
# Fields of which a health document has at least one: what tells it from any other JSON.
_HEALTH_FIELDS = ("applicationName", "serviceStatus", "databaseStatus", "releaseNumber")


# The example in the products' docs spells it "databaseStatusDetails"; accept both spellings.
_DATABASE_DETAILS = ("databaseStatusDetails", "databaseStatusDetail")
_LICENSE_DETAILS = ("licenseStatusDetail", "licenseStatusDetails")


class NotHealth(ValueError):
    """The answer is not a health document (an HTML login page, a stack trace, other JSON)."""


def parse(body: bytes) -> dict[str, Any]:
    """The health document in an answer's body, or NotHealth saying what came instead."""
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise NotHealth(f"not JSON: {_glimpse(body)}") from None
    if not isinstance(document, dict) or not any(k in document for k in _HEALTH_FIELDS):
        raise NotHealth(f"JSON but not a health document: {_glimpse(body)}")
    return document


def heartbeats(document: Mapping[str, Any], server: str) -> list[dict[str, Any]]:
    """The `web` and `service` heartbeats (fields of POST /heartbeats, without `sent_at`) that a
    health document stands for. The web node answered, so `web` is up: `warning` when the
    database or the license is not OK. `service` follows `serviceStatus`: OK is `ok`, anything
    else (missing included: the document does not vouch for it) is `error`."""
    product = _text(document, "applicationName", MAX_PRODUCT)
    version = _text(document, "releaseNumber", MAX_PRODUCT_VERSION) or _text(
        document, "versionNumber", MAX_PRODUCT_VERSION
    )
    common = {"server": server, "product": product, "product_version": version}
    found = (
        _problem(document, "database", "databaseStatus", _DATABASE_DETAILS),
        _problem(document, "license", "licenseStatus", _LICENSE_DETAILS),
    )
    web_problems = [p for p in found if p]
    web = {
        **common,
        "component": "web",
        "status": "warning" if web_problems else "ok",
        "message": _cut("; ".join(web_problems), MAX_MESSAGE) if web_problems else None,
    }
    service_status = _text(document, "serviceStatus", MAX_MESSAGE)
    service_ok = service_status is not None and service_status.upper() == "OK"
    if service_ok:
        service_message = None
    else:
        detail = _text(document, "serviceStatusDetail", MAX_MESSAGE)
        said = f"service status {service_status}" if service_status else "no serviceStatus"
        service_message = _cut(f"{said}: {detail}" if detail else said, MAX_MESSAGE)
    service = {
        **common,
        "component": "service",
        "status": "ok" if service_ok else "error",
        "message": service_message,
    }
    return [web, service]


def _problem(document, what: str, status_field: str, detail_fields: tuple[str, ...]) -> str | None:
    status = _text(document, status_field, MAX_MESSAGE)
    if status is None or status.upper() == "OK":
        return None
    detail = next((d for f in detail_fields if (d := _text(document, f, MAX_MESSAGE))), None)
    return f"{what} {status}: {detail}" if detail else f"{what} {status}"


def _text(document: Mapping[str, Any], name: str, limit: int) -> str | None:
    value = document.get(name)
    if not isinstance(value, str):
        return None
    value = " ".join(value.split())  # newlines and runs of spaces from a stack trace
    return _cut(value, limit) or None


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _glimpse(body: bytes, limit: int = 80) -> str:
    """The start of an unexpected body, on one line, for a failure's detail."""
    text = " ".join(body[:400].decode("utf-8", "replace").split())
    return repr(_cut(text, limit)) if text else "an empty body"
