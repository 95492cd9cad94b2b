"""Handing one message to one channel: clustermon's own JSON webhook for http/https URLs, Apprise
for every other scheme (mail, Slack, Teams, ...).

`deliver(url, message)` returns when the channel took the message and raises `DeliveryError`
with a reason a person can act on otherwise. The URL carries the channel's secrets (a webhook's
secret path, a mail password, a chat token), so no reason and no log line written while
delivering may contain them: reasons are built from status codes and exception types, and a
logging filter on the loggers that see URLs (Apprise's, httpx's, urllib3's) masks each secret of
the URLs being delivered to while they are in use.
"""

from __future__ import annotations

import collections
import logging
import re
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import httpx
import orjson

from domain.version import user_agent
from notify.apprise_loader import NotifyEmail, apprise

log = logging.getLogger(__name__)

MASK = "***"


USER_AGENT = user_agent()


class DeliveryError(Exception):
    """The channel did not take the message; `str()` is the reason, free of secrets."""


def is_webhook(url: str) -> bool:
    return urlsplit(url).scheme.lower() in ("http", "https")


# --- keeping secrets out of logs ---------------------------------------------------------------


class _SecretMask(logging.Filter):
    """Masks the secrets of the URLs in use in every record of the loggers it is attached to.

    A filter on a logger sees only records created on that very logger (not its children), so
    it is attached to each logger known to print URLs, paths or SMTP dialogue."""

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()
        self._in_use: collections.Counter[str] = collections.Counter()

    @contextmanager
    def masking(self, secrets: set[str]) -> Iterator[None]:
        with self._lock:
            self._in_use.update(secrets)
        try:
            yield
        finally:
            with self._lock:
                self._in_use.subtract(secrets)
                self._in_use += collections.Counter()  # drops the ones no longer in use

    def redact(self, text: str) -> str:
        with self._lock:
            secrets = sorted(self._in_use, key=len, reverse=True)  # the longest first
        for secret in secrets:
            text = text.replace(secret, MASK)
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        if not self._in_use:
            return True
        message = record.getMessage()
        redacted = self.redact(message)
        if redacted != message:
            record.msg, record.args = redacted, None
        if record.exc_info and not record.exc_text:
            record.exc_text = self.redact(logging.Formatter().formatException(record.exc_info))
        return True


_MASK = _SecretMask()
# The loggers that see a delivery's URL: Apprise (its plugins' "POST URL: ..." debug lines),
# httpx and httpcore (our webhook), urllib3 (Apprise's HTTP plugins log each request line).
_URL_LOGGERS = (
    "apprise",
    "httpx",
    "httpcore.connection",
    "httpcore.http11",
    "urllib3.connectionpool",
)
for _name in _URL_LOGGERS:
    logging.getLogger(_name).addFilter(_MASK)

_TOKENS = re.compile(r"[^/:@?&=#,;+\s]+")
_SHORTEST_SECRET = 4  # shorter pieces ("ssl", "on") would mask half of every message


def secrets_of(url: str) -> set[str]:
    """The pieces of `url` that must not be shown: the whole URL, its password, and
    - for a webhook, each path segment and query value (a webhook's secret is its path);
    - for an Apprise URL, each piece Apprise itself masks in its privacy form."""
    found = {url}
    parts = urlsplit(url)
    pieces: set[str] = set()
    if parts.password:
        pieces.add(parts.password)
    if is_webhook(url):
        pieces.update(parts.path.split("/"))
        pieces.update(value for _, value in parse_qsl(parts.query, keep_blank_values=True))
    else:
        plugin = apprise.Apprise.instantiate(url, asset=_ASSET)
        if plugin is not None:
            shown = set(_TOKENS.findall(unquote(plugin.url(privacy=True))))
            full = _TOKENS.findall(unquote(plugin.url(privacy=False)))
            pieces.update(token for token in full if token not in shown)
    for piece in pieces:
        for form in (piece, unquote(piece)):
            if len(form) >= _SHORTEST_SECRET:
                found.add(form)
    return found


# --- the message as text ----------------------------------------------------------------------


def _subject(item: Mapping[str, Any]) -> str:
    where = "/".join(str(item[k]) for k in ("server", "component") if item.get(k))
    return f"{item.get('trigger', 'notification')}" + (f": {where}" if where else "")


def title_of(message: Mapping[str, Any]) -> str:
    trigger = message.get("trigger")
    if "items" in message:
        return f"clustermon: {len(message['items'])} changes"
    if trigger in ("daily_report", "weekly_report"):
        period = message.get("period") or {}
        kind = "daily" if trigger == "daily_report" else "weekly"
        return f"clustermon {kind} report {period.get('since', '')} to {period.get('until', '')}"
    if trigger == "test":
        return "clustermon: test message"
    return f"clustermon: {_subject(message)}"


def _lines_of(item: Mapping[str, Any]) -> list[str]:
    lines = [f"{_subject(item)} at {item.get('at', '')}"]
    lines += [f"  - {reason}" for reason in item.get("reasons") or []]
    return lines


def text_of(message: Mapping[str, Any]) -> str:
    """A plain-text body: what changed, why, where to look, and the delivery id (a reader or a
    mail filter can drop a repeat by it)."""
    lines: list[str] = []
    for item in message.get("items") or [message]:
        lines += _lines_of(item)
    if message.get("link"):
        lines += ["", f"Dashboard: {message['link']}"]
    lines += ["", f"Delivery id: {message.get('id', '')}"]
    return "\n".join(lines)


# --- the two transports -----------------------------------------------------------------------

_client: httpx.Client | None = None
_client_lock = threading.Lock()


def _http() -> httpx.Client:
    """One client per process: its connection pool makes a burst of deliveries to one receiver
    cost a request each, not a TCP connection each. Redirects are not followed: a webhook that
    moved is a configuration to fix, and following would send the body where nobody asked."""
    global _client
    with _client_lock:
        if _client is None:
            _client = httpx.Client(follow_redirects=False, headers={"User-Agent": USER_AGENT})
        return _client


# The version of clustermon's webhook body (README, "Get notified"): a receiver can tell a
# later shape from this one. Fields are only ever added within a version.
WEBHOOK_VERSION = 1


def _post(url: str, message: Mapping[str, Any], timeout: float) -> None:
    try:
        answer = _http().post(
            url,
            content=orjson.dumps({"version": WEBHOOK_VERSION, **message}),
            headers={"Content-Type": "application/json", "Idempotency-Key": str(message["id"])},
            timeout=timeout,
        )
    except httpx.TimeoutException as exc:
        raise DeliveryError(f"the webhook did not answer within {timeout:g} s") from exc
    except httpx.HTTPError as exc:
        # The exception's text may quote the URL: only its kind and errno-like text are kept.
        raise DeliveryError(f"the webhook could not be reached ({type(exc).__name__})") from exc
    if 200 <= answer.status_code < 300:
        return
    if answer.is_redirect:
        raise DeliveryError(
            f"the webhook answered {answer.status_code} (a redirect, not followed: put the"
            " channel with the new address)"
        )
    raise DeliveryError(f"the webhook answered {answer.status_code} {answer.reason_phrase}")


# Apprise sends to one service synchronously in this thread (async_mode off: no thread pool of
# its own), and never logs a URL in clear (secure_logging, its default, made explicit).
_ASSET = apprise.AppriseAsset(
    app_id="clustermon", app_desc="clustermon", async_mode=False, secure_logging=True
)


def _via_apprise(url: str, message: Mapping[str, Any], timeout: float) -> None:
    plugin = apprise.Apprise.instantiate(url, asset=_ASSET)
    if plugin is None:
        raise DeliveryError("Apprise cannot use this channel's URL (put the channel again)")
    delivery_id = str(message["id"])
    headers = getattr(plugin, "headers", None)
    if isinstance(headers, dict):
        # A mail gets it as its own header (Apprise makes the Message-ID itself); an HTTP
        # service (json://, form://) as the header our webhook uses.
        is_mail = isinstance(plugin, NotifyEmail)
        headers["X-Clustermon-Id" if is_mail else "Idempotency-Key"] = delivery_id
    html = message.get("html")
    body, body_format = (
        (html, apprise.NotifyFormat.HTML) if html else (text_of(message), apprise.NotifyFormat.TEXT)
    )
    sender = apprise.Apprise(asset=_ASSET)
    sender.add(plugin)
    result = sender.notify(
        body=body,
        title=title_of(message),
        body_format=body_format,
        timeout=timeout,
        log_level=logging.WARNING,
    )
    if result:
        return
    said = [entry.message for entry in result.logs() if entry.level in ("WARNING", "ERROR")]
    reason = _MASK.redact("; ".join(dict.fromkeys(said))) or str(result.status)
    raise DeliveryError(f"{plugin.service_name} did not take the message: {reason}"[:500])


def deliver(url: str, message: Mapping[str, Any], *, timeout: float = 10.0) -> None:
    """Send `message` (a delivery's payload plus its "id") to the channel at `url`.

    Raises DeliveryError with a reason that never contains the URL's secrets."""
    secrets = secrets_of(url)
    with _MASK.masking(secrets):
        try:
            if is_webhook(url):
                _post(url, message, timeout)
            else:
                _via_apprise(url, message, timeout)
        except DeliveryError as exc:
            raise DeliveryError(_MASK.redact(str(exc))) from None
        except Exception as exc:  # Apprise's plugins raise what their libraries raise
            log.debug("delivery failed", exc_info=True)
            raise DeliveryError(f"the channel failed ({type(exc).__name__})") from None
